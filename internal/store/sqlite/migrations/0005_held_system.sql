-- The system a held run waits for (its circuit, its pause), so resuming the
-- system wakes exactly its runs.
ALTER TABLE runs ADD COLUMN held_system TEXT NOT NULL DEFAULT '';
