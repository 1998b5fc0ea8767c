-- The whole-record hash of a write's first echo, one per source: a poll and
-- a webhook about the same system's records show them in different shapes,
-- so one hash for both made the second source's echo look like a person's
-- change. Echo hashes recorded before this migration are dropped: they
-- only matter within the echo window (10 minutes by default), and at
-- worst one more echo of a write runs.
CREATE TABLE fingerprint_echoes (
    fingerprint_id text NOT NULL REFERENCES fingerprints (id) ON DELETE CASCADE,
    source         text NOT NULL,
    echo_hash      text NOT NULL,
    PRIMARY KEY (fingerprint_id, source)
);
ALTER TABLE fingerprints DROP COLUMN echo_hash;
