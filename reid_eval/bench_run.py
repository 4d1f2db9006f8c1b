"""Running a bench grid: what each cell needs, its set, and every training on one pool of processes.

:func:`prepare` resolves, before any work, the dataset, each cell's generator (``bench_generators``), each
``none-iters`` cell's partner size and the settings that make a finished cell reusable. :class:`Scheduler` then
runs what is left on ``jobs`` processes (one torch thread each on CPU): the generator trainings first (the
longest jobs, and the ones other cells wait for), then every re-ID training whose set can be built; when a
generator finishes, the sets of its cells are built (in this process, ``augment.run``'s library) and their
trainings queued, longest first. Short trainings (under half the longest of their batch, e.g. ``none`` on a
reduced set) wait until every generator has finished, so they run last, beside the grid's last long training,
on a process that would otherwise sit idle (:func:`defer_short`). Cells whose sets are identical (same files
and generator checkpoint) and whose trainings are the same (model, recipe, seed, epochs, batch, images per
epoch) train once; the others reuse that training's metrics. Every finished training writes its cells'
``cell.json`` and the results so far. With one job (CUDA, or ``--jobs 1``) everything runs in this process,
one job after another, its output shown.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from augment.execute import Executor
from augment.plan import TrainIndex, make_plan
from augment.runtime import bf16_is_native, resolve_device
from reid_eval.bench_generators import Generator, GeneratorResolver, SkippedCell, train_generator, write_record
from reid_eval.bench_grid import NO_GENERATOR, Cell, metric_names
from reid_eval.bench_pool import InlinePool, sigterm_interrupts, stop_pool
from reid_eval.bench_report import RESULT_COLUMNS
from reid_eval.bench_stats import LEARNT, add_recovery
from reid_eval.features import METRIC_FILE

__all__ = ["BenchError", "Prepared", "prepare", "Scheduler", "collect_results", "cell_dir", "defer_short", "CELL_FILE"]

CELL_FILE = "cell.json"
SHORT_SHARE = 0.5  # a training with under this share of its batch's longest per-epoch images is short


class BenchError(ValueError):
    """A bad bench option or a failed step; the message names the flag or the command."""


@dataclass
class Prepared:
    """What a grid needs, resolved before any work."""

    cells: list[Cell]  # the cells that can run (skipped ones left out)
    data: Path  # the dataset root
    index: TrainIndex
    generators: dict[Cell, Generator]  # cells whose set needs a trained generator
    partners: dict[Cell, int]  # none-iters cells -> images per epoch (their partner set's size)
    skipped: list[SkippedCell]
    settings: dict[Cell, dict]  # what makes a finished cell reusable (compared with cell.json)


def prepare(cells: list[Cell], opts, log=print) -> Prepared:
    """Dataset (the embedded one rendered if absent), generators, partner sizes and settings of ``cells``."""
    from augment.run import RunOptions, input_spec
    from augment.validate import resolve_inputs

    inputs = resolve_inputs(input_spec(RunOptions(data=opts.data)))
    resolver = GeneratorResolver(opts, inputs.data, inputs.index, embedded=opts.data is None, log=log)
    runnable, generators, partners, skipped = [], {}, {}, []
    sizes: dict = {}
    for cell in cells:
        found = resolver.for_cell(cell) if cell.base_method not in opts.external else _external_ready(cell, opts)
        if isinstance(found, SkippedCell):
            skipped.append(found)
            continue
        if found is not None:
            generators[cell] = found
        spec = cell.partner_spec()
        if spec is not None:
            if spec not in sizes:  # the rows every generating method's set holds at that p and seed
                sizes[spec] = len(make_plan(inputs.index, spec).table)
            partners[cell] = sizes[spec]
        runnable.append(cell)
    prepared = Prepared(runnable, inputs.data, inputs.index, generators, partners, skipped, {})
    prepared.settings = {c: _cell_settings(c, opts, prepared) for c in runnable}
    return prepared


def external_folder(cell: Cell, opts) -> Path:
    """Where the external tool of ``cell``'s method finds the set's plan and writes its images."""
    return Path(opts.external[cell.base_method]) / cell.set_name


def _external_ready(cell: Cell, opts) -> SkippedCell | None:
    """None when the external tool has written images for the cell's set; else the plan is exported there
    (once) and the cell waits: a later run of the bench imports the images (augment.exchange)."""
    from augment.data.market import is_image_file
    from augment.exchange import export_plan
    from augment.run import RunOptions

    folder = external_folder(cell, opts)
    if folder.is_dir() and any(is_image_file(p.name) for p in folder.iterdir()):
        return None
    if not cell.generates:
        return None
    if not (folder / "plan.json").is_file():
        export_plan(cell.plan_spec(), RunOptions(data=opts.data), folder)
    return SkippedCell(cell, f"waiting for {cell.base_method}'s images: its plan is in {folder} (plan.csv, plan.json)")


def cell_dir(cell: Cell, opts) -> Path:
    return Path(opts.out) / "cells" / f"{cell.model}-{opts.recipe}" / cell.name


def _text(path) -> str | None:
    return str(path) if path is not None else None


def cell_metrics(cell: Cell, opts) -> tuple[str, ...]:
    """The distances learnt and scored on the cell's features (Table 4's; none in the Table-5 grid)."""
    return metric_names(cell, getattr(opts, "reid_methods", ()))


def _metric_job(cell: Cell, opts) -> dict | None:
    """reid_eval.features.evaluate_run's arguments for the cell, or None when it has no learnt distance."""
    names = cell_metrics(cell, opts)
    if not names:
        return None
    return {"names": list(names), "seed": cell.seed, "options": dict(getattr(opts, "metric_options", {}))}


