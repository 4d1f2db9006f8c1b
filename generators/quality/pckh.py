"""PCKh as PATN's ``tool/calPCKH_market.py`` counts it, on (N, 18, 2) keypoint arrays of (y, x), -1 = missing.

- head size of an image: from its *target* keypoints of joints 0, 1, 14, 15, 16, 17 (nose, neck, eyes, ears)
  present in both coordinates; with at least two of them, (w, h) = (x max - x min, y max - y min); with fewer,
  the image is left out entirely (neither its joints nor its hits count);
- denominator: every target joint whose y is not -1, in the images kept;
- a hit: predicted and target joint both present (all four coordinates != -1) and
  ``|px - tx| < alpha w`` and ``|py - ty| < alpha h`` (strict; alpha 0.5), so a joint the detector missed counts
  as a miss, and a zero-width head box can never be hit along that axis;
- PCKh = hits / denominator over the whole set (not a mean of per-image ratios).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HEAD_JOINTS = (0, 1, 14, 15, 16, 17)
MISSING = -1
ALPHA = 0.5


@dataclass(frozen=True)
class PCKhResult:
    """hits / joints over the ``images`` that had a head box (of ``total_images``)."""

    hits: int
    joints: int
    images: int
    total_images: int

    @property
    def score(self) -> float:
        return self.hits / self.joints if self.joints else float("nan")


def head_size(target: np.ndarray) -> np.ndarray:
    """(N, 2) head box (w, h) from (N, 18, 2) target (y, x) keypoints; -1 where fewer than 2 head joints."""
    head = np.asarray(target)[:, HEAD_JOINTS, :].astype(np.float64)
    present = (head != MISSING).all(axis=2)  # (N, 6)
    enough = present.sum(axis=1) >= 2
    out = -np.ones((head.shape[0], 2))
    span = lambda v: np.where(present, v, -np.inf).max(axis=1) - np.where(present, v, np.inf).min(axis=1)
    w, h = span(head[..., 1]), span(head[..., 0])
    out[enough, 0], out[enough, 1] = w[enough], h[enough]
    return out


def pckh(predicted, target, alpha: float = ALPHA) -> PCKhResult:
    """PCKh of predicted vs target (N, 18, 2) (y, x) keypoints (module docstring)."""
    pred = np.asarray(predicted, dtype=np.float64)
    tgt = np.asarray(target, dtype=np.float64)
    if pred.shape != tgt.shape or pred.ndim != 3 or pred.shape[2] != 2:
        raise ValueError(f"need two (N, 18, 2) keypoint arrays, got {pred.shape} and {tgt.shape}")
    box = head_size(tgt)
    kept = (box != MISSING).all(axis=1)
    both = (pred != MISSING).all(axis=2) & (tgt != MISSING).all(axis=2)
    dy = np.abs(pred[..., 0] - tgt[..., 0])
    dx = np.abs(pred[..., 1] - tgt[..., 1])
    hit = both & (dx < box[:, None, 0] * alpha) & (dy < box[:, None, 1] * alpha)
    valid = tgt[..., 0] != MISSING  # the official count looks at y only
    return PCKhResult(
        hits=int(hit[kept].sum()), joints=int(valid[kept].sum()), images=int(kept.sum()), total_images=len(tgt)
    )
