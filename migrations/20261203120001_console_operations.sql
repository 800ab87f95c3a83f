-- Console pages over operational rows (issue #25): the webhooks page lists a
-- tenant's (or, for an admin, everyone's) newest deliveries, and the dead
-- letters page the newest dead-lettered scans. Without these they would sort
-- whole tables; the dead-letter indexes are partial, so they hold only the
-- few dead-lettered rows however many scans there are.
CREATE INDEX webhook_deliveries_tenant_recent ON webhook_deliveries (tenant_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_recent ON webhook_deliveries (created_at DESC, id DESC);
CREATE INDEX scans_dead_lettered ON scans (finished_at DESC, id DESC)
    WHERE error_code = 'dead_lettered';
CREATE INDEX scans_dead_lettered_tenant ON scans (tenant_id, finished_at DESC, id DESC)
    WHERE error_code = 'dead_lettered';
