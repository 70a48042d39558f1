"""`ExternalId`: another system's id for a seller, an order or an invoice."""

from __future__ import annotations

import strawberry

from app.api.context import Info


@strawberry.type(description="Another system's id for this object (`key` names the system)")
class ExternalId:
    key: str
    value: str


async def external_ids(info: Info, link: str, owner_id: int) -> list[ExternalId]:
    """The external ids of one owner, through the request's `link` loader (`external_ids_by_…`)."""
    rows = await info.context.loaders.children[link].load(owner_id)
    return [ExternalId(key=r["key"], value=r["value"]) for r in rows]
