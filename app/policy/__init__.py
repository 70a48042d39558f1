"""Pure policy: plain functions and small classes on values — coalescing, retry, signing, the
delivery envelope, global IDs, send lanes, request quotas and cost budgets, the attempt builder, the masking of
secrets in recorded requests — and the plan vocabulary compiled webhook queries share between
evaluation and store. No I/O, no clock and no randomness of their own (the caller passes `now` and
a `random`); imports only app.types and app.config."""
