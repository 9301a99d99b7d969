-- Statements of the schema migration runner, and the TimescaleDB version and edition the
-- service reports. Parameters are psycopg's %(name)s; timescaledb_installed takes none, and
-- asyncpg runs it too (the API's startup, for /readyz).

-- name: timescaledb_available
-- The TimescaleDB version this database has, or will get from CREATE EXTENSION: checked
-- against the minimum before migrating; no row when the server has no timescaledb at all.
SELECT coalesce(installed_version, default_version) AS version
FROM pg_available_extensions
WHERE name = 'timescaledb';

-- name: timescaledb_installed
-- The installed TimescaleDB's version and edition ('timescale', the Community edition with
-- continuous aggregates, compression and policies, or 'apache'); no row before it is created.
SELECT extversion, current_setting('timescaledb.license', true) AS edition
FROM pg_extension
WHERE extname = 'timescaledb';

-- name: timescaledb_license
-- The server's TimescaleDB license setting ('timescale': the Community edition; 'apache'),
-- whether or not this database has the extension yet; NULL on a server without TimescaleDB.
SELECT current_setting('timescaledb.license', true) AS edition;

-- name: schema_migrations_bookkeeping
-- The runner's own record of applied migrations, created before the first migration runs (so
-- not a migration itself); re-run on every migrate, a no-op once it exists.
CREATE SCHEMA IF NOT EXISTS _analytics;
CREATE TABLE IF NOT EXISTS _analytics.schema_migrations (
    version     text PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms integer NOT NULL
);

-- name: schema_migrations_exists
-- Whether the bookkeeping table exists yet (NULL: a database never migrated).
SELECT to_regclass('_analytics.schema_migrations');

-- name: schema_migrations_applied
-- Every applied migration with the checksum of its file when it ran: an edited file is refused.
SELECT version, checksum FROM _analytics.schema_migrations;

-- name: schema_migration_record
-- A migration applied, in the transaction that applied it (for a transactional one).
INSERT INTO _analytics.schema_migrations (version, name, checksum, duration_ms)
VALUES (%(version)s, %(name)s, %(checksum)s, %(duration_ms)s);
