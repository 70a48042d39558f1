"""The HTTP application of `hookql serve`: Starlette routes for /graphql (from app.api), the
dashboard, /metrics and /healthz, with their templates and static assets."""
