"""The GraphQL API (strawberry): marketplace types, webhooks and their event log, the live event
stream, with per-key cost limits and quotas. The top of the house below the web app: it may import
every floor beneath it, and nothing on the delivery side imports it."""