def _cell_settings(cell: Cell, opts, prepared: Prepared) -> dict:
    generator = prepared.generators.get(cell)
    metric_job = _metric_job(cell, opts)
    return {
        "cell": cell.settings(),
        "recipe": opts.recipe,
        "epochs": opts.epochs,
        "batch_size": opts.batch_size,
        "data": _text(opts.data),
        "test_data": _text(opts.test_data),
        "generator": generator.name if generator is not None else None,
        "checkpoint": _text(generator.user_checkpoint) if generator is not None else None,
        "images_per_epoch": prepared.partners.get(cell),
        **({"metric_learning": metric_job} if metric_job else {}),  # only then: earlier cells stay finished
    }


def finished(cell: Cell, opts, prepared: Prepared) -> dict | None:
    """cell.json of a finished cell with these settings, else None."""
    folder = cell_dir(cell, opts)
    path = folder / CELL_FILE
    if not (path.exists() and (folder / "metrics.json").exists()):
        return None
    if cell_metrics(cell, opts) and not (folder / METRIC_FILE).exists():
        return None
    info = json.loads(path.read_text())
    return info if info.get("settings") == prepared.settings[cell] else None


# --------------------------------------------------------------------------------------------- results
def _training_figures(metrics: dict) -> dict:
    """Steps and images seen (computed for metrics written before the training recorded them)."""
    t = metrics["training"]
    iterations = t.get("iterations", t["epochs"] * t["iterations_per_epoch"])
    return {
        "iterations": iterations,
        "images_seen": t.get("images_seen", iterations * t["batch_size"]),
        "images_per_epoch": t.get("images_per_epoch", t["train_images"]),
    }


def _row(cell: Cell, opts, metrics: dict, info: dict, generator: str) -> dict:
    data, training = metrics["data"], metrics["training"]
    return {
        "model": cell.model,
        "recipe": opts.recipe,
        "method": cell.method,
        "generator_data": cell.generator_data,
        "protocol": cell.protocol,
        "value": cell.value,
        "seed": cell.seed,
        "train_images": data["train"]["images"],
        "generated_images": data["generated_train_images"],
        **_training_figures(metrics),
        "rank1_pct": 100 * metrics["rank1"],
        "rank5_pct": 100 * metrics["rank5"],
        "map_pct": 100 * metrics["mAP"],
        "cuhk03_rank1_pct": 100 * metrics["cuhk03_rank1"],
        "recovery": np.nan,  # filled by bench_stats.add_recovery
        "rank10_pct": 100 * metrics["rank10"],
        "column": str(cell.column),
        "real_images": data["real_train_images"],
        "train_ids": data["train"]["identities"],
        "epochs": training["epochs"],
        "batch_size": training["batch_size"],
        "generator": generator,
        "imagenet_weights": metrics["model"]["imagenet_weights"],
        "train_seconds": training["seconds"],
        "eval_seconds": metrics["evaluation"]["seconds"],
        "set_seconds": info.get("set_seconds", 0.0),
        "seconds": info.get("seconds", 0.0),
        "reused_from": info.get("reused_from") or "",
        "cell_dir": info["cell_dir"],
        "set_dir": info["set_dir"],
        "set_seed": cell.set_seed,
        "length": cell.length,
        "loss": cell.loss,
    }


