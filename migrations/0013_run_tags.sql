-- Labels given to runs at launch, for finding them again; and the indexes the runs table's
-- filters and sorts use at 10^4 runs.
CREATE TABLE run_tags (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    tag    TEXT NOT NULL,
    PRIMARY KEY (run_id, tag)
) WITHOUT ROWID;
CREATE INDEX run_tags_tag ON run_tags(tag, run_id);
CREATE INDEX runs_created ON runs(created_at, id);
CREATE INDEX runs_arch ON runs(arch, id);
