"""The generators a bench grid needs, one per (method, regime, training data), each trained once and cached.

Regimes (``--generator-data``), what each generator trains on:

- ``full``: the whole training split's pairs (``market-pairs-train.csv``), the removed images included: the
  published protocol. One generator per method serves every portion and seed.
- ``kept``: only the pairs among the images a plan keeps (same identity, both with the four torso joints, every
  ordered permutation: ``augment.data.keypoints.build_pairs``), written to ``kept-pairs.csv`` in the generator's
  folder and given to ``generators.train`` as its pairs file: one generator per kept set, i.e. per (p, seed). An
  identity that keeps a single image gives no pair, so at small p few identities are learnt from; with fewer
  than ``min_kept_pairs`` pairs the cell is skipped, with a message saying so.
- ``disjoint``: identities the re-ID set does not hold. On the embedded dataset, population 1 of the embedded
  dataset (other people, the same cameras and rendering: ``augment.synth.embedded_disjoint_dataset``); on real
  data, a checkpoint the user gives (``--checkpoint METHOD:disjoint=PATH``). One generator serves every portion
  and seed.

Generators the bench trains live in ``<out>/generators/<method>-<regime>-<key>/`` (``generators.train``'s run
folder plus ``generator.json`` once finished), where the key hashes what was trained: method, regime, the
fingerprint of the training data (the dataset's, or the kept set's), preset, iterations and config overrides.
A folder with a checkpoint but no ``generator.json`` is an interrupted training: it is resumed.

Schedule: the preset's iterations, except where ``EMBEDDED_ITERATIONS`` names a shorter one for a ``synth``
generator trained on the embedded dataset (and ``--generator-iterations`` is not given): PATN trains 1,300
iterations, the length at which its first quality curve had the best SSIM and mask-SSIM (10 CPU minutes; the
preset trains 2,500), with the preset's schedule shape (the learning rate
decays over the last 40%), which keeps the default grid within its time budget. It is a trade for time, not
the best generator for re-ID: the identity proxy and the leakage-free cells improve up to the preset's length
(docs/reid.md, "The default grid and its cost").

Generator training always uses seed 0, so the spread over bench seeds holds the plan's and the re-ID
training's randomness, not the generator's. A kept-regime generator trains on the kept images of the cell's
set, i.e. of its plan seed (``Cell.set_seed``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from augment.data.atomic import write_atomic
from augment.data.keypoints import Annotations, build_pairs, read_pairs, write_pairs
from augment.data.market import read_market
from augment.plan import PlanSpec, TrainIndex, make_plan
from reid_eval.bench_grid import Cell

__all__ = [
    "GENERATOR_FILE",
    "KEPT_PAIRS_FILE",
    "Generator",
    "SkippedCell",
    "GeneratorResolver",
    "kept_names",
    "kept_pairs",
    "check_trainable",
    "train_generator",
    "write_record",
]

GENERATOR_FILE = "generator.json"
KEPT_PAIRS_FILE = "kept-pairs.csv"
EMBEDDED_ITERATIONS = {"patn": 1300}  # method -> the bench's synth schedule on the embedded dataset (see above)


@dataclass(frozen=True)
class SkippedCell:
    """A cell the grid cannot run, and why (e.g. too few pairs among the kept images to train a generator)."""

    cell: Cell
    reason: str


@dataclass(frozen=True)
class Generator:
    """One generator the grid needs: a user's checkpoint, or one the bench trains (and caches) itself."""

    method: str
    regime: str
    fingerprint: str  # of the training data: the dataset's, or the kept set's
    folder: Path | None  # the bench's run folder; None for a user checkpoint
    data: Path | None = None  # training data root
    pairs: Path | None = None  # training pairs file (kept regime); None: the data's market-pairs-train.csv
    num_pairs: int | None = None
    preset: str = "synth"
    iterations: int | None = None
    overrides: dict = field(default_factory=dict)
    user_checkpoint: Path | None = None

    @property
    def name(self) -> str:
        return self.folder.name if self.folder is not None else f"{self.method}-{self.regime} (given)"

    @property
    def checkpoint(self) -> Path:
        if self.user_checkpoint is not None:
            return Path(self.user_checkpoint)
        return self.folder / "checkpoints" / "latest.pt"

    @property
    def finished(self) -> bool:
        """A user checkpoint, or a training of the bench that wrote generator.json."""
        if self.user_checkpoint is not None:
            return True
        return (self.folder / GENERATOR_FILE).is_file() and self.checkpoint.is_file()

    def run_config(self, device: str = "auto") -> dict:
        """``generators.train.RunConfig`` fields of its training (resumed when a checkpoint is there)."""
        resume = self.checkpoint.is_file()
        return dict(
            out=self.folder,
            method=self.method,
            preset=self.preset,
            data=self.data,
            pairs=self.pairs,
            iterations=self.iterations,
            overrides={} if resume else dict(self.overrides),  # a resumed run keeps its checkpoint's config
            resume=resume,
            device=device,
            seed=None if resume else 0,
            progress=False,
        )

    def record(self, seconds: float) -> dict:
        """generator.json: what was trained, on what, and where the checkpoint is."""
        return {
            "method": self.method,
            "regime": self.regime,
            "fingerprint": self.fingerprint,
            "data": str(self.data),
            "pairs_file": str(self.pairs) if self.pairs is not None else None,
            "num_pairs": self.num_pairs,
            "preset": self.preset,
            "iterations": self.iterations,
            "overrides": self.overrides,
            "checkpoint": str(self.checkpoint),
            "seconds": round(seconds, 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def kept_names(index: TrainIndex, portion: float, seed: int) -> list[str]:
    """The real images a portion plan keeps (the same whatever the method: kept sets depend on p and seed)."""
    plan = make_plan(index, PlanSpec("portion", portion=portion, generate=False, seed=seed))
    return sorted(plan.table["source_name"])


def kept_pairs(index: TrainIndex, names: list[str]):
    """The community pairs among ``names`` (same identity, both with the four torso joints, all ordered
    permutations), from the index's keypoints; a pandas table ``from,to``."""
    wanted = set(names)
    rows = [i for i, (n, a) in enumerate(zip(index.names, index.annotated)) if a and n in wanted]
    annotations = Annotations([index.names[i] for i in rows], index.keypoints[np.array(rows, dtype=np.int64)])
    return build_pairs(annotations)


class GeneratorResolver:
    """Which generator each cell's set needs; the same generator object for every cell that shares it."""

    def __init__(self, opts, data: Path, index: TrainIndex, embedded: bool, log=print):
        self.opts, self.data, self.index, self.embedded, self.log = opts, Path(data), index, embedded, log
        self.root = Path(opts.out) / "generators"
        self.preset = opts.generator_preset or ("synth" if embedded else "market")
        self._cache: dict[tuple, Generator | SkippedCell] = {}
        self._disjoint: tuple[Path, str] | None = None

    def for_cell(self, cell: Cell) -> Generator | SkippedCell | None:
        """The cell's generator; None when its set needs no trained one (controls, copy, p = 1)."""
        if not cell.needs_generator:
            return None
        method, regime = cell.base_method, cell.generator_data
        given = self.opts.checkpoint_for(method, regime)
        if given is not None:
            return Generator(method, regime, "", None, user_checkpoint=Path(given))
        if regime == "kept" and cell.protocol != "portion":
            return SkippedCell(
                cell, f"a {cell.protocol} set keeps every real image: its kept-images generator is the full one"
            )
        if regime == "kept":
            key = (method, regime, cell.value, cell.set_seed)
            if key not in self._cache:
                self._cache[key] = self._kept(cell)
            found = self._cache[key]
            return found if isinstance(found, Generator) else SkippedCell(cell, found.reason)
        key = (method, regime)
        if key not in self._cache:
            data, fingerprint = (self.data, self.index.fingerprint) if regime == "full" else self._disjoint_data()
            self._cache[key] = self._trained(method, regime, fingerprint, data)
        return self._cache[key]

    def iterations(self, method: str) -> int | None:
        """The schedule of ``method``'s generators: --generator-iterations, the embedded grid's (EMBEDDED_ITERATIONS)
        or None (the preset's)."""
        if self.opts.generator_iterations is not None:
            return self.opts.generator_iterations
        return EMBEDDED_ITERATIONS.get(method) if self.embedded and self.preset == "synth" else None

    def _trained(self, method: str, regime: str, fingerprint: str, data: Path, **extra) -> Generator:
        o = self.opts
        iterations = self.iterations(method)
        key = _key(method, regime, fingerprint, self.preset, iterations, o.generator_overrides)
        folder = self.root / f"{method}-{regime}-{key}"
        return Generator(
            method,
            regime,
            fingerprint,
            folder,
            data=data,
            preset=self.preset,
            iterations=iterations,
            overrides=dict(o.generator_overrides),
            **extra,
        )

    def _disjoint_data(self) -> tuple[Path, str]:
        """The embedded dataset's population 1 (rendered when absent) and its fingerprint."""
        if self._disjoint is None:
            from augment.synth import embedded_disjoint_dataset

            root = embedded_disjoint_dataset(log=self.log)
            self._disjoint = (Path(root), read_market(root).fingerprint())
        return self._disjoint

    def _kept(self, cell: Cell) -> Generator | SkippedCell:
        """A generator trained on the pairs among the cell's kept images (written beside it), or why not."""
        names = kept_names(self.index, float(f"{cell.value:g}"), cell.set_seed)
        fingerprint = _key(self.index.fingerprint, names)
        pairs = kept_pairs(self.index, names)
        identities = pairs["from"].str.split("_").str[0].nunique() if len(pairs) else 0
        what = (
            f"p = {cell.value:g}, seed {cell.set_seed}: {len(names)} kept images of "
            f"{len(np.unique(self.index.pids))} identities give {len(pairs)} pairs over {identities} identities"
        )
        if len(pairs) < self.opts.min_kept_pairs:
            return SkippedCell(
                cell,
                f"{what}, fewer than --min-kept-pairs {self.opts.min_kept_pairs}: too few to train a "
                f"{cell.base_method} generator on the kept images alone",
            )
        generator = self._trained(cell.base_method, "kept", fingerprint, self.data, num_pairs=len(pairs))
        path = generator.folder / KEPT_PAIRS_FILE
        generator = replace(generator, pairs=path)
        if not path.is_file() or not read_pairs(path).reset_index(drop=True).equals(pairs.reset_index(drop=True)):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_pairs(path, pairs)
        self.log(f"[bench] kept-regime generator for {what} -> {path}")
        return generator


def check_trainable(generator: Generator, device: str = "auto") -> None:
    """The flags, preset and pretrained weights of a generator the bench is to train, checked before any work
    (UsageError, CheckpointError, MissingWeightsError)."""
    if generator.finished:
        return
    from generators.train import RunConfig
    from generators.train_setup import check_required_weights, resolve_run

    config = RunConfig(**generator.run_config(device))
    config.validate()
    resolved = resolve_run(config, log=lambda line: None)
    check_required_weights(resolved.impl, resolved.config, config)


def train_generator(job: dict) -> dict:
    """Train (or resume) one generator with ``generators.train`` (in this process or a worker process);
    returns its checkpoint, iteration and seconds. In a worker, the training's output goes to its log only."""
    import torch

    from generators.train import RunConfig, train

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    config = RunConfig(**job["config"])
    Path(config.out).mkdir(parents=True, exist_ok=True)
    log_path = Path(config.out) / "bench-train.log"
    with open(log_path, "a", buffering=1) as log:

        def say(line: str) -> None:
            log.write(line + "\n")
            if job.get("verbose"):
                print(line)

        quiet = contextlib.nullcontext() if job.get("verbose") else contextlib.redirect_stdout(log)
        with quiet:
            report = train(config, log=say)
    if report.interrupted or report.checkpoint is None:
        raise RuntimeError(f"generator training {config.out} stopped at iteration {report.iteration}; re-run to resume")
    return {"checkpoint": str(report.checkpoint), "iteration": report.iteration, "seconds": report.seconds}


def write_record(generator: Generator, seconds: float) -> Path:
    """generator.json: the training finished (the cache's mark)."""
    path = generator.folder / GENERATOR_FILE
    write_atomic(path, json.dumps(generator.record(seconds), indent=1).encode())
    return path
