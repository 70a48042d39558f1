"""The GraphQL API: marketplace types, webhooks, the live event stream."""