def _learnt_scores(folder: Path) -> dict:
    """{'<learner>_rank1_pct': ..., '<learner>_map_pct': ...} from the cell's metric-learning.json (NaN where a
    learner did not run or was not defined on its data)."""
    path = folder / METRIC_FILE
    scores = json.loads(path.read_text())["metrics"] if path.exists() else {}
    out = {}
    for name in LEARNT:
        found = scores.get(name, {})
        out[f"{name}_rank1_pct"] = 100 * found["rank1"] if "rank1" in found else np.nan
        out[f"{name}_map_pct"] = 100 * found["mAP"] if "mAP" in found else np.nan
    return out


def collect_results(prepared: Prepared, opts) -> pd.DataFrame:
    """One row per finished cell (from the cell folders), with each row's recovery."""
    rows = []
    for cell in prepared.cells:
        info = finished(cell, opts, prepared)
        if info is not None:
            metrics = json.loads((cell_dir(cell, opts) / "metrics.json").read_text())
            generator = prepared.generators.get(cell)
            row = _row(cell, opts, metrics, info, generator.name if generator else NO_GENERATOR)
            rows.append({**row, **_learnt_scores(cell_dir(cell, opts))})
    return add_recovery(pd.DataFrame(rows, columns=RESULT_COLUMNS))


# ------------------------------------------------------------------------------------------------ sets
def _gen_precision(choice: str, device: str) -> str:
    if choice != "auto":
        return choice
    return "bf16" if bf16_is_native(resolve_device(device)) else "fp32"


def build_set(
    cell: Cell, opts, executor: Executor, generator: Generator | None, threads: int | None = None
) -> tuple[Path, str, float]:
    """Build the cell's training set with augment.run's library function; returns (set folder, the content
    hash of the checkpoint that generated it ("" for real images only), seconds). A set with failed rows is
    refused: its size would no longer be the plan's (nor its partner's). ``threads``: the generator's torch
    threads with the local executor (None: this process's)."""
    from augment.run import RunOptions, run_augmentation

    if cell.base_method in getattr(opts, "external", {}) and cell.generates:
        return _import_set(cell, opts)
    spec = cell.plan_spec()
    sets_dir = Path(opts.sets_dir) if opts.sets_dir is not None else Path(opts.out) / "sets"
    run_opts = RunOptions(
        data=opts.data,
        checkpoint=generator.checkpoint if generator is not None else None,
        out=sets_dir / cell.set_name,
        device=opts.device,
        precision=_gen_precision(opts.gen_precision, opts.device),
        threads=threads if executor.name == "local" else None,
        overwrite=True,  # the bench owns its sets: one made by other code or settings is rebuilt, not refused
    )
    print(f"[bench] building the set {cell.set_name} of cell {cell.name} ({executor.name} executor)")
    t0 = time.perf_counter()
    try:
        summary = run_augmentation(spec, run_opts, executor)
    except (ValueError, FileNotFoundError) as e:  # UsageError, DatasetError, CheckpointError, missing weights
        raise BenchError(f"building the set of cell {cell.name} failed: {e}") from e
    failed = sum(v for k, v in summary.rows.items() if k.endswith("_failed"))
    if failed:
        raise BenchError(f"the set {summary.out} of cell {cell.name} has {failed} failed rows; re-run to retry them")
    return Path(summary.out), summary.checkpoint_hash, time.perf_counter() - t0


