"""Features of a trained re-ID run, and the distances of Table 4 learnt and scored on them.

A run is ``reid_eval.train``'s folder (``metrics.json`` + ``checkpoint.pt``). :func:`run_features` rebuilds its
model from the checkpoint and passes the run's training set, query and gallery through it, as the training's own
evaluation does: the recipe's test transform (resize to the input size, ImageNet normalisation), the run's
precision (autocast) and memory format, batches of the recipe's test batch, ``compat.extract_features``' loop.
Feature layers (``FEATURE_LAYERS``):

- ``pool`` (default): the backbone's last feature maps, average-pooled: the IDE baseline's pool5 (ResNet-50:
  2048-d; the Open-ReID Inception: 1536-d), the features its XQDA and KISSME evaluation uses;
- ``output``: the model's eval output, what ``reid_eval.train`` scores (the Open-ReID heads: the logits).

:func:`evaluate_run` fits each learner of ``reid_eval.metric_learning`` on the training features (labels: the
training identities; cameras), scores it on the real query / gallery with ``evaluate_metric`` and writes
``metric-learning.json`` beside the run; a second call with the same settings returns that file. A learner the
data cannot define (e.g. PCA to more dimensions than samples) is recorded with its error, the others still run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from augment.data.atomic import write_json_atomic
from augment.runtime import resolve_device
from reid_eval import compat
from reid_eval.datasets import load_splits
from reid_eval.metric_learning import FeatureSet, MetricLearningError, evaluate_metric, fit_metric
from reid_eval.train_metrics import CHECKPOINT_FILE, METRICS_FILE

__all__ = [
    "FEATURE_LAYERS",
    "METRIC_FILE",
    "RunFeatures",
    "load_run_model",
    "extract",
    "run_features",
    "evaluate_run",
]

METRIC_FILE = "metric-learning.json"
RESULT_KEYS = ("rank1", "rank5", "rank10", "mAP", "cuhk03_rank1", "num_valid_queries")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}  # metrics.json's precision -> autocast dtype


def _pooled(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(model.featuremaps(x), 1).flatten(1)


# layer -> (model in eval mode, (B, 3, H, W) images) -> (B, D) features
FEATURE_LAYERS: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    "pool": _pooled,
    "output": lambda model, x: model(x),
}


@dataclass(frozen=True)
class RunFeatures:
    """The three splits' features (N, D) float32 on the device, with identities and cameras; the training
    split's identities are its labels 0..N-1 (``reid_eval.datasets``)."""

    train: FeatureSet
    query: FeatureSet
    gallery: FeatureSet
    layer: str
    seconds: float


class _Images(torch.utils.data.Dataset):
    """(path, id, camera) items as torchreid's test datasets serve them: {'img', 'pid', 'camid'}."""

    def __init__(self, items, transform):
        self.items, self.transform = list(items), transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        path, pid, camid = self.items[i]
        return {"img": self.transform(Image.open(path).convert("RGB")), "pid": pid, "camid": camid}


