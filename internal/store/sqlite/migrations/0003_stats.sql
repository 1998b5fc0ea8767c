-- Newest events of a source (console listing, silent-source alerts).
CREATE INDEX events_source_received ON events (source, received_at);
-- Attempts in a time window (error rates per system).
CREATE INDEX attempts_started ON attempts (started_at);
