-- Systems of record. fingerprints: one row per write of an entity the
-- engine made (or is making: the row is written before the outbound call,
-- and completed with the record id in the transaction that finishes the
-- attempt), so an inbound event that is only that write coming back is
-- recognised. record_id is '' while the id of a created record is unknown.
CREATE TABLE fingerprints (
    id         text PRIMARY KEY,          -- the step's outbound idempotency key
    system     text NOT NULL,
    entity     text NOT NULL,
    record_id  text NOT NULL,
    fields     text NOT NULL,             -- JSON list of the written fields' names
    hash       text NOT NULL,
    run_id     text NOT NULL,
    hop        integer NOT NULL,
    chain      text NOT NULL,
    -- the whole record as its first echo showed it ('' until then): a later
    -- event that differs from it elsewhere is a person's change
    echo_hash  text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL
);
CREATE INDEX fingerprints_record ON fingerprints (system, entity, record_id, created_at);
CREATE INDEX fingerprints_created ON fingerprints (created_at);
-- An event's place in a causal chain of our writes, and its outcome when
-- it started no runs because of it (echo, conflict). Only events with
-- something to say have a row.
CREATE TABLE event_lineage (
    event_id   text PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    outcome    text NOT NULL CHECK (outcome IN ('', 'echo', 'conflict')),
    hop        integer NOT NULL,
    chain      text NOT NULL,
    parent_run text NOT NULL
);
