-- Descriptions a DBA sees in \d+ and in catalog tools. Re-applied on every migrate.

COMMENT ON SCHEMA analytics IS
    'astraeus-analytics: metrics, series, raw events, rollup tiers, alerts and health.';
COMMENT ON TABLE analytics.metrics IS
    'One row per metric name; metric_type is fixed by the first event of the metric.';
COMMENT ON TABLE analytics.series IS
    'A metric with one canonical tag set (jsonb), identified by a compact integer id.';
COMMENT ON TABLE analytics.series_tags IS
    'Each series'' tags as rows (metric, key, value, series), kept by a trigger on '
    'analytics.series: the tag filters and tag listings read it by index.';
COMMENT ON VIEW analytics.metric_events IS
    'Raw metric events: time, series id, value (analytics.metric_event_store as read; an '
    'INSERT or COPY here stores the value as given).';
COMMENT ON TABLE analytics.metric_event_store IS
    'Raw metric events as stored (hypertable, 1-day chunks): a value is value, or '
    'digits / 10^decimals where that is exact (analytics.event_value; 0020_decimal_values.sql).';
COMMENT ON COLUMN analytics.metric_event_store.series_id IS 'analytics.series.id (not '
    'enforced: a foreign key on a hypertable costs a lookup per inserted row).';
COMMENT ON FUNCTION analytics.event_value(double precision, smallint, bigint) IS
    'The value of a stored raw event row: value, or digits / 10^decimals.';
COMMENT ON TABLE _analytics.idempotency_keys IS
    'Idempotency-Key of each committed batch (recorded with its events); pruned after '
    'IDEMPOTENCY_TTL_HOURS.';
COMMENT ON TABLE _analytics.series_deltas IS
    'Partial aggregates per (minute, series) written by each group commit with its events; '
    'taken by the compactor into the tiers, added to them by queries until then.';
COMMENT ON TABLE _analytics.metric_deltas IS
    'Partial aggregates per (minute, metric), as _analytics.series_deltas.';
COMMENT ON TABLE _analytics.tier_watermarks IS
    'Where each rollup tier is complete: hours below 1h are folded into the hourly tiers, days '
    'below 1d into the daily ones; the minute tiers hold every minute from their mark on.';
COMMENT ON TABLE analytics.series_1m IS
    'Per series and minute: count, sum, min, max and the percentile sketch (keys ascending, '
    'counts); kept RETENTION_SERIES_MINUTE_HOURS.';
COMMENT ON TABLE analytics.series_1h IS
    'Per series and hour, as series_1m; folded from the minutes, kept RETENTION_HOURLY_DAYS.';
COMMENT ON TABLE analytics.series_1d IS
    'Per series and day, as series_1m; folded from the hours, kept RETENTION_DAILY_DAYS.';
COMMENT ON TABLE analytics.metric_1m IS
    'Per metric (all its series) and minute, as series_1m; kept RETENTION_MINUTE_HOURS.';
COMMENT ON TABLE analytics.metric_1h IS
    'Per metric and hour, as metric_1m; folded from the minutes, kept RETENTION_HOURLY_DAYS.';
COMMENT ON TABLE analytics.metric_1d IS
    'Per metric and day, as metric_1m; folded from the hours, kept RETENTION_DAILY_DAYS.';
COMMENT ON TABLE _analytics.job_runs IS
    'One row per run of a periodic job (rollup refresh, retention, ...): outcome and figures.';
COMMENT ON TABLE analytics.users_seen IS
    'Every user a platform event names: first seen (the earliest such event) and signed up '
    '(the earliest user_signup, or null); kept by ingest, rebuilt by '
    'analytics.refresh_entities_seen(). Platform user totals count it by first_seen.';
COMMENT ON TABLE analytics.agents_seen IS
    'Every agent a platform event names: first seen and registered (the earliest '
    'agent_registered, or null); kept by ingest, rebuilt by '
    'analytics.refresh_entities_seen(). Platform agent totals count it by first_seen.';
COMMENT ON COLUMN _analytics.event_invalidations.totals IS
    'Every later platform period depends on this hour: the batch had contract events, or moved '
    'a user''s or agent''s first_seen into the hour (a new entity, or one seen earlier than before).';
COMMENT ON COLUMN _analytics.job_runs.trigger IS
    'schedule: run by the scheduler; manual: by python -m jobs (only scheduled runs make a '
    'job wait for its next interval).';
