#!/usr/bin/env python3
"""The peer in bench/fleet: a probe-sized job on Celery 5 with a RabbitMQ
broker, persistent messages and acks_late, in the same shape as the
ScanFleet side: WORKERS worker processes, each running THREADS jobs at once
(`--pool threads`, prefetch = THREADS), warmed with the same number of jobs.

Usage: celery_peer.py --backend postgres|none AMQP_URL JOBS WORKERS THREADS WARMUP

--backend postgres  the like-for-like peer: every job's result stored durably
                    in PostgreSQL (SQLAlchemy result backend, db+postgresql://)
                    and publisher confirms on, as users who must not lose a job
                    run it; completion is counted in the result table.
--backend none      Celery's defaults (no result backend, no publisher
                    confirms); completion is counted with a Redis INCR on one
                    pooled connection per worker process.

Prints one JSON line: {"jobs": N, "seconds": S, "jobs_per_s": R}."""
import argparse
import json
import os
import subprocess
import sys
import time
import uuid

from celery import Celery

DEADLINE_S = 600
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
COUNTER_KEY = "scanfleet-bench-done"

# The worker processes import this module too: they read the settings the
# driver puts in their environment.
backend = os.environ.get("PEER_BACKEND", "none")
amqp_url = os.environ.get("PEER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
database = os.environ.get("PEER_DATABASE", "")

app = Celery("peer")
app.conf.update(
    task_acks_late=True,
    task_default_delivery_mode="persistent",
    # prefetch = concurrency × multiplier = THREADS, as MAX_CONCURRENT_JOBS.
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)


def configure(broker_url, backend_name, database_name):
    """The broker and, for the postgres peer, the durable result settings."""
    app.conf.broker_url = broker_url
    if backend_name == "postgres":
        app.conf.update(
            result_backend=f"db+{POSTGRES}/{database_name}",
            task_ignore_result=False,
            broker_transport_options={"confirm_publish": True},
        )
    else:
        app.conf.update(task_ignore_result=True)


configure(amqp_url, backend, database)

_redis = None


@app.task(name="peer.probe")
def probe(i):
    if backend == "postgres":
        # Stored by the result backend, as a ScanFleet probe stores its result row.
        return {"probe": i, "ok": True}
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis(db=15)  # holds a connection pool, shared by the threads
    _redis.incr(COUNTER_KEY)
    return None


def psql(sql, db="postgres"):
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-Atqc", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Counter:
    """Completed jobs, read from where the peer records them."""

    def __init__(self):
        if backend == "postgres":
            import psycopg2

            self.conn = psycopg2.connect(f"{POSTGRES}/{database}")
            self.conn.autocommit = True
        else:
            import redis

            self.redis = redis.Redis(db=15)
            self.redis.delete(COUNTER_KEY)

    def done(self):
        if backend == "postgres":
            with self.conn.cursor() as cur:
                try:
                    cur.execute("SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")
                except Exception:  # the table appears with the first result
                    return 0
                return cur.fetchone()[0]
        return int(self.redis.get(COUNTER_KEY) or 0)


def wait_for(counter, target, workers):
    deadline = time.monotonic() + DEADLINE_S
    while counter.done() < target:
        stopped = [w.poll() for w in workers if w.poll() is not None]
        if stopped or time.monotonic() > deadline:
            sys.exit(f"celery workers stopped or stalled (exits {stopped}); set PEER_LOG to see their logs")
        time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["postgres", "none"], required=True)
    ap.add_argument("amqp_url")
    ap.add_argument("jobs", type=int)
    ap.add_argument("workers", type=int)
    ap.add_argument("threads", type=int)
    ap.add_argument("warmup", type=int)
    args = ap.parse_args()
    global backend, database
    backend = args.backend
    db = database = f"sf_bench_celery_{uuid.uuid4().hex[:10]}" if args.backend == "postgres" else ""
    if db:
        psql(f"CREATE DATABASE {db}")
    env = dict(os.environ, PEER_BACKEND=args.backend, PEER_AMQP_URL=args.amqp_url,
               PEER_DATABASE=db)
    # The driver imported this module before it knew the settings.
    configure(args.amqp_url, args.backend, db)
    log = open(os.environ.get("PEER_LOG", os.devnull), "w")
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_peer", "worker", "-n", f"peer{i}@%h",
             "--pool", "threads", "--concurrency", str(args.threads), "--loglevel", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=os.path.dirname(os.path.abspath(__file__)), env=env, stdout=subprocess.DEVNULL, stderr=log)
        for i in range(args.workers)
    ]
    try:
        counter = Counter()
        # Warm-up: as many jobs as the ScanFleet side gets, before timing starts.
        for i in range(args.warmup):
            probe.delay(-1 - i)
        wait_for(counter, args.warmup, workers)
        started = time.monotonic()
        for i in range(args.jobs):
            probe.delay(i)
        wait_for(counter, args.warmup + args.jobs, workers)
        seconds = time.monotonic() - started
        print(json.dumps({"jobs": args.jobs, "seconds": seconds, "jobs_per_s": args.jobs / seconds}))
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)
        if db:
            psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
