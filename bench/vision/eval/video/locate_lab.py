#!/usr/bin/env python3
"""Localisation laboratory on the independent video renders (development part only).

A Python copy of the item localisation in `vision/src/pipeline/outline.rs`
and `locate.rs` (outline search on a reduced Canny map, then the profile
refinement and item/print step measurement on the margin-rectified frame),
run on a few frames per video and scored against the true outline (polygon
IoU >= 0.85, the worker's "found") and the true centering. It is where the
localisation rules are prototyped and tuned, on the development part only;
numbers to report come from eval_video.py, which runs the real worker.
Rule names in R map to `OutlineRules` and the constants of `locate.rs`.

Usage: locate_lab.py DIR [--frames 6] [--seeds 0-47] [--verbose]
"""

import argparse
import json
import math
import os

import cv2
import numpy as np

R = dict(
    detect_short_side=360,
    min_segment=0.08,
    merge_angle_deg=3.0,
    merge_offset_px=3.0,
    max_lines=30,
    parallel_deg=20.0,
    corner_deg=60.0,
    min_area=0.03,
    max_area=0.9,
    min_aspect=0.5,
    max_aspect=0.92,
    min_cos=0.9,
    min_side_support=0.3,
    support_slack=0.15,
    min_step=10.0,
    min_print_step=8.0,
    step_span=3,
    chroma=1.0,
    bands=1,
    margin=0.14,
    tries=1,
    band_in=0.12,
    band_out=0.12,
    band_tol=45.0,
    band_rel=0.0,
    far_cost=0.0,
)


# ---------------------------------------------------------------- outline.rs
def line_through(x1, y1, x2, y2):
    along = math.atan2(y2 - y1, x2 - x1)
    nx, ny = -math.sin(along), math.cos(along)
    rho = nx * x1 + ny * y1
    if rho < 0:
        nx, ny, rho = -nx, -ny, -rho
    return dict(n=(nx, ny), rho=rho, theta=math.atan2(ny, nx), length=math.hypot(x2 - x1, y2 - y1))


def meet(l1, l2):
    a, b = l1["n"]
    c, d = l2["n"]
    det = a * d - b * c
    if abs(det) < 1e-6:
        return None
    return ((l1["rho"] * d - b * l2["rho"]) / det, (a * l2["rho"] - l1["rho"] * c) / det)


def angle_between(a, b):
    d = (a - b) % math.pi
    return min(d, math.pi - d)


def merged_lines(edges, short, R):
    segs = cv2.HoughLinesP(edges, 1, math.pi / 180, 30, minLineLength=R["min_segment"] * short, maxLineGap=6)
    lines = []
    ma = math.radians(R["merge_angle_deg"])
    for s in [] if segs is None else segs.reshape(-1, 4):
        seg = line_through(*map(float, s))
        for l in lines:
            d = (seg["theta"] - l["theta"] + math.pi) % (2 * math.pi) - math.pi
            if abs(d) < ma and abs(seg["rho"] - l["rho"]) < R["merge_offset_px"]:
                l["length"] += seg["length"]
                break
        else:
            lines.append(seg)
    lines.sort(key=lambda l: -l["length"])
    return lines[: R["max_lines"]]


def clockwise(q):
    cx, cy = sum(p[0] for p in q) / 4, sum(p[1] for p in q) / 4
    q = sorted(q, key=lambda p: math.atan2(p[1] - cy, p[0] - cx))
    first = min(range(4), key=lambda i: q[i][0] + q[i][1])
    return q[first:] + q[:first]


def area(q):
    return abs(sum(q[k][0] * q[(k + 1) % 4][1] - q[(k + 1) % 4][0] * q[k][1] for k in range(4))) / 2


def convex(q):
    c = []
    for k in range(4):
        a, b, d = q[k], q[(k + 1) % 4], q[(k + 2) % 4]
        c.append((b[0] - a[0]) * (d[1] - b[1]) - (b[1] - a[1]) * (d[0] - b[0]))
    return all(s > 0 for s in c) or all(s < 0 for s in c)


def side_support(a, b, F, min_cos):
    dx, dy = b[0] - a[0], b[1] - a[1]
    ln = max(math.hypot(dx, dy), 1e-9)
    nx, ny = -dy / ln, dx / ln
    n = int(max(abs(dx), abs(dy))) + 1
    t = np.linspace(0, 1, n) if n > 1 else np.zeros(1)
    x = np.round(a[0] + dx * t).astype(int)
    y = np.round(a[1] + dy * t).astype(int)
    ok = (x >= 0) & (y >= 0) & (x < F["w"]) & (y < F["h"])
    x, y = x[ok], y[ok]
    near = F["near"][y, x] > 0
    gx, gy = F["gx"][y, x].astype(float), F["gy"][y, x].astype(float)
    mag = np.hypot(gx, gy)
    cos = np.abs(gx * nx + gy * ny) / np.maximum(mag, 1e-9)
    return float(np.sum(near & (mag > 1e-9) & (cos > min_cos))) / n


