"""metrics.json of a ``reid_eval.train`` run: the evaluation's figures, then how they were obtained (model,
recipe, steps and images seen, timings, data, device, versions, command)."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from reid_eval import compat
from reid_eval.datasets import ReidSplits

if TYPE_CHECKING:
    from reid_eval.train import RunPlan, _Session

__all__ = ["CMC_KEEP", "METRICS_FILE", "CHECKPOINT_FILE", "LOG_FILE", "Timing", "metrics_record"]

METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train.log"
CMC_KEEP = 20  # CMC ranks stored in metrics.json


def _versions() -> dict:
    import torchvision

    torchreid = compat.import_torchreid()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torchreid": getattr(torchreid, "__version__", "unknown"),
        "numpy": np.__version__,
    }


_RESULT_KEYS = (
    "rank1",
    "rank5",
    "rank10",
    "mAP",
    "mAP_openreid",
    "cuhk03_rank1",
    "cuhk03_rank5",
    "cuhk03_rank10",
    "allshots_rank1",
    "allshots_rank5",
    "allshots_rank10",
)


@dataclass(frozen=True)
class Timing:
    start: float  # perf_counter at the start of the run
    start_epoch: int  # first epoch trained in this process (> 0 when resumed)
    train_seconds: float
    eval_seconds: float


def metrics_record(
    s: _Session, plan: RunPlan, splits: ReidSplits, result: dict, t: Timing, key: dict, meta: dict
) -> dict:
    """metrics.json: the evaluation's figures, then how they were obtained."""
    history = meta["history"]
    batches = len(s.dm.train_loader)
    epochs_run = plan.epochs - t.start_epoch
    images = batches * plan.batch_size * epochs_run
    # steps counted by the engine, epoch by epoch (resumed epochs included; older histories lack the count)
    iterations = sum(int(h.get("iterations", batches)) for h in history)
    metrics = {k: result[k] for k in _RESULT_KEYS}
    metrics.update(
        {
            "units": "fractions in [0, 1]",
            "cmc": result["cmc"][:CMC_KEEP],
            "cmc_cuhk03": result["cmc_cuhk03"][:CMC_KEEP],
            "num_queries": result["num_queries"],
            "num_valid_queries": result["num_valid_queries"],
            "num_skipped_queries": result["num_skipped_queries"],
            "model": {
                "name": plan.opts.model,
                "architecture": s.info.name,
                "num_params": s.info.num_params,
                "input_size": list(s.model_recipe.input_size),
                "imagenet_weights": s.info.imagenet_weights,
                "weights_file": s.info.weights_file,
                "pretrained_note": s.note,
                "staged_lr": s.staged,
                **s.model_recipe.model_kwargs,
            },
            "recipe": plan.recipe.to_json(),
            "training": {
                "epochs": plan.epochs,
                "resumed_from_epoch": t.start_epoch,
                "batch_size": plan.batch_size,
                "iterations_per_epoch": batches,
                "iterations": iterations,  # optimizer steps in all
                "images_seen": iterations * plan.batch_size,
                "images_per_epoch": plan.opts.images_per_epoch or len(splits.train_items),
                "sampler": _sampler(plan.opts),
                "loss": plan.opts.loss,
                "train_images": len(splits.train_items),
                "train_ids": splits.num_train_pids,
                "generated_images": splits.generated_train_images,
                "seconds": round(t.train_seconds, 2),
                "seconds_per_epoch": round(t.train_seconds / max(1, epochs_run), 2),
                "images_per_second": round(images / max(t.train_seconds, 1e-9), 2),
                "final_loss": history[-1]["loss"] if history else None,
                "final_train_acc": history[-1]["acc"] if history else None,
                "history": history,
            },
            "evaluation": {
                "seconds": round(t.eval_seconds, 2),
                "dist_metric": plan.recipe.dist_metric,
                "feature": s.model_recipe.model_kwargs.get("eval_output", "model eval output"),
                "normalize_feature": plan.recipe.normalize_feature,
            },
        }
    )
    metrics.update(_run_info(plan, splits, key, t))
    return metrics


def _sampler(opts) -> str:
    if opts.loss == "siamese":
        return "identity-balanced batches"
    return "with replacement" if opts.images_per_epoch else "one pass (permutation)"


def _run_info(plan: RunPlan, splits: ReidSplits, key: dict, t: Timing) -> dict:
    """The data, device, precision, versions, command and paths of a run (the tail of metrics.json)."""
    return {
        "data": splits.summary(),
        "device": str(plan.device),
        "precision": plan.precision_name,
        "channels_last": plan.recipe.channels_last,
        "torch_threads": torch.get_num_threads(),
        "workers": plan.workers,
        "seed": plan.opts.seed,
        "seconds_total": round(time.perf_counter() - t.start, 2),
        "versions": _versions(),
        "command": " ".join(sys.argv),
        "run_key": key,
        "paths": {
            "out": str(plan.out),
            "checkpoint": str(plan.out / CHECKPOINT_FILE),
            "log": str(plan.out / LOG_FILE),
        },
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
