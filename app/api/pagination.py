"""Relay connections with keyset pagination by id. Cursors are opaque (base64 of `cursor:<id>`)."""

from __future__ import annotations

from typing import Generic, TypeVar

import strawberry

from app.api.ids import to_global_id
from app.policy.ids import decode_any

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
    return to_global_id("cursor", id_)


def decode_cursor(cursor: str | None) -> int:
    """The id after which a page starts. A cursor is shaped like a global ID (app.policy.ids decodes
    both, NUL, lone surrogates and absurd lengths included)."""
    if cursor is None:
        return 0
    parsed = decode_any(cursor)
    if parsed is None or parsed[0] != "cursor":
        shown = repr(cursor) if len(cursor) <= 64 else repr(cursor[:64]) + "…"
        raise PaginationError(f"`after` is not a cursor from this API: {shown}")
    return parsed[1]


def check_first(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE
    if not 0 <= first <= MAX_PAGE:
        raise PaginationError(f"`first` must be between 0 and {MAX_PAGE}, got {first}")
    return first
