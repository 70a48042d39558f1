-- Event rows are updated several times in their life (claimed, renewed, recorded), and each
-- update writes a whole new row version. Keeping the payload (hundreds of bytes to kilobytes of
-- JSON) out of line, in TOAST, makes those versions small: an update copies an 18-byte pointer,
-- not the payload, and writes that much less WAL. EXTERNAL: not compressed, since payloads are
-- written once and read by the dispatcher, and compressing them costs more CPU than it saves.
ALTER TABLE webhook_events ALTER COLUMN payload SET STORAGE EXTERNAL;
ALTER TABLE webhook_events SET (toast_tuple_target = 128);
