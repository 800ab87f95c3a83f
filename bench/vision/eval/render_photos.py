#!/usr/bin/env python3
"""Independent photo renderer for evaluating `item_crop` (issue 28).

Written from the issue's list only: it imports nothing from vision/ and shares
no constants with the project's own generator. Each photo is a pure function of
its seed, so a part is reproduced by its seed range (see PARTS).

Per photo (numpy + OpenCV):
  background  real textures and photos from scikit-image / opencv-doc (tiled,
              scaled, cropped), procedural wood, fabric, paper, plain/gradient,
              white; optional desk clutter (sticks, coins, blobs, sticky notes)
  items       0-20: playing cards (SVG deck from npm, rasterised with
              cairosvg), trading cards (real-photo art in a white/black/
              coloured/grey/gold border), comics (cover or panel page with
              halftone art from real photos), card backs; white items on white
  geometry    in-plane rotation, perspective tilt up to 25 deg, overlaps up
              to 40 % of any item's area, items cut off by the photo edge
              (>= 55 % inside), long side 640-4000 px
  optics      sleeves / toploaders (translucent margin), drop shadows, glare,
              uneven light, colour cast, motion blur, sensor noise, barrel /
              pincushion distortion, JPEG quality 50-95

Ground truth per item: `quad` (the item's outer outline as projected, lens
distortion applied to the corners, before any cut-off; 4 corners clockwise on
screen from the corner with the smallest x+y), `box` (axis-aligned box of the
projected outline, clipped to the photo), `box_full` (not clipped),
`cut_off`, `inside_fraction`, `visible_fraction` (not covered by items above
and inside the photo), `kind`, `sleeve`.

Usage:
  render_photos.py --part dev --out DIR        # writes DIR/<seed>.jpg + DIR/truth.json
  render_photos.py --seeds 0-9 --out DIR --overlay   # also draws the truth
"""
import argparse
import io
import json
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
PARTS = {"dev": range(0, 150), "heldout": range(10000, 10150)}
DECK_DIR = HERE / "node_modules/@younestouati/playing-cards-standard-deck/cards"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
CACHE = Path(os.environ.get("SCANFLEET_EVAL_CACHE", Path.home() / ".cache/scanfleet-eval"))

# photos used as art and as backgrounds (none of them shows a card or comic)
SK_TEXTURES = ["brick.png", "grass.png", "gravel.png", "text.png", "page.png"]
SK_PHOTOS = ["coffee.png", "astronaut.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
             "camera.png", "hubble_deep_field.jpg", "coins.png", "retina.jpg"]
CV_PHOTOS = ["baboon.jpg", "fruits.jpg", "messi5.jpg", "starry_night.jpg", "HappyFish.jpg",
             "butterfly.jpg", "orange.jpg", "apple.jpg", "squirrel_cls.jpg", "home.jpg",
             "building.jpg", "aero1.jpg", "graf1.png", "leuvenA.jpg", "lena.jpg", "board.jpg"]

TRADING = (63.0, 88.0)   # mm, poker-size trading card
PLAYING = (225.0, 314.0)  # the SVG deck's view box
COMIC = (168.0, 260.0)   # mm, modern US comic


# --------------------------------------------------------------------------- assets
class Assets:
    def __init__(self):
        import skimage
        skdir = Path(skimage.__file__).parent / "data"
        self.textures = [self._load(skdir / n) for n in SK_TEXTURES]
        self.photos = [self._load(skdir / n) for n in SK_PHOTOS]
        self.photos += [self._load(OPENCV_DATA / n) for n in CV_PHOTOS if (OPENCV_DATA / n).exists()]
        self.textures = [t for t in self.textures if t is not None]
        self.photos = [p for p in self.photos if p is not None]
        self.deck = self._deck()

    @staticmethod
    def _load(p):
        im = cv2.imread(str(p), cv2.IMREAD_COLOR)
        return im

    def _deck(self):
        """54 faces (52 + jokers) rasterised once into the cache as BGRA PNGs."""
        out_dir = CACHE / "deck_png"
        names = [f"{r}{s}" for r in range(1, 14) for s in "cdhs"] + ["joker"]
        if not all((out_dir / f"{n}.png").exists() for n in names):
            if not DECK_DIR.exists():
                sys.exit(f"card faces missing: run `npm ci --prefix {HERE}` (package.json pins the deck)")
            import cairosvg
            out_dir.mkdir(parents=True, exist_ok=True)
            for n in names:
                png = cairosvg.svg2png(url=str(DECK_DIR / f"{n}.svg"), output_width=450, output_height=628)
                (out_dir / f"{n}.png").write_bytes(png)
        return [cv2.imread(str(out_dir / f"{n}.png"), cv2.IMREAD_UNCHANGED) for n in names]


