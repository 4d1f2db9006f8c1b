"""``python -m generators.train``: train a pose-transfer generator on a Market-layout dataset.

    python -m generators.train --method patn --preset synth --out runs/generators/patn-synth
    python -m generators.train --method patn --preset market --data /data/Market-1501 \\
        --keypoints /data/market-keypoints --vgg-weights ~/vgg19-dcbb9e9d.pth --out runs/patn-market
    python -m generators.train --out runs/generators/patn-synth --resume       # continue a run

Without ``--data`` the embedded dataset ``data/synth-market`` is used (rendered first if absent);
with ``--resume``, the data and keypoints folders the run trained on (recorded in the checkpoint;
the dataset fingerprint must still match).

Order of work: flags are validated, then the data (pairs, images and keypoints checked without
decoding), then the pretrained weights the recipe needs (a missing VGG-19 file stops here, before
anything is built), and only then are the networks built and trained.

Schedule: the method's ``TrainSchedule`` (iteration based): Adam on every network, constant LR
until ``decay_start``, then linear to 0 at ``iterations``. ``--iterations N`` keeps the preset's
decay point as the same fraction of the run (``--set train.decay_start=K`` sets it exactly).
Batches come from :class:`generators.data.PairSampler`: uniform draws with replacement, 4,000 per
"epoch", as the official loader.

Outputs under ``--out``::

    checkpoints/iter_XXXXXX.pt   every --checkpoint-every iterations and at the end
    checkpoints/latest.pt        the newest of them (a hard link, replaced atomically)
    samples/iter_XXXXXX.png      source | source pose | target pose | generated | target, fixed test pairs
    train_log.jsonl              one line per iteration: iteration, lr, seconds, losses

Resume (``--resume``) restores networks, optimizers, LR schedulers, image pools, GradScaler, the
torch / CUDA / numpy / python RNG states and the sampler position from ``checkpoints/latest.pt``;
on CPU (deterministic kernels on) the resumed run ends with weights identical to an uninterrupted
run. Ctrl-C or SIGTERM finishes the current iteration, writes a checkpoint and exits (status 130)
with the command that resumes; a second Ctrl-C aborts at once (the previous checkpoint stays valid).

Precision (``--amp``): ``auto`` picks bf16 autocast on CUDA GPUs that support it, else fp16 with
a GradScaler. On CPU, ``auto`` picks bf16 autocast where the CPU computes bf16 natively (AMX or
AVX512-BF16; same losses to 3 digits, speed-up in docs/measurements.md#generator-training),
else fp32. Losses and BatchNorm stay in fp32 under autocast; ``--amp off`` gives plain fp32. Resume is
bit-exact in both (same kernels, same order). ``fp16`` is CUDA only.

Workers (``--workers N``, N > 1): N processes with Ray Train (``cluster.train_ray``), each running
this same loop on its share of every batch, gradients averaged across them; rank 0 writes the
checkpoints, samples and log. Ray is started privately unless ``--address`` / ``RAY_ADDRESS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from augment.data.atomic import write_atomic
from augment.data.imageio import encode_image
from augment.data.keypoints import JOINTS, find_keypoint_file, read_dataset_annotations
from augment.data.market import DatasetError, place_file, read_market
from augment.data.pose import CONNECTIONS
from augment.runtime import (
    UsageError,
    amp_name,
    deterministic_kernels,
    resolve_amp,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)
from augment.synth import embedded_dataset
from generators.base import Bundle, apply_overrides, build, get_method, parse_override
from generators.checkpoint import CheckpointError, bundle_from_checkpoint, read_checkpoint, save
from generators.data import (
    OFFICIAL_EPOCH_PAIRS,
    PairDataset,
    PairSampler,
    fixed_pairs,
    load_pairs,
    make_loader,
)
from generators.inference import model_to_uint8
from generators.losses import MissingWeightsError, default_vgg19_path

DEFAULT_METHOD = "patn"
DEFAULT_PRESET = "synth"
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("auto", "off", "bf16", "fp16")
INTERRUPTED_EXIT = 130  # the shell's status for a run stopped by SIGINT


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
    workers: int = 1  # training processes (N > 1: Ray Train, cluster.train_ray)
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
        if self.num_samples < 1:
            raise UsageError("--num-samples", f"must be >= 1, got {self.num_samples}")


@dataclass
class RunPaths:
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


@dataclass
class TrainReport:
    """What a run did; ``interrupted`` when stopped by Ctrl-C / SIGTERM / a hook."""

    method: str
    preset: str
    start_iteration: int
    iteration: int
    iterations: int
    batch_size: int
    seconds: float
    final_losses: dict[str, float]
    checkpoint: Path | None
    samples: Path
    log: Path
    device: str
    amp: str
    interrupted: bool = False
    resume_command: str = ""

    @property
    def images_per_second(self) -> float:
        done = self.iteration - self.start_iteration
        return done * self.batch_size / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        done = self.iteration - self.start_iteration
        losses = "  ".join(f"{k} {v:.4f}" for k, v in self.final_losses.items()) or "-"
        head = "interrupted" if self.interrupted else "finished"
        out = [
            f"[train] {head}: {self.method}/{self.preset} iteration {self.iteration}/{self.iterations} "
            f"({done} this run, batch {self.batch_size}, {self.device}, amp {self.amp})",
            f"[train] time {self.seconds:.1f} s, {self.images_per_second:.2f} images/s",
            f"[train] final losses: {losses}",
            f"[train] checkpoint: {self.checkpoint}" if self.checkpoint else "[train] checkpoint: none written",
            f"[train] samples: {self.samples}",
            f"[train] log: {self.log}",
        ]
        if self.interrupted and self.resume_command:
            out.append(f"[train] resume with: {self.resume_command}")
        return out


@dataclass
class IterationInfo:
    """What a hook sees after each completed iteration (hooks may raise KeyboardInterrupt to stop)."""

    iteration: int
    losses: dict[str, float]
    bundle: Bundle
    optimizers: dict


Hook = Callable[[IterationInfo], None]


class SingleProcess:
    """How :func:`train` spreads over processes: here, not at all (one process does everything).

    ``cluster.train_ray`` supplies the multi-worker version (same loop in every worker)."""

    rank = 0
    world_size = 1

    @property
    def writes(self) -> bool:
        """Whether this process writes the run folder (checkpoints, samples, log)."""
        return self.rank == 0

    def shard(self, sampler: PairSampler) -> PairSampler:
        """The batches this process trains on (all of them)."""
        return sampler

    def start(self, nets, ctx, *, seed: int, iteration: int) -> None:
        """Called once the training state is in place (built or restored), before the first step."""

    def reduce_losses(self, losses: dict[str, float]) -> dict[str, float]:
        """The losses to log for a step (one process: its own)."""
        return losses


# ---------------------------------------------------------------------------------------------
# stop on Ctrl-C / SIGTERM after the current iteration


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop stops after the iteration in progress. A second SIGINT
    raises KeyboardInterrupt at once. Handlers are installed only in the main thread."""

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        print(
            f"\n[train] {self.signal_name}: stopping after this iteration (Ctrl-C again aborts)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __bool__(self) -> bool:
        return self.signal_name is not None


# ---------------------------------------------------------------------------------------------
# sample grids

_JOINT_COLOURS = np.array(
    [
        cv2.cvtColor(np.uint8([[[int(180 * j / len(JOINTS)), 255, 255]]]), cv2.COLOR_HSV2RGB)[0, 0]
        for j in range(len(JOINTS))
    ],
    dtype=np.uint8,
)


def render_skeleton(kps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(18,2) (y,x) keypoints, -1 missing -> (H,W,3) uint8 RGB drawing on black (COCO-18 connections)."""
    canvas = np.zeros((*size, 3), np.uint8)
    kps = np.asarray(kps)
    present = (kps >= 0).all(-1)
    for a, b in CONNECTIONS:
        if present[a] and present[b]:
            colour = tuple(int(c) for c in _JOINT_COLOURS[b])
            cv2.line(canvas, (int(kps[a, 1]), int(kps[a, 0])), (int(kps[b, 1]), int(kps[b, 0])), colour, 1, cv2.LINE_AA)
    for j in np.flatnonzero(present):
        cv2.circle(canvas, (int(kps[j, 1]), int(kps[j, 0])), 2, tuple(int(c) for c in _JOINT_COLOURS[j]), -1)
    return canvas


def sample_grid(batch: dict, generated: torch.Tensor, gap: int = 2) -> np.ndarray:
    """Rows of source | source pose | target pose | generated | target, as one (R*H, 5*W + gaps, 3) uint8."""
    src, tgt, gen = (model_to_uint8(images).cpu().numpy() for images in (batch["src_img"], batch["tgt_img"], generated))
    h, w = src.shape[1:3]
    rows = []
    for i in range(len(src)):
        panels = [
            src[i],
            render_skeleton(batch["src_kps"][i].numpy(), (h, w)),
            render_skeleton(batch["tgt_kps"][i].numpy(), (h, w)),
            gen[i],
            tgt[i],
        ]
        spacer = np.full((h, gap, 3), 255, np.uint8)
        row = [p for panel in panels for p in (panel, spacer)][:-1]
        rows.append(np.concatenate(row, axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)


# ---------------------------------------------------------------------------------------------
# the trainer


def _config_overrides(run: RunConfig, impl, preset_name: str) -> dict:
    """Config overrides from the flags (dotted keys), checked against the preset."""
    preset = impl.preset(preset_name)
    overrides: dict = {}
    for key, value in run.overrides.items():
        overrides[key] = value
    sched = preset.train
    if run.iterations is not None:
        overrides["train.iterations"] = run.iterations
        if "train.decay_start" not in overrides:  # same fraction of the run as the preset
            overrides["train.decay_start"] = round(run.iterations * sched.decay_start / sched.iterations)
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


def _resume_command(run: RunConfig) -> str:
    """The command that continues ``run`` (data and keypoints folders come from the checkpoint)."""
    parts = ["python -m generators.train", "--out", str(run.out), "--resume"]
    if run.vgg_weights is not None:
        parts += ["--vgg-weights", str(run.vgg_weights)]
    if run.device != "auto":
        parts += ["--device", run.device]
    if run.amp != "auto":
        parts += ["--amp", run.amp]
    return " ".join(parts)


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


def _read_log_tail(path: Path, keep_until: int) -> None:
    """Drop log lines past ``keep_until`` (written after the checkpoint a resume starts from)."""
    if not path.is_file():
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                if json.loads(line)["iteration"] <= keep_until:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a torn last line of a killed run
    write_atomic(path, "".join(kept).encode())


def train(
    run: RunConfig,
    *,
    hooks: Sequence[Hook] = (),
    log: Callable[[str], None] = print,
    parallel: SingleProcess | None = None,
) -> TrainReport:
    """Run (or resume) training as ``run`` says; see the module docstring. ``parallel``: this
    process's part in a multi-worker run (given by ``cluster.train_ray``; None: one process)."""
    # 1. flags --------------------------------------------------------------------------------
    run.validate()
    if parallel is None:
        if run.workers > 1:  # Ray Train workers; the cluster layer sits above this module
            from cluster.train_ray import train_on_ray

            return train_on_ray(run, hooks=hooks, log=log)
        parallel = SingleProcess()
    paths = RunPaths(Path(run.out))
    device = resolve_device(run.device)
    amp_dtype = resolve_amp(run.amp, device)
    resume_data = None
    if run.resume:
        if not paths.latest.is_file():
            raise UsageError("--resume", f"no checkpoint to resume at {paths.latest}")
        resume_data = read_checkpoint(paths.latest)
        _check_resume_flags(run, resume_data)
        method_name, preset_name = resume_data["method"], resume_data["preset"]
        seed = int(resume_data.get("run", {}).get("seed", 0))
    else:
        if paths.latest.exists():
            raise UsageError(
                "--out",
                f"{paths.out} already holds a run ({paths.latest}); pass --resume to "
                "continue it or choose another --out",
            )
        method_name, preset_name = run.method or DEFAULT_METHOD, run.preset or DEFAULT_PRESET
        seed = run.seed if run.seed is not None else 0
    try:
        impl = get_method(method_name)
    except ValueError as e:
        raise UsageError("--method", str(e)) from None
    if resume_data is not None:
        cfg = impl.config_from_dict(resume_data["config"])
        if run.iterations is not None and run.iterations != cfg.train.iterations:
            if run.iterations <= resume_data["iteration"]:
                raise UsageError(
                    "--iterations",
                    f"{run.iterations} but the checkpoint is already at iteration {resume_data['iteration']}",
                )
            log(
                f"[train] note: extending the run from {cfg.train.iterations} to {run.iterations} iterations "
                "(the LR decay keeps its start; the run no longer matches an uninterrupted one)"
            )
            cfg = apply_overrides(cfg, {"train.iterations": run.iterations})
        overrides = None
    else:
        try:
            impl.preset(preset_name)
        except ValueError as e:
            raise UsageError("--preset", str(e)) from None
        overrides = _config_overrides(run, impl, preset_name)
        cfg = apply_overrides(impl.preset(preset_name), overrides)
    sched = cfg.train

    # 2. data (validated, nothing decoded) ------------------------------------------------------
    stored_run = resume_data.get("run", {}) if resume_data is not None else {}
    keypoints_dir = run.keypoints if run.keypoints is not None else stored_run.get("keypoints")
    if run.data is not None:
        data_root = Path(run.data)
    elif stored_run.get("data"):  # resuming: the data the run trained on
        data_root = Path(stored_run["data"])
    else:
        data_root = embedded_dataset(log=log)
    dataset = read_market(data_root)
    annotations = read_dataset_annotations(data_root, keypoints_dir)
    train_table = load_pairs(data_root, "train", keypoints_dir=keypoints_dir, dataset=dataset, annotations=annotations)
    try:
        test_pairs = find_keypoint_file(data_root, "pairs", "test", keypoints_dir)
    except DatasetError as e:
        log(f"[train] note: {e}; sample grids use training pairs")
        sample_table = train_table
    else:
        sample_table = load_pairs(data_root, "test", pairs_file=test_pairs, dataset=dataset, annotations=annotations)
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

    # 3. pretrained weights the recipe needs (before building anything) -----------------------
    check_required_weights(impl, cfg, run)

    # 4. build --------------------------------------------------------------------------------
    if resume_data is not None:
        bundle = bundle_from_checkpoint(resume_data, paths.latest, device)
        bundle.config = cfg
    else:
        bundle = build(method_name, preset_name, seed=seed, device=device, **overrides)
    nets = bundle.nets
    nets.train()
    channels_last = device.type == "cuda"
    if channels_last:
        nets.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    ctx = impl.make_context(
        nets,
        cfg,
        device=device,
        amp_dtype=amp_dtype,
        seed=seed,
        vgg_weights=str(run.vgg_weights) if run.vgg_weights else None,
    )
    ctx.channels_last = channels_last
    if getattr(ctx, "config", None) is None:
        ctx.config = cfg
    opts = impl.make_optimizers(nets, cfg)
    scheds = impl.make_schedulers(opts, cfg)
    train_ds = PairDataset(table=train_table, split="train")
    sampler = parallel.shard(PairSampler(len(train_ds), seed, sched.batch_size, epoch_size=OFFICIAL_EPOCH_PAIRS))
    start = 0
    if resume_data is not None:
        start = int(resume_data["iteration"])
        try:
            for name, opt in opts.items():
                opt.load_state_dict(resume_data["optimizers"][name])
            for name, sch in scheds.items():
                sch.load_state_dict(resume_data["schedulers"][name])
            ctx.load_state_dict(resume_data["ctx"]["step"])
            sampler.load_state_dict(resume_data["ctx"]["sampler"])
            set_rng_state(resume_data["ctx"]["rng"], device)
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise UsageError("--resume", f"{paths.latest}: cannot restore the training state: {e}") from None
        stored_amp = resume_data.get("run", {}).get("amp")
        if stored_amp not in (None, amp_name(amp_dtype)):
            log(
                f"[train] note: the run trained with {stored_amp}, it continues with {amp_name(amp_dtype)} "
                "(--amp): it will not match an uninterrupted run"
            )
        if parallel.writes:
            _read_log_tail(paths.log, start)
        log(f"[train] resuming {paths.latest} at iteration {start}/{sched.iterations}")
    else:
        if parallel.writes:
            _read_log_tail(paths.log, 0)  # a log without a checkpoint is from a run that saved nothing
        seed_everything(seed)
    ctx.iteration = start
    parallel.start(nets, ctx, seed=seed, iteration=start)
    loader_workers = (
        run.loader_workers if run.loader_workers is not None else (sched.num_workers if device.type == "cuda" else 0)
    )
    loader = make_loader(train_ds, sampler, num_workers=loader_workers, device=device)
    sample_rows = PairDataset(table=sample_table, split="test", cache=False).batch(
        fixed_pairs(sample_table, run.num_samples)
    )

    for d in (paths.checkpoints, paths.samples):
        d.mkdir(parents=True, exist_ok=True)
    run_info = {
        "seed": seed,
        "data": str(data_root.resolve()),
        "keypoints": str(Path(keypoints_dir).resolve()) if keypoints_dir is not None else None,
        "pairs_file": str(train_table.pairs_file),
        "pairs_sha256": train_table.pairs_sha256,
        "num_pairs": len(train_table),
        "amp": amp_name(amp_dtype),
        "device": str(device),
        "workers": parallel.world_size,
    }

    def write_checkpoint(iteration: int) -> Path:
        path = paths.checkpoint(iteration)
        if not parallel.writes:
            return path
        save(
            path,
            bundle,
            iteration=iteration,
            dataset_fingerprint=train_table.dataset_fingerprint,
            optimizers=opts,
            schedulers=scheds,
            ctx={"step": ctx.state_dict(), "rng": rng_state(device), "sampler": sampler.state_dict()},
            run=run_info,
        )
        _link_latest(path, paths.latest)
        return path

    def write_samples(iteration: int) -> Path:
        path = paths.sample(iteration)
        if not parallel.writes:
            return path
        # Eval-mode forward in a forked RNG: sampling never changes what training draws next.
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if device.type == "cuda" else []):
            nets.eval()
            try:
                with torch.inference_mode(), ctx.autocast():
                    gen = bundle.generate(
                        sample_rows["src_img"].to(device), sample_rows["src_kps"], sample_rows["tgt_kps"]
                    )
            finally:
                nets.train()
        write_atomic(path, encode_image(sample_grid(sample_rows, gen), ".png"))
        return path

    # 5. train ----------------------------------------------------------------------------------
    report = TrainReport(
        method_name,
        preset_name,
        start,
        start,
        sched.iterations,
        sched.batch_size,
        0.0,
        {},
        None,
        paths.samples,
        paths.log,
        str(device),
        amp_name(amp_dtype),
        resume_command=_resume_command(run),
    )
    completed = start
    in_step = False
    losses: dict[str, float] = {}
    t0 = time.perf_counter()
    bar = batches = None
    with (
        deterministic_kernels(device.type == "cpu"),
        StopFlag() as stop,
        open(paths.log if parallel.writes else os.devnull, "a") as log_file,
    ):
        try:
            if completed >= sched.iterations:
                log(f"[train] nothing to do: the checkpoint is at iteration {completed}/{sched.iterations}")
            else:
                from tqdm import tqdm

                bar = tqdm(
                    total=sched.iterations,
                    initial=start,
                    unit="it",
                    disable=not run.progress,
                    dynamic_ncols=True,
                    desc=f"{method_name}/{preset_name}",
                )
                batches = iter(loader)
                while completed < sched.iterations:
                    batch = next(batches)
                    lr = opts[next(iter(opts))].param_groups[0]["lr"]
                    in_step = True
                    losses = parallel.reduce_losses(impl.train_step(nets, opts, batch, ctx))
                    for sch in scheds.values():
                        sch.step()
                    completed += 1
                    ctx.iteration = completed
                    sampler.advance(len(batch["src_name"]))
                    in_step = False
                    log_file.write(
                        json.dumps(
                            {"iteration": completed, "lr": lr, "seconds": round(time.perf_counter() - t0, 4), **losses}
                        )
                        + "\n"
                    )
                    bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
                    bar.update(1)
                    info = IterationInfo(completed, losses, bundle, opts)
                    for hook in hooks:
                        hook(info)
                    if completed % sched.sample_every == 0 or completed == sched.iterations:
                        write_samples(completed)
                    if completed % sched.checkpoint_every == 0 or completed == sched.iterations:
                        log_file.flush()
                        report.checkpoint = write_checkpoint(completed)
                    if stop:
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            report.interrupted = True
            if bar is not None:
                bar.close()  # before any message, so it does not tear the bar
            log_file.flush()
            if in_step:
                # Raised inside an iteration (no signal handler: e.g. not the main thread): the nets
                # are half-updated, so the last checkpoint written stays the one to resume.
                log(
                    f"[train] interrupted inside iteration {completed + 1}: nothing new saved; "
                    f"{paths.latest} (if any) is intact"
                )
            elif report.checkpoint is None or report.checkpoint != paths.checkpoint(completed):
                report.checkpoint = write_checkpoint(completed)
        except Exception:
            # e.g. an unreadable image met by the loader: keep the completed iterations, then fail
            if bar is not None:
                bar.close()
            if not in_step and completed > start and report.checkpoint != paths.checkpoint(completed):
                log_file.flush()
                path = write_checkpoint(completed)
                log(
                    f"[train] stopped by an error after iteration {completed}; saved {path}; after fixing the "
                    f"cause resume with: {report.resume_command}"
                )
            raise
        finally:
            if bar is not None:
                bar.close()
            batches = None  # shuts DataLoader workers down now
    report.iteration = completed
    report.seconds = time.perf_counter() - t0
    report.final_losses = losses
    if report.checkpoint is None and paths.latest.is_file():
        report.checkpoint = paths.latest
    for line in report.lines():
        log(line)
    return report


def _link_latest(path: Path, latest: Path) -> None:
    """Point ``latest`` at ``path`` atomically (hard link, copy where links are impossible)."""
    place_file(path, latest, "hardlink")


# ---------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m generators.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", help=f"generator method (default {DEFAULT_METHOD})")
    p.add_argument("--preset", help=f"config preset of the method (default {DEFAULT_PRESET})")
    p.add_argument("--data", type=Path, help="dataset root in Market-1501 layout (default: embedded dataset)")
    p.add_argument(
        "--keypoints", type=Path, help="folder of the community annotation/pairs CSVs (default: the data root)"
    )
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, samples, log)")
    p.add_argument("--iterations", type=int, help="total iterations (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the preset's)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest.pt")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--amp", default="auto", help="mixed precision: auto | off | bf16 | fp16 (default auto)")
    p.add_argument(
        "--vgg-weights", type=Path, help="torchvision VGG-19 weights file (vgg19-dcbb9e9d.pth) for the perceptual loss"
    )
    p.add_argument("--no-perceptual", action="store_true", help="train without the VGG perceptual term")
    p.add_argument("--seed", type=int, help="seed of initialisation, sampling and dropout (default 0)")
    p.add_argument("--checkpoint-every", type=int, help="iterations between checkpoints (default: preset's)")
    p.add_argument("--sample-every", type=int, help="iterations between sample grids (default: preset's)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="training processes; N > 1 trains with Ray Train (cluster.train_ray), the batch split "
        "over them (default 1)",
    )
    p.add_argument(
        "--address", help="with --workers N > 1: Ray cluster address (default: RAY_ADDRESS, else a private local Ray)"
    )
    p.add_argument("--loader-workers", type=int, help="DataLoader processes (default: schedule's on CUDA, 0 on CPU)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field, e.g. --set ngf=32 --set train.decay_start=100 (repeatable)",
    )
    p.add_argument("--num-samples", type=int, default=6, help="rows of the sample grids (default 6)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    overrides = {}
    for text in args.overrides:
        try:
            key, value = parse_override(text)
        except ValueError as e:
            raise UsageError("--set", str(e)) from None
        overrides[key] = value
    return RunConfig(
        out=args.out,
        method=args.method,
        preset=args.preset,
        data=args.data,
        keypoints=args.keypoints,
        iterations=args.iterations,
        batch_size=args.batch_size,
        checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every,
        resume=args.resume,
        device=args.device,
        amp=args.amp,
        vgg_weights=args.vgg_weights,
        no_perceptual=args.no_perceptual,
        seed=args.seed,
        workers=args.workers,
        address=args.address,
        loader_workers=args.loader_workers,
        overrides=overrides,
        num_samples=args.num_samples,
        progress=not args.no_progress,
    )


def main(argv: Sequence[str] | None = None, *, hooks: Sequence[Hook] = ()) -> int:
    """CLI entry: 0 when training finished, 130 when interrupted (resumable); errors exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        report = train(run_config_from_args(args), hooks=hooks)
    except (UsageError, DatasetError, CheckpointError, MissingWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return INTERRUPTED_EXIT if report.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
