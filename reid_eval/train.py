"""``python -m reid_eval.train``: train one re-ID model on a Market-1501-layout folder and evaluate it.

    python -m reid_eval.train --data runs/augment/synth-market/portion0.1-patn-s0 --model inception --recipe cpu
    python -m reid_eval.train --data /data/Market-1501-v15.09.15 --model resnet50 --recipe openreid

The training split comes from ``--data``; query and gallery from the real test split (``--test-data``,
default: ``--data``'s own ``query/`` and ``bounding_box_test/``, which augment.run links to the real ones).
The folder is registered with torchreid (reid_eval.datasets), the model is built from torchreid's model
factory (reid_eval.models, reid_eval.openreid_resnet) and trained by torchreid's ImageSoftmaxEngine
(``ReidSoftmaxEngine`` adds the device, autocast and channels-last handling), one epoch at a time;
evaluation uses reid_eval.metrics (Market CMC, mAP, Open-ReID's cuhk03-style CMC).

An epoch is one pass over the training set in random order (torchreid's RandomSampler, drop_last), or with
``--images-per-epoch N`` N images drawn uniformly with replacement: floor(N / batch) steps per epoch whatever
the set's size, so a small set trains as many steps, and sees as many images, as a set of N images (the
bench's ``none-iters`` control). Either way ``metrics.json`` records the optimizer steps (``iterations``) and
``images_seen`` (steps x batch). ``--loss siamese`` trains the Discriminative Embedding instead of the softmax IDE:
identification + verification on identity-balanced batches, as many per epoch (reid_eval.siamese).

Output (``--out``, default ``runs/reid/<data folder>/<model>-<recipe>-s<seed>``):
  metrics.json   Rank-1/5/10, mAP (fractions), the cuhk03-style CMC, whether ImageNet weights were used,
                 iterations and images seen, timings, the dataset fingerprint and summary, the recipe, the
                 device and precision;
  checkpoint.pt  {'state_dict', 'epoch', 'rank1', 'optimizer', 'scheduler', 'rng', 'meta', 'run_key'},
                 written after every epoch; loads with reid_eval.compat.load_checkpoint;
  train.log      everything printed.
Re-running the same command returns the finished metrics, or resumes from the last finished epoch
(same data, recipe, epochs, batch, seed, precision and images per epoch; otherwise it refuses unless
``--overwrite``).
Every random choice (initialisation, sampler, crops, flips, dropout) flows from ``--seed``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from augment.data.atomic import atomic_path, write_json_atomic
from augment.data.market import DatasetError
from augment.runtime import UsageError, resolve_device, rng_state, seed_everything, set_rng_state, tune_malloc
from reid_eval import compat
from reid_eval.datasets import ReidSplits, load_splits, register_market_dir
from reid_eval.engine import ReidSoftmaxEngine, build_datamanager, build_model, build_optimizer, pretrained_note
from reid_eval.models import MODEL_SPECS, MissingPretrainedWeightsError
from reid_eval.recipes import (
    MODEL_NAMES,
    RECIPES,
    ModelRecipe,
    Recipe,
    get_recipe,
    resolve_precision,
)
from reid_eval.siamese import NUM_INSTANCES, ReidSiameseEngine
from reid_eval.train_metrics import CHECKPOINT_FILE, LOG_FILE, METRICS_FILE, Timing, metrics_record

__all__ = [
    "TrainOptions",
    "run_training",
    "register_torchreid",
    "default_out",
    "ReidSoftmaxEngine",
    "build_parser",
    "main",
    "METRICS_FILE",
    "CHECKPOINT_FILE",
    "LOG_FILE",
    "UsageError",
]

DEFAULT_RUNS = Path("runs/reid")
LOSSES = ("softmax", "siamese")
ENGINES = {"softmax": ReidSoftmaxEngine, "siamese": ReidSiameseEngine}  # --loss -> the torchreid engine


@dataclass(frozen=True)
class TrainOptions:
    """One training run (the CLI flags). None means: the recipe's value, or the default described."""

    data: Path
    model: str = "inception"
    recipe: str = "openreid"
    out: Path | None = None  # default: default_out()
    test_data: Path | None = None  # real test split root; default: data
    epochs: int | None = None
    batch_size: int | None = None
    device: str = "auto"  # auto | cpu | cuda
    precision: str | None = None  # auto | fp32 | bf16
    seed: int = 0
    workers: int | None = None  # DataLoader workers; default 0 on CPU, min(8, cores) on CUDA
    pretrained: str = "auto"  # auto (cached ImageNet weights when the recipe uses them) | off | require
    print_freq: int | None = None  # batches between torchreid's progress lines; default: 4 lines per epoch
    overwrite: bool = False
    threads: int | None = None  # torch intra-op threads on CPU; default torch's
    # images drawn per epoch, with replacement (seeded); None: one pass over the set (a permutation). The bench's
    # none-iters control sets it to another set's size, so both train the same steps and see as many images.
    images_per_epoch: int | None = None
    # softmax: the IDE (identification); siamese: the Discriminative Embedding (identification + verification on
    # identity-balanced batches, reid_eval.siamese)
    loss: str = "softmax"

    def validate(self) -> None:
        checks = [
            (self.model in MODEL_NAMES, "--model", f"must be one of {', '.join(MODEL_NAMES)}, got {self.model!r}"),
            (self.recipe in RECIPES, "--recipe", f"must be one of {', '.join(RECIPES)}, got {self.recipe!r}"),
            (self.epochs is None or self.epochs >= 1, "--epochs", f"must be >= 1, got {self.epochs}"),
            (
                self.batch_size is None or self.batch_size >= 2,
                "--batch-size",
                f"must be >= 2 (BatchNorm needs two samples), got {self.batch_size}",
            ),
            (self.device in ("auto", "cpu", "cuda"), "--device", f"must be auto, cpu or cuda, got {self.device!r}"),
            (
                self.precision in (None, "auto", "fp32", "bf16"),
                "--precision",
                f"must be auto, fp32 or bf16, got {self.precision!r}",
            ),
            (self.seed >= 0, "--seed", f"must be >= 0, got {self.seed}"),
            (self.workers is None or self.workers >= 0, "--workers", f"must be >= 0, got {self.workers}"),
            (
                self.pretrained in ("auto", "off", "require"),
                "--pretrained",
                f"must be auto, off or require, got {self.pretrained!r}",
            ),
            (self.print_freq is None or self.print_freq >= 1, "--print-freq", f"must be >= 1, got {self.print_freq}"),
            (self.threads is None or self.threads >= 1, "--threads", f"must be >= 1, got {self.threads}"),
            (
                self.images_per_epoch is None or self.images_per_epoch >= 2,
                "--images-per-epoch",
                f"must be >= 2 (BatchNorm needs two samples), got {self.images_per_epoch}",
            ),
            (self.loss in LOSSES, "--loss", f"must be one of {', '.join(LOSSES)}, got {self.loss!r}"),
            (
                self.device != "cuda" or torch.cuda.is_available(),
                "--device",
                "cuda asked for but torch sees no CUDA device (use --device cpu or auto)",
            ),
        ]
        for ok, flag, message in checks:
            if not ok:
                raise UsageError(flag, message)


