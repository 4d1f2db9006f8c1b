"""FID and IS from Inception features, as the reference code computes them.

- :func:`gaussian_stats`: mean and covariance of (N, D) features in float64 (``np.mean``, ``np.cov(rowvar=False)``,
  i.e. the unbiased N - 1 estimate), as pytorch-fid, torch-fidelity, TF FID and GFLA all fit them.
- :func:`frechet_distance`: ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2))`` with
  ``scipy.linalg.sqrtm`` (pytorch-fid's ``calculate_frechet_distance``, which GFLA copies): when the square root
  is not finite, ``eps`` (1e-6) is added to both diagonals and it is taken again; a complex result whose
  diagonal's imaginary part exceeds 1e-3 is an error, else its real part is used. torch-fidelity takes
  ``sum(sqrt(eigvals(S1 S2)).real)`` instead; the two agree to rounding on well-conditioned covariances.
- :func:`inception_score`: the TF-era code's IS (OpenAI's ``inception_score.py``, copied by PATN and
  Deformable GAN): softmax of the unbiased logits, ``splits`` (10) consecutive chunks
  ``[i N // splits, (i + 1) N // splits)``, each chunk's ``exp(mean_x KL(p(y|x) || p(y)))`` with p(y) the
  chunk's mean prediction; returns the mean and the (population) std over chunks. The chunks follow the
  images' order, so the order is part of the protocol (the official script's is ``os.listdir``'s);
  ``shuffle_seed`` permutes first with ``np.random.RandomState(seed).permutation`` as torch-fidelity does
  (its default seed is 2020). Computed in float64 (TF computed the softmax in float32).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) float64 of (N, D) features; N >= 2."""
    f = features.numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {f.shape}")
    return np.mean(f, axis=0, dtype=np.float64), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (float64, scipy sqrtm; module docstring)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics differ in shape: {mu1.shape} / {mu2.shape}, {sigma1.shape} / {sigma2.shape}")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in sqrtm(S1 S2)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(features_a, features_b) -> float:
    """FID between two (N, D) feature sets (pool3 features for the published protocols)."""
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def inception_score(logits, splits: int = 10, shuffle_seed: int | None = None) -> tuple[float, float]:
    """(mean, std) IS of (N, K) unbiased logits over ``splits`` chunks (module docstring); N >= splits."""
    z = torch.as_tensor(logits).double()
    n = z.shape[0]
    if z.dim() != 2 or n < splits:
        raise ValueError(f"need (N >= {splits}, K) logits, got shape {tuple(z.shape)}")
    if shuffle_seed is not None:
        z = z[torch.from_numpy(np.random.RandomState(shuffle_seed).permutation(n))]
    p = z.softmax(dim=1)
    log_p = z.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        q = p[lo:hi].mean(dim=0, keepdim=True)
        kl = (p[lo:hi] * (log_p[lo:hi] - q.log())).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
