"""Relay global IDs: base64 of `TypeName:id`. Anything else decodes to None, never an error: the
one parser for every ID argument (and pagination cursor), so NUL, lone surrogates, non-ASCII
digits and absurd lengths are all answered as "not found" in one place."""

from __future__ import annotations

import base64

import strawberry

MAX_ID_LENGTH = 200  # characters; the longest real ID is about 40


def to_global_id(type_name: str, id_: int) -> strawberry.ID:
    return strawberry.ID(base64.b64encode(f"{type_name}:{id_}".encode()).decode())


def from_global_id(value: str) -> tuple[str, int] | None:
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH:
        return None
    try:
        # Non-ASCII input (a lone surrogate included) is a ValueError here; NUL is not base64.
        kind, sep, raw = base64.b64decode(value, validate=True).decode().partition(":")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        return None
    # ASCII only: str.isdigit() also accepts '²', which int() then refuses
    if not sep or not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return None
    return kind, int(raw)


def parse_id(value: str, type_name: str) -> int | None:
    """The database id inside `value` when it names a `type_name`, else None."""
    parsed = from_global_id(value)
    return parsed[1] if parsed and parsed[0] == type_name else None
