"""The official file path between a generator and its metrics: uint8 conversions, result strips, file names.

The reference scripts never score tensors. Each repository's test code converts the network output to uint8
its own way and writes files that the metric script reads back:

- PATN / Deformable GAN (``util.tensor2im``): ``((x + 1) / 2.0 * 255.0).astype(np.uint8)``, truncation; the source
  and target images go through the loader's [-1, 1] normalisation and back the same way (a float32 rounding can
  lose one grey level); each pair is saved as one 5-panel strip (source | source pose | target | target pose |
  generated) with PIL's JPEG defaults (quality 75, 4:2:0 chroma), ``<from>___<to>_vis.jpg``, and
  ``getMetrics_market.py`` cuts the panels back out of the decoded strip; for PCKh, ``crop_market.py`` crops the
  generated panel with PIL and saves it again under the strip's name, so a JPEG strip's panel is coded twice;
- PG2 (``trainer.test``): ``clip((x + 1) * 127.5, 0, 255).astype(np.uint8)`` for the output, the loader's
  ``(x - 127.5) / 127.5 * 127.5 + 127.5`` float32 round trip truncated for the source and target, each saved as
  its own PNG (lossless);
- GFLA (``util.tensor2im``, no clipping: its tanh output stays in range): the PATN conversion, saved as PNG,
  scored against the dataset's own target images.

File names (:data:`NAMINGS`): ``strip`` = ``<from>___<to>_vis.png|jpg``, the official 5-panel strips (PATN,
Deformable GAN, and this project's ``--save-images``); ``pair`` = ``<from>___<to>.png|jpg``, one generated image
per pair, as later repositories release their results. ``<from>`` and ``<to>`` are the dataset's image names,
with or without their ``.jpg``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from generators.samples import render_skeleton

OFFICIAL_JPEG_QUALITY = 75  # PIL's default, what the official Image.save used
STRIP_PANELS = 5  # source | source pose | target | target pose | generated
PANEL = {"source": 0, "source_pose": 1, "target": 2, "target_pose": 3, "generated": 4}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


# ---------------------------------------------------------------------------------------------
# uint8 conversions


def official_tensor2im(images: torch.Tensor) -> torch.Tensor:
    """Official util.tensor2im on a batch: (N,3,H,W) float in [-1,1] -> uint8 (N,H,W,3), computing
    ((x + 1) / 2.0 * 255.0) in float32 and TRUNCATING to uint8 (numpy astype)."""
    x = images.detach().float().permute(0, 2, 3, 1)
    return ((x + 1) / 2.0 * 255.0).clamp_(0, 255).to(torch.uint8)


def official_loader_roundtrip(images_u8: torch.Tensor) -> torch.Tensor:
    """A dataset image as the official test strip shows it: ToTensor (x / 255), Normalize(0.5, 0.5),
    then tensor2im. uint8 (N,H,W,3) -> uint8 (N,H,W,3) (a float32 rounding can lose one grey level)."""
    x = images_u8.permute(0, 3, 1, 2).float().div(255)
    return official_tensor2im((x - 0.5) / 0.5)


def pg2_denorm(images: torch.Tensor) -> torch.Tensor:
    """PG2's ``denorm_img`` then ``astype(np.uint8)``: clip((x + 1) * 127.5, 0, 255) in float32, truncated.
    (N,3,H,W) float -> uint8 (N,H,W,3)."""
    x = images.detach().float().permute(0, 2, 3, 1)
    return ((x + 1) * 127.5).clamp_(0, 255).to(torch.uint8)


def pg2_loader_roundtrip(images_u8: torch.Tensor) -> torch.Tensor:
    """A dataset image as PG2's test saves it: ``process_image`` ((x - 127.5) / 127.5) and ``unprocess_image``
    (x * 127.5 + 127.5) in float32, truncated. uint8 (N,H,W,3) -> uint8 (N,H,W,3)."""
    x = (images_u8.float() - 127.5) / 127.5
    return (x * 127.5 + 127.5).clamp_(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------
# JPEG as PIL writes and reads it


def jpeg_roundtrip(image: np.ndarray, quality: int = OFFICIAL_JPEG_QUALITY) -> tuple[np.ndarray, bytes]:
    """(H,W,3) uint8 coded as JPEG by PIL (``Image.save``, as the official scripts) and decoded by PIL
    (as ``skimage.io.imread``): (decoded image, JPEG bytes)."""
    from PIL import Image  # pillow comes with matplotlib; only the official path needs it

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return decoded, buf.getvalue()


def jpeg_roundtrip_strip(
    panels: Sequence[np.ndarray], quality: int = OFFICIAL_JPEG_QUALITY
) -> tuple[list[np.ndarray], bytes]:
    """Concatenate (H,W,3) uint8 panels side by side, code as JPEG with PIL (as the official
    Image.save), decode with PIL (as skimage.io.imread) and cut the panels back out.
    Returns the decoded panels and the JPEG bytes."""
    decoded, data = jpeg_roundtrip(np.concatenate(panels, axis=1), quality)
    return cut_strip(decoded, len(panels)), data


def cut_strip(strip: np.ndarray, panels: int = STRIP_PANELS) -> list[np.ndarray]:
    """An (H, panels * W, 3) strip -> its panels, each (H, W, 3), as ``getMetrics_market.py`` cuts them
    (panel width = int(strip width / panels))."""
    w = int(strip.shape[1] / panels)
    if w * panels != strip.shape[1]:
        raise ValueError(f"a strip {strip.shape[1]} pixels wide is not {panels} equal panels")
    return [strip[:, i * w : (i + 1) * w] for i in range(panels)]


def official_strip(
    src: np.ndarray, src_kps: np.ndarray, tgt: np.ndarray, tgt_kps: np.ndarray, gen: np.ndarray
) -> list[np.ndarray]:
    """The five panels of the official test output: source | source pose | target | target pose |
    generated, each (H,W,3) uint8 (the pose panels drawn by generators.samples.render_skeleton)."""
    size = src.shape[:2]
    return [src, render_skeleton(src_kps, size), tgt, render_skeleton(tgt_kps, size), gen]


# ---------------------------------------------------------------------------------------------
# file names


@dataclass(frozen=True)
class Naming:
    """How a results folder names its files: ``pattern`` captures (from, to, extension); ``strip``: whether a
    file is the official 5-panel strip (else the generated image alone)."""

    name: str
    pattern: re.Pattern
    strip: bool
    example: str

    def parse(self, filename: str) -> tuple[str, str] | None:
        m = self.pattern.fullmatch(filename)
        return (m.group(1), m.group(2)) if m else None


NAMINGS: dict[str, Naming] = {
    "strip": Naming(
        "strip", re.compile(r"(.+?)___(.+)_vis\.(png|jpg|jpeg)", re.IGNORECASE), True, "<from>___<to>_vis.png"
    ),
    "pair": Naming("pair", re.compile(r"(.+?)___(.+)\.(png|jpg|jpeg)", re.IGNORECASE), False, "<from>___<to>.png"),
}


def strip_name(src_name: str, tgt_name: str, ext: str = ".png") -> str:
    """The official strip file name of a pair: ``<from>___<to>_vis<ext>``."""
    return f"{src_name}___{tgt_name}_vis{ext}"


def detect_naming(filenames: Sequence[str]) -> str:
    """``strip`` when any image file ends in ``_vis.<ext>``, else ``pair`` (a ``pair`` pattern also matches
    strips, so strips are looked for first)."""
    return "strip" if any(NAMINGS["strip"].parse(f) for f in filenames) else "pair"


def name_key(name: str) -> str:
    """A dataset image name without its image extension, to match ``x.jpg`` with ``x``."""
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name
