-- Operator console (/ui): login sessions, the escalation timeline, the
-- dead-letter queue's reading, indexes for the scan list, and a notification
-- per scan event so open pages update live.

-- A console login. The token lives only in the browser's cookie; the row keeps
-- its SHA-256, like api_keys. Revoking the key ends its sessions at once (the
-- lookup joins api_keys), deleting it removes them.
CREATE TABLE console_sessions (
    id            uuid PRIMARY KEY,
    token_sha256  bytea NOT NULL UNIQUE,
    api_key_id    uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- Written by the backlog monitor each time escalation starts or stands down,
-- with the reading that decided it: the overview's 24 h timeline.
CREATE TABLE escalation_events (
    id                 bigserial PRIMARY KEY,
    at                 timestamptz NOT NULL DEFAULT now(),
    escalated          boolean NOT NULL,
    reason             text NOT NULL,
    cpu_depth          bigint NOT NULL,
    cpu_consumers      bigint NOT NULL,
    predicted_wait_ms  bigint
);
CREATE INDEX escalation_events_at ON escalation_events (at);

-- The dead-letter queue, sampled with the CPU and GPU queues.
ALTER TABLE backlog_state
    ADD COLUMN dead_depth bigint NOT NULL DEFAULT 0,
    ADD COLUMN dead_consumers bigint NOT NULL DEFAULT 0;

-- The console lists scans newest first by (created_at, id) with keyset
-- pagination: all tenants (admin), one tenant, or one status (the failed
-- scans an operator looks for are few among millions).
CREATE INDEX scans_console_recent ON scans (created_at DESC, id DESC);
CREATE INDEX scans_console_tenant_recent ON scans (tenant_id, created_at DESC, id DESC);
CREATE INDEX scans_console_status_recent ON scans (status, created_at DESC, id DESC);

-- Every scan event (submitted, started, succeeded, failed, canceled, …) is
-- announced on channel `scan_events` once its transaction commits; the
-- dispatcher's console listens and pushes the change to open pages (SSE).
-- The payload is small and carries no tenant data: listeners read the row.
CREATE FUNCTION scan_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scan_events', NEW.scan_id::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER scan_events_notify AFTER INSERT ON scan_events
    FOR EACH ROW EXECUTE FUNCTION scan_events_notify();

-- Escalation watermarks an admin set at run time (console or admin API);
-- NULL keeps the deployment's setting (BACKLOG_HIGH_WATERMARK, …). The
-- backlog monitor reads them on every sample.
ALTER TABLE routing_policy
    ADD COLUMN high_watermark bigint CHECK (high_watermark >= 0),
    ADD COLUMN low_watermark bigint CHECK (low_watermark >= 0),
    ADD COLUMN hold_ms bigint CHECK (hold_ms >= 0),
    ADD COLUMN latency_target_ms bigint CHECK (latency_target_ms > 0);
