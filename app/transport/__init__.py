"""The network edge: one HTTP attempt → a `SendResult` that never raises (`http`), and where a
webhook may point (`netguard`, the SSRF rules). Imports only policy and the leaves."""
