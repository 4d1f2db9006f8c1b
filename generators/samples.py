"""Pictures of pose-transfer pairs: COCO-18 skeleton drawings and the training sample grid.

Used by ``generators.train`` (``samples/iter_XXXXXX.png``) and ``generators.evaluate`` (the pose
panels of the official 5-panel strips).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from augment.data.keypoints import JOINTS
from augment.data.pose import CONNECTIONS
from generators.inference import model_to_uint8

_JOINT_COLOURS = np.array(
    [
        cv2.cvtColor(np.uint8([[[int(180 * j / len(JOINTS)), 255, 255]]]), cv2.COLOR_HSV2RGB)[0, 0]
        for j in range(len(JOINTS))
    ],
    dtype=np.uint8,
)


def render_skeleton(kps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(18,2) (y,x) keypoints, -1 missing -> (H,W,3) uint8 RGB drawing on black (COCO-18 connections)."""
    canvas = np.zeros((*size, 3), np.uint8)
    kps = np.asarray(kps)
    present = (kps >= 0).all(-1)
    for a, b in CONNECTIONS:
        if present[a] and present[b]:
            colour = tuple(int(c) for c in _JOINT_COLOURS[b])
            cv2.line(canvas, (int(kps[a, 1]), int(kps[a, 0])), (int(kps[b, 1]), int(kps[b, 0])), colour, 1, cv2.LINE_AA)
    for j in np.flatnonzero(present):
        cv2.circle(canvas, (int(kps[j, 1]), int(kps[j, 0])), 2, tuple(int(c) for c in _JOINT_COLOURS[j]), -1)
    return canvas


def sample_grid(batch: dict, generated: torch.Tensor, gap: int = 2) -> np.ndarray:
    """Rows of source | source pose | target pose | generated | target, as one (R*H, 5*W + gaps, 3) uint8.

    ``batch``: ``src_img`` / ``tgt_img`` (R,3,H,W) in [-1,1], ``src_kps`` / ``tgt_kps`` (R,18,2);
    ``generated``: (R,3,H,W) in [-1,1]."""
    src, tgt, gen = (model_to_uint8(images).cpu().numpy() for images in (batch["src_img"], batch["tgt_img"], generated))
    h, w = src.shape[1:3]
    rows = []
    for i in range(len(src)):
        panels = [
            src[i],
            render_skeleton(batch["src_kps"][i].numpy(), (h, w)),
            render_skeleton(batch["tgt_kps"][i].numpy(), (h, w)),
            gen[i],
            tgt[i],
        ]
        spacer = np.full((h, gap, 3), 255, np.uint8)
        row = [p for panel in panels for p in (panel, spacer)][:-1]
        rows.append(np.concatenate(row, axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)
