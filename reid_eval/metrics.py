# Long file: the exact CMC/mAP algorithm (input checks, identity index, two ranking passes, public API) reads as one.
"""Fast, exact re-ID ranking metrics: torchreid's Market-1501 CMC/mAP and Open-ReID's CMC variants.

Definitions reproduced (read from the official code, re-implemented here):

* torchreid ``eval_market1501`` (torchreid/reid/metrics/rank.py, python version): per query, gallery samples with
  the query's person id AND camera are removed; a query with no remaining true match is skipped (torchreid
  asserts at least one query is valid); CMC[k] = fraction of valid queries whose first true match sits at
  0-based position <= k of the remaining ranked list; AP = mean over the query's true matches of
  (matches so far) / (position + 1); mAP = mean AP over valid queries.
* Open-ReID ``cmc`` (reid/evaluation_metrics/ranking.py) with its three switches:
  ``separate_camera_set`` (also remove every gallery sample from the query's camera),
  ``single_gallery_shot`` (draw one gallery sample per identity, ``repeats`` times, and average),
  ``first_match_break`` (count only the first true match; otherwise every true match adds
  1/num_matches at "its position minus the matches before it"). Open-ReID's ``market1501`` setting equals
  torchreid's CMC; its ``cuhk03`` setting is (separate, single shot, no break); ``allshots`` is all off.
* Open-ReID ``mean_ap``: scikit-learn ``average_precision_score`` over the gallery minus same-id-same-camera
  samples. It equals torchreid's AP unless distances tie (sklearn scores tied samples together).

How it is fast (no sort of gallery indices, no per-query Python loop):
the distances of each chunk of queries are sorted by value only (numpy's SIMD sort on CPU, ``torch.sort``
elsewhere) with excluded gallery samples set to +inf; the rank of every true match is then one batched
``searchsorted`` of its distance into its row. The few true-match candidates per query (the gallery samples of
the query's id) are gathered from a padded identity table. Ties are broken by gallery index, as a stable
argsort would (torchreid's default quicksort argsort leaves the order of ties unspecified); only rows that
really have ties pay for an exact per-row count. Single-gallery-shot sampling is done for a whole chunk of
queries at once: one uniform number per (repeat, query, identity) picks a member of that identity, and the
rank of the sampled true match is a count over identities. Remaining Python loops: over query chunks and over
the ``repeats`` of the single-shot sampling (10), never over queries or gallery samples.

Device: the tensor's own device for torch input; CUDA when available for numpy input; CPU otherwise
(``device=`` overrides). On CUDA everything runs in torch. On CPU the (queries x gallery)-sized work (copy,
masking, sort, tie scans) runs in numpy and the small per-chunk torch ops run with one intra-op thread
(see ``_cpu_threads``). Memory is bounded by ``max_chunk_bytes`` per chunk of queries.
The scikit-learn AP is the step-wise definition of scikit-learn >= 0.19 (older releases interpolated).
Run ``python -m reid_eval.metrics --bench`` for timings against torchreid's python evaluation.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from augment.runtime import resolve_device

__all__ = [
    "NoValidQueryError",
    "RankResult",
    "rank_metrics",
    "evaluate_rank",
    "open_reid_cmc",
    "open_reid_mean_ap",
    "evaluate_all",
    "single_shot_uniforms",
    "DEFAULT_CHUNK_BYTES",
]

DEFAULT_CHUNK_BYTES = 64 << 20  # per chunk of queries; the sorted copy of the chunk dominates
EXCLUDE_SAME_ID_CAMERA = "same_id_camera"  # torchreid / Open-ReID default
EXCLUDE_SAME_CAMERA = "same_camera"  # Open-ReID separate_camera_set=True


class NoValidQueryError(ValueError):
    """No query has a true match left in the gallery (torchreid: 'all query identities do not appear in gallery')."""


# ----------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class _Problem:
    """Validated inputs. distmat stays as given (numpy or torch); ids and cameras are int64 numpy arrays."""

    distmat: np.ndarray | torch.Tensor
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_cams: np.ndarray
    g_cams: np.ndarray
    device: torch.device

    @property
    def num_query(self) -> int:
        return int(self.distmat.shape[0])

    @property
    def num_gallery(self) -> int:
        return int(self.distmat.shape[1])


def _integer_vector(name: str, values, length: int, axis_name: str) -> np.ndarray:
    arr = values.detach().cpu().numpy() if torch.is_tensor(values) else np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if len(arr) != length:
        raise ValueError(f"{name} has {len(arr)} entries but distmat has {length} {axis_name}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
            raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _problem(distmat, q_pids, g_pids, q_camids, g_camids, device) -> _Problem:
    if not torch.is_tensor(distmat):
        distmat = np.asarray(distmat)
    if distmat.ndim != 2 or distmat.shape[0] == 0 or distmat.shape[1] == 0:
        raise ValueError(
            f"distmat must be a non-empty (num_query, num_gallery) matrix, got shape {tuple(distmat.shape)}"
        )
    num_q, num_g = distmat.shape
    if device is None:
        if torch.is_tensor(distmat):
            device = distmat.device
        else:
            device = resolve_device("auto")
    return _Problem(
        distmat=distmat,
        q_pids=_integer_vector("q_pids", q_pids, num_q, "rows (queries)"),
        g_pids=_integer_vector("g_pids", g_pids, num_g, "columns (gallery samples)"),
        q_cams=_integer_vector("q_camids", q_camids, num_q, "rows (queries)"),
        g_cams=_integer_vector("g_camids", g_camids, num_g, "columns (gallery samples)"),
        device=torch.device(device),
    )


def _distance_rows(problem: _Problem, start: int, stop: int) -> torch.Tensor:
    """Rows [start, stop) of distmat as a contiguous floating tensor on problem.device (no copy for CPU numpy)."""
    rows = problem.distmat[start:stop]
    rows = rows.detach() if torch.is_tensor(rows) else torch.from_numpy(np.ascontiguousarray(rows))
    if not rows.is_floating_point():
        rows = rows.to(torch.float64)  # exact for integer distances below 2**53
    elif rows.dtype in (torch.float16, torch.bfloat16):
        rows = rows.float()
    return rows.to(problem.device, non_blocking=True).contiguous()


def _on_host(tensor: torch.Tensor, backend: str = "auto") -> bool:
    """Whether the (C, G)-sized work runs in numpy: on CPU, numpy's single-threaded SIMD kernels beat torch's
    (its sort is faster, and torch's thread pool stalls when the cores are shared)."""
    return backend == "numpy" or (backend == "auto" and tensor.device.type == "cpu")


def _raise_if_nan(rows: torch.Tensor, start: int) -> None:
    """NaN check for a chunk; a cheap sum first (NaN propagates), the exact scan only if the sum is not finite."""
    host = rows.cpu().numpy() if _on_host(rows) else None
    total = float(host.sum(dtype=np.float64)) if host is not None else float(rows.sum(dtype=torch.float64))
    if math.isnan(total):
        nan_rows = np.isnan(host).any(axis=1) if host is not None else torch.isnan(rows).any(dim=1).cpu().numpy()
        if nan_rows.any():
            bad = start + int(np.flatnonzero(nan_rows)[0])
            raise ValueError(f"distmat row {bad} (query {bad}) holds a NaN distance")


def _raise_if_candidate_not_finite(
    cand_dist: torch.Tensor, present: torch.Tensor, cand: torch.Tensor, start: int
) -> None:
    """Distances to the query's own identity must be finite (other entries may be +-inf: they rank last/first)."""
    bad = present & ~torch.isfinite(cand_dist)
    if bool(bad.any()):
        r, m = (int(i[0]) for i in torch.nonzero(bad, as_tuple=True))
        raise ValueError(
            f"distmat[{start + r}, {int(cand[r, m])}] = {float(cand_dist[r, m])}: distances between a "
            "query and gallery samples of its identity must be finite"
        )


@contextlib.contextmanager
def _cpu_threads(device: torch.device, num_threads: int = 1):
    """Run the CPU work with `num_threads` torch intra-op threads (restored afterwards).

    On CPU the work is dominated by numpy's single-threaded sort; the torch ops are per-chunk and small, and
    torch's thread pool only adds overhead to them: on shared 2-core machines a 2-thread pool made both passes
    several times slower than one thread (docs/measurements.md#re-id-metrics). No effect on CUDA.
    """
    previous = torch.get_num_threads()
    if device.type != "cpu" or previous == num_threads:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _one_cpu_thread(pass_fn):
    """Decorator for the passes (first argument: _Problem): see _cpu_threads."""

    @functools.wraps(pass_fn)
    def wrapper(problem, *args, **kwargs):
        with _cpu_threads(problem.device):
            return pass_fn(problem, *args, **kwargs)

    return wrapper


def _chunk_rows(problem: _Problem, bytes_per_row: int, max_chunk_bytes: int) -> int:
    return int(max(1, min(problem.num_query, max_chunk_bytes // max(1, bytes_per_row))))


# ------------------------------------------------------------------------------------ gallery identities
@dataclass(frozen=True)
class _GalleryIndex:
    """Gallery grouped by identity, once per call.

    Tables are padded with num_gallery (an index past the end). Shapes: I identities, M = largest identity,
    K cameras (query and gallery cameras together).
    """

    id_values: np.ndarray  # (I,) sorted gallery person ids
    by_index: torch.Tensor  # (I, M) members in gallery-index order
    by_camera: torch.Tensor  # (I, M) members in (camera, gallery-index) order
    size: torch.Tensor  # (I,) members per identity
    cam_count: torch.Tensor  # (I, K) members per identity and camera
    cam_start: torch.Tensor  # (I, K) first slot of each camera's block in by_camera
    g_cams: torch.Tensor  # (G,) gallery camera codes 0..K-1
    q_group: np.ndarray  # (Q,) identity row of each query, -1 when its id is not in the gallery
    q_cams: np.ndarray  # (Q,) query camera codes 0..K-1
    num_gallery: int

    @property
    def num_ids(self) -> int:
        return len(self.id_values)


def _member_table(group: np.ndarray, order: np.ndarray, num_ids: int, sizes: np.ndarray, fill: int) -> np.ndarray:
    """Rows of gallery indices per identity; `order` lists gallery indices grouped by identity."""
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    slot = np.arange(len(order)) - starts[group[order]]
    table = np.full((num_ids, max(1, int(sizes.max()))), fill, dtype=np.int64)
    table[group[order], slot] = order
    return table


def _gallery_index(problem: _Problem) -> _GalleryIndex:
    id_values, group = np.unique(problem.g_pids, return_inverse=True)
    cam_values = np.unique(np.concatenate([problem.q_cams, problem.g_cams]))
    g_cam = np.searchsorted(cam_values, problem.g_cams)
    q_cam = np.searchsorted(cam_values, problem.q_cams)
    num_ids, num_cams, num_g = len(id_values), len(cam_values), problem.num_gallery
    sizes = np.bincount(group, minlength=num_ids)
    index = np.arange(num_g)
    by_index = _member_table(group, np.argsort(group, kind="stable"), num_ids, sizes, num_g)
    by_camera = _member_table(group, np.lexsort((index, g_cam, group)), num_ids, sizes, num_g)
    cam_count = np.bincount(group * num_cams + g_cam, minlength=num_ids * num_cams).reshape(num_ids, num_cams)
    cam_start = np.cumsum(cam_count, axis=1) - cam_count
    q_group = np.searchsorted(id_values, problem.q_pids)
    q_group_clipped = np.minimum(q_group, num_ids - 1)
    q_group = np.where(id_values[q_group_clipped] == problem.q_pids, q_group_clipped, -1)
    dev = problem.device
    return _GalleryIndex(
        id_values=id_values,
        by_index=torch.from_numpy(by_index).to(dev),
        by_camera=torch.from_numpy(by_camera).to(dev),
        size=torch.from_numpy(sizes).to(dev),
        cam_count=torch.from_numpy(cam_count).to(dev),
        cam_start=torch.from_numpy(cam_start).to(dev),
        g_cams=torch.from_numpy(g_cam).to(dev),
        q_group=q_group,
        q_cams=q_cam,
        num_gallery=num_g,
    )


# ----------------------------------------------------------------------------------- ranking pass (exact)
@dataclass(frozen=True)
class _RankPass:
    """Per-query outcome of ranking the gallery (minus excluded samples). Skipped queries: -1 / NaN."""

    first_rank: np.ndarray  # (Q,) 0-based position of the first true match
    ap: np.ndarray  # (Q,) torchreid average precision
    ap_sklearn: np.ndarray  # (Q,) scikit-learn average_precision_score (ties scored together)
    allshots_hist: np.ndarray  # (G,) Open-ReID allshots increments, summed over queries

    @property
    def valid(self) -> np.ndarray:
        return self.first_rank >= 0


SORT_BACKENDS = ("auto", "numpy", "torch")


def _sorted_kept(
    dist: torch.Tensor, excluded: torch.Tensor | None, junk: tuple[torch.Tensor, torch.Tensor] | None, backend: str
) -> torch.Tensor:
    """(C, G) rows sorted ascending with excluded samples set to +inf (dist itself is left untouched).

    Exactly one of `excluded` (a (C, G) mask) and `junk` (row and column indices) is given.
    """
    if _on_host(dist, backend):
        kept = dist.cpu().numpy().copy()
        if excluded is not None:
            np.putmask(kept, excluded.cpu().numpy(), np.inf)
        else:
            kept[junk[0].cpu().numpy(), junk[1].cpu().numpy()] = np.inf
        kept.sort(axis=1)
        return torch.from_numpy(kept).to(dist.device)
    if excluded is not None:
        kept = dist.masked_fill(excluded, math.inf)
    else:
        kept = dist.clone()
        kept[junk] = math.inf
    return torch.sort(kept, dim=1).values


def _equal_before(
    dist: torch.Tensor, rows: np.ndarray, values: np.ndarray, g_index: np.ndarray, is_excluded, max_chunk_bytes: int
) -> np.ndarray:
    """Per tied true match t: kept samples of row rows[t] with distance == values[t] and gallery index < g_index[t].

    Ties are rare (a few per thousand queries on float32 distances), so this runs on the host in numpy,
    in blocks of rows. is_excluded(rows, cols) -> bool array for (row, gallery column) pairs.
    """
    out = np.zeros(len(rows), dtype=np.int64)
    block = max(1, max_chunk_bytes // (dist.shape[1] * dist.element_size()))
    for s in range(0, len(rows), block):
        r = rows[s : s + block]
        host_rows = dist[torch.from_numpy(r).to(dist.device)].cpu().numpy()
        t, g = np.nonzero(host_rows == values[s : s + block, None])
        keep = (g < g_index[s : s + block][t]) & ~is_excluded(r[t], g)
        out[s : s + block] = np.bincount(t[keep], minlength=len(r))
    return out


def _exclusion_rule(problem: _Problem, gallery: _GalleryIndex, exclusion: str):
    """``is_excluded(query_rows, gallery_cols) -> bool array``: the gallery samples a query never ranks."""
    g_cam_codes = gallery.g_cams.cpu().numpy()
    if exclusion == EXCLUDE_SAME_CAMERA:
        return lambda q_rows, cols: g_cam_codes[cols] == gallery.q_cams[q_rows]
    return lambda q_rows, cols: (
        (problem.g_pids[cols] == problem.q_pids[q_rows]) & (g_cam_codes[cols] == gallery.q_cams[q_rows])
    )


@_one_cpu_thread
def _rank_pass(
    problem: _Problem, gallery: _GalleryIndex, exclusion: str, sort_backend: str, max_chunk_bytes: int
) -> _RankPass:
    """Rank every true match of every query among the kept gallery samples, chunk by chunk of queries."""
    if sort_backend not in SORT_BACKENDS:
        raise ValueError(f"sort_backend must be one of {SORT_BACKENDS}, got {sort_backend!r}")
    num_q, num_g = problem.num_query, problem.num_gallery
    first_rank = np.full(num_q, -1, dtype=np.int64)
    ap = np.full(num_q, np.nan)
    ap_sklearn = np.full(num_q, np.nan)
    allshots = np.zeros(num_g)
    is_excluded = _exclusion_rule(problem, gallery, exclusion)
    per_row = num_g * 24 + gallery.by_index.shape[1] * 128  # distances, sorted copy (+ torch.sort scratch), (C, M) work
    chunk = _chunk_rows(problem, per_row, max_chunk_bytes)
    for start in range(0, num_q, chunk):
        stop = min(num_q, start + chunk)
        position, positive, cand_dist, less_equal = _match_positions(
            problem, gallery, exclusion, is_excluded, sort_backend, max_chunk_bytes, start, stop
        )
        first, ap_chunk, ap_sk_chunk, valid = _chunk_scores(position, positive, cand_dist, less_equal, allshots)
        first_rank[start:stop] = np.where(valid, first, -1)
        ap[start:stop] = np.where(valid, ap_chunk, np.nan)
        ap_sklearn[start:stop] = np.where(valid, ap_sk_chunk, np.nan)
    return _RankPass(first_rank, ap, ap_sklearn, allshots)


def _match_positions(problem, gallery, exclusion, is_excluded, sort_backend, max_chunk_bytes, start, stop):
    """For queries ``start:stop``: each same-identity gallery candidate's 0-based rank among the kept samples.

    Returns ``position`` (C, M) long, ``positive`` (C, M) bool (true matches that stay in the ranking),
    ``cand_dist`` (C, M) and ``less_equal`` (C, M): kept samples at distance <= the candidate's.
    """
    num_g, dev = problem.num_gallery, problem.device
    dist = _distance_rows(problem, start, stop)  # (C, G)
    q_group = torch.from_numpy(gallery.q_group[start:stop]).to(dev)  # (C,)
    q_cam = torch.from_numpy(gallery.q_cams[start:stop]).to(dev)  # (C,)
    found = q_group >= 0
    width = int(gallery.size[q_group[found]].max()) if bool(found.any()) else 1
    cand = gallery.by_index[q_group.clamp(min=0), :width]  # (C, M) same-id gallery, padded G
    present = (cand < num_g) & found[:, None]
    cand_safe = cand.clamp(max=num_g - 1)
    cand_dist = dist.gather(1, cand_safe)  # (C, M)
    _raise_if_candidate_not_finite(cand_dist, present, cand, start)
    same_cam = gallery.g_cams[cand_safe] == q_cam[:, None]
    positive = present & ~same_cam  # true matches that stay in the ranking

    if exclusion == EXCLUDE_SAME_CAMERA:
        kept = _sorted_kept(dist, gallery.g_cams[None, :] == q_cam[:, None], None, sort_backend)
    else:
        junk = present & same_cam
        kept = _sorted_kept(dist, None, (torch.nonzero(junk, as_tuple=True)[0], cand_safe[junk]), sort_backend)
    nan_rows = torch.isnan(kept[:, -1])  # NaN sorts last
    if bool(nan_rows.any()):
        bad = start + int(torch.nonzero(nan_rows)[0, 0])
        raise ValueError(f"distmat row {bad} (query {bad}) holds a NaN distance")
    less = torch.searchsorted(kept, cand_dist, right=False)  # kept samples strictly closer
    less_equal = torch.searchsorted(kept, cand_dist, right=True)
    position = less  # 0-based rank among kept samples
    tied = positive & (less_equal - less > 1)
    if bool(tied.any()):  # break ties by gallery index, as a stable argsort does
        r, m = torch.nonzero(tied, as_tuple=True)
        extra = _equal_before(
            dist,
            r.cpu().numpy(),
            cand_dist[r, m].cpu().numpy(),
            cand[r, m].cpu().numpy(),
            lambda rows, cols: is_excluded(rows + start, cols),
            max_chunk_bytes,
        )
        position = position.clone()
        position[r, m] += torch.from_numpy(extra).to(dev)
    return position, positive, cand_dist, less_equal


def _chunk_scores(position, positive, cand_dist, less_equal, allshots: np.ndarray):
    """First-match rank, AP (torchreid), AP (sklearn, ties scored together) and validity per query, as numpy;
    adds the chunk's Open-ReID allshots contributions to ``allshots`` (G,) in place."""
    num_g = allshots.shape[0]
    # true matches before each true match in (distance, gallery index) order: cand is index-sorted, so a
    # stable sort by distance gives that order; non-matches get +inf and add nothing to the cumulative sum
    key = torch.where(positive, cand_dist, torch.full_like(cand_dist, math.inf))
    key_sorted, order = torch.sort(key, dim=1, stable=True)
    pos_sorted = positive.gather(1, order).long()
    matches_before = torch.empty_like(pos_sorted).scatter_(1, order, pos_sorted.cumsum(1) - pos_sorted)
    matches_upto = torch.searchsorted(key_sorted.contiguous(), cand_dist, right=True)  # true matches <= d

    num_matches = positive.sum(1)
    valid = num_matches > 0
    first = torch.where(positive, position, num_g).min(dim=1).values
    precision = (matches_before + 1).double() / (position + 1).double()
    ap_chunk = torch.where(positive, precision, 0.0).sum(1) / num_matches.clamp(min=1)
    precision_sk = matches_upto.double() / less_equal.double()  # sklearn: ties scored together
    ap_sk_chunk = torch.where(positive, precision_sk, 0.0).sum(1) / num_matches.clamp(min=1)
    # Open-ReID allshots: each true match adds 1/num_matches at (its position - true matches before it);
    # summed on the host so the float sum order is fixed
    bins = (position - matches_before)[positive].cpu().numpy()
    weights = (1.0 / num_matches.double())[:, None].expand_as(position)[positive].cpu().numpy()
    allshots += np.bincount(bins, weights, minlength=num_g)
    return first.cpu().numpy(), ap_chunk.cpu().numpy(), ap_sk_chunk.cpu().numpy(), valid.cpu().numpy()


# ------------------------------------------------------------------------------- single-gallery-shot pass
def _repeat_streams(seed: int, repeats: int) -> list[np.random.Generator]:
    """One generator per repeat; rows are drawn in query order, so results do not depend on chunking."""
    return [np.random.default_rng([int(seed), r]) for r in range(repeats)]


def single_shot_uniforms(seed: int, repeats: int, num_query: int, num_ids: int) -> np.ndarray:
    """(repeats, num_query, num_ids) float64 uniforms in [0, 1) that the single-gallery-shot sampler uses.

    For repeat r, query q and the j-th gallery identity (ids sorted ascending), the sampled gallery sample is
    the floor(u * n)-th of that identity's n eligible samples ordered by (camera id, gallery index).
    Exposed so that a reference implementation can reproduce the draws exactly.
    """
    return np.stack([stream.random((num_query, num_ids)) for stream in _repeat_streams(seed, repeats)])


@_one_cpu_thread
def _single_shot_pass(
    problem: _Problem,
    gallery: _GalleryIndex,
    separate_camera_set: bool,
    repeats: int,
    seed: int,
    topk: int,
    max_chunk_bytes: int,
) -> tuple[np.ndarray, int]:
    """Counts (topk,) of the sampled true match's 0-based rank, over queries and repeats; number of valid queries.

    Per repeat and chunk: one uniform per (query, identity) picks a member among the identity's eligible
    samples; the identity's eligible samples are its table row minus, where excluded, the block of the
    query's camera (rows are (camera, index)-ordered, so the block is contiguous and skipped by one add).
    """
    num_q, num_g, dev = problem.num_query, problem.num_gallery, problem.device
    num_ids, width = gallery.num_ids, gallery.by_camera.shape[1]
    # one spare column: the slot of an identity with no eligible sample may point one past its members
    table = torch.cat([gallery.by_camera.clamp(max=num_g - 1), gallery.by_camera.new_zeros(num_ids, 1)], 1)
    table = table.reshape(-1)  # flat (I * (M + 1),)
    row_base = (torch.arange(num_ids, device=dev, dtype=torch.int32) * (width + 1))[None, :]  # (1, I)
    ids = torch.arange(num_ids, device=dev)
    streams = _repeat_streams(seed, repeats)
    counts = torch.zeros(topk, dtype=torch.int64, device=dev)
    num_valid = 0
    chunk = _chunk_rows(problem, num_g * 8 + num_ids * 120, max_chunk_bytes)
    for start in range(0, num_q, chunk):
        stop = min(num_q, start + chunk)
        n = stop - start
        dist = _distance_rows(problem, start, stop)
        _raise_if_nan(dist, start)
        q_group = torch.from_numpy(gallery.q_group[start:stop]).to(dev)
        q_cam = torch.from_numpy(gallery.q_cams[start:stop]).to(dev)
        found = q_group >= 0
        q_group_safe = q_group.clamp(min=0)[:, None]
        block_count = gallery.cam_count[:, q_cam].T.contiguous()  # (C, I) excluded block per identity
        block_start = gallery.cam_start[:, q_cam].T.int().contiguous()
        if not separate_camera_set:  # only the query's own identity loses its same-camera block
            block_count = torch.where(ids[None, :] == q_group[:, None], block_count, 0)
        block_count_i32 = block_count.int()
        eligible = gallery.size[None, :] - block_count  # (C, I)
        no_sample = eligible == 0
        eligible_f = eligible.double()
        valid = found & (eligible.gather(1, q_group_safe).squeeze(1) > 0)
        num_valid += int(valid.sum())
        match_cand = gallery.by_camera[q_group_safe.squeeze(1)]  # for finiteness check only
        match_dist = dist.gather(1, match_cand.clamp(max=num_g - 1))
        _raise_if_candidate_not_finite(match_dist, (match_cand < num_g) & valid[:, None], match_cand, start)
        for stream in streams:
            u = torch.from_numpy(stream.random((n, num_ids))).to(dev)
            pick = (u * eligible_f).int()  # floor(u * n) < n for u < 1
            slot = pick + block_count_i32 * (pick >= block_start)  # skip the excluded camera block
            chosen = table.index_select(0, (row_base + slot).view(-1)).view(n, num_ids)  # (C, I) gallery index
            chosen_dist = dist.gather(1, chosen).masked_fill_(no_sample, math.inf)
            match = chosen_dist.gather(1, q_group_safe)
            rank = (chosen_dist < match).sum(1)
            tie_rows = (chosen_dist == match).sum(1) > 1  # rare: break ties by gallery index
            if bool(tie_rows.any()):
                match_index = chosen.gather(1, q_group_safe)
                rank += (tie_rows[:, None] & (chosen_dist == match) & (chosen < match_index)).sum(1)
            counts += torch.bincount(rank[valid & (rank < topk)], minlength=topk)[:topk]
    return counts.cpu().numpy(), num_valid


# ------------------------------------------------------------------------------------------ public API
@dataclass(frozen=True)
class RankResult:
    """torchreid Market-1501 metrics plus per-query detail.

    cmc: (max_rank,) float32, fraction of valid queries matched within rank k+1.
    mAP: mean torchreid AP over valid queries. first_match_rank: (Q,) 0-based, -1 for skipped queries.
    ap: (Q,) float64, NaN for skipped queries.
    """

    cmc: np.ndarray
    mAP: float
    num_valid_queries: int
    num_skipped_queries: int
    first_match_rank: np.ndarray
    ap: np.ndarray


def _lowered_max_rank(max_rank: int, num_gallery: int) -> int:
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if num_gallery < max_rank:
        warnings.warn(
            f"gallery has only {num_gallery} samples; max_rank lowered from {max_rank} to {num_gallery} "
            "(as torchreid does)",
            stacklevel=3,
        )
        return num_gallery
    return max_rank


def _require_valid(num_valid: int, num_query: int) -> None:
    if num_valid == 0:
        raise NoValidQueryError(
            f"none of the {num_query} queries has a true match in the gallery after removing "
            "same-id same-camera samples "
            "(torchreid: all query identities do not appear in gallery)"
        )


def _first_match_cmc(first_rank: np.ndarray, length: int) -> np.ndarray:
    """Cumulative count of valid queries whose first match is at position <= k, k < length (int64)."""
    ranks = first_rank[first_rank >= 0]
    return np.cumsum(np.bincount(ranks[ranks < length], minlength=length)[:length])


def rank_metrics(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    *,
    device=None,
    sort_backend: str = "auto",
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> RankResult:
    """torchreid Market-1501 CMC and mAP with per-query detail. distmat: (Q, G) numpy array or torch tensor.

    sort_backend: 'auto' (numpy on CPU, torch elsewhere), 'numpy' or 'torch' (the GPU code path, also on CPU).
    """
    problem = _problem(distmat, q_pids, g_pids, q_camids, g_camids, device)
    max_rank = _lowered_max_rank(max_rank, problem.num_gallery)
    ranked = _rank_pass(problem, _gallery_index(problem), EXCLUDE_SAME_ID_CAMERA, sort_backend, max_chunk_bytes)
    num_valid = int(ranked.valid.sum())
    _require_valid(num_valid, problem.num_query)
    cmc = _first_match_cmc(ranked.first_rank, max_rank).astype(np.float32) / np.float32(num_valid)
    return RankResult(
        cmc=cmc,
        mAP=float(np.mean(ranked.ap[ranked.valid])),
        num_valid_queries=num_valid,
        num_skipped_queries=problem.num_query - num_valid,
        first_match_rank=ranked.first_rank,
        ap=ranked.ap,
    )


def evaluate_rank(
    distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50, **kwargs
) -> tuple[np.ndarray, float]:
    """Drop-in for torchreid's ``evaluate_rank`` (Market-1501 metric): (cmc (max_rank,) float32, mAP float).

    Skipped queries (no true match left) are counted in ``rank_metrics(...).num_skipped_queries``.
    Raises NoValidQueryError when no query is valid. kwargs: see ``rank_metrics``.
    """
    result = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, **kwargs)
    return result.cmc, result.mAP


def open_reid_cmc(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    topk: int = 50,
    separate_camera_set: bool = False,
    single_gallery_shot: bool = False,
    first_match_break: bool = False,
    repeats: int = 10,
    seed: int = 0,
    *,
    device=None,
    sort_backend: str = "auto",
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> np.ndarray:
    """Open-ReID's ``cmc``: (topk,) float64 cumulative match scores.

    cuhk03 setting: separate_camera_set=True, single_gallery_shot=True, first_match_break=False;
    market1501: first_match_break=True only (== torchreid CMC); allshots: all False.
    Single-gallery-shot draws come from ``seed`` (see ``single_shot_uniforms``); Open-ReID used the unseeded
    global numpy RNG, so only the distribution, not the draws, matches it. As in Open-ReID, single shot with
    first_match_break adds 1 (not 1/repeats) per repeat, so that combination can exceed 1.
    """
    if topk < 1 or repeats < 1:
        raise ValueError(f"topk and repeats must be >= 1, got topk={topk}, repeats={repeats}")
    problem = _problem(distmat, q_pids, g_pids, q_camids, g_camids, device)
    gallery = _gallery_index(problem)
    if single_gallery_shot:
        counts, num_valid = _single_shot_pass(
            problem, gallery, separate_camera_set, repeats, seed, topk, max_chunk_bytes
        )
        _require_valid(num_valid, problem.num_query)
        scores = counts * (1.0 if first_match_break else 1.0 / repeats)
        return np.cumsum(scores) / num_valid
    exclusion = EXCLUDE_SAME_CAMERA if separate_camera_set else EXCLUDE_SAME_ID_CAMERA
    ranked = _rank_pass(problem, gallery, exclusion, sort_backend, max_chunk_bytes)
    num_valid = int(ranked.valid.sum())
    _require_valid(num_valid, problem.num_query)
    if first_match_break:
        return _first_match_cmc(ranked.first_rank, topk) / num_valid
    hist = np.zeros(topk)
    hist[: min(topk, len(ranked.allshots_hist))] = ranked.allshots_hist[:topk]
    return np.cumsum(hist) / num_valid


def open_reid_mean_ap(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    *,
    device=None,
    sort_backend: str = "auto",
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> float:
    """Open-ReID's ``mean_ap`` (scikit-learn average precision, same-id same-camera gallery samples removed).

    Equal to torchreid's mAP for tie-free distances; tied distances are scored together as scikit-learn does.
    """
    problem = _problem(distmat, q_pids, g_pids, q_camids, g_camids, device)
    ranked = _rank_pass(problem, _gallery_index(problem), EXCLUDE_SAME_ID_CAMERA, sort_backend, max_chunk_bytes)
    _require_valid(int(ranked.valid.sum()), problem.num_query)
    return float(np.mean(ranked.ap_sklearn[ranked.valid]))


def evaluate_all(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    topk: int = 50,
    ranks: Sequence[int] = (1, 5, 10),
    repeats: int = 10,
    seed: int = 0,
    *,
    device=None,
    sort_backend: str = "auto",
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> dict:
    """Everything reported beside the published tables, from one ranking pass and one sampling pass.

    Returns fractions in [0, 1]:
      'rank1','rank5','rank10' (torchreid / Open-ReID market1501 CMC), 'mAP' (torchreid),
      'mAP_openreid' (scikit-learn AP), 'cuhk03_rank1/5/10' (Open-ReID cuhk03 CMC, seeded),
      'allshots_rank1/5/10', arrays 'cmc' (max_rank,) float32, 'cmc_cuhk03' and 'cmc_allshots' (topk,) float64,
      and counts 'num_queries', 'num_valid_queries', 'num_skipped_queries'.
    """
    problem = _problem(distmat, q_pids, g_pids, q_camids, g_camids, device)
    max_rank = _lowered_max_rank(max_rank, problem.num_gallery)
    for r in ranks:
        if not 1 <= r <= min(max_rank, topk):
            raise ValueError(f"rank {r} is outside 1..{min(max_rank, topk)} (max_rank={max_rank}, topk={topk})")
    gallery = _gallery_index(problem)
    ranked = _rank_pass(problem, gallery, EXCLUDE_SAME_ID_CAMERA, sort_backend, max_chunk_bytes)
    num_valid = int(ranked.valid.sum())
    _require_valid(num_valid, problem.num_query)
    cmc = _first_match_cmc(ranked.first_rank, max_rank).astype(np.float32) / np.float32(num_valid)
    hist = np.zeros(topk)
    hist[: min(topk, len(ranked.allshots_hist))] = ranked.allshots_hist[:topk]
    cmc_allshots = np.cumsum(hist) / num_valid
    counts, num_valid_cuhk03 = _single_shot_pass(problem, gallery, True, repeats, seed, topk, max_chunk_bytes)
    cmc_cuhk03 = np.cumsum(counts / repeats) / max(1, num_valid_cuhk03)
    out = {f"rank{r}": float(cmc[r - 1]) for r in ranks}
    out["mAP"] = float(np.mean(ranked.ap[ranked.valid]))
    out["mAP_openreid"] = float(np.mean(ranked.ap_sklearn[ranked.valid]))
    out.update({f"cuhk03_rank{r}": float(cmc_cuhk03[r - 1]) for r in ranks})
    out.update({f"allshots_rank{r}": float(cmc_allshots[r - 1]) for r in ranks})
    out.update(
        cmc=cmc,
        cmc_cuhk03=cmc_cuhk03,
        cmc_allshots=cmc_allshots,
        num_queries=problem.num_query,
        num_valid_queries=num_valid,
        num_skipped_queries=problem.num_query - num_valid,
        num_valid_queries_cuhk03=num_valid_cuhk03,
    )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Re-ID ranking metrics benchmark (ours vs torchreid python).")
    parser.add_argument("--bench", action="store_true", help="run the benchmark")
    parser.add_argument("--queries", type=int, default=3368)
    parser.add_argument("--gallery", type=int, default=15913)
    parser.add_argument("--ids", type=int, default=751)
    parser.add_argument("--cams", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--torchreid-queries",
        type=int,
        default=300,
        help="queries given to torchreid python evaluation (its full run is slow: extrapolated)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of ours")
    args = parser.parse_args(argv)
    if not args.bench:
        parser.error("nothing to do: pass --bench")
    from reid_eval.metrics_bench import run_bench

    run_bench(args)


if __name__ == "__main__":
    main()
