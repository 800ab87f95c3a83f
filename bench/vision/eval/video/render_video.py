#!/usr/bin/env python3
"""An independent renderer of hand-held card videos with ground truth.

Written apart from the Rust detectors (it imports nothing from `vision/` and
reads none of its constants) so that `video_scan` can be measured on input
its rules were not shaped on. What it samples, per video:

- the card's look: border white / black / coloured / grey, print light or
  dark (a real photo from scikit-image's bundled data, tinted), a thin frame
  line where many real cards have one;
- the background: plain (any grey or colour, mid-grey included), textured
  (scikit-image's brick, gravel, grass, text; procedural wood and fabric) or
  cluttered (a desk of random objects, papers and pens);
- the hand: a smooth hand-held 3-D motion (roll, pitch, yaw, drift, distance),
  a thumb that covers part of an edge in some frames, a lighting ramp and a
  moving glare spot, defocus, motion blur, sensor noise, MJPG compression;
- known centering (left and top border shares) and known defects (scratch,
  crease, stain, corner wear, edge wear) with boxes normalised to the card.

Usage: render_video.py OUT_DIR --seeds 0-47 [--frames 60]
Writes OUT_DIR/<seed>.avi and OUT_DIR/<seed>.json.
"""

import argparse
import json
import math
import os

import cv2
import numpy as np
import skimage.data

# The card texture is drawn at 10 px per millimetre of a 63 x 88 mm card.
CARD_W, CARD_H = 630, 880
FRAME_W, FRAME_H = 1280, 720

BORDERS = ["white", "black", "coloured", "grey"]
PRINTS = ["light", "dark"]
BACKGROUNDS = ["plain", "textured", "cluttered"]
DEFECT_KINDS = ["scratch", "crease", "stain", "corner_wear", "edge_wear"]


def photo_pool():
    names = ["astronaut", "coffee", "chelsea", "rocket", "camera", "horse", "coins", "moon", "page"]
    out = []
    for n in names:
        img = getattr(skimage.data, n)()
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        if img.dtype != np.uint8:
            img = (img.astype(np.float64) / img.max() * 255).astype(np.uint8)
        out.append(cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR))
    return out


def texture_pool():
    out = []
    for n in ["brick", "gravel", "grass", "text"]:
        img = getattr(skimage.data, n)()
        out.append(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[..., :3])
    return out


def rand_colour(rng, lo=40, hi=220):
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(120, 255), rng.integers(lo, hi)]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def border_colour(rng, look):
    if look == "white":
        v = int(rng.integers(228, 252))
        return (v, v, v - int(rng.integers(0, 6)))
    if look == "black":
        v = int(rng.integers(12, 40))
        return (v, v, v)
    if look == "grey":
        v = int(rng.integers(105, 175))
        return (v, v, v)
    return rand_colour(rng, 90, 230)


def print_area(rng, w, h, look, border, photos):
    """A tinted photo crop whose mean level is clearly apart from the border's."""
    src = photos[int(rng.integers(len(photos)))]
    sh, sw = src.shape[:2]
    scale = max(w / sw, h / sh) * rng.uniform(1.0, 1.6)
    big = cv2.resize(src, (int(sw * scale) + 1, int(sh * scale) + 1), interpolation=cv2.INTER_AREA)
    y0 = int(rng.integers(0, big.shape[0] - h + 1))
    x0 = int(rng.integers(0, big.shape[1] - w + 1))
    img = big[y0:y0 + h, x0:x0 + w].astype(np.float64)
    # Contrast squeezed and shifted: a light print sits around 170-215, a dark
    # one around 45-95; either keeps >= 35 levels from the border's mean.
    b = float(np.mean(border))
    for _ in range(20):
        target = rng.uniform(170, 215) if look == "light" else rng.uniform(45, 95)
        if abs(target - b) >= 35:
            break
    else:
        target = b + 45 if b < 128 else b - 45
    spread = rng.uniform(0.35, 0.6)
    img = (img - img.mean()) * spread + target
    # A name bar near the bottom, as many real cards have.
    if rng.random() < 0.6:
        bar_h = int(h * rng.uniform(0.07, 0.12))
        img[h - bar_h - int(h * 0.03):h - int(h * 0.03)] = np.array(rand_colour(rng, 60, 230), np.float64)
    return np.clip(img, 0, 255)


