"""The read path: which rollup tier answers which part of a window (plan.py), statistics and
time series (statistics.py, timeseries.py), metric and tag listings (catalog.py), user, agent
and platform figures (entities.py), the performance summary and the dashboard; the endpoints
(routes.py). The statements themselves are in sql/queries/."""
