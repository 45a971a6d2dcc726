-- Studies: a grid of runs (architectures x seeds x training-schedule arms) launched and
-- reported as one. `plan` is the expanded request (archs, seeds, arms, shared base fields),
-- kept to extend the study with more seeds.
CREATE TABLE studies (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    dataset    TEXT NOT NULL,
    plan       TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
ALTER TABLE runs ADD COLUMN study_id INTEGER REFERENCES studies(id);
ALTER TABLE runs ADD COLUMN study_arm INTEGER;
CREATE INDEX runs_study ON runs(study_id, id);
