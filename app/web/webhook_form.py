"""The dashboard's webhook form: what its fields hold, and how they become the GraphQL inputs
(`WebhookCreateInput`, `WebhookUpdateInput`) that `app.api.webhooks.create_webhook` and
`update_webhook` validate and store — the form adds no rule of its own beyond reading its text.

Headers are one `Name: value` a line. Values whose names look secret (app.policy.masking) are
shown masked; a line that still carries the mask keeps the stored value of its header."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from app.api.webhook_inputs import HeaderInput, WebhookCreateInput, WebhookUpdateInput
from app.api.webhook_types import FieldError
from app.evaluation.compile import DEFAULT_QUERY
from app.policy.masking import MASK, is_secret_name
from app.types import Action, EntityType, Format, Method

FIELDS = ("name", "url", "type", "query", "headers", "events", "method", "format", "enabled", "entity_id")
# An API error's `field` (`headers.2.value`, `maxAttempts`, `entityId`) → the form field it is shown beside.
_API_FIELDS = {"entityId": "entity_id"}


class Form:
    """An urlencoded form: each name's values in order."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)

    def get(self, name: str, default: str = "") -> str:
        return self._values.get(name, [default])[0]

    def getlist(self, name: str) -> list[str]:
        return self._values.get(name, [])


@dataclass(frozen=True)
class WebhookForm:
    """The form's fields, as text (what the page shows back after a refused submit)."""

    name: str = ""
    url: str = ""
    type: str = EntityType.INVOICE.value
    query: str = DEFAULT_QUERY
    headers: str = ""
    events: tuple[str, ...] = tuple(a.value for a in Action)
    method: str = Method.POST.value
    format: str = Format.JSON.value
    enabled: bool = True
    entity_id: str = ""  # the preview's entity: a global ID or a number
    errors: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of_webhook(cls, row: Any) -> WebhookForm:
        """A stored webhook's fields, secret header values masked."""
        return cls(
            name=row["name"],
            url=row["url"],
            type=row["entity_type"],
            query=row["query"],
            headers="\n".join(
                f"{h['name']}: {MASK if is_secret_name(h['name']) else h['value']}" for h in row["headers"]
            ),
            events=tuple(row["events"]),
            method=row["method"],
            format=row["format"],
            enabled=row["enabled"],
        )

    @classmethod
    def posted(cls, form: Form) -> WebhookForm:
        return cls(
            name=form.get("name"),
            url=form.get("url").strip(),
            type=form.get("type"),
            query=form.get("query"),
            headers=form.get("headers"),
            events=tuple(form.getlist("events")),
            method=form.get("method"),
            format=form.get("format"),
            enabled=form.get("enabled") == "on",
            entity_id=form.get("entity_id").strip(),
        )

    def with_errors(self, errors: list[FieldError]) -> WebhookForm:
        """The form with `errors` (the API's, or the form's own) beside their fields; an error of a
        field the form lacks is shown at its top (`_form`)."""
        shown: dict[str, list[str]] = {k: list(v) for k, v in self.errors.items()}
        for error in errors:
            head = error.field.split(".", 1)[0]
            key = _API_FIELDS.get(head, head)
            shown.setdefault(key if key in FIELDS else "_form", []).append(error.message)
        return replace(self, errors=shown)

    # -- the form's own reading: its text into typed values ------------------------------------

    def _choice(self, enum: Any, name: str, value: str, errors: list[FieldError]) -> Any:
        try:
            return enum(value)
        except ValueError:
            choices = ", ".join(m.value for m in enum)
            errors.append(FieldError(field=name, message=f"{name} must be one of {choices}"))
            return None

    def _headers(self, stored: list[dict[str, str]], errors: list[FieldError]) -> list[HeaderInput]:
        by_name = {h["name"].lower(): h["value"] for h in stored}
        headers: list[HeaderInput] = []
        for n, line in enumerate(self.headers.splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            if not sep:
                errors.append(FieldError(field="headers", message=f"line {n} is not `Name: value`"))
                continue
            name, value = name.strip(), value.strip()
            if value == MASK and name.lower() in by_name:
                value = by_name[name.lower()]  # shown masked, left as it was
            headers.append(HeaderInput(name=name, value=value))
        return headers

    def _typed(self, stored_headers: list[dict[str, str]]) -> tuple[dict[str, Any], list[FieldError]]:
        errors: list[FieldError] = []
        values = {
            "name": self.name,
            "url": self.url,
            "type": self._choice(EntityType, "type", self.type, errors),
            "query": self.query,
            "headers": self._headers(stored_headers, errors),
            "events": [a for a in (self._choice(Action, "events", e, errors) for e in self.events) if a],
            "method": self._choice(Method, "method", self.method, errors),
            "format": self._choice(Format, "format", self.format, errors),
            "enabled": self.enabled,
        }
        return values, errors

    # Both return the input and the form's own errors. The input is None when a choice is not
    # one the form offers (only a hand-made POST does that); otherwise it is built even beside
    # errors (a header line without a colon is left out), so the API's rules can report on the
    # other fields in the same answer.

    def create_input(self) -> tuple[WebhookCreateInput | None, list[FieldError]]:
        values, errors = self._typed([])
        return (None if _bad_choice(errors) else WebhookCreateInput(**values)), errors

    def update_input(self, current: Any) -> tuple[WebhookUpdateInput | None, list[FieldError]]:
        """Only what differs from `current` (the stored row): an unchanged URL is not resolved
        again, an unchanged query not recompiled, an unchanged `enabled` not reset."""
        values, errors = self._typed(list(current["headers"]))
        if _bad_choice(errors):
            return None, errors
        stored = {
            "name": current["name"],
            "url": current["url"],
            "type": EntityType(current["entity_type"]),
            "query": current["query"],
            "headers": [HeaderInput(name=h["name"], value=h["value"]) for h in current["headers"]],
            "events": [Action(e) for e in current["events"]],
            "method": Method(current["method"]),
            "format": Format(current["format"]),
            "enabled": current["enabled"],
        }
        changed = {k: v for k, v in values.items() if v != stored[k]}
        return WebhookUpdateInput(**changed), errors


def _bad_choice(errors: list[FieldError]) -> bool:
    return any(e.field != "headers" for e in errors)
