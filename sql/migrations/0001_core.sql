-- The core of the store: metrics, series and the raw events hypertable.
--
-- Naming: `analytics` holds what users, the API and DBAs meet; `_analytics` holds bookkeeping
-- (the migrations table, created by the runner before this file runs).

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TYPE analytics.metric_type AS ENUM ('counter', 'gauge', 'histogram', 'timer');

-- One row per metric name. A metric's type is fixed by its first event: the ingest path refuses
-- later events of another type rather than mixing counters with gauges in one rollup.
CREATE TABLE analytics.metrics (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    metric_type analytics.metric_type NOT NULL,
    unit        text,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A series is a metric with one canonical tag set. jsonb gives the canonical form for free
-- (keys sorted and de-duplicated), so the unique constraint is what makes
-- (metric, tags) -> id safe when several ingest processes create the same series at once.
-- The compact integer id keeps every raw event row narrow.
CREATE TABLE analytics.series (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    metric_id  integer NOT NULL REFERENCES analytics.metrics (id) ON DELETE CASCADE,
    tags       jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(tags) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (metric_id, tags)
);

-- Tag filters (`tag.endpoint=/api/agents`) look series up by containment.
CREATE INDEX series_tags_idx ON analytics.series USING gin (tags jsonb_path_ops);

-- The raw events: 20 bytes of payload per row, nothing else. Tags live on the series.
CREATE TABLE analytics.metric_events (
    time      timestamptz NOT NULL,
    series_id integer NOT NULL,
    value     double precision NOT NULL
);

-- Chunk interval, measured on PostgreSQL 15 + TimescaleDB 2.19 (2 million rows, 500 series,
-- inserted in time order): 108 bytes per row on disk, heap 52 + the (series_id, time) index 56.
-- TimescaleDB's guidance is that the newest chunk and its indexes fit in a quarter of memory.
-- One day per chunk keeps a 16 GiB server within that up to ~37 million events a day
-- (~430 events/s sustained); heavier deployments should shorten it with
--   SELECT set_chunk_time_interval('analytics.metric_events', INTERVAL '1 hour');
-- One day also matches retention's granularity (whole days are dropped).
SELECT create_hypertable(
    'analytics.metric_events',
    by_range('time', INTERVAL '1 day'),
    create_default_indexes => false
);

-- Every read is "these series over this time range": statistics, time series, alert windows.
CREATE INDEX metric_events_series_time_idx ON analytics.metric_events (series_id, time DESC);

-- Rollup jobs read all series over a time range. A B-tree on time alone measured 22 more bytes
-- per row (+21%); BRIN costs a few pages per chunk and, as events arrive nearly in time order,
-- narrows a range scan about as well.
CREATE INDEX metric_events_time_brin ON analytics.metric_events USING brin (time);