# --------------------------------------------------------------------------- helpers
def rand_color(rng, lo=0, hi=255):
    return tuple(int(v) for v in rng.integers(lo, hi + 1, 3))


def crop_resize(rng, img, w, h, min_frac=0.3):
    """Random crop of img with aspect w:h, resized to w x h."""
    H, W = img.shape[:2]
    frac = rng.uniform(min_frac, 1.0)
    ch = H * frac
    cw = ch * w / h
    if cw > W:
        cw = W * frac
        ch = cw * h / w
    x0 = rng.uniform(0, max(0, W - cw))
    y0 = rng.uniform(0, max(0, H - ch))
    c = img[int(y0):int(y0 + ch) + 1, int(x0):int(x0 + cw) + 1]
    return cv2.resize(c, (max(1, int(w)), max(1, int(h))), interpolation=cv2.INTER_AREA)


def text_line(img, rng, x, y, height, color, n=None, thick=None):
    n = n or int(rng.integers(4, 14))
    s = "".join(chr(int(c)) for c in rng.integers(65, 91, n))
    scale = height / 22.0
    cv2.putText(img, s, (int(x), int(y)), int(rng.choice([0, 2, 3, 4])), scale, color,
                thick or max(1, int(scale * 1.6)), cv2.LINE_AA)


def halftone(img, rng, cell):
    """CMYK-ish dot screen: each channel as dots sized by darkness."""
    h, w = img.shape[:2]
    out = np.full_like(img, 250)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for ch, ang in zip(range(3), (15, 45, 75)):
        a = math.radians(ang)
        u = (xx * math.cos(a) + yy * math.sin(a)) / cell
        v = (-xx * math.sin(a) + yy * math.cos(a)) / cell
        d = np.hypot(u - np.round(u), v - np.round(v))  # 0 at dot centre, <= 0.707
        ink = 1.0 - img[..., ch].astype(np.float32) / 255.0
        r = np.sqrt(ink) * 0.6
        out[..., ch] = np.where(d < r, 30, 250)
    return out


def gradient_field(rng, h, w, lo, hi):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    t = (xx * math.cos(a) + yy * math.sin(a))
    t = (t - t.min()) / max(1e-6, t.max() - t.min())
    return lo + (hi - lo) * t


# --------------------------------------------------------------------------- item faces
def face_playing(rng, A, long_px):
    img = A.deck[int(rng.integers(0, len(A.deck)))]
    h = long_px
    w = int(round(h * PLAYING[0] / PLAYING[1]))
    face = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    bgr = face[..., :3].astype(np.float32)
    a = face[..., 3:4].astype(np.float32) / 255.0 if face.shape[2] == 4 else np.ones_like(bgr[..., :1])
    # the SVG's card is white with rounded corners; its alpha is the card's shape
    paper = np.full_like(bgr, 252)
    bgr = bgr * a + paper * (1 - a)
    alpha = rounded_mask(w, h, 0.05 * w)
    return bgr.astype(np.uint8), alpha, "playing_card"


