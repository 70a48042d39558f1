"""The Relay `Node` interface."""

from __future__ import annotations

import strawberry


@strawberry.interface(description="An object with a global ID: base64 of `TypeName:id`.")
class Node:
    id: strawberry.ID
