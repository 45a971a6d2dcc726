-- A succeeded run's statistics and sealing run in the background (issue 18, item 5); its job is
-- 'analysing' meanwhile. SQLite cannot change a CHECK constraint in place, so jobs is rebuilt.
-- job_log, which references jobs, is rebuilt around it: dropping the old jobs table is an
-- implicit DELETE, which would otherwise cascade into the log.
CREATE TABLE job_log_copy AS SELECT id, job_id, attempt, at, source, line FROM job_log;
DROP TABLE job_log;

CREATE TABLE jobs_rebuilt (
    id               INTEGER PRIMARY KEY,
    run_id           INTEGER NOT NULL UNIQUE REFERENCES runs(id) ON DELETE CASCADE,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'analysing', 'succeeded', 'failed', 'cancelled')),
    priority         INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 3,
    worker           TEXT,
    token_hash       TEXT,                  -- SHA-256 of the job token, while running
    lease_expires_at INTEGER,               -- unix seconds
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress         TEXT,                  -- JSON Progress, latest heartbeat
    error            TEXT,
    started_at       TEXT,
    finished_at      TEXT,
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    slurm_job_id           INTEGER,         -- shown on the jobs page
    slurm_state            TEXT,            -- last state seen (squeue, then sacct/scontrol)
    slurm_ended_at         TEXT,            -- NULL while the Slurm job is pending or running
    slurm_submit_attempts  INTEGER,         -- jobs.attempts at submission: unchanged at the end = never leased
    slurm_token_hash       TEXT,            -- SHA-256 of the submission's lease token, until used
    slurm_token_expires_at INTEGER          -- unix seconds
);
INSERT INTO jobs_rebuilt (id, run_id, status, priority, attempts, max_attempts, worker, token_hash, lease_expires_at, cancel_requested,
                          progress, error, started_at, finished_at, updated_at, slurm_job_id, slurm_state, slurm_ended_at,
                          slurm_submit_attempts, slurm_token_hash, slurm_token_expires_at)
    SELECT id, run_id, status, priority, attempts, max_attempts, worker, token_hash, lease_expires_at, cancel_requested,
           progress, error, started_at, finished_at, updated_at, slurm_job_id, slurm_state, slurm_ended_at,
           slurm_submit_attempts, slurm_token_hash, slurm_token_expires_at
    FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_rebuilt RENAME TO jobs;
CREATE INDEX jobs_queue ON jobs(status, priority DESC, id);
CREATE INDEX jobs_slurm_active ON jobs(slurm_job_id) WHERE slurm_job_id IS NOT NULL AND slurm_ended_at IS NULL;

CREATE TABLE job_log (
    id      INTEGER PRIMARY KEY,
    job_id  INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    source  TEXT NOT NULL CHECK (source IN ('worker', 'server')),
    line    TEXT NOT NULL
);
INSERT INTO job_log (id, job_id, attempt, at, source, line) SELECT id, job_id, attempt, at, source, line FROM job_log_copy;
DROP TABLE job_log_copy;
CREATE INDEX job_log_job ON job_log(job_id, id);
