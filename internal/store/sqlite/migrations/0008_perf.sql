-- The console's listing (newest events of a source, optionally only those
-- with a run in a given state) orders by (received_at, id): with id in the
-- index the newest events of a source come straight off it, in order and
-- without reading the event rows, so a state filter can probe many of them
-- cheaply. It replaces (source, received_at), whose queries it also serves.
CREATE INDEX events_source_received_id ON events (source, received_at, id);
DROP INDEX events_source_received;
-- The queue's partial indexes also carry each run's state and event: a
-- state filter then counts and finds its runs off the index alone, without
-- reading run rows. It costs no extra writes: a runnable run's entry is
-- rewritten whenever its state changes anyway (due_at changes with it), a
-- dead run's when it leaves dead, and event_id never changes.
DROP INDEX runs_runnable;
CREATE INDEX runs_runnable ON runs (due_at, state, event_id) WHERE state IN ('pending', 'retrying', 'running');
DROP INDEX runs_dead;
CREATE INDEX runs_dead ON runs (updated_at, event_id) WHERE state = 'dead';