def default_out(opts: TrainOptions) -> Path:
    return DEFAULT_RUNS / Path(opts.data).resolve().name / f"{opts.model}-{opts.recipe}-s{opts.seed}"


# -------------------------------------------------------------------------------------------------- helpers
class _Tee:
    """A text stream writing to several streams (stdout and the log file)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def _logging_to(path: Path):
    with open(path, "a", buffering=1) as log:
        tee_out, tee_err = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
        with contextlib.redirect_stdout(tee_out), contextlib.redirect_stderr(tee_err):
            yield


def _write_json(path: Path, data: dict) -> None:
    write_json_atomic(path, data, default=_json_default)


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def register_torchreid() -> None:
    """torchreid patched (reid_eval.compat) and this project's models in its factory; idempotent."""
    from reid_eval import openreid_resnet
    from reid_eval.models import register_models

    compat.apply_torchreid_patches()
    register_models()
    openreid_resnet.register()


# ---------------------------------------------------------------------------------------------------- run
@dataclass(frozen=True)
class RunPlan:
    """Everything a run resolved from its options, before any training."""

    opts: TrainOptions
    recipe: Recipe
    epochs: int
    batch_size: int
    device: torch.device
    autocast_dtype: torch.dtype | None
    workers: int
    out: Path

    @property
    def precision_name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16"}[self.autocast_dtype]

    def run_key(self, splits: ReidSplits) -> dict:
        """What makes two runs the same run (a finished or resumable output must match it)."""
        key = {
            "data_fingerprint": splits.fingerprint,
            "model": self.opts.model,
            "recipe": self.recipe.to_json(),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.opts.seed,
            "precision": self.precision_name,
            "pretrained": self.opts.pretrained,
        }
        if self.opts.images_per_epoch is not None:  # only then: the keys of earlier runs stay valid
            key["images_per_epoch"] = self.opts.images_per_epoch
        if self.opts.loss != "softmax":  # likewise
            key["loss"] = self.opts.loss
        return json.loads(json.dumps(key))  # JSON types (lists, not tuples): compares equal after reading back


