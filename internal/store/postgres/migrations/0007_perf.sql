-- The console's listing (newest events of a source, optionally only those
-- with a run in a given state) orders by (received_at, id): with id in the
-- index the newest events of a source come straight off it, in order, and
-- a state filter probes each one's runs without reading the event rows
-- first. It replaces (source, received_at), whose queries it also serves.
CREATE INDEX events_source_received_id ON events (source, received_at, id);
DROP INDEX events_source_received;