def draw_defect(rng, card, kind, geom, border):
    """Draws one defect on the card texture; returns its box normalised to the card and its location."""
    L, R, T, B = geom
    h, w = card.shape[:2]
    light_border = np.mean(border) > 200
    if kind == "scratch":
        # A thin glossy line somewhere on the card face, brighter than its surround.
        length = w * rng.uniform(0.18, 0.35)
        ang = rng.uniform(0, math.pi)
        cx, cy = rng.uniform(0.25 * w, 0.75 * w), rng.uniform(0.2 * h, 0.8 * h)
        dx, dy = math.cos(ang) * length / 2, math.sin(ang) * length / 2
        p0, p1 = (cx - dx, cy - dy), (cx + dx, cy + dy)
        layer = np.zeros((h, w), np.float64)
        cv2.line(layer, (int(p0[0] * 16), int(p0[1] * 16)), (int(p1[0] * 16), int(p1[1] * 16)), 1.0, int(rng.integers(2, 4)), cv2.LINE_AA, 4)
        layer = cv2.GaussianBlur(layer, (0, 0), 0.6)
        amp = rng.uniform(70, 110)
        card += layer[..., None] * amp
        box = [min(p0[0], p1[0]) - 2, min(p0[1], p1[1]) - 2, max(p0[0], p1[0]) + 2, max(p0[1], p1[1]) + 2]
        return box, None
    if kind == "crease":
        # A fold: a dark line with a light ridge beside it, across much of the card.
        length = w * rng.uniform(0.5, 0.9)
        ang = rng.uniform(-0.5, 0.5) + (math.pi / 2 if rng.random() < 0.3 else 0)
        cx, cy = rng.uniform(0.35 * w, 0.65 * w), rng.uniform(0.3 * h, 0.7 * h)
        dx, dy = math.cos(ang) * length / 2, math.sin(ang) * length / 2
        p0, p1 = (cx - dx, cy - dy), (cx + dx, cy + dy)
        nx, ny = -math.sin(ang) * 3, math.cos(ang) * 3
        dark = np.zeros((h, w), np.float64)
        lite = np.zeros((h, w), np.float64)
        cv2.line(dark, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), 1.0, 3, cv2.LINE_AA)
        cv2.line(lite, (int(p0[0] + nx), int(p0[1] + ny)), (int(p1[0] + nx), int(p1[1] + ny)), 1.0, 2, cv2.LINE_AA)
        card -= cv2.GaussianBlur(dark, (0, 0), 0.8)[..., None] * rng.uniform(70, 100)
        card += cv2.GaussianBlur(lite, (0, 0), 0.8)[..., None] * rng.uniform(30, 50)
        xs, ys = [p0[0], p1[0]], [p0[1], p1[1]]
        return [min(xs) - 4, min(ys) - 4, max(xs) + 4, max(ys) + 4], None
    if kind == "stain":
        # A brownish blotch made of a few overlapping blobs.
        cx, cy = rng.uniform(L + 0.1 * w, w - R - 0.1 * w), rng.uniform(T + 0.1 * h, h - B - 0.1 * h)
        r = w * rng.uniform(0.03, 0.055)
        mask = np.zeros((h, w), np.float64)
        for _ in range(int(rng.integers(2, 5))):
            ox, oy = rng.normal(0, r * 0.4, 2)
            ax = (int(r * rng.uniform(0.6, 1.0)), int(r * rng.uniform(0.5, 0.9)))
            cv2.ellipse(mask, (int(cx + ox), int(cy + oy)), ax, rng.uniform(0, 180), 0, 360, 1.0, -1, cv2.LINE_AA)
        mask = cv2.GaussianBlur(np.clip(mask, 0, 1), (0, 0), 1.5)
        tint = np.array([30, 60, 90], np.float64) * rng.uniform(0.6, 1.0)
        card[:] = card * (1 - 0.55 * mask[..., None]) + tint * 0.55 * mask[..., None]
        ys, xs = np.nonzero(mask > 0.15)
        return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], None
    if kind == "corner_wear":
        corner = int(rng.integers(4))
        names = ["top_left", "top_right", "bottom_right", "bottom_left"]
        cx = 0 if corner in (0, 3) else w
        cy = 0 if corner in (0, 1) else h
        r = w * rng.uniform(0.035, 0.06)
        yy, xx = np.mgrid[0:h, 0:w]
        d = np.hypot(xx - cx, yy - cy)
        fibres = rng.uniform(0.6, 1.0, (h, w))
        m = np.clip((r - d) / (0.35 * r), 0, 1) * fibres
        if light_border:
            # On a white border wear shows as a grey scuffed, dirtied corner.
            card[:] = card * (1 - 0.6 * m[..., None]) + 95 * 0.6 * m[..., None]
        else:
            card[:] = card * (1 - m[..., None]) + 240 * m[..., None]
        return [max(cx - r, 0), max(cy - r, 0), min(cx + r, w), min(cy + r, h)], names[corner]
    # edge_wear: fraying along part of one edge.
    side = int(rng.integers(4))
    names = ["top", "right", "bottom", "left"]
    along = (w if side in (0, 2) else h) * rng.uniform(0.12, 0.3)
    depth = w * rng.uniform(0.012, 0.022)
    start = rng.uniform(0.2, 0.8) * ((w if side in (0, 2) else h) - along)
    m = np.zeros((h, w), np.float64)
    n = int(along)
    prof = np.clip(depth * (0.5 + 0.5 * rng.random(n)), 1, None)
    prof = np.convolve(prof, np.ones(5) / 5, "same")
    for i in range(n):
        t = int(start + i)
        dd = int(prof[i])
        if side == 0:
            m[0:dd, t] = 1
        elif side == 2:
            m[h - dd:h, t] = 1
        elif side == 1:
            m[t, w - dd:w] = 1
        else:
            m[t, 0:dd] = 1
    m = cv2.GaussianBlur(m, (0, 0), 0.8)
    if light_border:
        card[:] = card * (1 - 0.6 * m[..., None]) + 95 * 0.6 * m[..., None]
    else:
        card[:] = card * (1 - m[..., None]) + 240 * m[..., None]
    ys, xs = np.nonzero(m > 0.2)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], names[side]


