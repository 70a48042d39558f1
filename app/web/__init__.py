"""The HTTP application of `hookql serve`: Starlette routes for /graphql (from app.api), the
dashboard (with its webhook form and 24-hour chart), /metrics and /healthz, with their templates
and static assets."""
