"""The differential test of compiled webhook queries (app.evaluation.sql → app.store.payload_sql):
for a corpus of queries over the sample marketplace, the payload text the compiled statement
yields is byte for byte the text graphql-core's execution of the query alone yields.

The corpus: every field of every type reachable from the Invoice, Variant and RefundRequest roots
(one query per type, reached by its shortest path, with every relation one level further), deep
nested relations, aliases, inline and named fragments, literal @skip/@include, repeated fields,
`__typename` everywhere, and 240 seeded random selections over the schema. The data: the sample
marketplace plus rows that make the edges show — microsecond timestamps, nulls, quotes, control
characters and emoji in text, currencies with and without a symbol (and a padded one), amounts
past a million and negative totals, an invoice without line items, a line item whose variant is
another seller's. Each runs for the operator and for two sellers (entities of other sellers, and
missing ids, give the missing-node payload). What does not compile (a field missing from the
compiler's table) falls back to graphql-core, and the group's payloads are still identical."""

from __future__ import annotations

import random
from collections.abc import Sequence

import asyncpg
import pytest
from graphql import GraphQLObjectType, get_named_type

from app.api.context import make_context
from app.api.schema import schema
from app.engine.compiled import evaluate_group
from app.evaluation.budgets import Meter
from app.evaluation.compile import CompiledQuery, compile_query
from app.evaluation.execute import Budgets, evaluate
from app.evaluation.sql import FIELDS, fallback_reason
from app.policy.envelope import encode_payload
from app.policy.ids import encode as global_id
from app.types import OPERATOR, EntityType, Visibility
from tests.support.engine_harness import wait_until

NO_LIMITS = Budgets(Meter(), time_ms=3_600_000, payload_bytes=2**31)
GQL = schema._schema
ROOTS = {
    EntityType.INVOICE: ("invoice", "invoices"),
    EntityType.VARIANT: ("variant", "variants"),
    EntityType.REFUND_REQUEST: ("refundRequest", "refund_requests"),
}
VISIBILITIES = [OPERATOR, Visibility(1), Visibility(2)]
MISSING_ID = 10**9
RANDOM_QUERIES = 240

# Edge rows on top of the fixtures (ids of the sample marketplace: 4 sellers, 118 invoices…).
EDGES = [
    # text with quotes, backslashes, control characters, non-ASCII and emoji; a null barcode
    "UPDATE sellers SET name = E'Caf\\u00e9 \"Zo\\u00eb\" \\\\ \\t\\n\\u0001 \\U0001F600' WHERE id = 1",
    "UPDATE products SET title = E'</script> \\u2028 \\u2029 \\u00a0', description = '' WHERE id = 1",
    "UPDATE variants SET barcode = NULL, currency = 'JPY', price = 1234567.89, infinite_quantity = true WHERE id = 1",
    # currencies: one without a symbol, one padded and lower-case; a negative total
    "UPDATE invoices SET currency = 'CHF' WHERE id = 1",
    "UPDATE invoices SET currency = 'eu' WHERE id = 2",
    "UPDATE invoices SET currency = 'NZD' WHERE id = 3",
    "INSERT INTO invoice_amendments (invoice_id, reason, amount) VALUES (3, 'goodwill', -99999.99)",
    "UPDATE invoice_line_items SET unit_price = 1234567.89, quantity = 3 WHERE id = 1",
    # timestamps with and without microseconds
    "UPDATE invoices SET created_at = '2026-09-01 16:00:00.000100+00', updated_at = '2026-09-01 16:00:00.5+00'"
    " WHERE id IN (1, 2)",
    "UPDATE shipments SET shipped_at = NULL, tracking_number = NULL WHERE id = 1",
    # a line item without a variant, and one whose variant is another seller's
    "UPDATE invoice_line_items SET variant_id = NULL WHERE id = 2",
    "UPDATE invoice_line_items li SET variant_id = (SELECT v.id FROM variants v JOIN products p ON p.id = v.product_id"
    " WHERE p.seller_id <> (SELECT seller_id FROM invoices WHERE id = li.invoice_id) ORDER BY v.id LIMIT 1)"
    " WHERE li.id IN (SELECT l.id FROM invoice_line_items l JOIN invoices i ON i.id = l.invoice_id"
    " WHERE i.seller_id IN (1, 2) ORDER BY l.id LIMIT 12)",
    # an invoice without line items, a refund request without lines
    "DELETE FROM shipment_items WHERE invoice_line_item_id IN (SELECT id FROM invoice_line_items WHERE invoice_id = 4)",
    "DELETE FROM refund_request_line_items WHERE invoice_line_item_id IN"
    " (SELECT id FROM invoice_line_items WHERE invoice_id = 4)",
    "DELETE FROM invoice_line_items WHERE invoice_id = 4",
    "DELETE FROM refund_request_line_items WHERE refund_request_id = (SELECT min(id) FROM refund_requests)",
]


