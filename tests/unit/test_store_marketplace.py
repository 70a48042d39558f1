"""app.store.marketplace: the API's per-table statements come only from its whitelist of tables
and links, with every request value a parameter."""

from __future__ import annotations

import pytest

from app.policy import marketplace_tables
from app.store import marketplace


def test_the_tables_read_by_id_are_the_node_types_and_each_but_orders_has_its_owner() -> None:
    # one map from GraphQL type to table (app.policy.marketplace_tables); the store knows how to
    # reach each table's seller, orders aside (a seller's when it holds one of its invoices)
    assert set(marketplace.TABLES) == set(marketplace_tables.TABLES.values())
    assert set(marketplace.OWNERSHIP) == set(marketplace.TABLES) - {"orders"}
    # and the children-only types are read along the store's links, never by id
    links = {table for table, _ in marketplace.CHILDREN.values()}
    assert set(marketplace_tables.CHILD_TABLES.values()) <= links - set(marketplace.TABLES)


@pytest.mark.parametrize("table", marketplace.TABLES)
def test_a_by_id_statement_per_table_takes_the_ids_and_the_viewer(table: str) -> None:
    query = marketplace.by_id(table)
    assert query.params == ("ids", "seller_id")
    assert query.sql.startswith(f"SELECT t.* FROM {table} t")


@pytest.mark.parametrize("link", marketplace.CHILDREN)
def test_children_filter_by_seller_only_for_an_orders_invoices(link: str) -> None:
    query = marketplace.children(link)
    table, fk = marketplace.CHILDREN[link]
    assert f"FROM {table} t WHERE t.{fk} = ANY($1::bigint[])" in query.sql
    assert query.params == (("parent_ids", "seller_id") if table == "invoices" else ("parent_ids",))


def test_a_page_is_keyset_ordered_and_limited() -> None:
    query = marketplace.page("variants")
    assert query.params == ("after_id", "seller_id", "limit")
    assert query.sql.endswith("ORDER BY t.id LIMIT $3")


@pytest.mark.parametrize("name", ["orders; DROP TABLE webhooks", "webhooks", "api_keys", ""])
def test_a_name_outside_the_whitelist_is_a_key_error_never_sql(name: str) -> None:
    with pytest.raises(KeyError):
        marketplace.page(name)
    with pytest.raises(KeyError):
        marketplace.children(name)
    with pytest.raises(KeyError):
        marketplace.by_id(name)
