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
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from augment.data.market import DatasetError
from augment.runtime import UsageError, bf16_is_native, resolve_device
from reid_eval import published
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
    "build_parser",
    "main",
    "DEFAULT_PORTIONS",
    "DEFAULT_METHODS",
]

DEFAULT_PORTIONS = (0.1, 0.3, 0.5, 1.0)
DEFAULT_METHODS = ("none", "patn")
DEFAULT_OUT = Path("runs/bench")
CELL_FILE = "cell.json"
RESULT_COLUMNS = [
    "model",
    "recipe",
    "method",
    "protocol",
    "p",
    "ratio",
    "column",
    "seed",
    "rank1_pct",
    "rank5_pct",
    "rank10_pct",
    "mAP_pct",
    "cuhk03_rank1_pct",
    "train_images",
    "real_images",
    "generated_images",
    "train_ids",
    "epochs",
    "imagenet_weights",
    "train_seconds",
    "eval_seconds",
    "set_seconds",
    "seconds",
    "reused_from",
    "cell_dir",
    "set_dir",
]


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

    def augment_args(self) -> list[str]:
        """augment.run flags of this cell's training set (data, output and executor flags are added later)."""
        if self.protocol == "ratio":
            return ["--ratio", str(int(self.value)), "--method", self.base_method, "--seed", str(self.seed)]
        args = ["--portion", f"{self.value:g}", "--seed", str(self.seed)]
        if self.method == "none":
            return args + ["--no-generate"]
        args += ["--method", self.base_method]
        return args + (["--target-poses", "kept"] if self.kept_poses else [])


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
    executor: str = "local"
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


def _build_set(cell: Cell, opts: BenchOptions) -> tuple[Path, float]:
    """Run augment.run for the cell's training set; returns (set folder, seconds)."""
    from augment.run import run as augment_run

    args = cell.augment_args() + [
        "--executor",
        opts.executor,
        "--precision",
        _gen_precision(opts.gen_precision, opts.device),
    ]
    if opts.device != "auto":
        args += ["--device", opts.device]
    if opts.data is not None:
        args += ["--data", str(opts.data)]
    if cell.base_method in opts.checkpoints:
        args += ["--checkpoint", str(opts.checkpoints[cell.base_method])]
    if opts.sets_dir is not None:
        args += ["--out", str(Path(opts.sets_dir) / cell.name)]
    print(f"[bench] building the set: python -m augment.run {' '.join(args)}")
    t0 = time.perf_counter()
    try:
        summary = augment_run(args)
    except (SystemExit, ValueError) as e:  # augment's usage errors, DatasetError, CheckpointError
        raise BenchError(
            f"building the set of cell {cell.name} failed: {e}\n  (command: python -m augment.run {' '.join(args)})"
        ) from e
    return Path(summary["out"]), time.perf_counter() - t0


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