def _import_set(cell: Cell, opts) -> tuple[Path, str, float]:
    """An external method's set: its returned images checked against the plan and imported (augment.exchange);
    the content hash of those images stands where a checkpoint hash would."""
    from augment.exchange import import_generated
    from augment.run import RunOptions

    sets_dir = Path(opts.sets_dir) if opts.sets_dir is not None else Path(opts.out) / "sets"
    folder = external_folder(cell, opts)
    t0 = time.perf_counter()
    print(f"[bench] importing the set {cell.set_name} of cell {cell.name} from {folder}")
    try:
        summary = import_generated(
            cell.plan_spec(), RunOptions(data=opts.data, out=sets_dir / cell.set_name, overwrite=True), folder
        )
    except (ValueError, FileNotFoundError) as e:
        raise BenchError(f"importing the set of cell {cell.name} failed: {e}") from e
    return Path(summary.out), summary.checkpoint_hash, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------- trainings
@dataclass
class _Pending:
    """A cell whose set is built and whose training (or reuse) is still to come."""

    cell: Cell
    cell_dir: Path
    settings: dict
    set_dir: Path
    set_seconds: float
    key: tuple
    images_per_epoch: int  # the set's size, or the partner's (none-iters, t-steps)


@contextlib.contextmanager
def _quiet(enabled: bool):
    """stdout and stderr to nowhere (a worker's training writes its own train.log)."""
    if not enabled:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
        yield


def train_cell(job: dict) -> dict:
    """Train one cell (in this process or a worker process); returns its metrics. Then, for a Table-4 cell, the
    distances learnt on its features (reid_eval.features.evaluate_run: metric-learning.json beside metrics.json).

    In a worker, the training's own output goes to the cell's train.log only.
    """
    from reid_eval.train import TrainOptions, run_training

    opts = TrainOptions(**job["options"])
    with _quiet(not job["verbose"]):
        metrics = run_training(opts)
        if job.get("metric_learning"):
            from reid_eval.features import evaluate_run

            ml = job["metric_learning"]
            evaluate_run(opts.out, ml["names"], seed=ml["seed"], device=opts.device, options=ml["options"])
    return metrics


def _jobs(opts, tasks: int) -> int:
    if opts.jobs is not None:
        return max(1, min(opts.jobs, tasks))
    on_gpu = resolve_device(opts.device).type == "cuda"
    return 1 if on_gpu else max(1, min(os.cpu_count() or 1, tasks))


