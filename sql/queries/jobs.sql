-- Statements of the job scheduler (jobs/scheduler.py). Parameters are psycopg's %(name)s.

-- name: job_due
-- By the database's clock, so that replicas' clocks do not matter.
SELECT coalesce(max(started_at) <= now() - %(interval)s::interval, true) AS due
FROM _analytics.job_runs
WHERE job = %(job)s;

-- name: job_mark_interrupted
-- Called holding the job's advisory lock: a run still 'running' belongs to a dead process.
UPDATE _analytics.job_runs
SET outcome = 'interrupted', finished_at = now(),
    error = 'the process running it stopped before it finished'
WHERE job = %(job)s AND outcome = 'running';

-- name: job_start
INSERT INTO _analytics.job_runs (job, host, pid) VALUES (%(job)s, %(host)s, %(pid)s)
RETURNING id, started_at;

-- name: job_finish
UPDATE _analytics.job_runs
SET finished_at = now(), outcome = %(outcome)s, rows_affected = %(rows)s, error = %(error)s,
    detail = %(detail)s
WHERE id = %(id)s;

-- name: job_runs_recent
SELECT id, job, started_at, finished_at,
       extract(epoch FROM finished_at - started_at) * 1000 AS duration_ms,
       rows_affected, outcome, error, detail, host, pid
FROM _analytics.job_runs
WHERE %(job)s::text IS NULL OR job = %(job)s
ORDER BY started_at DESC, id DESC
LIMIT %(limit)s;

-- name: job_runs_prune
DELETE FROM _analytics.job_runs WHERE started_at < now() - %(keep)s::interval;

-- name: oldest_raw_time
-- Where raw events begin: rollups are never recomputed before it (that would empty them).
SELECT min(range_start) AS oldest
FROM timescaledb_information.chunks
WHERE hypertable_schema = 'analytics' AND hypertable_name = 'metric_events';

-- name: idempotency_keys_prune
DELETE FROM _analytics.idempotency_keys WHERE created_at < now() - %(ttl)s::interval;
