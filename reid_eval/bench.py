# Long file: the grid, its cells and their sets, the grouped trainings and the resume rules read as one.
"""``python -m reid_eval.bench``: the PATN Table-5 grid (re-ID Rank-1 vs the portion of real training data).

    python -m reid_eval.bench                                   # embedded dataset, CPU grid (below)
    python -m reid_eval.bench --portions 0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0 --ratios 2,3
    python -m reid_eval.bench --data /data/Market-1501-v15.09.15 --models resnet50,inception \\
        --recipe openreid --methods none,patn --checkpoint patn=runs/generators/patn-market/checkpoints/latest.pt

For each model: every portion p x {none (the reduced set alone), each requested generator method}, and the
ratios 2x / 3x x each method. A method token may end in '*' ("PATN*": target poses drawn from the kept set).
Each cell's training set is built by ``augment.run`` (reduced-only sets with ``--no-generate``; existing
outputs are reused, augment.run itself resumes), then reid_eval.train trains and evaluates the model on it,
always testing on the real query/gallery. Two cells whose training sets are identical (p = 1.0 is the same
real set for every method) are trained once; the second reuses the first's metrics.

Outputs under ``--out`` (default runs/bench):
  cells/<model>-<recipe>/<cell>/   metrics.json, checkpoint.pt, train.log (reid_eval.train), cell.json
  results.csv, results.parquet     one row per cell (percent columns end in _pct)
  table.md                         Markdown laid out like PATN Table 5, "ours / published" per cell,
                                   then our cells in detail and the published table with its source
  rank1.png                        Rank-1 vs p, one colour per method, ours solid, published dashed
Resumable: a cell whose metrics.json and cell.json exist (with the same cell settings) is skipped; delete a
cell folder to redo it. With no ``--data`` the embedded dataset is used (rendered if absent) and, for a
generating method without ``--checkpoint``, augment.run trains the method's embedded-dataset generator
first (runs/generators/<method>-synth).

Default grid and its cost (CPU): Inception, recipe ``cpu`` (64x32 input, 16 epochs, batch 64, bf16 autocast
on CPUs with native bf16), p in {0.1, 0.3, 0.5, 1.0} x {none, patn}: 8 cells, 7 trainings (p = 1.0 is the
same set for both methods). On CPU the trainings run two at a time (``--jobs``: one process per core, one
torch thread each). The seven training sets hold ~150 + 570 + 950 + 1,900 + 3 x 1,850 = ~9,100 images, so 16
epochs are ~146,000 image-steps; the PATN sets at p = 0.1, 0.3, 0.5 generate ~1,700 + 1,300 + 950 images;
reduced-only sets are links. What the grid costs (measured): the README and docs/measurements.md#re-id-benchmark.
``--epochs`` trades accuracy for time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from augment.data.market import DatasetError
from augment.execute import LOCAL_EXECUTOR, Executor
from augment.plan import PlanSpec
from augment.runtime import UsageError, bf16_is_native, resolve_device
from reid_eval import published
from reid_eval.bench_report import RESULT_COLUMNS, plot_rank1, render_markdown, write_outputs
from reid_eval.recipes import MODEL_NAMES, RECIPES

__all__ = [
    "BenchError",
    "Cell",
    "BenchOptions",
    "build_grid",
    "run_bench",
    "render_markdown",
    "plot_rank1",
    "collect_results",
    "write_outputs",
    "RESULT_COLUMNS",
    "build_parser",
    "main",
    "DEFAULT_PORTIONS",
    "DEFAULT_METHODS",
]

DEFAULT_PORTIONS = (0.1, 0.3, 0.5, 1.0)
DEFAULT_METHODS = ("none", "patn")
DEFAULT_OUT = Path("runs/bench")
CELL_FILE = "cell.json"


class BenchError(ValueError):
    """A bad bench option or a failed step; the message names the flag or the command."""


@dataclass(frozen=True)
class Cell:
    """One grid cell: a model trained on one augmented set (protocol 'portion' with p, or 'ratio')."""

    model: str
    method: str  # 'none' or a generator method, optionally with '*' (target poses from the kept set)
    protocol: str  # 'portion' | 'ratio'
    value: float  # p, or the ratio
    seed: int

    @property
    def base_method(self) -> str:
        return self.method.rstrip("*")

    @property
    def kept_poses(self) -> bool:
        return self.method.endswith("*")

    @property
    def column(self) -> float | str:
        """PATN Table-5 column: the portion or '2x'/'3x'."""
        if self.protocol == "portion":
            return published.column_key(portion=self.value)
        return published.column_key(ratio=int(self.value))

    @property
    def name(self) -> str:
        method = self.base_method + ("-kept" if self.kept_poses else "")
        return f"{self.protocol}{self.value:g}-{method}-s{self.seed}"

    @property
    def generates(self) -> bool:
        """Whether the set needs generated images (a checkpoint): not for 'none' nor for p = 1."""
        return self.method != "none" and (self.protocol == "ratio" or self.value < 1.0)

    def plan_spec(self) -> PlanSpec:
        """The augment.run plan of this cell's training set."""
        if self.protocol == "ratio":
            return PlanSpec("ratio", per_image=int(self.value) - 1, method=self.base_method, seed=self.seed)
        portion = float(f"{self.value:g}")  # as the command line spelled it (folder names use :g too)
        if self.method == "none":
            return PlanSpec("portion", portion=portion, generate=False, seed=self.seed)
        target_poses = "kept" if self.kept_poses else "removed"
        return PlanSpec("portion", portion=portion, target_poses=target_poses, method=self.base_method, seed=self.seed)


