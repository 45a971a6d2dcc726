-- Which attempt of the run's job uploaded each epoch: after a worker died and the job was
-- resumed from a checkpoint, the epochs before the checkpoint keep attempt 1 and the
-- recomputed ones carry the later attempt.
ALTER TABLE epoch_metrics ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
