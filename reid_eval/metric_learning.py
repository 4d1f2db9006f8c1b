"""Metric learning on re-ID features: Euclidean, KISSME and XQDA after the PCA the papers use, and their evaluation.

Every learner is a dataclass config with ``fit(features (N, D), pids (N,), cams (N,), *, seed) -> Metric``; a
``Metric`` maps query (Q, D) and gallery (G, D) features to a (Q, G) distance matrix in one batched torch
computation on the device, and ``evaluate_metric`` scores it with ``reid_eval.metrics.evaluate_all``.

* Preprocessing (the IDE baseline's evaluation code): each feature L2-normalised; PCA fitted on the training
  features (population covariance, components by decreasing variance), when the learner asks for it.
* KISSME (Koestinger et al., CVPR 2012): M = inv(Sigma_S) - inv(Sigma_D), Sigma_S / Sigma_D the second moments
  of the differences of similar pairs (every same-identity pair from two different cameras) and of as many
  sampled dissimilar pairs (different identity, different camera; seeded); M is made positive definite as the
  authors' toolbox does (when the Cholesky test fails, eigenvalues <= 1e-10 become 1e-6).
* XQDA (Liao et al., CVPR 2015): the training set split into two views (per identity: a seeded random half each,
  pairs from the same camera dropped); intra- and extra-personal covariances of all cross-view pairs from the
  paper's closed-form sums (no pair is enumerated); lambda = 0.001 added to the intra covariance; the subspace W
  of the generalised eigenproblem Sigma_E w = l Sigma_I w (eigenvalues l > 1, or a given number); and
  M = inv(W^T Sigma_I W) - inv(W^T Sigma_E W).
* Distance d(x, y) = (e(x) - e(y))^T M (e(x) - e(y)) with e the preprocessing and projection (squared, as the
  authors' MahDist and torchreid's 'euclidean').

Definitions, regularisation and sources: docs/metric-learning.md. Fitting runs in float64 on the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from augment.runtime import resolve_device
from reid_eval import compat, metrics

__all__ = [
    "MetricLearningError",
    "FeatureSet",
    "Metric",
    "PCA",
    "fit_pca",
    "EuclideanConfig",
    "KissmeConfig",
    "XqdaConfig",
    "XqdaResult",
    "LEARNERS",
    "fit_metric",
    "similar_pair_scatter",
    "sample_dissimilar_pairs",
    "kissme_matrix",
    "split_views",
    "xqda",
    "evaluate_metric",
    "evaluate_metric_rank",
    "fit_and_evaluate",
]

FIT_DTYPE = torch.float64
SCATTER_CHUNK_BYTES = 32 << 20  # per chunk of pair differences
# candidate pairs drawn per round by the dissimilar-pair sampler; fixed, so that the pairs depend on the seed only
_PAIR_DRAWS = 1 << 18


class MetricLearningError(ValueError):
    """The training features cannot define the metric (too few samples, pairs, identities or cameras)."""


# ---------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class FeatureSet:
    """One split's features (N, D) (torch tensor or numpy array), person ids (N,) and camera ids (N,)."""

    features: torch.Tensor | np.ndarray
    pids: np.ndarray
    cams: np.ndarray


def _labels(name: str, values, length: int) -> np.ndarray:
    arr = values.detach().cpu().numpy() if torch.is_tensor(values) else np.asarray(values)
    if arr.ndim != 1 or len(arr) != length:
        raise ValueError(f"{name} must be 1-D with {length} entries (one per feature row), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _features(features, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    x = features.detach() if torch.is_tensor(features) else torch.from_numpy(np.asarray(features))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must be a non-empty (N, D) matrix, got shape {tuple(x.shape)}")
    if dtype is None:
        dtype = x.dtype if x.is_floating_point() else torch.float32
    return x.to(device=device, dtype=dtype)


def _group_index(*keys: np.ndarray) -> np.ndarray:
    """(N,) index 0..G-1 of each row's group, the groups being the distinct tuples of the keys."""
    return np.unique(np.stack(keys, axis=1), axis=0, return_inverse=True)[1].reshape(-1)


