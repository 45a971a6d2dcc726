-- Training schedules (issue #8; the schedule itself is the `sampling` of runs.spec): the
-- samples each fine-tuning epoch trained on, one bit per sample in manifest order
-- (protocol::pack::pack_bits). An epoch without a row showed every sample (head warmup, or
-- the `full` schedule). Kept when a run's records are sealed.
CREATE TABLE epoch_shown (
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch       INTEGER NOT NULL,
    shown_count INTEGER NOT NULL,
    shown       BLOB NOT NULL,
    PRIMARY KEY (run_id, epoch)
) WITHOUT ROWID;
