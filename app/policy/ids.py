"""Relay global IDs, the one codec: `base64("TypeName:id")`. Pure.

Every ID the API hands out, every `webhook_id`/`entity.id` in a delivery body, every pagination
cursor and every ID the engine evaluates a webhook query with is made by `encode`; every ID a
caller gives back is read by `decode` (or `decode_any`). Anything that is not exactly what
`encode` makes decodes to None, never an error: invalid base64, non-ASCII (a lone surrogate
included), NUL, a missing `:`, digits outside ASCII (`str.isdigit()` accepts `'²'`, which `int()`
refuses), a number past bigint, or an absurd length. Callers answer None as "not found"."""

from __future__ import annotations

import base64

MAX_LENGTH = 200  # characters of an encoded ID; the longest real one is about 40
# Digits of a decoded id: every 18-digit number fits a PostgreSQL bigint (at most 19 digits,
# 9223372036854775807), so no id read here overflows a query's parameter.
MAX_DIGITS = 18


def encode(type_name: str, id_: int) -> str:
    """The global ID of row `id_` of `type_name`: `encode("Invoice", 1) == "SW52b2ljZTox"`."""
    return base64.b64encode(f"{type_name}:{id_}".encode()).decode()


def decode_any(value: object) -> tuple[str, int] | None:
    """(type name, id) inside a global ID of any type, or None when `value` is not one."""
    if not isinstance(value, str) or len(value) > MAX_LENGTH:
        return None
    try:
        # Non-ASCII input (a lone surrogate included) is a ValueError here; NUL is not base64.
        kind, sep, raw = base64.b64decode(value, validate=True).decode().partition(":")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        return None
    if not sep or not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_DIGITS:
        return None
    return kind, int(raw)


def decode(value: object, type_name: str) -> int | None:
    """The id inside `value` when it is a global ID of a `type_name`, else None."""
    parsed = decode_any(value)
    return parsed[1] if parsed is not None and parsed[0] == type_name else None
