"""Image resampling conventions of the reference metric code, as separable matrices on the device.

The metrics' numbers depend on how each reference resized its inputs, so each convention is written
out here rather than approximated by whatever ``F.interpolate`` does:

- ``tf1-bilinear`` — TensorFlow 1.x ``resize_bilinear(align_corners=False)``, the resize inside the 2015
  Inception graph that the TF-era IS/FID code fed raw images to (and that torch-fidelity re-implements):
  source coordinate ``dst * in/out`` (no half-pixel shift, computed in float32), taps ``floor`` and
  ``min(floor + 1, in - 1)``.
- ``torch-bilinear`` — ``F.interpolate(mode="bilinear", align_corners=False)`` as pytorch-fid (and GFLA's copy
  of it) resizes: half-pixel centres, edge taps clamped. Not a matrix: torch's own kernel is called.
- ``skimage-cubic`` / ``skimage-linear`` — ``skimage.transform.resize(order=3 / 1)`` of scikit-image 0.14.2,
  the version PATN's evaluation environment pins: half-pixel centres, Catmull-Rom cubic convolution
  (Keys, a = -0.5) or bilinear taps, ``mode="constant"`` so taps outside the image read 0, then the output
  clipped to the input's [min, max] (:func:`skimage014_resize`). Newer scikit-image resamples with
  B-splines and mirrored borders instead; the 0.14 kernels still run in ``skimage.transform.warp``,
  which the tests compare against.

A separable resize is ``out = A_h @ x @ A_w^T`` with ``A`` of shape (out, in) built once per size pair
(float64 weights, cached) and applied to a (N, C, H, W) batch in the batch's dtype on its device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F


def _tf1_bilinear(n_in: int, n_out: int) -> np.ndarray:
    scale = np.float32(n_in / n_out)  # torch-fidelity (and TF1) multiply in float32
    src = np.arange(n_out, dtype=np.float32) * scale
    lo = src.astype(np.int64)  # src >= 0: truncation is floor
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo.astype(np.float32)).astype(np.float64)
    out = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(out, (rows, lo), 1.0 - frac)
    np.add.at(out, (rows, hi), frac)
    return out


def _half_pixel(n_in: int, n_out: int) -> np.ndarray:
    """Source coordinate of each output pixel centre: (i + 0.5) * in/out - 0.5."""
    return (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5


def _scatter_taps(n_in: int, taps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(out, in) matrix from per-output tap indices and weights; taps outside [0, in) read the constant 0."""
    n_out = taps.shape[0]
    out = np.zeros((n_out, n_in))
    inside = (taps >= 0) & (taps < n_in)
    rows = np.broadcast_to(np.arange(n_out)[:, None], taps.shape)
    np.add.at(out, (rows[inside], taps[inside]), weights[inside])
    return out


def _skimage_linear(n_in: int, n_out: int) -> np.ndarray:
    r = _half_pixel(n_in, n_out)
    lo = np.floor(r)
    frac = r - lo
    taps = np.stack([lo, np.ceil(r)], axis=1).astype(np.int64)  # skimage reads floor and ceil
    weights = np.stack([1.0 - frac, frac], axis=1)
    return _scatter_taps(n_in, taps, weights)


def _skimage_cubic(n_in: int, n_out: int) -> np.ndarray:
    r = _half_pixel(n_in, n_out)
    r0 = np.floor(r)
    x = r - r0
    # skimage's cubic_interpolation (Catmull-Rom) written as weights of f[-1], f[0], f[1], f[2]
    weights = np.stack(
        [
            0.5 * (-x + 2 * x**2 - x**3),
            1.0 + 0.5 * (-5 * x**2 + 3 * x**3),
            0.5 * (x + 4 * x**2 - 3 * x**3),
            0.5 * (-(x**2) + x**3),
        ],
        axis=1,
    )
    taps = r0.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :]
    return _scatter_taps(n_in, taps, weights)


MATRICES: dict[str, Callable[[int, int], np.ndarray]] = {
    "tf1-bilinear": _tf1_bilinear,
    "skimage-linear": _skimage_linear,
    "skimage-cubic": _skimage_cubic,
}


@lru_cache(maxsize=256)
def resize_matrix(kind: str, n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64 weights of one axis under convention ``kind`` (a key of :data:`MATRICES`)."""
    if kind not in MATRICES:
        raise ValueError(f"unknown resize convention {kind!r}; one of {', '.join(MATRICES)}")
    matrix = MATRICES[kind](n_in, n_out)
    matrix.setflags(write=False)
    return matrix


def separable(x: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
    """``rows @ x @ cols^T`` over the last two axes of (..., H, W) -> (..., H', W'), in x's dtype/device."""
    mh = torch.tensor(rows, dtype=x.dtype, device=x.device)
    mw = torch.tensor(cols, dtype=x.dtype, device=x.device)
    return torch.matmul(torch.matmul(mh, x), mw.transpose(0, 1))


def resize(x: torch.Tensor, size: tuple[int, int], kind: str) -> torch.Tensor:
    """(N, C, H, W) float -> (N, C, size[0], size[1]) under convention ``kind`` (no clipping)."""
    h, w = x.shape[-2:]
    if kind == "torch-bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return separable(x, resize_matrix(kind, h, size[0]), resize_matrix(kind, w, size[1]))


def skimage014_resize(x: torch.Tensor, size: tuple[int, int], order: int, cval: float = 0.0) -> torch.Tensor:
    """``skimage.transform.resize(img, size, order, preserve_range=True)`` of scikit-image 0.14.2 on a
    (N, C, H, W) float batch (C is the image's channel axis; each sample is one image).

    order 1 (bilinear) or 3 (Catmull-Rom), mode "constant" with ``cval``, then 0.14's clip: every value
    clipped to the sample's [min, max] over all its channels, except that when ``cval`` lies outside that
    range the outputs exactly equal to ``cval`` are kept."""
    kind = {1: "skimage-linear", 3: "skimage-cubic"}.get(order)
    if kind is None:
        raise ValueError(f"order must be 1 or 3, got {order}")
    if cval != 0.0:
        raise ValueError("only cval 0 (skimage's default) is implemented")
    out = resize(x, size, kind)
    flat_in = x.flatten(1)
    lo = flat_in.amin(dim=1).view(-1, 1, 1, 1)
    hi = flat_in.amax(dim=1).view(-1, 1, 1, 1)
    keep = ((lo > cval) | (hi < cval)) & (out == cval)
    return torch.where(keep, out, torch.maximum(torch.minimum(out, hi), lo))


def scaled_size(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(np.array(shape) * scale).astype(np.int32)`` as PATN's keypoint script sizes each scale (floor)."""
    return tuple(int(math.floor(s * scale)) for s in shape)  # type: ignore[return-value]
