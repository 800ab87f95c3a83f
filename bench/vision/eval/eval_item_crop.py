#!/usr/bin/env python3
"""Measure `item_crop` on the independent evaluation set (issue 28).

Runs the worker binary once per photo (`worker analyze FILE --kind item_crop
--json`), matches its items to the truth one-to-one (Hungarian assignment on
axis-aligned box IoU) and reports, per part:

  photos, count exact % (reported items == truth items), count exact at
  confidence >= 0.5, items with box IoU >= 0.9 %, found (IoU >= 0.5) %, mean
  box IoU and mean quad IoU over truth items (0 where unmatched), false items
  (unmatched detections) per photo, false items at confidence >= 0.5 on
  photos with no collectible, cards.png found at IoU >= 0.5 / >= 0.9 of 13,
  a reliability table (confidence bins: count, share correct, mean
  confidence; correct = matched at box IoU >= 0.5, also shown at >= 0.9),
  breakdowns by item condition, and time per photo.

Parts: dev / heldout (renders of render_photos.py, seeds in its PARTS; rendered
into the cache on first use) and real (real_labels.json). Coordinates: source
pixels with pixel centres at integers, as the worker reports them.

  eval_item_crop.py --worker /tmp/ic-worker/worker --part dev --out dev.json
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import render_photos as RP  # noqa: E402  (only for PARTS, the cache and rendering)

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
BINS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001]


def skimage_data():
    import skimage
    return Path(skimage.__file__).parent / "data"


def box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def quad_iou(p, q):
    import cv2
    p = np.asarray(p, np.float32)
    q = np.asarray(q, np.float32)
    if cv2.contourArea(p) <= 0 or cv2.contourArea(q) <= 0:
        return 0.0
    p = cv2.convexHull(p)
    q = cv2.convexHull(q)
    inter, _ = cv2.intersectConvexConvex(p, q)
    u = cv2.contourArea(p) + cv2.contourArea(q) - inter
    return float(inter / u) if u > 0 else 0.0


def match(truth, dets):
    """One-to-one assignment maximising total box IoU; pairs with IoU > 0 kept."""
    from scipy.optimize import linear_sum_assignment
    if not truth or not dets:
        return []
    M = np.array([[box_iou(t["box"], d["bbox"]) for d in dets] for t in truth])
    r, c = linear_sum_assignment(-M)
    return [(int(i), int(j), float(M[i, j])) for i, j in zip(r, c) if M[i, j] > 0]


def load_part(part, renders):
    if part == "real":
        lab = json.loads((HERE / "real_labels.json").read_text())
        sk = skimage_data()
        photos = []
        for p in lab["photos"]:
            path = (OPENCV_DATA if p["source"] == "opencv-doc" else sk) / p["file"]
            photos.append({"path": str(path), "name": f'{p["source"]}:{p["file"]}', "category": p["category"],
                           "items": p["items"]})
        return photos
    d = Path(renders) / part
    if not (d / "truth.json").exists():
        print(f"rendering {part} into {d} ...", file=sys.stderr)
        subprocess.run([sys.executable, str(HERE / "render_photos.py"), "--part", part, "--out", str(d)], check=True)
    t = json.loads((d / "truth.json").read_text())
    expect = list(RP.PARTS[part])
    if t["seeds"] != [expect[0], expect[-1]] or len(t["photos"]) != len(expect):
        sys.exit(f"{d}/truth.json holds seeds {t['seeds']}, not {part}'s {expect[0]}-{expect[-1]}: delete it to re-render")
    photos = []
    for p in t["photos"]:
        photos.append({"path": str(d / p["file"]), "name": p["file"],
                       "category": "no_collectible" if p["n_items"] == 0 else "items",
                       "items": p["items"], "meta": {k: v for k, v in p.items() if k != "items"}})
    return photos


def run_worker(worker, path, extra, timeout):
    t0 = time.time()
    if worker == "opencv-recipe":  # the reference recipe, in process
        import opencv_recipe
        rep = opencv_recipe.detect(path)
        return rep, time.time() - t0, None
    try:
        r = subprocess.run([worker, "analyze", path, "--kind", "item_crop", *extra], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, time.time() - t0, "timeout"
    wall = time.time() - t0
    if r.returncode != 0:
        return None, wall, (r.stderr or r.stdout)[-500:]
    out = r.stdout
    s = out.find("{")
    try:
        rep = json.loads(out[s:])
    except Exception as e:  # noqa: BLE001
        return None, wall, f"unparsable output: {e}: {out[:200]}"
    return rep, wall, None


def evaluate(photos, results):
    rows = []
    det_records = []  # (confidence, best IoU with its matched truth or 0)
    for ph, (rep, wall, err) in zip(photos, results):
        dets = [] if rep is None else rep.get("items", [])
        truth = ph["items"]
        m = match(truth, dets)
        t_iou = [0.0] * len(truth)
        t_qiou = [0.0] * len(truth)
        d_iou = [0.0] * len(dets)
        for i, j, v in m:
            t_iou[i] = v
            d_iou[j] = v
            t_qiou[i] = quad_iou(truth[i]["quad"], dets[j]["quad"])
        for j, d in enumerate(dets):
            det_records.append((float(d.get("confidence", 0.0)), d_iou[j]))
        rows.append({"name": ph["name"], "category": ph["category"], "n_truth": len(truth), "n_det": len(dets),
                     "n_det_05": sum(1 for d in dets if d.get("confidence", 0) >= 0.5),
                     "truth_iou": t_iou, "truth_quad_iou": t_qiou, "det_iou": d_iou,
                     "det_conf": [float(d.get("confidence", 0.0)) for d in dets],
                     "wall_s": wall, "worker_ms": None if rep is None else rep.get("total_ms"), "error": err,
                     "truth": truth, "dets": [{k: d.get(k) for k in ("bbox", "quad", "confidence")} for d in dets],
                     "meta": ph.get("meta")})
    return rows, det_records


def pct(a, b):
    return 100.0 * a / b if b else float("nan")


def summarise(rows, det_records, part):
    n = len(rows)
    items = [(r, i) for r in rows for i in range(r["n_truth"])]
    ious = [r["truth_iou"][i] for r, i in items]
    qious = [r["truth_quad_iou"][i] for r, i in items]
    neg = [r for r in rows if r["category"] == "no_collectible"]
    s = {
        "part": part,
        "photos": n,
        "items": len(items),
        "errors": sum(1 for r in rows if r["error"]),
        "count_exact_pct": pct(sum(1 for r in rows if r["n_det"] == r["n_truth"]), n),
        "count_exact_conf05_pct": pct(sum(1 for r in rows if r["n_det_05"] == r["n_truth"]), n),
        "items_iou09_pct": pct(sum(1 for v in ious if v >= 0.9), len(ious)),
        "items_found05_pct": pct(sum(1 for v in ious if v >= 0.5), len(ious)),
        "mean_box_iou": float(np.mean(ious)) if ious else float("nan"),
        "mean_quad_iou": float(np.mean(qious)) if qious else float("nan"),
        "false_items_per_photo": sum(sum(1 for v in r["det_iou"] if v < 0.5) for r in rows) / max(1, n),
        "no_collectible_photos": len(neg),
        "no_collectible_false_items_conf05": sum(sum(1 for c in r["det_conf"] if c >= 0.5) for r in neg),
        "no_collectible_photos_with_false_conf05": sum(1 for r in neg if any(c >= 0.5 for c in r["det_conf"])),
        "wall_s_total": sum(r["wall_s"] for r in rows),
        "wall_s_per_photo": sum(r["wall_s"] for r in rows) / max(1, n),
        "worker_ms_mean": float(np.mean([r["worker_ms"] for r in rows if r["worker_ms"] is not None] or [float("nan")])),
    }
    cards = [r for r in rows if r["name"].endswith("cards.png")]
    if cards:
        c = cards[0]
        s["cards_png"] = {"truth": c["n_truth"], "reported": c["n_det"],
                          "found_iou05": sum(1 for v in c["truth_iou"] if v >= 0.5),
                          "found_iou09": sum(1 for v in c["truth_iou"] if v >= 0.9),
                          "iou_per_card": [round(v, 3) for v in c["truth_iou"]]}
    # reliability
    rel = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        sel = [(c, v) for c, v in det_records if lo <= c < hi]
        rel.append({"bin": f"{lo:.1f}-{min(hi, 1.0):.1f}", "count": len(sel),
                    "share_correct_iou05": (sum(1 for c, v in sel if v >= 0.5) / len(sel)) if sel else None,
                    "share_correct_iou09": (sum(1 for c, v in sel if v >= 0.9) / len(sel)) if sel else None,
                    "mean_confidence": float(np.mean([c for c, v in sel])) if sel else None})
    s["reliability"] = rel
    if det_records:
        conf = np.array([c for c, v in det_records])
        ok = np.array([v >= 0.5 for c, v in det_records], float)
        s["ece_iou05"] = float(sum(abs(ok[(conf >= lo) & (conf < hi)].mean() - conf[(conf >= lo) & (conf < hi)].mean())
                                   * ((conf >= lo) & (conf < hi)).sum() for lo, hi in zip(BINS[:-1], BINS[1:])
                                   if ((conf >= lo) & (conf < hi)).any()) / len(conf))
    # breakdowns over truth items (renders)
    def bucket(name, pred):
        sel = [r["truth_iou"][i] for r, i in items if pred(r["truth"][i], r)]
        return {"condition": name, "items": len(sel), "iou09_pct": pct(sum(1 for v in sel if v >= 0.9), len(sel)),
                "found05_pct": pct(sum(1 for v in sel if v >= 0.5), len(sel))}
    if any(r["meta"] for r in rows):
        s["by_condition"] = [
            bucket("all", lambda t, r: True),
            bucket("cut off by the photo edge", lambda t, r: t.get("cut_off")),
            bucket("overlapped (visible < 0.9)", lambda t, r: t.get("visible_fraction", 1) < 0.9 and not t.get("cut_off")),
            bucket("white on white", lambda t, r: t.get("white_on_white")),
            bucket("sleeve or toploader", lambda t, r: t.get("sleeve")),
            bucket("kind playing_card", lambda t, r: t.get("kind") == "playing_card"),
            bucket("kind trading_card", lambda t, r: t.get("kind") == "trading_card"),
            bucket("kind comic", lambda t, r: t.get("kind") == "comic"),
            bucket("kind card_back", lambda t, r: t.get("kind") == "card_back"),
            bucket("photo with 1 item", lambda t, r: r["n_truth"] == 1),
            bucket("photo with 2-9 items", lambda t, r: 2 <= r["n_truth"] <= 9),
            bucket("photo with 10-20 items", lambda t, r: r["n_truth"] >= 10),
            bucket("lens distortion", lambda t, r: r["meta"]["lens_k1"] != 0),
            bucket("motion blur", lambda t, r: r["meta"]["motion_blur_px"] > 0),
            bucket("camera tilt > 15 deg", lambda t, r: r["meta"]["camera_tilt_deg"] > 15),
            bucket("long side > 2000 px", lambda t, r: max(r["meta"]["width"], r["meta"]["height"]) > 2000),
        ]
        bgs = sorted({r["meta"]["background"] for r in rows})
        s["by_background"] = [dict(bucket(f"background {b}", lambda t, r, b=b: r["meta"]["background"] == b),
                                   photos=sum(1 for r in rows if r["meta"]["background"] == b),
                                   count_exact_pct=pct(sum(1 for r in rows if r["meta"]["background"] == b
                                                           and r["n_det"] == r["n_truth"]),
                                                       sum(1 for r in rows if r["meta"]["background"] == b)))
                              for b in bgs]
    return s


def print_summary(s):
    f = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.1f}" if isinstance(v, float) else str(v))
    print(f"\n== item_crop on part '{s['part']}' ==")
    print(f"| metric | value |\n|---|---|")
    for k, label in [("photos", "photos"), ("items", "truth items"), ("errors", "worker errors"),
                     ("count_exact_pct", "count exact %"), ("count_exact_conf05_pct", "count exact % (items ≥ 0.5 conf)"),
                     ("items_iou09_pct", "items box IoU ≥ 0.9 %"), ("items_found05_pct", "items found (IoU ≥ 0.5) %"),
                     ("mean_box_iou", "mean box IoU"), ("mean_quad_iou", "mean quad IoU"),
                     ("false_items_per_photo", "false items / photo (IoU < 0.5)"),
                     ("no_collectible_photos", "photos with no collectible"),
                     ("no_collectible_false_items_conf05", "  false items ≥ 0.5 conf on them"),
                     ("no_collectible_photos_with_false_conf05", "  of those photos, with any"),
                     ("wall_s_per_photo", "wall s / photo (process)"), ("worker_ms_mean", "worker total_ms mean")]:
        v = s.get(k)
        if k in ("mean_box_iou", "mean_quad_iou", "false_items_per_photo", "wall_s_per_photo") and isinstance(v, float):
            v = f"{v:.3f}"
        print(f"| {label} | {f(v)} |")
    if "cards_png" in s:
        c = s["cards_png"]
        print(f"| cards.png found IoU ≥ 0.5 / ≥ 0.9 | {c['found_iou05']} / {c['found_iou09']} of {c['truth']} ({c['reported']} reported) |")
    print("\nreliability (correct = matched at box IoU ≥ 0.5; ≥ 0.9 in the last column)")
    print("| confidence | detections | share correct | mean confidence | share IoU ≥ 0.9 |\n|---|---|---|---|---|")
    for b in s["reliability"]:
        if b["count"]:
            print(f"| {b['bin']} | {b['count']} | {b['share_correct_iou05']:.2f} | {b['mean_confidence']:.2f} | {b['share_correct_iou09']:.2f} |")
    if "ece_iou05" in s:
        print(f"expected calibration error (IoU ≥ 0.5): {s['ece_iou05']:.3f}")
    if "by_condition" in s:
        print("\n| condition | items | IoU ≥ 0.9 % | found % |\n|---|---|---|---|")
        for b in s["by_condition"] + s["by_background"]:
            print(f"| {b['condition']} | {b['items']} | {f(b['iou09_pct'])} | {f(b['found05_pct'])} |"
                  + (f" photos {b['photos']}, count exact {f(b['count_exact_pct'])} %" if "photos" in b else ""))


def draw(photos, rows, out, limit=40):
    import cv2
    out.mkdir(parents=True, exist_ok=True)
    bad = [(p, r) for p, r in zip(photos, rows)
           if r["n_det"] != r["n_truth"] or any(v < 0.9 for v in r["truth_iou"])]
    for p, r in bad[:limit]:
        im = cv2.imread(p["path"], cv2.IMREAD_COLOR)
        th = max(1, max(im.shape[:2]) // 400)
        for t, v in zip(r["truth"], r["truth_iou"]):
            cv2.polylines(im, [np.round(np.array(t["quad"])).astype(np.int32)], True, (0, 200, 0), th, cv2.LINE_AA)
        for d in r["dets"]:
            q = np.round(np.array(d["quad"])).astype(np.int32)
            cv2.polylines(im, [q], True, (0, 0, 255), th, cv2.LINE_AA)
            cv2.putText(im, f'{d["confidence"]:.2f}', tuple(int(x) for x in q[0]), 0, th * 0.6, (0, 0, 255), th)
        name = Path(p["name"].replace(":", "_")).stem + ".jpg"
        cv2.imwrite(str(out / name), im)
    print(f"{min(len(bad), limit)} of {len(bad)} photos with errors drawn in {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", required=True,
                    help="path of the worker binary, or `opencv-recipe` for the reference recipe (opencv_recipe.py)")
    ap.add_argument("--part", required=True, choices=["dev", "heldout", "real"])
    ap.add_argument("--renders", default=str(RP.CACHE / "renders"), help="where rendered parts live")
    ap.add_argument("--out", help="write the summary and per-photo results as JSON here")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes at once (default 1)")
    ap.add_argument("--limit", type=int, help="first N photos only (quick looks; not a result)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--draw", help="write overlays (truth green, detections red + confidence) of the photos with errors here")
    ap.add_argument("--worker-arg", action="append", default=[], help="extra argument for `worker analyze`")
    a = ap.parse_args()
    photos = load_part(a.part, a.renders)
    if a.limit:
        photos = photos[:a.limit]
    extra = a.worker_arg or ["--json"]
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        results = list(ex.map(lambda p: run_worker(a.worker, p["path"], extra, a.timeout), photos))
    elapsed = time.time() - t0
    for p, (rep, wall, err) in zip(photos, results):
        if err:
            print(f"worker failed on {p['name']}: {err}", file=sys.stderr)
    rows, dets = evaluate(photos, results)
    s = summarise(rows, dets, a.part)
    s["elapsed_s"] = elapsed
    s["jobs"] = a.jobs
    s["worker"] = a.worker if a.worker == "opencv-recipe" else os.path.abspath(a.worker)
    print_summary(s)
    print(f"\n{len(photos)} photos in {elapsed:.1f} s wall ({a.jobs} job(s))")
    if a.draw:
        draw(photos, rows, Path(a.draw))
    if a.out:
        Path(a.out).write_text(json.dumps({"summary": s, "photos": rows}, indent=1))


if __name__ == "__main__":
    main()
