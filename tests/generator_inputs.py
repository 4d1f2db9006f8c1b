"""Small synthetic generator inputs shared by the method tests (tests/test_<method>.py)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


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
