"""Webhook queries: compile (parse, validate, cost), merge the queries of one entity type and
visibility, execute them within their budgets. graphql-core only; the schema and the context
factory are passed in, so nothing here imports the API package."""