def _plan(opts: TrainOptions, splits: ReidSplits) -> RunPlan:
    recipe = get_recipe(opts.recipe)
    if opts.precision is not None:
        recipe = replace(recipe, precision=opts.precision)
    model_recipe = recipe.model(opts.model)
    if opts.pretrained == "require" and MODEL_SPECS[model_recipe.architecture].imagenet_file is None:
        raise UsageError(
            "--pretrained",
            f"require: {opts.model} ({model_recipe.architecture}) has no ImageNet weights; "
            "Open-ReID trains it from scratch (use --pretrained auto)",
        )
    epochs = opts.epochs or model_recipe.epochs
    if opts.epochs is not None and opts.epochs != model_recipe.epochs:
        # keep the recipe's step at the same fraction of training
        step = max(1, round(model_recipe.step_epochs * opts.epochs / model_recipe.epochs))
        recipe = replace(
            recipe, models={**recipe.models, opts.model: replace(model_recipe, epochs=opts.epochs, step_epochs=step)}
        )
    num_train = len(splits.train_items)
    if num_train < 2:
        raise DatasetError(
            f"{splits.train_root}: {num_train} training image; training needs at least 2 "
            "(BatchNorm needs two samples per batch)"
        )
    batch_size = opts.batch_size or recipe.batch_size
    per_epoch = opts.images_per_epoch or num_train  # drop_last: a batch larger than an epoch never runs
    if batch_size > per_epoch:
        print(f"[reid] note: batch size {batch_size} > {per_epoch} images per epoch: using batch {per_epoch}")
        batch_size = per_epoch
    most = NUM_INSTANCES * splits.num_train_pids  # a batch holds each identity once at most
    if opts.loss == "siamese" and (batch_size % NUM_INSTANCES or not 2 * NUM_INSTANCES <= batch_size <= most):
        raise UsageError(
            "--batch-size",
            f"{batch_size}: --loss siamese forms batches of identities x {NUM_INSTANCES} images; use a multiple of "
            f"{NUM_INSTANCES} from {2 * NUM_INSTANCES} to {most} ({splits.num_train_pids} training identities)",
        )
    recipe = replace(recipe, batch_size=batch_size)
    device = resolve_device(opts.device)
    try:
        dtype = resolve_precision(recipe.precision, device)
    except ValueError as e:
        raise UsageError("--precision", str(e).removeprefix("--precision ")) from None
    workers = opts.workers if opts.workers is not None else (0 if device.type == "cpu" else min(8, os.cpu_count() or 1))
    return RunPlan(opts, recipe, epochs, batch_size, device, dtype, workers, Path(opts.out or default_out(opts)))


