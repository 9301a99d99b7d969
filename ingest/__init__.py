"""The write path: bodies decoded and validated at the edge (wire.py, validate.py; the other
protocols: influx.py, statsd.py, remote_write.py, otlp.py, with samples.py), series registered
(series.py), running totals turned into increases (totals.py), histogram points into
distributions (distributions.py), values, rollup deltas and the group's rows prepared
(decimals.py, deltas.py, rows.py), then group-committed by binary COPY (committer.py); platform
events (events.py); the endpoints (routes.py)."""