def render_card(rng, look_border, look_print, photos, defects_wanted):
    border = border_colour(rng, look_border)
    card = np.empty((CARD_H, CARD_W, 3), np.float64)
    card[:] = border
    # Borders: 2.2-4 mm on average, split by a known centering share.
    total_lr = CARD_W * rng.uniform(0.07, 0.13)
    total_tb = CARD_H * rng.uniform(0.05, 0.1)
    lr = rng.uniform(0.36, 0.64)
    tb = rng.uniform(0.36, 0.64)
    L, T = total_lr * lr, total_tb * tb
    R, B = total_lr - L, total_tb - T
    x0, y0, x1, y1 = int(round(L)), int(round(T)), int(round(CARD_W - R)), int(round(CARD_H - B))
    card[y0:y1, x0:x1] = print_area(rng, x1 - x0, y1 - y0, look_print, border, photos)
    if rng.random() < 0.4:
        # A thin frame line just inside the print edge.
        cv2.rectangle(card, (x0 + 3, y0 + 3), (x1 - 4, y1 - 4), rand_colour(rng, 30, 240), 2)
    # Paper grain.
    card += rng.normal(0, 2.0, card.shape)
    truth = []
    for kind in defects_wanted:
        box, loc = draw_defect(rng, card, kind, (L, R, T, B), border)
        truth.append({"kind": kind, "bbox": [box[0] / CARD_W, box[1] / CARD_H, box[2] / CARD_W, box[3] / CARD_H], "location": loc})
    centering = {"lr": x0 / (x0 + (CARD_W - x1)), "tb": y0 / (y0 + (CARD_H - y1))}
    return np.clip(card, 0, 255), centering, truth, border


