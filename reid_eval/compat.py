"""Workarounds for PyPI torchreid 0.2.5 (torchreid 1.4.0 code under torchreid.reid) on torch >= 2.6 / numpy 2.

Known problems and what this module does about them (``apply_torchreid_patches()`` applies 1-3, idempotently):

1. Checkpoint loading: torch >= 2.6 defaults ``torch.load(weights_only=True)``, and torchreid's checkpoints hold a
   numpy scalar (``rank1``), so ``torchreid.utils.load_checkpoint`` (used by ``resume_from_checkpoint`` and
   ``load_pretrained_weights``) raises UnpicklingError (upstream issue #592). ``load_checkpoint`` here keeps
   ``weights_only=True`` and allows exactly the numpy scalar/array/dtype globals; arbitrary pickles still fail
   unless ``trusted=True``. The patch replaces torchreid's function in ``torchreid.reid.utils.torchtools``
   (where its callers look it up) and ``torchreid.reid.utils``.
2. ``Engine.run`` with ``scheduler=None`` crashes in ``save_model`` (it calls ``scheduler.state_dict()``).
   Always build one with ``build_scheduler`` (``'constant'`` gives a LambdaLR with factor 1); the patch also makes
   ``Engine.save_model`` store ``None`` for a missing optimizer or scheduler.
3. No compiled ranking (rank_cy is not shipped) and the python ``eval_cuhk03`` uses ``np.bool`` (gone in
   numpy 2): the patch points ``torchreid.reid.metrics.evaluate_rank`` (what ``Engine._evaluate`` calls) and
   ``torchreid.reid.metrics.rank.evaluate_rank`` at ``reid_eval.metrics`` (identical Market CMC, mAP within
   1e-15 on tie-free distances; far faster, README and docs/measurements.md#re-id-metrics).
4. ``Engine.test`` returns Rank-1 only: ``evaluate_engine`` extracts query/gallery features with the engine and
   returns ``reid_eval.metrics.evaluate_all``'s dict (Rank-k, mAP, Open-ReID cuhk03 CMC) per test dataset.

Importing torchreid takes seconds and warns that Cython evaluation is unavailable; ``import_torchreid()``
imports it lazily with that one warning silenced.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from reid_eval import metrics

__all__ = [
    "import_torchreid",
    "load_checkpoint",
    "build_scheduler",
    "constant_scheduler",
    "apply_torchreid_patches",
    "evaluate_engine",
    "extract_features",
    "DISTANCES",
    "torchreid_evaluate_rank",
]

_CYTHON_WARNING = r"Cython evaluation \(very fast so highly recommended\) is unavailable"
_PATCH_MARK = "_reid_eval_patch"  # attribute set on every replacement, so re-applying is a no-op


def import_torchreid():
    """Import and return the torchreid package, silencing its 'Cython evaluation is unavailable' warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CYTHON_WARNING, category=UserWarning)
        import torchreid
    return torchreid


def _marked(fn: Callable) -> Callable:
    setattr(fn, _PATCH_MARK, True)
    return fn


