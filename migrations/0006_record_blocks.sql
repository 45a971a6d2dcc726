-- A finished run's records, sealed: blocks of up to 64 samples x every epoch, each column
-- sample-major (one sample's epochs in a row) and encoded by server/src/codec.rs (byte planes,
-- zstd). They replace the run's epoch_records rows when the run
-- succeeds, so one sample's trajectory is one block per run. Runs finished before this
-- migration keep their epoch_records rows and are read from them.
CREATE TABLE record_blocks (
    run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    first_sample    INTEGER NOT NULL,
    samples         INTEGER NOT NULL,
    epochs          INTEGER NOT NULL,
    correct         BLOB NOT NULL,       -- u8
    p_true          BLOB NOT NULL,       -- f32 bits XOR those of exp(-loss) (codec::predict_p_true)
    loss            BLOB NOT NULL,       -- f32
    predicted       BLOB NOT NULL,       -- u16
    margin          BLOB NOT NULL,       -- f32
    el2n            BLOB NOT NULL,       -- f32
    eval_loss       BLOB,                -- f32 per sample (series of 1), after the head warmup
    eval_loss_epoch INTEGER,
    PRIMARY KEY (run_id, first_sample)
);

-- Trajectories now come from record_blocks (or, for older runs, epoch_records).
DROP TABLE sample_traces;
