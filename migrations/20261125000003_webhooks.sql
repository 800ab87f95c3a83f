-- Completion webhooks (Standard Webhooks): endpoints per tenant, one delivery
-- per (event, destination) written in the same transaction as the scan's final
-- state, and a log of every attempt.

-- Signs deliveries to a scan's own callback_url (endpoints have their own).
ALTER TABLE tenants ADD COLUMN callback_secret text;

CREATE TABLE webhook_endpoints (
    id                          uuid PRIMARY KEY,
    tenant_id                   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url                         text NOT NULL,
    description                 text,
    secret                      text NOT NULL,
    -- During a rotation the old secret keeps signing until it expires.
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    disabled_at                 timestamptz,
    disabled_reason             text,
    created_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id) WHERE disabled_at IS NULL;

CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    -- The Standard Webhooks `webhook-id`: one per event, stable across retries.
    message_id       text NOT NULL,
    scan_id          uuid NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    endpoint_id      uuid REFERENCES webhook_endpoints (id) ON DELETE CASCADE,  -- NULL: the scan's callback_url
    url              text NOT NULL,
    event_type       text NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- A deliverer's lease on the row while it sends; expired leases are retaken.
    locked_until     timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    UNIQUE (message_id, url)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_scan ON webhook_deliveries (scan_id);

CREATE TABLE webhook_attempts (
    id             bigserial PRIMARY KEY,
    delivery_id    uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt        integer NOT NULL,
    started_at     timestamptz NOT NULL,
    duration_ms    integer NOT NULL,
    outcome        text NOT NULL,   -- delivered | http_error | timeout | connect_error | blocked | gone
    status_code    integer,
    error          text,
    response_body  text            -- first 1 KiB
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
