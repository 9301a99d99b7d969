-- Raw values kept as exact decimals where they are one: about 4 bytes an event fewer once
-- compressed (Community edition), the same row width uncompressed (Apache edition).
--
-- Most values users send are decimals: a latency of 33.125 ms, a price, a percentage with two
-- places. As a float8, such a value's mantissa is noise to TimescaleDB's compression (Gorilla
-- XOR of successive values: 7.1 bytes an event in the storage bench's 30-day set); the same
-- value as the integer 33125 with 3 decimals is a small number whose successive differences
-- compress (delta of delta, simple-8b) to 2.8 bytes, and the constant decimals column to almost
-- nothing. The storage bench on TimescaleDB 2.28, raw events: 30-day set 14.8 -> 9.4 bytes an
-- event, 5-minute set of 1,000 series 11.5 -> 8.4.
--
-- Ingest (ingest/decimals.py) stores a value v as `digits` and `decimals` when some number of
-- decimals d <= 15 gives an integer m = round(v * 10^d) with |m| <= 2^53 and m / 10^d == v in
-- IEEE arithmetic: then the database's m::float8 / 10^d (10^d a constant, exact; m exact; one
-- correctly rounded division) gives back v, bit for bit. Any other value (one of 17 significant
-- digits, -0, an integer past 2^53) is stored in `value` as before, and so are the rows written
-- before this migration and any a DBA inserts. Exactly one of `value` and `digits` is set
-- (not enforced: a check constraint on a hypertable is verified on every row of every chunk).
--
-- The hypertable is renamed analytics.metric_event_store, and analytics.metric_events becomes
-- the view of (time, series_id, value) every reader already used: queries, the rebuild, alert
-- evaluation, a DBA's SELECT. An INSERT or COPY into the view stores the value as given
-- (INSTEAD OF trigger, a row at a time: for bulk loads, COPY into the store); DELETE through it
-- deletes the stored rows; an edit is an UPDATE of the store (value set, decimals and digits
-- null). Chunks, retention and compression are the store's
-- (`drop_chunks('analytics.metric_event_store', ...)`).
--
-- Row width on the Apache edition: time 8, series_id 4, decimals 2 (+2 alignment), digits 8:
-- 24 bytes of data as before (time 8, series_id 4 (+4), value 8), the null bitmap fitting in
-- the header's padding.

-- TimescaleDB allows DROP NOT NULL on a hypertable with compression enabled (0017, Community
-- edition) from 2.18 on.
DO $$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale'
       AND string_to_array(split_part((SELECT extversion FROM pg_extension
                                       WHERE extname = 'timescaledb'), '-', 1), '.')::int[]
           < ARRAY[2, 18] THEN
        RAISE EXCEPTION 'the Community edition of TimescaleDB must be 2.18 or later for this '
                        'migration (0020_decimal_values); this server runs %',
                        (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')
            USING HINT = 'ALTER EXTENSION timescaledb UPDATE after installing 2.18 or later';
    END IF;
END
$$;

ALTER TABLE analytics.metric_events RENAME TO metric_event_store;
ALTER TABLE analytics.metric_event_store ALTER COLUMN value DROP NOT NULL;
ALTER TABLE analytics.metric_event_store ADD COLUMN decimals smallint, ADD COLUMN digits bigint;

-- A stored row's value. SQL and IMMUTABLE: inlined into every query reading the view.
CREATE FUNCTION analytics.event_value(value double precision, decimals smallint, digits bigint)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(value, digits::float8 / ('{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, '
                                             '1e10, 1e11, 1e12, 1e13, 1e14, 1e15}'::float8[])
                                            [decimals + 1])
$$;

CREATE VIEW analytics.metric_events AS
SELECT time, series_id, analytics.event_value(value, decimals, digits) AS value
FROM analytics.metric_event_store;

CREATE FUNCTION _analytics.metric_events_insert() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.value IS NULL THEN
        RAISE EXCEPTION 'null value in column "value" of analytics.metric_events'
            USING ERRCODE = 'not_null_violation';
    END IF;
    INSERT INTO analytics.metric_event_store (time, series_id, value)
    VALUES (NEW.time, NEW.series_id, NEW.value);
    RETURN NEW;
END
$fn$;

CREATE TRIGGER metric_events_insert INSTEAD OF INSERT ON analytics.metric_events
FOR EACH ROW EXECUTE FUNCTION _analytics.metric_events_insert();
