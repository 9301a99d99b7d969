-- Runs of the periodic jobs: the data behind `python -m jobs status` and GET /analytics/jobs.
--
-- A job is claimed with pg_try_advisory_lock on a session the scheduler holds for the run; a
-- process that dies mid-run loses its session and so its lock, and the run's row, left
-- 'running', is marked 'interrupted' by the next process that claims the job.
CREATE TABLE _analytics.job_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job           text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    rows_affected bigint,
    outcome       text NOT NULL DEFAULT 'running'
                  CHECK (outcome IN ('running', 'ok', 'failed', 'interrupted')),
    error         text,
    detail        text,
    host          text NOT NULL,
    pid           integer NOT NULL
);

CREATE INDEX job_runs_job_started_idx ON _analytics.job_runs (job, started_at DESC);
