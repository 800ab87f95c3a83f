-- The backlog monitor counts, every BACKLOG_POLL, each tenant's queued CPU
-- scans (ESCALATION_SHARE): this partial index holds only those rows, so the
-- count stays cheap however many finished scans the table keeps.
CREATE INDEX scans_queued_cpu ON scans (tenant_id) WHERE status = 'queued' AND route = 'cpu';
