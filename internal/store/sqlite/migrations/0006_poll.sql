-- Timed sources (poll, schedule, reconcile): their shared schedule and
-- cursor. A NULL cursor means none was stored yet.
CREATE TABLE poll_state (
    source          TEXT PRIMARY KEY,
    cursor          TEXT,
    next_run_at     INTEGER NOT NULL,
    last_run_at     INTEGER NOT NULL DEFAULT 0,
    last_ok_at      INTEGER NOT NULL DEFAULT 0,
    cursor_moved_at INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    last_found      INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT ''
);

-- The last version a poll saw of each record: one row per record, not per
-- version, so it grows with the polled system's data, and it outlives event
-- retention (an unchanged record is never emitted again).
CREATE TABLE poll_records (
    source    TEXT NOT NULL,
    record_id TEXT NOT NULL,
    version   TEXT NOT NULL,
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (source, record_id)
) WITHOUT ROWID;
