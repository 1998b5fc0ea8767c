-- Systems of record. fingerprints: one row per write of an entity the
-- engine made (or is making: the row is written before the outbound call,
-- and completed with the record id in the transaction that finishes the
-- attempt), so an inbound event that is only that write coming back is
-- recognised. record_id is '' while the id of a created record is unknown.
CREATE TABLE fingerprints (
    id         TEXT PRIMARY KEY,          -- the step's outbound idempotency key
    system     TEXT NOT NULL,
    entity     TEXT NOT NULL,
    record_id  TEXT NOT NULL,
    fields     TEXT NOT NULL,             -- JSON list of the written fields' names
    hash       TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    hop        INTEGER NOT NULL,
    chain      TEXT NOT NULL,
    -- the whole record as its first echo showed it ('' until then): a later
    -- event that differs from it elsewhere is a person's change
    echo_hash  TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
CREATE INDEX fingerprints_record ON fingerprints (system, entity, record_id, created_at);
CREATE INDEX fingerprints_created ON fingerprints (created_at);
-- An event's place in a causal chain of our writes, and its outcome when
-- it started no runs because of it (echo, conflict). Only events with
-- something to say have a row.
CREATE TABLE event_lineage (
    event_id   TEXT PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    outcome    TEXT NOT NULL CHECK (outcome IN ('', 'echo', 'conflict')),
    hop        INTEGER NOT NULL,
    chain      TEXT NOT NULL,
    parent_run TEXT NOT NULL
);
