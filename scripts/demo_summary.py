#!/usr/bin/env python3
"""Prints one scan (JSON on stdin) as the demo shows it."""
import json
import sys

scan = json.load(sys.stdin)
print(f"\nscan {scan['id']} [{scan['kind']}] → {scan['status']} on {scan['route']} ({scan['route_reason']}), "
      f"worker {scan.get('worker')}, backend {scan.get('backend')}")
if scan.get("error"):
    print(f"  error: {scan['error']['code']}: {scan['error']['message']}")
result = scan.get("result") or {}
if scan["kind"] == "probe":
    print(f"  probe answered by {result.get('worker')} on {result.get('queue')} ({result.get('backend_reason')})")
else:
    report = result.get("report", {})
    scores = report.get("scores") or {}
    print(f"  grade {scores.get('overall')}/10, centering L/R {scores.get('centering_lr_ratio')} T/B {scores.get('centering_tb_ratio')}, "
          f"corners {scores.get('corners')}, edges {scores.get('edges')}, surface {scores.get('surface')}")
    print(f"  {len(report.get('defects', []))} defects: " + ", ".join(sorted({d['kind'] for d in report.get('defects', [])})))
    print(f"  golden frames {[g['index'] for g in report.get('golden_frames', [])]}, {report.get('frames_processed')} frames, "
          f"{result.get('processing_ms', 0):.0f} ms, cost ${result.get('cost_usd', 0):.7f}")
    print("  stages: " + ", ".join(f"{t['stage']} {t['ms']:.0f} ms" for t in report.get("timings_ms", [])))
    print(f"  artifacts: {result.get('artifacts', {}).get('defect_mask')} and {len(result.get('artifacts', {}).get('golden_frames', []))} golden JPEGs")
