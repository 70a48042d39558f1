"""The dashboard's webhook form into the API's inputs (app.web.webhook_form)."""

from __future__ import annotations

from app.api.webhook_inputs import HeaderInput
from app.api.webhook_types import FieldError
from app.policy.masking import MASK
from app.types import Action, EntityType, Format
from app.web.webhook_form import Form, WebhookForm

STORED = {
    "name": "ERP",
    "url": "https://erp.example/in",
    "entity_type": "invoice",
    "query": "query($id: ID!) { node(id: $id) { id } }",
    "headers": [{"name": "Authorization", "value": "Bearer t0k"}, {"name": "X-Tenant", "value": "acme"}],
    "events": ["created", "updated"],
    "method": "POST",
    "format": "json",
    "enabled": True,
}


def posted(**fields: str | list[str]) -> WebhookForm:
    pairs = [(k, v) for k, value in fields.items() for v in (value if isinstance(value, list) else [value])]
    return WebhookForm.posted(Form(pairs))


def test_a_stored_webhook_shows_its_secret_headers_masked() -> None:
    form = WebhookForm.of_webhook(STORED)
    assert form.headers == f"Authorization: {MASK}\nX-Tenant: acme"
    assert "t0k" not in repr(form)


def test_an_unchanged_form_updates_nothing_and_keeps_masked_values() -> None:
    shown = WebhookForm.of_webhook(STORED)
    given, errors = shown.update_input(STORED)
    assert errors == [] and given is not None
    assert all(getattr(given, f) is None for f in ("name", "url", "type", "query", "headers", "events", "enabled"))


def test_changed_fields_only_and_a_replaced_secret() -> None:
    form = posted(
        name="ERP", url="https://new.example/in", type="invoice", query=STORED["query"],
        headers="Authorization: Bearer new\nX-Tenant: acme", events=["created", "updated"],
        method="POST", format="xml", enabled="on",
    )  # fmt: skip
    given, errors = form.update_input(STORED)
    assert errors == [] and given is not None
    assert given.url == "https://new.example/in" and given.format is Format.XML
    assert given.headers == [
        HeaderInput(name="Authorization", value="Bearer new"),
        HeaderInput(name="X-Tenant", value="acme"),
    ]
    assert given.name is None and given.enabled is None and given.events is None


def test_create_input_and_the_forms_own_errors() -> None:
    given, errors = posted(
        name="n", url="https://x.example", type="variant", query="q", headers="X-A: 1\nno colon here\n\n",
        events=["deleted"], method="PUT", format="form",
    ).create_input()
    assert given is not None and given.type is EntityType.VARIANT and given.events == [Action.DELETED]
    assert given.enabled is False  # an unticked box
    assert given.headers == [HeaderInput(name="X-A", value="1")]
    assert [(e.field, e.message) for e in errors] == [("headers", "line 2 is not `Name: value`")]
    # a choice the form never offers: no input at all
    given, errors = posted(type="<script>", method="POST", format="json").create_input()
    assert given is None and errors[0].field == "type"


def test_api_errors_land_beside_their_fields() -> None:
    form = WebhookForm().with_errors(
        [FieldError(field="headers.2.value", message="bad"), FieldError(field="entityId", message="e"),
         FieldError(field="sellerId", message="quota")]
    )  # fmt: skip
    assert form.errors == {"headers": ["bad"], "entity_id": ["e"], "_form": ["quota"]}
