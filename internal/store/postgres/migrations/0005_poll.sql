-- Timed sources (poll, schedule, reconcile): their shared schedule and
-- cursor. A NULL cursor means none was stored yet.
CREATE TABLE poll_state (
    source          text PRIMARY KEY,
    cursor          text,
    next_run_at     timestamptz NOT NULL,
    last_run_at     timestamptz,
    last_ok_at      timestamptz,
    cursor_moved_at timestamptz,
    failures        integer NOT NULL DEFAULT 0,
    last_found      integer NOT NULL DEFAULT 0,
    last_error      text NOT NULL DEFAULT ''
);

-- The last version a poll saw of each record: one row per record, not per
-- version, so it grows with the polled system's data, and it outlives event
-- retention (an unchanged record is never emitted again).
CREATE TABLE poll_records (
    source    text NOT NULL,
    record_id text NOT NULL,
    version   text NOT NULL,
    seen_at   timestamptz NOT NULL,
    PRIMARY KEY (source, record_id)
);
