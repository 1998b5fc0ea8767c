-- Identifiers compare byte by byte, whatever the database's collation.
-- These columns hold ids, keys, names, tokens, hashes and cursors, never
-- text sorted for a person. With the database's default collation every
-- index insert on them (events' id, (source, key) and (source,
-- received_at, id), runs' id and event_id, ...) compared through the
-- locale: on PostgreSQL 15 a libc C.UTF-8 default is no faster than an
-- ICU en-US one (only "C" and "POSIX" compare with memcmp), and "C" cut
-- the server's CPU per ingested event by 13-20% (switchboard bench --only
-- ingest: 43.7 -> 37.9 us on an ICU database, 42.2 -> 33.8 us on a C.UTF-8
-- one, medians). The code also orders some of them in Go, in bytes, and
-- needs SQL to agree: a finish batch locks runs in Go's id order, a lease
-- renewal (ExtendLeases) in ORDER BY id, and under en-US the two
-- deadlocked on ids such as run_a and run_B (the ids store.NewID makes,
-- lowercase base32 behind one prefix, sort alike in both orders).
--
-- Only the indexes on the changed columns are rebuilt, not the tables
-- (same type, a new collation), under an exclusive lock on each table
-- until the migration commits: about 5 s per million events with one run
-- and one attempt each on a 2-core machine. Text for people (errors,
-- pause reasons, chains, written field names) and the enumerations
-- state and outcome (in CHECK constraints and partial indexes) keep the
-- database's collation.
--
-- Every table is locked first, at once, waiting at most 10 s: taken one by
-- one as the ALTERs come, a lock held on events could meet a node's poll
-- transaction holding poll_records and waiting for events, and PostgreSQL
-- would abort the migration after its rebuild (a deadlock). A node's
-- transaction can still deadlock with the LOCK itself, or hold a table
-- past the timeout: the migration then fails at once, having done
-- nothing, and `switchboard migrate` is run again (or the nodes stopped).
-- The statistics of the altered columns are dropped by the ALTERs; the
-- ANALYZE at the end takes them again, or the planner would go without
-- them until autovacuum sees a tenth of each table change.
SET LOCAL lock_timeout = '10s';
LOCK TABLE poll_state, poll_records, events, event_lineage, runs, run_steps, attempts,
    fingerprints, fingerprint_echoes, leases, system_pauses IN ACCESS EXCLUSIVE MODE;
ALTER TABLE events
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN source TYPE text COLLATE "C",
    ALTER COLUMN key TYPE text COLLATE "C",
    ALTER COLUMN trace_parent TYPE text COLLATE "C";
ALTER TABLE runs
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN event_id TYPE text COLLATE "C",
    ALTER COLUMN flow TYPE text COLLATE "C",
    ALTER COLUMN step_id TYPE text COLLATE "C",
    ALTER COLUMN lease_token TYPE text COLLATE "C",
    ALTER COLUMN held_system TYPE text COLLATE "C";
ALTER TABLE run_steps
    ALTER COLUMN run_id TYPE text COLLATE "C",
    ALTER COLUMN step_id TYPE text COLLATE "C";
ALTER TABLE attempts
    ALTER COLUMN run_id TYPE text COLLATE "C",
    ALTER COLUMN step_id TYPE text COLLATE "C",
    ALTER COLUMN system TYPE text COLLATE "C";
ALTER TABLE leases
    ALTER COLUMN name TYPE text COLLATE "C",
    ALTER COLUMN holder TYPE text COLLATE "C";
ALTER TABLE system_pauses ALTER COLUMN system TYPE text COLLATE "C";
ALTER TABLE poll_state
    ALTER COLUMN source TYPE text COLLATE "C",
    ALTER COLUMN cursor TYPE text COLLATE "C";
ALTER TABLE poll_records
    ALTER COLUMN source TYPE text COLLATE "C",
    ALTER COLUMN record_id TYPE text COLLATE "C",
    ALTER COLUMN version TYPE text COLLATE "C";
ALTER TABLE fingerprints
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN system TYPE text COLLATE "C",
    ALTER COLUMN entity TYPE text COLLATE "C",
    ALTER COLUMN record_id TYPE text COLLATE "C",
    ALTER COLUMN hash TYPE text COLLATE "C",
    ALTER COLUMN run_id TYPE text COLLATE "C";
ALTER TABLE fingerprint_echoes
    ALTER COLUMN fingerprint_id TYPE text COLLATE "C",
    ALTER COLUMN source TYPE text COLLATE "C",
    ALTER COLUMN echo_hash TYPE text COLLATE "C";
ALTER TABLE event_lineage
    ALTER COLUMN event_id TYPE text COLLATE "C",
    ALTER COLUMN parent_run TYPE text COLLATE "C";
ANALYZE poll_state, poll_records, events, event_lineage, runs, run_steps, attempts,
    fingerprints, fingerprint_echoes, leases, system_pauses;
SET LOCAL lock_timeout TO DEFAULT;
