-- What each attempt sent (issue #13): the dashboard shows an attempt's request beside its
-- response, so an integrator sees exactly what reached (or was meant to reach) the receiver.
--
-- The body is stored, not rebuilt from the event's payload: the bytes depend on the webhook's
-- format, method and URL at the time of the attempt, which a later webhookUpdate changes, and a
-- rebuilt body would silently show the new format for an old attempt. Rows go with their event
-- (ON DELETE CASCADE), so retention pruning covers them as it covers the response.
--
-- Headers are masked when written, not when read (app.policy.masking): the values of headers
-- whose names look secret (Authorization, *token*, *key*, *secret*, *hmac* …), the signature
-- and a password or secret-looking query parameter in the URL never reach this table, so no
-- reader of it — the dashboard, the API, psql, a backup — can leak them, and a secret rotated
-- later does not live on in old attempts.
--
-- NULL request columns: an attempt refused before anything was built (a blocked address), or
-- one recorded by a hookql without this migration.

ALTER TABLE webhook_attempts
    ADD COLUMN request_method  text,
    ADD COLUMN request_url     text,    -- as sent, credentials masked
    ADD COLUMN request_headers jsonb,   -- [[name, value], …] in the order sent, secrets masked
    ADD COLUMN request_body    bytea;   -- the exact bytes sent
