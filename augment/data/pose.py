"""Pose encodings of COCO-18 keypoints, as the official pose-transfer code builds them.

Keypoints are (18, 2) or (N, 18, 2) integers (y, x) in :data:`augment.data.keypoints.JOINTS` order, -1
where missing (a joint is missing if either coordinate is -1). Every function takes numpy arrays
(and returns numpy) or torch tensors (and returns torch tensors on the keypoints' device); a single
pose gives a batch of one. All outputs are batched and channels-first. One torch implementation
serves both (numpy input runs it on the CPU), so the two always agree.

Encodings and the methods that use them:

- :func:`heatmaps` (N,18,H,W): exp(-d^2 / (2 sigma^2)), sigma 6, at full resolution; zero maps for
  missing joints. PATN and Deformable GAN inputs (`cords_to_map`), GFLA's pose maps.
- :func:`joint_disks` (N,18,H,W) {0,1}: solid disks d^2 <= 4^2 (PG2 `_getSparseKeypoint` 'Solid',
  49 pixels), SPGNet's joint maps; :func:`pg2_pose_maps` = disks*2-1 is PG2's G1 pose input.
- :func:`pose_mask_pg2` (N,H,W) {0,1}: PG2 `_getPoseMask`, the mask M of PG2's masked L1 loss: r4
  disks at both ends of the 23 connections and every ~4 px between, closed by 5x5 dilate/erode.
- :func:`pose_mask_eval` (N,H,W) bool: PATN / Deformable GAN `produce_ma_mask`, the mask of the
  mask-SSIM / mask-IS metrics: half-width-4 quads on the 23 connections plus disks d^2 < 16, closed.
- :func:`part_masks` (N,10,H,W), :func:`part_affines` (N,10,2,3): Deformable GAN's 10 body parts
  (`pose_masks`, `affine_transforms`): the target-frame mask of each part and the backward affine
  map target (x, y) -> source (x, y) that warps it; :func:`torso_scale`, :func:`part_polygons`
  expose the geometry they share.

Faithfulness notes (each checked by tests/test_pose.py against a transcription of the official code):

- Polygons are filled with the crossing rule of scikit-image 0.14.2 (the version PATN's
  requirements_tf.txt pins; Deformable GAN ran in the same era): a pixel is inside if the ray
  towards +column (`draw.polygon`) or +row (`measure.grid_points_in_poly`) crosses an odd number of
  edges, edges half-open in the other coordinate. scikit-image >= 0.18 also counts pixels lying
  exactly on an edge or vertex as inside; that only adds boundary pixels (axis-aligned limbs).
- Disks of `produce_ma_mask` are the old `draw.circle(r, c, 4)` = today's `draw.disk`: d^2 < 16.
- Dilation / erosion by square(5) take the max / min over the window clipped to the image
  (scikit-image's default 'reflect' border), so the closing never grows from outside the image.
- PG2 interpolates between joints with `r0 + (r1-r0)*i/sampleN` under `from __future__ import
  division` (convert_market.py, which wrote the TFRecords) then `int()`; Python 2 floor division
  would give the same pixels anyway, since r0 is an integer and the result is >= 0.
- Affine fits are scikit-image's `estimate_transform('affine')`: total least squares (smallest right
  singular vector) on centred, RMS-sqrt(2)-normalised points, not ordinary least squares. Both
  agree when an exact affine map exists (the limb rectangles); torso and head differ.

Deviations where the official code crashes or returns garbage (documented per function):
a zero-length limb gives no quad in :func:`pose_mask_eval` (official: NaN vertices, ValueError);
without all four torso joints the torso scale is NaN, and head / limb masks and transforms are
empty / "no point" (official: KeyError); a near-singular affine fit is "no point" (official only
catches an exactly singular matrix).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from augment.data.keypoints import IMAGE_SIZE, JOINT_INDEX, MISSING, NUM_JOINTS

Array = np.ndarray | torch.Tensor

# The 23 connections of PG2 `_getPoseMask` and PATN/DEF `produce_ma_mask` (1-indexed, as published).
CONNECTIONS_1INDEXED = (
    (2, 3),
    (2, 6),
    (3, 4),
    (4, 5),
    (6, 7),
    (7, 8),
    (2, 9),
    (9, 10),
    (10, 11),
    (2, 12),
    (12, 13),
    (13, 14),
    (2, 1),
    (1, 15),
    (15, 17),
    (1, 16),
    (16, 18),
    (2, 17),
    (2, 18),
    (9, 12),
    (12, 6),
    (9, 3),
    (17, 18),
)
CONNECTIONS = tuple((a - 1, b - 1) for a, b in CONNECTIONS_1INDEXED)

HEATMAP_SIGMA = 6.0
JOINT_RADIUS = 4
MORPH_SIZE = 5  # square(5) of the dilate-then-erode closing

# Deformable GAN body parts, in the order of `pose_masks` / `affine_transforms`.
LIMBS = (
    ("Rhip", "Rkne"),
    ("Lhip", "Lkne"),
    ("Rkne", "Rank"),
    ("Lkne", "Lank"),
    ("Rsho", "Relb"),
    ("Lsho", "Lelb"),
    ("Relb", "Rwri"),
    ("Lelb", "Lwri"),
)
PART_NAMES = ("torso", "head") + tuple(f"{a}-{b}" for a, b in LIMBS)
NUM_PARTS = len(PART_NAMES)
TORSO_POINTS = ("Rhip", "Lhip", "Lsho", "Rsho")
HEAD_JOINTS = ("nose", "Leye", "Reye", "Lear", "Rear")
LIMB_MIRROR = (1, 0, 3, 2, 5, 4, 7, 6)  # limb index of the same limb on the other side
MASK_INC_TO = (0.1, 0.1, 0.5, 0.5, 0.1, 0.1, 0.5, 0.5)  # `pose_masks`
AFFINE_INC_TO = (0.1, 0.1, 0.3, 0.3, 0.1, 0.1, 0.3, 0.3)  # `affine_transforms`
LIMB_INC_FROM = 0.1  # the rectangle starts 0.1 limb lengths before the `from` joint
LIMB_HALF_WIDTH = 0.2  # corners at +-0.2 * torso scale along the unit normal
HEAD_BOX_SCALE = 0.4  # head box half-size = int(0.4 * torso scale)
NO_POINT_AFFINE = ((1.0, 0.0, 1000.0), (0.0, 1.0, 1000.0))  # moves everything out of the image
SINGULAR_EPS = 1e-8  # |det| or |c3| below this: the fit is singular


# ----------------------------------------------------------------------------------------------
# Input / output plumbing
# ----------------------------------------------------------------------------------------------


def _keypoints(kps: Array, name: str = "kps") -> tuple[torch.Tensor, bool]:
    """(18,2) or (N,18,2) integer (y, x) -> (N,18,2) int64 tensor, and whether the input was numpy."""
    is_numpy = not isinstance(kps, torch.Tensor)
    k = torch.from_numpy(np.ascontiguousarray(kps)) if is_numpy else kps
    if k.dim() == 2:
        k = k.unsqueeze(0)
    if k.dim() != 3 or tuple(k.shape[1:]) != (NUM_JOINTS, 2):
        raise ValueError(f"{name} must have shape (18, 2) or (N, 18, 2), got {tuple(k.shape)}")
    if k.is_floating_point():
        if not torch.equal(k, torch.trunc(k)):
            raise ValueError(f"{name} must hold integer pixel coordinates (y, x)")
    elif k.dtype == torch.bool or k.is_complex():
        raise ValueError(f"{name} must be integers, got {k.dtype}")
    k = k.long()
    if bool((k < MISSING).any()):
        raise ValueError(f"{name} has negative coordinates other than {MISSING} (missing): min {int(k.min())}")
    return k, is_numpy


def _size(size: Sequence[int]) -> tuple[int, int]:
    h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive (H, W), got {tuple(size)}")
    return h, w


def _out(x: torch.Tensor, is_numpy: bool) -> Array:
    return x.cpu().numpy() if is_numpy else x


def _present(k: torch.Tensor) -> torch.Tensor:
    """(N,18) bool: both coordinates annotated."""
    return (k != MISSING).all(-1)


def _grid(size: tuple[int, int], device, dtype=torch.long) -> tuple[torch.Tensor, torch.Tensor]:
    """Row (H,1) and column (1,W) index grids."""
    h, w = size
    return (
        torch.arange(h, device=device, dtype=dtype).view(h, 1),
        torch.arange(w, device=device, dtype=dtype).view(1, w),
    )


def _joint_ids(names: Sequence[str], device) -> torch.Tensor:
    return torch.tensor([JOINT_INDEX[n] for n in names], device=device)


# ----------------------------------------------------------------------------------------------
# Rasterisation primitives
# ----------------------------------------------------------------------------------------------


def fill_polygons(ray_v: torch.Tensor, scan_v: torch.Tensor, n_ray: int, n_scan: int) -> torch.Tensor:
    """Even-odd crossing test of scikit-image 0.14 `point_in_polygon` on an integer grid.

    ray_v, scan_v: (..., V) float64 vertex coordinates along the ray axis (the test's "x") and the
    scan axis ("y"). Returns (..., n_scan, n_ray) bool: grid point (s, r) is inside if an odd
    number of edges (j -> i, j = i-1) satisfy  yp_i <= s < yp_j or yp_j <= s < yp_i  and
    r < (xp_j - xp_i) * (s - yp_i) / (yp_j - yp_i) + xp_i   (same floating-point operations).
    NaN vertices never cross, so a NaN polygon is empty.
    """
    xi, yi = ray_v.unsqueeze(-1), scan_v.unsqueeze(-1)  # (..., V, 1)
    xj, yj = torch.roll(xi, 1, dims=-2), torch.roll(yi, 1, dims=-2)  # previous vertex
    s = torch.arange(n_scan, device=ray_v.device, dtype=torch.float64)  # scan lines
    straddles = ((yi <= s) & (s < yj)) | ((yj <= s) & (s < yi))  # (..., V, n_scan)
    x_cross = (xj - xi) * (s - yi) / (yj - yi) + xi  # only used where straddles
    r = torch.arange(n_ray, device=ray_v.device, dtype=torch.float64)
    inside = None
    for e in range(ray_v.shape[-1]):  # V = 4 edges; each term is vectorised over everything else
        crossing = straddles[..., e, :, None] & (r < x_cross[..., e, :, None])
        inside = crossing if inside is None else inside ^ crossing
    return inside


def _stamp_disks(centres: torch.Tensor, valid: torch.Tensor, size: tuple[int, int], radius: int) -> torch.Tensor:
    """Union of solid disks d^2 <= radius^2 around integer (y, x) centres, clipped to the image.

    centres (N,C,2) int64, valid (N,C) bool -> (N,H,W) bool. Scatters the disk's pixel offsets
    (no (C,H,W) distance volume), so thousands of centres per image stay cheap.
    """
    h, w = size
    n = centres.shape[0]
    d = torch.arange(-radius, radius + 1, device=centres.device)
    oy, ox = torch.meshgrid(d, d, indexing="ij")
    keep = oy * oy + ox * ox <= radius * radius
    offsets = torch.stack([oy[keep], ox[keep]], -1)  # (O,2)
    pix = centres.unsqueeze(2) + offsets  # (N,C,O,2)
    py, px = pix[..., 0], pix[..., 1]
    ok = valid.unsqueeze(2) & (py >= 0) & (py < h) & (px >= 0) & (px < w)
    flat = torch.where(ok, py * w + px, torch.full_like(py, h * w))  # h*w: a discard slot
    out = torch.zeros(n, h * w + 1, dtype=torch.bool, device=centres.device)
    out.scatter_(1, flat.reshape(n, -1), True)
    return out[:, : h * w].view(n, h, w)


def _close(mask: torch.Tensor, k: int = MORPH_SIZE) -> torch.Tensor:
    """Dilation then erosion of (N,H,W) bool by a k x k square; window clipped at the border."""
    x = mask.float().unsqueeze(1)
    x = F.max_pool2d(x, k, stride=1, padding=k // 2)  # max_pool pads with -inf: clipped window
    x = -F.max_pool2d(-x, k, stride=1, padding=k // 2)
    return x.squeeze(1) > 0.5


# ----------------------------------------------------------------------------------------------
# Joint maps
# ----------------------------------------------------------------------------------------------


def heatmaps(kps: Array, size: Sequence[int] = IMAGE_SIZE, sigma: float = HEATMAP_SIGMA) -> Array:
    """Gaussian joint maps (N,18,H,W) float32, PATN / Deformable GAN `cords_to_map`.

    Value exp(-((y-ky)^2 + (x-kx)^2) / (2 sigma^2)) at every pixel (row y, column x), computed in
    float64 then stored as float32 like the official .npy maps; all-zero channel for a missing joint.
    """
    k, is_numpy = _keypoints(kps)
    size = _size(size)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    rows, cols = _grid(size, k.device)
    ky, kx = k[..., 0, None, None], k[..., 1, None, None]  # (N,18,1,1)
    d2 = (rows - ky) ** 2 + (cols - kx) ** 2  # exact integers
    # The value depends on the integer d2 alone, so it comes from a table (one float64 exp per distance, made
    # once per sigma): the same numbers as an exp at every pixel. Every larger d2 and a missing joint read the
    # table's last entry, 0.
    table = _heatmap_table(float(sigma)).to(k.device)
    cutoff = len(table) - 1
    d2 = d2.clamp_(max=cutoff).masked_fill_(~_present(k)[..., None, None], cutoff)
    return _out(table[d2], is_numpy)


@functools.cache
def _heatmap_table(sigma: float) -> torch.Tensor:
    """float32 exp(-d2 / (2 sigma^2)) for d2 = 0 .. cutoff, computed in float64, values under float32's smallest
    normal flushed to 0; cutoff is the first d2 whose value is under half that normal (it and every larger d2
    would flush), so the last entry is 0. Shared: callers index it, never write to it."""
    tiny = float(torch.finfo(torch.float32).tiny)
    cutoff = math.ceil(2 * sigma**2 * math.log(2 / tiny))
    while math.exp(-cutoff / (2 * sigma**2)) >= tiny / 2:  # guard against rounding in the estimate
        cutoff += 1
    table = torch.exp(-torch.arange(cutoff + 1, dtype=torch.float64) / (2 * sigma**2)).float()
    return table.masked_fill_(table < tiny, 0.0)


def joint_disks(kps: Array, size: Sequence[int] = IMAGE_SIZE, radius: int = JOINT_RADIUS) -> Array:
    """Solid joint disks (N,18,H,W) float32 in {0,1}: (r-ky)^2 + (c-kx)^2 <= radius^2, clipped to
    the image; PG2 `_getSparseKeypoint` 'Solid' (49 pixels for radius 4), SPGNet's joint maps."""
    k, is_numpy = _keypoints(kps)
    size = _size(size)
    rows, cols = _grid(size, k.device)
    d2 = (rows - k[..., 0, None, None]) ** 2 + (cols - k[..., 1, None, None]) ** 2
    disks = (d2 <= int(radius) ** 2) & _present(k)[..., None, None]
    return _out(disks.float(), is_numpy)


def pg2_pose_maps(kps: Array, size: Sequence[int] = IMAGE_SIZE, radius: int = JOINT_RADIUS) -> Array:
    """PG2 pose input (N,18,H,W) float32 in {-1,+1}: joint disks rescaled by ``poses*2-1``
    (a missing joint is an all -1 channel)."""
    disks = joint_disks(kps, size, radius)
    return disks * 2 - 1


# ----------------------------------------------------------------------------------------------
# Body masks
# ----------------------------------------------------------------------------------------------


def _connection_ends(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From / to keypoints (N,23,2) of the 23 connections and (N,23) both-present flags."""
    conn = torch.tensor(CONNECTIONS, device=k.device)
    present = _present(k)
    return k[:, conn[:, 0]], k[:, conn[:, 1]], present[:, conn[:, 0]] & present[:, conn[:, 1]]


def pose_mask_pg2(kps: Array, size: Sequence[int] = IMAGE_SIZE, radius: int = JOINT_RADIUS) -> Array:
    """PG2 training mask M (`_getPoseMask`), (N,H,W) float32 in {0,1}.

    For each of the 23 connections with both ends present: disks d^2 <= radius^2 at both ends and,
    with sampleN = int(d / radius) for the limb length d, at int(r0 + (r1-r0) i / sampleN),
    int(c0 + (c1-c0) i / sampleN) for i = 1..sampleN-1 when sampleN > 1; then the union is closed
    (dilation, erosion by square(5)). Joints outside every connection get no disk.
    """
    k, is_numpy = _keypoints(kps)
    size = _size(size)
    p0, p1, ok = _connection_ends(k)  # (N,23,2), (N,23)
    length = torch.sqrt(((p0 - p1) ** 2).sum(-1).double())
    sample_n = torch.floor(length / radius).long()  # int() of a value >= 0
    sample_n = torch.where(ok, sample_n, torch.zeros_like(sample_n))
    n_between = max(int(sample_n.max()) - 1, 0) if sample_n.numel() else 0
    i = torch.arange(1, n_between + 1, device=k.device, dtype=torch.float64)  # (S,)
    denom = sample_n.clamp(min=1).double()[..., None]  # (N,23,1)
    between = [
        torch.trunc(p0[..., c, None].double() + (p1 - p0)[..., c, None].double() * i / denom) for c in (0, 1)
    ]  # the official float expression, then int()
    between = torch.stack(between, -1).long()  # (N,23,S,2)
    between_ok = ok[..., None] & (i < sample_n[..., None])  # i < sampleN (so sampleN > 1)
    centres = torch.cat([p0.unsqueeze(2), p1.unsqueeze(2), between], 2).flatten(1, 2)
    valid = torch.cat([ok[..., None], ok[..., None], between_ok], 2).flatten(1, 2)
    mask = _close(_stamp_disks(centres, valid, size, int(radius)))
    return _out(mask.float(), is_numpy)


def pose_mask_eval(kps: Array, size: Sequence[int] = IMAGE_SIZE, point_radius: int = JOINT_RADIUS) -> Array:
    """Mask-SSIM / mask-IS evaluation mask (N,H,W) bool, PATN / Deformable GAN `produce_ma_mask`.

    For each of the 23 connections with both ends present (y, x): the quad f+n, f-n, t-n, t+n with
    n = point_radius * unit normal of (f - t), filled like skimage 0.14 `draw.polygon` (pixel
    centres by the crossing rule); plus a disk (r-ky)^2 + (c-kx)^2 < point_radius^2 at every
    present joint (old `draw.circle`, today's `draw.disk`); then dilation and erosion by square(5).
    A zero-length connection adds no quad (the official code divides by zero and fails); its
    disk covers the point.
    """
    k, is_numpy = _keypoints(kps)
    size = _size(size)
    h, w = size
    f, t, ok = _connection_ends(k)
    dy, dx = (f - t).unbind(-1)
    length = torch.sqrt((dy * dy + dx * dx).double())
    ok = ok & (length > 0)
    length = torch.where(ok, length, torch.ones_like(length))
    ny = (-point_radius * dx).double() / length  # n = r * (-dx, dy) / |.|
    nx = (point_radius * dy).double() / length
    fy, fx = f.double().unbind(-1)
    ty, tx = t.double().unbind(-1)
    vy = torch.stack([fy + ny, fy - ny, ty - ny, ty + ny], -1)  # (N,23,4)
    vx = torch.stack([fx + nx, fx - nx, tx - nx, tx + nx], -1)
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=k.device)
    vy, vx = torch.where(ok[..., None], vy, nan), torch.where(ok[..., None], vx, nan)
    quads = fill_polygons(vx, vy, n_ray=w, n_scan=h).any(1)  # ray along columns
    rows, cols = _grid(size, k.device)
    d2 = (rows - k[..., 0, None, None]) ** 2 + (cols - k[..., 1, None, None]) ** 2
    disks = ((d2 < point_radius**2) & _present(k)[..., None, None]).any(1)
    return _out(_close(quads | disks), is_numpy)


# ----------------------------------------------------------------------------------------------
# Deformable GAN body parts
# ----------------------------------------------------------------------------------------------


def _torso_scale(k: torch.Tensor) -> torch.Tensor:
    """(N,) float64 sqrt(((Rhip-Rsho)^2 + (Lhip-Lsho)^2) / 2), summed over both coordinates; NaN
    unless all four torso joints are present."""
    j = JOINT_INDEX
    kd = k.double()
    side_r = ((kd[:, j["Rhip"]] - kd[:, j["Rsho"]]) ** 2).sum(-1)
    side_l = ((kd[:, j["Lhip"]] - kd[:, j["Lsho"]]) ** 2).sum(-1)
    st = torch.sqrt((side_r + side_l) / 2.0)
    ok = _present(k)[:, _joint_ids(TORSO_POINTS, k.device)].all(-1)
    return torch.where(ok, st, torch.full_like(st, float("nan")))


def torso_scale(kps: Array) -> Array:
    """Deformable GAN `compute_st_distance`: (N,) float64 RMS length of the two torso sides
    sqrt(((Rhip-Rsho)^2 + (Lhip-Lsho)^2) / 2) in pixels; NaN if Rhip, Lhip, Lsho or Rsho is missing."""
    k, is_numpy = _keypoints(kps)
    return _out(_torso_scale(k), is_numpy)


def _inc_to(inc_to: float | Sequence[float], device) -> torch.Tensor:
    vals = [float(inc_to)] * len(LIMBS) if np.isscalar(inc_to) else [float(v) for v in inc_to]
    if len(vals) != len(LIMBS):
        raise ValueError(f"inc_to must be a number or {len(LIMBS)} numbers (one per limb), got {len(vals)}")
    return torch.tensor(vals, dtype=torch.float64, device=device)


def _limb_polygons(k: torch.Tensor, st: torch.Tensor, inc_to: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`estimate_polygon` for the 8 limbs: (N,8,4,2) float64 corners in (x, y) and (N,8) bool
    (both ends present and a finite torso scale). Unavailable limbs are NaN."""
    fr_id, to_id = _joint_ids([a for a, _ in LIMBS], k.device), _joint_ids([b for _, b in LIMBS], k.device)
    xy = k.flip(-1).double()  # the official (x, y) order
    fr, to = xy[:, fr_id], xy[:, to_id]  # (N,8,2)
    present = _present(k)
    ok = present[:, fr_id] & present[:, to_id] & torch.isfinite(st)[:, None]
    fr = fr + (fr - to) * LIMB_INC_FROM
    to = to + (to - fr) * inc_to[:, None]
    along = fr - to
    normal = torch.stack([-along[..., 1], along[..., 0]], -1)
    norm = torch.sqrt(normal[..., 0] * normal[..., 0] + normal[..., 1] * normal[..., 1])[..., None]
    offset = (st * LIMB_HALF_WIDTH)[:, None, None] * (normal / norm)
    poly = torch.stack([fr + offset, fr - offset, to - offset, to + offset], -2)
    # Coincident ends: the official fallback square-ish quad fr+1, fr-1, to-1, to+1.
    flat = torch.stack([fr + 1, fr - 1, to - 1, to + 1], -2)
    poly = torch.where((norm == 0)[..., None], flat, poly)
    poly = torch.where(ok[..., None, None], poly, torch.full_like(poly, float("nan")))
    return poly, ok


def part_polygons(kps: Array, inc_to: float | Sequence[float] = AFFINE_INC_TO) -> Array:
    """Deformable GAN limb rectangles (`estimate_polygon`), (N,8,4,2) float64 corners in (x, y).

    For each limb of :data:`LIMBS` (from, to): fr' = fr + 0.1 (fr - to), to' = to + inc_to (to - fr'),
    corners fr'+o, fr'-o, to'-o, to'+o with o = 0.2 * torso scale * unit normal of (fr' - to').
    ``inc_to``: one number or 8 (:data:`AFFINE_INC_TO` for the transforms, :data:`MASK_INC_TO`
    for the masks). NaN where an end is missing or the torso scale is undefined.
    """
    k, is_numpy = _keypoints(kps)
    poly, _ = _limb_polygons(k, _torso_scale(k), _inc_to(inc_to, k.device))
    return _out(poly, is_numpy)


def part_masks(kps: Array, size: Sequence[int] = IMAGE_SIZE) -> Array:
    """Deformable GAN `pose_masks` of the target pose: (N,10,H,W) float32 {0,1}, order :data:`PART_NAMES`.

    0 torso: the whole image (the official rectangle is commented out). 1 head: rows/columns
    [m - b, m + b) clipped to the image, m = int(mean (x, y) of the present nose/eyes/ears),
    b = int(0.4 * torso scale); zero without head joints. 2-9 limbs: :func:`part_polygons` with
    :data:`MASK_INC_TO` filled like skimage 0.14 `measure.grid_points_in_poly`; zero if an end
    is missing. Without the four torso joints (no scale; the official code fails) head and limbs
    are zero.
    """
    k, is_numpy = _keypoints(kps)
    size = _size(size)
    h, w = size
    st = _torso_scale(k)
    has_st = torch.isfinite(st)
    rows, cols = _grid(size, k.device)
    # Head box (mask_from_kp_array on the integer centre of mass).
    head_id = _joint_ids(HEAD_JOINTS, k.device)
    head_present = _present(k)[:, head_id]  # (N,5)
    count = head_present.sum(-1)
    total = (k[:, head_id] * head_present[..., None]).sum(1)  # (N,2) (y, x)
    centre = torch.div(total, count.clamp(min=1)[:, None], rounding_mode="trunc")  # astype(int)
    half = torch.trunc(HEAD_BOX_SCALE * torch.where(has_st, st, torch.zeros_like(st))).long()
    lo, hi = centre - half[:, None], centre + half[:, None]
    head = (
        (rows >= lo[:, 0, None, None])
        & (rows < hi[:, 0, None, None])
        & (cols >= lo[:, 1, None, None])
        & (cols < hi[:, 1, None, None])
    )
    head = head & ((count > 0) & has_st)[:, None, None]
    # Limbs: grid_points_in_poly(verts (row, col)) casts the ray along rows.
    poly, ok = _limb_polygons(k, st, _inc_to(MASK_INC_TO, k.device))
    limbs = fill_polygons(poly[..., 1], poly[..., 0], n_ray=h, n_scan=w).transpose(-1, -2)
    limbs = limbs & ok[..., None, None]
    torso = torch.ones(k.shape[0], 1, h, w, dtype=torch.bool, device=k.device)
    masks = torch.cat([torso, head.unsqueeze(1), limbs], 1)
    return _out(masks.float(), is_numpy)


def _fit_affine_tls(src: torch.Tensor, dst: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """skimage `AffineTransform.estimate(src, dst)` for a batch of point sets of varying size.

    src, dst (B,P,2) float64 (x, y); weight (B,P) bool marks the points that exist. Each set is
    centred and scaled to RMS distance sqrt(2); the parameters are the right singular vector of
    A = [[x y 1 0 0 0 X], [0 0 0 x y 1 Y]] (absent points give zero rows, which change nothing)
    for the smallest singular value, divided by -its last element, then de-normalised.
    Returns (B,3,3) float64 and (B,) bool (fit defined and not singular).
    """
    b, p, _ = src.shape
    wf = weight.double()

    def spread(pts, wf):
        """Centroid (B,2) and RMS distance to it (B,) of the weighted points."""
        n = wf.sum(-1).clamp(min=1)
        c = (pts * wf[..., None]).sum(1) / n[:, None]
        return c, torch.sqrt((((pts - c[:, None]) ** 2).sum(-1) * wf).sum(-1) / n)

    # Sets that cannot be fitted (< 3 points, all points equal) are replaced by a harmless triangle
    # so the batched SVD never sees NaN / inf; their result is discarded below.
    rms_s, rms_d = spread(src, wf)[1], spread(dst, wf)[1]
    fittable = (wf.sum(-1) >= 3) & (rms_s > 0) & (rms_d > 0) & torch.isfinite(rms_s) & torch.isfinite(rms_d)
    tri = torch.zeros(p, 2, dtype=torch.float64, device=src.device)
    tri[1, 0] = tri[2, 1] = 1.0
    tri_w = (torch.arange(p, device=src.device) < 3).double()
    src = torch.where(fittable[:, None, None], src, tri)
    dst = torch.where(fittable[:, None, None], dst, tri)
    wf = torch.where(fittable[:, None], wf, tri_w)

    def normalise(pts):
        """skimage `_center_and_normalize_points`: points (B,P,2), matrix (B,3,3) and its inverse."""
        c, rms = spread(pts, wf)
        s = math.sqrt(2) / rms
        q = (pts - c[:, None]) * s[:, None, None] * wf[..., None]
        m = torch.zeros(b, 3, 3, dtype=torch.float64, device=pts.device)
        m[:, 0, 0] = m[:, 1, 1] = s
        m[:, :2, 2] = -s[:, None] * c
        m[:, 2, 2] = 1.0
        m_inv = torch.zeros_like(m)
        m_inv[:, 0, 0] = m_inv[:, 1, 1] = 1.0 / s
        m_inv[:, :2, 2] = c
        m_inv[:, 2, 2] = 1.0
        return q, m, m_inv

    qs, src_m, _ = normalise(src)
    qd, _, dst_m_inv = normalise(dst)
    a = torch.zeros(b, 2 * p, 7, dtype=torch.float64, device=src.device)
    a[:, :p, 0], a[:, :p, 1], a[:, :p, 2], a[:, :p, 6] = qs[..., 0], qs[..., 1], wf, qd[..., 0]
    a[:, p:, 3], a[:, p:, 4], a[:, p:, 5], a[:, p:, 6] = qs[..., 0], qs[..., 1], wf, qd[..., 1]
    v = torch.linalg.svd(a, full_matrices=False).Vh[:, -1]  # (B,7)
    c3 = v[:, 6]
    safe_c3 = torch.where(c3.abs() > SINGULAR_EPS, c3, torch.ones_like(c3))
    h = torch.zeros(b, 3, 3, dtype=torch.float64, device=src.device)
    h[:, :2, :] = (-v[:, :6] / safe_c3[:, None]).view(b, 2, 3)
    h[:, 2, 2] = 1.0
    h = dst_m_inv @ h @ src_m
    det = h[:, 0, 0] * h[:, 1, 1] - h[:, 0, 1] * h[:, 1, 0]
    ok = fittable & (c3.abs() > SINGULAR_EPS) & torch.isfinite(h).all((-1, -2)) & (det.abs() > SINGULAR_EPS)
    return h, ok


def part_affines(src_kps: Array, tgt_kps: Array) -> tuple[Array, Array]:
    """Deformable GAN `affine_transforms`: backward maps of the 10 parts, target (x, y) -> source (x, y).

    Returns affines (N,10,2,3) float32 (rows [a0 a1 a2], [b0 b1 b2]: X = a0 x + a1 y + a2 ...) and
    valid (N,10) bool. Each is `estimate_transform('affine', src=target points, dst=source points)`
    on: torso the 4 torso joints (needs all four in both poses); head the head joints present in
    both plus Lsho and Rsho (needs >= 1 such joint and both shoulders in both); limbs the 4
    corners of :func:`part_polygons` with :data:`AFFINE_INC_TO`, each pose with its own torso scale.
    A limb missing in the source uses the mirrored (R<->L) source limb. Missing in the target,
    missing in both, or a singular fit give :data:`NO_POINT_AFFINE` (translation +1000: nothing
    lands in the image) and valid False.
    """
    ks, src_np = _keypoints(src_kps, "src_kps")
    kt, tgt_np = _keypoints(tgt_kps, "tgt_kps")
    if ks.shape[0] != kt.shape[0]:
        raise ValueError(f"src_kps and tgt_kps hold {ks.shape[0]} and {kt.shape[0]} poses")
    if ks.device != kt.device:
        raise ValueError(f"src_kps on {ks.device} but tgt_kps on {kt.device}")
    n, dev = ks.shape[0], ks.device
    ps, pt = _present(ks), _present(kt)
    both = ps & pt
    xy_s, xy_t = ks.flip(-1).double(), kt.flip(-1).double()
    slots = 7  # most points of a part: 5 head joints + 2 shoulders
    tgt = torch.zeros(n, NUM_PARTS, slots, 2, dtype=torch.float64, device=dev)
    src = torch.zeros_like(tgt)
    weight = torch.zeros(n, NUM_PARTS, slots, dtype=torch.bool, device=dev)
    # Torso.
    torso = _joint_ids(TORSO_POINTS, dev)
    tgt[:, 0, :4], src[:, 0, :4] = xy_t[:, torso], xy_s[:, torso]
    weight[:, 0, :4] = both[:, torso].all(-1, keepdim=True)
    # Head: joints present in both, plus the shoulders.
    head = _joint_ids(HEAD_JOINTS + ("Lsho", "Rsho"), dev)
    head_both = both[:, head[:5]]
    head_ok = head_both.any(-1) & both[:, head[5:]].all(-1)
    tgt[:, 1], src[:, 1] = xy_t[:, head], xy_s[:, head]
    weight[:, 1] = torch.cat([head_both, torch.ones_like(head_both[:, :2])], -1) & head_ok[:, None]
    # Limbs, with the mirrored source limb as fallback.
    inc_to = _inc_to(AFFINE_INC_TO, dev)
    poly_t, ok_t = _limb_polygons(kt, _torso_scale(kt), inc_to)
    poly_s, ok_s = _limb_polygons(ks, _torso_scale(ks), inc_to)
    mirror = torch.tensor(LIMB_MIRROR, device=dev)
    poly_src = torch.where(ok_s[..., None, None], poly_s, poly_s[:, mirror])
    limb_ok = ok_t & (ok_s | ok_s[:, mirror])
    tgt[:, 2:, :4], src[:, 2:, :4] = poly_t, poly_src
    weight[:, 2:, :4] = limb_ok[..., None]
    # Unused slots may hold NaN or -1 joints: zero them before the fit.
    tgt = torch.where(weight[..., None], tgt, torch.zeros_like(tgt))
    src = torch.where(weight[..., None], src, torch.zeros_like(src))
    h, ok = _fit_affine_tls(tgt.flatten(0, 1), src.flatten(0, 1), weight.flatten(0, 1))
    h, ok = h.view(n, NUM_PARTS, 3, 3)[..., :2, :], ok.view(n, NUM_PARTS)
    no_point = torch.tensor(NO_POINT_AFFINE, dtype=torch.float64, device=dev)
    affines = torch.where(ok[..., None, None], h, no_point).float()
    return _out(affines, src_np and tgt_np), _out(ok, src_np and tgt_np)
