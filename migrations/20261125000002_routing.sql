-- Routing policy and backlog-escalation state, one row each, shared by every
-- dispatcher replica: a mode switch or an escalation made by one replica is
-- seen by the next submission on all of them.

CREATE TABLE routing_policy (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    mode            text NOT NULL CHECK (mode IN ('cpu', 'gpu', 'auto')),
    -- Share of non-tier scans sent to the GPU queue, in basis points (0–10000).
    canary_bp       integer NOT NULL DEFAULT 0 CHECK (canary_bp BETWEEN 0 AND 10000),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text NOT NULL DEFAULT 'config'
);

-- Written only by the replica holding the backlog-monitor advisory lock.
CREATE TABLE backlog_state (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    escalated          boolean NOT NULL DEFAULT false,
    changed_at         timestamptz NOT NULL DEFAULT now(),
    observed_at        timestamptz NOT NULL DEFAULT now(),
    cpu_depth          bigint NOT NULL DEFAULT 0,
    cpu_consumers      bigint NOT NULL DEFAULT 0,
    gpu_depth          bigint NOT NULL DEFAULT 0,
    gpu_consumers      bigint NOT NULL DEFAULT 0,
    predicted_wait_ms  bigint
);
INSERT INTO backlog_state (singleton) VALUES (true);

CREATE INDEX scans_recent_cpu_durations ON scans (finished_at DESC)
    WHERE route = 'cpu' AND status = 'succeeded';
