-- When a write's call started, the order in which an echo is matched to the
-- record's writes: created_at moves to the answer when the attempt
-- finishes (the windows count from it), so a write answered late sorted
-- before a newer write of the same values, and the newer write's echo was
-- taken for a repeated echo of the older one, in the older one's place in
-- the causal chain. Rows from before this migration keep created_at. The
-- default serves nodes still running the previous version during a rolling
-- upgrade: their upserts do not name the column (the time of their save
-- stands in for the call's start).
ALTER TABLE fingerprints ADD COLUMN written_at timestamptz;
UPDATE fingerprints SET written_at = created_at;
ALTER TABLE fingerprints ALTER COLUMN written_at SET DEFAULT now();
ALTER TABLE fingerprints ALTER COLUMN written_at SET NOT NULL;
