-- Fleet backbone: tenants and their keys, scans, the outbox that feeds RabbitMQ,
-- uploads, and the scan event log that makes duplicate work visible.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    tier        text NOT NULL CHECK (tier IN ('free', 'pro', 'premium')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Keys are high-entropy random strings, so a plain SHA-256 is enough to store
-- them safely (no password-style stretching needed) and lets us look them up.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_sha256  bytea NOT NULL UNIQUE,
    key_prefix  text NOT NULL,
    is_admin    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE uploads (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    object_path   text NOT NULL,
    size_bytes    bigint NOT NULL,
    content_sha256 text NOT NULL,
    content_type  text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scans (
    id               uuid PRIMARY KEY,          -- UUIDv7: time-ordered, used as the list cursor
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind             text NOT NULL,
    input            jsonb NOT NULL,            -- source_url / upload_id / params, as submitted
    item_type        text,
    callback_url     text,
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    route            text NOT NULL CHECK (route IN ('cpu', 'gpu')),
    route_reason     text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    idempotency_key  text,
    request_sha256   bytea,
    worker           text,
    backend          text,
    result           jsonb,
    error_code       text,
    error_message    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    heartbeat_at     timestamptz,
    finished_at      timestamptz,
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX scans_tenant_list ON scans (tenant_id, id DESC);
CREATE INDEX scans_tenant_status_list ON scans (tenant_id, status, id DESC);

-- Written in the same transaction as the scan; the relay publishes unsent rows
-- with publisher confirms, so a scan accepted while the broker is down is not lost.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    scan_id      uuid NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
    routing_key  text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- One row per state change, written in the transaction that made it: the audit
-- trail a user sees, and how tests prove a scan finished exactly once.
CREATE TABLE scan_events (
    id          bigserial PRIMARY KEY,
    scan_id     uuid NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
    event       text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scan_events_scan ON scan_events (scan_id, id);
