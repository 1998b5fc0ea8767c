-- Systems paused because they refused our credentials (401/403), shared by
-- every node and by `switchboard systems resume`.
CREATE TABLE system_pauses (
    system    TEXT PRIMARY KEY,
    reason    TEXT NOT NULL,
    paused_at INTEGER NOT NULL
);
