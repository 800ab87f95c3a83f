-- Workers announce themselves (issue #25's workers panel): each worker
-- upserts its row when it starts and every ~10 s after (one statement per
-- heartbeat), and marks it stopped when it shuts down. Rows are keyed by the
-- worker's name (WORKER_NAME, or host and pid); the console shows those seen
-- in the last minute, so a crashed worker fades out on its own.
CREATE TABLE workers (
    name                    text PRIMARY KEY,
    queue                   text NOT NULL,
    -- What the worker was asked for (cpu | cuda | auto), what it runs on,
    -- and why (the reason `auto` gave for falling back, for example).
    backend_requested       text NOT NULL,
    backend                 text NOT NULL,
    backend_reason          text NOT NULL,
    gpu_name                text,
    gpu_memory_total_bytes  bigint,
    gpu_memory_used_bytes   bigint,
    in_flight               integer NOT NULL,
    max_concurrent_jobs     integer NOT NULL,
    started_at              timestamptz NOT NULL,
    last_seen               timestamptz NOT NULL,
    stopped_at              timestamptz
);
CREATE INDEX workers_last_seen ON workers (last_seen DESC);
