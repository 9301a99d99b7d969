-- Runs started by hand (python -m jobs refresh, retention, track, alerts, health) are recorded
-- in _analytics.job_runs like the scheduler's, marked 'manual'. The scheduler's "is it due"
-- looks at its own runs only ('schedule'): a DBA's run, a range refresh say, does not do the
-- periodic job's work and must not postpone it. Both kinds hold the job's advisory lock while
-- they run, so a 'running' row whose lock is free belongs to a dead process, whichever kind.
ALTER TABLE _analytics.job_runs
    ADD COLUMN trigger text NOT NULL DEFAULT 'schedule' CHECK (trigger IN ('schedule', 'manual'));
