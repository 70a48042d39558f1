"""Signing in (the API key, posted once, kept in the dashboard's cookie) and out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.store.apikeys import authenticate
from app.web.dashboard.layout import base, redirect, sign_in_page
from app.web.dashboard.session import COOKIE, FormTooLarge, Site, read_form, same_origin


async def login(site: Site, request: Request) -> Response:
    try:
        form = await read_form(request)
    except FormTooLarge:
        form = None
    if form is None or not same_origin(request):
        return sign_in_page(request, "The sign-in form could not be read; try again.", 400)
    key = form.get("key").strip()
    visibility = await authenticate(site.pool, key) if key else None
    if visibility is None:
        return sign_in_page(request, "That API key is not valid.", 401)
    response = redirect(request, "/")
    response.set_cookie(
        COOKIE,
        key,
        path=base(request) + "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(site: Site, request: Request) -> Response:
    current = await site.session(request)
    if current is not None:
        checked = await site.posted(request)
        if isinstance(checked, Response):
            return checked
    response = redirect(request, "/")
    response.delete_cookie(COOKIE, path=base(request) + "/", httponly=True, samesite="strict")
    return response