# ------------------------------------------------------------------------------------ 1. checkpoints
def _numpy_safe_globals() -> list:
    """numpy objects torchreid checkpoints pickle (scalars such as rank1, arrays, their dtypes); none runs code."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    dtype_classes = [
        type(np.dtype(t))
        for t in (
            np.bool_,
            np.int8,
            np.int16,
            np.int32,
            np.int64,
            np.uint8,
            np.uint16,
            np.uint32,
            np.uint64,
            np.float16,
            np.float32,
            np.float64,
            np.complex64,
            np.complex128,
        )
    ]
    return [multiarray.scalar, multiarray._reconstruct, np.ndarray, np.dtype, *dtype_classes]


def load_checkpoint(path: str, map_location=None, trusted: bool = False):
    """Load a torchreid/torch checkpoint on torch >= 2.6.

    weights_only=True with numpy scalars/arrays allowed; other pickled objects raise UnpicklingError naming the
    file unless trusted=True (then weights_only=False: only for files you made). map_location defaults to CPU
    when CUDA is absent, as torchreid does.
    """
    if path is None:
        raise ValueError("checkpoint path is None")
    path = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if map_location is None and not torch.cuda.is_available():
        map_location = "cpu"
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if not trusted:
            raise pickle.UnpicklingError(
                f"{path}: holds objects outside tensors/containers/numpy scalars ({err}). "
                "Load it with trusted=True only if you made the file."
            ) from err
    return torch.load(path, map_location=map_location, weights_only=False)


@_marked
def _torchreid_load_checkpoint(fpath):
    """Replacement for torchreid.utils.load_checkpoint (same signature)."""
    return load_checkpoint(fpath)


# -------------------------------------------------------------------------------------- 2. scheduler
def _constant_factor(epoch: int) -> float:
    return 1.0


def constant_scheduler(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler that keeps the learning rate (so torchreid's save_model has a state_dict to save)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _constant_factor)


def build_scheduler(optimizer: torch.optim.Optimizer, lr_scheduler: str | None = "constant", **kwargs):
    """Always a scheduler: None/'constant' -> constant LambdaLR; else torchreid.optim.build_lr_scheduler
    (lr_scheduler='single_step'|'multi_step'|'cosine', stepsize=, gamma=, max_epoch=)."""
    if lr_scheduler in (None, "constant"):
        if kwargs:
            raise ValueError(f"a constant scheduler takes no options, got {sorted(kwargs)}")
        return constant_scheduler(optimizer)
    return import_torchreid().optim.build_lr_scheduler(optimizer, lr_scheduler=lr_scheduler, **kwargs)


@_marked
def _save_model(self, epoch, rank1, save_dir, is_best=False):
    """torchreid Engine.save_model that tolerates a None optimizer or scheduler."""
    from torchreid.reid.utils import save_checkpoint

    for name in self.get_model_names():
        optim, sched = self._optims[name], self._scheds[name]
        save_checkpoint(
            {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "rank1": rank1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
            },
            os.path.join(save_dir, name),
            is_best=is_best,
        )


# ---------------------------------------------------------------------------------------- 3. ranking
@_marked
def torchreid_evaluate_rank(
    distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, use_metric_cuhk03=False, use_cython=True
):
    """torchreid.metrics.evaluate_rank replacement: (cmc (max_rank,) float32, mAP).

    use_metric_cuhk03: torchreid's single-gallery-shot CMC (same-id same-camera removed, one random sample per
    identity, 10 repeats; seeded here) with the usual mAP. use_cython is ignored (always the vectorised code).
    """
    del use_cython
    result = metrics.rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    if not use_metric_cuhk03:
        return result.cmc, result.mAP
    cmc = metrics.open_reid_cmc(
        distmat,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        topk=len(result.cmc),
        separate_camera_set=False,
        single_gallery_shot=True,
        first_match_break=False,
    )
    return cmc.astype(np.float32), result.mAP


# ------------------------------------------------------------------------------------------ patching
def _replace(owner, name: str, replacement: Callable) -> bool:
    if getattr(getattr(owner, name), _PATCH_MARK, False):
        return False
    setattr(owner, name, replacement)
    return True


def apply_torchreid_patches() -> list[str]:
    """Apply fixes 1-3 to the imported torchreid (idempotent); returns the names patched by this call."""
    torchreid = import_torchreid()
    from torchreid.reid.engine import engine as engine_module
    from torchreid.reid.metrics import rank as rank_module
    from torchreid.reid.utils import torchtools

    targets = [
        (torchtools, "load_checkpoint", _torchreid_load_checkpoint),
        (torchreid.reid.utils, "load_checkpoint", _torchreid_load_checkpoint),
        (engine_module.Engine, "save_model", _save_model),
        (rank_module, "evaluate_rank", torchreid_evaluate_rank),
        (torchreid.reid.metrics, "evaluate_rank", torchreid_evaluate_rank),
    ]
    return [f"{getattr(owner, '__name__', owner)}.{name}" for owner, name, fn in targets if _replace(owner, name, fn)]


# ------------------------------------------------------------------------------------ 4. evaluation
def _squared_euclidean(qf: torch.Tensor, gf: torch.Tensor) -> torch.Tensor:
    """(Q, D), (G, D) -> (Q, G) squared Euclidean distances (torchreid's and Open-ReID's 'euclidean')."""
    return (qf.pow(2).sum(1, keepdim=True) + gf.pow(2).sum(1)[None, :]).addmm_(qf, gf.T, alpha=-2)


def _cosine(qf: torch.Tensor, gf: torch.Tensor) -> torch.Tensor:
    """(Q, D), (G, D) -> (Q, G) 1 - cosine similarity."""
    return 1 - F.normalize(qf, dim=1) @ F.normalize(gf, dim=1).T


DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "euclidean": _squared_euclidean,
    "cosine": _cosine,
}


@torch.no_grad()
def extract_features(engine, loader) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Features (N, D) float32 on the model's device, pids (N,), camids (N,) of a torchreid test loader,
    using the engine's own parse_data_for_eval / extract_features."""
    device = next(engine.model.parameters()).device
    features, pids, camids = [], [], []
    for data in loader:
        imgs, batch_pids, batch_camids = engine.parse_data_for_eval(data)
        features.append(engine.extract_features(imgs.to(device, non_blocking=True)).float())
        pids.append(np.asarray(batch_pids))
        camids.append(np.asarray(batch_camids))
    return torch.cat(features), np.concatenate(pids), np.concatenate(camids)


def evaluate_engine(
    engine,
    dist_metric: str = "euclidean",
    normalize_feature: bool = False,
    targets: list[str] | None = None,
    **evaluate_all_kwargs,
) -> dict[str, dict]:
    """Evaluate a torchreid engine's model on its test loaders: {dataset name: metrics.evaluate_all dict}.

    The model is put in eval mode (its previous mode is restored); distances are computed on the model's device.
    """
    if dist_metric not in DISTANCES:
        raise ValueError(f"dist_metric must be one of {sorted(DISTANCES)}, got {dist_metric!r}")
    names = list(engine.test_loader) if targets is None else targets
    missing = [n for n in names if n not in engine.test_loader]
    if missing:
        raise KeyError(f"no test loader for {missing}; the engine has {sorted(engine.test_loader)}")
    model = engine.model
    was_training = model.training
    model.eval()
    try:
        results = {}
        for name in names:
            qf, q_pids, q_camids = extract_features(engine, engine.test_loader[name]["query"])
            gf, g_pids, g_camids = extract_features(engine, engine.test_loader[name]["gallery"])
            if normalize_feature:
                qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
            distmat = DISTANCES[dist_metric](qf, gf)
            results[name] = metrics.evaluate_all(distmat, q_pids, g_pids, q_camids, g_camids, **evaluate_all_kwargs)
        return results
    finally:
        model.train(was_training)
