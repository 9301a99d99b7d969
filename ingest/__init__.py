"""The write path: bodies decoded and validated at the edge (wire.py, validate.py), series
registered (series.py), values and rollup deltas prepared (decimals.py, deltas.py), then
group-committed by binary COPY (committer.py); platform events (events.py); the endpoints
(routes.py)."""
