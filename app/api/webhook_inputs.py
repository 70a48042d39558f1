"""Webhook inputs and their validation: every rule runs before anything is stored, and each
failure becomes a (field, message) pair."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import strawberry

from app.api.webhook_types import FieldError, HttpMethod, PayloadFormat, WebhookEventType, WebhookType
from app.config import Settings
from app.evaluation.compile import DEFAULT_QUERY, QueryError, compile_query
from app.evaluation.cost import limits_for
from app.evaluation.selection import compile_filter
from app.evaluation.sql import fallback_reason
from app.policy.ids import decode
from app.policy.signing import DEFAULT_HMAC_HEADER, MAX_HMAC_KEY_BYTES
from app.transport.netguard import (
    Target,
    check_host,
    has_lone_surrogate,
    header_name_problem,
    parse_target,
    validate_headers,
)
from app.types import Action, EntityType, Header, Visibility

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 200
# Any one string of an input, whatever its own rule: far above every real value (URLs stop at
# 2,048, headers at 8 KiB in all), so only an absurd input meets it, before any parser does.
MAX_TEXT_LENGTH = 100_000
MAX_TEXT_ERRORS = 20  # reported of those: 5,000 bad headers need not get 5,000 messages
RANGES = {"max_attempts": (1, 50), "timeout_seconds": (1, 30), "concurrency": (1, 100)}
MAX_HMAC_HEADER_LENGTH = 100  # characters of the integrator HMAC header's name
_HMAC_KEY_DESCRIPTION = (
    "Write-only: a key you choose; every delivery and ping then also carries `hmacHeader`:"
    " base64(HMAC-SHA256(hmacKey, exact body bytes)). Never returned. An empty string removes it"
)
_FILTER_DESCRIPTION = (
    "Deliver only payloads that match, e.g. `invoice.status in [SHIPPED, CANCELLED]`: comparisons"
    " (==, !=, <, >, <=, >=, in, exists) of paths the query selects, combined with and/or/not."
    " A payload that does not match is SKIPPED with skipReason `filtered`. An empty string removes it"
)
_HMAC_HEADER_DESCRIPTION = f"The header that carries the hmacKey signature (default `{DEFAULT_HMAC_HEADER}`)"


@strawberry.input
class HeaderInput:
    name: str
    value: str


@strawberry.input
class WebhookCreateInput:
    name: str
    url: str
    type: WebhookType  # type: ignore[valid-type]
    query: str | None = None
    headers: list[HeaderInput] | None = None
    events: list[WebhookEventType] | None = None  # type: ignore[valid-type]
    method: HttpMethod | None = None  # type: ignore[valid-type]
    format: PayloadFormat | None = None  # type: ignore[valid-type]
    enabled: bool | None = None
    skip_identical_payloads: bool | None = None
    max_attempts: int | None = None
    timeout_seconds: int | None = None
    concurrency: int | None = None
    seller_id: strawberry.ID | None = strawberry.field(default=None, description="Operator keys only")
    hmac_key: str | None = strawberry.field(default=None, description=_HMAC_KEY_DESCRIPTION)
    hmac_header: str | None = strawberry.field(default=None, description=_HMAC_HEADER_DESCRIPTION)
    filter: str | None = strawberry.field(default=None, description=_FILTER_DESCRIPTION)


@strawberry.input(description="Only the fields given change; the rest stay as they are")
class WebhookUpdateInput:
    name: str | None = None
    url: str | None = None
    type: WebhookType | None = None  # type: ignore[valid-type]
    query: str | None = None
    headers: list[HeaderInput] | None = None
    events: list[WebhookEventType] | None = None  # type: ignore[valid-type]
    method: HttpMethod | None = None  # type: ignore[valid-type]
    format: PayloadFormat | None = None  # type: ignore[valid-type]
    enabled: bool | None = None
    skip_identical_payloads: bool | None = None
    max_attempts: int | None = None
    timeout_seconds: int | None = None
    concurrency: int | None = None
    hmac_key: str | None = strawberry.field(default=None, description=_HMAC_KEY_DESCRIPTION)
    hmac_header: str | None = strawberry.field(default=None, description=_HMAC_HEADER_DESCRIPTION)
    filter: str | None = strawberry.field(default=None, description=_FILTER_DESCRIPTION)


async def check_url(url: str, allow_private: bool) -> str | None:
    """Why `url` cannot be a webhook's target (shape, then the addresses its host stands for)."""
    target = parse_target(url)
    if isinstance(target, str):
        return target
    return await check_host(target.host, allow_private)


