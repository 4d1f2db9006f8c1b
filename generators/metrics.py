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
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import torch

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # skimage's gaussian_weights=True: an 11-tap window at sigma 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
PIXEL_MAX = 255.0
# Images per SSIM pass on CPU: the float64 working set (5 planes per channel) of 8 Market images
# is ~8 MB; larger chunks measured slower. GPUs take the whole batch.
CPU_CHUNK = 8


@contextlib.contextmanager
def single_thread(device: torch.device):
    """One intra-op thread for the metric's small CPU operations (a few MB each): measured 1.1 ms per
    Market image at 1 thread against 6-24 ms at 2 threads on the shared 2-core machine, where OpenMP
    workers wait on each other. The previous setting is restored."""
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
) -> torch.Tensor:
    """SSIM of float64 (N,H,W,C) batches -> (N,) float64 (see the module docstring).

    ``data_range``: None (max - min of each generated image), a number, or an (N,) tensor.
    """
    window = torch.as_tensor(gaussian_window(sigma), dtype=torch.float64, device=generated.device)
    k = window.numel()
    if generated.shape[-3] < k or generated.shape[-2] < k:
        raise ValueError(
            f"images of {generated.shape[-3]}x{generated.shape[-2]} pixels are smaller than the {k}x{k} SSIM window"
        )
    n = generated.shape[0]
    if n == 0:
        return generated.new_zeros(0)
    if data_range is None:
        flat = generated.reshape(n, -1)
        data_range = flat.amax(1) - flat.amin(1)
    R = torch.as_tensor(data_range, dtype=torch.float64, device=generated.device).reshape(-1)
    R = R.expand(n).reshape(n, 1, 1, 1)  # broadcast over (C, h, w)
    chunk = CPU_CHUNK if generated.device.type == "cpu" else n
    with single_thread(generated.device):
        values = torch.cat(
            [
                _ssim_core(generated[i : i + chunk], reference[i : i + chunk], R[i : i + chunk], window)
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


def _ssim_core(generated: torch.Tensor, reference: torch.Tensor, R: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """SSIM of float64 (n,H,W,C) batches with data ranges R (n,1,1,1) -> (n,)."""
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
    c1, c2 = (SSIM_K1 * R) ** 2, (SSIM_K2 * R) ** 2
    s = (uxuy.mul_(2).add_(c1)).mul_(vxy2.add_(c2)).div_(ux2uy2.add_(c1).mul_(vxvy.add_(c2)))
    return s.mean(dim=(1, 2, 3))


def ssim(generated: Any, reference: Any, data_range: Any = None) -> np.ndarray | float:
    """Official PATN/DEF SSIM of each generated image against its reference: (N,) or float.

    ``data_range`` defaults to max - min of the generated image (the official choice)."""
    g, r, single = _pair(generated, reference)
    if data_range is not None and not torch.is_tensor(data_range):
        data_range = torch.as_tensor(np.asarray(data_range, dtype=np.float64))
    return _result(ssim_tensor(g, r, data_range), single)


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


def mask_ssim(generated: Any, reference: Any, mask: Any) -> np.ndarray | float:
    """Official mask-SSIM: SSIM of (generated * mask) against (reference * mask), data range of the
    masked generated image. ``mask``: bool (N,H,W) or (H,W), the target pose mask."""
    g, r, single = _pair(generated, reference)
    return _result(ssim_tensor(apply_mask(g, mask), apply_mask(r, mask)), single)


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


def pair_metrics(generated: Any, reference: Any, mask: Any) -> dict[str, np.ndarray]:
    """All per-pair metrics of a batch: {"ssim", "mask_ssim", "l1", "psnr"} -> (N,) float64 each
    (``mask``: the target pose masks, bool (N,H,W))."""
    g, r, _ = _pair(generated, reference)
    with single_thread(g.device):
        diff = g - r
        mse = (diff * diff).mean(dim=(1, 2, 3))
        values = {
            "ssim": ssim_tensor(g, r),
            "mask_ssim": ssim_tensor(apply_mask(g, mask), apply_mask(r, mask)),
            "l1": diff.abs_().mean(dim=(1, 2, 3)) / PIXEL_MAX,
            "psnr": 10 * torch.log10(PIXEL_MAX**2 / mse),
        }
    return {k: v.detach().cpu().numpy().astype(np.float64) for k, v in values.items()}


def summarise(values: np.ndarray) -> dict[str, float | int]:
    """Mean over finite values (NaN pairs counted, not averaged; PSNR inf counted likewise)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    mean = float(values[finite].mean()) if finite.any() else math.nan
    return {"mean": mean, "n": int(finite.sum()), "non_finite": int((~finite).sum())}
