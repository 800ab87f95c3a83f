#!/usr/bin/env python3
"""The peer in bench/fleet: the same no-op job on Celery 5 with a RabbitMQ
broker, persistent messages, acks_late and a matched prefetch.

Usage: celery_peer.py AMQP_URL REDIS_DB JOBS WORKERS PREFETCH
Prints one JSON line: {"jobs": N, "seconds": S, "jobs_per_s": R}.
Completion is counted with a Redis INCR inside the task (no result backend,
which would slow Celery down)."""
import json
import os
import subprocess
import sys
import time

import redis
from celery import Celery

# The Celery worker imports this module too: it reads its settings from the
# environment the driver (below) sets.
if os.environ.get("PEER_ROLE") != "worker":
    os.environ["PEER_AMQP_URL"], os.environ["PEER_REDIS_DB"] = sys.argv[1], sys.argv[2]
amqp_url, redis_db = os.environ["PEER_AMQP_URL"], int(os.environ["PEER_REDIS_DB"])
prefetch = int(os.environ.setdefault("PEER_PREFETCH", sys.argv[5] if len(sys.argv) > 5 else "1"))
counter_key = "scanfleet-bench-done"
DEADLINE_S = 600

app = Celery("peer", broker=amqp_url)
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    task_default_delivery_mode="persistent",
    worker_prefetch_multiplier=prefetch,
    broker_connection_retry_on_startup=True,
)


@app.task(name="peer.noop")
def noop(i):
    redis.Redis(db=redis_db).incr(counter_key)


def wait_for_count(store, target, worker):
    deadline = time.monotonic() + DEADLINE_S
    while int(store.get(counter_key) or 0) < target:
        if worker.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"celery worker stopped or stalled (exit {worker.poll()}); set PEER_LOG to see its log")
        time.sleep(0.01)


if __name__ == "__main__" and os.environ.get("PEER_ROLE") != "worker":
    jobs, workers = int(sys.argv[3]), int(sys.argv[4])
    store = redis.Redis(db=redis_db)
    store.delete(counter_key)
    env = dict(os.environ, PEER_ROLE="worker")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_peer", "worker", "--concurrency", str(workers),
         "--pool", "prefork", "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=os.path.dirname(os.path.abspath(__file__)), env=env, stdout=subprocess.DEVNULL, stderr=open(os.environ.get("PEER_LOG", os.devnull), "w"))
    try:
        # Warm-up: one job through before timing starts (worker boot excluded).
        noop.delay(-1)
        wait_for_count(store, 1, worker)
        store.delete(counter_key)
        started = time.monotonic()
        for i in range(jobs):
            noop.delay(i)
        wait_for_count(store, jobs, worker)
        seconds = time.monotonic() - started
        print(json.dumps({"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds}))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
