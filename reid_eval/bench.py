"""``python -m reid_eval.bench``: does a pose-transfer generator buy re-ID accuracy, and how much?

    python -m reid_eval.bench                     # the default embedded grid (below), 3 seeds
    python -m reid_eval.bench --quick             # the same grid with one seed, for a first look
    python -m reid_eval.bench --portions 0.1,0.3,1.0 --generator-data full,kept,disjoint \\
        --methods none,none-iters,copy,patn,patn*
    python -m reid_eval.bench --data /data/Market-1501-v15.09.15 --models resnet50,inception --recipe openreid \\
        --checkpoint patn=runs/patn-market/checkpoints/latest.pt --checkpoint patn:disjoint=runs/patn-duke/latest.pt
    python -m reid_eval.bench --table deform4      # the Deformable GAN's Table 4 (reid_eval.bench_table4)

``--table`` picks the grid: ``patn5`` (the default, below) or ``deform4``: the real training set T against T plus
K generated images per real image, with IDE + Euclidean / XQDA / KISSME and the Discriminative Embedding, the
controls that mean something there, and its own default grid, budget and outputs (``reid_eval.bench_table4``).

PATN's Table 5 protocol (re-ID Rank-1 vs the portion p of real training images kept, the removed images
replaced by generated ones), with the controls that make it a measurement (``reid_eval.bench_grid``):
``none`` (the reduced set, same epochs: the published protocol), ``none-iters`` (the reduced set for the same
SGD steps and images seen as the generated set of its p and seed), ``copy`` (the generated set's size, labels
and cameras, every generated image a copy of its source), the generator methods once per generator-training
regime (``--generator-data``: ``full`` = the whole training split, removed images included; ``kept`` = the kept
images only; ``disjoint`` = other identities: ``reid_eval.bench_generators``), and p = 1.0, the ceiling. Each
cell runs for every seed of ``--seeds`` (the plan's seed and the re-ID training's). ``results.csv`` has one row
per cell and seed with its ``recovery`` = (method - none-iters) / (full - none-iters); ``summary.csv`` and the
Markdown table give mean ± std and n per cell (``reid_eval.bench_stats`` defines both).

How it runs (``reid_eval.bench_run``): the generators train first (cached in ``<out>/generators/``); each
cell's set is built by ``augment.run``'s library (in ``<out>/sets/``); cells with identical training sets train
once; trainings run ``--jobs`` at a time (on CPU one process per core with one torch thread each).

Outputs under ``--out`` (default runs/bench):
  cells/<model>-<recipe>/<cell>/   metrics.json, checkpoint.pt, train.log (reid_eval.train), cell.json
  generators/<method>-<regime>-<key>/   generators.train's run folder, generator.json, kept-pairs.csv (kept)
  sets/<set>/                       augment.run's output folder of each set
  results.csv, results.parquet     one row per cell and seed (bench_report.RESULT_COLUMNS)
  summary.csv                      one row per cell: n, mean and std of every metric and of the recovery
  table.md                         "ours (mean ± std) / published" laid out like PATN Table 5, the cells with
                                   controls, spread and recovery, skipped cells, the published table
  rank1.png                        Rank-1 vs p with error bars, one colour per method and regime
Resumable: a cell whose metrics.json and cell.json exist with the same settings is skipped, a generator whose
generator.json exists is reused and one interrupted mid-training resumes; delete a folder to redo it.

The default grid (embedded dataset, Open-ReID Inception, recipe ``cpu``: 64x32 input, 16 epochs, batch 64):
p in {0.1, 1.0} x {none, none-iters, copy, patn (full), patn (disjoint)}, seeds 0, 1, 2, the ceiling with seed 0
only (``--ceiling-seeds``: its spread is small next to the gap it closes): 20 cells, 16 re-ID trainings (13
full-size, 448-464 steps of 64; three at p = 0.1's 182 images, 32 steps) and two PATN ``synth`` generators of
1,300 iterations (the whole embedded training split; population 1: other identities), each serving every
portion and seed. p = 0.3 does not fit the budget of 90 minutes on two cores (docs/reid.md#benchmark-design).
``--epochs`` and ``--quick`` trade certainty for time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from augment.data.market import DatasetError
from augment.execute import LOCAL_EXECUTOR, Executor
from augment.runtime import UsageError
from reid_eval.bench_generators import SkippedCell, check_trainable
from reid_eval.bench_grid import (
    CONTROLS,
    LENGTHS,
    NONE,
    NONE_ITERS,
    REGIMES,
    T_STEPS,
    TABLE4_METHODS,
    Cell,
    grid_cells,
    is_trainable,
    method_rows,
    poses_cells,
)
from reid_eval.bench_report import RESULT_COLUMNS, plot_rank1, render_markdown, write_outputs
from reid_eval.bench_run import BenchError, Prepared, Scheduler, cell_dir, collect_results, finished, prepare
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
    "DEFAULT_GENERATOR_DATA",
    "DEFAULT_SEEDS",
]

DEFAULT_PORTIONS = (0.1, 1.0)
DEFAULT_METHODS = (NONE, NONE_ITERS, "copy", "patn")
DEFAULT_GENERATOR_DATA = ("full", "disjoint")
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_OUT = Path("runs/bench")
DEFORM4_OUT = Path("runs/bench-deform4")
TABLES = ("patn5", "deform4")  # PATN's Table 5 (portions, ratios) or the Deformable GAN's Table 4 (K poses)
# what each table's grid runs unless told otherwise (the command line's defaults, and BenchOptions.for_table's)
TABLE_DEFAULTS: dict[str, dict] = {
    "patn5": dict(
        portions=DEFAULT_PORTIONS, methods=DEFAULT_METHODS, generator_data=DEFAULT_GENERATOR_DATA, out=DEFAULT_OUT
    ),
    "deform4": dict(
        portions=(), methods=(NONE, "deform"), generator_data=("full",), out=DEFORM4_OUT, set_seeds="first"
    ),
}
SET_SEEDS = ("each", "first")  # the sets' plan seed: each cell's own, or the first seed's for every cell


@dataclass(frozen=True)
class BenchOptions:
    data: Path | None = None  # None: the embedded dataset (augment.run's default)
    models: tuple[str, ...] = ("inception",)
    portions: tuple[float, ...] = DEFAULT_PORTIONS
    methods: tuple[str, ...] = DEFAULT_METHODS
    generator_data: tuple[str, ...] = DEFAULT_GENERATOR_DATA  # regimes of every trainable generator method
    ratios: tuple[int, ...] = ()
    recipe: str = "cpu"
    out: Path = DEFAULT_OUT
    # 'METHOD' (regime full) or 'METHOD:REGIME' -> generator checkpoint path
    checkpoints: dict = field(default_factory=dict)
    # NAME -> folder of an external generator's images: one subfolder per set (augment.exchange's format)
    external: dict = field(default_factory=dict)
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    ceiling_seeds: tuple[int, ...] | None = None  # seeds of the p = 1.0 cells; None: the first of ``seeds``
    set_seeds: str = "each"  # SET_SEEDS: the plans' seed (each: the cell's; first: seeds[0] for every cell)
    epochs: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    threads: int | None = None
    gen_precision: str = "auto"  # auto | fp32 | bf16 (augment.run --precision)
    sets_dir: Path | None = None  # None: <out>/sets
    jobs: int | None = None  # training processes; None: one per core on CPU, 1 on CUDA
    test_data: Path | None = None
    generator_preset: str | None = None  # None: synth on the embedded dataset, market with --data
    generator_iterations: int | None = None  # None: the preset's
    generator_overrides: dict = field(default_factory=dict)  # generators.train --set FIELD=VALUE (tests: tiny nets)
    min_kept_pairs: int = 8  # kept regime: fewer pairs among the kept images than this skips the cell
    table: str = "patn5"  # patn5 | deform4 (reid_eval.bench_table4)
    poses_per_image: int = 10  # deform4: K generated images per real image
    lengths: tuple[str, ...] = (T_STEPS,)  # deform4: how long A trains (t-steps, epochs)
    reid_methods: tuple[str, ...] = ("euclidean", "xqda", "kissme")  # deform4: Table 4's rows (+ embedding)
    metric_options: dict = field(default_factory=dict)  # deform4: learner -> its config fields (tests: small PCA)

    @classmethod
    def for_table(cls, table: str, **fields) -> BenchOptions:
        """Options of ``table``'s grid: its defaults (``TABLE_DEFAULTS``), then ``fields``."""
        if table not in TABLE_DEFAULTS:
            raise BenchError(f"--table must be one of {', '.join(TABLES)}, got {table!r}")
        return cls(table=table, **{**TABLE_DEFAULTS[table], **fields})

    @property
    def ceiling(self) -> tuple[int, ...]:
        return self.ceiling_seeds if self.ceiling_seeds is not None else self.seeds[:1]

    @property
    def set_seed(self) -> int | None:
        """Every cell's plan seed, or None where each cell plans with its own seed."""
        return self.seeds[0] if self.set_seeds == "first" and self.seeds else None

    @property
    def rows(self) -> list[tuple[str, str]]:
        """(method, generator_data) rows of the grid."""
        return method_rows(self.methods, self.generator_data, tuple(self.external))

    def checkpoint_for(self, method: str, regime: str) -> Path | None:
        """The checkpoint given for (method, regime) ('patn=PATH' is regime full), or None."""
        for key, path in self.checkpoints.items():
            m, _, r = str(key).partition(":")
            if m.rstrip("*") == method and (r or "full") == regime:
                return Path(path)
        return None

    def validate(self) -> None:
        bad = [m for m in self.models if m not in MODEL_NAMES]
        checks = [
            (not bad and self.models, f"--models: {bad or 'none given'}; choose from {', '.join(MODEL_NAMES)}"),
            (self.recipe in RECIPES, f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}"),
            (self.methods, "--methods: give at least one (none, none-iters, copy, patn, ...)"),
            (all(0 < p <= 1 for p in self.portions), f"--portions must be in (0, 1], got {list(self.portions)}"),
            (all(r >= 2 for r in self.ratios), f"--ratios must be >= 2, got {list(self.ratios)}"),
            (
                self.portions or self.ratios or self.table != "patn5",
                "nothing to run: --portions and --ratios are both empty",
            ),
            (self.seeds and all(s >= 0 for s in self.seeds), f"--seeds must be >= 0, got {list(self.seeds)}"),
            (all(s >= 0 for s in self.ceiling), f"--ceiling-seeds must be >= 0, got {list(self.ceiling)}"),
            (self.set_seeds in SET_SEEDS, f"--set-seeds must be one of {', '.join(SET_SEEDS)}, got {self.set_seeds!r}"),
            (self.jobs is None or self.jobs >= 1, f"--jobs must be >= 1, got {self.jobs}"),
            (
                self.gen_precision in ("auto", "fp32", "bf16"),
                f"--gen-precision must be auto, fp32 or bf16, got {self.gen_precision!r}",
            ),
            (
                self.generator_data and set(self.generator_data) <= set(REGIMES),
                f"--generator-data: {list(self.generator_data)}; choose from {', '.join(REGIMES)}",
            ),
            (
                self.generator_iterations is None or self.generator_iterations >= 1,
                f"--generator-iterations must be >= 1, got {self.generator_iterations}",
            ),
            (self.min_kept_pairs >= 1, f"--min-kept-pairs must be >= 1, got {self.min_kept_pairs}"),
        ]
        for ok, message in checks + self._table_checks():
            if not ok:
                raise BenchError(message)
        self._validate_methods()
        self._validate_checkpoints()

    def _table_checks(self) -> list[tuple[bool, str]]:
        if self.table not in TABLES:
            return [(False, f"--table must be one of {', '.join(TABLES)}, got {self.table!r}")]
        if self.table == "patn5":
            return []
        return [
            (not self.portions and not self.ratios, "--portions and --ratios belong to --table patn5"),
            (self.poses_per_image >= 1, f"--poses-per-image must be >= 1, got {self.poses_per_image}"),
            (
                self.lengths and set(self.lengths) <= set(LENGTHS),
                f"--lengths: {list(self.lengths)}; choose from {', '.join(LENGTHS)}",
            ),
            (
                self.reid_methods and set(self.reid_methods) <= set(TABLE4_METHODS),
                f"--reid-methods: {list(self.reid_methods)}; choose from {', '.join(TABLE4_METHODS)}",
            ),
        ]

    def describe(self) -> str:
        """The grid in one line (the bench's first message)."""
        if self.table == "deform4":
            what = f"K = {self.poses_per_image}, A trained for {list(self.lengths)}, {list(self.reid_methods)}"
        else:
            what = f"portions {list(self.portions)}, ratios {list(self.ratios)}"
        seeds = f"seeds {list(self.seeds)}" + (f" (p = 1.0: {list(self.ceiling)})" if self.table == "patn5" else "")
        seeds += f", sets planned with seed {self.set_seed}" if self.set_seed is not None else ""
        return (
            f"table {self.table}: models {', '.join(self.models)}, recipe {self.recipe}, {what}, methods "
            f"{list(self.methods)}, generator data {list(self.generator_data)}, {seeds}"
        )

    def _validate_methods(self) -> None:
        from generators.base import get_method

        for name in self.external:
            if name not in self.methods:
                raise BenchError(f"--external {name}=...: add {name} to --methods")
        for m in self.methods:
            if m in CONTROLS or m in self.external:
                continue
            try:
                trainable = is_trainable(m)
            except ValueError as e:
                raise BenchError(f"--methods: {m!r}: {e}; or a control: {', '.join(CONTROLS)}") from None
            presets = get_method(m.rstrip("*")).presets
            if trainable and self.generator_preset is not None and self.generator_preset not in presets:
                raise BenchError(f"--generator-preset {self.generator_preset!r}: {m} has {', '.join(presets)}")

    def _validate_checkpoints(self) -> None:
        generators = {m.rstrip("*") for m, regime in self.rows if regime != "-"}
        for key, path in self.checkpoints.items():
            method, _, regime = str(key).partition(":")
            method, regime = method.rstrip("*"), regime or "full"
            where = f"--checkpoint {key}={path}"
            if method not in generators:
                raise BenchError(f"{where}: {method} is not a trainable generator among --methods {list(self.methods)}")
            if regime not in self.generator_data:
                raise BenchError(
                    f"{where}: regime {regime!r} is not among --generator-data {list(self.generator_data)}"
                )
            if regime == "kept":
                raise BenchError(f"{where}: kept-regime generators are one per kept set; the bench trains them")
            if not Path(path).is_file():
                raise BenchError(f"{where}: no such file")


