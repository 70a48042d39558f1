"""hookql's client side: `hookql webhooks …` and `hookql listen`, commands that talk to a running
server over its GraphQL API (HTTP and the websocket) as any integrator's program would. The server's
answers are the only contract: imports only policy and the leaves, never the server's floors (api,
engine, web, store …)."""
