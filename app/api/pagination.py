"""Relay connections with keyset pagination by id. Cursors are opaque (base64 of `cursor:<id>`)."""

from __future__ import annotations

import base64
import binascii
from typing import Generic, TypeVar

import strawberry

T = TypeVar("T")
DEFAULT_PAGE = 20
MAX_PAGE = 100


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo

    @strawberry.field(description="The nodes of `edges`, for when cursors don't matter")
    def nodes(self) -> list[T]:
        return [e.node for e in self.edges]


class PaginationError(ValueError):
    pass


def encode_cursor(id_: int) -> str:
    return base64.b64encode(f"cursor:{id_}".encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        kind, _, raw = base64.b64decode(cursor, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        kind, raw = "", ""
    if kind != "cursor" or not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise PaginationError(f"`after` is not a cursor from this API: {cursor!r}")
    return int(raw)


def check_first(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE
    if not 0 <= first <= MAX_PAGE:
        raise PaginationError(f"`first` must be between 0 and {MAX_PAGE}, got {first}")
    return first
