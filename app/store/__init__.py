"""Every SQL statement of webhooks and the engine, one module per concept."""