def compiled(text: str, entity_type: EntityType) -> CompiledQuery:
    result = compile_query(schema, text, entity_type)
    assert isinstance(result, CompiledQuery), (result, text)
    return result


def object_type(type_: object) -> GraphQLObjectType | None:
    named = get_named_type(type_)  # type: ignore[arg-type]
    return named if isinstance(named, GraphQLObjectType) else None


MONEY_FIELDS = ("amount", "currencyCode", "formatted")


def fields_of(t: GraphQLObjectType, mapped: bool) -> list[str]:
    """`t`'s fields; with `mapped`, only those the compiler's table maps (and `id`), leaving out
    relations to types it does not compile."""
    if not mapped:
        return list(t.fields)
    if t.name == "Money":
        return list(MONEY_FIELDS)
    known = FIELDS.get(t.name, {})
    out = []
    for name, f in t.fields.items():
        target = object_type(f.type)
        if (name == "id" or name in known) and (target is None or target.name == "Money" or target.name in FIELDS):
            out.append(name)
    return out


def leaves(t: GraphQLObjectType, mapped: bool) -> str:
    """Every leaf field of `t`, and every Money field in full."""
    parts = []
    for name in fields_of(t, mapped):
        target = object_type(t.fields[name].type)
        if target is None:
            parts.append(name)
        elif target.name == "Money":
            money = GQL.get_type("Money")
            assert isinstance(money, GraphQLObjectType)
            parts.append(f"{name} {{ __typename {' '.join(fields_of(money, mapped))} }}")
    return " ".join(parts)


def every_field_queries(entity_type: EntityType, mapped: bool = True) -> list[str]:
    """For each type reachable from the root: reach it by its shortest path, select every field
    and every relation's leaves one level further (with `mapped`, the fields the compiler maps)."""
    root_field, _ = ROOTS[entity_type]
    root = GQL.get_type(entity_type.graphql_name)
    assert isinstance(root, GraphQLObjectType)
    paths: dict[str, list[str]] = {root.name: []}
    frontier = [root]
    while frontier:
        t = frontier.pop(0)
        for name in fields_of(t, mapped):
            target = object_type(t.fields[name].type)
            if target is not None and target.name != "Money" and target.name not in paths:
                paths[target.name] = [*paths[t.name], name]
                frontier.append(target)
    out = []
    for type_name, path in paths.items():
        t = GQL.get_type(type_name)
        assert isinstance(t, GraphQLObjectType)
        relations = " ".join(
            f"{name} {{ __typename {leaves(target, mapped)} }}"
            for name in fields_of(t, mapped)
            if (target := object_type(t.fields[name].type)) is not None and target.name != "Money"
        )
        body = f"__typename {leaves(t, mapped)} {relations}"
        for step in reversed(path):
            body = f"{step} {{ {body} }}"
        out.append(f"query($id: ID!) {{ {root_field}(id: $id) {{ {body} }} }}")
    return out