def judge(q, F, frame_area, R):
    if not convex(q):
        return None
    a = area(q)
    if a < R["min_area"] * frame_area or a > R["max_area"] * frame_area:
        return None
    if not all(2 <= p[0] <= F["w"] - 3 and 2 <= p[1] <= F["h"] - 3 for p in q):
        return None
    side = lambda k: math.hypot(q[(k + 1) % 4][0] - q[k][0], q[(k + 1) % 4][1] - q[k][1])
    across, down = side(0) + side(2), side(1) + side(3)
    if not R["min_aspect"] <= min(across, down) / max(across, down) <= R["max_aspect"]:
        return None
    sup = [side_support(q[k], q[(k + 1) % 4], F, R["min_cos"]) for k in range(4)]
    if min(sup) < R["min_side_support"]:
        return None
    return dict(quad=q, area=a, support=sum(sup) / 4, sides=sup)


def field(edges, smooth):
    h, w = edges.shape
    near = cv2.dilate(edges, np.ones((3, 3), np.uint8))
    g = lambda dx, dy: cv2.GaussianBlur(cv2.Sobel(smooth, cv2.CV_32F, dx, dy, ksize=3), (0, 0), 1.0)
    return dict(w=w, h=h, near=near, gx=g(1, 0), gy=g(0, 1))


def candidates(edges, smooth, R):
    h, w = edges.shape
    lines = merged_lines(edges, min(w, h), R)
    F = field(edges, smooth)
    par, cor = math.radians(R["parallel_deg"]), math.radians(R["corner_deg"])
    pairs = [(i, j) for i in range(len(lines)) for j in range(i + 1, len(lines)) if angle_between(lines[i]["theta"], lines[j]["theta"]) < par]
    found = []
    for n, (a, b) in enumerate(pairs):
        for c, d in pairs[n + 1 :]:
            if c in (a, b) or d in (a, b) or angle_between(lines[a]["theta"], lines[c]["theta"]) < cor:
                continue
            ps = [meet(lines[p], lines[q]) for p, q in ((a, c), (c, b), (b, d), (d, a))]
            if any(p is None for p in ps):
                continue
            o = judge(clockwise(ps), F, w * h, R)
            if o:
                found.append(o)
    return found, F


def pick(found, R):
    if not found:
        return None
    best = max(o["support"] for o in found)
    return max((o for o in found if o["support"] >= best - R["support_slack"]), key=lambda o: o["area"])


