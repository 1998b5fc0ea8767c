-- Times are unix microseconds (INTEGER), always passed in from Go.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    key         TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    payload     BLOB NOT NULL
);
-- Dedupe: INSERT ... ON CONFLICT (source, key) DO NOTHING.
CREATE UNIQUE INDEX events_source_key ON events (source, key);
CREATE INDEX events_received ON events (received_at);

CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    event_id    TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    flow        TEXT NOT NULL,
    generation  INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'running', 'retrying', 'succeeded', 'dead')),
    step        INTEGER NOT NULL DEFAULT 0,
    step_id     TEXT NOT NULL DEFAULT '',
    attempt     INTEGER NOT NULL DEFAULT 0,
    due_at      INTEGER NOT NULL,
    lease_token TEXT NOT NULL DEFAULT '',
    last_error  TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
-- The queue: only claimable rows are indexed, so finished runs cost nothing.
-- For running rows due_at is the lease expiry.
CREATE INDEX runs_runnable ON runs (due_at) WHERE state IN ('pending', 'retrying', 'running');
CREATE INDEX runs_event ON runs (event_id);
CREATE INDEX runs_dead ON runs (updated_at) WHERE state = 'dead';

CREATE TABLE run_steps (
    run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_index   INTEGER NOT NULL,
    step_id      TEXT NOT NULL,
    output       BLOB NOT NULL,
    completed_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, step_index)
);

CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_index  INTEGER NOT NULL,
    step_id     TEXT NOT NULL,
    system      TEXT NOT NULL,
    number      INTEGER NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('succeeded', 'retry', 'dead')),
    status      INTEGER NOT NULL,
    error       TEXT NOT NULL,
    duration_us INTEGER NOT NULL,
    response    BLOB,
    started_at  INTEGER NOT NULL
);
CREATE INDEX attempts_run ON attempts (run_id);
