#!/usr/bin/env python3
"""Writes deploy/grafana/dashboards/scanfleet.json (run it after editing the panels here).

scripts/validate-deploy checks that every query in the written file uses only
metric names the app exports (see METRICS in validate.py)."""
import json
import pathlib

DS = {"type": "prometheus", "uid": "scanfleet-prometheus"}
ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "deploy/grafana/dashboards/scanfleet.json"

_next_id = iter(range(1, 1000))


def panel(title, targets, x, y, w=12, h=8, unit="short", kind="timeseries", description="", stack=False):
    p = {
        "id": next(_next_id),
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }
    if stack and kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "percent" if unit == "percentunit" else "normal"}}
    return p


def quantiles(metric, by, label_fmt):
    return [
        (f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}[5m])))", f"p{int(q * 100)} {label_fmt}")
        for q in (0.5, 0.95, 0.99)
    ]


panels = [
    panel("Queue depth (ready + unacked)", [
        ("max by (queue) (scanfleet_queue_messages)", "{{queue}}"),
        ("max by (queue) (scanfleet_queue_consumers)", "consumers {{queue}}"),
    ], 0, 0, description="From the dispatcher's backlog poller."),
    panel("Backlog escalation (CPU -> GPU)", [
        ("max(scanfleet_routing_escalated)", "escalated"),
    ], 12, 0, unit="bool"),
    panel("Routing share by reason", [
        ("sum by (route, reason) (rate(scanfleet_scans_submitted_total[5m]))"
         " / ignoring(route, reason) group_left sum(rate(scanfleet_scans_submitted_total[5m]))", "{{route}} / {{reason}}"),
    ], 0, 8, unit="percentunit", stack=True),
    panel("Submissions by tier", [
        ("sum by (tier, route) (rate(scanfleet_scans_submitted_total[5m]))", "{{tier}} -> {{route}}"),
    ], 12, 8, unit="reqps"),
    panel("End-to-end latency p50/p95/p99", quantiles(
        "scanfleet_scan_end_to_end_seconds_bucket", "route", "{{route}}"), 0, 16, unit="s"),
    panel("Processing latency p50/p95/p99", quantiles(
        "scanfleet_worker_processing_seconds_bucket", "kind, route", "{{kind}} {{route}}"), 12, 16, unit="s"),
    panel("Queue wait p50/p95/p99", quantiles(
        "scanfleet_worker_queue_wait_seconds_bucket", "route", "{{route}}"), 0, 24, unit="s"),
    panel("Stage time p95", [
        ("histogram_quantile(0.95, sum by (le, kind, stage) (rate(scanfleet_worker_stage_seconds_bucket[5m])))",
         "{{kind}} {{stage}}"),
    ], 12, 24, unit="s"),
    panel("Throughput (scans finished)", [
        ("sum by (route, outcome) (rate(scanfleet_worker_scans_finished_total[5m]))", "{{route}} {{outcome}}"),
    ], 0, 32, unit="reqps"),
    panel("In-flight scans", [
        ("sum by (job) (scanfleet_worker_scans_in_flight)", "{{job}}"),
    ], 12, 32),
    panel("Errors by code", [
        ("sum by (code) (rate(scanfleet_worker_errors_total[5m]))", "{{code}}"),
    ], 0, 40, unit="reqps"),
    panel("Webhook attempts by outcome", [
        ("sum by (outcome) (rate(scanfleet_webhook_attempts_total[5m]))", "{{outcome}}"),
    ], 12, 40, unit="reqps"),
    panel("GPU memory", [
        ("scanfleet_gpu_memory_used_bytes", "used {{instance}}"),
        ("scanfleet_gpu_memory_total_bytes", "total {{instance}}"),
    ], 0, 48, unit="bytes", description="Absent (no data) where no GPU worker has a device."),
    panel("GPU utilisation", [
        ("scanfleet_gpu_utilization_ratio", "{{instance}}"),
    ], 12, 48, unit="percentunit"),
    panel("Cost (USD/h, by route)", [
        ("sum by (route) (rate(scanfleet_worker_cost_usd_total[5m])) * 3600", "{{route}}"),
    ], 0, 56, unit="currencyUSD"),
    panel("Cost per finished scan (USD)", [
        ("sum by (route) (rate(scanfleet_worker_cost_usd_total[15m]))"
         " / sum by (route) (rate(scanfleet_worker_scans_finished_total[15m]))", "{{route}}"),
    ], 12, 56, unit="currencyUSD"),
]

dashboard = {
    "uid": "scanfleet-overview",
    "title": "ScanFleet",
    "tags": ["scanfleet"],
    "timezone": "utc",
    "schemaVersion": 39,
    "version": 1,
    "editable": False,
    "refresh": "10s",
    "time": {"from": "now-1h", "to": "now"},
    "templating": {"list": []},
    "annotations": {"list": []},
    "panels": panels,
}

if __name__ == "__main__":
    OUT.write_text(json.dumps(dashboard, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(panels)} panels)")
