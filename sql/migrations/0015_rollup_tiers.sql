-- Rollup tiers: minute, hourly and daily figures and sketches per series and per metric, kept
-- current by partial aggregates ("deltas") that every ingest transaction writes with its rows.
--
-- Write path: a group commit adds, in its own transaction, one row per (minute, series) and
-- one per (minute, metric) it touched to _analytics.series_deltas / metric_deltas (computed
-- by ingest/deltas.py). A query adds
-- the deltas still pending to the tiers, so an acknowledged event counts at once.
-- Compactor (jobs/compact.py, about once a second, one at a time): in one transaction, takes
-- the committed deltas (DELETE ... RETURNING), merges them into the minute tiers and, for hours
-- and days already folded (below the watermarks in _analytics.tier_watermarks), straight into
-- the hourly and daily tiers; then folds each hour closed a little while ago from its minutes
-- into the hourly tiers, and each whole folded day into the daily tiers, moving the marks.
-- A delta is therefore counted once: pending, or in the tiers, never both (one snapshot reads
-- both). Minute rows stay after their hour is folded (until the minute retention), so a reader
-- holding an older watermark still finds every minute it asks for.
--
-- The same relations on both editions (job-filled hypertables, no continuous aggregates: a
-- refresh recomputes from raw, slower than the ingest rate it must follow).
--
-- Sketch: the same logarithmic keys as before (analytics.sketch_key, 0003), stored as two
-- parallel arrays per bucket and series: keys ascending, counts. Merging is summing counts per
-- key (unnest, group, array_agg): plain set operations, no custom aggregate.

