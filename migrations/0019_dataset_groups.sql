-- Groups (patients) per side of a dataset registered with a grouping rule (issue 22, item 6):
-- JSON {"train": n, "val": n, "test": n}, NULL for an ungrouped dataset.
ALTER TABLE datasets ADD COLUMN groups TEXT;