@dataclass(frozen=True)
class BenchOptions:
    data: Path | None = None  # None: the embedded dataset (augment.run's default)
    models: tuple[str, ...] = ("inception",)
    portions: tuple[float, ...] = DEFAULT_PORTIONS
    methods: tuple[str, ...] = DEFAULT_METHODS
    ratios: tuple[int, ...] = ()
    recipe: str = "cpu"
    out: Path = DEFAULT_OUT
    checkpoints: dict = field(default_factory=dict)  # base method -> generator checkpoint path
    seeds: tuple[int, ...] = (0,)
    epochs: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    threads: int | None = None
    gen_precision: str = "auto"  # auto | fp32 | bf16 (augment.run --precision)
    sets_dir: Path | None = None  # None: augment.run's default runs/augment/<dataset>/<plan>
    jobs: int | None = None  # training processes; None: one per core on CPU, 1 on CUDA
    test_data: Path | None = None

    def validate(self) -> None:
        bad = [m for m in self.models if m not in MODEL_NAMES]
        if bad or not self.models:
            raise BenchError(f"--models: {bad or 'none given'}; choose from {', '.join(MODEL_NAMES)}")
        if self.recipe not in RECIPES:
            raise BenchError(f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        if not self.methods:
            raise BenchError("--methods: give at least one (none, patn, ...)")
        if any(not (0 < p <= 1) for p in self.portions):
            raise BenchError(f"--portions must be in (0, 1], got {list(self.portions)}")
        if any(r < 2 for r in self.ratios):
            raise BenchError(f"--ratios must be >= 2, got {list(self.ratios)}")
        if not self.portions and not self.ratios:
            raise BenchError("nothing to run: --portions and --ratios are both empty")
        if any(s < 0 for s in self.seeds) or not self.seeds:
            raise BenchError(f"--seeds must be >= 0, got {list(self.seeds)}")
        if self.jobs is not None and self.jobs < 1:
            raise BenchError(f"--jobs must be >= 1, got {self.jobs}")
        if self.gen_precision not in ("auto", "fp32", "bf16"):
            raise BenchError(f"--gen-precision must be auto, fp32 or bf16, got {self.gen_precision!r}")
        unknown = sorted(set(self.checkpoints) - {m.rstrip("*") for m in self.methods})
        if unknown:
            raise BenchError(f"--checkpoint given for {unknown}, which is not among --methods {list(self.methods)}")
        for method, path in self.checkpoints.items():
            if not Path(path).is_file():
                raise BenchError(f"--checkpoint {method}={path}: no such file")


def build_grid(opts: BenchOptions) -> list[Cell]:
    """Cells in run order: per seed and model, the portions x methods, then the ratios x generating methods."""
    cells = []
    for seed in opts.seeds:
        for model in opts.models:
            cells += [Cell(model, m, "portion", float(p), seed) for p in opts.portions for m in opts.methods]
            cells += [Cell(model, m, "ratio", float(r), seed) for r in opts.ratios for m in opts.methods if m != "none"]
    return cells


# ----------------------------------------------------------------------------------------------- running
def _gen_precision(choice: str, device: str) -> str:
    if choice != "auto":
        return choice
    return "bf16" if bf16_is_native(resolve_device(device)) else "fp32"


def _build_set(cell: Cell, opts: BenchOptions, executor: Executor) -> tuple[Path, float]:
    """Build the cell's training set with augment.run's library function; returns (set folder, seconds)."""
    from augment.run import RunOptions, run_augmentation

    spec = cell.plan_spec()
    run_opts = RunOptions(
        data=opts.data,
        checkpoint=opts.checkpoints.get(cell.base_method),
        out=Path(opts.sets_dir) / cell.name if opts.sets_dir is not None else None,
        device=opts.device,
        precision=_gen_precision(opts.gen_precision, opts.device),
    )
    print(f"[bench] building the set {spec.name()} of cell {cell.name} ({executor.name} executor)")
    t0 = time.perf_counter()
    try:
        summary = run_augmentation(spec, run_opts, executor)
    except (ValueError, FileNotFoundError) as e:  # UsageError, DatasetError, CheckpointError, missing weights
        raise BenchError(f"building the set of cell {cell.name} failed: {e}") from e
    return Path(summary.out), time.perf_counter() - t0


def _cell_dir(cell: Cell, opts: BenchOptions) -> Path:
    return Path(opts.out) / "cells" / f"{cell.model}-{opts.recipe}" / cell.name


def _cell_settings(cell: Cell, opts: BenchOptions) -> dict:
    """Everything that makes a finished cell reusable (compared with cell.json)."""

    def text(path) -> str | None:
        return str(path) if path is not None else None

    checkpoint = opts.checkpoints.get(cell.base_method) if cell.generates else None
    return {
        "cell": asdict(cell),
        "recipe": opts.recipe,
        "epochs": opts.epochs,
        "batch_size": opts.batch_size,
        "data": text(opts.data),
        "test_data": text(opts.test_data),
        "checkpoint": text(checkpoint),
    }


def _finished(cell_dir: Path, settings: dict) -> dict | None:
    """cell.json of a finished cell with these settings, else None."""
    path = cell_dir / CELL_FILE
    if not (path.exists() and (cell_dir / "metrics.json").exists()):
        return None
    info = json.loads(path.read_text())
    return info if info.get("settings") == settings else None


def _train_key(splits_fingerprint: str, cell: Cell, opts: BenchOptions) -> tuple:
    return (splits_fingerprint, cell.model, opts.recipe, cell.seed, opts.epochs, opts.batch_size)


def _train_cell(job: dict) -> dict:
    """Train one cell (in this process or a worker process); returns its metrics.

    In a worker, the training's own output goes to the cell's train.log only.
    """
    from reid_eval.train import TrainOptions, run_training

    opts = TrainOptions(**job["options"])
    if not job["verbose"]:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
            return run_training(opts)
    return run_training(opts)


def _row(cell: Cell, opts: BenchOptions, metrics: dict, info: dict) -> dict:
    data, training = metrics["data"], metrics["training"]
    return {
        "model": cell.model,
        "recipe": opts.recipe,
        "method": cell.method,
        "protocol": cell.protocol,
        "p": cell.value if cell.protocol == "portion" else np.nan,
        "ratio": cell.value if cell.protocol == "ratio" else np.nan,
        "column": str(cell.column),
        "seed": cell.seed,
        "rank1_pct": 100 * metrics["rank1"],
        "rank5_pct": 100 * metrics["rank5"],
        "rank10_pct": 100 * metrics["rank10"],
        "mAP_pct": 100 * metrics["mAP"],
        "cuhk03_rank1_pct": 100 * metrics["cuhk03_rank1"],
        "train_images": data["train"]["images"],
        "real_images": data["real_train_images"],
        "generated_images": data["generated_train_images"],
        "train_ids": data["train"]["identities"],
        "epochs": training["epochs"],
        "imagenet_weights": metrics["model"]["imagenet_weights"],
        "train_seconds": training["seconds"],
        "eval_seconds": metrics["evaluation"]["seconds"],
        "set_seconds": info.get("set_seconds", 0.0),
        "seconds": info.get("seconds", 0.0),
        "reused_from": info.get("reused_from") or "",
        "cell_dir": info["cell_dir"],
        "set_dir": info["set_dir"],
    }


@dataclass
class _Pending:
    """A cell whose set is built and whose training (or reuse) is still to come."""

    cell: Cell
    cell_dir: Path
    settings: dict
    set_dir: Path
    set_seconds: float
    key: tuple
    train_images: int


def _jobs(opts: BenchOptions, trainings: int) -> int:
    if opts.jobs is not None:
        return max(1, min(opts.jobs, trainings))
    on_gpu = resolve_device(opts.device).type == "cuda"
    return 1 if on_gpu else max(1, min(os.cpu_count() or 1, trainings))


def _finish_cell(p: _Pending, metrics: dict, seconds: float, source: Path | None) -> dict:
    info = {
        "settings": p.settings,
        "train_key": list(p.key),
        "set_dir": str(p.set_dir),
        "cell_dir": str(p.cell_dir),
        "set_seconds": round(p.set_seconds, 2),
        "seconds": round(seconds, 2),
        "reused_from": str(source) if source is not None else None,
        "rank1_pct": 100 * metrics["rank1"],
    }
    if source is not None:  # the metrics as the training wrote them (JSON), not the in-memory dict (numpy arrays)
        metrics = {**json.loads((source / "metrics.json").read_text()), "reused_from": str(source)}
        (p.cell_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (p.cell_dir / CELL_FILE).write_text(json.dumps(info, indent=1))
    return info


def _check_checkpoints(cells: list[Cell], opts: BenchOptions) -> None:
    if opts.data is not None:
        missing = sorted({c.base_method for c in cells if c.generates and c.base_method not in opts.checkpoints})
        if missing:
            raise BenchError(
                f"--data is given, so every generating method needs --checkpoint METHOD=PATH; "
                f"missing for {', '.join(missing)}"
            )


def _prepare_sets(
    cells: list[Cell], opts: BenchOptions, executor: Executor
) -> tuple[dict[tuple, Path], list[_Pending]]:
    """Build the sets of the unfinished cells, one after another (generation uses every core).

    Returns (train key -> folder of a finished cell trained on that set, the cells still to train).
    """
    from reid_eval.datasets import load_splits

    trained: dict[tuple, Path] = {}
    pending: list[_Pending] = []
    for i, cell in enumerate(cells, 1):
        cell_dir, settings = _cell_dir(cell, opts), _cell_settings(cell, opts)
        done = _finished(cell_dir, settings)
        if done is not None:
            trained.setdefault(tuple(done["train_key"]), cell_dir)
            print(
                f"[bench] cell {i}/{len(cells)} {cell.model} {cell.name}: finished earlier "
                f"(Rank-1 {done['rank1_pct']:.1f}%), skipped"
            )
            continue
        set_dir, set_seconds = _build_set(cell, opts, executor)
        splits = load_splits(set_dir, opts.test_data)
        cell_dir.mkdir(parents=True, exist_ok=True)
        key = _train_key(splits.fingerprint, cell, opts)
        pending.append(_Pending(cell, cell_dir, settings, set_dir, set_seconds, key, len(splits.train_items)))
    return trained, pending


def _group_trainings(pending: list[_Pending], trained: dict[tuple, Path]) -> list[list[_Pending]]:
    """Cells grouped by training set, largest first; groups whose set a finished cell trained on reuse it now."""
    groups: dict[tuple, list[_Pending]] = {}
    for p in pending:
        groups.setdefault(p.key, []).append(p)
    for key in [k for k in groups if k in trained and (trained[k] / "metrics.json").exists()]:
        for p in groups.pop(key):
            metrics = json.loads((trained[key] / "metrics.json").read_text())
            _finish_cell(p, metrics, p.set_seconds, trained[key])
            print(f"[bench] {p.cell.model} {p.cell.name}: same training set as {trained[key]}: metrics reused")
    return sorted(groups.values(), key=lambda g: -g[0].train_images)  # largest first balances the workers


def _training_job(group: list[_Pending], opts: BenchOptions, verbose: bool, threads: int | None) -> dict:
    """What a (worker) process needs to train a group's first cell: picklable TrainOptions fields."""
    p = group[0]
    return {
        "verbose": verbose,
        "options": dict(
            data=p.set_dir,
            model=p.cell.model,
            recipe=opts.recipe,
            out=p.cell_dir,
            test_data=opts.test_data,
            epochs=opts.epochs,
            batch_size=opts.batch_size,
            device=opts.device,
            seed=p.cell.seed,
            threads=threads,
            overwrite=True,
        ),
    }


def _record_training(group: list[_Pending], metrics: dict, cells: list[Cell], opts: BenchOptions, t_bench: float):
    """A finished training: cell.json of every cell of its group, then the results so far."""
    first, seconds = group[0], metrics["seconds_total"]
    _finish_cell(first, metrics, first.set_seconds + seconds, None)
    for p in group[1:]:
        _finish_cell(p, metrics, p.set_seconds, first.cell_dir)
    names = ", ".join(p.cell.name for p in group)
    print(
        f"[bench] {first.cell.model} {names}: Rank-1 {100 * metrics['rank1']:.1f}%, mAP "
        f"{100 * metrics['mAP']:.1f}% ({metrics['training']['train_images']} images, {seconds:.0f} s); "
        f"bench {(time.perf_counter() - t_bench) / 60:.1f} min so far"
    )
    write_outputs(collect_results(cells, opts), opts)


def _run_trainings(order: list[list[_Pending]], cells: list[Cell], opts: BenchOptions, t_bench: float) -> None:
    """One training per group, in ``jobs`` processes (one: in this process, its output shown)."""
    jobs = _jobs(opts, len(order))
    threads = opts.threads if opts.threads is not None else (1 if jobs > 1 else None)
    print(
        f"[bench] {len(order)} trainings ({sum(len(g) for g in order)} cells) in {jobs} process(es)"
        f"{f', {threads} torch thread(s) each' if threads else ''}; progress in each cell's train.log"
    )
    if jobs == 1:
        for group in order:
            print(f"[bench] training {group[0].cell.model} {group[0].cell.name} on {group[0].set_dir}")
            _record_training(group, _train_cell(_training_job(group, opts, True, threads)), cells, opts, t_bench)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: the parent has used OpenMP (generation), which a forked child may deadlock on
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        started = {}
        for group in order:
            started[pool.submit(_train_cell, _training_job(group, opts, False, threads))] = group
            print(
                f"[bench] queued {group[0].cell.model} {group[0].cell.name} "
                f"({group[0].train_images} images) -> {group[0].cell_dir / 'train.log'}"
            )
        for future in as_completed(started):
            _record_training(started[future], future.result(), cells, opts, t_bench)


def run_bench(opts: BenchOptions, executor: Executor = LOCAL_EXECUTOR) -> pd.DataFrame:
    """Run (or resume) the grid; writes results, table and plot; returns the results table. The sets are
    built by augment.run's library function on ``executor`` (local by default).

    1. every unfinished cell's set is built (augment.run, one after another: generation uses every core);
    2. cells are grouped by training set (content fingerprint): one training per group and seed;
    3. trainings run in ``jobs`` processes, largest sets first (CPU default: one process per core with one
       torch thread each: OpenMP threads stall when a core is taken, docs/measurements.md#re-id-benchmark);
       every finished training immediately writes its cells' cell.json and the results.
    """
    opts.validate()
    cells = build_grid(opts)
    _check_checkpoints(cells, opts)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    t_bench = time.perf_counter()
    print(
        f"[bench] {len(cells)} cells: models {', '.join(opts.models)}, recipe {opts.recipe}, "
        f"portions {list(opts.portions)}, ratios {list(opts.ratios)}, methods {list(opts.methods)}, "
        f"seeds {list(opts.seeds)} -> {out}"
    )
    trained, pending = _prepare_sets(cells, opts, executor)
    print(f"[bench] sets ready in {(time.perf_counter() - t_bench) / 60:.1f} min")
    _run_trainings(_group_trainings(pending, trained), cells, opts, t_bench)
    results = collect_results(cells, opts)
    paths = write_outputs(results, opts)
    print(paths["table_text"])
    print(
        f"[bench] {len(results)}/{len(cells)} cells in {(time.perf_counter() - t_bench) / 60:.1f} min; results: "
        f"{paths['csv']}, {paths['parquet']}; table: {paths['table']}; plot: {paths['plot']}"
    )
    return results


def collect_results(cells: list[Cell], opts: BenchOptions) -> pd.DataFrame:
    """One row per finished cell (from the cell folders)."""
    rows = []
    for cell in cells:
        cell_dir = _cell_dir(cell, opts)
        info = _finished(cell_dir, _cell_settings(cell, opts))
        if info is not None:
            rows.append(_row(cell, opts, json.loads((cell_dir / "metrics.json").read_text()), info))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


# --------------------------------------------------------------------------------------------------- CLI
def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip()) if text else ()


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip()) if text else ()


