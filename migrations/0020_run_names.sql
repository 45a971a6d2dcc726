-- Run names and notes (issue 21, item 5). Runs from before get the name a new run gets by
-- default (architecture, dataset, seed; protocol::spec::default_run_name without the sample
-- selection, which the old rows do not say in a column).
ALTER TABLE runs ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN notes TEXT NOT NULL DEFAULT '';
UPDATE runs SET name = arch || '-' || dataset || '-s' || seed WHERE name = '';
