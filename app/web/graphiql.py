"""GraphiQL at GET /graphql, from assets shipped inside the package: no CDN, so it works offline.

The page is fixed text: it reflects nothing of the request (no query string, no header), so there
is nothing to escape. Its script (`hookql-graphiql.js`) adds an API-key field that sets
`Authorization: Bearer …` on every HTTP request and in the websocket's `connection_init` payload
(graphql-ws, bundled in GraphiQL's browser build), and remembers the key in localStorage.

Assets are served at /graphiql/<fingerprint>/<name>: the fingerprint is a digest of all of them, so
a new hookql release that changes any asset changes every URL, and browsers may cache each URL
forever. The versions, their sources and the refresh command are in static/graphiql/README.md."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

ASSETS_DIR = Path(__file__).parent / "static" / "graphiql"
ASSET_TYPES = {
    "react.production.min.js": "text/javascript; charset=utf-8",
    "react-dom.production.min.js": "text/javascript; charset=utf-8",
    "graphiql.min.js": "text/javascript; charset=utf-8",
    "graphiql.min.css": "text/css; charset=utf-8",
    "hookql-graphiql.js": "text/javascript; charset=utf-8",
    "hookql-graphiql.css": "text/css; charset=utf-8",
}
ASSET_MAX_AGE_S = 365 * 24 * 3600  # the URL changes with the content (fingerprint), so cache it for a year
GZIP_LEVEL = 6  # once per asset and process: graphiql.min.js (3.5 MB) shrinks to about a quarter

# 'self' only, except: styles may be inline because GraphiQL's dialogs and menus (Radix UI) insert
# <style> elements and style attributes at run time (scroll locking, popover placement), and fonts
# and images may be data: URIs because graphiql.min.css embeds its fonts and icons that way. No
# script runs inline; connect-src 'self' covers the page's own ws:// origin (CSP level 3).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self' data:",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)


@dataclass
class _Asset:
    body: bytes
    media_type: str
    _gzipped: bytes | None = field(default=None, repr=False)

    async def gzipped(self) -> bytes:
        if self._gzipped is None:  # two first requests at once compress twice: harmless
            self._gzipped = await asyncio.to_thread(gzip.compress, self.body, GZIP_LEVEL, mtime=0)
        return self._gzipped


def _load_assets() -> dict[str, _Asset]:
    return {name: _Asset((ASSETS_DIR / name).read_bytes(), media_type) for name, media_type in ASSET_TYPES.items()}


_ASSETS = _load_assets()
FINGERPRINT = hashlib.sha256(b"".join(hashlib.sha256(a.body).digest() for a in _ASSETS.values())).hexdigest()[:16]
ASSETS_PATH = f"/graphiql/{FINGERPRINT}"

_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hookql · GraphiQL</title>
<link rel="stylesheet" href="{ASSETS_PATH}/graphiql.min.css">
<link rel="stylesheet" href="{ASSETS_PATH}/hookql-graphiql.css">
</head>
<body>
<form id="hookql-key" autocomplete="off">
<label for="hookql-api-key">API key</label>
<input id="hookql-api-key" name="key" type="password" autocomplete="off" spellcheck="false" placeholder="hk_…">
<button type="submit">Use key</button>
<button type="button" id="hookql-forget-key">Forget</button>
<span id="hookql-key-status" role="status"></span>
</form>
<div id="graphiql">Loading GraphiQL…</div>
<script src="{ASSETS_PATH}/react.production.min.js"></script>
<script src="{ASSETS_PATH}/react-dom.production.min.js"></script>
<script src="{ASSETS_PATH}/graphiql.min.js"></script>
<script src="{ASSETS_PATH}/hookql-graphiql.js"></script>
</body>
</html>
"""


async def graphiql_page(request: Request) -> Response:
    """The GraphiQL page (the same bytes for every request)."""
    return HTMLResponse(
        _PAGE,
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-cache",  # the page names the current fingerprint: revalidate it
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


async def _asset(request: Request) -> Response:
    asset = _ASSETS.get(request.path_params["name"])
    if asset is None or request.path_params["fingerprint"] != FINGERPRINT:
        return Response("not found", status_code=404, media_type="text/plain")
    headers = {
        "Cache-Control": f"public, max-age={ASSET_MAX_AGE_S}, immutable",
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(await asset.gzipped(), media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def graphiql_routes() -> list[Route]:
    """The asset routes (the page itself is served by the GraphQL view at GET /graphql)."""
    return [Route("/graphiql/{fingerprint}/{name}", _asset, methods=["GET", "HEAD"])]
