"""Drawing primitives: anti-aliased, sub-pixel filled shapes on uint8 RGB images.

Coordinates are float pixels (x right, y down); OpenCV draws them in fixed point, scaled by 2**SHIFT.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

Colour = tuple[float, float, float]  # RGB, 0..255

SHIFT = 4
_SCALE = 1 << SHIFT
_SEMI = np.linspace(-math.pi / 2, math.pi / 2, 6)
_SEMI_COS, _SEMI_SIN = np.cos(_SEMI)[:, None], np.sin(_SEMI)[:, None]


def _fixed(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts) * _SCALE).astype(np.int32)


def fill_poly(img: np.ndarray, pts: np.ndarray, colour) -> None:
    """Fill the polygon ``pts`` (N, 2) float pixels on ``img`` in place."""
    cv2.fillPoly(img, [_fixed(pts).reshape(-1, 2)], colour, cv2.LINE_AA, SHIFT)


def capsule(p0: np.ndarray, p1: np.ndarray, r0: float, r1: float) -> np.ndarray:
    """(12, 2) outline of a tapered capsule from p0 (radius r0) to p1 (radius r1), pixels."""
    d = p1 - p0
    length = math.hypot(d[0], d[1])
    u = d / length if length > 1e-6 else np.array([0.0, 1.0])
    n = np.array([-u[1], u[0]])
    ring = _SEMI_COS * u + _SEMI_SIN * n  # from -n through u to +n
    return np.concatenate([p1 + r1 * ring, p0 - r0 * ring])


def fill_ellipse(img: np.ndarray, centre, axes, colour, angle: float = 0.0, start=0, end=360) -> None:
    """Fill an ellipse (or the arc ``start``..``end`` degrees of it); centre and semi-axes in pixels."""
    c = (int(round(centre[0] * _SCALE)), int(round(centre[1] * _SCALE)))
    a = (max(1, int(round(axes[0] * _SCALE))), max(1, int(round(axes[1] * _SCALE))))
    cv2.ellipse(img, c, a, angle, start, end, colour, -1, cv2.LINE_AA, SHIFT)


def paint_clipped(img: np.ndarray, clip: np.ndarray, painter: Callable[[np.ndarray, np.ndarray], None]) -> None:
    """Run ``painter(layer, offset)`` on a copy of the clip polygon's box and blend it in inside the polygon."""
    h, w = img.shape[:2]
    x0, y0 = np.floor(clip.min(0)).astype(int) - 1
    x1, y1 = np.ceil(clip.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    roi = img[y0:y1, x0:x1]
    layer = roi.copy()
    offset = np.array([x0, y0], dtype=float)
    painter(layer, offset)
    mask = np.zeros(roi.shape[:2], np.uint8)
    fill_poly(mask, clip - offset, 255)
    a = mask[..., None].astype(np.float32) * (1.0 / 255.0)
    roi[:] = (layer * a + roi * (1.0 - a) + 0.5).astype(np.uint8)


def shade(colour: Colour, k: float) -> Colour:
    """``colour`` scaled by ``k`` (darker below 1, lighter above), each channel capped at 255."""
    return tuple(min(255.0, c * k) for c in colour)
