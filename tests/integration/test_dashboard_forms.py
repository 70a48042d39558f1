"""The dashboard's webhook form over real HTTP: creating and editing go through the API's own
validation (app.api.webhooks), errors are shown beside their fields, and the query preview runs
webhookPreview's code with the signed-in key's visibility."""

from __future__ import annotations

import html
import re

import asyncpg

from app.config import Settings
from app.policy.ids import encode
from app.policy.masking import MASK
from app.store.apikeys import create_key
from tests.integration.test_dashboard import client, post, sign_in, site
from tests.support.live_server import serving

QUERY = "query($id: ID!) { node(id: $id) { ... on Invoice { id status } } }"
TOKEN = "Bearer sk_live_never_shown"


def field_errors(page: str) -> dict[str, str]:
    """Each field's error messages, joined with " | "."""
    found = re.findall(r'id="(\w+)-error" role="alert">(.*?)</span>', page)
    return {field: " | ".join(html.unescape(m) for m in messages.split("<br>")) for field, messages in found}


async def _seller_and_invoices(pool: asyncpg.Pool) -> tuple[int, int, int]:
    """A seller, one of its invoices and another seller's invoice."""
    row = await pool.fetchrow(
        "SELECT a.seller_id, a.id AS own, b.id AS foreign_id FROM invoices a JOIN invoices b"
        " ON b.seller_id <> a.seller_id ORDER BY a.id, b.id LIMIT 1"
    )
    return row["seller_id"], row["own"], row["foreign_id"]


async def test_create_registers_a_webhook_and_shows_its_secret_once(fixture_pool: asyncpg.Pool) -> None:
    seller, _, _ = await _seller_and_invoices(fixture_pool)
    key = await create_key(fixture_pool, seller_id=seller, name="acme")
    async with serving(site(fixture_pool)) as base_url, client() as http:
        await sign_in(http, base_url, key)
        async with http.get(base_url + "/dashboard/webhooks/new") as r:
            assert r.status == 200 and 'name="query"' in await r.text()
        response = await post(
            http, base_url, "/webhooks/new", key,
            name="ERP sync", url="https://erp.example.com/hooks", type="invoice", query=QUERY,
            headers=f"Authorization: {TOKEN}\nX-Tenant: acme", events=["created", "updated"],
            method="POST", format="json", enabled="on", do="save",
        )  # fmt: skip
        page = await response.text()
    assert response.status == 201, page
    row = await fixture_pool.fetchrow("SELECT * FROM webhooks")
    assert (row["name"], row["url"], row["seller_id"], row["events"]) == (
        "ERP sync", "https://erp.example.com/hooks", seller, ["created", "updated"]
    )  # fmt: skip
    assert row["headers"] == [{"name": "Authorization", "value": TOKEN}, {"name": "X-Tenant", "value": "acme"}]
    assert row["secret"] in page and encode("Webhook", row["id"]) in page


async def test_refused_fields_are_shown_beside_them_and_nothing_is_stored(fixture_pool: asyncpg.Pool) -> None:
    key = await create_key(fixture_pool, seller_id=None, name="ops")
    async with serving(site(fixture_pool)) as base_url, client() as http:
        await sign_in(http, base_url, key)
        response = await post(
            http, base_url, "/webhooks/new", key,
            name="x", url="http://127.0.0.1:9/in", type="invoice", query="query { nope }",
            headers="Content-Type: text/plain\nnot a header line", method="POST", format="json", do="save",
        )  # fmt: skip
        page = await response.text()
    assert response.status == 400
    errors = field_errors(page)
    assert "loopback" in errors["url"] or "private" in errors["url"]  # private targets are off here
    assert "query" in errors and "headers" in errors
    assert "line 2" in errors["headers"] and "Content-Type" in errors["headers"]
    assert 'value="x"' in page  # the form keeps what was typed
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks") == 0
    # the API's rules, not the form's: no events is webhookCreate's own message
    async with serving(site(fixture_pool, Settings(allow_private_targets=True))) as base_url, client() as http:
        await sign_in(http, base_url, key)
        response = await post(
            http, base_url, "/webhooks/new", key,
            name="x", url="http://127.0.0.1:9/in", type="invoice", query=QUERY, method="POST", format="json",
            do="save",
        )  # fmt: skip
        assert "events must name at least one" in field_errors(await response.text())["events"]
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks") == 0