def build_grid(opts: BenchOptions) -> list[Cell]:
    """Cells in run order: per seed and model, the portions x rows, then the ratios x rows (no ``none``); for
    Table 4, per seed, model and loss, the rows at each length (``bench_grid.poses_cells``)."""
    if opts.table == "deform4":
        return poses_cells(
            opts.models, opts.rows, opts.poses_per_image, opts.lengths, opts.reid_methods, opts.seeds, opts.set_seed
        )
    return grid_cells(opts.models, opts.rows, opts.portions, opts.ratios, opts.seeds, opts.ceiling, opts.set_seed)


def _check_checkpoints(cells: list[Cell], opts: BenchOptions) -> None:
    """With --data, generators trained on the whole split or on other identities come from the user."""
    if opts.data is None:
        return
    missing = sorted(
        {
            f"{c.base_method}:{c.generator_data}"
            for c in cells
            if c.needs_generator
            and c.generator_data != "kept"
            and opts.checkpoint_for(c.base_method, c.generator_data) is None
        }
    )
    if missing:
        raise BenchError(
            "--data is given, so every generator of regime full or disjoint needs --checkpoint METHOD[:REGIME]=PATH "
            f"(e.g. one trained on another dataset for disjoint); missing for {', '.join(missing)}"
        )


# ---------------------------------------------------------------------------------------------- running
def _report_skipped(skipped: list[SkippedCell]) -> list[str]:
    lines = [f"{s.cell.model} {s.cell.name}: {s.reason}" for s in skipped]
    for line in lines:
        print(f"[bench] skipped {line}")
    return lines