def _existing(out: Path, key: dict, overwrite: bool) -> tuple[dict | None, dict | None]:
    """(finished metrics, resumable checkpoint) already in ``out`` for this run key."""
    metrics_path, ckpt_path = out / METRICS_FILE, out / CHECKPOINT_FILE
    if not metrics_path.exists() and not ckpt_path.exists():
        return None, None
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        previous = metrics.get("run_key")
    else:
        metrics = None
        previous = compat.load_checkpoint(ckpt_path).get("run_key")
    if previous != key:
        if not overwrite:
            diff = sorted(k for k in set(key) | set(previous or {}) if (previous or {}).get(k) != key.get(k))
            raise UsageError(
                "--out",
                f"{out}: holds another run (differs in {', '.join(diff)}); use another --out or pass --overwrite",
            )
        for name in (METRICS_FILE, CHECKPOINT_FILE, LOG_FILE):
            (out / name).unlink(missing_ok=True)
        return None, None
    if metrics is not None:
        return metrics, None
    return None, compat.load_checkpoint(ckpt_path)


def run_training(opts: TrainOptions) -> dict:
    """Train and evaluate one model (see the module docstring); returns the metrics dict written to
    metrics.json. A finished run with the same run key is returned as it is."""
    opts.validate()
    tune_malloc()  # as generation and generator training do (its docstring); the results are the same
    register_torchreid()
    splits = load_splits(opts.data, opts.test_data)
    plan = _plan(opts, splits)
    key = plan.run_key(splits)
    plan.out.mkdir(parents=True, exist_ok=True)
    done, resume = _existing(plan.out, key, opts.overwrite)
    if done is not None:
        print(
            f"[reid] {plan.out / METRICS_FILE}: already finished (Rank-1 {100 * done['rank1']:.1f}%); "
            "delete the folder to retrain"
        )
        return done
    with _logging_to(plan.out / LOG_FILE):
        return _train(plan, splits, key, resume)


@dataclass
class _Session:
    """A run's built training state: torchreid data manager, model, optimizer, engine."""

    name: str  # the torchreid dataset name of the training folder
    model_recipe: ModelRecipe
    dm: object  # torchreid ImageDataManager
    model: torch.nn.Module
    info: object  # reid_eval.models build info (parameters, ImageNet weights)
    note: str  # where the initial weights came from
    optimizer: torch.optim.Optimizer
    scheduler: object
    staged: bool  # staged learning rates (ImageNet base at a lower rate)
    engine: ReidSoftmaxEngine


def _build_session(plan: RunPlan, splits: ReidSplits) -> _Session:
    """Seed, then build in a fixed order (data manager, model, optimizer): the order the RNG is drawn in."""
    torchreid = compat.import_torchreid()
    if plan.opts.threads is not None and plan.device.type == "cpu":
        torch.set_num_threads(plan.opts.threads)
    if plan.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    seed_everything(plan.opts.seed)
    name, _ = register_market_dir(splits.train_root, splits.test_root, splits=splits)
    model_recipe = plan.recipe.model(plan.opts.model)
    height, width = model_recipe.input_size
    summary = splits.summary()
    print(
        f"[reid] {plan.opts.model} ({model_recipe.architecture}, {height}x{width}) recipe {plan.recipe.name}: "
        f"{summary['train']['images']} training images ({splits.generated_train_images} generated), "
        f"{splits.num_train_pids} identities; query {summary['query']['images']}, "
        f"gallery {summary['gallery']['images']}; {plan.epochs} epochs, batch {plan.batch_size}, "
        f"{plan.device.type} {plan.precision_name}, seed {plan.opts.seed}"
    )
    dm = build_datamanager(torchreid, name, plan, height, width)
    model, info, pretrained_choice = build_model(plan, splits.num_train_pids)
    note = pretrained_note(info, pretrained_choice)
    print(f"[reid] model: {info.num_params:,} parameters; {note}")
    optimizer, scheduler, staged = build_optimizer(torchreid, plan, model, info.imagenet_weights)
    engine = ENGINES[plan.opts.loss](
        dm,
        model,
        optimizer,
        scheduler,
        plan.device,
        plan.autocast_dtype,
        plan.recipe.channels_last,
        plan.recipe.label_smooth,
    )
    return _Session(name, model_recipe, dm, model, info, note, optimizer, scheduler, staged, engine)


