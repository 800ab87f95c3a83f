#!/usr/bin/env python3
"""The textbook OpenCV contour recipe for "find the cards in a photo", as a
reference point for accuracy and speed (issue 28's speed goal is relative to
it). Not tuned on anything: Canny on a blurred, downscaled gray image, closed,
external contours, a 4-corner polygon or else the min-area rectangle,
confidence = contour area / rectangle area.

  opencv_recipe.py PHOTO   -> prints {"items": [{"bbox", "quad", "confidence"}], "total_ms"}
"""
import json
import sys
import time

import cv2
import numpy as np


def detect(path, max_side=1000):
    t0 = time.time()
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    H, W = img.shape[:2]
    s = min(1.0, max_side / max(H, W))
    small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else img
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    gray = cv2.GaussianBlur(gray, (5, 5), 0)
    edges = cv2.Canny(gray, 30, 90)
    edges = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    cnts, _ = cv2.findContours(edges, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    area_min = 0.004 * small.shape[0] * small.shape[1]
    items = []
    for c in cnts:
        a = cv2.contourArea(c)
        if a < area_min:
            continue
        rect = cv2.minAreaRect(c)
        (w, h) = rect[1]
        if w * h <= 0:
            continue
        approx = cv2.approxPolyDP(c, 0.02 * cv2.arcLength(c, True), True)
        quad = approx.reshape(-1, 2).astype(np.float64) if len(approx) == 4 else cv2.boxPoints(rect)
        quad = (np.asarray(quad, np.float64) + 0.5) / s - 0.5
        conf = float(min(1.0, a / (w * h)))
        items.append({"bbox": [float(quad[:, 0].min()), float(quad[:, 1].min()), float(quad[:, 0].max()), float(quad[:, 1].max())],
                      "quad": quad.tolist(), "confidence": conf})
    return {"items": items, "total_ms": (time.time() - t0) * 1000}


if __name__ == "__main__":
    print(json.dumps(detect(sys.argv[1])))