def face_back(rng, A, long_px):
    h = long_px
    w = int(round(h * PLAYING[0] / PLAYING[1]))
    col = rand_color(rng, 20, 200)
    img = np.full((h, w, 3), 250, np.uint8)
    m = int(w * rng.uniform(0.04, 0.09))
    inner = np.full((h - 2 * m, w - 2 * m, 3), col, np.uint8)
    step = max(4, int(w * rng.uniform(0.04, 0.1)))
    c2 = tuple(min(255, v + 60) for v in col)
    for k in range(-h, w + h, step):
        cv2.line(inner, (k, 0), (k + h, h), c2, max(1, step // 4), cv2.LINE_AA)
        cv2.line(inner, (k, 0), (k - h, h), c2, max(1, step // 4), cv2.LINE_AA)
    img[m:h - m, m:w - m] = inner
    if rng.random() < 0.5:
        img = 255 - img if rng.random() < 0.2 else img
    return img, rounded_mask(w, h, 0.05 * w), "card_back"


def face_trading(rng, A, long_px, white=False):
    h = long_px
    w = int(round(h * TRADING[0] / TRADING[1]))
    style = rng.choice(["white", "black", "colour", "grey", "gold", "fullart"],
                       p=[0.35, 0.15, 0.2, 0.1, 0.08, 0.12])
    if white:
        style = "white"
    border = {"white": (245, 245, 243), "black": (18, 18, 20), "grey": (128, 128, 125),
              "gold": (60, 160, 200)}.get(style, rand_color(rng, 0, 255))
    img = np.empty((h, w, 3), np.uint8)
    img[:] = border
    photo = A.photos[int(rng.integers(0, len(A.photos)))]
    if style == "fullart":
        img[:] = crop_resize(rng, photo, w, h)
    else:
        m = int(w * rng.uniform(0.04, 0.09))
        top = int(h * rng.uniform(0.04, 0.09))
        bottom_bar = int(h * rng.uniform(0.0, 0.2))
        ah = h - top - m - bottom_bar
        img[top:top + ah, m:w - m] = crop_resize(rng, photo, w - 2 * m, ah)
        if rng.random() < 0.6:
            cv2.rectangle(img, (m, top), (w - m - 1, top + ah - 1), rand_color(rng), max(1, w // 120))
        if bottom_bar > 0:
            y0 = top + ah + max(1, m // 3)
            bar = rand_color(rng) if rng.random() < 0.5 else border
            cv2.rectangle(img, (m, y0), (w - m - 1, h - m - 1), bar, -1)
            lum = sum(bar) / 3
            text_line(img, rng, m + 3, y0 + int(bottom_bar * 0.55), bottom_bar * 0.35,
                      (20, 20, 20) if lum > 120 else (235, 235, 235))
    if rng.random() < 0.5:  # logo / name plate over the art
        x, y = int(w * rng.uniform(0.05, 0.5)), int(h * rng.uniform(0.05, 0.85))
        cv2.ellipse(img, (x, y), (int(w * 0.12), int(h * 0.04)), 0, 0, 360, rand_color(rng), -1, cv2.LINE_AA)
    return img, rounded_mask(w, h, 0.035 * w), "trading_card"


def face_comic(rng, A, long_px, white=False):
    h = long_px
    w = int(round(h * COMIC[0] / COMIC[1]))
    img = np.full((h, w, 3), 248 if white else int(rng.integers(200, 250)), np.uint8)
    photo = A.photos[int(rng.integers(0, len(A.photos)))]
    cell = max(2.0, w / rng.uniform(60, 140))
    if rng.random() < 0.55:  # cover: title band + one big halftoned picture
        band = int(h * rng.uniform(0.12, 0.22))
        col = rand_color(rng)
        img[:band] = col
        text_line(img, rng, w * 0.05, band * 0.75, band * 0.55, tuple(255 - c for c in col),
                  n=int(rng.integers(4, 9)), thick=max(2, band // 12))
        art = crop_resize(rng, photo, w, h - band)
        img[band:] = halftone(art, rng, cell) if rng.random() < 0.7 else art
        if rng.random() < 0.7:  # price box / logo
            s = int(w * 0.14)
            cv2.rectangle(img, (int(w * 0.04), band + int(w * 0.04)), (int(w * 0.04) + s, band + int(w * 0.04) + s),
                          (250, 250, 250), -1)
    else:  # interior page: panel grid with black gutters
        m = int(w * rng.uniform(0.04, 0.08))
        rows = int(rng.integers(2, 5))
        y = m
        ys = np.sort(rng.uniform(0, 1, rows - 1))
        cuts = [m] + [int(m + (h - 2 * m) * v) for v in ys] + [h - m]
        g = max(2, int(w * 0.015))
        for r in range(rows):
            cols = int(rng.integers(1, 4))
            xs = [m] + sorted(int(m + (w - 2 * m) * v) for v in rng.uniform(0.2, 0.8, cols - 1)) + [w - m]
            for c in range(cols):
                x0, x1 = xs[c] + g, xs[c + 1] - g
                y0, y1 = cuts[r] + g, cuts[r + 1] - g
                if x1 - x0 < 4 or y1 - y0 < 4:
                    continue
                art = crop_resize(rng, A.photos[int(rng.integers(0, len(A.photos)))], x1 - x0, y1 - y0)
                img[y0:y1, x0:x1] = halftone(art, rng, cell) if rng.random() < 0.6 else art
                cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (10, 10, 10), max(1, g // 2))
                if rng.random() < 0.4:  # speech balloon
                    cx, cy = int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1))
                    ax = max(3, int((x1 - x0) * 0.25))
                    cv2.ellipse(img, (cx, cy), (ax, max(2, ax // 2)), 0, 0, 360, (250, 250, 250), -1, cv2.LINE_AA)
                    cv2.ellipse(img, (cx, cy), (ax, max(2, ax // 2)), 0, 0, 360, (0, 0, 0), 1, cv2.LINE_AA)
    return img, np.ones((h, w), np.float32), "comic"


def rounded_mask(w, h, r):
    m = np.zeros((h * 4, w * 4), np.uint8)
    r4 = max(1, int(r * 4))
    cv2.rectangle(m, (r4, 0), (w * 4 - 1 - r4, h * 4 - 1), 255, -1)
    cv2.rectangle(m, (0, r4), (w * 4 - 1, h * 4 - 1 - r4), 255, -1)
    for cx, cy in ((r4, r4), (w * 4 - 1 - r4, r4), (r4, h * 4 - 1 - r4), (w * 4 - 1 - r4, h * 4 - 1 - r4)):
        cv2.circle(m, (cx, cy), r4, 255, -1)
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


# --------------------------------------------------------------------------- backgrounds
def background(rng, A, h, w, white):
    kind = "white" if white else rng.choice(
        ["texture", "photo", "wood", "fabric", "paper", "plain", "gradient"],
        p=[0.22, 0.14, 0.16, 0.12, 0.12, 0.12, 0.12])
    if kind == "white":
        bg = np.full((h, w, 3), rng.uniform(228, 252), np.float32)
        bg += rng.normal(0, 1.5, (h, w, 1)).astype(np.float32)
    elif kind == "texture":
        t = A.textures[int(rng.integers(0, len(A.textures)))]
        s = rng.uniform(0.5, 3.0) * max(h, w) / 1500
        t = cv2.resize(t, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
        reps = (h // t.shape[0] + 2, w // t.shape[1] + 2, 1)
        tiled = np.tile(t, reps)
        oy, ox = int(rng.integers(0, t.shape[0])), int(rng.integers(0, t.shape[1]))
        bg = tiled[oy:oy + h, ox:ox + w].astype(np.float32)
        tint = np.array(rand_color(rng, 120, 255), np.float32) / 255
        bg = bg * (0.5 + 0.5 * tint)
    elif kind == "photo":
        p = A.photos[int(rng.integers(0, len(A.photos)))]
        bg = crop_resize(rng, p, w, h, min_frac=0.2).astype(np.float32)
        bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(0.5, 4))
    elif kind == "wood":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(-0.3, 0.3) + (math.pi / 2 if rng.random() < 0.5 else 0)
        u = xx * math.cos(a) + yy * math.sin(a)
        v = -xx * math.sin(a) + yy * math.cos(a)
        sc = max(h, w) / rng.uniform(20, 60)
        noise = cv2.resize(rng.normal(0, 1, (8, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        rings = np.sin((v / sc + 2.5 * noise) * math.pi) * 0.5 + 0.5
        fine = cv2.resize(rng.normal(0, 1, (max(2, h // 40), 8)).astype(np.float32), (w, h))
        base = np.array(rand_color(rng, 40, 200), np.float32)
        base = np.array([base[0] * 0.35, base[1] * 0.6, base[2]], np.float32)  # brownish (BGR)
        t = (0.75 + 0.2 * rings + 0.05 * fine)[..., None]
        bg = base * t
        # planks
        pw = max(h, w) / rng.uniform(3, 8)
        seams = (np.abs(((u / pw) % 1.0) - 0.5) > 0.495)
        bg[seams] *= 0.55
    elif kind == "fabric":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        p = rng.uniform(3, 9) * max(1.0, max(h, w) / 1500)
        weave = (np.sin(xx / p * math.pi) * np.sin(yy / p * math.pi)) * 0.5 + 0.5
        col = np.array(rand_color(rng, 20, 230), np.float32)
        bg = col * (0.8 + 0.2 * weave[..., None])
        bg += rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    elif kind == "paper":
        col = np.array(rand_color(rng, 200, 250), np.float32)
        bg = np.broadcast_to(col, (h, w, 3)).copy()
        n = cv2.GaussianBlur(rng.normal(0, 8, (h, w)).astype(np.float32), (0, 0), 1.5)
        bg += n[..., None]
        for _ in range(int(rng.integers(0, 20))):  # printed lines / ruling
            y = int(rng.integers(0, h))
            cv2.line(bg, (0, y), (w, y), (200, 170, 150), 1)
    elif kind == "plain":
        bg = np.broadcast_to(np.array(rand_color(rng), np.float32), (h, w, 3)).copy()
    else:
        c1 = np.array(rand_color(rng), np.float32)
        c2 = np.array(rand_color(rng), np.float32)
        t = gradient_field(rng, h, w, 0, 1)[..., None]
        bg = c1 * (1 - t) + c2 * t
    return np.clip(bg, 0, 255).astype(np.float32), str(kind)


def clutter(rng, img, n):
    h, w = img.shape[:2]
    s = min(h, w)
    for _ in range(n):
        k = rng.choice(["stick", "coin", "blob", "note", "cable"])
        col = rand_color(rng)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if k == "stick":  # pen / pencil
            a = rng.uniform(0, math.pi)
            L = s * rng.uniform(0.15, 0.5)
            cv2.line(img, (x, y), (int(x + L * math.cos(a)), int(y + L * math.sin(a))), col,
                     max(2, int(s * rng.uniform(0.006, 0.02))), cv2.LINE_AA)
        elif k == "coin":
            cv2.circle(img, (x, y), max(3, int(s * rng.uniform(0.02, 0.06))), col, -1, cv2.LINE_AA)
        elif k == "blob":
            pts = np.array([(x + s * 0.08 * rng.normal(), y + s * 0.08 * rng.normal()) for _ in range(7)], np.float32)
            hull = cv2.convexHull(pts).astype(np.int32)
            cv2.fillPoly(img, [hull], col, cv2.LINE_AA)
        elif k == "note":  # square sticky note: a rectangle that is not an item
            r = s * rng.uniform(0.06, 0.12)
            a = rng.uniform(0, 90)
            box = cv2.boxPoints(((x, y), (r, r), a)).astype(np.int32)
            cv2.fillPoly(img, [box], (120, 240, 250) if rng.random() < 0.6 else col, cv2.LINE_AA)
        else:  # cable: a curve
            pts = np.cumsum(rng.normal(0, s * 0.03, (12, 2)), 0) + (x, y)
            cv2.polylines(img, [pts.astype(np.int32)], False, col, max(2, int(s * 0.008)), cv2.LINE_AA)


# --------------------------------------------------------------------------- geometry
def projected_quad(rng, cx, cy, w, h, rot_deg, tilt_deg, f):
    """Corners of a w x h rectangle rotated in plane, tilted by tilt_deg about a
    random in-plane axis, projected by a pinhole of focal f, centred on cx, cy."""
    pts = np.array([[-w / 2, -h / 2, 0], [w / 2, -h / 2, 0], [w / 2, h / 2, 0], [-w / 2, h / 2, 0]], np.float64)
    r = math.radians(rot_deg)
    Rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    ax = rng.uniform(0, math.pi)
    axis = np.array([math.cos(ax), math.sin(ax), 0.0])
    t = math.radians(tilt_deg)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    Rt = np.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * K @ K
    P = (Rt @ Rz @ pts.T).T
    Z = f + P[:, 2]
    q = np.stack([f * P[:, 0] / Z + cx, f * P[:, 1] / Z + cy], 1)
    return q


def order_cw(q):
    q = np.asarray(q, np.float64)
    c = q.mean(0)
    ang = np.arctan2(q[:, 1] - c[1], q[:, 0] - c[0])  # y down: increasing angle = clockwise on screen
    q = q[np.argsort(ang)]
    k = int(np.argmin(q[:, 0] + q[:, 1]))
    return np.roll(q, -k, 0)


def poly_area(q):
    x, y = q[:, 0], q[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def quad_mask(q, h, w, scale=1.0):
    m = np.zeros((int(h * scale), int(w * scale)), np.uint8)
    cv2.fillPoly(m, [np.round(q * scale * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return m


# --------------------------------------------------------------------------- one photo
def render(seed, A):
    rng = np.random.default_rng(seed)
    long_side = int(round(math.exp(rng.uniform(math.log(640), math.log(4000)))))
    aspect = rng.choice([4 / 3, 3 / 2, 16 / 9, 1.0])
    if rng.random() < 0.5:
        W, H = long_side, int(round(long_side / aspect))
    else:
        H, W = long_side, int(round(long_side / aspect))
    n = int(rng.choice([0, 1, int(rng.integers(2, 5)), int(rng.integers(5, 10)), int(rng.integers(10, 21))],
                       p=[0.1, 0.3, 0.3, 0.2, 0.1]))
    white = rng.random() < 0.12
    bg, bg_kind = background(rng, A, H, W, white)
    if not white and rng.random() < 0.35:
        clutter(rng, bg, int(rng.integers(1, 10)))
    img = bg
    S = min(H, W)
    f = max(H, W) * rng.uniform(0.8, 1.6)           # camera focal length, px
    cam_tilt = rng.uniform(0, 25)                     # whole-scene tilt, per-item jitter below
    upright = rng.random() < 0.5                      # photo of items laid out squarely vs scattered
    # item size so n items fit: long side in px
    fill = rng.uniform(0.25, 0.7)
    base_long = S * min(0.9, math.sqrt(fill * (H * W) / (S * S) / max(1, n)) * 1.2)
    base_long = max(base_long, 70.0)
    items, masks = [], []
    tries = 0
    while len(items) < n and tries < n * 60:
        tries += 1
        kind = rng.choice(["playing", "trading", "comic", "back"], p=[0.3, 0.38, 0.22, 0.1])
        item_white = white and rng.random() < 0.8
        long_px = base_long * rng.uniform(0.8, 1.15) * (1.3 if kind == "comic" else 1.0)
        if kind == "comic":
            w_, h_ = long_px * COMIC[0] / COMIC[1], long_px
        elif kind == "trading":
            w_, h_ = long_px * TRADING[0] / TRADING[1], long_px
        else:
            w_, h_ = long_px * PLAYING[0] / PLAYING[1], long_px
        landscape = rng.random() < 0.15
        rot = (rng.normal(0, 4) if upright else rng.uniform(-180, 180)) + (90 if landscape else 0)
        tilt = min(25.0, max(0.0, cam_tilt + rng.normal(0, 2)))
        cut = rng.random() < 0.12
        if cut:  # centre near an edge so that 55-90 % stays inside
            side = int(rng.integers(0, 4))
            d = rng.uniform(0.05, 0.45) * min(w_, h_)
            cx = [d, W - d, rng.uniform(0, W), rng.uniform(0, W)][side]
            cy = [rng.uniform(0, H), rng.uniform(0, H), d, H - d][side]
        else:
            cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        q = projected_quad(rng, cx, cy, w_, h_, rot, tilt, f)
        full_area = poly_area(q)
        mfull = quad_mask(q, H, W, 0.25)
        inside = mfull.sum() / max(1.0, full_area / 16)
        if cut and not (0.55 <= inside <= 0.97):
            continue
        if not cut:
            m = 0.01 * S
            if q[:, 0].min() < m or q[:, 1].min() < m or q[:, 0].max() > W - m or q[:, 1].max() > H - m:
                continue
        # overlaps: no item may end up covered for more than 40 % of its area
        if any(((it["_cov"] | mfull) & mk).sum() > 0.40 * mk.sum() for it, mk in zip(items, masks)):
            continue
        items.append({"quad_raw": q, "kind_req": kind, "white": item_white, "w": w_, "h": h_,
                      "cut_off": bool(inside < 0.999), "inside_fraction": float(min(1.0, inside)),
                      "_cov": np.zeros_like(mfull)})
        for it, mk in zip(items[:-1], masks):
            it["_cov"] |= (mfull & mk)
        masks.append(mfull)
    # draw items in order (later = on top)
    for it in items:
        q = it["quad_raw"]
        px = int(min(1400, max(120, max(it["w"], it["h"]) * 1.1)))
        if it["kind_req"] == "playing":
            face, alpha, kind = face_playing(rng, A, px)
        elif it["kind_req"] == "trading":
            face, alpha, kind = face_trading(rng, A, px, white=it["white"])
        elif it["kind_req"] == "comic":
            face, alpha, kind = face_comic(rng, A, px, white=it["white"])
        else:
            face, alpha, kind = face_back(rng, A, px)
        it["kind"] = kind
        fh, fw = face.shape[:2]
        face = face.astype(np.float32)
        # sleeve / toploader: a translucent margin round the item
        sleeve = None
        if rng.random() < 0.2 and kind != "comic" or rng.random() < 0.08:
            sleeve = "toploader" if rng.random() < 0.5 else "sleeve"
            mg = int(fw * (rng.uniform(0.05, 0.1) if sleeve == "toploader" else rng.uniform(0.01, 0.03)))
            big = np.zeros((fh + 2 * mg, fw + 2 * mg, 3), np.float32)
            ba = np.zeros((fh + 2 * mg, fw + 2 * mg), np.float32)
            big[:] = (235, 238, 240)
            ba[:] = rng.uniform(0.12, 0.35)
            big[mg:mg + fh, mg:mg + fw] = face
            ba[mg:mg + fh, mg:mg + fw] = np.maximum(alpha, ba[mg:mg + fh, mg:mg + fw] * (1 - alpha))
            cv2.rectangle(big, (0, 0), (big.shape[1] - 1, big.shape[0] - 1), (250, 250, 250), max(1, mg // 6))
            cv2.rectangle(ba, (0, 0), (ba.shape[1] - 1, ba.shape[0] - 1), 0.6, max(1, mg // 6))
            # the sleeve's outline in the photo: the item's homography applied to the bigger rectangle
            Hm = cv2.getPerspectiveTransform(np.float32([[0, 0], [fw, 0], [fw, fh], [0, fh]]), q.astype(np.float32))
            qs = cv2.perspectiveTransform(np.float32([[[-mg, -mg], [fw + mg, -mg], [fw + mg, fh + mg], [-mg, fh + mg]]]), Hm)[0]
            face, alpha, fh, fw, qd = big, ba, big.shape[0], big.shape[1], qs.astype(np.float64)
            it["sleeve_quad"] = qs
        else:
            qd = q
        it["sleeve"] = sleeve
        # lighting on the item: glare spot
        if rng.random() < 0.25:
            gy, gx = np.mgrid[0:fh, 0:fw].astype(np.float32)
            cx, cy = rng.uniform(0, fw), rng.uniform(0, fh)
            r = rng.uniform(0.15, 0.5) * fw
            g = np.exp(-((gx - cx) ** 2 + ((gy - cy) * rng.uniform(0.5, 2)) ** 2) / (2 * r * r))
            face = face + g[..., None] * rng.uniform(60, 200)
        # shadow
        x0, y0 = np.floor(qd.min(0)).astype(int) - 2
        x1, y1 = np.ceil(qd.max(0)).astype(int) + 2
        if rng.random() < 0.6:
            off = np.array([rng.normal(0.01, 0.01), rng.normal(0.015, 0.01)]) * max(it["w"], it["h"])
            sig = max(1.0, 0.02 * max(it["w"], it["h"]) * rng.uniform(0.3, 1.5))
            pad = int(4 * sig) + int(abs(off).max()) + 2
            sx0, sy0 = max(0, x0 - pad), max(0, y0 - pad)
            sx1, sy1 = min(W, x1 + pad), min(H, y1 + pad)
            if sx1 > sx0 and sy1 > sy0:
                sm = np.zeros((sy1 - sy0, sx1 - sx0), np.float32)
                cv2.fillPoly(sm, [np.round((qd + off - [sx0, sy0]) * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
                roi = cv2.GaussianBlur(sm, (0, 0), sig)
                img[sy0:sy1, sx0:sx1] *= (1 - rng.uniform(0.2, 0.55) * roi)[..., None]
        # warp into its ROI
        rx0, ry0 = max(0, x0), max(0, y0)
        rx1, ry1 = min(W, x1), min(H, y1)
        if rx1 <= rx0 or ry1 <= ry0:
            continue
        dst = (qd - [rx0, ry0]).astype(np.float32)
        Hm = cv2.getPerspectiveTransform(np.float32([[0, 0], [fw, 0], [fw, fh], [0, fh]]), dst)
        size = (rx1 - rx0, ry1 - ry0)
        wf = cv2.warpPerspective(np.clip(face, 0, 255), Hm, size, flags=cv2.INTER_AREA if fw > size[0] else cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT)
        wa = cv2.warpPerspective(alpha, Hm, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
        img[ry0:ry1, rx0:rx1] = img[ry0:ry1, rx0:rx1] * (1 - wa) + wf * wa
    # global light: uneven illumination + colour cast
    light = gradient_field(rng, H, W, rng.uniform(0.55, 1.0), rng.uniform(0.9, 1.15))
    cast = np.array([rng.uniform(0.85, 1.1), rng.uniform(0.92, 1.05), rng.uniform(0.85, 1.15)], np.float32)
    img = img * light[..., None] * cast
    if rng.random() < 0.15:  # glare across the photo
        gy, gx = np.mgrid[0:H:4, 0:W:4].astype(np.float32)
        cx, cy, r = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(0.1, 0.3) * S
        g = np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * r * r))
        img = img + cv2.resize(g, (W, H))[..., None] * rng.uniform(60, 160)
    # motion blur
    blur = 0.0
    if rng.random() < 0.3:
        L = max(2, int(rng.uniform(0.002, 0.012) * max(H, W)))
        k = np.zeros((L, L), np.float32)
        a = rng.uniform(0, math.pi)
        c = (L - 1) / 2
        cv2.line(k, (int(round(c - c * math.cos(a))), int(round(c - c * math.sin(a)))),
                 (int(round(c + c * math.cos(a))), int(round(c + c * math.sin(a)))), 1.0, 1)
        k /= k.sum()
        img = cv2.filter2D(img, -1, k)
        blur = float(L)
    # lens distortion (radial, k1 < 0 barrel, > 0 pincushion), applied to image and truth
    k1 = float(rng.uniform(-0.12, 0.06)) if rng.random() < 0.5 else 0.0
    if k1 != 0.0:
        img, dist_pt = distort(img, k1)
    else:
        dist_pt = lambda p: p
    noise = rng.uniform(0, 6)
    img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    quality = int(rng.integers(50, 96))
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    # truth
    truth_items = []
    occl = np.zeros_like(quad_mask(np.zeros((4, 2)), H, W, 0.25))
    vis = []
    for it in reversed(items):  # top first
        mk = quad_mask(dist_outline(it["quad_raw"], dist_pt), H, W, 0.25)
        vis.append(float((mk & (1 - occl)).sum()) / max(1.0, poly_area(dist_outline(it["quad_raw"], dist_pt)) / 16))
        occl |= mk
    vis = vis[::-1]
    for it, v in zip(items, vis):
        outline = dist_outline(it["quad_raw"], dist_pt)
        if k1 != 0.0:  # the lens moves items: cut-off as seen in the photo
            inside = quad_mask(outline, H, W, 0.25).sum() / max(1.0, poly_area(outline) / 16)
            it["inside_fraction"] = float(min(1.0, inside))
            it["cut_off"] = bool(inside < 0.999)
        corners = order_cw(dist_pt(it["quad_raw"]))
        bf = [float(outline[:, 0].min()), float(outline[:, 1].min()), float(outline[:, 0].max()), float(outline[:, 1].max())]
        bc = [max(0.0, bf[0]), max(0.0, bf[1]), min(float(W), bf[2]), min(float(H), bf[3])]
        t = {"kind": it["kind"], "quad": np.round(corners, 2).tolist(), "box": [round(x, 2) for x in bc],
             "box_full": [round(x, 2) for x in bf], "cut_off": it["cut_off"],
             "inside_fraction": round(it["inside_fraction"], 3), "visible_fraction": round(min(1.0, v), 3),
             "sleeve": it["sleeve"], "white_on_white": bool(white and it["white"])}
        if "sleeve_quad" in it:
            t["sleeve_quad"] = np.round(order_cw(dist_pt(it["sleeve_quad"].astype(np.float64))), 2).tolist()
        truth_items.append(t)
    meta = {"seed": seed, "width": W, "height": H, "background": bg_kind, "white_on_white": bool(white),
            "n_items": len(truth_items), "jpeg_quality": quality, "motion_blur_px": blur, "lens_k1": round(k1, 4),
            "camera_tilt_deg": round(cam_tilt, 1), "items": truth_items}
    return enc.tobytes(), meta


def dist_outline(q, dist_pt, per_side=24):
    """The projected outline, sampled along its sides, through the lens."""
    pts = []
    for i in range(4):
        a, b = q[i], q[(i + 1) % 4]
        for t in np.linspace(0, 1, per_side, endpoint=False):
            pts.append(a + (b - a) * t)
    return dist_pt(np.array(pts))


def distort(img, k1):
    """Radial distortion r_d = r_u (1 + k1 r_u^2), r normalised by the half
    diagonal, zoomed so that the whole output comes from inside the source (as
    a camera crops a barrel-distorted frame). Returns the distorted image and
    the forward map for points (source -> photo)."""
    H, W = img.shape[:2]
    cx, cy = W / 2, H / 2
    R = math.hypot(cx, cy)
    ru1 = 1.0
    for _ in range(30):
        ru1 = 1.0 / (1 + k1 * ru1 * ru1)
    z = max(1.0, ru1)  # source radius = r_u / z

    def fwd(p):
        p = np.asarray(p, np.float64)
        d = (p - [cx, cy]) / R * z
        r2 = (d ** 2).sum(-1, keepdims=True)
        return d * (1 + k1 * r2) * R + [cx, cy]

    # inverse map for remap: r_u from r_d by fixed-point iteration of r_u = r_d / (1 + k1 r_u^2)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    dx, dy = (xx - cx) / R, (yy - cy) / R
    rd = np.sqrt(dx * dx + dy * dy)
    ru = rd.copy()
    for _ in range(10):
        ru = rd / (1 + k1 * ru * ru)
    s = np.where(rd > 1e-9, ru / np.maximum(rd, 1e-9), 1.0) / z
    mx = (dx * s * R + cx).astype(np.float32)
    my = (dy * s * R + cy).astype(np.float32)
    out = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, fwd


def parse_seeds(s):
    out = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=sorted(PARTS))
    ap.add_argument("--seeds", help="e.g. 0-9,20")
    ap.add_argument("--out", required=True)
    ap.add_argument("--overlay", action="store_true", help="also write <seed>_truth.png with the quads drawn")
    a = ap.parse_args()
    seeds = list(PARTS[a.part]) if a.part else parse_seeds(a.seeds)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    A = Assets()
    photos = []
    t0 = time.time()
    for s in seeds:
        jpg, meta = render(s, A)
        name = f"{s:05d}.jpg"
        (out / name).write_bytes(jpg)
        meta["file"] = name
        photos.append(meta)
        if a.overlay:
            im = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
            for it in meta["items"]:
                q = np.array(it["quad"])
                cv2.polylines(im, [np.round(q).astype(np.int32)], True, (0, 0, 255) if not it["cut_off"] else (255, 0, 255),
                              max(1, im.shape[1] // 500), cv2.LINE_AA)
                cv2.circle(im, tuple(int(v) for v in q[0]), max(3, im.shape[1] // 200), (0, 255, 0), -1)
                b = it["box"]
                cv2.rectangle(im, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (255, 200, 0), 1)
                if "sleeve_quad" in it:
                    cv2.polylines(im, [np.round(np.array(it["sleeve_quad"])).astype(np.int32)], True, (0, 255, 255), 1)
            cv2.imwrite(str(out / f"{s:05d}_truth.png"), im)
    truth = {"renderer": "bench/vision/eval/render_photos.py", "part": a.part, "seeds": [seeds[0], seeds[-1]],
             "photos": photos}
    (out / "truth.json").write_text(json.dumps(truth, indent=0))
    print(f"{len(photos)} photos, {sum(p['n_items'] for p in photos)} items in {time.time() - t0:.1f} s -> {out}")


if __name__ == "__main__":
    main()
