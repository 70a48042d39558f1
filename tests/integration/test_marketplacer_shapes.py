"""Marketplacer-shaped queries (issue #15): the fields integrators' published Marketplacer queries
select register and preview without errors on the sample marketplace, carry the fixtures' data,
keep seller visibility, and a change to one of their new rows re-evaluates the owner."""

from typing import Any

import asyncpg
import pytest

from app.api.ids import to_global_id
from app.types import OPERATOR, Visibility
from tests.integration.test_api_webhooks import create, gql
from tests.integration.test_capture import changes_of

# Shaped as Marketplacer's webhook queries are (node + inline fragment, camelCase, …Cents and
# …Formatted money, statusFlags, externalIds { key value }, optionValues { nodes { … } }).
INVOICE_QUERY = """query($id: ID!) {
  node(id: $id) {
    ... on Invoice {
      id legacyId statusFlags totalCents totalFormatted subtotalCents
      externalIds { key value }
      seller { id name businessName externalIds { key value } }
      order { id legacyId externalId totalCents totalFormatted externalIds { key value } }
      lineItems {
        id quantity variantId unitPriceCents unitPriceFormatted totalCents
        variant { id sku barcode lowestPrice lowestPriceCents lowestPriceFormatted
                  optionValues { nodes { name optionType { name } } } }
      }
      shipments { id carrier trackingNumber trackingLink shippedItems { id lineItem { id } quantity } }
      amendments { reason amountCents amountFormatted }
    }
  }
}"""
VARIANT_QUERY = """query($id: ID!) {
  variant(id: $id) {
    id legacyId sku barcode countOnHand priceCents priceFormatted lowestPrice lowestPriceCents
    optionValues { nodes { name optionType { name } } edges { node { legacyId } } }
    product { title seller { businessName } }
  }
}"""
REFUND_QUERY = """query($id: ID!) {
  node(id: $id) {
    ... on RefundRequest {
      id status totalCents totalFormatted
      lineItems { id quantity reason amountCents amountFormatted invoiceLineItem { id variantId } }
      invoice { legacyId statusFlags order { externalId } }
    }
  }
}"""
PREVIEW = """mutation($type: WebhookType!, $q: String!, $id: ID!) {
  webhookPreview(type: $type, query: $q, entityId: $id) { body errors { field message } } }"""
SHAPES = [("INVOICE", INVOICE_QUERY, "Invoice"), ("VARIANT", VARIANT_QUERY, "Variant"),
          ("REFUND_REQUEST", REFUND_QUERY, "RefundRequest")]


async def _preview(pool: asyncpg.Pool, type_: str, query: str, entity: str, viewer: Visibility = OPERATOR) -> Any:
    data = await gql(pool, PREVIEW, viewer, type=type_, q=query, id=entity)
    assert data["webhookPreview"]["errors"] == []
    return data["webhookPreview"]["body"]["payload"]


@pytest.mark.parametrize(("type_", "query", "type_name"), SHAPES)
async def test_marketplacer_shaped_queries_register_and_preview_for_every_entity(
    fixture_pool: asyncpg.Pool, type_: str, query: str, type_name: str
) -> None:
    out = await create(fixture_pool, type=type_, query=query)
    assert out["errors"] == [] and out["webhook"]["query"] == query
    table = {"Invoice": "invoices", "Variant": "variants", "RefundRequest": "refund_requests"}[type_name]
    for row in await fixture_pool.fetch(f"SELECT id FROM {table} ORDER BY id"):
        payload = await _preview(fixture_pool, type_, query, to_global_id(type_name, row["id"]))
        assert "errors" not in payload, (row["id"], payload.get("errors"))
        assert next(iter(payload["data"].values())) is not None


