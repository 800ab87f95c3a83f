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
    print(json.dumps(result, indent=2)[:3000])