def detect_image(gray, R):
    f = max(1, min(4, min(gray.shape) // R["detect_short_side"]))
    h, w = max(gray.shape[0] // f, 8), max(gray.shape[1] // f, 8)
    small = np.round(cv2.GaussianBlur(cv2.resize(gray.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA), (0, 0), 2.0, borderType=cv2.BORDER_REFLECT_101))
    small = np.clip(small, 0, 255).astype(np.uint8)
    edges = cv2.Canny(small, 15, 60)
    return f, small, edges


def ranked(found, R):
    """The pick first, then the other outlines by support, skipping ones
    that overlap one already listed (IoU >= 0.8)."""
    first = pick(found, R)
    if first is None:
        return []
    out = [first]
    for o in sorted(found, key=lambda o: -o["support"]):
        if len(out) >= R["tries"]:
            break
        if all(poly_iou(o["quad"], q["quad"]) < 0.8 for q in out):
            out.append(o)
    return out


def locate(gray, R, all_=False):
    f, small, edges = detect_image(gray, R)
    found, F = candidates(edges, small.astype(np.float32), R)
    outs = ranked(found, R)
    quads = [[((p[0] + 0.5) * f - 0.5, (p[1] + 0.5) * f - 0.5) for p in o["quad"]] for o in outs]
    if all_:
        return quads, found
    return (quads[0] if quads else None), found


# ----------------------------------------------------------------- locate.rs
def steps(p, from_end, expected, R):
    n = len(p)
    if n < 16:
        return None
    q = p[::-1] if from_end else p
    if q.ndim == 1:
        q = q[:, None]
    S = R["step_span"]
    # step[i] = |q[i+S-1] - q[i-1]| (Euclidean over channels), centred
    # between samples i and i+1.
    step = np.array([0.0] + [float(np.linalg.norm(q[i + S - 1] - q[i - 1])) for i in range(1, n - S)])
    m = len(step)
    peak = lambda i: 0 < i < m - 1 and step[i] >= step[i - 1] and step[i] >= step[i + 1]

    def first_clear(lo, hi, rel, mn):
        hi = min(hi, m)
        if lo >= hi:
            return None
        floor = max(rel * max(step[lo:hi].max(), 0.0), mn)
        for i in range(lo, hi):
            if peak(i) and step[i] >= floor:
                return i
        return None

    def refine(i):
        a, b, c = step[i - 1], step[i], step[i + 1]
        den = a - 2 * b + c
        off = min(max(0.5 * (a - c) / den, -0.5), 0.5) if abs(den) > 1e-9 else 0.0
        return i + 0.5 + off

    tol = max(0.02 * n, 4.0)
    lo, hi = int(max(expected - tol, 1.0)), int(math.ceil(expected + tol))
    band = n * 12 // 100

    def print_inside(card):
        fr = int(math.ceil(card)) + S
        i = first_clear(fr, fr + band, 1 / 8, R["min_print_step"])
        return None if i is None else refine(i)

    i = first_clear(lo, hi + 1, 1 / 8, R["min_step"])
    if i is not None:
        pr = print_inside(refine(i))
        if pr is not None:
            card, prn = refine(i), pr
        else:
            outer = None
            for j in range(i - S - 1, max(lo - band, 1) - 1, -1):
                if peak(j) and step[j] >= max(step[i] / 8, R["min_step"]):
                    outer = j
                    break
            if outer is None:
                return None
            card, prn = refine(outer), refine(i)
    else:
        pr = print_inside(expected)
        if pr is None:
            return None
        card, prn = expected, pr
    conv = lambda s: (n - 1) - s if from_end else s
    return conv(card), conv(prn)


def step_array(q, S):
    n = len(q)
    return np.array([0.0] + [float(np.linalg.norm(q[i + S - 1] - q[i - 1])) for i in range(1, n - S)])


def border_bands(profiles, R):
    """The border as a plain band of one colour on all four sides.

    `profiles`: four (profile oriented from the outside in, expected item
    edge in samples). For each side the candidates are the plain stretches
    between two consecutive clear steps that start near the outline or
    further out (the outline may have followed the print frame) and are no
    wider than the border can be; one candidate per side is chosen so that
    the four colours agree best. Returns [(card, print)] in oriented
    samples, or None when no choice agrees."""
    S = R["step_span"]
    cands = []
    for q, e in profiles:
        n = len(q)
        st = step_array(q, S)
        m = len(st)
        peaks = [i for i in range(1, m - 1) if st[i] >= st[i - 1] and st[i] >= st[i + 1] and st[i] >= R["min_print_step"]]
        tol = max(0.02 * n, 4.0)
        band = n * R["band_in"]
        out_reach = n * R["band_out"]
        side = []
        for a, b in zip(peaks, peaks[1:]):
            if not (e - out_reach <= a + 0.5 <= e + tol) or b - a > band or st[a] < R["min_step"]:
                continue
            seg = q[a + S - 1 : b]
            if len(seg) < 2:
                continue
            side.append((a, b, np.median(seg, axis=0), R["far_cost"] * max(0.0, abs(a + 0.5 - e) - tol) / tol))
        if not side:
            return None
        cands.append((side, st))
    best = None
    for k in range(4):
        for a, b, col, _ in cands[k][0]:
            pick = []
            worst = 0.0
            for side, _ in cands:
                d, c = min(((float(np.linalg.norm(cc - col)) + far, (aa, bb)) for aa, bb, cc, far in side), key=lambda x: x[0])
                worst = max(worst, d)
                pick.append(c)
            if best is None or worst < best[0]:
                best = (worst, pick, col)
    worst, pick, col = best
    if worst > max(R["band_tol"], R["band_rel"] * float(col[0])):
        return None

    def refine(st, i):
        a, b, c = st[i - 1], st[i], st[i + 1]
        den = a - 2 * b + c
        off = min(max(0.5 * (a - c) / den, -0.5), 0.5) if abs(den) > 1e-9 else 0.0
        return i + 0.5 + off

    return [(refine(st, a), refine(st, b)) for (a, b), (_, st) in zip(pick, cands)]


def measure(img, band, margin, R):
    h, w = img.shape[:2]
    b0, b1 = band
    px = np.median(img[int(h * b0) : int(h * b1), :], axis=0).astype(float)
    py = np.median(img[:, int(w * b0) : int(w * b1)], axis=1).astype(float)
    if px.ndim == 1:
        px, py = px[:, None], py[:, None]
    if R["bands"]:
        got = border_bands([(px, margin[0]), (px[::-1], margin[0]), (py, margin[1]), (py[::-1], margin[1])], R)
        if got is not None:
            (cl, pl), (cr, pr), (ct, pt), (cb, pb) = got
            W, Hh = len(px) - 1, len(py) - 1
            return dict(card=(cl, W - cr, ct, Hh - cb), print=(pl, W - pr, pt, Hh - pb))
    out = []
    for p, fe, m in ((px, False, margin[0]), (px, True, margin[0]), (py, False, margin[1]), (py, True, margin[1])):
        s = steps(p, fe, m, R)
        if s is None:
            return None
        out.append(s)
    return dict(card=tuple(o[0] for o in out), print=tuple(o[1] for o in out))


def homography(quad, iw, ih):
    return cv2.getPerspectiveTransform(np.float32([[0, 0], [iw, 0], [iw, ih], [0, ih]]), np.float32(quad))


def apply_h(H, u, v):
    d = H[2, 0] * u + H[2, 1] * v + H[2, 2]
    return ((H[0, 0] * u + H[0, 1] * v + H[0, 2]) / d, (H[1, 0] * u + H[1, 1] * v + H[1, 2]) / d)


def intersect(l1, l2):
    p, r = l1[0], (l1[1][0] - l1[0][0], l1[1][1] - l1[0][1])
    q, s = l2[0], (l2[1][0] - l2[0][0], l2[1][1] - l2[0][1])
    cr = r[0] * s[1] - r[1] * s[0]
    if abs(cr) < 1e-12:
        return p
    t = ((q[0] - p[0]) * s[1] - (q[1] - p[1]) * s[0]) / cr
    return (p[0] + t * r[0], p[1] + t * r[1])


def profile_image(bgr):
    """Luma and the two colour-difference channels (ITU-R BT.601, as OpenCV's
    YCrCb without the offset): a step in luma alone has the size of the gray
    step, and a border that differs from its surround in hue only still steps."""
    f = bgr.astype(np.float32)
    b, g, r = f[..., 0], f[..., 1], f[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return np.dstack([y, 0.713 * (r - y) * R["chroma"], 0.564 * (b - y) * R["chroma"]])


def analyze(gray, R, bgr=None):
    """Returns (quad, centering, reason): the first ranked outline whose
    edges can be measured."""
    quads, _ = locate(gray, R, all_=True)
    if not quads:
        return None, None, "no_outline"
    worst = None
    for quad in quads:
        q, c, why = measure_item(gray, quad, R, bgr)
        if why is None:
            return q, c, why
        worst = worst or (q, c, why)
    return worst


def measure_item(gray, quad, R, bgr):
    d = lambda a, b: math.hypot(a[0] - b[0], a[1] - b[1])
    iw = round((d(quad[0], quad[1]) + d(quad[3], quad[2])) / 2)
    ih = round((d(quad[0], quad[3]) + d(quad[1], quad[2])) / 2)
    if iw < 32 or ih < 32:
        return None, None, "item_too_small"
    margin = R["margin"]
    mw, mh = round(iw * (1 + 2 * margin)), round(ih * (1 + 2 * margin))
    ox, oy = iw * margin, ih * margin
    H = homography(quad, iw, ih)
    g32 = gray.astype(np.float32) if bgr is None or R["chroma"] == 0 else profile_image(bgr)
    measured = None
    for rnd in range(3):
        xs, ys = np.meshgrid(np.arange(mw) - ox, np.arange(mh) - oy)
        den = H[2, 0] * xs + H[2, 1] * ys + H[2, 2]
        mx = ((H[0, 0] * xs + H[0, 1] * ys + H[0, 2]) / den).astype(np.float32)
        my = ((H[1, 0] * xs + H[1, 1] * ys + H[1, 2]) / den).astype(np.float32)
        r1 = cv2.remap(g32, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if rnd == 2:
            measured = measure(r1, (0.3, 0.7), (ox, oy), R)
            break
        a, b = measure(r1, (0.2, 0.4), (ox, oy), R), measure(r1, (0.6, 0.8), (ox, oy), R)
        if a is None or b is None:
            break
        fw, fh = float(mw), float(mh)
        left = ((a["card"][0], 0.3 * fh), (b["card"][0], 0.7 * fh))
        right = ((a["card"][1], 0.3 * fh), (b["card"][1], 0.7 * fh))
        top = ((0.3 * fw, a["card"][2]), (0.7 * fw, b["card"][2]))
        bottom = ((0.3 * fw, a["card"][3]), (0.7 * fw, b["card"][3]))
        cs = [intersect(left, top), intersect(right, top), intersect(right, bottom), intersect(left, bottom)]
        quad = [apply_h(H, p[0] - ox, p[1] - oy) for p in cs]
        H = homography(quad, iw, ih)
    if measured is None:
        return quad, None, "edges_not_measured"
    c, p = measured["card"], measured["print"]
    l, r, t, b = p[0] - c[0], c[1] - p[1], p[2] - c[2], c[3] - p[3]
    return quad, (l / (l + r), t / (t + b)), None


# ---------------------------------------------------------------- scoring
def poly_iou(a, b):
    a, b = np.float32(a), np.float32(b)
    inter, _ = cv2.intersectConvexConvex(a, b)
    union = cv2.contourArea(a) + cv2.contourArea(b) - inter
    return inter / union if union > 0 else 0.0


def parse_seeds(spec):
    out = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def frames_of(path, idx):
    cap = cv2.VideoCapture(path)
    out, i = {}, 0
    while True:
        ok, fr = cap.read()
        if not ok:
            break
        if i in idx:
            out[i] = fr
        i += 1
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--seeds", default="0-47")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--set", action="append", default=[], help="rule=value")
    args = ap.parse_args()
    for kv in args.set:
        k, v = kv.split("=")
        R[k] = float(v) if isinstance(R[k], float) else int(float(v))
    tot = ok = 0
    per_video = []
    cerrs = []
    reasons = {}
    vid_found = []
    for s in parse_seeds(args.seeds):
        jp = os.path.join(args.dir, f"{s}.json")
        if not os.path.exists(jp):
            continue
        t = json.load(open(jp))
        n = t["frames"] if isinstance(t["frames"], int) else len(t["quads"])
        idx = [int((k + 0.5) * n / args.frames) for k in range(args.frames)]
        frs = frames_of(os.path.join(args.dir, f"{s}.avi"), set(idx))
        sx = t["size"][0] / 1280.0
        good = 0
        ok_frames = []
        for i in idx:
            q, cen, why = analyze(cv2.cvtColor(frs[i], cv2.COLOR_BGR2GRAY), R, frs[i])
            iou = poly_iou([(x * sx, y * sx) for x, y in q], t["quads"][i]) if q else 0.0
            hit = iou >= 0.85 and why is None
            if why is None:
                ok_frames.append((iou, cen))
            tot += 1
            good += hit
            if hit:
                cerrs.append(max(abs(cen[0] - t["centering"]["lr"]), abs(cen[1] - t["centering"]["tb"])) * 100)
                if args.verbose and cerrs[-1] > 2:
                    print(f"  seed {s} frame {i} {t['look']['border']}/{t['look']['print']}/{t['look']['background']}: centering off {cerrs[-1]:.1f} pp (lr {cen[0]:.3f} vs {t['centering']['lr']:.3f}, tb {cen[1]:.3f} vs {t['centering']['tb']:.3f})")
            else:
                key = why or "wrong_item"
                reasons[key] = reasons.get(key, 0) + 1
            if args.verbose and not hit:
                print(f"  seed {s} frame {i} {t['look']['border']}/{t['look']['print']}/{t['look']['background']}: {why or 'wrong'} IoU {iou:.2f}")
        per_video.append((s, good))
        # As the worker reports: the first frame that got an item, the
        # median centering over all that did.
        if ok_frames and ok_frames[0][0] >= 0.85:
            lr = float(np.median([c[0] for _, c in ok_frames]))
            tb = float(np.median([c[1] for _, c in ok_frames]))
            vid_found.append(max(abs(lr - t["centering"]["lr"]), abs(tb - t["centering"]["tb"])) * 100)
        elif args.verbose:
            print(f"  VIDEO MISS seed {s} {t['look']['border']}/{t['look']['print']}/{t['look']['background']}")
    print(f"frames located {sum(g for _, g in per_video)}/{tot}; videos with all frames {sum(g == args.frames for _, g in per_video)}/{len(per_video)}; with none {sum(g == 0 for _, g in per_video)}")
    print(f"misses: {reasons}")
    print(f"VIDEOS found {len(vid_found)}/{len(per_video)}; centering median {np.median(vid_found):.2f} pp, within 2 pp {sum(e <= 2 for e in vid_found)}/{len(vid_found)}")
    if cerrs:
        print(f"centering error median {np.median(cerrs):.2f} pp, within 2 pp {sum(e <= 2 for e in cerrs)}/{len(cerrs)}")


if __name__ == "__main__":
    main()
