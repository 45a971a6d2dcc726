-- Each job's log: the worker's lines (sent with its heartbeats) and the server's notes on the
-- job (leased, re-queued, cancel asked, finished), the newest 2,000 per job.
CREATE TABLE job_log (
    id      INTEGER PRIMARY KEY,
    job_id  INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    source  TEXT NOT NULL CHECK (source IN ('worker', 'server')),
    line    TEXT NOT NULL
);
CREATE INDEX job_log_job ON job_log(job_id, id);