def _words(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip()) if text else ()


def _checkpoints(values: list[str] | None) -> dict:
    out = {}
    for v in values or []:
        method, sep, path = v.partition("=")
        if not sep or not method or not path:
            raise BenchError(f"--checkpoint {v!r}: expected METHOD=PATH, e.g. patn=runs/generators/x/latest.pt")
        out[method.rstrip("*")] = Path(path)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m reid_eval.bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", type=Path, help="Market-1501 root (default: the embedded dataset)")
    p.add_argument("--test-data", type=Path, help="real test split root (default: each set links the real one)")
    p.add_argument("--models", default="inception", help=f"comma list of {', '.join(MODEL_NAMES)} (default inception)")
    p.add_argument(
        "--portions",
        default=",".join(f"{v:g}" for v in DEFAULT_PORTIONS),
        help='comma list of p (default 0.1,0.3,0.5,1.0; "" for none)',
    )
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help="comma list: none and generator methods; 'patn*' = target poses from the kept set",
    )
    p.add_argument("--ratios", default="", help="comma list of augmentation ratios, e.g. 2,3 (default none)")
    p.add_argument("--recipe", default="cpu", choices=sorted(RECIPES))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="METHOD=PATH",
        help="generator checkpoint per method (repeatable); default: the embedded-dataset one",
    )
    p.add_argument("--seeds", default="0", help="comma list of seeds (plan and training)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the recipe's)")
    p.add_argument("--batch-size", type=int, help="training batch (default: the recipe's)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--executor", choices=["local", "ray"], default="local", help="augment.run executor")
    p.add_argument(
        "--gen-precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="generator precision (default: bf16 where native, else fp32)",
    )
    p.add_argument(
        "--jobs", type=int, help="training processes (default: one per CPU core with one torch thread each; 1 on CUDA)"
    )
    p.add_argument("--sets-dir", type=Path, help="where augment.run writes the sets (default runs/augment/...)")
    return p


def options_from_args(a: argparse.Namespace) -> BenchOptions:
    return BenchOptions(
        data=a.data,
        test_data=a.test_data,
        models=_words(a.models),
        portions=_floats(a.portions),
        methods=_words(a.methods),
        ratios=_ints(a.ratios),
        recipe=a.recipe,
        out=a.out,
        checkpoints=_checkpoints(a.checkpoint),
        seeds=_ints(a.seeds),
        epochs=a.epochs,
        batch_size=a.batch_size,
        device=a.device,
        threads=a.threads,
        gen_precision=a.gen_precision,
        sets_dir=a.sets_dir,
        jobs=a.jobs,
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """CLI entry: the results table; bad options print ``error: ...`` and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        executor = LOCAL_EXECUTOR
        if args.executor == "ray":
            from cluster.ray_executor import RAY_EXECUTOR  # the one place re-ID reaches the cluster layer

            executor = RAY_EXECUTOR
        return run_bench(options_from_args(args), executor)
    except (BenchError, UsageError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
