-- Statements of the rollup tiers (jobs/compact.py; see 0015_rollup_tiers.sql). Parameters are
-- psycopg's %(name)s. {kind} ({owner}) is series (series_id) or metric (metric_id), filled in
-- by sql.tier_query from that fixed pair, never from input: one text for both kinds.

-- name: compact_deltas
-- One compaction step of one kind: takes up to %(limit)s committed deltas (a delta still in
-- flight is invisible here and stays for the next round), merges them per (minute, owner),
-- and adds them to the minute tier, to the hourly tier when their hour lies below the hourly
-- watermark (already folded) and to the daily tier below the daily one. Minutes older than
-- %(minutes_from)s (the minute tier's horizon) skip the minute tier unless their hour is not
-- folded yet (the fold reads them). Two levels of GROUP BY and no join (a join of two
-- aggregates of a just-deleted set is planned from no statistics): each delta's figures
-- travel with its first key. (unnest(keys, counts) in FROM here, not in the select list as
-- the read queries have it: planned for a thousand keys a delta, that form made a step of
-- 50,000 series deltas three times slower.) Returns the deltas and events taken.
WITH taken AS (
    DELETE FROM _analytics.{kind}_deltas
    WHERE id IN (SELECT id FROM _analytics.{kind}_deltas ORDER BY id LIMIT %(limit)s)
    RETURNING minute, {owner}, count, sum, min, max, keys, counts
), per_key AS MATERIALIZED (
    SELECT t.minute, t.{owner}, u.key, sum(u.n)::bigint AS n,
           sum(t.count) FILTER (WHERE u.ord = 1) AS rows_count,
           sum(t.sum) FILTER (WHERE u.ord = 1) AS total,
           min(t.min) FILTER (WHERE u.ord = 1) AS low,
           max(t.max) FILTER (WHERE u.ord = 1) AS high
    FROM taken AS t
    CROSS JOIN LATERAL unnest(t.keys, t.counts) WITH ORDINALITY AS u (key, n, ord)
    GROUP BY 1, 2, 3
), minutes AS (
    INSERT INTO analytics.{kind}_1m AS t (bucket, {owner}, count, sum, min, max, keys,
                                        counts, k50, k95, k99)
    SELECT m.*, r.*
    FROM (
        SELECT bucket, {owner}, sum(rows_count)::bigint, sum(total), min(low), max(high),
               array_agg(key ORDER BY key), array_agg(n ORDER BY key)
        FROM (
            SELECT minute AS bucket, {owner}, key, sum(n)::bigint AS n,
                   sum(rows_count) AS rows_count, sum(total) AS total, min(low) AS low,
                   max(high) AS high
            FROM per_key WHERE minute >= %(minutes_from)s OR minute >= %(hour_mark)s
            GROUP BY 1, 2, 3
        ) AS regrouped
        GROUP BY 1, 2
    ) AS m (bucket, {owner}, count, sum, min, max, keys, counts)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r
    ON CONFLICT ({owner}, bucket) DO UPDATE SET
        count = t.count + excluded.count,
        sum = t.sum + excluded.sum,
        min = least(t.min, excluded.min),
        max = greatest(t.max, excluded.max),
        (keys, counts, k50, k95, k99) = (
            SELECT m.keys, m.counts, r.k50, r.k95, r.k99
            FROM analytics.sketch_add(t.keys, t.counts, excluded.keys, excluded.counts) AS m
            CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r)
), hours AS (
    INSERT INTO analytics.{kind}_1h AS t (bucket, {owner}, count, sum, min, max, keys,
                                        counts, k50, k95, k99)
    SELECT m.*, r.*
    FROM (
        SELECT bucket, {owner}, sum(rows_count)::bigint, sum(total), min(low), max(high),
               array_agg(key ORDER BY key), array_agg(n ORDER BY key)
        FROM (
            SELECT time_bucket(INTERVAL '1 hour', minute) AS bucket, {owner}, key, sum(n)::bigint AS n,
                   sum(rows_count) AS rows_count, sum(total) AS total, min(low) AS low,
                   max(high) AS high
            FROM per_key WHERE minute < %(hour_mark)s
            GROUP BY 1, 2, 3
        ) AS regrouped
        GROUP BY 1, 2
    ) AS m (bucket, {owner}, count, sum, min, max, keys, counts)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r
    ON CONFLICT ({owner}, bucket) DO UPDATE SET
        count = t.count + excluded.count,
        sum = t.sum + excluded.sum,
        min = least(t.min, excluded.min),
        max = greatest(t.max, excluded.max),
        (keys, counts, k50, k95, k99) = (
            SELECT m.keys, m.counts, r.k50, r.k95, r.k99
            FROM analytics.sketch_add(t.keys, t.counts, excluded.keys, excluded.counts) AS m
            CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r)
), days AS (
    INSERT INTO analytics.{kind}_1d AS t (bucket, {owner}, count, sum, min, max, keys,
                                        counts, k50, k95, k99)
    SELECT m.*, r.*
    FROM (
        SELECT bucket, {owner}, sum(rows_count)::bigint, sum(total), min(low), max(high),
               array_agg(key ORDER BY key), array_agg(n ORDER BY key)
        FROM (
            SELECT time_bucket(INTERVAL '1 day', minute) AS bucket, {owner}, key, sum(n)::bigint AS n,
                   sum(rows_count) AS rows_count, sum(total) AS total, min(low) AS low,
                   max(high) AS high
            FROM per_key WHERE minute < %(day_mark)s
            GROUP BY 1, 2, 3
        ) AS regrouped
        GROUP BY 1, 2
    ) AS m (bucket, {owner}, count, sum, min, max, keys, counts)
    CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r
    ON CONFLICT ({owner}, bucket) DO UPDATE SET
        count = t.count + excluded.count,
        sum = t.sum + excluded.sum,
        min = least(t.min, excluded.min),
        max = greatest(t.max, excluded.max),
        (keys, counts, k50, k95, k99) = (
            SELECT m.keys, m.counts, r.k50, r.k95, r.k99
            FROM analytics.sketch_add(t.keys, t.counts, excluded.keys, excluded.counts) AS m
            CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r)
)
SELECT count(*) AS deltas, coalesce(sum(count), 0)::bigint AS events FROM taken;

-- name: fold_hours
-- The hours [%(start)s, %(end)s) of one kind, from their minute rows into the hourly tier.
-- Those hours are not folded yet (they lie above the watermark, which moves in the same
-- transaction), so nothing of theirs is in the hourly tier: a plain INSERT.
INSERT INTO analytics.{kind}_1h (bucket, {owner}, count, sum, min, max, keys, counts,
                                      k50, k95, k99)
SELECT m.*, r.*
FROM (
    SELECT bucket, {owner}, sum(rows_count)::bigint, sum(total), min(low), max(high),
           array_agg(key ORDER BY key), array_agg(n ORDER BY key)
    FROM (
        SELECT time_bucket(INTERVAL '1 hour', t.bucket) AS bucket, t.{owner}, u.key,
               sum(u.n)::bigint AS n,
               sum(t.count) FILTER (WHERE u.ord = 1) AS rows_count,
               sum(t.sum) FILTER (WHERE u.ord = 1) AS total,
               min(t.min) FILTER (WHERE u.ord = 1) AS low,
               max(t.max) FILTER (WHERE u.ord = 1) AS high
        FROM analytics.{kind}_1m AS t
        CROSS JOIN LATERAL unnest(t.keys, t.counts) WITH ORDINALITY AS u (key, n, ord)
        WHERE t.bucket >= %(start)s AND t.bucket < %(end)s
        GROUP BY 1, 2, 3
    ) AS per_key
    GROUP BY 1, 2
) AS m (bucket, {owner}, count, sum, min, max, keys, counts)
CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r;

-- name: fold_days
-- The days [%(start)s, %(end)s) of one kind, from their hourly rows into the daily tier; as
-- fold_hours, those days lie above the daily watermark.
INSERT INTO analytics.{kind}_1d (bucket, {owner}, count, sum, min, max, keys, counts,
                                      k50, k95, k99)
SELECT m.*, r.*
FROM (
    SELECT bucket, {owner}, sum(rows_count)::bigint, sum(total), min(low), max(high),
           array_agg(key ORDER BY key), array_agg(n ORDER BY key)
    FROM (
        SELECT time_bucket(INTERVAL '1 day', t.bucket) AS bucket, t.{owner}, u.key,
               sum(u.n)::bigint AS n,
               sum(t.count) FILTER (WHERE u.ord = 1) AS rows_count,
               sum(t.sum) FILTER (WHERE u.ord = 1) AS total,
               min(t.min) FILTER (WHERE u.ord = 1) AS low,
               max(t.max) FILTER (WHERE u.ord = 1) AS high
        FROM analytics.{kind}_1h AS t
        CROSS JOIN LATERAL unnest(t.keys, t.counts) WITH ORDINALITY AS u (key, n, ord)
        WHERE t.bucket >= %(start)s AND t.bucket < %(end)s
        GROUP BY 1, 2, 3
    ) AS per_key
    GROUP BY 1, 2
) AS m (bucket, {owner}, count, sum, min, max, keys, counts)
CROSS JOIN LATERAL analytics.sketch_rank_keys(m.keys, m.counts) AS r;

-- name: statistics_tiers
-- Statistics per group over a window from the tiers and the pending deltas (query/plan.py
-- splits the window; the parts never overlap). $1 the owners read (series ids, or the one
-- metric id), $2 the group of each (null without group_by); $3..$4 the window, for the
-- deltas; $5..$6 the days read from the daily tier; $7 the hours from the hourly tier; $8..$9
-- and $10..$11 the minute ranges. Percentiles merge the sketches of all parts and read the
-- value at rank ceil(p * n), as percentile_disc does, each clamped to the min and max of the
-- same rows (a bucket's representative may lie just outside the data): within 1% of the
-- exact value and never outside [min, max].
WITH groups AS (
    SELECT * FROM unnest($1::integer[], $2::text[]) AS g ({owner}, grp)
), parts AS (
    SELECT g.grp, t.count, t.sum, t.min, t.max, t.keys, t.counts::bigint[] AS counts
    FROM analytics.{kind}_1d AS t JOIN groups AS g USING ({owner})
    WHERE t.{owner} = ANY ($1) AND t.bucket >= $5 AND t.bucket < $6
    UNION ALL
    SELECT g.grp, t.count, t.sum, t.min, t.max, t.keys, t.counts::bigint[]
    FROM analytics.{kind}_1h AS t JOIN groups AS g USING ({owner})
    WHERE t.{owner} = ANY ($1) AND t.bucket = ANY ($7::timestamptz[])
    UNION ALL
    SELECT g.grp, t.count, t.sum, t.min, t.max, t.keys, t.counts::bigint[]
    FROM analytics.{kind}_1m AS t JOIN groups AS g USING ({owner})
    WHERE t.{owner} = ANY ($1) AND t.bucket >= $8 AND t.bucket < $9
    UNION ALL
    SELECT g.grp, t.count, t.sum, t.min, t.max, t.keys, t.counts::bigint[]
    FROM analytics.{kind}_1m AS t JOIN groups AS g USING ({owner})
    WHERE t.{owner} = ANY ($1) AND t.bucket >= $10 AND t.bucket < $11
    UNION ALL
    SELECT g.grp, d.count, d.sum, d.min, d.max, d.keys, d.counts::bigint[]
    FROM _analytics.{kind}_deltas AS d JOIN groups AS g USING ({owner})
    WHERE d.{owner} = ANY ($1) AND d.minute >= $3 AND d.minute < $4
), keyed AS (  -- (unnest in the select list runs the two arrays in step, without the
               --  tuple store that unnest(a, b) in FROM fills for every row)
    SELECT grp, key, sum(n) AS n
    FROM (SELECT grp, unnest(keys) AS key, unnest(counts) AS n FROM parts) AS u
    GROUP BY 2, 1  -- (not grp, key: grouped in the window's order, the planner, which expects
                   --  10 keys a sketch, sorts the thousands unnested to group them; in this
                   --  order it hashes them and sorts only the groups: 24-hour statistics of a
                   --  busy metric 17 -> 8 ms)
), ranked AS (
    SELECT grp, key,
           sum(n) OVER (PARTITION BY grp ORDER BY key) AS running,
           sum(n) OVER (PARTITION BY grp) AS total
    FROM keyed
), percentiles AS (
    SELECT grp,
           analytics.sketch_value(min(key) FILTER (
               WHERE running >= ceil(0.5::float8 * total::float8))) AS p50,
           analytics.sketch_value(min(key) FILTER (
               WHERE running >= ceil(0.95::float8 * total::float8))) AS p95,
           analytics.sketch_value(min(key) FILTER (
               WHERE running >= ceil(0.99::float8 * total::float8))) AS p99
    FROM ranked GROUP BY grp
), totals AS (
    SELECT grp, sum(count)::bigint AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max
    FROM parts GROUP BY grp
)
SELECT t.grp, t.count, t.sum / nullif(t.count, 0) AS avg, t.sum, t.min, t.max,
       CASE WHEN p.p50 IS NOT NULL THEN  -- (greatest would turn a missing one into the min)
           ARRAY[least(greatest(p.p50, t.min), t.max), least(greatest(p.p95, t.min), t.max),
                 least(greatest(p.p99, t.min), t.max)]
       END AS percentiles
FROM totals AS t
LEFT JOIN percentiles AS p ON p.grp IS NOT DISTINCT FROM t.grp
WHERE t.count > 0
ORDER BY t.grp;

-- name: timeseries_tiers
-- Figures per output bucket of width $12 over the window [$3, $4), from the parts of
-- statistics_tiers ($1..$11 as there). The width is a whole multiple of every tier row read
-- (query/plan.py reads no row wider than a bucket), so each row falls into exactly one output
-- bucket. Empty buckets come back with count 0 (gap filling). With $13, one of 0.5, 0.95 and
-- 0.99, each bucket also has that percentile, clamped to the bucket's min and max: a bucket
-- made of one tier row alone (a time series at the tier's own width) takes it from the row's
-- rank keys (k50, k95, k99, the same rule); the others merge the sketches of their rows.
-- A tier row's sketch is read only when it may have to merge: when the row is narrower than
-- the bucket, or when a pending delta falls into its bucket (`merging`); so a time series at
-- a tier's own width reads the arrays of the newest bucket or two, not of every row. Without
-- $13 (null) no sketch is read.
WITH groups AS (
    SELECT * FROM unnest($1::integer[], $2::text[]) AS g ({owner}, grp)
), merging AS (  -- the buckets that pending deltas fall into
    SELECT coalesce(array_agg(DISTINCT time_bucket($12::text::interval, d.minute)), '{{}}')
           AS buckets
    FROM _analytics.{kind}_deltas AS d
    WHERE $13::float8 IS NOT NULL AND d.{owner} = ANY ($1) AND d.minute >= $3 AND d.minute < $4
), parts AS (
    SELECT g.grp, time_bucket($12::text::interval, t.bucket) AS bucket, t.count, t.sum,
           t.min, t.max,
           CASE WHEN $13::float8 IS NOT NULL AND ($12::text::interval > INTERVAL '1 day'
                     OR time_bucket($12::text::interval, t.bucket) = ANY (m.buckets))
                THEN t.keys END AS keys,
           CASE WHEN $13::float8 IS NOT NULL AND ($12::text::interval > INTERVAL '1 day'
                     OR time_bucket($12::text::interval, t.bucket) = ANY (m.buckets))
                THEN t.counts::bigint[] END AS counts,
           CASE $13::float8 WHEN 0.5 THEN t.k50 WHEN 0.95 THEN t.k95 WHEN 0.99 THEN t.k99
           END AS rank_key
    FROM analytics.{kind}_1d AS t JOIN groups AS g USING ({owner}) CROSS JOIN merging AS m
    WHERE t.{owner} = ANY ($1) AND t.bucket >= $5 AND t.bucket < $6
    UNION ALL
    SELECT g.grp, time_bucket($12::text::interval, t.bucket), t.count, t.sum, t.min, t.max,
           CASE WHEN $13::float8 IS NOT NULL AND ($12::text::interval > INTERVAL '1 hour'
                     OR time_bucket($12::text::interval, t.bucket) = ANY (m.buckets))
                THEN t.keys END,
           CASE WHEN $13::float8 IS NOT NULL AND ($12::text::interval > INTERVAL '1 hour'
                     OR time_bucket($12::text::interval, t.bucket) = ANY (m.buckets))
                THEN t.counts::bigint[] END,
           CASE $13::float8 WHEN 0.5 THEN t.k50 WHEN 0.95 THEN t.k95 WHEN 0.99 THEN t.k99 END
    FROM analytics.{kind}_1h AS t JOIN groups AS g USING ({owner}) CROSS JOIN merging AS m
    WHERE t.{owner} = ANY ($1) AND t.bucket = ANY ($7::timestamptz[])
    UNION ALL
    SELECT g.grp, time_bucket($12::text::interval, t.bucket), t.count, t.sum, t.min, t.max,
           CASE WHEN $13::float8 IS NOT NULL AND ($12::text::interval > INTERVAL '1 minute'
                     OR time_bucket($12::text::interval, t.bucket) = ANY (m.buckets))
                THEN t.keys END,
           CASE WHEN $13::float8 IS NOT NULL AND ($12::text::interval > INTERVAL '1 minute'
                     OR time_bucket($12::text::interval, t.bucket) = ANY (m.buckets))
                THEN t.counts::bigint[] END,
           CASE $13::float8 WHEN 0.5 THEN t.k50 WHEN 0.95 THEN t.k95 WHEN 0.99 THEN t.k99 END
    FROM analytics.{kind}_1m AS t JOIN groups AS g USING ({owner}) CROSS JOIN merging AS m
    WHERE t.{owner} = ANY ($1) AND t.bucket >= $8 AND t.bucket < $9
    UNION ALL
    SELECT g.grp, time_bucket($12::text::interval, t.bucket), t.count, t.sum, t.min, t.max,
           CASE WHEN $13::float8 IS NOT NULL AND ($12::text::interval > INTERVAL '1 minute'
                     OR time_bucket($12::text::interval, t.bucket) = ANY (m.buckets))
                THEN t.keys END,
           CASE WHEN $13::float8 IS NOT NULL AND ($12::text::interval > INTERVAL '1 minute'
                     OR time_bucket($12::text::interval, t.bucket) = ANY (m.buckets))
                THEN t.counts::bigint[] END,
           CASE $13::float8 WHEN 0.5 THEN t.k50 WHEN 0.95 THEN t.k95 WHEN 0.99 THEN t.k99 END
    FROM analytics.{kind}_1m AS t JOIN groups AS g USING ({owner}) CROSS JOIN merging AS m
    WHERE t.{owner} = ANY ($1) AND t.bucket >= $10 AND t.bucket < $11
    UNION ALL
    SELECT g.grp, time_bucket($12::text::interval, d.minute), d.count, d.sum, d.min, d.max,
           d.keys, d.counts::bigint[], NULL
    FROM _analytics.{kind}_deltas AS d JOIN groups AS g USING ({owner})
    WHERE d.{owner} = ANY ($1) AND d.minute >= $3 AND d.minute < $4
), totals AS (
    SELECT grp, bucket, sum(count)::bigint AS count, sum(sum) AS sum, min(min) AS min,
           max(max) AS max,
           CASE WHEN count(*) = 1 THEN min(rank_key) END AS rank_key
    FROM parts GROUP BY 1, 2
), keyed AS (
    SELECT grp, bucket, key, sum(n) AS n
    FROM (
        SELECT p.grp, p.bucket, unnest(p.keys) AS key, unnest(p.counts) AS n
        FROM parts AS p
        JOIN totals AS t ON t.grp IS NOT DISTINCT FROM p.grp AND t.bucket = p.bucket
        WHERE p.keys IS NOT NULL AND t.rank_key IS NULL
    ) AS u
    GROUP BY 3, 1, 2  -- (hashed, not sorted: see statistics_tiers)
), ranked AS (
    SELECT grp, bucket, key,
           sum(n) OVER (PARTITION BY grp, bucket ORDER BY key) AS running,
           sum(n) OVER (PARTITION BY grp, bucket) AS total
    FROM keyed
), percentiles AS (
    SELECT grp, bucket,
           analytics.sketch_value(min(key) FILTER (
               WHERE running >= ceil($13::float8 * total::float8))) AS value
    FROM ranked
    GROUP BY grp, bucket
), buckets AS (
    SELECT generate_series(time_bucket($12::text::interval, $3), $4 - INTERVAL '1 microsecond',
                           $12::text::interval) AS bucket
), wanted AS (
    SELECT grp, bucket FROM (SELECT DISTINCT grp FROM groups) AS gs CROSS JOIN buckets
)
SELECT w.grp, w.bucket, coalesce(t.count, 0) AS count, t.sum, t.min, t.max,
       t.sum / extract(epoch FROM (w.bucket + $12::text::interval) - w.bucket) AS rate,
       CASE WHEN coalesce(t.rank_key::float8, p.value) IS NOT NULL THEN  -- (greatest skips nulls)
           least(greatest(coalesce(analytics.sketch_value(t.rank_key), p.value), t.min), t.max)
       END AS percentile
FROM wanted AS w
LEFT JOIN totals AS t ON t.grp IS NOT DISTINCT FROM w.grp AND t.bucket = w.bucket
LEFT JOIN percentiles AS p ON p.grp IS NOT DISTINCT FROM w.grp AND p.bucket = w.bucket
ORDER BY w.grp NULLS LAST, w.bucket;

-- name: timeseries_minutes
-- timeseries_tiers for its commonest case, a time series of 1-minute buckets of one owner ($1:
-- a series, or the metric) over the whole minutes [$2, $3), all of them held by the minute tier
-- (query/plan.py): each bucket is one minute row, its percentile $4 (0.5, 0.95, 0.99 or null)
-- read from the row's rank keys; a minute that pending deltas fall into merges its row (if any)
-- with them, as timeseries_tiers merges. The same rows (every minute, gaps filled), at half the
-- cost (a row a minute and no grouping): a 24-hour series of the load benchmark's metric (1,000
-- series, 2 M events) 16-18 -> 8.6 ms. $5 the group the owner answers for (null without
-- group_by).
WITH pending AS (
    SELECT d.minute AS bucket, d.count, d.sum, d.min, d.max, d.keys, d.counts::bigint[] AS counts
    FROM _analytics.{kind}_deltas AS d
    WHERE d.{owner} = $1 AND d.minute >= $2 AND d.minute < $3
), merged AS (  -- the minutes with pending deltas: the deltas and their minute's row
    SELECT bucket, count, sum, min, max, keys, counts FROM pending
    UNION ALL
    SELECT t.bucket, t.count, t.sum, t.min, t.max, t.keys, t.counts::bigint[]
    FROM analytics.{kind}_1m AS t
    WHERE t.{owner} = $1 AND t.bucket IN (SELECT bucket FROM pending)
), keyed AS (
    SELECT bucket, key, sum(n) AS n
    FROM (SELECT bucket, unnest(keys) AS key, unnest(counts) AS n FROM merged
          WHERE $4::float8 IS NOT NULL) AS u
    GROUP BY 2, 1  -- (hashed, not sorted: see statistics_tiers)
), ranked AS (
    SELECT bucket, key,
           sum(n) OVER (PARTITION BY bucket ORDER BY key) AS running,
           sum(n) OVER (PARTITION BY bucket) AS total
    FROM keyed
), percentiles AS (
    SELECT bucket,
           analytics.sketch_value(min(key) FILTER (
               WHERE running >= ceil($4::float8 * total::float8))) AS value
    FROM ranked GROUP BY bucket
), answers AS (
    SELECT t.bucket, t.count, t.sum, t.min, t.max,
           analytics.sketch_value(
               CASE $4::float8 WHEN 0.5 THEN t.k50 WHEN 0.95 THEN t.k95 WHEN 0.99 THEN t.k99 END
           ) AS value
    FROM analytics.{kind}_1m AS t
    WHERE t.{owner} = $1 AND t.bucket >= $2 AND t.bucket < $3
      AND t.bucket NOT IN (SELECT bucket FROM pending)
    UNION ALL
    SELECT m.bucket, sum(m.count)::bigint, sum(m.sum), min(m.min), max(m.max), min(p.value)
    FROM merged AS m LEFT JOIN percentiles AS p USING (bucket)
    GROUP BY m.bucket
)
SELECT $5::text AS grp, b.bucket, coalesce(a.count, 0) AS count, a.sum, a.min, a.max,
       a.sum / extract(epoch FROM INTERVAL '1 minute') AS rate,
       CASE WHEN a.value IS NOT NULL THEN least(greatest(a.value, a.min), a.max) END AS percentile
FROM generate_series($2, $3 - INTERVAL '1 microsecond', INTERVAL '1 minute') AS b (bucket)
LEFT JOIN answers AS a USING (bucket)
ORDER BY b.bucket;