HAND_WRITTEN = {
    EntityType.INVOICE: [
        # node with a type condition, aliases on __typename, Money in several shapes
        "query($id: ID!) { node(id: $id) { ... on Invoice { a: __typename id status"
        " lineItems { quantity unitPrice { amount currencyCode } variant { sku } } total { amount formatted } } } }",
        # named fragments, nested and repeated, aliasing relations
        "query($id: ID!) { node(id: $id) { id ...F } } fragment F on Invoice { total { formatted amount }"
        " items: lineItems { ...L q: quantity } status } fragment L on InvoiceLineItem { variant { sku product"
        " { title seller { name } } } total { formatted } }",
        # deep: the order's other invoices, their shipments' items' line items' invoices
        "query($id: ID!) { invoice(id: $id) { order { buyerName buyerEmail status invoices { legacyId currency"
        " seller { name products { title variants { sku price { formatted } } } }"
        " shipments { carrier shippedAt items { quantity invoiceLineItem { status invoice { id total"
        " { formatted } } } } } } } } }",
        # the Node interface without a condition, a condition that never applies, nested conditions
        "query($id: ID!) { node(id: $id) { __typename id ... on Invoice { ... on Node { id } }"
        " ... on Variant { sku } } }",
        # literal @skip / @include, a field repeated with different sub-selections
        "query($id: ID!) { invoice(id: $id) { status @skip(if: true) currency @include(if: true)"
        " lineItems { quantity } lineItems { status } refundRequests { status lineItems { quantity amount"
        " { formatted } invoiceLineItem { unitPrice { formatted } } } total { amount currencyCode formatted } } } }",
        # both root fields and a top-level __typename, aliased
        "query($id: ID!) { t: __typename a: invoice(id: $id) { amendments { reason amount { amount } }"
        " subtotal { amount } } b: node(id: $id) { id } }",
        # the same alias twice, through an inline fragment and directly
        "query($id: ID!) { invoice(id: $id) { x: lineItems { id } ... on Invoice { x: lineItems { legacyId } } } }",
    ],
    EntityType.VARIANT: [
        "query($id: ID!) { node(id: $id) { ... on Variant { id sku barcode countOnHand infiniteQuantity currency"
        " price { amount currencyCode formatted __typename } product { title description seller { name } } } } }",
        "query($id: ID!) { variant(id: $id) { product { variants { sku } variants { price { amount } } } } }",
    ],
    EntityType.REFUND_REQUEST: [
        "query($id: ID!) { refundRequest(id: $id) { status reason total { formatted } lineItems { status amount"
        " { formatted } invoiceLineItem { total { formatted } invoice { currency } } } invoice { status } } }",
        "query($id: ID!) { node(id: $id) { ...R } } fragment R on RefundRequest { createdAt updatedAt legacyId }",
    ],
}