async def test_the_new_fields_carry_the_fixtures_data(fixture_pool: asyncpg.Pool) -> None:
    p = fixture_pool
    # an invoice with a shipment, an amendment-free total, external ids and option values
    invoice_id = await p.fetchval(
        "SELECT s.invoice_id FROM shipments s JOIN external_ids x ON x.invoice_id = s.invoice_id ORDER BY 1 LIMIT 1"
    )
    node = (await _preview(p, "INVOICE", INVOICE_QUERY, to_global_id("Invoice", invoice_id)))["data"]["node"]
    invoice = await p.fetchrow("SELECT * FROM invoices WHERE id = $1", invoice_id)
    assert "PAID" in node["statusFlags"] and ({"SHIPPED", "PARTIALLY_SHIPPED"} & set(node["statusFlags"]))
    subtotal = await p.fetchval(
        "SELECT sum(quantity * unit_price) FROM invoice_line_items WHERE invoice_id = $1", invoice_id
    )
    assert node["subtotalCents"] == int(subtotal * 100)
    assert node["externalIds"] == [
        {"key": r["key"], "value": r["value"]}
        for r in await p.fetch("SELECT key, value FROM external_ids WHERE invoice_id = $1 ORDER BY id", invoice_id)
    ]
    seller = await p.fetchrow("SELECT * FROM sellers WHERE id = $1", invoice["seller_id"])
    assert node["seller"]["businessName"] == seller["business_name"] and seller["business_name"]
    assert node["seller"]["externalIds"] == [{"key": "erp_vendor_id", "value": f"V{1000 + seller['id']}"}]
    order = await p.fetchrow("SELECT * FROM orders WHERE id = $1", invoice["order_id"])
    assert node["order"]["externalId"] == order["external_id"]
    [shipment] = node["shipments"]
    row = await p.fetchrow("SELECT * FROM shipments WHERE invoice_id = $1", invoice_id)
    assert shipment["trackingLink"] == row["tracking_link"] and row["tracking_number"] in row["tracking_link"]
    line_ids = {li["id"] for li in node["lineItems"]}
    assert shipment["shippedItems"] and all(i["lineItem"]["id"] in line_ids for i in shipment["shippedItems"])
    for line in node["lineItems"]:
        assert line["variantId"] == line["variant"]["id"]
        assert line["totalCents"] == line["unitPriceCents"] * line["quantity"]
        assert line["unitPriceFormatted"].replace(",", "").lstrip("$€£A").split()[0] in {
            f"{line['unitPriceCents'] / 100:.2f}"
        }
        [option] = line["variant"]["optionValues"]["nodes"]
        assert option["optionType"]["name"] in ("Size", "Colour")
        assert line["variant"]["sku"].endswith("-" + option["name"].upper())


async def test_lowest_price_is_the_sale_price_when_lower(fixture_pool: asyncpg.Pool) -> None:
    variant = await fixture_pool.fetchrow("SELECT * FROM variants WHERE sale_price IS NOT NULL ORDER BY id LIMIT 1")
    payload = await _preview(fixture_pool, "VARIANT", VARIANT_QUERY, to_global_id("Variant", variant["id"]))
    v = payload["data"]["variant"]
    assert v["lowestPrice"] == str(variant["sale_price"]) and v["lowestPriceCents"] == int(variant["sale_price"] * 100)
    assert v["priceCents"] == int(variant["price"] * 100)
    await fixture_pool.execute("UPDATE variants SET sale_price = NULL WHERE id = $1", variant["id"])
    payload = await _preview(fixture_pool, "VARIANT", VARIANT_QUERY, to_global_id("Variant", variant["id"]))
    assert payload["data"]["variant"]["lowestPrice"] == str(variant["price"])


async def test_refund_line_reasons_and_order_totals(fixture_pool: asyncpg.Pool) -> None:
    refund = await fixture_pool.fetchval(
        "SELECT refund_request_id FROM refund_request_line_items WHERE reason <> '' LIMIT 1"
    )
    payload = await _preview(fixture_pool, "REFUND_REQUEST", REFUND_QUERY, to_global_id("RefundRequest", refund))
    reasons = [li["reason"] for li in payload["data"]["node"]["lineItems"]]
    stored = await fixture_pool.fetch(
        "SELECT reason FROM refund_request_line_items WHERE refund_request_id = $1 ORDER BY id", refund
    )
    assert reasons == [r["reason"] for r in stored] and any(reasons)


