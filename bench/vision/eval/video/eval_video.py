#!/usr/bin/env python3
"""Measures `video_scan` on videos from render_video.py (an independent renderer).

For each video it runs `worker analyze --json` and compares the report with
the ground truth:
- found: the report has an item whose quad overlaps the true card outline on
  that frame with polygon IoU >= 0.85;
- centering: |measured - true| left and top border shares, in percentage points;
- defects: a reported defect matches a true one of the same kind whose box it
  overlaps (boxes normalised to the card, each inflated by 0.02); recall and
  precision per kind;
- the overall grade of defect-free cards.

Usage: eval_video.py DIR --worker PATH [--json OUT] [--jobs N]
"""

import argparse
import collections
import concurrent.futures
import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np

KINDS = ["scratch", "crease", "stain", "corner_wear", "edge_wear"]


def poly_iou(a, b):
    a, b = np.float32(a), np.float32(b)
    inter, _ = cv2.intersectConvexConvex(a, b)
    union = cv2.contourArea(a) + cv2.contourArea(b) - inter
    return inter / union if union > 0 else 0.0


def overlaps(a, b, e=0.02):
    return a[0] - e < b[2] and b[0] - e < a[2] and a[1] - e < b[3] and b[1] - e < a[3]


def run_one(worker, video):
    t = time.time()
    p = subprocess.run([worker, "analyze", video, "--json", "--backend", "cpu"], capture_output=True, text=True)
    secs = time.time() - t
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1], "secs": secs}
    return {"report": json.loads(p.stdout), "secs": secs}


def evaluate(truth, out):
    res = {"seed": truth["seed"], "look": truth["look"], "secs": out["secs"]}
    if "error" in out:
        res.update(found=False, why=out["error"])
        return res
    rep = out["report"]
    item = rep.get("item")
    if not item:
        res.update(found=False, why=rep.get("no_item_reason", "no item"))
        return res
    # Processed-frame pixels back to source pixels.
    sx = truth["size"][0] / rep["processed_size"][0]
    quad = [[p[0] * sx, p[1] * sx] for p in item["quad"]]
    iou = poly_iou(quad, truth["quads"][item["frame"]])
    res["quad_iou"] = iou
    res["found"] = iou >= 0.85
    if not res["found"]:
        res["why"] = f"wrong item (IoU {iou:.2f})"
        return res
    sc = rep["scores"]
    res["centering_err_pp"] = max(abs(sc["centering_lr"] - truth["centering"]["lr"]), abs(sc["centering_tb"] - truth["centering"]["tb"])) * 100
    res["overall"] = sc["overall"]
    res["defect_free"] = not truth["defects"]
    got = [(d["kind"], d["bbox"]) for d in rep["defects"]]
    want = [(d["kind"], d["bbox"]) for d in truth["defects"]]
    res["tp"] = collections.Counter()
    res["fn"] = collections.Counter()
    res["fp"] = collections.Counter()
    for k, b in want:
        (res["tp"] if any(gk == k and overlaps(gb, b) for gk, gb in got) else res["fn"])[k] += 1
    for k, b in got:
        if not any(wk == k and overlaps(wb, b) for wk, wb in want):
            res["fp"][k] += 1
    return res


def summarise(results):
    n = len(results)
    found = [r for r in results if r["found"]]
    print(f"videos {n}; card found {len(found)} ({100 * len(found) / max(n, 1):.1f} %)")
    by_look = collections.defaultdict(lambda: [0, 0])
    for r in results:
        for key in ("border", "print", "background"):
            by_look[f"{key}={r['look'][key]}"][0] += r["found"]
            by_look[f"{key}={r['look'][key]}"][1] += 1
    print("  found by look: " + ", ".join(f"{k} {a}/{b}" for k, (a, b) in sorted(by_look.items())))
    for r in results:
        if not r["found"]:
            print(f"  miss seed {r['seed']} {r['look']['border']}/{r['look']['print']}/{r['look']['background']}: {r.get('why')}")
    if found:
        errs = [r["centering_err_pp"] for r in found]
        within = sum(e <= 2.0 for e in errs)
        print(f"centering error (pp): median {np.median(errs):.2f}, max {max(errs):.2f}, within 2 pp {within}/{len(found)}")
        clean = [r["overall"] for r in found if r["defect_free"]]
        if clean:
            print(f"defect-free cards: {len(clean)}, grade >= 9: {sum(g >= 9 for g in clean)}, grades {sorted(clean)}")
        tp, fn, fp = collections.Counter(), collections.Counter(), collections.Counter()
        for r in found:
            tp.update(r["tp"])
            fn.update(r["fn"])
            fp.update(r["fp"])
        print(f"{'kind':<12} {'true':>5} {'recall':>7} {'reported':>9} {'precision':>10}")
        for k in KINDS:
            t = tp[k] + fn[k]
            rec = tp[k] / t if t else float("nan")
            # Precision counts a reported defect as right when it matches a true one.
            reported = tp[k] + fp[k]
            prec = tp[k] / reported if reported else float("nan")
            print(f"{k:<12} {t:>5} {rec:>7.2f} {reported:>9} {prec:>10.2f}")
    secs = [r["secs"] for r in results]
    print(f"analysis time per video: median {np.median(secs):.2f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--worker", required=True)
    ap.add_argument("--json")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()
    seeds = sorted(int(f[:-5]) for f in os.listdir(args.dir) if f.endswith(".json"))
    truths = {s: json.load(open(os.path.join(args.dir, f"{s}.json"))) for s in seeds}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as ex:
        outs = dict(zip(seeds, ex.map(lambda s: run_one(args.worker, os.path.join(args.dir, f"{s}.avi")), seeds)))
    results = [evaluate(truths[s], outs[s]) for s in seeds]
    summarise(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=dict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
