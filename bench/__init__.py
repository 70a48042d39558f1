"""hookql's benchmark: `python -m bench [--quick] [--out bench/results/latest.json]`.

One run measures this machine's own limits (L1 raw POST/s to a receiver, L2 commits/s, L3
NOTIFY→LISTEN latency) and then the engine against them: throughput of one `serve` and of
`serve` + `worker`, commit→receipt latency at half load, coalescing, SQL statements per event by
batch size, deliveries/s by number of webhooks, and RSS under a large backlog."""