def _split_finished(prepared: Prepared, opts: BenchOptions) -> tuple[list[Cell], dict[tuple, Path]]:
    """(cells still to run, train key -> folder of a finished cell trained on that set)."""
    todo, trained = [], {}
    for i, cell in enumerate(prepared.cells, 1):
        done = finished(cell, opts, prepared)
        if done is None:
            todo.append(cell)
            continue
        trained.setdefault(tuple(done["train_key"]), cell_dir(cell, opts))
        print(
            f"[bench] cell {i}/{len(prepared.cells)} {cell.model} {cell.name}: finished earlier "
            f"(Rank-1 {done['rank1_pct']:.1f}%), skipped"
        )
    return todo, trained


def run_bench(opts: BenchOptions, executor: Executor = LOCAL_EXECUTOR) -> pd.DataFrame:
    """Run (or resume) the grid; writes results, summary, table and plot; returns the results table (one
    row per finished cell and seed). Sets are built by augment.run's library on ``executor`` (local by default).

    Raises BenchError, UsageError, DatasetError, CheckpointError or MissingWeightsError before any work where
    it can (bad options, missing checkpoints or weights).
    """
    opts.validate()
    cells = build_grid(opts)
    _check_checkpoints(cells, opts)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    t_bench = time.perf_counter()
    print(f"[bench] {len(cells)} cells, {opts.describe()} -> {out}")
    prepared = prepare(cells, opts)
    skipped = _report_skipped(prepared.skipped)
    todo, trained = _split_finished(prepared, opts)
    for generator in {g.name: g for c in todo if (g := prepared.generators.get(c))}.values():
        check_trainable(generator, opts.device)  # flags, presets and weights, before any work

    def write_results() -> dict:
        return write_outputs(collect_results(prepared, opts), opts, opts.rows, skipped)

    Scheduler(prepared, opts, executor, write_results, t_bench).run(todo, trained)
    results = collect_results(prepared, opts)
    paths = write_results()
    print(paths["table_text"])
    print(
        f"[bench] {len(results)}/{len(prepared.cells)} cells in {(time.perf_counter() - t_bench) / 60:.1f} min; "
        f"results: {paths['csv']}, {paths['summary']}; table: {paths['table']}; plot: {paths['plot']}"
    )
    return results


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
        key, sep, path = v.partition("=")
        method, _, regime = key.partition(":")
        if not sep or not method or not path or (":" in key and not regime):
            raise BenchError(
                f"--checkpoint {v!r}: expected METHOD=PATH or METHOD:REGIME=PATH, e.g. patn=runs/x/latest.pt or "
                "patn:disjoint=runs/y/latest.pt"
            )
        out[f"{method.rstrip('*')}:{regime or 'full'}"] = Path(path)
    return out


