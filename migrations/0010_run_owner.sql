-- Who launched a run (a name given with the request until accounts exist; then the account).
ALTER TABLE runs ADD COLUMN owner TEXT;
CREATE INDEX runs_owner ON runs(owner, id);
