-- Distributions: a histogram point (OTLP Histogram and ExponentialHistogram today) is not one
-- value but many observations, summarised. Each point's *increase* (a delta point as sent, a
-- cumulative one less the series' previous point: ingest/distributions.py) is stored as one
-- row of analytics.distribution_store in our sketch's terms: count, sum, min, max and the
-- sketch keys with their counts (ascending), the shape of a delta row. Its observations count
-- in the tiers like raw events (the group commit writes the point's deltas), so statistics,
-- time series and percentiles of the metric merge across series and rollups like our own
-- sketches. The error of a percentile is the sketch's (1%) within a bucket narrower than a
-- sketch key, and the bucket's width otherwise (docs/ingest.md, "Distributions").
--
-- Rebuilding the tiers from raw (_analytics.rebuild_tiers, 0015) now reads both raw events and
-- distribution rows, through _analytics.raw_keys: per (bucket, series, sketch key) the count,
-- and the sum, min and max carried by each source row's first key only (as the tier folds do),
-- so a re-aggregation by bucket gives each row's figures once.
--
-- Chunks of one day like the raw events', the same retention (RETENTION_DAYS, jobs/
-- retention.py), and on the Community edition compression after 7 days, segmented by series.

CREATE TABLE analytics.distribution_store (
    time      timestamptz NOT NULL,
    series_id integer NOT NULL,
    count     bigint NOT NULL,
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    keys      integer[] NOT NULL,  -- ascending sketch keys (analytics.sketch_key)
    counts    integer[] NOT NULL   -- the observations at each
);
SELECT create_hypertable(
    'analytics.distribution_store',
    by_range('time', INTERVAL '1 day'),
    create_default_indexes => false
);
CREATE INDEX distribution_store_series_time_idx
    ON analytics.distribution_store (series_id, time DESC);
CREATE INDEX distribution_store_time_brin ON analytics.distribution_store USING brin (time);

DO $$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        ALTER TABLE analytics.distribution_store SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'series_id',
            timescaledb.compress_orderby = 'time DESC');
        PERFORM add_compression_policy('analytics.distribution_store',
                                       compress_after => INTERVAL '7 days', if_not_exists => true);
    END IF;
END
$$;

-- The newest cumulative histogram point of each series that sends them (OTLP cumulative
-- histograms), as sent (ingest/distributions.py Cumulative, JSON): the next point is stored as
-- what it adds to this one. Written in the same transaction as the rows it was used for, so
-- after a restart of ours, a failed commit or an eviction from memory the next point is
-- compared with what was committed last.
CREATE TABLE _analytics.histogram_state (
    series_id integer PRIMARY KEY,
    time      timestamptz NOT NULL,
    point     jsonb NOT NULL
);

-- Raw events and distribution rows over [from, till) by (bucket of `width`, series, sketch
-- key): the count there, and each source row's sum, min and max with its first key.
CREATE FUNCTION _analytics.raw_keys(width interval, from_time timestamptz, till timestamptz)
RETURNS TABLE (bucket timestamptz, series_id integer, key integer, n bigint,
               total double precision, low double precision, high double precision)
LANGUAGE sql STABLE AS $$
    SELECT time_bucket(width, e.time), e.series_id, analytics.sketch_key(e.value), count(*),
           sum(e.value), min(e.value), max(e.value)
    FROM analytics.metric_events AS e
    WHERE e.time >= from_time AND e.time < till
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT time_bucket(width, d.time), d.series_id, u.key, sum(u.n)::bigint,
           sum(d.sum) FILTER (WHERE u.ord = 1), min(d.min) FILTER (WHERE u.ord = 1),
           max(d.max) FILTER (WHERE u.ord = 1)
    FROM analytics.distribution_store AS d
    CROSS JOIN LATERAL unnest(d.keys, d.counts) WITH ORDINALITY AS u (key, n, ord)
    WHERE d.time >= from_time AND d.time < till
    GROUP BY 1, 2, 3
$$;

CREATE OR REPLACE FUNCTION _analytics.rebuild_tiers(range_start timestamptz, range_end timestamptz)
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
            SELECT bucket, series_id, key, sum(n)::bigint AS n, sum(total) AS total, min(low) AS low,
                   max(high) AS high
            FROM _analytics.raw_keys(INTERVAL '1 hour', range_start, hours_end)
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
            SELECT bucket, series_id, key, sum(n)::bigint AS n, sum(total) AS total, min(low) AS low,
                   max(high) AS high
            FROM _analytics.raw_keys(INTERVAL '1 minute', series_from, range_end)
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
            SELECT r.bucket, s.metric_id AS metric_id, r.key, sum(r.n)::bigint AS n,
                   sum(r.total) AS total, min(r.low) AS low, max(r.high) AS high
            FROM _analytics.raw_keys(INTERVAL '1 minute', metric_from, range_end) AS r
            JOIN analytics.series AS s ON s.id = r.series_id
            GROUP BY 1, 2, 3
        ) AS per_key
        GROUP BY 1, 2
    ) AS m (bucket, metric_id, count, sum, min, max, keys, counts)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r;

    RETURN written;
END
$fn$;

