"""The shared vocabulary of hookql: plain values passed between the API, the listener,
the dispatcher and the transport. A leaf module: it imports nothing from the package."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class EntityType(enum.Enum):
    """A webhook entity type; the value is what the database stores."""

    INVOICE = "invoice"
    VARIANT = "variant"
    REFUND_REQUEST = "refund_request"

    @property
    def graphql_name(self) -> str:
        """The GraphQL object type name (`Invoice`), also the global-ID prefix."""
        return _GRAPHQL_NAMES[self]

    @classmethod
    def from_graphql_name(cls, name: str) -> EntityType:
        for member, gql in _GRAPHQL_NAMES.items():
            if gql == name:
                return member
        raise ValueError(f"unknown entity type {name!r}")


_GRAPHQL_NAMES = {
    EntityType.INVOICE: "Invoice",
    EntityType.VARIANT: "Variant",
    EntityType.REFUND_REQUEST: "RefundRequest",
}


class Action(enum.Enum):
    """What happened to an entity; the value is what the change table stores."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


class EventStatus(enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"


class Method(enum.Enum):
    POST = "POST"
    PUT = "PUT"


class Format(enum.Enum):
    JSON = "json"
    XML = "xml"
    FORM = "form"


@dataclass(frozen=True)
class Visibility:
    """Whose eyes a query runs with: the operator (seller_id None) or one seller."""

    seller_id: int | None = None

    @property
    def is_operator(self) -> bool:
        return self.seller_id is None

    def may_see(self, owner_seller_id: int | None) -> bool:
        return self.seller_id is None or self.seller_id == owner_seller_id


OPERATOR = Visibility(None)


@dataclass(frozen=True)
class Header:
    name: str
    value: str


@dataclass(frozen=True)
class Outgoing:
    """Everything the transport needs for one attempt; built by the dispatcher or a ping."""

    url: str
    method: Method
    format: Format
    headers: tuple[Header, ...]
    secrets: tuple[str, ...]  # whsec_… secrets that sign this attempt (two during rotation)
    message_id: str  # body `id`, `webhook-id` and `Idempotency-Key`
    sequence: int
    body: dict[str, object]  # the delivery body tree; rendered per `format` by the transport
    timeout_s: float
    allow_private_targets: bool
    # The integrator-keyed HMAC: `hmac_header` carries base64(HMAC-SHA256(hmac_key, body)) when a
    # key is set; None sends no such header.
    hmac_key: str | None = None
    hmac_header: str | None = None


@dataclass(frozen=True)
class SentRequest:
    """An attempt's HTTP request as it went out (secrets included: mask before storing it,
    app.policy.masking)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]  # in the order sent
    body: bytes  # the exact bytes sent


@dataclass(frozen=True)
class SendResult:
    """The outcome of one attempt. The transport never raises for HTTP failures."""

    started_at: datetime
    duration_ms: int
    status_code: int | None = None  # None when no response arrived
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""  # first 4 KiB, decoded leniently
    error: str | None = None  # timeout, connection refused, blocked address …
    retry_after_s: float | None = None  # parsed Retry-After, if any
    request: SentRequest | None = None  # None: refused before a request was built

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
