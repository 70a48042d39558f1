"""hookql's client side: commands that talk to a running server over its GraphQL API (HTTP and the
websocket), as any integrator's program would: `hookql webhooks …` and `hookql listen`. Nothing here
imports the server's floors; the server's answers are the only contract."""
