"""Peers in hookql's bench (issue #14): the same webhook workload through off-the-shelf
PostgreSQL job queues — pgqueuer, procrastinate and graphile-worker — in the same run as
`hookql serve`. `python -m bench --peers` runs them; bench/peers/scenario.py measures."""
