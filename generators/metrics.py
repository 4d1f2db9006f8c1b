"""Image-quality metrics of pose transfer, computed as the PATN / Deformable GAN evaluation does.

Official reference: tengteng95/Pose-Transfer ``tool/getMetrics_market.py`` (the Deformable GAN
``test.py`` scores the same way)::

    compare_ssim(reference, generated, gaussian_weights=True, sigma=1.5,
                 use_sample_covariance=False, multichannel=True,
                 data_range=generated.max() - generated.min())

Every function takes uint8 RGB images (H,W,3) or batches (N,H,W,3) as numpy arrays or torch
tensors (any numeric dtype; computed in float64, on the tensor's device for tensors) and returns
one value per image: a numpy float64 array (N,), or a float for a single unbatched image.
Arguments come in the official order of ``ssim_score(generated_images, reference_images)``:
the generated image first. Nothing here imports scikit-image; tests/test_metrics.py checks
agreement with ``skimage.metrics.structural_similarity`` to 1e-6.

SSIM (Wang et al. 2004 with skimage's conventions):
- per channel: weighted means and (population) variances/covariance under an 11x11 Gaussian
  window (sigma 1.5, truncated at 3.5 sigma: radius int(3.5 * 1.5 + 0.5) = 5, the weights of
  scipy.ndimage.gaussian_filter, normalised to sum 1);
- S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2)), C1 = (0.01 R)^2,
  C2 = (0.03 R)^2, R = data_range = max - min of the whole GENERATED image (all channels);
- mean of S after cropping (win_size - 1) // 2 = 5 pixels at every border, then the mean over
  the three channels (equal crop sizes, so the mean of all cropped values).
skimage filters with mode 'reflect'; every output pixel that survives the crop has its whole
11x11 window inside the image, so the border mode never reaches the result, and this code
filters "valid" windows only (no padding at all).
A constant generated image gives R = 0 and C1 = C2 = 0: skimage then yields 0 (up to rounding
noise) when every window of the reference varies, and NaN (0/0) when some window of the reference
is flat; this code returns exactly that 0 or NaN (callers count NaN pairs).

mask-SSIM (official ``create_masked_image``): both images multiplied by the target-pose mask
(``augment.data.pose.pose_mask_eval(target_keypoints)``, uint8 * bool stays uint8), then SSIM with the
data range of the masked generated image.

L1: mean |generated - reference| / 255, in [0,1] image units. The official ``l1_score`` works in
[-1,1] units (2 (x/255 - 0.5)): official L1 = 2 x this value.
PSNR: 10 log10(255^2 / MSE) in dB over all pixels and channels (inf for identical images).

Other SSIM definitions (:data:`SSIM_DEFS`, :class:`SSIMDef`; docs/evaluation.md#ssim-definitions):
- ``patn``: the one above (PATN, Deformable GAN; GFLA's ``ssim_256``);
- ``pg2``: PG2's ``score.py``, ``compare_ssim(G, target, multichannel=True)`` with scikit-image's defaults:
  a 7x7 *uniform* window, sample covariance (variances and covariance times 49/48), data range 255 (the
  uint8 dtype's), so neither image's range enters;
- ``gfla``: GFLA's ``script/metrics.py``, ``compare_ssim(gt / 255, pred / 255, data_range=1, win_size=51,
  multichannel=True)``: a 51x51 uniform window, sample covariance, data range 1 on [0,1] images, which is
  data range 255 on the uint8 values (SSIM is unchanged when both images and the range scale together).
Uniform windows are cropped like Gaussian ones ((win - 1) // 2 pixels at every border), so again only
whole windows count and the border mode never matters.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # skimage's gaussian_weights=True: an 11-tap window at sigma 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
PIXEL_MAX = 255.0


@dataclass(frozen=True)
class SSIMDef:
    """One SSIM definition. ``window``: "gaussian" (``sigma``, truncated at 3.5 sigma) or "uniform"
    (``size`` x ``size``); ``sample_covariance``: variances and covariance times n / (n - 1) for the
    n = size^2 window pixels (skimage's default), else population; ``data_range``: a fixed R for C1 and
    C2, or None for max - min of each generated image (PATN's choice)."""

    name: str
    window: str = "gaussian"
    sigma: float = SSIM_SIGMA
    size: int = 7
    sample_covariance: bool = False
    data_range: float | None = None

    def weights(self) -> np.ndarray:
        """The separable 1-D window (k,) float64, summing to 1."""
        if self.window == "gaussian":
            return gaussian_window(self.sigma)
        if self.window == "uniform":
            return np.full(self.size, 1.0 / self.size)
        raise ValueError(f"SSIM window must be 'gaussian' or 'uniform', got {self.window!r}")

    def cov_norm(self) -> float | None:
        """The sample-covariance factor n / (n - 1), or None for population statistics."""
        n = len(self.weights()) ** 2
        return n / (n - 1) if self.sample_covariance else None


SSIM_DEFS = {
    "patn": SSIMDef("patn"),
    "pg2": SSIMDef("pg2", window="uniform", size=7, sample_covariance=True, data_range=PIXEL_MAX),
    "gfla": SSIMDef("gfla", window="uniform", size=51, sample_covariance=True, data_range=PIXEL_MAX),
}
# Images per SSIM pass on CPU: the float64 working set (5 planes per channel) of 8 Market images
# is ~8 MB; larger chunks measured slower. GPUs take the whole batch.
CPU_CHUNK = 8


@contextlib.contextmanager
def single_thread(device: torch.device):
    """One intra-op thread for the metric's small CPU operations (a few MB each): more threads were
    slower on a shared 2-core machine, where OpenMP workers wait on each other
    (docs/measurements.md#metrics). The previous setting is restored."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def gaussian_window(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> np.ndarray:
    """(2r+1,) float64 weights of scipy.ndimage.gaussian_filter: r = int(truncate * sigma + 0.5),
    exp(-x^2 / (2 sigma^2)) for x in [-r, r], normalised to sum 1. sigma 1.5 -> 11 taps."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 / (sigma * sigma) * x * x)
    return w / w.sum()


def _as_batch(images: Any, name: str, device: torch.device | None = None) -> tuple[torch.Tensor, bool]:
    """Image(s) -> float64 tensor (N,H,W,C), and whether a single (H,W,C) image was given."""
    t = images if torch.is_tensor(images) else torch.from_numpy(np.ascontiguousarray(images))
    if device is not None:
        t = t.to(device)
    single = t.dim() == 3
    if single:
        t = t.unsqueeze(0)
    if t.dim() != 4:
        raise ValueError(f"{name}: expected images (H,W,C) or (N,H,W,C), got shape {tuple(t.shape)}")
    return t.to(torch.float64), single


def _pair(generated: Any, reference: Any) -> tuple[torch.Tensor, torch.Tensor, bool]:
    g, single = _as_batch(generated, "generated")
    r, _ = _as_batch(reference, "reference", g.device)
    if g.shape != r.shape:
        raise ValueError(f"generated {tuple(g.shape)} and reference {tuple(r.shape)} images differ in shape")
    return g, r, single


def _result(values: torch.Tensor, single: bool) -> np.ndarray | float:
    out = values.detach().cpu().numpy().astype(np.float64)
    return float(out[0]) if single else out


def band_matrix(window: torch.Tensor, length: int) -> torch.Tensor:
    """(length - k + 1, length) float64 matrix M with M[i, i:i+k] = window: ``M @ v`` is the 'valid'
    correlation of v with the window (every output's whole window inside v)."""
    k = window.numel()
    out = length - k + 1
    rows = torch.arange(out, device=window.device)[:, None]
    cols = rows + torch.arange(k, device=window.device)[None, :]
    m = torch.zeros(out, length, dtype=torch.float64, device=window.device)
    return m.scatter_(1, cols, window.expand(out, k))


def _filter_valid(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian correlation of (..., H, W) planes, 'valid' part only: (..., H-2r, W-2r).
    As two matrix products (banded matrices), which BLAS runs far faster than shifted sums."""
    rows = band_matrix(window, x.shape[-2])
    cols = band_matrix(window, x.shape[-1])
    return rows @ x @ cols.T


def ssim_tensor(
    generated: torch.Tensor,
    reference: torch.Tensor,
    data_range: torch.Tensor | float | None = None,
    *,
    sigma: float = SSIM_SIGMA,
    definition: SSIMDef | None = None,
) -> torch.Tensor:
    """SSIM of float64 (N,H,W,C) batches -> (N,) float64 (see the module docstring).

    ``definition``: an :class:`SSIMDef` (default: PATN's, with ``sigma``). ``data_range``: None (the
    definition's: its fixed range, or max - min of each generated image), a number, or an (N,) tensor.
    """
    definition = definition or (SSIM_DEFS["patn"] if sigma == SSIM_SIGMA else SSIMDef("patn", sigma=sigma))
    window = torch.as_tensor(definition.weights(), dtype=torch.float64, device=generated.device)
    k = window.numel()
    if generated.shape[-3] < k or generated.shape[-2] < k:
        raise ValueError(
            f"images of {generated.shape[-3]}x{generated.shape[-2]} pixels are smaller than the {k}x{k} SSIM window"
        )
    n = generated.shape[0]
    if n == 0:
        return generated.new_zeros(0)
    if data_range is None:
        data_range = definition.data_range
    if data_range is None:
        flat = generated.reshape(n, -1)
        data_range = flat.amax(1) - flat.amin(1)
    R = torch.as_tensor(data_range, dtype=torch.float64, device=generated.device).reshape(-1)
    R = R.expand(n).reshape(n, 1, 1, 1)  # broadcast over (C, h, w)
    chunk = CPU_CHUNK if generated.device.type == "cpu" else n
    cov_norm = definition.cov_norm()
    with single_thread(generated.device):
        values = torch.cat(
            [
                _ssim_core(generated[i : i + chunk], reference[i : i + chunk], R[i : i + chunk], window, cov_norm)
                for i in range(0, n, chunk)
            ]
        )
        constant = R.view(-1) == 0
        if bool(constant.any()):
            values[constant] = _constant_generated_ssim(reference[constant], k)
    return values


def _constant_generated_ssim(reference: torch.Tensor, k: int) -> torch.Tensor:
    """SSIM of a constant generated image (data range 0, so C1 = C2 = 0) against (n,H,W,C) references,
    in exact arithmetic: its variance and covariance are exactly 0, so S = 0 wherever the reference
    varies within the k x k window and 0/0 = NaN wherever it is flat; one NaN makes the mean NaN.
    skimage computes the same up to rounding noise (|S| < 1e-15), which the float sums here would
    turn into arbitrary values."""
    planes = reference.movedim(-1, 1)  # (n,C,H,W)
    local_max = torch.nn.functional.max_pool2d(planes, k, stride=1)
    local_min = -torch.nn.functional.max_pool2d(-planes, k, stride=1)
    flat = (local_max == local_min).flatten(1).any(1)
    return torch.where(flat, torch.full_like(local_max[:, 0, 0, 0], math.nan), torch.zeros_like(local_max[:, 0, 0, 0]))


def _ssim_core(
    generated: torch.Tensor, reference: torch.Tensor, R: torch.Tensor, window: torch.Tensor, cov_norm: float | None
) -> torch.Tensor:
    """SSIM of float64 (n,H,W,C) batches with data ranges R (n,1,1,1) -> (n,); ``cov_norm``: the
    sample-covariance factor (None: population statistics, nothing multiplied)."""
    n = generated.shape[0]
    # the five filtered quantities at once, as contiguous planes (5, N, C, H, W)
    q = torch.empty((5, n, generated.shape[-1], *generated.shape[1:3]), dtype=torch.float64, device=generated.device)
    q[0].copy_(generated.movedim(-1, 1))
    q[1].copy_(reference.movedim(-1, 1))
    torch.mul(q[0], q[0], out=q[2])
    torch.mul(q[1], q[1], out=q[3])
    torch.mul(q[0], q[1], out=q[4])
    ux, uy, uxx, uyy, uxy = _filter_valid(q, window)
    uxuy, ux2uy2 = ux * uy, ux * ux + uy * uy
    vxy2 = (uxy - uxuy).mul_(2)  # 2 x covariance
    vxvy = (uxx + uyy).sub_(ux2uy2)  # vx + vy (population variances)
    if cov_norm is not None:  # skimage scales each variance before adding: the same up to rounding
        vxy2.mul_(cov_norm)
        vxvy.mul_(cov_norm)
    c1, c2 = (SSIM_K1 * R) ** 2, (SSIM_K2 * R) ** 2
    s = (uxuy.mul_(2).add_(c1)).mul_(vxy2.add_(c2)).div_(ux2uy2.add_(c1).mul_(vxvy.add_(c2)))
    return s.mean(dim=(1, 2, 3))


def ssim(generated: Any, reference: Any, data_range: Any = None, definition: str = "patn") -> np.ndarray | float:
    """SSIM of each generated image against its reference: (N,) or float. ``definition``: a key of
    :data:`SSIM_DEFS` (default PATN/DEF's official one).

    ``data_range`` defaults to the definition's (PATN: max - min of the generated image)."""
    g, r, single = _pair(generated, reference)
    if data_range is not None and not torch.is_tensor(data_range):
        data_range = torch.as_tensor(np.asarray(data_range, dtype=np.float64))
    return _result(ssim_tensor(g, r, data_range, definition=SSIM_DEFS[definition]), single)


def apply_mask(images: torch.Tensor, mask: Any) -> torch.Tensor:
    """(N,H,W,C) images times a (N,H,W) or (H,W) mask (broadcast over channels)."""
    m = mask if torch.is_tensor(mask) else torch.from_numpy(np.ascontiguousarray(mask))
    m = m.to(images.device)
    if m.dim() == 2:
        m = m.unsqueeze(0)
    if m.dim() != 3 or m.shape[-2:] != images.shape[1:3] or m.shape[0] not in (1, images.shape[0]):
        raise ValueError(
            f"mask of shape {tuple(m.shape)} does not fit images {tuple(images.shape)} (expected (N,H,W) or (H,W))"
        )
    return images * m.to(images.dtype).unsqueeze(-1)


def mask_ssim(generated: Any, reference: Any, mask: Any, definition: str = "patn") -> np.ndarray | float:
    """Official mask-SSIM: SSIM of (generated * mask) against (reference * mask), data range of the
    masked generated image (PATN's definition). ``mask``: bool or 0/1 (N,H,W) or (H,W): the target pose
    mask for PATN, the source's PG2 mask under ``definition="pg2"`` (the caller picks the mask)."""
    g, r, single = _pair(generated, reference)
    return _result(ssim_tensor(apply_mask(g, mask), apply_mask(r, mask), definition=SSIM_DEFS[definition]), single)


def l1(generated: Any, reference: Any) -> np.ndarray | float:
    """Mean absolute difference in [0,1] units (uint8 values / 255): (N,) or float.
    The official ``l1_score`` ([-1,1] units) is twice this."""
    g, r, single = _pair(generated, reference)
    return _result((g - r).abs().mean(dim=(1, 2, 3)) / PIXEL_MAX, single)


def psnr(generated: Any, reference: Any, data_range: float = PIXEL_MAX) -> np.ndarray | float:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE) (inf when identical)."""
    g, r, single = _pair(generated, reference)
    mse = ((g - r) ** 2).mean(dim=(1, 2, 3))
    values = 10 * torch.log10(data_range**2 / mse)  # mse 0 -> inf
    return _result(values, single)


PAIR_METRICS = ("ssim", "mask_ssim", "l1", "psnr")
PIXEL_METRICS = (*PAIR_METRICS, "ssim_256")  # ssim_256: GFLA's second SSIM, PATN's definition


def pair_metrics(
    generated: Any, reference: Any, mask: Any = None, *, definition: str = "patn", keys=PAIR_METRICS
) -> dict[str, np.ndarray]:
    """Per-pair pixel metrics of a batch: each key of ``keys`` (from :data:`PIXEL_METRICS`) -> (N,)
    float64. ``ssim`` and ``mask_ssim`` follow ``definition`` (a key of :data:`SSIM_DEFS`); ``ssim_256`` is
    always PATN's; ``mask``: bool or 0/1 (N,H,W), needed by ``mask_ssim`` only."""
    unknown = [k for k in keys if k not in PIXEL_METRICS]
    if unknown:
        raise ValueError(f"unknown pixel metric(s) {unknown}; known: {', '.join(PIXEL_METRICS)}")
    g, r, _ = _pair(generated, reference)
    d = SSIM_DEFS[definition]
    with single_thread(g.device):
        diff = g - r
        compute = {
            "ssim": lambda: ssim_tensor(g, r, definition=d),
            "mask_ssim": lambda: ssim_tensor(apply_mask(g, mask), apply_mask(r, mask), definition=d),
            "ssim_256": lambda: ssim_tensor(g, r),
            "l1": lambda: diff.abs().mean(dim=(1, 2, 3)) / PIXEL_MAX,
            "psnr": lambda: 10 * torch.log10(PIXEL_MAX**2 / (diff * diff).mean(dim=(1, 2, 3))),
        }
        values = {k: compute[k]() for k in keys}
    return {k: v.detach().cpu().numpy().astype(np.float64) for k, v in values.items()}


def summarise(values: np.ndarray) -> dict[str, float | int]:
    """Mean over finite values (NaN pairs counted, not averaged; PSNR inf counted likewise)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    mean = float(values[finite].mean()) if finite.any() else math.nan
    return {"mean": mean, "n": int(finite.sum()), "non_finite": int((~finite).sum())}
