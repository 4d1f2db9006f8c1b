"""Keypoints from the OpenPose body network: multi-scale heatmaps/PAFs, peaks, limbs, people -> 18 (y, x).

Follows PATN's ``tool/compute_coordinates.py`` (the script behind the pose-transfer PCKh numbers), which is
CMU's Python demo decoding with PATN's own input handling. Two input conventions (:data:`CONVENTIONS`):

- ``patn`` (``compute_coordinates.py``): BGR image; for each scale s: factor m = s * boxsize / H, the image
  resized to ``floor(H m) x floor(W m)`` by scikit-image 0.14's bicubic ``resize(order=3)`` (see
  :mod:`generators.quality.resize`), then ``x / 255 - 0.5``, no padding; the network's stride-8 maps resized
  straight to H x W with ``resize(order=1)``; heatmaps averaged over scales, PAFs *summed* (the script never
  divides ``paf_avg``, so the PAF threshold effectively applies to the sum).
- ``cmu`` (CMU's demo / Hzzone's pytorch-openpose): ``cv2.resize(fx=m, INTER_CUBIC)``, padded right/down to a
  multiple of the stride with 128, ``x / 256 - 0.5``; maps upsampled x8 (INTER_CUBIC), the padding cropped,
  resized to H x W (INTER_CUBIC); heatmaps and PAFs both averaged. The resizes run on the CPU with OpenCV
  itself (uint8 input, fixed-point kernels) so they match that code bit for bit.

Decoding of the H x W maps (both conventions, :func:`decode`):
1. peaks: each joint's heatmap smoothed by ``scipy.ndimage.gaussian_filter(sigma=3)`` (reflect borders); a peak
   is a pixel >= its 4 neighbours (outside the map counts as 0) and > ``peak_threshold`` (0.1); its score is
   the *unsmoothed* heatmap value; ids run over all joints in (joint, row, column) order.
2. limbs: the 19 CMU limbs with their PAF channel pairs; for every pair of candidate peaks, ``paf_samples``
   (10) points on the segment (``np.linspace``, rounded to pixels) project the PAF onto the unit vector;
   score = mean + min(0.5 H / |d| - 1, 0); kept when more than 80% of the samples exceed ``paf_threshold``
   (0.05) and the score is > 0; then greedily by score, each peak used once, at most min(nA, nB) limbs.
3. people: limbs joined into people in limb order (a limb whose ends belong to two disjoint people merges
   them; only the first 17 limbs may start a person); people with fewer than 4 joints or a mean score
   < 0.4 are deleted.
4. the one best person per image: the highest total score; its joints' (y, x), -1 where absent (all -1 when
   nobody is left).
The network runs batched on the device; smoothing and peak finding are batched there too (float64), the
limb scoring is vectorised per limb in numpy, and the people assembly is the sequential rule above.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import scipy.ndimage
import torch

from generators.quality.device import as_nchw_uint8, exact_fp32
from generators.quality.openpose import BodyPoseNet
from generators.quality.resize import scaled_size, skimage014_resize

NUM_JOINTS = 18
# CMU's limb list (1-based joints) and the PAF channels (19-based, into the 57-channel output) of each limb
LIMBS = (
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
    (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18), (3, 17), (6, 18),
)  # fmt: skip
PAF_INDEX = (
    (31, 32), (39, 40), (33, 34), (35, 36), (41, 42), (43, 44), (19, 20), (21, 22), (23, 24), (25, 26),
    (27, 28), (29, 30), (47, 48), (49, 50), (53, 54), (51, 52), (55, 56), (37, 38), (45, 46),
)  # fmt: skip
NEW_PERSON_LIMBS = 17  # limbs 17 and 18 (ear-shoulder) never start a person


@dataclass(frozen=True)
class PoseConfig:
    """Every number of the keypoint search; the defaults are PATN's ``compute_coordinates.py``."""

    convention: str = "patn"  # "patn" or "cmu" (module docstring)
    scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    boxsize: int = 368
    stride: int = 8
    pad_value: int = 128  # cmu only: the padding's grey
    peak_threshold: float = 0.1
    paf_threshold: float = 0.05
    paf_samples: int = 10
    sigma: float = 3.0
    min_parts: int = 4
    min_mean_score: float = 0.4

    def __post_init__(self):
        if self.convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}, got {self.convention!r}")
        if not self.scales:
            raise ValueError("scales must not be empty")


CONVENTIONS = ("patn", "cmu")


# ----------------------------------------------------------------------------------------------
# multi-scale maps


