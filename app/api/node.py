"""The Relay `Node` interface, and the fields every marketplace node reads from its row."""

from __future__ import annotations

from typing import Any

import asyncpg
import strawberry

from app.api.ids import to_global_id


@strawberry.interface(description="An object with a global ID: base64 of `TypeName:id`.")
class Node:
    id: strawberry.ID


def node_fields(type_name: str, row: asyncpg.Record) -> dict[str, Any]:
    """`id` (the global ID), `legacy_id`, `created_at` and `updated_at` of a marketplace row."""
    return {
        "id": to_global_id(type_name, row["id"]),
        "legacy_id": row["id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