# ---------------------------------------------------------------------------------------------------- metric
@dataclass(frozen=True)
class Metric:
    """d(x, y) = (e(x) - e(y))^T M (e(x) - e(y)), e(x) = (n(x) - mean) @ projection, n = L2 normalisation or none.

    M: (k, k) symmetric, None for the identity (then d is torchreid's squared Euclidean, computed exactly as
    ``reid_eval.compat.DISTANCES['euclidean']``). projection: (D, k) or None (k = D). mean: (D,) or None.
    dtype: the compute dtype, None for the features' own. info: what the fit saw (JSON-friendly).
    """

    name: str
    M: torch.Tensor | None = None
    projection: torch.Tensor | None = None
    mean: torch.Tensor | None = None
    l2_normalize: bool = False
    dtype: torch.dtype | None = None
    info: dict = field(default_factory=dict)

    def _device(self, features, device) -> torch.device:
        if device is not None:
            return resolve_device(device)
        for tensor in (self.M, self.projection, self.mean, features):
            if torch.is_tensor(tensor):
                return tensor.device
        return resolve_device("auto")

    def embed(self, features, *, device=None) -> torch.Tensor:
        """(N, D) features -> (N, k) embedding e(x) on the device, in the compute dtype."""
        x = _features(features, self._device(features, device), self.dtype)
        if self.l2_normalize:
            x = F.normalize(x, dim=1)
        if self.mean is not None:
            x = x - self.mean.to(x)
        if self.projection is not None:
            x = x @ self.projection.to(x)
        return x

    def distance(self, query, gallery, *, device=None) -> torch.Tensor:
        """(Q, D), (G, D) -> (Q, G) distances, batched on the device (the metric's, else the query tensor's)."""
        device = self._device(query, device)
        q, g = self.embed(query, device=device), self.embed(gallery, device=device)
        if self.M is None:
            return compat.DISTANCES["euclidean"](q, g)
        return _quadratic_distance(q, g, self.M.to(q))

    def input_space_matrix(self) -> torch.Tensor:
        """(D, D) quadratic form on differences of the (normalised) inputs: projection M projection^T."""
        if self.M is None and self.projection is None:
            raise ValueError(f"{self.name}: the identity has no stored dimension")
        m = self.M if self.M is not None else torch.eye(self.projection.shape[1], dtype=self.projection.dtype)
        return m if self.projection is None else self.projection @ m.to(self.projection) @ self.projection.T

    def to(self, device) -> Metric:
        move = lambda t: None if t is None else t.to(resolve_device(device))
        return replace(self, M=move(self.M), projection=move(self.projection), mean=move(self.mean))