async def test_seller_visibility_applies_to_the_new_fields(fixture_pool: asyncpg.Pool) -> None:
    p = fixture_pool
    # an order shared by two sellers, with external ids of its own
    order = await p.fetchval(
        "SELECT order_id FROM invoices GROUP BY order_id HAVING count(DISTINCT seller_id) > 1 "
        "AND order_id IN (SELECT order_id FROM external_ids WHERE order_id IS NOT NULL) ORDER BY 1 LIMIT 1"
    )
    mine, theirs = await p.fetch("SELECT id, seller_id FROM invoices WHERE order_id = $1 ORDER BY id LIMIT 2", order)
    seller = Visibility(mine["seller_id"])
    # the seller's own invoice shows the order, its external ids and a total of the seller's invoices only
    node = (await _preview(p, "INVOICE", INVOICE_QUERY, to_global_id("Invoice", mine["id"]), seller))["data"]["node"]
    as_operator = (await _preview(p, "INVOICE", INVOICE_QUERY, to_global_id("Invoice", mine["id"])))["data"]["node"]
    assert node["order"]["externalIds"] == as_operator["order"]["externalIds"] != []
    assert node["order"]["totalCents"] == node["totalCents"]
    assert as_operator["order"]["totalCents"] is None or as_operator["order"]["totalCents"] != node["totalCents"]
    # another seller's invoice is not found, with none of its new fields
    foreign = await _preview(p, "INVOICE", INVOICE_QUERY, to_global_id("Invoice", theirs["id"]), seller)
    assert foreign == {"data": {"node": None}}
    # nor is another seller's variant, option values and all
    variant = await p.fetchval(
        "SELECT v.id FROM variants v JOIN products pr ON pr.id = v.product_id WHERE pr.seller_id <> $1 LIMIT 1",
        mine["seller_id"],
    )
    foreign = await _preview(p, "VARIANT", VARIANT_QUERY, to_global_id("Variant", variant), seller)
    assert foreign == {"data": {"variant": None}}


async def test_the_new_owned_rows_are_changes_of_their_owner(fixture_pool: asyncpg.Pool) -> None:
    p = fixture_pool
    invoice = await p.fetchrow("SELECT id, order_id, seller_id FROM invoices ORDER BY id LIMIT 1")
    order_invoices = {
        ("invoice", r["id"], "updated", r["seller_id"])
        for r in await p.fetch("SELECT id, seller_id FROM invoices WHERE order_id = $1", invoice["order_id"])
    }
    # an invoice's external id is the invoice's; an order's is its invoices'
    insert = "INSERT INTO external_ids (invoice_id, key, value) VALUES ($1, 'erp', 'A1')"
    assert await changes_of(p, insert, invoice["id"]) == {("invoice", invoice["id"], "updated", invoice["seller_id"])}
    insert = "INSERT INTO external_ids (order_id, key, value) VALUES ($1, 'erp', 'O1')"
    assert await changes_of(p, insert, invoice["order_id"]) == order_invoices
    assert await changes_of(p, "UPDATE external_ids SET value = 'O2' WHERE order_id = $1 AND key = 'erp'",
                            invoice["order_id"]) == order_invoices
    assert await changes_of(p, "DELETE FROM external_ids WHERE invoice_id = $1", invoice["id"]) == {
        ("invoice", invoice["id"], "updated", invoice["seller_id"])
    }
    # a seller's external ids are no webhook entity's (sellers are not captured)
    assert await changes_of(p, "UPDATE external_ids SET value = 'V9' WHERE seller_id = 1") == set()
    # a variant's option value links are the variant's; renaming a value or a type touches its variants
    variant = await p.fetchrow(
        "SELECT v.id, pr.seller_id, l.option_value_id FROM variants v JOIN products pr ON pr.id = v.product_id "
        "JOIN variant_option_values l ON l.variant_id = v.id ORDER BY v.id LIMIT 1"
    )
    mine = ("variant", variant["id"], "updated", variant["seller_id"])
    assert await changes_of(p, "DELETE FROM variant_option_values WHERE variant_id = $1", variant["id"]) == {mine}
    insert = "INSERT INTO variant_option_values (variant_id, option_value_id) VALUES ($1, $2)"
    assert await changes_of(p, insert, variant["id"], variant["option_value_id"]) == {mine}
    sharing = {
        ("variant", r["id"], "updated", r["seller_id"])
        for r in await p.fetch(
            "SELECT v.id, pr.seller_id FROM variant_option_values l JOIN variants v ON v.id = l.variant_id "
            "JOIN products pr ON pr.id = v.product_id WHERE l.option_value_id = $1",
            variant["option_value_id"],
        )
    }
    assert mine in sharing
    rename = "UPDATE option_values SET name = name || '!' WHERE id = $1"
    assert await changes_of(p, rename, variant["option_value_id"]) == sharing
    type_id = await p.fetchval("SELECT option_type_id FROM option_values WHERE id = $1", variant["option_value_id"])
    changed = await changes_of(p, "UPDATE option_types SET name = name || '!' WHERE id = $1", type_id)
    assert sharing <= changed and all(c[0] == "variant" for c in changed)
    # the new columns of captured tables are changes like any other
    assert await changes_of(p, "UPDATE shipments SET tracking_link = 'https://t.example/1' WHERE invoice_id = $1",
                            invoice["id"]) <= {("invoice", invoice["id"], "updated", invoice["seller_id"])}
