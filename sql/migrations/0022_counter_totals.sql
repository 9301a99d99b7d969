-- Counters sent as running totals (Prometheus remote write, OTLP cumulative sums): the total
-- each sample carried, next to its increase.
--
-- A counter means the same whatever way it arrives (docs/ingest.md, "Counters"): `value` is an
-- increment, so a counter's statistics and time series are its increase, and every reader of
-- analytics.metric_events (the tiers, their rebuild, exact statistics, alert evaluation) stays
-- as it is. A sample of a running total is stored with `value` = its increase since the
-- series' previous sample (reset-aware, ingest/totals.py) and `total` = the running total as
-- sent, which PromQL's rate(), increase() and resets() need (they work on the totals
-- themselves, and Prometheus' extrapolation looks at the first total of a range). Every other
-- row leaves `total` null: no bytes on the Apache edition (the null bitmap is there already,
-- since one of value and digits is always null), a run-length nothing once compressed.
--
-- TimescaleDB adds a nullable column without a default to a hypertable with compression
-- enabled (Community edition) without touching its compressed chunks.

ALTER TABLE analytics.metric_event_store ADD COLUMN total double precision;

COMMENT ON COLUMN analytics.metric_event_store.total IS
    'The running total a counter sample carried (remote write, OTLP cumulative); value is its '
    'increase since the series'' previous sample. Null for every other row.';

-- The view gains the column (at the end: CREATE OR REPLACE VIEW may only add columns there).
CREATE OR REPLACE VIEW analytics.metric_events AS
SELECT time, series_id, analytics.event_value(value, decimals, digits) AS value, total
FROM analytics.metric_event_store;

CREATE OR REPLACE FUNCTION _analytics.metric_events_insert() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.value IS NULL THEN
        RAISE EXCEPTION 'null value in column "value" of analytics.metric_events'
            USING ERRCODE = 'not_null_violation';
    END IF;
    INSERT INTO analytics.metric_event_store (time, series_id, value, total)
    VALUES (NEW.time, NEW.series_id, NEW.value, NEW.total);
    RETURN NEW;
END
$fn$;
