-- Sessions end after an idle time as well as at their absolute expiry (issue 19, item 8):
-- when the session was last used, written at most once a minute.
ALTER TABLE sessions ADD COLUMN last_seen_at TEXT;
UPDATE sessions SET last_seen_at = created_at;
CREATE INDEX sessions_expiry ON sessions(expires_at);