def _forward(net: BodyPoseNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    device = next(net.parameters()).device
    with exact_fp32():
        paf, heat = net(x.to(device=device, dtype=torch.float32))
    return paf.double(), heat.double()


def _maps_patn(net: BodyPoseNet, bgr: torch.Tensor, cfg: PoseConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """bgr: (N, 3, H, W) float64 0..255 on the device -> (heat avg (N, 19, H, W), paf sum (N, 38, H, W))."""
    h, w = bgr.shape[-2:]
    heat_sum = paf_sum = None
    for s in cfg.scales:
        size = scaled_size((h, w), s * cfg.boxsize / h)
        x = skimage014_resize(bgr, size, order=3) / 255 - 0.5
        paf, heat = _forward(net, x)
        heat = skimage014_resize(heat, (h, w), order=1)
        paf = skimage014_resize(paf, (h, w), order=1)
        heat_sum = heat if heat_sum is None else heat_sum + heat
        paf_sum = paf if paf_sum is None else paf_sum + paf
    return heat_sum / len(cfg.scales), paf_sum


def _pad_right_down(img: np.ndarray, stride: int, value: int) -> tuple[np.ndarray, int, int]:
    h, w = img.shape[:2]
    pad_h, pad_w = (-h) % stride, (-w) % stride
    out = np.full((h + pad_h, w + pad_w, img.shape[2]), value, dtype=img.dtype)
    out[:h, :w] = img
    return out, pad_h, pad_w


def _cv2_resize(maps: np.ndarray, size_hw: tuple[int, int] | None = None, factor: float | None = None) -> np.ndarray:
    """cv2.resize INTER_CUBIC of an (H, W, C) float32 array, by destination size or by factor (fx = fy)."""
    if factor is not None:
        out = cv2.resize(maps, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    else:
        out = cv2.resize(maps, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_CUBIC)
    return out.reshape(out.shape[0], out.shape[1], -1)


def _maps_cmu(net: BodyPoseNet, bgr_u8: np.ndarray, cfg: PoseConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """bgr_u8: (N, H, W, 3) uint8 -> (heat avg (N, 19, H, W), paf avg (N, 38, H, W)) float64 on the CPU."""
    n, h, w = bgr_u8.shape[:3]
    heat_sum = np.zeros((n, h, w, 19))
    paf_sum = np.zeros((n, h, w, 38))
    for s in cfg.scales:
        m = s * cfg.boxsize / h
        padded = []
        for img in bgr_u8:
            small = cv2.resize(img, (0, 0), fx=m, fy=m, interpolation=cv2.INTER_CUBIC)
            padded.append(_pad_right_down(small, cfg.stride, cfg.pad_value))
        (sh, sw), (ph, pw) = padded[0][0].shape[:2], padded[0][1:]
        x = torch.from_numpy(np.stack([p[0] for p in padded])).permute(0, 3, 1, 2).float() / 256 - 0.5
        paf, heat = _forward(net, x)
        paf_np = paf.float().permute(0, 2, 3, 1).cpu().numpy()
        heat_np = heat.float().permute(0, 2, 3, 1).cpu().numpy()
        for i in range(n):
            for maps, total in ((heat_np[i], heat_sum), (paf_np[i], paf_sum)):
                up = _cv2_resize(maps, factor=cfg.stride)[: sh - ph, : sw - pw]
                total[i] += _cv2_resize(up, size_hw=(h, w))
    k = len(cfg.scales)
    to_t = lambda a: torch.from_numpy(a / k).permute(0, 3, 1, 2)
    return to_t(heat_sum), to_t(paf_sum)


@torch.no_grad()
def pose_maps(net: BodyPoseNet, images, cfg: PoseConfig = PoseConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-scale (heatmap (N, 19, H, W), PAF (N, 38, H, W)) float64 maps of uint8 RGB images
    ((N, H, W, 3) or (N, 3, H, W)) under ``cfg.convention``; on the network's device (patn) or CPU (cmu)."""
    x = as_nchw_uint8(images).flip(1)  # RGB -> BGR, the order both references feed
    if cfg.convention == "cmu":
        return _maps_cmu(net, x.permute(0, 2, 3, 1).numpy(), cfg)
    device = next(net.parameters()).device
    return _maps_patn(net, x.to(device).double(), cfg)


# ----------------------------------------------------------------------------------------------
# decoding


@lru_cache(maxsize=32)
def _smoothing_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) matrix of scipy's 1-d Gaussian filter (reflect borders): M @ v == gaussian_filter1d(v, sigma)."""
    return scipy.ndimage.gaussian_filter1d(np.eye(n), sigma, axis=0, mode="reflect")


def find_peaks(heat: torch.Tensor, cfg: PoseConfig) -> list[list[np.ndarray]]:
    """Peaks of (N, >=18, H, W) heatmaps: per image, per joint, an (n, 4) array (x, y, score, id)."""
    n, _, h, w = heat.shape
    maps = heat[:, :NUM_JOINTS].double()
    gh = torch.tensor(_smoothing_matrix(h, cfg.sigma), dtype=maps.dtype, device=maps.device)
    gw = torch.tensor(_smoothing_matrix(w, cfg.sigma), dtype=maps.dtype, device=maps.device)
    smooth = gh @ maps @ gw.t()
    padded = torch.nn.functional.pad(smooth, (1, 1, 1, 1))  # outside the map counts as 0
    centre = padded[..., 1:-1, 1:-1]
    is_peak = (
        (centre >= padded[..., :-2, 1:-1])
        & (centre >= padded[..., 2:, 1:-1])
        & (centre >= padded[..., 1:-1, :-2])
        & (centre >= padded[..., 1:-1, 2:])
        & (centre > cfg.peak_threshold)
    )
    where = torch.nonzero(is_peak).cpu().numpy()  # (img, joint, y, x), row-major like np.nonzero
    scores = maps[is_peak].cpu().numpy()
    out: list[list[np.ndarray]] = [[np.zeros((0, 4)) for _ in range(NUM_JOINTS)] for _ in range(n)]
    for i in range(n):
        rows = where[:, 0] == i
        pts, sc = where[rows], scores[rows]
        next_id = 0
        for j in range(NUM_JOINTS):
            sel = pts[:, 1] == j
            k = int(sel.sum())
            ids = np.arange(next_id, next_id + k, dtype=np.float64)
            out[i][j] = np.stack([pts[sel, 3], pts[sel, 2], sc[sel], ids], axis=1).astype(np.float64)
            next_id += k
    return out


def _limb_candidates(a: np.ndarray, b: np.ndarray, paf_xy: np.ndarray, height: int, cfg: PoseConfig) -> np.ndarray:
    """Scored connections between peaks a (nA, 4) and b (nB, 4) on one limb's PAF (H, W, 2): rows
    (i, j, score) that pass both criteria, sorted by score (descending, stable)."""
    ax, ay = a[:, 0][:, None], a[:, 1][:, None]
    bx, by = b[:, 0][None, :], b[:, 1][None, :]
    dx, dy = bx - ax, by - ay
    norm = np.sqrt(dx * dx + dy * dy)
    safe = np.maximum(norm, 1e-3)  # coincident peaks: no direction, so no sample can pass
    ux, uy = dx / safe, dy / safe
    xs = np.linspace(np.broadcast_to(ax, norm.shape), np.broadcast_to(bx, norm.shape), num=cfg.paf_samples)
    ys = np.linspace(np.broadcast_to(ay, norm.shape), np.broadcast_to(by, norm.shape), num=cfg.paf_samples)
    xi, yi = np.round(xs).astype(np.int64), np.round(ys).astype(np.int64)
    proj = paf_xy[yi, xi, 0] * ux + paf_xy[yi, xi, 1] * uy  # (samples, nA, nB)
    total = np.zeros(norm.shape)
    for sample in proj:  # python's sum(): left to right
        total = total + sample
    with np.errstate(divide="ignore"):
        prior = np.minimum(0.5 * height / norm - 1, 0)
    score = total / cfg.paf_samples + prior
    ok = ((proj > cfg.paf_threshold).sum(axis=0) > 0.8 * cfg.paf_samples) & (score > 0) & (norm > 0)
    i, j = np.nonzero(ok)
    s = score[i, j]
    order = np.argsort(-s, kind="stable")
    return np.stack([i[order], j[order], s[order]], axis=1) if len(i) else np.zeros((0, 3))


def connect_limbs(peaks: list[np.ndarray], paf: np.ndarray, height: int, cfg: PoseConfig) -> list[np.ndarray | None]:
    """Per limb, the chosen connections (m, 5): (id A, id B, score, i, j); None when a side has no peak.
    paf: (H, W, 38) float64."""
    connections: list[np.ndarray | None] = []
    for (ja, jb), (ca, cb) in zip(LIMBS, PAF_INDEX):
        a, b = peaks[ja - 1], peaks[jb - 1]
        if len(a) == 0 or len(b) == 0:
            connections.append(None)
            continue
        cand = _limb_candidates(a, b, paf[:, :, [ca - 19, cb - 19]], height, cfg)
        chosen: list[list[float]] = []
        used_a: set[int] = set()
        used_b: set[int] = set()
        for i, j, s in cand:
            i, j = int(i), int(j)
            if i in used_a or j in used_b:
                continue
            chosen.append([a[i, 3], b[j, 3], s, i, j])
            used_a.add(i)
            used_b.add(j)
            if len(chosen) >= min(len(a), len(b)):
                break
        connections.append(np.array(chosen, dtype=np.float64).reshape(-1, 5))
    return connections


def _add_limb(subset: np.ndarray, k: int, row: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """One connection (id A, id B, score, ...) of limb k joined into the people table (see module docstring)."""
    ia, ib = LIMBS[k][0] - 1, LIMBS[k][1] - 1
    part_a, part_b, score = row[0], row[1], row[2]
    owners = [p for p in range(len(subset)) if subset[p, ia] == part_a or subset[p, ib] == part_b]
    gain = candidate[int(part_b), 2] + score
    if len(owners) == 1:
        p = owners[0]
        if subset[p, ib] != part_b:
            subset[p, ib] = part_b
            subset[p, -1] += 1
            subset[p, -2] += gain
    elif len(owners) == 2:
        p, q = owners
        shared = ((subset[p, :-2] >= 0) & (subset[q, :-2] >= 0)).any()
        if not shared:  # two disjoint people: merge the second into the first
            subset[p, :-2] += subset[q, :-2] + 1
            subset[p, -2:] += subset[q, -2:]
            subset[p, -2] += score
            subset = np.delete(subset, q, axis=0)
        else:  # the limb goes to the first, without the found-once check
            subset[p, ib] = part_b
            subset[p, -1] += 1
            subset[p, -2] += gain
    elif not owners and k < NEW_PERSON_LIMBS:
        new = -np.ones(NUM_JOINTS + 2)
        new[ia], new[ib] = part_a, part_b
        new[-1] = 2
        new[-2] = candidate[int(part_a), 2] + candidate[int(part_b), 2] + score
        subset = np.vstack([subset, new])
    return subset


def assemble_people(
    peaks: list[np.ndarray], connections: list[np.ndarray | None], cfg: PoseConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(candidate (P, 4): x, y, score, id; subset (people, 20): 18 peak ids or -1, total score, joint count)."""
    candidate = np.concatenate([p for p in peaks]) if peaks else np.zeros((0, 4))
    subset = -np.ones((0, NUM_JOINTS + 2))
    for k, conn in enumerate(connections):
        if conn is None:
            continue
        for row in conn:
            subset = _add_limb(subset, k, row, candidate)
    weak = (subset[:, -1] < cfg.min_parts) | (subset[:, -2] / subset[:, -1] < cfg.min_mean_score)
    return candidate, subset[~weak]


def best_person(candidate: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """(18, 2) int (y, x) of the person with the highest total score; -1 where absent or nobody."""
    out = -np.ones((NUM_JOINTS, 2), dtype=np.int64)
    if len(subset) == 0:
        return out
    person = subset[int(np.argmax(subset[:, -2])), :NUM_JOINTS]
    for j, pid in enumerate(person):
        if pid != -1:
            out[j] = [int(candidate[int(pid), 1]), int(candidate[int(pid), 0])]
    return out


def decode(heat: torch.Tensor, paf: torch.Tensor, cfg: PoseConfig = PoseConfig()) -> np.ndarray:
    """(N, 18, 2) int keypoints (y, x; -1 missing) from (N, 19, H, W) heatmaps and (N, 38, H, W) PAFs."""
    peaks = find_peaks(heat, cfg)
    paf_np = paf.double().permute(0, 2, 3, 1).cpu().numpy()
    height = heat.shape[2]
    out = np.empty((heat.shape[0], NUM_JOINTS, 2), dtype=np.int64)
    for i, image_peaks in enumerate(peaks):
        connections = connect_limbs(image_peaks, paf_np[i], height, cfg)
        out[i] = best_person(*assemble_people(image_peaks, connections, cfg))
    return out


def detect_keypoints(net: BodyPoseNet, images, cfg: PoseConfig = PoseConfig(), batch_size: int = 16) -> np.ndarray:
    """(N, 18, 2) int (y, x) keypoints (-1 missing) of uint8 RGB images, ``batch_size`` images per pass."""
    x = as_nchw_uint8(images)
    parts = [decode(*pose_maps(net, x[s : s + batch_size], cfg), cfg) for s in range(0, x.shape[0], batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, NUM_JOINTS, 2), dtype=np.int64)
