"""Global IDs as the schema types them: app.policy.ids encodes and decodes them (the one codec);
this adapter only gives `encode`'s text the `ID` scalar's type."""

from __future__ import annotations

import strawberry

from app.policy import ids


def to_global_id(type_name: str, id_: int) -> strawberry.ID:
    return strawberry.ID(ids.encode(type_name, id_))
