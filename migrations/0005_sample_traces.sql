-- Each sample's records across the epochs of a finished run, transposed from epoch_records
-- (one row per sample instead of one per epoch), so that one sample's trajectory is one row.
CREATE TABLE sample_traces (
    run_id       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    sample_index INTEGER NOT NULL,
    correct      BLOB NOT NULL,              -- u8 per epoch
    p_true       BLOB NOT NULL,              -- f32 LE per epoch
    loss         BLOB NOT NULL,              -- f32 LE per epoch
    predicted    BLOB NOT NULL,              -- u16 LE per epoch
    PRIMARY KEY (run_id, sample_index)
) WITHOUT ROWID;
