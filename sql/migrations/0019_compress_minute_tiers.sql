-- Compression of the minute tiers, and fewer, larger compressed chunks, on the Community
-- edition (nothing on the Apache edition).
--
-- 0017 left the minute tiers uncompressed because their open rows change every second; but a
-- minute row is final a few seconds after its minute (the compactor merges pending deltas
-- every 10 s at most), and at low per-series rates the minute tiers are the largest rollups: a
-- series at a few events a minute has a row a minute holding about as many sketch keys as
-- events, ~360 bytes a row uncompressed (the 30-day storage bench: 1.7 + 1.9 bytes per event,
-- half of all rollups). Their chunks (1 hour per series, 6 hours per metric) are compressed
-- once 2 hours past their end, segmented and ordered as the other tiers; a late event into
-- such a minute upserts its row inside the compressed chunk, as for the hourly and daily tiers
-- (tests/test_compression.py).
--
-- Every compressed chunk costs ~150 KiB whatever it holds (the emptied row chunk's files and
-- index, the compressed table, its TOAST table and their indexes, free-space and visibility
-- maps): at 40,000 events a day, a third of the compressed raw events (the same bench: 18.2
-- bytes per event with daily chunks, 15.8 with weekly). So compression rolls consecutive
-- chunks up into one compressed chunk (`compress_chunk_time_interval`):
--
-- | relation                | chunks  | compressed after | compressed chunks |
-- | metric_events           | 1 day   | 7 days           | 7 days   |
-- | series_1m               | 1 hour  | 2 hours          | 6 hours  |
-- | metric_1m               | 6 hours | 2 hours          | 1 day    |
-- | series_1h, metric_1h    | 7 days  | 7 days           | 28 days  |
-- | series_1d, metric_1d    | 30 days | 30 days          | 360 days |
--
-- Retention drops whole chunks, so a rolled-up chunk goes when its newest part is past the
-- horizon: raw events are kept up to 7 days longer than RETENTION_DAYS (an `exact=true`
-- query reaching that far counts them, as the hourly and daily tiers do), the minute tiers up
-- to 6 and 24 hours longer. A
-- deployment writing millions of events a minute, whose daily chunks are large already, turns
-- this off for raw events with ALTER TABLE ... SET (timescaledb.compress_chunk_time_interval =
-- '0') on the raw events' hypertable (analytics.metric_event_store since 0020).

DO $$
DECLARE
    target record;
BEGIN
    IF current_setting('timescaledb.license', true) IS DISTINCT FROM 'timescale' THEN
        RETURN;
    END IF;
    FOR target IN
        SELECT * FROM (VALUES ('series_1m', 'series_id'), ('metric_1m', 'metric_id'))
            AS t (relation, segment_by)
    LOOP
        EXECUTE format(
            'ALTER TABLE analytics.%I SET (timescaledb.compress, '
            'timescaledb.compress_segmentby = %L, timescaledb.compress_orderby = %L)',
            target.relation, target.segment_by, 'bucket DESC');
        PERFORM add_compression_policy(format('analytics.%I', target.relation)::regclass,
                                       compress_after => INTERVAL '2 hours',
                                       if_not_exists => true);
    END LOOP;
    FOR target IN
        SELECT * FROM (VALUES
            ('metric_events', INTERVAL '7 days'),
            ('series_1m', INTERVAL '6 hours'),
            ('metric_1m', INTERVAL '1 day'),
            ('series_1h', INTERVAL '28 days'),
            ('metric_1h', INTERVAL '28 days'),
            ('series_1d', INTERVAL '360 days'),
            ('metric_1d', INTERVAL '360 days')
        ) AS t (relation, rolled_up)
    LOOP
        EXECUTE format('ALTER TABLE analytics.%I SET (timescaledb.compress_chunk_time_interval = %L)',
                       target.relation, target.rolled_up);
    END LOOP;
END
$$;
