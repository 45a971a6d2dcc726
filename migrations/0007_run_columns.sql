-- A succeeded run's per-sample statistics as packed columns in sample order (codec.rs, f64
-- with NaN for "no value", never_learned as u8), so a comparison reads a few BLOBs per run
-- instead of 10^5 rows. sample_stats keeps the same values for sorting and filtering.
CREATE TABLE run_columns (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (run_id, name)
);

-- SHA-256 of the run's sample keys in manifest order (each followed by a newline): runs with
-- equal digests hold the same samples in the same order and are compared without a join.
ALTER TABLE runs ADD COLUMN manifest_digest TEXT;