def _externals(values: list[str] | None) -> dict:
    from augment.exchange import check_method_name

    out = {}
    for v in values or []:
        name, sep, folder = v.partition("=")
        if not sep or not folder:
            raise BenchError(f"--external {v!r}: expected NAME=DIR, e.g. mydiffusion=runs/external/mydiffusion")
        try:
            check_method_name(name, "--external")
        except ValueError as e:
            raise BenchError(str(e)) from None
        out[name] = Path(folder)
    return out


def _add_grid_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default="inception", help=f"comma list of {', '.join(MODEL_NAMES)} (default inception)")
    p.add_argument(
        "--portions",
        help=f'comma list of p (default {",".join(f"{v:g}" for v in DEFAULT_PORTIONS)}; "" for none; patn5 only)',
    )
    p.add_argument(
        "--methods",
        help=f"comma list: the controls {', '.join(CONTROLS)}, copy, and generator methods; 'patn*' = target "
        f"poses from the kept set (default {','.join(DEFAULT_METHODS)}; deform4: none,deform)",
    )
    p.add_argument(
        "--generator-data",
        help="comma list of generator-training regimes, a row each per generator method: full (the whole training "
        "split), kept (the kept images only), disjoint (other identities) (default full,disjoint; deform4: full)",
    )
    p.add_argument(
        "--external",
        action="append",
        metavar="NAME=DIR",
        help="a generator run by another tool, through files: NAME (also in --methods) has one subfolder per set "
        "under DIR; the bench exports each set's plan there (plan.csv, plan.json), and once the tool has written "
        "the images beside them, imports them as the set (augment.exchange; repeatable)",
    )
    p.add_argument("--ratios", default="", help="comma list of augmentation ratios, e.g. 2,3 (default none)")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="comma list of seeds (plan and training)")
    p.add_argument(
        "--ceiling-seeds",
        default="first",
        help="seeds of the p = 1.0 cells: first (the first of --seeds; default), all, or a comma list",
    )
    p.add_argument(
        "--set-seeds",
        choices=SET_SEEDS,
        help="the seed that plans each cell's set: each (the cell's own seed: the spread includes the plan's draws; "
        "default) or first (the first of --seeds for every cell: one set per row, the seeds differ in training "
        "only; deform4's default)",
    )
    p.add_argument("--quick", action="store_true", help="one seed (the first of --seeds): a first look")