async def test_preview_runs_the_query_with_the_keys_visibility(fixture_pool: asyncpg.Pool) -> None:
    seller, own, foreign = await _seller_and_invoices(fixture_pool)
    key = await create_key(fixture_pool, seller_id=seller, name="acme")
    async with serving(site(fixture_pool)) as base_url, client() as http:
        await sign_in(http, base_url, key)

        async def preview(entity_id: str, query: str = QUERY) -> tuple[int, str]:
            response = await post(
                http, base_url, "/webhooks/new", key,
                name="", url="", type="invoice", query=query, entity_id=entity_id, do="preview",
            )  # fmt: skip
            return response.status, await response.text()

        status, page = await preview(str(own))
        assert status == 200
        [body] = re.findall(r'<pre class="body" id="preview-body">(.*?)</pre>', page, re.S)
        assert f'"id": "{encode("Invoice", own)}"' in html.unescape(body)
        # a GraphQL ID works too; another seller's invoice is invisible, as to webhookPreview
        status, page = await preview(encode("Invoice", foreign))
        assert status == 200 and '"node": null' in html.unescape(page)
        status, page = await preview(str(own), "query($id: ID!) { node(id: $id) { ... on Variant { id } } }")
        assert status == 400 and "query" in field_errors(page)
        status, page = await preview("")
        assert status == 400 and "entity_id" in field_errors(page)
    assert await fixture_pool.fetchval("SELECT count(*) FROM webhooks") == 0


async def test_edit_changes_only_what_differs_and_keeps_masked_headers(fixture_pool: asyncpg.Pool) -> None:
    key = await create_key(fixture_pool, seller_id=None, name="ops")
    hook = await fixture_pool.fetchval(
        "INSERT INTO webhooks (name, url, entity_type, query, headers, secret, enabled, disabled_reason)"
        " VALUES ('ERP', 'https://old.example/in', 'invoice', $1, $2, 'whsec_x', false, 'receiver answered 410 Gone')"
        " RETURNING id",
        QUERY,
        [{"name": "Authorization", "value": TOKEN}, {"name": "X-Tenant", "value": "acme"}],
    )
    async with serving(site(fixture_pool)) as base_url, client() as http:
        await sign_in(http, base_url, key)
        # the edit page, by GraphQL ID: the secret header's value is masked
        async with http.get(f"{base_url}/dashboard/webhooks/{encode('Webhook', hook)}/edit") as r:
            page = await r.text()
        assert r.status == 200 and f"Authorization: {MASK}" in page and "sk_live" not in page
        [headers] = re.findall(r'<textarea id="headers"[^>]*>(.*?)</textarea>', page, re.S)
        response = await post(
            http, base_url, f"/webhooks/{hook}/edit", key,
            name="ERP", url="https://new.example/in", type="invoice", query=QUERY,
            headers=html.unescape(headers), events=["created", "updated", "deleted"], method="POST", format="xml",
            do="save",
        )  # fmt: skip
        assert response.status == 303, await response.text()
    row = await fixture_pool.fetchrow("SELECT * FROM webhooks WHERE id = $1", hook)
    assert row["url"] == "https://new.example/in" and row["format"] == "xml"
    assert row["headers"][0] == {"name": "Authorization", "value": TOKEN}  # kept, not the mask
    assert not row["enabled"] and row["disabled_reason"] == "receiver answered 410 Gone"  # untouched