class RandomQueries:
    """Seeded random selections: random subsets of fields, aliases, fragments (inline and named),
    literal directives, repeated fields and `__typename`s, to a bounded depth."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.aliases = 0
        self.fragments: list[str] = []

    def query(self, entity_type: EntityType) -> str:
        self.aliases, self.fragments = 0, []
        root_field, _ = ROOTS[entity_type]
        t = GQL.get_type(entity_type.graphql_name)
        assert isinstance(t, GraphQLObjectType)
        roots = []
        for _ in range(self.rng.choice((1, 1, 1, 2))):
            sel = self.selection(t, depth=0)
            if self.rng.random() < 0.4:
                roots.append(f"{self.alias()}node(id: $id) {{ __typename ... on {t.name} {{ {sel} }} }}")
            else:
                roots.append(f"{self.alias()}{root_field}(id: $id) {{ {sel} }}")
        if self.rng.random() < 0.2:
            roots.insert(self.rng.randrange(len(roots) + 1), f"{self.alias()}__typename")
        return f"query($id: ID!) {{ {' '.join(roots)} }} {' '.join(self.fragments)}"

    def alias(self) -> str:
        if self.rng.random() < 0.25:
            self.aliases += 1
            return f"a{self.aliases}: "
        return ""

    def directive(self) -> str:
        roll = self.rng.random()
        if roll < 0.05:
            return f" @skip(if: {self.rng.choice(('true', 'false'))})"
        if roll < 0.1:
            return f" @include(if: {self.rng.choice(('true', 'false'))})"
        return ""

    def selection(self, t: GraphQLObjectType, depth: int) -> str:
        names = [*fields_of(t, mapped=True), "__typename"]
        picked = self.rng.sample(names, self.rng.randint(1, min(6, len(names))))
        if self.rng.random() < 0.1:
            picked.append(self.rng.choice(names))  # a field selected twice
        parts = []
        for name in picked:
            target = object_type(t.fields[name].type) if name != "__typename" else None
            if target is None:
                parts.append(f"{self.alias()}{name}{self.directive()}")
            elif target.name == "Money":
                money = self.rng.sample(["amount", "currencyCode", "formatted", "__typename"], self.rng.randint(1, 4))
                parts.append(f"{self.alias()}{name}{self.directive()} {{ {' '.join(money)} }}")
            elif depth < 3:
                parts.append(f"{self.alias()}{name}{self.directive()} {{ {self.selection(target, depth + 1)} }}")
        if not parts:
            parts = ["id"]
        text = " ".join(parts)
        roll = self.rng.random()
        if roll < 0.15:
            return f"... on {t.name} {{ {text} }}"
        if roll < 0.25:
            name = f"F{len(self.fragments)}"
            self.fragments.append(f"fragment {name} on {t.name} {{ {text} }}")
            return f"...{name}"
        if roll < 0.3:
            return f"... on Node {{ id }} {text}"
        return text


def random_corpus() -> dict[EntityType, list[str]]:
    gen = RandomQueries(seed=20261202)
    out: dict[EntityType, list[str]] = {t: [] for t in ROOTS}
    types = list(ROOTS)
    attempts = 0
    while sum(len(v) for v in out.values()) < RANDOM_QUERIES:
        attempts += 1
        assert attempts < RANDOM_QUERIES * 5, "the generator makes too many invalid queries"
        entity_type = types[attempts % len(types)]
        text = gen.query(entity_type)
        if isinstance(compile_query(schema, text, entity_type), CompiledQuery):
            out[entity_type].append(text)  # a few are invalid (an alias reused for another field)
    return out


async def entity_ids(pool: asyncpg.Pool, table: str) -> list[int]:
    return [r["id"] for r in await pool.fetch(f"SELECT id FROM {table} ORDER BY id")]


async def assert_identical(
    pool: asyncpg.Pool,
    queries: Sequence[CompiledQuery],
    ids: list[int],
    visibility: Visibility,
    fields: dict = FIELDS,  # type: ignore[type-arg]
) -> None:
    """The group's payloads through `evaluate_group` (compiled, merged) equal, as text, each
    query's own graphql-core execution."""
    entity_type = queries[0].entity_type
    gids = [global_id(entity_type.graphql_name, i) for i in ids]
    fast = await evaluate_group(
        pool, schema, make_context(pool, visibility), queries, ids, gids, visibility.seller_id, NO_LIMITS, fields
    )
    for q in queries:
        slow = await evaluate(schema, make_context(pool, visibility), q, gids)
        for i, (a, b) in enumerate(zip(fast[q], slow, strict=True)):
            assert isinstance(a, dict), a
            assert encode_payload(a) == encode_payload(b), (q.text, visibility, ids[i])