class Scheduler:
    """Runs the unfinished cells of a prepared grid (see the module docstring)."""

    def __init__(self, prepared: Prepared, opts, executor: Executor, on_result, t_bench: float):
        self.prepared, self.opts, self.executor, self.on_result, self.t_bench = (
            prepared,
            opts,
            executor,
            on_result,
            t_bench,
        )
        self.trained: dict[tuple, Path] = {}  # train key -> folder of a finished cell trained on that set
        self.inflight: dict[tuple, list[_Pending]] = {}  # train key -> cells waiting for that training
        self.futures: dict[Future, tuple] = {}
        self.waiting: dict[str, list[Cell]] = {}  # generator name -> cells whose sets wait for it
        self.held: dict[tuple, list[_Pending]] = {}  # train key -> a short training queued once no generator trains
        self.pool = InlinePool()
        self.verbose, self.threads = True, opts.threads

    def run(self, todo: list[Cell], trained: dict[tuple, Path]) -> None:
        self.trained.update(trained)
        generators = {g.name: g for c in todo if (g := self.prepared.generators.get(c)) and not g.finished}
        waiting = {name: [c for c in todo if self._generator_name(c) == name] for name in generators}
        ready = [c for c in todo if self._generator_name(c) not in generators]
        jobs = _jobs(self.opts, len(generators) + len(todo))
        self.threads = self.opts.threads if self.opts.threads is not None else (1 if jobs > 1 else None)
        print(
            f"[bench] {len(todo)} cells to run, {len(generators)} generator(s) to train, in {jobs} process(es)"
            f"{f', {self.threads} torch thread(s) each' if self.threads else ''}; progress in each cell's train.log"
        )
        if jobs > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # spawn: the parent has used OpenMP (generation), which a forked child may deadlock on
            self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))
            self.verbose = False
        try:
            with sigterm_interrupts():
                self._loop(generators, waiting, ready)
        except BaseException:
            stop_pool(self.pool)
            raise
        self.pool.shutdown(wait=True)

    def _generator_name(self, cell: Cell) -> str | None:
        generator = self.prepared.generators.get(cell)
        return generator.name if generator is not None else None

    def _loop(self, generators: dict[str, Generator], waiting: dict[str, list[Cell]], ready: list[Cell]) -> None:
        self.waiting = waiting
        for generator in generators.values():  # first: the longest jobs, and the ones other cells wait for
            job = {"config": generator.run_config(self.opts.device), "threads": self.threads, "verbose": self.verbose}
            print(f"[bench] training the {generator.method} generator {generator.name} -> {generator.folder}")
            self._submit(train_generator, job, ("generator", generator))
        self._start(ready)
        while self.futures:  # a held training is queued when the last generator future is handled
            done, _ = wait(list(self.futures), return_when=FIRST_COMPLETED)
            for future in done:
                self._handle(future)

    def _submit(self, fn, job: dict, tag: tuple) -> None:
        future = self.pool.submit(fn, job)
        self.futures[future] = tag
        if isinstance(self.pool, InlinePool):  # done already: record it before the next job runs
            self._handle(future)

    def _handle(self, future: Future) -> None:
        kind, what = self.futures.pop(future)
        result = future.result()
        if kind == "generator":
            write_record(what, result["seconds"])
            print(f"[bench] generator {what.name} trained ({result['seconds'] / 60:.1f} min)")
            self._start(self.waiting.pop(what.name))
            if not self.waiting:
                self._release_held()
        else:
            self._record(what, result)

    def _pending(self, cell: Cell) -> _Pending:
        from reid_eval.datasets import load_splits

        # beside worker processes (one thread each) the main process generates with one thread too: two threads
        # there would put four on two cores, and OpenMP threads that wait for a core slow every process down
        generator = self.prepared.generators.get(cell)
        set_dir, made_by, seconds = build_set(cell, self.opts, self.executor, generator, self.threads)
        splits = load_splits(set_dir, self.opts.test_data)
        per_epoch = self.prepared.partners.get(cell)
        o = self.opts
        # the set's identity: its files (names and sizes) and the generator that made them (two generators'
        # sets share every name and may share sizes); then what the training does with it
        key = (splits.fingerprint, made_by, cell.model, o.recipe, cell.seed, o.epochs, o.batch_size, per_epoch)
        metric_job = _metric_job(cell, o)  # the Table-4 grid's additions, only where they apply (JSON-able, hashable)
        key += ((cell.loss,) if cell.loss != "softmax" else ()) + (
            (json.dumps(metric_job, sort_keys=True),) if metric_job else ()
        )
        folder = cell_dir(cell, o)
        folder.mkdir(parents=True, exist_ok=True)
        images = per_epoch or len(splits.train_items)
        return _Pending(cell, folder, self.prepared.settings[cell], set_dir, seconds, key, images)

    def _start(self, cells: list[Cell]) -> None:
        """Build the cells' sets; reuse a finished training of the same set, join one under way, or queue one."""
        new: dict[tuple, list[_Pending]] = {}
        for cell in cells:
            p = self._pending(cell)
            if p.key in self.trained and (self.trained[p.key] / "metrics.json").exists():
                source = self.trained[p.key]
                _finish_cell(p, json.loads((source / "metrics.json").read_text()), p.set_seconds, source)
                print(f"[bench] {cell.model} {cell.name}: same training set as {source}: metrics reused")
                self.on_result()
            elif p.key in self.inflight:
                self.inflight[p.key].append(p)
            elif p.key in self.held:
                self.held[p.key].append(p)
            else:
                new.setdefault(p.key, []).append(p)
        now, later = defer_short(list(new.values()), generators_pending=bool(self.waiting))
        self.held.update((group[0].key, group) for group in later)
        for group in now:
            self._queue(group)

    def _queue(self, group: list[_Pending]) -> None:
        first = group[0]
        self.inflight[first.key] = group
        print(
            f"[bench] queued {first.cell.model} {first.cell.name} ({first.images_per_epoch} images per epoch)"
            f" -> {first.cell_dir / 'train.log'}"
        )
        self._submit(train_cell, self._training_job(first), ("cell", first.key))

    def _release_held(self) -> None:
        held, self.held = self.held, {}
        for group in held.values():
            self._queue(group)

    def _training_job(self, p: _Pending) -> dict:
        """What a (worker) process needs to train a cell: picklable TrainOptions fields."""
        o = self.opts
        options = dict(
            data=p.set_dir,
            model=p.cell.model,
            recipe=o.recipe,
            out=p.cell_dir,
            test_data=o.test_data,
            epochs=o.epochs,
            batch_size=o.batch_size,
            device=o.device,
            seed=p.cell.seed,
            threads=self.threads,
            overwrite=True,
            images_per_epoch=self.prepared.partners.get(p.cell),
            loss=p.cell.loss,
        )
        return {"verbose": self.verbose, "options": options, "metric_learning": _metric_job(p.cell, o)}

    def _record(self, key: tuple, metrics: dict) -> None:
        """A finished training: cell.json of every cell waiting for it, then the results so far."""
        group = self.inflight.pop(key)
        first, seconds = group[0], metrics["seconds_total"] + _metric_seconds(group[0].cell_dir)
        _finish_cell(first, metrics, first.set_seconds + seconds, None)
        for p in group[1:]:
            _finish_cell(p, metrics, p.set_seconds, first.cell_dir)
        self.trained[key] = first.cell_dir
        training, names = metrics["training"], ", ".join(p.cell.name for p in group)
        print(
            f"[bench] {first.cell.model} {names}: Rank-1 {100 * metrics['rank1']:.1f}%, "
            f"mAP {100 * metrics['mAP']:.1f}% ({training['train_images']} images, {training['iterations']} steps, "
            f"{seconds:.0f} s){_learnt_text(first.cell_dir)}; bench {(time.perf_counter() - self.t_bench) / 60:.1f} "
            "min so far"
        )
        self.on_result()


