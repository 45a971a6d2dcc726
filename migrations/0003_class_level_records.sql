-- Class-level records of a run (DESIGN.md, class level): the validation confusion matrix of
-- every epoch, each training sample's eval-mode loss at the end of the head warmup, and the
-- class means of the final model's penultimate embeddings.
ALTER TABLE epoch_metrics ADD COLUMN val_confusion BLOB;   -- u32 LE, classes x classes, row = true class
ALTER TABLE epoch_records ADD COLUMN eval_loss BLOB;       -- f32 LE per sample, for the last warmup epoch

CREATE TABLE run_class_means (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    dim    INTEGER NOT NULL,
    means  BLOB NOT NULL,                                  -- f32 LE, classes x dim, row = label
    counts BLOB NOT NULL                                   -- u32 LE, training samples per class
);