async def sample_ids(pool: asyncpg.Pool, table: str) -> list[int]:
    """Every row of a small table; of invoices, the edge rows, every seller's invoices that hold
    another seller's variant, and every third invoice (all 118 cost a minute of graphql-core)."""
    if table != "invoices":
        return await entity_ids(pool, table)
    rows = await pool.fetch(
        "SELECT i.id FROM invoices i WHERE i.id <= 6 OR i.id % 3 = 0 OR EXISTS (SELECT 1 FROM invoice_line_items l"
        " JOIN variants v ON v.id = l.variant_id JOIN products p ON p.id = v.product_id"
        " WHERE l.invoice_id = i.id AND p.seller_id <> i.seller_id) ORDER BY i.id"
    )
    return [r["id"] for r in rows]


@pytest.fixture
async def marketplace(fixture_pool: asyncpg.Pool) -> asyncpg.Pool:
    async with fixture_pool.acquire() as conn, conn.transaction():
        for statement in EDGES:
            await conn.execute(statement)
    # sellers 1 and 2 each have an invoice whose line item is another seller's variant
    foreign = await fixture_pool.fetchval(
        "SELECT count(DISTINCT i.seller_id) FROM invoice_line_items l JOIN invoices i ON i.id = l.invoice_id"
        " JOIN variants v ON v.id = l.variant_id JOIN products p ON p.id = v.product_id"
        " WHERE i.seller_id IN (1, 2) AND p.seller_id <> i.seller_id"
    )
    assert foreign == 2
    return fixture_pool


@pytest.mark.parametrize("entity_type", list(ROOTS))
async def test_every_field_of_every_reachable_type_compiles_to_identical_payloads(
    marketplace: asyncpg.Pool, entity_type: EntityType
) -> None:
    # given a query per reachable type selecting all its fields, and the hand-written corpus
    texts = every_field_queries(entity_type) + HAND_WRITTEN[entity_type]
    queries = [compiled(t, entity_type) for t in texts]
    # then every one of them compiles (nothing in the marketplace schema falls back)…
    assert {q.text: fallback_reason(schema, q) for q in queries} == {q.text: None for q in queries}
    # …and for the sampled entities (and a missing one), for the operator and two sellers, each query's
    # payload through the compiled group is graphql-core's, byte for byte
    ids = [*await sample_ids(marketplace, ROOTS[entity_type][1]), MISSING_ID]
    for visibility in VISIBILITIES:
        await assert_identical(marketplace, queries, ids, visibility)


def test_the_corpus_reaches_every_field_of_every_type() -> None:
    # the every-field queries select each field of each type the compiler maps at least once
    selected: set[tuple[str, str]] = set()
    for entity_type in ROOTS:
        for text in every_field_queries(entity_type):
            for type_name, fields in FIELDS.items():
                selected.update((type_name, f) for f in fields if f" {f} " in text)
    assert {(t, f) for t, fields in FIELDS.items() for f in fields} <= selected