-- Merge of two sketches; either may be null (nothing). This and sketch_rank_keys return a
-- table of one row: PostgreSQL inlines a SQL function of that form into the calling query
-- (a trigger calling it cost 200 us a row; inlined in the INSERT, 14 us).
CREATE FUNCTION analytics.sketch_add(
    keys_a integer[], counts_a bigint[], keys_b integer[], counts_b bigint[]
) RETURNS TABLE (keys integer[], counts bigint[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(key ORDER BY key), array_agg(n ORDER BY key)
    FROM (
        SELECT key, sum(n)::bigint AS n
        FROM (
            SELECT * FROM unnest(keys_a, counts_a) AS a (key, n)
            UNION ALL
            SELECT * FROM unnest(keys_b, counts_b) AS b (key, n)
        ) AS both_sides
        WHERE key IS NOT NULL
        GROUP BY key
    ) AS merged
$$;

-- The keys at ranks ceil(0.5 n), ceil(0.95 n) and ceil(0.99 n) of a sketch (keys ascending):
-- a bucket read from one tier row alone (a time series at the tier's own width) takes its
-- percentile from these, without reading the arrays. The same rule as the queries' merge;
-- every statement writing a tier row sets them (CROSS JOIN LATERAL sketch_rank_keys).
CREATE FUNCTION analytics.sketch_rank_keys(keys integer[], counts bigint[])
RETURNS TABLE (k50 integer, k95 integer, k99 integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT min(key) FILTER (WHERE running >= ceil(0.5::float8 * total::float8)),
           min(key) FILTER (WHERE running >= ceil(0.95::float8 * total::float8)),
           min(key) FILTER (WHERE running >= ceil(0.99::float8 * total::float8))
    FROM (
        SELECT u.key, sum(u.n) OVER (ORDER BY u.ord) AS running, sum(u.n) OVER () AS total
        FROM unnest(keys, counts) WITH ORDINALITY AS u (key, n, ord)
    ) AS ranked
$$;

-- Deltas: a few seconds' worth at most, unless the compactor is stopped.
CREATE TABLE _analytics.series_deltas (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    minute    timestamptz NOT NULL,
    series_id integer NOT NULL,
    count     integer NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    keys      integer[] NOT NULL,  -- ascending
    counts    integer[] NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()  -- for the compactor's lag on /metrics
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000);
CREATE INDEX series_deltas_series_idx ON _analytics.series_deltas (series_id, minute);

CREATE TABLE _analytics.metric_deltas (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    minute    timestamptz NOT NULL,
    metric_id integer NOT NULL,
    count     integer NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    keys      integer[] NOT NULL,  -- ascending
    counts    integer[] NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()  -- for the compactor's lag on /metrics
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000);
CREATE INDEX metric_deltas_metric_idx ON _analytics.metric_deltas (metric_id, minute);

-- The tiers. Minute rows are rewritten by every compaction of their minute: room for HOT
-- updates. Counts are int4 where a bucket cannot reach 2^31 events (a series at 596,000
-- events/s for an hour), int8 where it can.
CREATE TABLE analytics.series_1m (
    bucket    timestamptz NOT NULL,
    series_id integer NOT NULL,
    count     bigint NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    keys      integer[] NOT NULL,
    counts    integer[] NOT NULL,
    k50       integer,  -- the sketch keys at ranks ceil(p * count) (sketch_rank_keys)
    k95       integer,
    k99       integer,
    PRIMARY KEY (series_id, bucket)
) WITH (fillfactor = 70);
SELECT create_hypertable('analytics.series_1m', by_range('bucket', INTERVAL '1 hour'));

CREATE TABLE analytics.series_1h (
    bucket    timestamptz NOT NULL,
    series_id integer NOT NULL,
    count     bigint NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    keys      integer[] NOT NULL,
    counts    integer[] NOT NULL,
    k50       integer,  -- the sketch keys at ranks ceil(p * count) (sketch_rank_keys)
    k95       integer,
    k99       integer,
    PRIMARY KEY (series_id, bucket)
);
SELECT create_hypertable('analytics.series_1h', by_range('bucket', INTERVAL '7 days'));

CREATE TABLE analytics.series_1d (
    bucket    timestamptz NOT NULL,
    series_id integer NOT NULL,
    count     bigint NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    keys      integer[] NOT NULL,
    counts    bigint[] NOT NULL,
    k50       integer,  -- the sketch keys at ranks ceil(p * count) (sketch_rank_keys)
    k95       integer,
    k99       integer,
    PRIMARY KEY (series_id, bucket)
);
SELECT create_hypertable('analytics.series_1d', by_range('bucket', INTERVAL '30 days'));

CREATE TABLE analytics.metric_1m (
    bucket    timestamptz NOT NULL,
    metric_id integer NOT NULL,
    count     bigint NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    keys      integer[] NOT NULL,
    counts    integer[] NOT NULL,
    k50       integer,  -- the sketch keys at ranks ceil(p * count) (sketch_rank_keys)
    k95       integer,
    k99       integer,
    PRIMARY KEY (metric_id, bucket)
) WITH (fillfactor = 70);
SELECT create_hypertable('analytics.metric_1m', by_range('bucket', INTERVAL '6 hours'));

CREATE TABLE analytics.metric_1h (
    bucket    timestamptz NOT NULL,
    metric_id integer NOT NULL,
    count     bigint NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    keys      integer[] NOT NULL,
    counts    bigint[] NOT NULL,
    k50       integer,  -- the sketch keys at ranks ceil(p * count) (sketch_rank_keys)
    k95       integer,
    k99       integer,
    PRIMARY KEY (metric_id, bucket)
);
SELECT create_hypertable('analytics.metric_1h', by_range('bucket', INTERVAL '7 days'));

CREATE TABLE analytics.metric_1d (
    bucket    timestamptz NOT NULL,
    metric_id integer NOT NULL,
    count     bigint NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    keys      integer[] NOT NULL,
    counts    bigint[] NOT NULL,
    k50       integer,  -- the sketch keys at ranks ceil(p * count) (sketch_rank_keys)
    k95       integer,
    k99       integer,
    PRIMARY KEY (metric_id, bucket)
);
SELECT create_hypertable('analytics.metric_1d', by_range('bucket', INTERVAL '30 days'));

-- Where each tier is complete, written only by the compactor and the rebuild, holding the
-- compactor's lock: hours below '1h' are in the hourly tiers and days below '1d' in the daily
-- tiers (folded); the minute tiers hold every minute from 'series_1m' / 'metric_1m' on (their
-- horizons, RETENTION_SERIES_MINUTE_HOURS and RETENTION_MINUTE_HOURS back) and every minute of
-- an hour not folded yet. Queries read these marks to choose a tier for each part of a window.
CREATE TABLE _analytics.tier_watermarks (
    tier text PRIMARY KEY CHECK (tier IN ('1h', '1d', 'series_1m', 'metric_1m')),
    mark timestamptz NOT NULL
);

-- Recomputes every tier over [range_start, range_end) from raw events (the daily rows of the
-- days it touches from all of their hours): what lies there is replaced, and the deltas of the range are dropped (their events are among the
-- raw ones read). Run in one REPEATABLE READ transaction holding the compactor's lock, so that
-- the raw events read and the deltas dropped are those of one snapshot: an ingest transaction
-- still in flight has neither its rows read nor its deltas dropped, and the compactor applies
-- them later. Minute rows are written from the minute tiers' marks on (or from the '1h' mark,
-- if earlier), hourly rows below the '1h' mark, daily rows below '1d'.
CREATE FUNCTION _analytics.rebuild_tiers(range_start timestamptz, range_end timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    hour_mark timestamptz := (SELECT mark FROM _analytics.tier_watermarks WHERE tier = '1h');
    day_mark timestamptz := (SELECT mark FROM _analytics.tier_watermarks WHERE tier = '1d');
    series_minutes_from timestamptz := (
        SELECT mark FROM _analytics.tier_watermarks WHERE tier = 'series_1m');
    metric_minutes_from timestamptz := (
        SELECT mark FROM _analytics.tier_watermarks WHERE tier = 'metric_1m');
    hours_end timestamptz := least(range_end, hour_mark);
    days_start timestamptz := date_trunc('day', range_start);
    days_end timestamptz := least(range_end, day_mark);
    series_from timestamptz := greatest(range_start, least(series_minutes_from, hour_mark));
    metric_from timestamptz := greatest(range_start, least(metric_minutes_from, hour_mark));
    written bigint;
BEGIN
    DELETE FROM _analytics.series_deltas WHERE minute >= range_start AND minute < range_end;
    DELETE FROM _analytics.metric_deltas WHERE minute >= range_start AND minute < range_end;
    DELETE FROM analytics.series_1m WHERE bucket >= range_start AND bucket < range_end;
    DELETE FROM analytics.metric_1m WHERE bucket >= range_start AND bucket < range_end;
    DELETE FROM analytics.series_1h WHERE bucket >= range_start AND bucket < range_end;
    DELETE FROM analytics.metric_1h WHERE bucket >= range_start AND bucket < range_end;
    DELETE FROM analytics.series_1d WHERE bucket >= days_start AND bucket < range_end;
    DELETE FROM analytics.metric_1d WHERE bucket >= days_start AND bucket < range_end;

    -- Two levels of GROUP BY, no join: per key (with the figures), then per bucket.
    INSERT INTO analytics.series_1h (bucket, series_id, count, sum, min, max, keys, counts,
                                  k50, k95, k99)
    SELECT m.*, r.*
    FROM (
        SELECT bucket, series_id, sum(n)::bigint, sum(total), min(low), max(high),
               array_agg(key ORDER BY key), array_agg(n ORDER BY key)
        FROM (
            SELECT time_bucket(INTERVAL '1 hour', e.time) AS bucket, e.series_id AS series_id,
                   analytics.sketch_key(e.value) AS key, count(*) AS n, sum(e.value) AS total,
                   min(e.value) AS low, max(e.value) AS high
            FROM analytics.metric_events AS e
            WHERE e.time >= range_start AND e.time < hours_end
            GROUP BY 1, 2, 3
        ) AS per_key
        GROUP BY 1, 2
    ) AS m (bucket, series_id, count, sum, min, max, keys, counts)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r;
    GET DIAGNOSTICS written = ROW_COUNT;
    INSERT INTO analytics.metric_1h (bucket, metric_id, count, sum, min, max, keys, counts,
                                  k50, k95, k99)
    SELECT m.*, r.*
    FROM (
        SELECT bucket, metric_id, sum(rows_count)::bigint, sum(total), min(low), max(high),
               array_agg(key ORDER BY key), array_agg(n ORDER BY key)
        FROM (
            -- Each source row's figures counted once: with its first key.
            SELECT time_bucket(INTERVAL '1 hour', t.bucket) AS bucket, s.metric_id AS metric_id,
                   u.key, sum(u.n)::bigint AS n,
                   sum(t.count) FILTER (WHERE u.ord = 1) AS rows_count,
                   sum(t.sum) FILTER (WHERE u.ord = 1) AS total,
                   min(t.min) FILTER (WHERE u.ord = 1) AS low,
                   max(t.max) FILTER (WHERE u.ord = 1) AS high
            FROM analytics.series_1h AS t JOIN analytics.series AS s ON s.id = t.series_id
            CROSS JOIN LATERAL unnest(t.keys, t.counts) WITH ORDINALITY AS u (key, n, ord)
            WHERE t.bucket >= range_start AND t.bucket < hours_end
            GROUP BY 1, 2, 3
        ) AS per_key
        GROUP BY 1, 2
    ) AS m (bucket, metric_id, count, sum, min, max, keys, counts)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r;
    INSERT INTO analytics.series_1d (bucket, series_id, count, sum, min, max, keys, counts,
                                  k50, k95, k99)
    SELECT m.*, r.*
    FROM (
        SELECT bucket, series_id, sum(rows_count)::bigint, sum(total), min(low), max(high),
               array_agg(key ORDER BY key), array_agg(n ORDER BY key)
        FROM (
            -- Each source row's figures counted once: with its first key.
            SELECT time_bucket(INTERVAL '1 day', t.bucket) AS bucket, t.series_id AS series_id,
                   u.key, sum(u.n)::bigint AS n,
                   sum(t.count) FILTER (WHERE u.ord = 1) AS rows_count,
                   sum(t.sum) FILTER (WHERE u.ord = 1) AS total,
                   min(t.min) FILTER (WHERE u.ord = 1) AS low,
                   max(t.max) FILTER (WHERE u.ord = 1) AS high
            FROM analytics.series_1h AS t
            CROSS JOIN LATERAL unnest(t.keys, t.counts) WITH ORDINALITY AS u (key, n, ord)
            WHERE t.bucket >= days_start AND t.bucket < days_end
            GROUP BY 1, 2, 3
        ) AS per_key
        GROUP BY 1, 2
    ) AS m (bucket, series_id, count, sum, min, max, keys, counts)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r;
    INSERT INTO analytics.metric_1d (bucket, metric_id, count, sum, min, max, keys, counts,
                                  k50, k95, k99)
    SELECT m.*, r.*
    FROM (
        SELECT bucket, metric_id, sum(rows_count)::bigint, sum(total), min(low), max(high),
               array_agg(key ORDER BY key), array_agg(n ORDER BY key)
        FROM (
            -- Each source row's figures counted once: with its first key.
            SELECT time_bucket(INTERVAL '1 day', t.bucket) AS bucket, t.metric_id AS metric_id,
                   u.key, sum(u.n)::bigint AS n,
                   sum(t.count) FILTER (WHERE u.ord = 1) AS rows_count,
                   sum(t.sum) FILTER (WHERE u.ord = 1) AS total,
                   min(t.min) FILTER (WHERE u.ord = 1) AS low,
                   max(t.max) FILTER (WHERE u.ord = 1) AS high
            FROM analytics.metric_1h AS t
            CROSS JOIN LATERAL unnest(t.keys, t.counts) WITH ORDINALITY AS u (key, n, ord)
            WHERE t.bucket >= days_start AND t.bucket < days_end
            GROUP BY 1, 2, 3
        ) AS per_key
        GROUP BY 1, 2
    ) AS m (bucket, metric_id, count, sum, min, max, keys, counts)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r;
    INSERT INTO analytics.series_1m (bucket, series_id, count, sum, min, max, keys, counts,
                                  k50, k95, k99)
    SELECT m.*, r.*
    FROM (
        SELECT bucket, series_id, sum(n)::bigint, sum(total), min(low), max(high),
               array_agg(key ORDER BY key), array_agg(n ORDER BY key)
        FROM (
            SELECT time_bucket(INTERVAL '1 minute', e.time) AS bucket, e.series_id AS series_id,
                   analytics.sketch_key(e.value) AS key, count(*) AS n, sum(e.value) AS total,
                   min(e.value) AS low, max(e.value) AS high
            FROM analytics.metric_events AS e
            WHERE e.time >= series_from AND e.time < range_end
            GROUP BY 1, 2, 3
        ) AS per_key
        GROUP BY 1, 2
    ) AS m (bucket, series_id, count, sum, min, max, keys, counts)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r;
    INSERT INTO analytics.metric_1m (bucket, metric_id, count, sum, min, max, keys, counts,
                                  k50, k95, k99)
    SELECT m.*, r.*
    FROM (
        SELECT bucket, metric_id, sum(n)::bigint, sum(total), min(low), max(high),
               array_agg(key ORDER BY key), array_agg(n ORDER BY key)
        FROM (
            SELECT time_bucket(INTERVAL '1 minute', e.time) AS bucket, s.metric_id AS metric_id,
                   analytics.sketch_key(e.value) AS key, count(*) AS n, sum(e.value) AS total,
                   min(e.value) AS low, max(e.value) AS high
            FROM analytics.metric_events AS e JOIN analytics.series AS s ON s.id = e.series_id
            WHERE e.time >= metric_from AND e.time < range_end
            GROUP BY 1, 2, 3
        ) AS per_key
        GROUP BY 1, 2
    ) AS m (bucket, metric_id, count, sum, min, max, keys, counts)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r;

    RETURN written;
END
$fn$;

-- Start: every hour before the current one is folded, every day before today. Existing raw
-- events are built into the tiers here; hours and days older than the oldest raw chunk (raw
-- retention dropped them) are carried over from the rollups of 0003.
-- Marks are whole minutes, hours and days (UTC).
INSERT INTO _analytics.tier_watermarks VALUES
    ('1h', time_bucket(INTERVAL '1 hour', now())),
    ('1d', time_bucket(INTERVAL '1 day', now())),
    ('series_1m', time_bucket(INTERVAL '1 minute', now() - INTERVAL '6 hours')),
    ('metric_1m', time_bucket(INTERVAL '1 minute', now() - INTERVAL '48 hours'));

DO $backfill$
DECLARE
    oldest timestamptz := (
        SELECT min(range_start) FROM timescaledb_information.chunks
        WHERE hypertable_schema = 'analytics' AND hypertable_name = 'metric_events');
BEGIN
    oldest := coalesce(oldest, 'infinity');
    INSERT INTO analytics.series_1h (bucket, series_id, count, sum, min, max, keys, counts,
                                  k50, k95, k99)
    SELECT r.bucket, r.series_id, r.count, r.sum, r.min, r.max, k.keys, k.counts, rk.*
    FROM analytics.metric_rollup_1h AS r
    JOIN (
        SELECT bucket, series_id, array_agg(key ORDER BY key) AS keys,
               array_agg(n ORDER BY key) AS counts
        FROM analytics.metric_sketch_1h WHERE bucket < oldest GROUP BY 1, 2
    ) AS k USING (bucket, series_id)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(k.keys, k.counts) AS rk
    WHERE r.bucket < oldest;
    INSERT INTO analytics.metric_1h (bucket, metric_id, count, sum, min, max, keys, counts,
                                  k50, k95, k99)
    SELECT r.bucket, r.metric_id, r.count, r.sum, r.min, r.max, k.keys, k.counts, rk.*
    FROM analytics.metric_totals_1h AS r
    JOIN (
        SELECT bucket, metric_id, array_agg(key ORDER BY key) AS keys,
               array_agg(n ORDER BY key) AS counts
        FROM analytics.metric_totals_sketch_1h WHERE bucket < oldest GROUP BY 1, 2
    ) AS k USING (bucket, metric_id)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(k.keys, k.counts) AS rk
    WHERE r.bucket < oldest;
    INSERT INTO analytics.series_1d (bucket, series_id, count, sum, min, max, keys, counts,
                                  k50, k95, k99)
    SELECT r.bucket, r.series_id, r.count, r.sum, r.min, r.max, k.keys, k.counts, rk.*
    FROM analytics.metric_rollup_1d AS r
    JOIN (
        SELECT bucket, series_id, array_agg(key ORDER BY key) AS keys,
               array_agg(n ORDER BY key) AS counts
        FROM analytics.metric_sketch_1d WHERE bucket < date_trunc('day', oldest) GROUP BY 1, 2
    ) AS k USING (bucket, series_id)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(k.keys, k.counts) AS rk
    WHERE r.bucket < date_trunc('day', oldest);
    INSERT INTO analytics.metric_1d (bucket, metric_id, count, sum, min, max, keys, counts,
                                  k50, k95, k99)
    SELECT r.bucket, r.metric_id, r.count, r.sum, r.min, r.max, k.keys, k.counts, rk.*
    FROM analytics.metric_totals_1d AS r
    JOIN (
        SELECT bucket, metric_id, array_agg(key ORDER BY key) AS keys,
               array_agg(n ORDER BY key) AS counts
        FROM analytics.metric_totals_sketch_1d WHERE bucket < date_trunc('day', oldest)
        GROUP BY 1, 2
    ) AS k USING (bucket, metric_id)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(k.keys, k.counts) AS rk
    WHERE r.bucket < date_trunc('day', oldest);
    IF oldest < 'infinity' THEN
        PERFORM _analytics.rebuild_tiers(oldest, 'infinity');
    END IF;
END
$backfill$;

-- The rollups of 0003 give way to the tiers (what only they still held was carried over
-- above), and with them the invalidation log the metric ingest path kept for them.
-- One relation per DROP: TimescaleDB drops a hypertable or a continuous aggregate only alone.
-- The daily ones first (on the Community edition they are aggregates over the hourly ones).
DO $retire$
DECLARE
    relation text;
    kind text := CASE WHEN current_setting('timescaledb.license', true) = 'timescale'
                      THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END;
BEGIN
    FOREACH relation IN ARRAY ARRAY[
        'metric_sketch_1d', 'metric_rollup_1d', 'metric_totals_1d', 'metric_totals_sketch_1d',
        'metric_sketch_1h', 'metric_rollup_1h', 'metric_totals_1h', 'metric_totals_sketch_1h'
    ] LOOP
        EXECUTE format('DROP %s analytics.%I', kind, relation);
    END LOOP;
END
$retire$;
DROP FUNCTION _analytics.create_rollup(
    text, interval, text, text, text[], interval, interval, interval, interval);
DROP TABLE _analytics.rollups;
DROP TABLE _analytics.rollup_invalidations;