def _add_table4_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--table",
        choices=TABLES,
        default="patn5",
        help="patn5: PATN's Table 5 (portions, ratios; default); deform4: the Deformable GAN's Table 4 (the real set "
        "T vs T + K generated images per real image, four re-ID methods)",
    )
    p.add_argument("--poses-per-image", type=int, help="deform4: K generated images per real image (default 10)")
    p.add_argument(
        "--lengths",
        help=f"deform4: comma list of how long A trains: {T_STEPS} (T's steps; default), epochs (the recipe's epochs "
        "over A, about K + 1 times as many steps)",
    )
    p.add_argument(
        "--reid-methods",
        help=f"deform4: comma list of Table 4's rows: {', '.join(TABLE4_METHODS)} (the Discriminative Embedding, "
        "a second training per cell) (default euclidean,xqda,kissme)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m reid_eval.bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", type=Path, help="Market-1501 root (default: the embedded dataset)")
    p.add_argument("--test-data", type=Path, help="real test split root (default: each set links the real one)")
    _add_grid_flags(p)
    _add_table4_flags(p)
    p.add_argument("--recipe", default="cpu", choices=sorted(RECIPES))
    p.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT_OUT}; deform4: runs/bench-deform4)")
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="METHOD[:REGIME]=PATH",
        help="generator checkpoint of a method and regime (repeatable; no regime: full); default: the bench "
        "trains it on the embedded dataset (with --data: required for full and disjoint)",
    )
    p.add_argument("--generator-preset", help="preset of the generators it trains (default synth; market with --data)")
    p.add_argument("--generator-iterations", type=int, help="iterations of the generators it trains (default: preset)")
    p.add_argument(
        "--min-kept-pairs", type=int, default=8, help="kept regime: skip a cell with fewer pairs among its kept images"
    )
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
    p.add_argument("--sets-dir", type=Path, help="where augment.run writes the sets (default OUT/sets)")
    return p