def background(rng, look, textures, photos):
    if look == "plain":
        if rng.random() < 0.5:
            v = int(rng.integers(20, 236))
            bg = np.full((FRAME_H, FRAME_W, 3), v, np.float64)
        else:
            bg = np.full((FRAME_H, FRAME_W, 3), rand_colour(rng, 30, 230), np.float64)
        # Uneven light across a plain table.
        yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W]
        g = 1 + 0.12 * ((xx / FRAME_W - 0.5) * rng.uniform(-1, 1) + (yy / FRAME_H - 0.5) * rng.uniform(-1, 1))
        return bg * g[..., None]
    if look == "textured":
        pick = rng.integers(6)
        if pick < 4:
            t = textures[pick]
            s = rng.uniform(1.0, 2.5)
            t = cv2.resize(t, None, fx=s, fy=s)
            reps = (FRAME_H // t.shape[0] + 2, FRAME_W // t.shape[1] + 2, 1)
            bg = np.tile(t, reps)[:FRAME_H, :FRAME_W].astype(np.float64)
            tint = np.array(rand_colour(rng, 120, 255), np.float64) / 255
            return bg * (0.5 + 0.5 * tint)
        yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float64)
        if pick == 4:
            # Wood: warped rings along the grain.
            warp = cv2.GaussianBlur(rng.normal(0, 1, (FRAME_H, FRAME_W)), (0, 0), 25) * 300
            rings = np.sin((yy + warp) * rng.uniform(0.05, 0.12)) * 0.5 + 0.5
            base = np.array([40, 90, 150], np.float64) * rng.uniform(0.6, 1.2)
            return base * (0.7 + 0.3 * rings[..., None]) + rng.normal(0, 4, (FRAME_H, FRAME_W, 1))
        # Fabric: a woven check.
        p = rng.uniform(6, 14)
        weave = (np.sin(xx * 2 * math.pi / p) * np.sin(yy * 2 * math.pi / p)) * 0.5 + 0.5
        c1 = np.array(rand_colour(rng, 60, 220), np.float64)
        return c1 * (0.75 + 0.25 * weave[..., None]) + rng.normal(0, 3, (FRAME_H, FRAME_W, 1))
    # Cluttered desk: papers, a photo, pens, mugs seen from above.
    bg = np.full((FRAME_H, FRAME_W, 3), rand_colour(rng, 60, 200), np.float64)
    for _ in range(int(rng.integers(8, 18))):
        kind = rng.integers(4)
        col = rand_colour(rng, 30, 250)
        cx, cy = int(rng.integers(0, FRAME_W)), int(rng.integers(0, FRAME_H))
        if kind == 0:
            box = cv2.boxPoints(((cx, cy), (int(rng.integers(80, 300)), int(rng.integers(100, 380))), rng.uniform(0, 180)))
            cv2.fillPoly(bg, [box.astype(np.int32)], col, cv2.LINE_AA)
        elif kind == 1:
            cv2.line(bg, (cx, cy), (cx + int(rng.integers(-200, 200)), cy + int(rng.integers(-200, 200))), col, int(rng.integers(4, 12)), cv2.LINE_AA)
        elif kind == 2:
            cv2.circle(bg, (cx, cy), int(rng.integers(30, 90)), col, -1, cv2.LINE_AA)
        else:
            src = photos[int(rng.integers(len(photos)))]
            s = cv2.resize(src, (int(rng.integers(120, 260)), int(rng.integers(90, 200))))
            y0, x0 = min(cy, FRAME_H - s.shape[0]), min(cx, FRAME_W - s.shape[1])
            bg[y0:y0 + s.shape[0], x0:x0 + s.shape[1]] = s
    return bg


