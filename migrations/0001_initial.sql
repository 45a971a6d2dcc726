-- forgetlab's storage. Per-sample, per-epoch data lives in epoch_records as packed
-- little-endian arrays, one row per (run, epoch); sample_stats is derived from it when a
-- run ends, one row per (run, sample), for sorting and filtering.

CREATE TABLE datasets (
    name          TEXT PRIMARY KEY,
    format        TEXT NOT NULL,
    path          TEXT NOT NULL,
    num_classes   INTEGER NOT NULL,
    class_names   TEXT NOT NULL,            -- JSON array, by label
    train_size    INTEGER NOT NULL,
    val_size      INTEGER NOT NULL,
    image_height  INTEGER NOT NULL,
    image_width   INTEGER NOT NULL,
    channels      INTEGER NOT NULL,
    registered_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

-- What was asked: immutable once created.
CREATE TABLE runs (
    id         INTEGER PRIMARY KEY,
    spec       TEXT NOT NULL,               -- JSON ExperimentSpec
    dataset    TEXT NOT NULL REFERENCES datasets(name),
    arch       TEXT NOT NULL,
    seed       INTEGER NOT NULL,
    epochs     INTEGER NOT NULL,            -- warmup + fine-tuning
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX runs_dataset ON runs(dataset, arch);

-- How it is going: the queue. One job per run.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    run_id           INTEGER NOT NULL UNIQUE REFERENCES runs(id) ON DELETE CASCADE,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
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
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX jobs_queue ON jobs(status, priority DESC, id);

-- The run's training samples in recording order.
CREATE TABLE run_samples (
    run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    sample_index  INTEGER NOT NULL,
    dataset_index INTEGER NOT NULL,
    sample_key    TEXT NOT NULL,
    label         INTEGER NOT NULL,
    PRIMARY KEY (run_id, sample_index)
) WITHOUT ROWID;

CREATE TABLE epoch_metrics (
    run_id         INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch          INTEGER NOT NULL,
    phase          TEXT NOT NULL CHECK (phase IN ('warmup', 'finetune')),
    train_loss     REAL NOT NULL,
    train_accuracy REAL NOT NULL,
    val_loss       REAL,
    val_accuracy   REAL,
    lr             REAL NOT NULL,
    seconds        REAL NOT NULL,
    PRIMARY KEY (run_id, epoch)
) WITHOUT ROWID;

-- One row per (run, epoch): every sample's record as packed arrays in manifest order.
-- correct: u8; loss, p_true, margin, el2n: f32; predicted: u16; all little-endian.
CREATE TABLE epoch_records (
    run_id       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch        INTEGER NOT NULL,
    sample_count INTEGER NOT NULL,
    correct      BLOB NOT NULL,
    loss         BLOB NOT NULL,
    p_true       BLOB NOT NULL,
    margin       BLOB NOT NULL,
    predicted    BLOB NOT NULL,
    el2n         BLOB NOT NULL,
    PRIMARY KEY (run_id, epoch)
);

CREATE TABLE sample_stats (
    run_id              INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    sample_index        INTEGER NOT NULL,
    sample_key          TEXT NOT NULL,
    dataset_index       INTEGER NOT NULL,
    label               INTEGER NOT NULL,
    forgetting_events   INTEGER NOT NULL,
    learning_events     INTEGER NOT NULL,
    first_learned_epoch INTEGER,
    never_learned       INTEGER NOT NULL,
    unforgettable       INTEGER NOT NULL,
    confidence          REAL,
    variability         REAL,
    correctness         REAL,
    tau                 REAL,
    r2                  REAL,
    warmup_loss         REAL,
    PRIMARY KEY (run_id, sample_index)
) WITHOUT ROWID;
CREATE INDEX sample_stats_forgetting ON sample_stats(run_id, forgetting_events DESC, sample_index);
CREATE INDEX sample_stats_key ON sample_stats(sample_key, run_id);