def _restore(s: _Session, plan: RunPlan, resume: dict | None) -> tuple[int, list]:
    """(first epoch to train, history so far): from the resumable checkpoint, or (0, [])."""
    if resume is None:
        return 0, []
    s.model.load_state_dict(resume["state_dict"])
    s.optimizer.load_state_dict(resume["optimizer"])
    s.scheduler.load_state_dict(resume["scheduler"])
    set_rng_state(resume["rng"], plan.device)
    start_epoch = int(resume["epoch"])
    print(f"[reid] resuming {plan.out / CHECKPOINT_FILE} after epoch {start_epoch}/{plan.epochs}")
    return start_epoch, list(resume["meta"]["history"])


def _save_state(s: _Session, plan: RunPlan, epoch: int, rank1: float | None, meta: dict, key: dict) -> None:
    """checkpoint.pt: weights, optimizer, scheduler, every RNG state, and what makes it resumable."""
    _save_checkpoint(
        plan.out / CHECKPOINT_FILE,
        {
            "state_dict": s.model.state_dict(),
            "epoch": epoch,
            "rank1": rank1,
            "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict(),
            "rng": rng_state(plan.device),
            "meta": meta,
            "run_key": key,
        },
    )


def _train_epochs(s: _Session, plan: RunPlan, start_epoch: int, meta: dict, key: dict) -> float:
    """Train the remaining epochs (a checkpoint after each, history in ``meta``); returns the seconds."""
    history = meta["history"]
    print_freq = plan.opts.print_freq or max(1, len(s.dm.train_loader) // 4)
    s.engine.max_epoch = plan.epochs
    t_train = time.perf_counter()
    for epoch in range(start_epoch, plan.epochs):
        t0 = time.perf_counter()
        s.engine.epoch = epoch
        s.engine.train(print_freq=print_freq)  # torchreid: one epoch, progress lines, then scheduler.step()
        stats = s.engine.epoch_stats()
        seconds = time.perf_counter() - t0
        lr = s.optimizer.param_groups[-1]["lr"]
        history.append(
            {
                "epoch": epoch + 1,
                "seconds": round(seconds, 3),
                "loss": stats["loss"],
                "acc": stats["acc"],
                "lr": lr,
                "iterations": stats["batches"],  # optimizer steps of this epoch
            }
        )
        remaining = seconds * (plan.epochs - epoch - 1)
        print(
            f"[reid] epoch {epoch + 1}/{plan.epochs}: loss {stats['loss']:.4f}, train acc {stats['acc']:.1f}%, "
            f"{seconds:.1f} s ({stats['batches'] * plan.batch_size / max(seconds, 1e-9):.1f} img/s), "
            f"ETA {remaining / 60:.1f} min"
        )
        _save_state(s, plan, epoch + 1, None, meta, key)
    return time.perf_counter() - t_train


def _train(plan: RunPlan, splits: ReidSplits, key: dict, resume: dict | None) -> dict:
    """Build (or restore), train the remaining epochs, evaluate on the real query/gallery, write metrics.json."""
    t_start = time.perf_counter()
    s = _build_session(plan, splits)
    start_epoch, history = _restore(s, plan, resume)
    height, width = s.model_recipe.input_size
    meta = {
        "model": plan.opts.model,
        "architecture": s.info.name,
        "num_classes": splits.num_train_pids,
        "input_size": [height, width],
        "model_kwargs": s.model_recipe.model_kwargs,
        "pid_to_label": {str(k): v for k, v in splits.pid_to_label.items()},
        "history": history,
    }
    train_seconds = _train_epochs(s, plan, start_epoch, meta, key)
    t_eval = time.perf_counter()
    result = compat.evaluate_engine(
        s.engine,
        dist_metric=plan.recipe.dist_metric,
        normalize_feature=plan.recipe.normalize_feature,
        max_rank=min(50, len(splits.gallery_items)),
    )[s.name]
    eval_seconds = time.perf_counter() - t_eval
    _save_state(s, plan, plan.epochs, float(result["rank1"]), meta, key)
    timing = Timing(t_start, start_epoch, train_seconds, eval_seconds)
    metrics = metrics_record(s, plan, splits, result, timing, key, meta)
    _write_json(plan.out / METRICS_FILE, metrics)
    print(
        f"[reid] Rank-1 {100 * metrics['rank1']:.1f}%  Rank-5 {100 * metrics['rank5']:.1f}%  "
        f"Rank-10 {100 * metrics['rank10']:.1f}%  mAP {100 * metrics['mAP']:.1f}%  "
        f"(cuhk03-style Rank-1 {100 * metrics['cuhk03_rank1']:.1f}%); train {train_seconds:.0f} s, "
        f"eval {eval_seconds:.1f} s -> {plan.out / METRICS_FILE}"
    )
    return metrics


# ---------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m reid_eval.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", type=Path, required=True, help="Market-1501-layout folder (its training split is used)")
    p.add_argument("--model", choices=MODEL_NAMES, default="inception")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="openreid")
    p.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT_RUNS}/<data>/<model>-<recipe>-s<seed>)")
    p.add_argument("--test-data", type=Path, help="root of the real test split (default: --data)")
    p.add_argument("--epochs", type=int, help="epochs (default: the recipe's; the lr step scales with it)")
    p.add_argument("--batch-size", type=int, help="training batch (default: the recipe's)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        help="autocast (default: the recipe's, auto = bf16 where native)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, help="DataLoader workers (default 0 on CPU, min(8, cores) on CUDA)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--pretrained",
        choices=["auto", "off", "require"],
        default="auto",
        help="ImageNet weights for ResNet-50 from the torch cache: auto (if present), off, require",
    )
    p.add_argument("--print-freq", type=int, help="batches between progress lines (default: 4 per epoch)")
    p.add_argument("--overwrite", action="store_true", help="replace another run in --out")
    p.add_argument(
        "--images-per-epoch",
        type=int,
        help="draw N training images per epoch with replacement (seeded) instead of one pass over the set, e.g. "
        "another set's size to train as many steps as on it (default: one pass)",
    )
    p.add_argument(
        "--loss",
        choices=LOSSES,
        default="softmax",
        help="softmax: the IDE; siamese: the Discriminative Embedding (identification + verification on "
        f"identity-balanced batches of {NUM_INSTANCES} images per identity; batch a multiple of {NUM_INSTANCES})",
    )
    return p


def options_from_args(a: argparse.Namespace) -> TrainOptions:
    return TrainOptions(
        data=a.data,
        model=a.model,
        recipe=a.recipe,
        out=a.out,
        test_data=a.test_data,
        epochs=a.epochs,
        batch_size=a.batch_size,
        device=a.device,
        precision=a.precision,
        seed=a.seed,
        workers=a.workers,
        pretrained=a.pretrained,
        print_freq=a.print_freq,
        overwrite=a.overwrite,
        threads=a.threads,
        images_per_epoch=a.images_per_epoch,
        loss=a.loss,
    )


def main(argv: Sequence[str] | None = None) -> dict:
    """CLI entry: the metrics; bad input prints ``error: ...`` and exits with status 2."""
    args = build_parser().parse_args(argv)
    try:
        return run_training(options_from_args(args))
    except (UsageError, DatasetError, MissingPretrainedWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