def smooth_path(rng, n, amp, fps):
    t = np.arange(n) / fps
    out = np.zeros(n)
    for _ in range(3):
        f = rng.uniform(0.08, 0.5)
        out += np.sin(2 * math.pi * f * t + rng.uniform(0, 2 * math.pi)) / 3
    return out * amp


def project(corners_mm, roll, pitch, yaw, dist_mm, shift, focal):
    """Pinhole projection of the card's corners (card plane z=0, centred)."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy_, sy_ = math.cos(yaw), math.sin(yaw)
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Ry = np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
    Rm = Ry @ Rx @ Rz
    pts = (Rm @ corners_mm.T).T + np.array([0, 0, dist_mm])
    u = focal * pts[:, 0] / pts[:, 2] + FRAME_W / 2 + shift[0]
    v = focal * pts[:, 1] / pts[:, 2] + FRAME_H / 2 + shift[1]
    return np.stack([u, v], 1)


def render(seed, frames, fps, photos, textures):
    rng = np.random.default_rng(seed)
    # Looks are stratified by seed so every combination is covered evenly.
    look_border = BORDERS[seed % 4]
    look_print = PRINTS[(seed // 4) % 2]
    look_bg = BACKGROUNDS[(seed // 8) % 3]
    n_def = int(rng.choice([0, 0, 1, 2, 3]))
    kinds = [str(k) for k in rng.choice(DEFECT_KINDS, size=n_def, replace=False)] if n_def else []
    card, centering, defects, border = render_card(rng, look_border, look_print, photos, kinds)
    card_u8 = card.astype(np.float32)
    bg = background(rng, look_bg, textures, photos).astype(np.float32)

    focal = 1000.0
    # Card height on screen: 55-82 % of the frame height.
    screen_h = FRAME_H * rng.uniform(0.55, 0.82)
    dist = focal * 88.0 / screen_h
    base_roll = math.radians(rng.uniform(-8, 8))
    roll = base_roll + smooth_path(rng, frames, math.radians(4), fps)
    pitch = smooth_path(rng, frames, math.radians(rng.uniform(6, 16)), fps)
    yaw = smooth_path(rng, frames, math.radians(rng.uniform(6, 16)), fps)
    sx = smooth_path(rng, frames, rng.uniform(10, 45), fps) + rng.uniform(-120, 120)
    sy = smooth_path(rng, frames, rng.uniform(8, 30), fps) + rng.uniform(-30, 30)
    dz = smooth_path(rng, frames, dist * 0.05, fps)
    corners_mm = np.array([[-31.5, -44, 0], [31.5, -44, 0], [31.5, 44, 0], [-31.5, 44, 0]])
    src = np.float32([[0, 0], [CARD_W, 0], [CARD_W, CARD_H], [0, CARD_H]])

    # Thumb: holds an edge in a span of frames in 40 % of videos.
    thumb = None
    if rng.random() < 0.4:
        a = int(rng.integers(0, frames // 2))
        thumb = (a, a + int(frames * rng.uniform(0.2, 0.4)), int(rng.integers(4)), rng.uniform(0.15, 0.85))
    gain = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.15), frames)
    glare = rng.random() < 0.5
    skin = np.array([120, 150, 205], np.float32) * rng.uniform(0.6, 1.1)
    defocus = rng.uniform(0.3, 1.0)

    tmp = f"/tmp/render_video_{os.getpid()}_{seed}.avi"
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"MJPG"), fps, (FRAME_W, FRAME_H))
    quads = []
    prev = None
    for i in range(frames):
        quad = project(corners_mm, roll[i], pitch[i], yaw[i], dist + dz[i], (sx[i], sy[i]), focal)
        quads.append(quad.tolist())
        H = cv2.getPerspectiveTransform(src, quad.astype(np.float32))
        # Pre-filter the texture to the on-screen scale so the warp does not alias.
        scale = np.linalg.norm(quad[0] - quad[3]) / CARD_H
        tex = cv2.GaussianBlur(card_u8, (0, 0), max(0.5 / scale - 0.5, 0.01)) if scale < 1 else card_u8
        warped = cv2.warpPerspective(tex, H, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpPerspective(np.ones((CARD_H, CARD_W), np.float32), H, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR)[..., None]
        # A soft shadow under the card.
        sh = cv2.GaussianBlur(cv2.warpPerspective(np.ones((CARD_H, CARD_W), np.float32), H @ np.array([[1, 0, 6], [0, 1, 8], [0, 0, 1]], np.float64), (FRAME_W, FRAME_H)), (0, 0), 8)[..., None]
        frame = bg * (1 - 0.35 * sh)
        frame = frame * (1 - alpha) + warped * alpha
        if thumb and thumb[0] <= i < thumb[1]:
            side, t = thumb[2], thumb[3]
            a, b = quad[side], quad[(side + 1) % 4]
            p = a + (b - a) * t
            centre = quad.mean(0)
            out = (p - centre) / np.linalg.norm(p - centre)
            tc = p + out * 25
            ang = math.degrees(math.atan2(out[1], out[0]))
            m = np.zeros((FRAME_H, FRAME_W), np.float32)
            cv2.ellipse(m, (int(tc[0]), int(tc[1])), (70, 38), ang, 0, 360, 1.0, -1, cv2.LINE_AA)
            m = cv2.GaussianBlur(m, (0, 0), 2)[..., None]
            frame = frame * (1 - m) + skin * m
        frame *= gain[i]
        if glare:
            c = quad.mean(0) + (quad[1] - quad[0]) * (i / frames - 0.5) * 0.8
            yy, xx = np.ogrid[0:FRAME_H, 0:FRAME_W]
            r = screen_h * 0.18
            frame += (70 * np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * r * r)))[..., None] * alpha
        frame = cv2.GaussianBlur(frame, (0, 0), defocus)
        if prev is not None:
            v = (quad - prev).mean(0)
            speed = float(np.linalg.norm(v))
            if speed > 2:
                k = int(min(speed, 15))
                ker = np.zeros((k, k), np.float32)
                cv2.line(ker, (k // 2 - int(v[0] / speed * k / 2), k // 2 - int(v[1] / speed * k / 2)), (k // 2 + int(v[0] / speed * k / 2), k // 2 + int(v[1] / speed * k / 2)), 1.0, 1)
                ker /= max(ker.sum(), 1)
                frame = cv2.filter2D(frame, -1, ker)
        prev = quad
        frame += rng.normal(0, rng.uniform(1.5, 3.5), frame.shape[:2])[..., None]
        writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    writer.release()
    truth = {
        "seed": seed,
        "frames": frames,
        "fps": fps,
        "size": [FRAME_W, FRAME_H],
        "look": {"border": look_border, "print": look_print, "background": look_bg, "border_bgr": list(border)},
        "centering": centering,
        "defects": defects,
        "thumb": bool(thumb),
        "glare": glare,
        "quads": quads,
    }
    return tmp, truth


def parse_seeds(spec):
    out = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seeds", required=True, help="e.g. 0-47 or 1000-1047")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--fps", type=float, default=30.0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    photos, textures = photo_pool(), texture_pool()
    for seed in parse_seeds(args.seeds):
        video = os.path.join(args.out, f"{seed}.avi")
        meta = os.path.join(args.out, f"{seed}.json")
        if os.path.exists(video) and os.path.exists(meta):
            continue
        tmp, truth = render(seed, args.frames, args.fps, photos, textures)
        os.replace(tmp, video)
        with open(meta, "w") as f:
            json.dump(truth, f)
        print(f"{seed}: {truth['look']} defects={[d['kind'] for d in truth['defects']]}", flush=True)


if __name__ == "__main__":
    main()
