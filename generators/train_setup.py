"""What a ``generators.train`` run trains, and on what: phases 1-3 of :func:`generators.train.train`.

:class:`RunConfig` (the flags as a dataclass) -> :func:`resolve_run` (method, preset, config and
seed, from the flags and preset or from the checkpoint being resumed) -> :func:`load_data` (pairs,
image list and keypoints checked without decoding; a resumed run must find its dataset) ->
:func:`check_required_weights` (pretrained files the recipe needs). Nothing here builds a network
or decodes an image, so every flag, data and weights error comes before any work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augment.data.keypoints import find_keypoint_file, read_dataset_annotations
from augment.data.market import DatasetError, read_market
from augment.runtime import UsageError
from augment.synth import embedded_dataset
from generators.base import Method, TrainSchedule, apply_overrides, get_method
from generators.checkpoint import read_checkpoint
from generators.data import PairTable, load_pairs
from generators.losses import MissingWeightsError, default_vgg19_path

DEFAULT_METHOD = "patn"
DEFAULT_PRESET = "synth"
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("auto", "off", "bf16", "fp16")


# ---------------------------------------------------------------------------------------------
# run configuration


@dataclass
class RunConfig:
    """One training run. ``None`` means "from the preset" (or, resuming, "from the checkpoint")."""

    out: Path
    method: str | None = None  # default patn
    preset: str | None = None  # default synth
    data: Path | None = None  # default: the embedded dataset
    keypoints: Path | None = None  # folder with the community CSVs, if not in the data root
    pairs: Path | None = None  # train pairs CSV (default: market-pairs-train.csv); e.g. pairs among kept images
    iterations: int | None = None
    batch_size: int | None = None
    checkpoint_every: int | None = None
    sample_every: int | None = None
    resume: bool = False
    device: str = "auto"
    amp: str = "auto"
    vgg_weights: Path | None = None
    no_perceptual: bool = False
    seed: int | None = None  # default 0
    workers: int = 1  # training processes; N > 1 runs through main() / cluster.train_ray (Ray Train)
    address: str | None = None  # Ray cluster for workers > 1 (default RAY_ADDRESS, else a private local Ray)
    loader_workers: int | None = None  # DataLoader processes; default: schedule's on CUDA, 0 on CPU
    overrides: dict[str, str] = field(default_factory=dict)  # --set field=value
    num_samples: int = 6  # rows of the sample grid
    progress: bool = True

    def validate(self) -> None:
        """Errors naming the flag, before any work."""
        positive = {
            "--iterations": self.iterations,
            "--batch-size": self.batch_size,
            "--checkpoint-every": self.checkpoint_every,
            "--sample-every": self.sample_every,
        }
        for flag, value in positive.items():
            if value is not None and value < 1:
                raise UsageError(flag, f"must be >= 1, got {value}")
        if self.workers < 1:
            raise UsageError("--workers", f"must be >= 1, got {self.workers}")
        if self.loader_workers is not None and self.loader_workers < 0:
            raise UsageError("--loader-workers", f"must be >= 0, got {self.loader_workers}")
        if self.device not in DEVICES:
            raise UsageError("--device", f"{self.device!r} is not one of {', '.join(DEVICES)}")
        if self.amp not in AMP_MODES:
            raise UsageError("--amp", f"{self.amp!r} is not one of {', '.join(AMP_MODES)}")
        if self.vgg_weights is not None and not Path(self.vgg_weights).is_file():
            raise UsageError("--vgg-weights", f"{self.vgg_weights} is not a file")
        if self.data is not None and not Path(self.data).is_dir():
            raise UsageError("--data", f"{self.data} is not a folder")
        if self.keypoints is not None and not Path(self.keypoints).is_dir():
            raise UsageError("--keypoints", f"{self.keypoints} is not a folder")
        if self.pairs is not None and not Path(self.pairs).is_file():
            raise UsageError("--pairs", f"{self.pairs} is not a file")
        if self.num_samples < 1:
            raise UsageError("--num-samples", f"must be >= 1, got {self.num_samples}")


@dataclass
class RunPaths:
    """The files of a run folder (``--out``)."""

    out: Path

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest.pt"

    @property
    def samples(self) -> Path:
        return self.out / "samples"

    @property
    def log(self) -> Path:
        return self.out / "train_log.jsonl"

    def checkpoint(self, iteration: int) -> Path:
        return self.checkpoints / f"iter_{iteration:06d}.pt"

    def sample(self, iteration: int) -> Path:
        return self.samples / f"iter_{iteration:06d}.png"


# ---------------------------------------------------------------------------------------------
# phase 1: what to train


@dataclass
class ResolvedRun:
    """What a run trains: from the flags and the preset, or from the checkpoint being resumed."""

    paths: RunPaths
    method: str
    preset: str
    impl: Method
    config: Any  # the method's Config, flags applied
    seed: int
    overrides: dict | None = None  # config overrides of a new run (dotted keys); None when resuming
    resume_data: dict | None = None  # the checkpoint being resumed (generators.checkpoint.read_checkpoint)

    @property
    def schedule(self) -> TrainSchedule:
        return self.config.train

    @property
    def stored_run(self) -> dict:
        """The ``run`` record of the checkpoint being resumed (data folders, seed, amp); {} for a new run."""
        return self.resume_data.get("run", {}) if self.resume_data is not None else {}


def resolve_run(run: RunConfig, log: Callable[[str], None] = print) -> ResolvedRun:
    """Method, preset, config and seed of ``run`` (validated): the checkpoint decides them on
    ``--resume``, the flags and preset otherwise. Raises UsageError naming the flag at fault,
    CheckpointError for an unreadable checkpoint. Builds nothing and reads no data."""
    paths = RunPaths(Path(run.out))
    if run.resume:
        return _resolve_resume(run, paths, log)
    if paths.latest.exists():
        raise UsageError(
            "--out",
            f"{paths.out} already holds a run ({paths.latest}); pass --resume to continue it or choose another --out",
        )
    method, preset = run.method or DEFAULT_METHOD, run.preset or DEFAULT_PRESET
    seed = run.seed if run.seed is not None else 0
    impl = _get_method(method)
    try:
        impl.preset(preset)
    except ValueError as e:
        raise UsageError("--preset", str(e)) from None
    overrides = _config_overrides(run, impl, preset)
    cfg = apply_overrides(impl.preset(preset), overrides)
    return ResolvedRun(paths, method, preset, impl, cfg, seed, overrides=overrides)


def _resolve_resume(run: RunConfig, paths: RunPaths, log: Callable[[str], None]) -> ResolvedRun:
    if not paths.latest.is_file():
        raise UsageError("--resume", f"no checkpoint to resume at {paths.latest}")
    data = read_checkpoint(paths.latest)
    _check_resume_flags(run, data)
    seed = int(data.get("run", {}).get("seed", 0))
    impl = _get_method(data["method"])
    cfg = impl.config_from_dict(data["config"])
    if run.iterations is not None and run.iterations != cfg.train.iterations:
        if run.iterations <= data["iteration"]:
            raise UsageError(
                "--iterations", f"{run.iterations} but the checkpoint is already at iteration {data['iteration']}"
            )
        log(
            f"[train] note: extending the run from {cfg.train.iterations} to {run.iterations} iterations "
            "(the LR decay keeps its start; the run no longer matches an uninterrupted one)"
        )
        cfg = apply_overrides(cfg, {"train.iterations": run.iterations})
    return ResolvedRun(paths, data["method"], data["preset"], impl, cfg, seed, resume_data=data)


def _get_method(name: str) -> Method:
    try:
        return get_method(name)
    except ValueError as e:
        raise UsageError("--method", str(e)) from None


def _config_overrides(run: RunConfig, impl, preset_name: str) -> dict:
    """Config overrides from the flags (dotted keys), checked against the preset."""
    preset = impl.preset(preset_name)
    overrides: dict = {}
    for key, value in run.overrides.items():
        overrides[key] = value
    sched = preset.train
    if run.iterations is not None:
        overrides["train.iterations"] = run.iterations
        counted = {"train.decay_start": sched.decay_start, **{f: getattr(preset, f) for f in impl.schedule_fields}}
        for key, value in counted.items():
            if key not in overrides:  # same fraction of the run as the preset
                overrides[key] = round(run.iterations * value / sched.iterations)
    if run.batch_size is not None:
        overrides["train.batch_size"] = run.batch_size
    if run.checkpoint_every is not None:
        overrides["train.checkpoint_every"] = run.checkpoint_every
    if run.sample_every is not None:
        overrides["train.sample_every"] = run.sample_every
    if run.no_perceptual:
        if not any(f.name == "perceptual" for f in dataclasses.fields(preset)):
            raise UsageError("--no-perceptual", f"method {impl.name!r} has no perceptual term")
        overrides["perceptual"] = False
    try:
        apply_overrides(preset, overrides)
    except (ValueError, TypeError) as e:
        flag = "--iterations" if "decay_start" in str(e) and run.iterations else "--set"
        raise UsageError(flag, str(e)) from None
    return overrides


def _check_resume_flags(run: RunConfig, data: dict) -> None:
    """On --resume the checkpoint decides the model and schedule; contradicting flags are errors."""
    stored_run = data.get("run", {})
    if run.method is not None and run.method != data["method"]:
        raise UsageError("--method", f"{run.method!r} but the checkpoint to resume is {data['method']!r}")
    if run.preset is not None and run.preset != data["preset"]:
        raise UsageError("--preset", f"{run.preset!r} but the checkpoint to resume is {data['preset']!r}")
    if run.seed is not None and "seed" in stored_run and run.seed != stored_run["seed"]:
        raise UsageError("--seed", f"{run.seed} but the run to resume used seed {stored_run['seed']}")
    fixed = {
        "--batch-size": run.batch_size,
        "--set": run.overrides or None,
        "--no-perceptual": run.no_perceptual or None,
    }
    for flag, value in fixed.items():
        if value is not None:
            raise UsageError(
                flag, "cannot change the model or schedule of a run being resumed (start a new --out instead)"
            )


# ---------------------------------------------------------------------------------------------
# phase 2: data (validated, nothing decoded)


@dataclass
class TrainData:
    """The pairs a run trains on and the pairs its sample grids show."""

    root: Path
    keypoints: Path | str | None  # folder of the community CSVs (None: the data root)
    train_table: PairTable
    sample_table: PairTable  # the test pairs, or the training pairs when the data has none


def load_data(run: RunConfig, resolved: ResolvedRun, log: Callable[[str], None] = print) -> TrainData:
    """Read and check the pairs, image list and keypoints (no image decoded); a resumed run must
    find the dataset it trained on (same fingerprint), else UsageError naming ``--data``."""
    stored_run = resolved.stored_run
    keypoints_dir = run.keypoints if run.keypoints is not None else stored_run.get("keypoints")
    if run.data is not None:
        data_root = Path(run.data)
    elif stored_run.get("data"):  # resuming: the data the run trained on
        data_root = Path(stored_run["data"])
    else:
        data_root = embedded_dataset(log=log)
    dataset = read_market(data_root)
    annotations = read_dataset_annotations(data_root, keypoints_dir)
    # a resumed run on its own data trains on the pairs file it started with, unless --pairs says otherwise
    stored_pairs = stored_run.get("pairs_file")
    same_data = stored_run.get("data") is not None and data_root.resolve() == Path(stored_run["data"]).resolve()
    pairs_file = run.pairs
    if pairs_file is None and same_data and stored_pairs and Path(stored_pairs).is_file():
        pairs_file = stored_pairs
    train_table = load_pairs(
        data_root,
        "train",
        keypoints_dir=keypoints_dir,
        pairs_file=pairs_file,
        dataset=dataset,
        annotations=annotations,
    )
    try:
        test_pairs = find_keypoint_file(data_root, "pairs", "test", keypoints_dir)
    except DatasetError as e:
        log(f"[train] note: {e}; sample grids use training pairs")
        sample_table = train_table
    else:
        sample_table = load_pairs(data_root, "test", pairs_file=test_pairs, dataset=dataset, annotations=annotations)
    resume_data = resolved.resume_data
    if resume_data is not None and resume_data.get("dataset_fingerprint") not in (
        None,
        train_table.dataset_fingerprint,
    ):
        raise UsageError(
            "--data",
            f"{data_root} has fingerprint {train_table.dataset_fingerprint}, the run to resume "
            f"trained on {resume_data['dataset_fingerprint']}",
        )
    for line in train_table.summary_lines():
        log(f"[train] {line}")
    return TrainData(data_root, keypoints_dir, train_table, sample_table)


# ---------------------------------------------------------------------------------------------
# phase 3: pretrained weights the recipe needs (before building anything)

_WEIGHT_FILES: dict[str, Callable[[RunConfig], Path]] = {
    "vgg19": lambda run: Path(run.vgg_weights) if run.vgg_weights else default_vgg19_path(),
}


def check_required_weights(impl, cfg, run: RunConfig) -> None:
    """Raise MissingWeightsError for a pretrained file the recipe needs and this machine lacks."""
    for name in impl.required_weights(cfg):
        if name not in _WEIGHT_FILES:
            raise ValueError(f"method {impl.name!r} needs weights {name!r} that the trainer cannot locate")
        path = _WEIGHT_FILES[name](run)
        if not path.is_file():
            raise MissingWeightsError(path)
