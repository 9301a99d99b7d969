-- Compression on by default on the Community edition (timescaledb.license = 'timescale'; the
-- Apache edition has none, and this migration does nothing there).
--
-- Raw events and the hourly and daily tiers are compressed by TimescaleDB's own policies once
-- their chunks are old enough that writes to them are rare: a late event then lands in the
-- compressed chunk (TimescaleDB keeps it beside the compressed rows, and the policy's next run
-- folds it in), and its delta upserts the tier row there (the segment of that one series or
-- metric is decompressed for it). The minute tiers are not compressed: they live hours and their
-- open rows are rewritten every second.
--
-- Segmented by owner (every query reads one series' or one metric's rows over a time range, and
-- a segment is what a read decompresses), ordered by time, newest first as the queries read.
--
-- | relation                        | chunks  | compressed after |
-- | analytics.metric_events         | 1 day   | 7 days (COMPRESS_AFTER_DAYS, `python -m jobs compress`) |
-- | analytics.series_1h, metric_1h  | 7 days  | 7 days  |
-- | analytics.series_1d, metric_1d  | 30 days | 30 days |

DO $$
DECLARE
    target record;
BEGIN
    IF current_setting('timescaledb.license', true) IS DISTINCT FROM 'timescale' THEN
        RETURN;
    END IF;
    FOR target IN
        SELECT * FROM (VALUES
            ('metric_events', 'series_id', 'time', INTERVAL '7 days'),
            ('series_1h', 'series_id', 'bucket', INTERVAL '7 days'),
            ('metric_1h', 'metric_id', 'bucket', INTERVAL '7 days'),
            ('series_1d', 'series_id', 'bucket', INTERVAL '30 days'),
            ('metric_1d', 'metric_id', 'bucket', INTERVAL '30 days')
        ) AS t (relation, segment_by, time_column, after)
    LOOP
        -- (`python -m jobs compress` of an earlier version may have enabled raw compression)
        IF NOT (SELECT compression_enabled FROM timescaledb_information.hypertables
                WHERE hypertable_schema = 'analytics' AND hypertable_name = target.relation) THEN
            EXECUTE format(
                'ALTER TABLE analytics.%I SET (timescaledb.compress, '
                'timescaledb.compress_segmentby = %L, timescaledb.compress_orderby = %L)',
                target.relation, target.segment_by, target.time_column || ' DESC');
        END IF;
        PERFORM add_compression_policy(format('analytics.%I', target.relation)::regclass,
                                       compress_after => target.after, if_not_exists => true);
    END LOOP;
END
$$;