def defer_short(groups: list[list], generators_pending: bool) -> tuple[list[list], list[list]]:
    """(now, later): training groups (lists of cells sharing one training, each with ``images_per_epoch``) in the
    order to queue them now, longest first (it balances the workers), and the short ones to hold back while a
    generator still trains: the pool runs jobs in submission order, so a short training queued early runs mid-grid,
    while held back it fills a process at the end, when the last long training would run alone."""
    ordered = sorted(groups, key=lambda g: -g[0].images_per_epoch)
    if not generators_pending or not ordered:
        return ordered, []
    cut = SHORT_SHARE * ordered[0][0].images_per_epoch
    return [g for g in ordered if g[0].images_per_epoch >= cut], [g for g in ordered if g[0].images_per_epoch < cut]


def _metric_seconds(folder: Path) -> float:
    path = folder / METRIC_FILE
    record = json.loads(path.read_text()) if path.exists() else {}
    return record.get("extract_seconds", 0.0) + record.get("fit_seconds", 0.0)


def _learnt_text(folder: Path) -> str:
    """'; pooled features: euclidean 60.1 / 40.2, ...' (Rank-1 / mAP %), or '' without learnt distances."""
    scores = _learnt_scores(folder) if (folder / METRIC_FILE).exists() else {}
    found = [n for n in LEARNT if np.isfinite(scores.get(f"{n}_rank1_pct", np.nan))]
    parts = [f"{n} {scores[f'{n}_rank1_pct']:.1f} / {scores[f'{n}_map_pct']:.1f}" for n in found]
    return f"; pooled features, Rank-1 / mAP: {', '.join(parts)}" if parts else ""


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
        if (source / METRIC_FILE).exists():  # the same training's features: the same learnt distances
            shutil.copyfile(source / METRIC_FILE, p.cell_dir / METRIC_FILE)
    (p.cell_dir / CELL_FILE).write_text(json.dumps(info, indent=1))
    return info
