"""What every dashboard page shares: the templates and their filters, the security headers every
answer carries, and the pages any route may answer with (sign in, "No such …", a problem)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from app.policy import ids

if TYPE_CHECKING:
    from app.web.dashboard.session import Session

WEB_DIR = Path(__file__).parent.parent  # app/web: templates/ and static/
EXCERPT_CHARS = 300

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(WEB_DIR / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)

# Framing would allow click-jacking the buttons; nothing here needs a third-party resource.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it, browsers send `Origin: null` on same-origin form POSTs.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _ago(moment: datetime | None, now: datetime | None = None) -> str:
    """`12 s ago`, `in 3 min`: a glance at a list reads relative times faster than timestamps."""
    if moment is None:
        return "—"
    delta_s = ((now or datetime.now(UTC)) - moment).total_seconds()
    future, delta_s = delta_s < 0, abs(delta_s)
    for unit_s, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if delta_s >= unit_s or unit == "s":
            text = f"{int(delta_s // unit_s)} {unit}"
            break
    return f"in {text}" if future else f"{text} ago"


def _excerpt(body: str) -> str:
    """A response body on one line, cut to `EXCERPT_CHARS`."""
    flat = " ".join(body.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def _body_text(body: bytes) -> str:
    """A request body as text: the bytes are UTF-8 for every format hookql sends."""
    return body.decode("utf-8", "replace")


_templates.filters["ago"] = _ago
_templates.filters["excerpt"] = _excerpt
_templates.filters["body_text"] = _body_text
_templates.filters["global_id"] = ids.encode


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def base(request: Request) -> str:
    """Where the dashboard is mounted (`/dashboard`): every link and redirect starts with it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def redirect(request: Request, path: str) -> RedirectResponse:
    # 303: the browser follows a POST with a GET, so a reload does not resubmit the form.
    return RedirectResponse(base(request) + path, status_code=303, headers=SECURITY_HEADERS)


def sign_in_page(request: Request, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    return render("dashboard_login.html", status_code, base=base(request), error=error)


def missing(request: Request, current: Session, what: str) -> HTMLResponse:
    # Another owner's row, a malformed id and a missing row are the same page.
    return render("dashboard_missing.html", 404, base=base(request), session=current, what=what)


def problem(request: Request, current: Session | None, status_code: int, title: str, message: str) -> HTMLResponse:
    return render(
        "dashboard_problem.html", status_code, base=base(request), session=current, title=title, message=message
    )


def ref(raw: str, type_name: str) -> int:
    """A row id from a URL: a positive number, or a GraphQL ID of `type_name` (`V2ViaG9vazox`);
    0, which matches nothing, for anything else."""
    if raw.isascii() and raw.isdigit() and len(raw) <= ids.MAX_DIGITS:
        return int(raw)
    return ids.decode(raw, type_name) or 0