def text_problems(value: object, field: str = "") -> list[FieldError]:
    """A field error for every string inside an input (nested inputs and lists included) that no
    field could accept: a NUL (PostgreSQL text cannot hold one), a lone surrogate (not Unicode:
    nothing can encode it) or more than MAX_TEXT_LENGTH characters. The generic guard that runs
    before any field's own rules, so no parser, encoder or statement meets such a string."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT_LENGTH:
            return [FieldError(field=field, message=f"{field} is longer than {MAX_TEXT_LENGTH} characters")]
        if "\0" in value:
            return [FieldError(field=field, message=f"{field} must not contain NUL characters")]
        if has_lone_surrogate(value):
            return [FieldError(field=field, message=f"{field} is not valid Unicode (it contains a lone surrogate)")]
        return []
    if isinstance(value, list):
        return [e for i, item in enumerate(value) for e in text_problems(item, f"{field}.{i}")]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a strawberry input
        return [
            e
            for f in dataclasses.fields(value)
            for e in text_problems(getattr(value, f.name), f"{field}.{_camel(f.name)}" if field else _camel(f.name))
        ]
    return []


async def clean(
    schema: Any,
    given: WebhookCreateInput | WebhookUpdateInput,
    *,
    current: dict[str, Any] | None,
    viewer: Visibility,
    allow_private: bool,
    settings: Settings,
) -> tuple[dict[str, Any], list[FieldError]]:
    """Validated column values for the fields given (all of them on create), or the errors."""
    errors = text_problems(given)[:MAX_TEXT_ERRORS]
    if errors:
        return {}, errors  # the fields' own rules (and their parsers) never see such strings
    values: dict[str, Any] = {}

    def fail(field: str, message: str) -> None:
        errors.append(FieldError(field=field, message=message))

    if given.name is not None:
        name = given.name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            fail("name", f"name must be 1-{MAX_NAME_LENGTH} characters")
        values["name"] = name
    if given.url is not None:
        problem = await check_url(given.url, allow_private)
        if problem:
            fail("url", problem)
        values["url"] = given.url
    if given.type is not None:
        values["entity_type"] = EntityType(given.type).value
    entity_type = EntityType(values.get("entity_type") or (current or {}).get("entity_type"))
    query = given.query if given.query is not None else (None if current else DEFAULT_QUERY)
    if query is None and "entity_type" in values:
        query = (current or {}).get("query")  # a new type must still be selected by the stored query
    if query is not None:
        # Held to the cost limits of the webhook's owner, whose visibility it runs with: an
        # operator registering a seller's webhook gets the seller's limits.
        if current is not None:
            operator_owned = current["seller_id"] is None
        elif viewer.is_operator and isinstance(given, WebhookCreateInput) and given.seller_id is not None:
            operator_owned = decode(given.seller_id, "Seller") is None  # not a seller ID: refused below
        else:
            operator_owned = viewer.is_operator
        compiled = compile_query(schema, query, entity_type, limits=limits_for(settings, operator=operator_owned))
        if isinstance(compiled, QueryError):
            fail("query", compiled.message)
        else:
            reason = fallback_reason(schema, compiled)
            if reason is not None:
                log.debug("webhook query evaluated by graphql-core, not compiled to SQL: %s", reason)
        values["query"] = query
    _check_filter(schema, given, current, values, entity_type, fail)
    if given.headers is not None:
        headers = [Header(h.name, h.value) for h in given.headers]
        for field, message in validate_headers(headers):
            fail(field, message)
        values["headers"] = [{"name": h.name, "value": h.value} for h in headers]
    if "url" in values or "headers" in values:
        # aiohttp refuses a request that has both (it cannot tell which credentials to send), and
        # a receiver would see only one of them: say so now rather than fail every attempt.
        target = parse_target(values.get("url") or (current or {}).get("url") or "")
        names = [h["name"] for h in values.get("headers") or (current or {}).get("headers") or []]
        if _has_credentials(target) and any(n.lower() == "authorization" for n in names):
            fail("url" if "url" in values else "headers",
                 "the URL carries credentials (user:password@) and the headers set Authorization; keep one of them")
    _check_hmac(given, current, values, fail)
    if given.events is not None:
        if not given.events:
            fail("events", "events must name at least one of CREATED, UPDATED, DELETED")
        values["events"] = [a.value for a in Action if a in set(given.events)]
    if given.method is not None:
        values["method"] = given.method.value
    if given.format is not None:
        values["format"] = given.format.value
    for flag in ("enabled", "skip_identical_payloads"):
        if getattr(given, flag) is not None:
            values[flag] = getattr(given, flag)
    for field, (low, high) in RANGES.items():
        value = getattr(given, field)
        if value is not None:
            if not low <= value <= high:
                fail(_camel(field), f"{_camel(field)} must be between {low} and {high}, got {value}")
            values[field] = value
    if isinstance(given, WebhookCreateInput) and given.seller_id is not None:
        seller = decode(given.seller_id, "Seller")
        if not viewer.is_operator:
            fail("sellerId", "only operator keys may set sellerId; a seller's webhooks are always its own")
        elif seller is None:
            fail("sellerId", "sellerId is not a Seller ID")
        values["seller_id"] = seller
    elif current is None:
        values["seller_id"] = viewer.seller_id
    return values, errors


def _check_filter(
    schema: Any,
    given: WebhookCreateInput | WebhookUpdateInput,
    current: dict[str, Any] | None,
    values: dict[str, Any],
    entity_type: EntityType,
    fail: Any,
) -> None:
    """The filter, checked against the query the webhook will have: a new filter against the new
    or stored query, and a stored filter against a new query or type ("" removes the filter)."""
    if given.filter is not None:
        values["filter"] = given.filter if given.filter.strip() else None
    text = values["filter"] if "filter" in values else (current or {}).get("filter")
    if not text or not ({"filter", "query", "entity_type"} & values.keys()):
        return
    query = values.get("query") or (current or {}).get("query") or DEFAULT_QUERY
    compiled = compile_query(schema, query, entity_type)
    if isinstance(compiled, QueryError):
        return  # the query's own error says what to fix first
    problem = compile_filter(text, compiled)
    if isinstance(problem, str):
        fail("filter", problem if "filter" in values else f"the stored filter no longer fits the query: {problem}")


def _check_hmac(
    given: WebhookCreateInput | WebhookUpdateInput,
    current: dict[str, Any] | None,
    values: dict[str, Any],
    fail: Any,
) -> None:
    """The integrator HMAC inputs: a key of 1-MAX_HMAC_KEY_BYTES bytes ("" removes it), and a
    header name that is a token, none of the engine's own headers and none of the webhook's custom
    headers while a key is set (whichever of the two is given is the one in error)."""
    if given.hmac_key is not None:
        size = len(given.hmac_key.encode())
        if size > MAX_HMAC_KEY_BYTES:
            fail("hmacKey", f"hmacKey is {size} bytes; at most {MAX_HMAC_KEY_BYTES} are allowed")
        values["hmac_key"] = given.hmac_key or None
    if given.hmac_header is not None:
        name = given.hmac_header
        if len(name) > MAX_HMAC_HEADER_LENGTH:
            fail("hmacHeader", f"hmacHeader is longer than {MAX_HMAC_HEADER_LENGTH} characters")
        else:
            problem = header_name_problem(name)
            if problem:
                fail("hmacHeader", f"hmacHeader {problem}")
        values["hmac_header"] = name
    key = values["hmac_key"] if "hmac_key" in values else (current or {}).get("hmac_key")
    if key and ("hmac_header" in values or "headers" in values or "hmac_key" in values):
        header = values.get("hmac_header") or (current or {}).get("hmac_header") or DEFAULT_HMAC_HEADER
        names = {h["name"].lower() for h in values.get("headers") or (current or {}).get("headers") or []}
        if header.lower() in names:
            field = next(f for k, f in (("hmac_header", "hmacHeader"), ("headers", "headers"), ("hmac_key", "hmacKey"))
                         if k in values)
            fail(field,
                 f"{header!r} is both a custom header and the hmacHeader; choose another name for one of them")


def _has_credentials(target: Target | str) -> bool:
    return isinstance(target, Target) and target.has_credentials  # a bad URL has its own error


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)
