-- Times are timestamptz, always passed in from Go (never now()), so tests
-- own the clock and every node agrees with the one that wrote the row.
CREATE TABLE events (
    id          text PRIMARY KEY,
    source      text NOT NULL,
    key         text NOT NULL,
    received_at timestamptz NOT NULL,
    payload     bytea NOT NULL
);
-- Dedupe: INSERT ... ON CONFLICT (source, key) DO NOTHING.
CREATE UNIQUE INDEX events_source_key ON events (source, key);
CREATE INDEX events_received ON events (received_at);

CREATE TABLE runs (
    id          text PRIMARY KEY,
    event_id    text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    flow        text NOT NULL,
    generation  integer NOT NULL DEFAULT 0,
    state       text NOT NULL CHECK (state IN ('pending', 'running', 'retrying', 'succeeded', 'dead')),
    step        integer NOT NULL DEFAULT 0,
    step_id     text NOT NULL DEFAULT '',
    attempt     integer NOT NULL DEFAULT 0,
    due_at      timestamptz NOT NULL,
    lease_token text NOT NULL DEFAULT '',
    last_error  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
-- The queue: only claimable rows are indexed. For running rows due_at is
-- the lease expiry, so a dead node's runs become claimable by the same scan.
CREATE INDEX runs_runnable ON runs (due_at) WHERE state IN ('pending', 'retrying', 'running');
CREATE INDEX runs_event ON runs (event_id);
CREATE INDEX runs_dead ON runs (updated_at) WHERE state = 'dead';

CREATE TABLE run_steps (
    run_id       text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_index   integer NOT NULL,
    step_id      text NOT NULL,
    output       bytea NOT NULL,
    completed_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, step_index)
);

CREATE TABLE attempts (
    id          bigserial PRIMARY KEY,
    run_id      text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_index  integer NOT NULL,
    step_id     text NOT NULL,
    system      text NOT NULL,
    number      integer NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('succeeded', 'retry', 'dead')),
    status      integer NOT NULL,
    error       text NOT NULL,
    duration_us bigint NOT NULL,
    response    bytea,
    started_at  timestamptz NOT NULL
);
CREATE INDEX attempts_run ON attempts (run_id);

-- Named leases for singleton duties (retention, later polling and alerts):
-- one holder at a time, taken over when it expires.
CREATE TABLE leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);
