-- Run-level analysis computed when a run succeeds (JSON of protocol::RunAnalysis and
-- protocol::ClassForgetting): decay-fit counts, warmup predictability, per-class forgetting
-- and the forgotten-into matrix, so pages do not read every record to show them.
CREATE TABLE run_analysis (
    run_id  INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    summary TEXT NOT NULL,
    classes TEXT NOT NULL
);
