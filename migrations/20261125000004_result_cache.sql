-- Result cache (seed 003's EMBED_CACHE): a scan that computed its result keeps
-- the hash of its input bytes, kind, parameters and pipeline version, so an
-- identical scan of the same tenant is answered from it without recomputing.
-- Only computed results carry a key; a scan answered from the cache does not,
-- so `cached_from` always names the scan that did the work.
ALTER TABLE scans ADD COLUMN cache_key text;
CREATE INDEX scans_result_cache ON scans (tenant_id, cache_key, finished_at)
    WHERE status = 'succeeded' AND cache_key IS NOT NULL;
