-- Bookkeeping of the write path: exactly-once retries and the buckets rollups must recompute.

-- An Idempotency-Key is recorded in the same transaction as its batch's events, so a retry
-- finds it exactly when the events are there. The body's hash catches a key reused for a
-- different batch. Keys older than IDEMPOTENCY_TTL_HOURS are ignored and pruned.
CREATE TABLE _analytics.idempotency_keys (
    scope       text NOT NULL,
    key         text NOT NULL,
    body_sha256 bytea NOT NULL,
    accepted    integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_created_at_idx ON _analytics.idempotency_keys (created_at);

-- Every committed batch appends the start of each hour its events fall in. Append-only on
-- purpose: a rollup job deletes the rows its snapshot sees and recomputes those hours; a row
-- from a transaction still in flight is invisible to it, so it stays for the next run and no
-- late event is ever missed. (An upsert of one row per hour would make every writer wait on
-- every other writer's row lock, and a job could consume a mark whose events it cannot see.)
CREATE TABLE _analytics.rollup_invalidations (
    bucket      timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX rollup_invalidations_bucket_idx ON _analytics.rollup_invalidations (bucket);
