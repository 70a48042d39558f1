"""Every SQL statement hookql runs, as named queries (`sql/*.sql`, loaded by `queries`) or, where
table names vary, as whitelisted templates; typed rows across the seam; the pool, the embedded
server and the migrations. Imports only policy and the leaves."""
