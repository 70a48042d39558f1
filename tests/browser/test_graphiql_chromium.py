"""GraphiQL at /graphql in a headless Chromium with the network off (tests/support/chromium.py):
the editor renders from hookql's own assets, the user pastes an API key, runs a query and a
subscription, and no request leaves 127.0.0.1. Writes tests/artifacts/graphiql.png."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from app.config import Settings
from app.store.apikeys import create_key
from app.transport.http import Transport
from app.web.server import create_app
from tests.support.chromium import Page, browser_page
from tests.support.live_server import serving

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
QUERY = "{ invoices(first: 2) { edges { node { legacyId } } } }"


async def until(page: Page, expression: str, timeout_s: float = 12) -> None:
    """Wait, inside the page, until a JavaScript expression is truthy (checked every 50 ms); on
    timeout, say what the page shows."""
    waiting = f"""new Promise(resolve => {{
        const started = Date.now();
        const check = () => {{
            let ok = false;
            try {{ ok = !!({expression}); }} catch (e) {{}}
            if (ok || Date.now() - started > {timeout_s * 1000}) resolve(ok); else setTimeout(check, 50);
        }};
        check();
    }})"""
    result = await page.send("Runtime.evaluate", expression=waiting, awaitPromise=True, returnByValue=True)
    if result["result"].get("value") is not True:
        shown = await page.js("document.body.innerText.slice(0, 2000)")
        raise AssertionError(f"not within {timeout_s} s: {expression}\npage: {shown}\nconsole: {page.console}")


async def set_editor(page: Page, text: str) -> None:
    """Replace the query editor's text the way typing would (CodeMirror 5 keeps its own model), and
    wait until GraphiQL has parsed it: it does so 100 ms after the last change, storing the text
    under `graphiql:query` in the same step (a subscription run before that goes over HTTP)."""
    await page.js(
        f"document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue({json.dumps(text)})"
    )
    await until(page, f"localStorage.getItem('graphiql:query') === {json.dumps(text)}")


async def result_text(page: Page) -> str:
    return str(await page.js("document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"))


@pytest.mark.browser
async def test_graphiql_runs_a_query_with_a_pasted_key_offline(fixture_pool: asyncpg.Pool) -> None:
    async with fixture_pool.acquire() as conn:
        key = await create_key(conn, seller_id=None, name="graphiql")
    async with (
        Transport() as transport,
        serving(create_app(Settings(), fixture_pool, transport)) as base_url,
        browser_page(offline=True) as page,
    ):
        await page.send("Network.enable")
        await page.send("Runtime.enable")
        await page.send("Log.enable")
        # given: GraphiQL, opened with no key
        await page.loading("Page.navigate", url=base_url + "/graphql")
        await until(page, "document.querySelector('.graphiql-query-editor .CodeMirror')")
        assert await page.js("document.querySelector('#hookql-key-status').dataset.keySet") == "no"

        # when: pasting the key (as "Bearer …", as people copy it) and using it
        await page.js(f"document.querySelector('#hookql-api-key').value = {json.dumps('Bearer ' + key)}")
        await page.js("document.querySelector('#hookql-key button[type=submit]').click()")
        await until(page, "document.querySelector('#hookql-key-status').dataset.keySet === 'yes'")
        # then: the key is remembered, bare
        assert await page.js("localStorage.getItem('hookql.graphiql.apiKey')") == key

        # when: running a query
        await set_editor(page, QUERY)
        await page.js("document.querySelector('.graphiql-execute-button').click()")
        # then: the result pane shows the data
        await until(
            page, "document.querySelector('.result-window .CodeMirror').CodeMirror.getValue().includes('legacyId')"
        )
        result = json.loads(await result_text(page))
        assert result["data"] == {"invoices": {"edges": [{"node": {"legacyId": 1}}, {"node": {"legacyId": 2}}]}}
        assert result["extensions"]["cost"]["throttleStatus"]["maximumAvailable"] > 0  # the key's cost budget
        ARTIFACTS.mkdir(exist_ok=True)
        shot = await page.send("Page.captureScreenshot", format="png")
        (ARTIFACTS / "graphiql.png").write_bytes(base64.b64decode(shot["data"]))

        # when: running a subscription (websocket, key in connection_init)
        await set_editor(page, 'subscription { webhookEvents(webhookId: "nope") { eventId status } }')
        await page.js("document.querySelector('.graphiql-execute-button').click()")
        # then: the server accepted the key and ran the subscription, whose resolver answers that
        # there is no such webhook (without the key the socket closes with 4403 before it runs)
        await until(
            page,
            "document.querySelector('.result-window .CodeMirror').CodeMirror.getValue().includes('webhook not found')",
        )

        # when: opening GraphiQL's settings dialog and asking for completions (popovers and dialogs
        # are where its components style themselves at run time: the CSP must let them)
        await page.js("document.querySelector('[aria-label=\"Open settings dialog\"]').click()")
        await until(page, "document.querySelector('[role=dialog]')")
        await page.js("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape', bubbles: true}))")
        editor = "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror"
        await set_editor(page, "{ invo")
        await page.js(f"{editor}.setCursor({{line: 0, ch: 6}}); {editor}.focus(); {editor}.execCommand('autocomplete')")
        # then: the completions come from the schema GraphiQL loaded with the key
        await until(page, "document.querySelector('.CodeMirror-hints')?.innerText.includes('invoices')")

        # the key is gone from the page once forgotten
        await page.js("document.querySelector('#hookql-forget-key').click()")
        await until(page, "document.querySelector('#hookql-key-status').dataset.keySet === 'no'")
        assert await page.js("localStorage.getItem('hookql.graphiql.apiKey')") is None

    # and: every request and websocket went to the server on 127.0.0.1 (or was inline data)
    assert page.requests, "the page made no requests"
    elsewhere = [url for url in page.requests if urlsplit(url).hostname != "127.0.0.1" and not url.startswith("data:")]
    assert elsewhere == []
    assert any(url.startswith("ws://127.0.0.1") for url in page.requests)
    # and: the Content-Security-Policy refused nothing GraphiQL needs, and no script failed
    refused = [line for line in page.console if "Content Security Policy" in line or line.startswith("uncaught:")]
    assert refused == []


@pytest.mark.browser
async def test_the_offline_browser_reaches_nothing_but_127_0_0_1() -> None:
    """What `offline=True` promises, checked: every connection beyond loopback goes to the proxy
    that does not exist, whether or not this machine has a network (without `offline`, these
    navigations fail differently here, or succeed)."""
    async with browser_page(offline=True) as page:
        for url in ("https://unpkg.com/graphiql/graphiql.min.js", "http://93.184.216.34/", "http://[2606:4700::1]/"):
            answer = await page.send("Page.navigate", url=url)
            assert answer.get("errorText") == "net::ERR_PROXY_CONNECTION_FAILED", (url, answer)