def _quadratic_distance(q: torch.Tensor, g: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """(Q, k), (G, k), (k, k) symmetric -> (Q, G): q^T M q + g^T M g - 2 q^T M g (the authors' MahDist).

    Written like the squared Euclidean of ``compat`` so that M = I gives the same floating-point result.
    """
    qm, gm = q @ m, g @ m
    return ((qm * q).sum(1, keepdim=True) + (gm * g).sum(1)[None, :]).addmm_(qm, g.T, alpha=-2)


# ------------------------------------------------------------------------------------------------------- PCA
@dataclass(frozen=True)
class PCA:
    """mean (D,), components (D, k) orthonormal by decreasing variance, variances (k,) (population, 1/N)."""

    mean: torch.Tensor
    components: torch.Tensor
    variances: torch.Tensor

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, k) coordinates (x - mean) @ components."""
        return (x - self.mean) @ self.components


def fit_pca(x: torch.Tensor, dim: int) -> PCA:
    """PCA of the rows of x (N, D), keeping min(dim, D) components.

    Each component's sign is fixed (its largest-magnitude entry positive) so that the embedding does not
    depend on the eigensolver. Raises MetricLearningError when dim exceeds the rank N - 1 of centred data.
    """
    n, d = x.shape
    dim = min(int(dim), d)
    if dim < 1 or dim > n - 1:
        raise MetricLearningError(f"PCA to {dim} dimensions needs at least {dim + 1} training samples, got {n}")
    mean = x.mean(0)
    xc = x - mean
    if n < d:  # N x N work instead of D x D
        _, s, vh = torch.linalg.svd(xc, full_matrices=False)
        components, variances = vh[:dim].T, s[:dim] ** 2 / n
    else:
        values, vectors = torch.linalg.eigh(xc.T @ xc / n)
        components, variances = vectors.flip(1)[:, :dim], values.flip(0)[:dim].clamp(min=0)
    peak = components.abs().argmax(0)
    components = components * torch.sign(components[peak, torch.arange(dim, device=x.device)])
    return PCA(mean=mean, components=components.contiguous(), variances=variances)


@dataclass(frozen=True)
class _Prepared:
    """Training features in the space the learner works in: x (N, k), and the map there: mean, projection."""

    x: torch.Tensor
    pids: np.ndarray
    cams: np.ndarray
    mean: torch.Tensor | None
    projection: torch.Tensor | None


def _prepare(features, pids, cams, l2_normalize: bool, pca_dim: int | None, device) -> _Prepared:
    x = _features(features, resolve_device(device), FIT_DTYPE)
    pids, cams = _labels("pids", pids, len(x)), _labels("cams", cams, len(x))
    if not torch.isfinite(x).all():
        raise MetricLearningError("training features hold NaN or infinite values")
    if l2_normalize:
        x = F.normalize(x, dim=1)
    if pca_dim is None:
        return _Prepared(x, pids, cams, None, None)
    pca = fit_pca(x, pca_dim)
    return _Prepared(pca.transform(x), pids, cams, pca.mean, pca.components)


# ------------------------------------------------------------------------------------------------- Euclidean
@dataclass(frozen=True)
class EuclideanConfig:
    """Squared Euclidean distance, on L2-normalised features by default (the IDE baseline's evaluation)."""

    l2_normalize: bool = True
    name: ClassVar[str] = "euclidean"

    def fit(self, features=None, pids=None, cams=None, *, seed: int = 0, device=None) -> Metric:
        return Metric(self.name, l2_normalize=self.l2_normalize, info={"l2_normalize": self.l2_normalize})


# ---------------------------------------------------------------------------------------------------- KISSME
def _within_group_scatter(x: torch.Tensor, group: np.ndarray) -> tuple[torch.Tensor, int]:
    """Sum over unordered pairs {i, j} of the same group of (x_i - x_j)(x_i - x_j)^T, and the number of pairs.

    Closed form per group g of size n_g and mean mu_g: n_g * sum_i (x_i - mu_g)(x_i - mu_g)^T.
    """
    idx = torch.from_numpy(group).to(x.device)
    counts = torch.bincount(idx).to(x.dtype)
    sums = torch.zeros(len(counts), x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, idx, x)
    centred = x - (sums / counts[:, None])[idx]
    scatter = (centred * counts[idx][:, None]).T @ centred
    return scatter, int((counts * (counts - 1) / 2).sum())


def similar_pair_scatter(
    x: torch.Tensor, pids: np.ndarray, cams: np.ndarray, cross_camera: bool = True
) -> tuple[torch.Tensor, int]:
    """(D, D) sum of (x_i - x_j)(x_i - x_j)^T over every similar pair i < j, and the number of pairs.

    Similar: same identity, and (cross_camera) different cameras. No pair is enumerated: same-identity pairs
    minus same-identity same-camera pairs, each from per-group means.
    """
    scatter, count = _within_group_scatter(x, _group_index(pids))
    if cross_camera:
        same_camera, same_camera_count = _within_group_scatter(x, _group_index(pids, cams))
        scatter, count = scatter - same_camera, count - same_camera_count
    return scatter, count


def _has_dissimilar_pair(pids: np.ndarray, cams: np.ndarray, cross_camera: bool) -> bool:
    """Whether some ordered pair (i, j) has different ids (and cameras): N^2 minus the pairs sharing either key,
    by inclusion-exclusion over the squared group sizes."""
    shared = lambda *keys: int((np.bincount(_group_index(*keys)).astype(np.int64) ** 2).sum())
    total = len(pids) ** 2 - shared(pids) - (shared(cams) - shared(pids, cams) if cross_camera else 0)
    return total > 0


def _dissimilar_blocks(
    pids: np.ndarray, cams: np.ndarray, num: int, seed: int, cross_camera: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of dissimilar pairs (a, b), num in all: uniform ordered index pairs drawn with replacement in rounds
    of a fixed size, those of one identity (or one camera) rejected, kept in draw order (the reference code's
    rule: random pairs, filtered, the first as many as there are similar pairs)."""
    if num > 0 and not _has_dissimilar_pair(pids, cams, cross_camera):
        raise MetricLearningError("no dissimilar pair: every sample shares its identity or camera with all others")
    rng = np.random.default_rng(seed)
    remaining = num
    while remaining > 0:
        a, b = rng.integers(0, len(pids), (2, _PAIR_DRAWS))
        keep = pids[a] != pids[b]
        if cross_camera:
            keep &= cams[a] != cams[b]
        a, b = a[keep][:remaining], b[keep][:remaining]
        remaining -= len(a)
        if len(a):
            yield a, b


def sample_dissimilar_pairs(
    pids, cams, num: int, seed: int, cross_camera: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(num,) and (num,) indices of the dissimilar pairs KISSME uses for a given seed (see _dissimilar_blocks)."""
    pids = _labels("pids", pids, len(pids))
    cams = _labels("cams", cams, len(pids))
    blocks = list(_dissimilar_blocks(pids, cams, num, seed, cross_camera)) or [(np.zeros(0, np.int64),) * 2]
    return np.concatenate([a for a, _ in blocks]), np.concatenate([b for _, b in blocks])


def _pair_scatter(x: torch.Tensor, blocks: Iterator[tuple[np.ndarray, np.ndarray]]) -> torch.Tensor:
    """(D, D) sum of (x_a - x_b)(x_a - x_b)^T over the pairs, in chunks of bounded memory."""
    scatter = torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
    chunk = max(1, SCATTER_CHUNK_BYTES // (x.shape[1] * x.element_size()))
    for a, b in blocks:
        for start in range(0, len(a), chunk):
            ia = torch.from_numpy(a[start : start + chunk]).to(x.device)
            ib = torch.from_numpy(b[start : start + chunk]).to(x.device)
            diff = x[ia] - x[ib]
            scatter += diff.T @ diff
    return scatter


def _inverse(matrix: torch.Tensor, what: str) -> torch.Tensor:
    inverse, info = torch.linalg.inv_ex(matrix)
    if int(info) != 0:
        raise MetricLearningError(f"the {what} covariance is singular (too few pairs for its dimension?)")
    return inverse


def kissme_matrix(
    similar_cov: torch.Tensor, dissimilar_cov: torch.Tensor, psd_zero: float = 1e-10, psd_eps: float = 1e-6
) -> tuple[torch.Tensor, bool]:
    """M = inv(Sigma_S) - inv(Sigma_D), symmetrised; if M is not positive definite (Cholesky fails), every eigenvalue
    <= psd_zero is set to psd_eps (the authors' validateCovMatrix). Returns M (D, D) and whether it was clipped."""
    m = _inverse(similar_cov, "similar-pair") - _inverse(dissimilar_cov, "dissimilar-pair")
    m = (m + m.T) / 2
    if int(torch.linalg.cholesky_ex(m).info) == 0:
        return m, False
    values, vectors = torch.linalg.eigh(m)
    values = torch.where(values <= psd_zero, torch.full_like(values, psd_eps), values)
    return (vectors * values) @ vectors.T, True


@dataclass(frozen=True)
class KissmeConfig:
    """KISSME after PCA. pca_dim 200, L2 normalisation and cross-camera pairs as the IDE baseline's evaluation code;
    num_dissimilar None: as many dissimilar pairs as similar ones (the reference code's choice)."""

    pca_dim: int | None = 200
    l2_normalize: bool = True
    cross_camera: bool = True
    num_dissimilar: int | None = None
    psd_zero: float = 1e-10
    psd_eps: float = 1e-6
    name: ClassVar[str] = "kissme"

    def fit(self, features, pids, cams, *, seed: int = 0, device=None) -> Metric:
        prepared = _prepare(features, pids, cams, self.l2_normalize, self.pca_dim, device)
        x, dim = prepared.x, prepared.x.shape[1]
        similar, num_similar = similar_pair_scatter(x, prepared.pids, prepared.cams, self.cross_camera)
        if num_similar < dim:
            raise MetricLearningError(f"{num_similar} similar pairs cannot estimate a {dim}x{dim} covariance")
        num_dissimilar = num_similar if self.num_dissimilar is None else int(self.num_dissimilar)
        if num_dissimilar < dim:
            raise MetricLearningError(f"{num_dissimilar} dissimilar pairs cannot estimate a {dim}x{dim} covariance")
        blocks = _dissimilar_blocks(prepared.pids, prepared.cams, num_dissimilar, seed, self.cross_camera)
        dissimilar = _pair_scatter(x, blocks)
        m, clipped = kissme_matrix(similar / num_similar, dissimilar / num_dissimilar, self.psd_zero, self.psd_eps)
        info = {
            "l2_normalize": self.l2_normalize,
            "pca_dim": None if self.pca_dim is None else dim,
            "cross_camera": self.cross_camera,
            "num_similar_pairs": num_similar,
            "num_dissimilar_pairs": num_dissimilar,
            "psd_clipped": clipped,
            "seed": seed,
        }
        return Metric(self.name, m, prepared.projection, prepared.mean, self.l2_normalize, FIT_DTYPE, info)


# ------------------------------------------------------------------------------------------------------ XQDA
def split_views(pids, cams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two views for XQDA from one labelled set (the IDE baseline's rule): per identity, its samples in a seeded
    random order, the first floor(n/2) in view A and the next floor(n/2) in view B, position by position; a
    position whose two samples share a camera is dropped. Returns aligned index arrays (P,), (P,)."""
    pids = _labels("pids", pids, len(pids))
    cams = _labels("cams", cams, len(pids))
    order = np.lexsort((np.random.default_rng(seed).random(len(pids)), pids))  # by identity, random within
    _, starts, sizes = np.unique(pids[order], return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(sizes)), sizes)
    position, half = np.arange(len(order)) - starts[group], (sizes // 2)[group]
    view_a, view_b = order[position < half], order[(position >= half) & (position < 2 * half)]
    keep = cams[view_a] != cams[view_b]
    return view_a[keep], view_b[keep]


@dataclass(frozen=True)
class XqdaResult:
    """W (d, r) subspace; M (r, r) metric kernel; eigenvalues (r,) kept (decreasing); intra_cov / extra_cov (r, r)
    the projected covariances (intra with the regulariser); num_intra / num_extra the pairs they average over."""

    W: torch.Tensor
    M: torch.Tensor
    eigenvalues: torch.Tensor
    intra_cov: torch.Tensor
    extra_cov: torch.Tensor
    num_intra: int
    num_extra: int


def _cross_view_covariances(
    gal: torch.Tensor, prob: torch.Tensor, gal_labels: np.ndarray, prob_labels: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Liao et al.'s closed forms over all (gallery i, probe j) pairs, no pair enumerated.

    Sigma_I * n_I = sum_i m_c(i) x_i x_i^T + sum_j n_c(j) z_j z_j^T - S_x^T S_z - S_z^T S_x  (S: per-class sums);
    Sigma_E * n_E = m X^T X + n Z^T Z - s_x s_z^T - s_z s_x^T - Sigma_I * n_I  (s: total sums).
    """
    classes = np.unique(np.concatenate([gal_labels, prob_labels]))
    gi = torch.from_numpy(np.searchsorted(classes, gal_labels)).to(gal.device)
    pi = torch.from_numpy(np.searchsorted(classes, prob_labels)).to(gal.device)
    n_k = torch.bincount(gi, minlength=len(classes)).to(gal.dtype)
    m_k = torch.bincount(pi, minlength=len(classes)).to(gal.dtype)
    gal_sums = torch.zeros(len(classes), gal.shape[1], dtype=gal.dtype, device=gal.device).index_add_(0, gi, gal)
    prob_sums = torch.zeros_like(gal_sums).index_add_(0, pi, prob)
    cross = gal_sums.T @ prob_sums
    intra = (gal * m_k[gi][:, None]).T @ gal + (prob * n_k[pi][:, None]).T @ prob - cross - cross.T
    total_cross = torch.outer(gal.sum(0), prob.sum(0))
    extra = len(prob) * gal.T @ gal + len(gal) * prob.T @ prob - total_cross - total_cross.T - intra
    num_intra = int((n_k * m_k).sum())
    num_extra = len(gal) * len(prob) - num_intra
    if num_intra == 0 or num_extra == 0:
        raise MetricLearningError(f"XQDA needs intra- and extra-personal pairs, got {num_intra} and {num_extra}")
    return intra / num_intra, extra / num_extra, num_intra, num_extra


def _generalized_eig(intra: torch.Tensor, extra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigma_E w = l Sigma_I w (the paper): with Sigma_I = L L^T, the symmetric problem L^-1 Sigma_E L^-T u = l u,
    w = L^-T u. Returns W (d, d), eigenvalues (d,), both by decreasing eigenvalue."""
    chol = torch.linalg.cholesky(intra)
    half = torch.linalg.solve_triangular(chol, extra, upper=False)
    sym = torch.linalg.solve_triangular(chol, half.T, upper=False)
    values, vectors = torch.linalg.eigh((sym + sym.T) / 2)
    w = torch.linalg.solve_triangular(chol.T, vectors, upper=True)
    return w.flip(1), values.flip(0)


def _svd_of_ratio(intra: torch.Tensor, extra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' XQDA.m: left singular vectors and singular values of inv(Sigma_I) Sigma_E (decreasing)."""
    u, s, _ = torch.linalg.svd(torch.linalg.solve(intra, extra))
    return u, s


SUBSPACE_SOLVERS = {"eig": _generalized_eig, "svd": _svd_of_ratio}


def _subspace_dims(values: torch.Tensor, dims: int | None) -> int:
    """Eigenvalues > 1 (the paper), at most `dims` when given, at least 1 (the authors' rule)."""
    above_one = int((values > 1).sum())
    kept = above_one if dims is None else min(int(dims), above_one)
    return kept if kept > 0 else max(1, above_one)


def xqda(
    gal: torch.Tensor,
    prob: torch.Tensor,
    gal_labels,
    prob_labels,
    *,
    regularizer: float = 0.001,
    dims: int | None = None,
    solver: str = "eig",
) -> XqdaResult:
    """XQDA from two views gal (n, d) and prob (m, d) with their labels (the authors' XQDA.m interface).

    Both views are shifted by their pooled mean (pair differences do not change); when d > n + m the problem is
    solved in the span of the data (a reduced QR), which the authors show gives the same metric.
    """
    if solver not in SUBSPACE_SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SUBSPACE_SOLVERS)}, got {solver!r}")
    gal_labels = _labels("gal_labels", gal_labels, len(gal))
    prob_labels = _labels("prob_labels", prob_labels, len(prob))
    n, d = gal.shape
    centre = torch.cat([gal, prob]).mean(0)
    gal, prob = gal - centre, prob - centre
    basis = None
    if d > n + len(prob):
        basis, r = torch.linalg.qr(torch.cat([gal, prob]).T, mode="reduced")
        gal, prob = r[:, :n].T, r[:, n:].T
    intra, extra, num_intra, num_extra = _cross_view_covariances(gal, prob, gal_labels, prob_labels)
    intra = intra + regularizer * torch.eye(intra.shape[0], dtype=intra.dtype, device=intra.device)
    vectors, values = SUBSPACE_SOLVERS[solver](intra, extra)
    kept = _subspace_dims(values, dims)
    v = vectors[:, :kept]
    intra_k, extra_k = v.T @ intra @ v, v.T @ extra @ v
    m = _inverse(intra_k, "projected intra-personal") - _inverse(extra_k, "projected extra-personal")
    return XqdaResult(
        W=v if basis is None else basis @ v,
        M=(m + m.T) / 2,
        eigenvalues=values[:kept],
        intra_cov=intra_k,
        extra_cov=extra_k,
        num_intra=num_intra,
        num_extra=num_extra,
    )


@dataclass(frozen=True)
class XqdaConfig:
    """XQDA on L2-normalised features (the IDE baseline applies it without PCA; pca_dim adds one).
    regularizer: lambda added to Sigma_I (authors' 0.001); dims: None keeps eigenvalues > 1;
    solver: 'eig' the paper's generalised eigenproblem, 'svd' the authors' code (see docs/metric-learning.md)."""

    pca_dim: int | None = None
    l2_normalize: bool = True
    regularizer: float = 0.001
    dims: int | None = None
    solver: str = "eig"
    name: ClassVar[str] = "xqda"

    def fit(self, features, pids, cams, *, seed: int = 0, device=None) -> Metric:
        prepared = _prepare(features, pids, cams, self.l2_normalize, self.pca_dim, device)
        view_a, view_b = split_views(prepared.pids, prepared.cams, seed)
        if len(view_a) == 0:
            raise MetricLearningError("XQDA views are empty: no identity has two samples from different cameras")
        to_device = lambda idx: torch.from_numpy(idx).to(prepared.x.device)
        result = xqda(
            prepared.x[to_device(view_a)],
            prepared.x[to_device(view_b)],
            prepared.pids[view_a],
            prepared.pids[view_b],
            regularizer=self.regularizer,
            dims=self.dims,
            solver=self.solver,
        )
        info = {
            "l2_normalize": self.l2_normalize,
            "pca_dim": None if self.pca_dim is None else prepared.x.shape[1],
            "solver": self.solver,
            "regularizer": self.regularizer,
            "subspace_dim": int(result.W.shape[1]),
            "view_size": len(view_a),
            "num_intra_pairs": result.num_intra,
            "num_extra_pairs": result.num_extra,
            "seed": seed,
        }
        projection = result.W if prepared.projection is None else prepared.projection @ result.W
        return Metric(self.name, result.M, projection, prepared.mean, self.l2_normalize, FIT_DTYPE, info)


# ---------------------------------------------------------------------------------------------- registry, use
LEARNERS: dict[str, type] = {c.name: c for c in (EuclideanConfig, XqdaConfig, KissmeConfig)}


def fit_metric(name: str, features, pids, cams, *, seed: int = 0, device=None, **options) -> Metric:
    """Fit the learner `name` ('euclidean', 'xqda', 'kissme') with config `options` on training features."""
    if name not in LEARNERS:
        raise ValueError(f"unknown metric {name!r}; known: {sorted(LEARNERS)}")
    return LEARNERS[name](**options).fit(features, pids, cams, seed=seed, device=device)


def evaluate_metric(metric: Metric, query: FeatureSet, gallery: FeatureSet, *, device=None, **kwargs) -> dict:
    """``reid_eval.metrics.evaluate_all`` on the metric's (Q, G) distances (kwargs: evaluate_all's)."""
    distmat = metric.distance(query.features, gallery.features, device=device)
    return metrics.evaluate_all(distmat, query.pids, gallery.pids, query.cams, gallery.cams, **kwargs)


def evaluate_metric_rank(
    metric: Metric, query: FeatureSet, gallery: FeatureSet, max_rank: int = 50, *, device=None
) -> tuple[np.ndarray, float]:
    """``reid_eval.metrics.evaluate_rank`` on the metric's distances: (cmc (max_rank,) float32, mAP)."""
    distmat = metric.distance(query.features, gallery.features, device=device)
    return metrics.evaluate_rank(distmat, query.pids, gallery.pids, query.cams, gallery.cams, max_rank)


def fit_and_evaluate(
    train: FeatureSet,
    query: FeatureSet,
    gallery: FeatureSet,
    names: Sequence[str] = ("euclidean", "xqda", "kissme"),
    *,
    seed: int = 0,
    device=None,
    options: dict[str, dict] | None = None,
    **evaluate_kwargs,
) -> dict[str, dict]:
    """{name: evaluate_all dict plus 'metric_info'} for each learner fitted on `train` (options[name]: its config)."""
    results = {}
    for name in names:
        metric = fit_metric(
            name, train.features, train.pids, train.cams, seed=seed, device=device, **(options or {}).get(name, {})
        )
        results[name] = evaluate_metric(metric, query, gallery, device=device, **evaluate_kwargs)
        results[name]["metric_info"] = dict(metric.info)
    return results
