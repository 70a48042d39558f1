"""Merging refuses queries it cannot project faithfully (merged results: integration/test_merge.py)."""

from app.api.schema import schema
from app.evaluation.compile import CompiledQuery, compile_query
from app.evaluation.merge import merge_queries
from app.types import EntityType


def compiled(query: str, entity_type: EntityType = EntityType.INVOICE) -> CompiledQuery:
    result = compile_query(schema, query, entity_type)
    assert isinstance(result, CompiledQuery), result
    return result


def test_queries_that_cannot_be_projected_faithfully_are_not_merged() -> None:
    # given a query with an introspection field beside the entity (accepted? then never merged)
    plain = compiled("query($id: ID!) { invoice(id: $id) { status } }")
    typed = compile_query(schema, "query($id: ID!) { invoice(id: $id) { __type(name: \"Invoice\") { name } } }",
                          EntityType.INVOICE)
    if isinstance(typed, CompiledQuery):
        assert merge_queries(schema._schema, [plain, typed]) is None
    # and two ordinary queries always merge into a document that validates
    other = compiled("query($id: ID!) { invoice(id: $id) { currency } }")
    assert merge_queries(schema._schema, [plain, other]) is not None

