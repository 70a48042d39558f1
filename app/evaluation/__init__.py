"""Webhook queries: compile (parse, validate, cost), merge the queries of one entity type and
visibility, then either compile the group to a SQL plan (`sql`; the store renders it) or execute
it with graphql-core within its budgets. The schema and the context factory are passed in, so
nothing here imports the API package."""