def _ceiling_seeds(text: str, seeds: tuple[int, ...]) -> tuple[int, ...] | None:
    if text == "first":
        return None
    return seeds if text == "all" else _ints(text)


def _table_fields(a: argparse.Namespace) -> dict:
    """The grid flags given (the others: the table's defaults); Table 4's flags refused for Table 5."""
    table4 = {"poses_per_image": a.poses_per_image, "lengths": a.lengths, "reid_methods": a.reid_methods}
    if a.table == "patn5" and any(v is not None for v in table4.values()):
        given = [f"--{k.replace('_', '-')}" for k, v in table4.items() if v is not None]
        raise BenchError(f"{', '.join(given)}: for --table deform4 only")
    fields = {
        "portions": None if a.portions is None else _floats(a.portions),
        "methods": None if a.methods is None else _words(a.methods),
        "generator_data": None if a.generator_data is None else _words(a.generator_data),
        "out": a.out,
        "set_seeds": a.set_seeds,
        "poses_per_image": a.poses_per_image,
        "lengths": None if a.lengths is None else _words(a.lengths),
        "reid_methods": None if a.reid_methods is None else _words(a.reid_methods),
    }
    return {k: v for k, v in fields.items() if v is not None}


def options_from_args(a: argparse.Namespace) -> BenchOptions:
    seeds = _ints(a.seeds)
    opts = BenchOptions.for_table(
        a.table,
        data=a.data,
        test_data=a.test_data,
        models=_words(a.models),
        ratios=_ints(a.ratios),
        recipe=a.recipe,
        checkpoints=_checkpoints(a.checkpoint),
        external=_externals(a.external),
        seeds=seeds,
        ceiling_seeds=_ceiling_seeds(a.ceiling_seeds, seeds),
        epochs=a.epochs,
        batch_size=a.batch_size,
        device=a.device,
        threads=a.threads,
        gen_precision=a.gen_precision,
        sets_dir=a.sets_dir,
        jobs=a.jobs,
        generator_preset=a.generator_preset,
        generator_iterations=a.generator_iterations,
        min_kept_pairs=a.min_kept_pairs,
        **_table_fields(a),
    )
    if a.quick:
        opts = replace(opts, seeds=seeds[:1], ceiling_seeds=seeds[:1])
    return opts


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """CLI entry: the results table; bad options print ``error: ...`` and exit with status 2."""
    from generators.checkpoint import CheckpointError
    from generators.losses import MissingWeightsError

    args = build_parser().parse_args(argv)
    try:
        executor = LOCAL_EXECUTOR
        if args.executor == "ray":
            from cluster.ray_executor import RAY_EXECUTOR  # the one place re-ID reaches the cluster layer

            executor = RAY_EXECUTOR
        return run_bench(options_from_args(args), executor)
    except (BenchError, UsageError, DatasetError, CheckpointError, MissingWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("[bench] interrupted: finished cells and generators are kept; the same command resumes", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
