-- Systems paused because they refused our credentials (401/403), shared by
-- every node and by `switchboard systems resume`.
CREATE TABLE system_pauses (
    system    text PRIMARY KEY,
    reason    text NOT NULL,
    paused_at timestamptz NOT NULL
);
