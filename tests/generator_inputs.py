"""Small synthetic generator inputs and poses shared by the method, pose and CUDA tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from augment.data import pose as P
from augment.data.keypoints import JOINT_INDEX as J


def random_kps(batch: int, h: int, w: int, seed: int, inset: bool = False, missing: int = 3) -> torch.Tensor:
    """(B, 18, 2) integer (y, x) keypoints uniform over the image (``inset``: at least 1/8 of the size
    from the border), joint ``missing`` set to -1 in every row."""
    g = torch.Generator().manual_seed(seed)
    dy, dx = (h // 8, w // 8) if inset else (0, 0)
    kps = torch.stack(
        [torch.randint(dy, h - dy, (batch, 18), generator=g), torch.randint(dx, w - dx, (batch, 18), generator=g)],
        dim=-1,
    )
    kps[:, missing] = -1
    return kps


def smooth_images(batch: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """(B, 3, h, w) random low-frequency images in (-1, 1): learnable targets, unlike pixel noise."""
    coarse = torch.rand(batch, 3, 4, 2, generator=g) * 1.6 - 0.8
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


def tiny_batch(
    batch: int = 4, h: int = 32, w: int = 16, seed: int = 0, kps: Callable[..., torch.Tensor] = random_kps
) -> dict:
    """A training batch as generators.data collates it: images, keypoints from ``kps``, names."""
    g = torch.Generator().manual_seed(seed)
    return {
        "src_img": smooth_images(batch, h, w, g),
        "tgt_img": smooth_images(batch, h, w, g),
        "src_kps": kps(batch, h, w, seed + 1),
        "tgt_kps": kps(batch, h, w, seed + 2),
        "src_name": [f"s{i}" for i in range(batch)],
        "tgt_name": [f"t{i}" for i in range(batch)],
    }


POSE_H, POSE_W = 128, 64  # the Market crop the poses live in
# A standing person in a 128x64 crop, (y, x).
TEMPLATE = np.array(
    [
        [20, 32],
        [30, 32],
        [30, 22],
        [48, 18],
        [64, 16],
        [30, 42],
        [48, 46],
        [64, 48],
        [66, 26],
        [90, 26],
        [115, 26],
        [66, 38],
        [90, 38],
        [115, 38],
        [17, 35],
        [17, 29],
        [19, 38],
        [19, 26],
    ]
)


def random_poses(n, seed, p_missing=0.15, keep_torso=True):
    """(n,18,2) int poses: jittered template, half of them snapped to a 4-px lattice (so vertical,
    horizontal and coincident limbs occur), a few uniform over the image, some joints missing."""
    rng = np.random.default_rng(seed)
    kps = TEMPLATE + rng.integers(-10, 11, (n, 18, 2))
    snap = rng.random(n) < 0.5
    kps[snap] = (kps[snap] // 4) * 4
    wild = rng.random(n) < 0.2
    kps[wild] = np.stack([rng.integers(0, POSE_H, (wild.sum(), 18)), rng.integers(0, POSE_W, (wild.sum(), 18))], -1)
    kps = np.clip(kps, 0, [POSE_H - 1, POSE_W - 1])
    drop = rng.random((n, 18)) < p_missing
    if keep_torso:
        drop[:, [J[j] for j in P.TORSO_POINTS]] = False
    kps[drop] = -1
    return kps.astype(np.int32)