def run_bench(opts: BenchOptions) -> pd.DataFrame:
    """Run (or resume) the grid; writes results, table and plot; returns the results table.

    1. every unfinished cell's set is built (augment.run, one after another: generation uses every core);
    2. cells are grouped by training set (content fingerprint): one training per group and seed;
    3. trainings run in ``jobs`` processes, largest sets first (CPU default: one process per core with one
       torch thread each: OpenMP threads stall when a core is taken, docs/measurements.md#re-id-benchmark);
       every finished training immediately writes its cells' cell.json and the results.
    """
    opts.validate()
    cells = build_grid(opts)
    if opts.data is not None:
        missing = sorted({c.base_method for c in cells if c.generates and c.base_method not in opts.checkpoints})
        if missing:
            raise BenchError(
                f"--data is given, so every generating method needs --checkpoint METHOD=PATH; "
                f"missing for {', '.join(missing)}"
            )
    from reid_eval.datasets import load_splits

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    t_bench = time.perf_counter()
    print(
        f"[bench] {len(cells)} cells: models {', '.join(opts.models)}, recipe {opts.recipe}, "
        f"portions {list(opts.portions)}, ratios {list(opts.ratios)}, methods {list(opts.methods)}, "
        f"seeds {list(opts.seeds)} -> {out}"
    )

    trained: dict[tuple, Path] = {}  # train key -> folder of the cell that trained on that set
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
        set_dir, set_seconds = _build_set(cell, opts)
        splits = load_splits(set_dir, opts.test_data)
        cell_dir.mkdir(parents=True, exist_ok=True)
        pending.append(
            _Pending(
                cell,
                cell_dir,
                settings,
                set_dir,
                set_seconds,
                _train_key(splits.fingerprint, cell, opts),
                len(splits.train_items),
            )
        )
    print(f"[bench] sets ready in {(time.perf_counter() - t_bench) / 60:.1f} min")

    groups: dict[tuple, list[_Pending]] = {}
    for p in pending:
        groups.setdefault(p.key, []).append(p)
    # groups whose set was already trained by a finished cell: reuse at once
    for key in [k for k in groups if k in trained and (trained[k] / "metrics.json").exists()]:
        for p in groups.pop(key):
            metrics = json.loads((trained[key] / "metrics.json").read_text())
            _finish_cell(p, metrics, p.set_seconds, trained[key])
            print(f"[bench] {p.cell.model} {p.cell.name}: same training set as {trained[key]}: metrics reused")
    order = sorted(groups.values(), key=lambda g: -g[0].train_images)  # largest first balances the workers
    jobs = _jobs(opts, len(order))
    threads = opts.threads if opts.threads is not None else (1 if jobs > 1 else None)
    print(
        f"[bench] {len(order)} trainings ({sum(len(g) for g in order)} cells) in {jobs} process(es)"
        f"{f', {threads} torch thread(s) each' if threads else ''}; progress in each cell's train.log"
    )

    def job(group: list[_Pending]) -> dict:
        p = group[0]
        return {
            "verbose": jobs == 1,
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

    def finished(group: list[_Pending], metrics: dict) -> None:
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

    if jobs == 1:
        for group in order:
            print(f"[bench] training {group[0].cell.model} {group[0].cell.name} on {group[0].set_dir}")
            finished(group, _train_cell(job(group)))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: the parent has used OpenMP (generation), which a forked child may deadlock on
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            started = {}
            for group in order:
                started[pool.submit(_train_cell, job(group))] = group
                print(
                    f"[bench] queued {group[0].cell.model} {group[0].cell.name} "
                    f"({group[0].train_images} images) -> {group[0].cell_dir / 'train.log'}"
                )
            for future in as_completed(started):
                finished(started[future], future.result())

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


def write_outputs(results: pd.DataFrame, opts: BenchOptions) -> dict:
    out = Path(opts.out)
    paths = {
        "csv": out / "results.csv",
        "parquet": out / "results.parquet",
        "table": out / "table.md",
        "plot": out / "rank1.png",
    }
    results.to_csv(paths["csv"], index=False)
    results.to_parquet(paths["parquet"], index=False)
    text = render_markdown(
        results,
        opts.models,
        opts.methods,
        opts.portions,
        opts.ratios,
        recipe=opts.recipe,
        data=str(opts.data) if opts.data else "embedded dataset (data/synth-market)",
    )
    paths["table"].write_text(text)
    plot_rank1(results, opts.models, opts.methods, opts.portions, opts.ratios, paths["plot"])
    paths["table_text"] = text
    return paths


# ------------------------------------------------------------------------------------------------ tables
def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _columns(portions: Sequence[float], ratios: Sequence[int]) -> list:
    return [published.column_key(portion=p) for p in portions] + [published.column_key(ratio=r) for r in ratios]


def _header(columns: list) -> str:
    labels = [f"{c:.1f}" if isinstance(c, float) else c for c in columns]
    return "| method (model) | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels) + "\n"


def _mean_by_cell(results: pd.DataFrame, metric: str) -> dict:
    """(model, method, column) -> (mean over seeds, number of seeds)."""
    if results.empty:
        return {}
    grouped = results.groupby(["model", "method", "column"])[metric].agg(["mean", "count"])
    return {key: (float(row["mean"]), int(row["count"])) for key, row in grouped.iterrows()}


def render_markdown(
    results: pd.DataFrame,
    models: Sequence[str],
    methods: Sequence[str],
    portions: Sequence[float],
    ratios: Sequence[int],
    recipe: str = "",
    data: str = "",
) -> str:
    """Markdown: the Table-5 layout with "ours / published" Rank-1 (%), our cells in detail, and the published
    Table 5 with its source. Ours: Market-1501 CMC Rank-1 (torchreid's), mean over seeds."""
    columns = _columns(portions, ratios)
    ours = _mean_by_cell(results, "rank1_pct")
    seeds = sorted(results["seed"].unique().tolist()) if not results.empty else []
    lines = [
        "# Re-ID Rank-1 (%) vs portion of real training data: ours / published\n\n",
        f"Ours: {data}, recipe `{recipe}`, Rank-1 = Market-1501 CMC (torchreid), mean over seeds {seeds}. "
        f'Published: {published.PATN_SOURCE}. "–": not run / not published.\n\n',
        _header(columns),
    ]
    for model in models:
        for method in methods:
            cells = []
            for col in columns:
                if isinstance(col, str) and method == "none":
                    mine = None  # the reduced-only protocol has no 2x/3x
                else:
                    mine = ours.get((model, method, str(col)), (None, 0))[0]
                theirs = published.published_value(method, model, col)
                cells.append(f"{_fmt(mine)} / {_fmt(theirs)}")
            label = f"{published.method_label(method)} ({published.model_label(model)})"
            lines.append(f"| {label} | " + " | ".join(cells) + " |\n")
    lines.append(
        "\n## Our cells\n\n| model | method | p / ratio | seeds | Rank-1 | Rank-5 | mAP | cuhk03 Rank-1 | "
        "train images (generated) | seconds |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    if not results.empty:
        detail = (
            results.groupby(["model", "method", "protocol", "column"], sort=False)
            .agg(
                seeds=("seed", "count"),
                rank1=("rank1_pct", "mean"),
                rank5=("rank5_pct", "mean"),
                mAP=("mAP_pct", "mean"),
                cuhk03=("cuhk03_rank1_pct", "mean"),
                images=("train_images", "mean"),
                generated=("generated_images", "mean"),
                seconds=("seconds", "sum"),
                reused=("reused_from", lambda s: bool((s != "").all())),
            )
            .reset_index()
        )
        for _, r in detail.iterrows():
            col = f"p={r['column']}" if r["protocol"] == "portion" else r["column"]
            secs = "reused" if r["reused"] else f"{r['seconds']:.0f}"
            lines.append(
                f"| {published.model_label(r['model'])} | {published.method_label(r['method'])} | {col} | "
                f"{r['seeds']} | {r['rank1']:.1f} | {r['rank5']:.1f} | {r['mAP']:.1f} | {r['cuhk03']:.1f} | "
                f"{r['images']:.0f} ({r['generated']:.0f}) | {secs} |\n"
            )
    lines.append(f"\n## Published: {published.PATN_SOURCE}\n\n")
    all_columns = _columns(published.PATN_PORTIONS, published.PATN_RATIOS)
    lines.append(_header(all_columns))
    for (method, model), row in published.PATN_TABLE5.items():
        label = f"{published.method_label(method)} ({published.model_label(model)})"
        lines.append(f"| {label} | " + " | ".join(_fmt(row.get(c)) for c in all_columns) + " |\n")
    return "".join(lines)


# -------------------------------------------------------------------------------------------------- plot
def plot_rank1(
    results: pd.DataFrame,
    models: Sequence[str],
    methods: Sequence[str],
    portions: Sequence[float],
    ratios: Sequence[int],
    path: str | os.PathLike,
) -> Path:
    """Rank-1 (%) vs p (and 2x/3x to the right): one colour per method, a marker per model; ours solid,
    published dashed. Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratio_x = {f"{r}x": 1.0 + 0.15 * (k + 1) for k, r in enumerate(sorted(set(ratios) | {2, 3}))}

    def x_of(col) -> float:
        return ratio_x[col] if isinstance(col, str) else float(col)

    colours = plt.get_cmap("tab10")
    markers = ["o", "s", "^", "D"]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    ours = _mean_by_cell(results, "rank1_pct")
    for mi, model in enumerate(models):
        for ci, method in enumerate(methods):
            colour, marker = colours(ci % 10), markers[mi % len(markers)]
            label = f"{published.method_label(method)} ({published.model_label(model)})"
            cols = _columns(portions, [] if method == "none" else ratios)
            pts = [(x_of(c), ours[(model, method, str(c))][0]) for c in cols if (model, method, str(c)) in ours]
            if pts:
                xs, ys = zip(*sorted(pts))
                ax.plot(xs, ys, "-", color=colour, marker=marker, label=f"{label} ours")
            row = published.PATN_TABLE5.get((method, model))
            if row:
                pub = sorted((x_of(c), v) for c, v in row.items() if not isinstance(c, str) or int(c[:-1]) in ratios)
                xs, ys = zip(*pub)
                ax.plot(
                    xs,
                    ys,
                    "--",
                    color=colour,
                    marker=marker,
                    markerfacecolor="none",
                    alpha=0.8,
                    label=f"{label} published",
                )
    ticks = [0.1 * k for k in range(1, 11)] + [ratio_x[f"{r}x"] for r in sorted(ratios)]
    ax.set_xticks(ticks, [f"{t:.1f}" for t in ticks[:10]] + [f"{r}x" for r in sorted(ratios)])
    if ratios:
        ax.axvline(1.075, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("portion p of the real training images (then augmentation ratio)")
    ax.set_ylabel("Rank-1 (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title("Re-ID Rank-1 vs training data: ours (solid) vs PATN Table 5 (dashed)")
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


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
        executor=a.executor,
        gen_precision=a.gen_precision,
        sets_dir=a.sets_dir,
        jobs=a.jobs,
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = build_parser().parse_args(argv)
    try:
        return run_bench(options_from_args(args))
    except (BenchError, UsageError, DatasetError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