class _Extractor:
    """What ``compat.extract_features`` uses of an engine: the model, parse_data_for_eval, extract_features."""

    def __init__(self, model: nn.Module, layer: str, autocast_dtype, channels_last: bool):
        self.model, self.layer, self.autocast_dtype, self.channels_last = model, layer, autocast_dtype, channels_last

    @staticmethod
    def parse_data_for_eval(data: dict):
        return data["img"], data["pid"], data["camid"]

    @torch.no_grad()
    def extract_features(self, imgs: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            imgs = imgs.contiguous(memory_format=torch.channels_last)
        device_type = imgs.device.type
        with torch.autocast(device_type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            return FEATURE_LAYERS[self.layer](self.model, imgs).float()


def load_run_model(run: str | Path, device: str | torch.device = "auto") -> tuple[nn.Module, dict]:
    """(the run's model with its trained weights, in eval mode on the device, in the run's memory format;
    metrics.json). A Discriminative Embedding's verification head is left out: retrieval does not use it."""
    from reid_eval.models import build_reid_model
    from reid_eval.siamese import VERIFIER
    from reid_eval.train import register_torchreid

    run = Path(run)
    metrics = json.loads((run / METRICS_FILE).read_text())
    checkpoint = compat.load_checkpoint(run / CHECKPOINT_FILE, map_location="cpu")
    meta = checkpoint["meta"]
    register_torchreid()
    model, _ = build_reid_model(meta["architecture"], meta["num_classes"], pretrained=False, **meta["model_kwargs"])
    state = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(VERIFIER + ".")}
    model.load_state_dict(state)
    model = model.to(resolve_device(device)).eval()
    if metrics.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    return model, metrics


def extract(model: nn.Module, items, transform, *, layer: str = "pool", batch_size: int = 128, **run) -> FeatureSet:
    """One split's FeatureSet: (N, D) float32 features on the model's device, ids (N,), cameras (N,). ``run``:
    ``autocast_dtype`` (None: fp32) and ``channels_last``, as the run trained."""
    if layer not in FEATURE_LAYERS:
        raise ValueError(f"unknown feature layer {layer!r}; known: {sorted(FEATURE_LAYERS)}")
    loader = torch.utils.data.DataLoader(_Images(items, transform), batch_size=batch_size, shuffle=False)
    extractor = _Extractor(model, layer, run.get("autocast_dtype"), run.get("channels_last", False))
    features, pids, cams = compat.extract_features(extractor, loader)
    return FeatureSet(features, pids.astype(np.int64), cams.astype(np.int64))


def run_features(
    run: str | Path,
    *,
    layer: str = "pool",
    device: str | torch.device = "auto",
    data: str | Path | None = None,
    test_data: str | Path | None = None,
) -> RunFeatures:
    """The run's training, query and gallery features (its data as metrics.json names it, unless given)."""
    from reid_eval.recipes import build_transforms, get_recipe

    t0 = time.perf_counter()
    model, metrics = load_run_model(run, device)
    where = metrics["data"]
    splits = load_splits(data or where["train_root"], test_data or where["test_root"])
    height, width = metrics["model"]["input_size"]
    _, transform = build_transforms(get_recipe(metrics["recipe"]["name"]), height, width)
    options = dict(
        layer=layer,
        batch_size=metrics["recipe"]["batch_size_test"],
        autocast_dtype=PRECISIONS[metrics["precision"]],
        channels_last=metrics.get("channels_last", False),
    )
    train, query, gallery = (
        extract(model, items, transform, **options)
        for items in (splits.train_items, splits.query_items, splits.gallery_items)
    )
    return RunFeatures(train, query, gallery, layer, time.perf_counter() - t0)


def _scores(result: dict) -> dict:
    return {k: (int(result[k]) if k.startswith("num_") else float(result[k])) for k in RESULT_KEYS}


def evaluate_run(
    run: str | Path,
    names: Sequence[str],
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    layer: str = "pool",
    options: dict[str, dict] | None = None,
) -> dict:
    """Fit the learners ``names`` (``reid_eval.metric_learning.LEARNERS``; ``options[name]``: its config) on the
    run's training features and score them on its query / gallery; writes and returns metric-learning.json:
    ``{'settings', 'feature_dim', 'train_images', 'seconds', 'metrics': {name: scores + 'info', or 'error'}}``
    (scores as fractions, as metrics.json)."""
    run = Path(run)
    settings = {"names": list(names), "seed": seed, "layer": layer, "options": options or {}}
    settings["run_key"] = json.loads((run / METRICS_FILE).read_text())["run_key"]
    path = run / METRIC_FILE
    if path.exists() and (done := json.loads(path.read_text())).get("settings") == settings:
        return done
    features = run_features(run, layer=layer, device=device)
    t0 = time.perf_counter()
    results = {}
    for name in names:
        train = features.train
        try:
            metric = fit_metric(
                name, train.features, train.pids, train.cams, seed=seed, device=device, **(options or {}).get(name, {})
            )
        except MetricLearningError as e:
            results[name] = {"error": str(e)}
            print(f"[features] {name}: not defined on {run}: {e}")
            continue
        max_rank = min(50, len(features.gallery.pids))  # as reid_eval.train evaluates
        scored = evaluate_metric(metric, features.query, features.gallery, device=device, max_rank=max_rank)
        results[name] = {**_scores(scored), "info": metric.info}
    record = {
        "settings": settings,
        "feature_dim": int(features.train.features.shape[1]),
        "train_images": len(features.train.pids),
        "extract_seconds": round(features.seconds, 2),
        "fit_seconds": round(time.perf_counter() - t0, 2),
        "metrics": results,
    }
    write_json_atomic(path, record)
    return record