async def test_random_queries_compile_to_identical_payloads(marketplace: asyncpg.Pool) -> None:
    # given 240 seeded random queries over the three roots
    corpus = random_corpus()
    rng = random.Random(7)
    for entity_type, texts in corpus.items():
        queries = [compiled(t, entity_type) for t in texts]
        assert [fallback_reason(schema, q) for q in queries] == [None] * len(queries)
        all_ids = await entity_ids(marketplace, ROOTS[entity_type][1])
        # when they run in groups of 10 (merged, one statement per group) on a sample of entities
        for start in range(0, len(queries), 10):
            ids = [*rng.sample(all_ids, min(8, len(all_ids))), MISSING_ID]
            visibility = VISIBILITIES[(start // 10) % len(VISIBILITIES)]
            # then each payload is the query's own graphql-core payload
            await assert_identical(marketplace, queries[start : start + 10], ids, visibility)


async def test_a_field_without_sql_form_falls_back_and_the_group_stays_identical(marketplace: asyncpg.Pool) -> None:
    # given a field table without Invoice.total, and a group where one query selects it
    table = {**FIELDS, "Invoice": {k: v for k, v in FIELDS["Invoice"].items() if k != "total"}}
    with_total = compiled("query($id: ID!) { invoice(id: $id) { id total { formatted } } }", EntityType.INVOICE)
    without = compiled("query($id: ID!) { invoice(id: $id) { id subtotal { formatted } } }", EntityType.INVOICE)
    # then that query says why it falls back, the other compiles
    assert fallback_reason(schema, with_total, table) == "Invoice.total has no SQL form"
    assert fallback_reason(schema, without, table) is None
    # and the group's payloads (one compiled, one by graphql-core) are each query's own
    ids = [*(await entity_ids(marketplace, "invoices"))[:20], MISSING_ID]
    for visibility in VISIBILITIES:
        await assert_identical(marketplace, [with_total, without], ids, visibility, table)


async def test_queries_selecting_unmapped_fields_fall_back_and_stay_identical(marketplace: asyncpg.Pool) -> None:
    # given every field of every reachable type, the ones the compiler does not map included
    # (the Marketplacer fields: …Cents, …Formatted, externalIds, optionValues …)
    for entity_type in ROOTS:
        queries = [compiled(t, entity_type) for t in every_field_queries(entity_type, mapped=False)]
        reasons = [fallback_reason(schema, q) for q in queries]
        # then those that select one say which, and the group's payloads are graphql-core's
        assert any(r is not None and "has no SQL form" in r for r in reasons)
        ids = [*(await sample_ids(marketplace, ROOTS[entity_type][1]))[:6], MISSING_ID]
        await assert_identical(marketplace, queries, ids, VISIBILITIES[entity_type is EntityType.VARIANT])


async def test_deleted_entities_give_the_missing_node_payload(marketplace: asyncpg.Pool) -> None:
    # given a refund request deleted after its webhook's change was captured
    rid = (await entity_ids(marketplace, "refund_requests"))[-1]
    await marketplace.execute("DELETE FROM refund_requests WHERE id = $1", rid)
    queries = [
        compiled("query($id: ID!) { node(id: $id) { id } }", EntityType.REFUND_REQUEST),
        compiled("query($id: ID!) { __typename refundRequest(id: $id) { id } }", EntityType.REFUND_REQUEST),
    ]
    gid = global_id("RefundRequest", rid)
    out = await evaluate_group(
        marketplace, schema, make_context(marketplace, OPERATOR), queries, [rid], [gid], None, NO_LIMITS
    )
    # then the payloads are graphql-core's: the entity is null
    assert [encode_payload(out[q][0]) for q in queries] == [
        '{"data":{"node":null}}',
        '{"data":{"__typename":"Query","refundRequest":null}}',
    ]
    await assert_identical(marketplace, queries, [rid], OPERATOR)


async def test_a_statement_over_its_time_budget_is_cancelled_and_graphql_core_attributes_the_breach(
    marketplace: asyncpg.Pool,
) -> None:
    # given a query whose statement builds thousands of rows per invoice, and a 1 ms budget
    inner = "legacyId"
    for _ in range(3):
        inner = f"products {{ legacyId seller {{ {inner} }} }}"
    heavy = compiled("query($id: ID!) { invoice(id: $id) { seller { " + inner + " } } }", EntityType.INVOICE)
    ids = (await entity_ids(marketplace, "invoices"))[:5]
    gids = [global_id("Invoice", i) for i in ids]
    tight = Budgets(Meter(), time_ms=1, payload_bytes=2**31)
    # when the group is evaluated
    out = await evaluate_group(
        marketplace, schema, make_context(marketplace, OPERATOR), [heavy], ids, gids, None, tight
    )
    # then the statement (or its projection) ran over, and graphql-core, evaluating the group
    # instead, records the query's time breach for every entity
    assert out[heavy] == [tight.time_breach()] * 5

    # and nothing of the statement is left running on the server
    async def none_running() -> bool:
        count = await marketplace.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'"
            " AND query LIKE '%json_build_object%' AND pid <> pg_backend_pid()"
        )
        return bool(count == 0)

    await wait_until(none_running)
