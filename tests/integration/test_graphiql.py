"""GraphiQL as `hookql serve` serves it, over real HTTP: a page that names only local assets and
reflects nothing of the request, under a strict Content-Security-Policy, and assets with their
content types and a year's cache. Hostile requests (script in the query string, unknown or
traversing asset names, an old fingerprint) get the same page or a plain 404 and log nothing."""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from app.config import Settings
from app.transport.http import Transport
from app.web.graphiql import ASSET_MAX_AGE_S, ASSET_TYPES, ASSETS_DIR, ASSETS_PATH, FINGERPRINT
from app.web.server import create_app
from tests.support.live_server import serving
from tests.support.logs import no_tracebacks

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser sends


@pytest.fixture
async def base_url(pool: asyncpg.Pool) -> AsyncIterator[str]:
    async with Transport() as transport, serving(create_app(Settings(), pool, transport)) as base:
        yield base


@pytest.fixture(autouse=True)
def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> Any:
    with no_tracebacks(caplog):
        yield


async def get(url: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession(auto_decompress=False) as http, http.get(url, **kwargs) as r:
        return r.status, dict(r.headers), await r.read()


async def test_the_page_loads_only_local_assets_under_a_strict_policy(base_url: str) -> None:
    status, headers, body = await get(base_url + "/graphql", headers=HTML)
    page = body.decode()
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    # every script and stylesheet is one of hookql's own assets, by an absolute local path
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sorted(sources) == sorted(f"{ASSETS_PATH}/{name}" for name in ASSET_TYPES)
    assert "//" not in "".join(sources) and "http" not in page.lower().replace("http-equiv", "")
    assert "<script>" not in page  # no inline script: the policy allows none
    policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_assets_have_their_content_types_and_a_years_cache(base_url: str) -> None:
    for name, media_type in ASSET_TYPES.items():
        status, headers, body = await get(f"{base_url}{ASSETS_PATH}/{name}", headers={"Accept-Encoding": "identity"})
        assert status == 200, name
        assert headers["Content-Type"] == media_type
        assert headers["Cache-Control"] == f"public, max-age={ASSET_MAX_AGE_S}, immutable"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert body == (ASSETS_DIR / name).read_bytes()
    # compressed for a browser, byte for byte the same once inflated
    status, headers, body = await get(f"{base_url}{ASSETS_PATH}/graphiql.min.js", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == (ASSETS_DIR / "graphiql.min.js").read_bytes()
    assert len(body) < (ASSETS_DIR / "graphiql.min.js").stat().st_size / 2


REFLECTION_ATTEMPTS = [
    "?q=%3C%2Fscript%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "?headers=%7B%22Authorization%22%3A%22%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E%22%7D",
    '?variables="><svg/onload=alert(1)>&operationName=<b>x</b>',
    "?" + "x=%3Cscript%3E" * 2000,  # long, but under uvicorn's line limit
]


async def test_the_page_reflects_nothing_of_the_query_string(base_url: str) -> None:
    _, _, plain = await get(base_url + "/graphql", headers=HTML)
    for query_string in REFLECTION_ATTEMPTS:
        status, headers, body = await get(base_url + "/graphql" + query_string, headers=HTML)
        assert status == 200 and "Content-Security-Policy" in headers
        assert body == plain, query_string  # the same bytes, whatever the request says


async def test_a_browser_get_with_a_query_still_needs_a_key(base_url: str) -> None:
    status, headers, body = await get(base_url + "/graphql?query=%7B__typename%7D&x=%3Cscript%3E", headers=HTML)
    assert status == 401 and headers["Content-Type"] == "application/json"
    assert b"<script>" not in body


NOT_ASSETS = [
    f"{ASSETS_PATH}/nope.js",
    f"{ASSETS_PATH}/LICENSE.graphiql",  # shipped in the package, not served
    f"{ASSETS_PATH}/..%2Fgraphiql.py",
    f"{ASSETS_PATH}/..%2F..%2Fgraphiql.py",
    f"{ASSETS_PATH}/%2e%2e%2f%2e%2e%2fconfig.py",
    f"{ASSETS_PATH}/" + "a" * 5000,
    "/graphiql/0000000000000000/graphiql.min.js",  # an old (or made-up) fingerprint
    f"/graphiql/{FINGERPRINT}%3Cscript%3E/graphiql.min.js",
    "/graphiql/graphiql.min.js",
]


async def test_anything_but_a_current_asset_is_a_plain_404(base_url: str) -> None:
    for path in NOT_ASSETS:
        status, headers, body = await get(base_url + path)
        assert status == 404, path
        assert headers["Content-Type"].startswith("text/plain") and body in (b"not found", b"Not Found")
