-- One row that GET /readyz rewrites: a commit is the only way to learn that
-- the store can still commit (a full disk or a failing device lets reads,
-- and a BEGIN, through).
CREATE TABLE readiness (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    probes INTEGER NOT NULL
);
