"""``python -m generators.train``: train a pose-transfer generator on a Market-layout dataset.

    python -m generators.train --method patn --preset synth --out runs/generators/patn-synth
    python -m generators.train --method patn --preset market --data /data/Market-1501 \\
        --keypoints /data/market-keypoints --vgg-weights ~/vgg19-dcbb9e9d.pth --out runs/patn-market
    python -m generators.train --out runs/generators/patn-synth --resume       # continue a run

Without ``--data`` the embedded dataset ``data/synth-market`` is used (rendered first if absent);
with ``--resume``, the data and keypoints folders the run trained on (recorded in the checkpoint;
the dataset fingerprint must still match).

The library entry point is :func:`train` (a :class:`RunConfig` in, a :class:`TrainReport` out);
it works in phases, each a function here: :func:`resolve_run` (method, preset, config and seed,
from the flags or the checkpoint being resumed; device and precision), :func:`load_data` (pairs,
images and keypoints checked without decoding; the fingerprint of a resumed run),
:func:`check_required_weights` (a missing VGG-19 file stops here, before anything is built),
:func:`build_state` (networks, step context, optimizers, schedulers, sampler and RNG, built or
restored), then the loop (:mod:`generators.train_loop`) and the report.

Schedule: the method's ``TrainSchedule`` (iteration based): Adam on every network, constant LR
until ``decay_start``, then linear to 0 at ``iterations``. ``--iterations N`` keeps the preset's
decay point as the same fraction of the run (``--set train.decay_start=K`` sets it exactly), and so
every config field the method counts in iterations (``Method.schedule_fields``: PG2's stage switch).
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

Workers (``--workers N``, N > 1): :func:`main` hands the run to ``cluster.train_ray`` (Ray Train):
N processes, each running :func:`train` on its share of every batch with a multi-worker
``parallel`` strategy, gradients averaged across them; rank 0 writes the checkpoints, samples and
log. Ray is started privately unless ``--address`` / ``RAY_ADDRESS``. :func:`train` itself knows
no Ray: called with ``workers > 1`` and no strategy it raises a UsageError.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from augment.data.market import DatasetError
from augment.runtime import (
    UsageError,
    amp_name,
    resolve_amp,
    resolve_device,
    seed_everything,
    set_rng_state,
    tune_malloc,
)
from generators.base import build, parse_override
from generators.checkpoint import CheckpointError, bundle_from_checkpoint
from generators.data import OFFICIAL_EPOCH_PAIRS, PairDataset, PairSampler, fixed_pairs, make_loader
from generators.losses import MissingWeightsError
from generators.train_loop import (
    Hook,
    IterationInfo,
    LoopProgress,
    SingleProcess,
    TrainState,
    read_log_tail,
    run_loop,
)
from generators.train_setup import (
    DEFAULT_METHOD,
    DEFAULT_PRESET,
    ResolvedRun,
    RunConfig,
    RunPaths,
    TrainData,
    check_required_weights,
    load_data,
    resolve_run,
)

# The public API of training; the phases live in train_setup (1-3) and train_loop (the loop).
__all__ = [
    "Hook",
    "IterationInfo",
    "ResolvedRun",
    "RunConfig",
    "RunPaths",
    "SingleProcess",
    "TrainData",
    "TrainReport",
    "build_state",
    "check_required_weights",
    "load_data",
    "main",
    "resolve_run",
    "train",
]

INTERRUPTED_EXIT = 130  # the shell's status for a run stopped by SIGINT


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


# ---------------------------------------------------------------------------------------------
# phase 4: build or restore the training state


def build_state(
    run: RunConfig,
    resolved: ResolvedRun,
    data: TrainData,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    parallel: SingleProcess,
    log: Callable[[str], None] = print,
) -> TrainState:
    """Networks, step context, optimizers, LR schedulers, sampler and RNG: new from the seed, or as
    the resumed checkpoint left them. The order of what draws random numbers is part of the
    checkpoint format's promise (bit-exact resume): keep it."""
    bundle, ctx = _networks_and_context(run, resolved, device, amp_dtype)
    impl, cfg, schedule, paths = resolved.impl, resolved.config, resolved.schedule, resolved.paths
    opts = impl.make_optimizers(bundle.nets, cfg)
    scheds = impl.make_schedulers(opts, cfg)
    train_ds = PairDataset(table=data.train_table, split="train")
    sampler = parallel.shard(
        PairSampler(len(train_ds), resolved.seed, schedule.batch_size, epoch_size=OFFICIAL_EPOCH_PAIRS)
    )
    if resolved.resume_data is not None:
        start = _restore(resolved, opts, scheds, ctx, sampler, device=device, amp_dtype=amp_dtype, log=log)
        if parallel.writes:
            read_log_tail(paths.log, start)
        log(f"[train] resuming {paths.latest} at iteration {start}/{schedule.iterations}")
    else:
        start = 0
        if parallel.writes:
            read_log_tail(paths.log, 0)  # a log without a checkpoint is from a run that saved nothing
        seed_everything(resolved.seed)
    ctx.iteration = start
    parallel.start(bundle.nets, ctx, seed=resolved.seed, iteration=start)
    loader_workers = run.loader_workers
    if loader_workers is None:
        loader_workers = schedule.num_workers if device.type == "cuda" else 0
    loader = make_loader(train_ds, sampler, num_workers=loader_workers, device=device)
    sample_rows = PairDataset(table=data.sample_table, split="test", cache=False).batch(
        fixed_pairs(data.sample_table, run.num_samples)
    )
    for d in (paths.checkpoints, paths.samples):
        d.mkdir(parents=True, exist_ok=True)
    return TrainState(
        impl=impl,
        bundle=bundle,
        schedule=schedule,
        ctx=ctx,
        opts=opts,
        scheds=scheds,
        sampler=sampler,
        loader=loader,
        sample_rows=sample_rows,
        paths=paths,
        parallel=parallel,
        device=device,
        dataset_fingerprint=data.train_table.dataset_fingerprint,
        run_info=_run_record(resolved, data, device, amp_dtype, parallel),
        start=start,
    )


def _networks_and_context(run: RunConfig, resolved: ResolvedRun, device: torch.device, amp_dtype):
    """The networks (new from the seed or the checkpoint's) in train mode, and their step context."""
    impl, cfg = resolved.impl, resolved.config
    if resolved.resume_data is not None:
        bundle = bundle_from_checkpoint(resolved.resume_data, resolved.paths.latest, device)
        bundle.config = cfg
    else:
        bundle = build(resolved.method, resolved.preset, seed=resolved.seed, device=device, **resolved.overrides)
    nets = bundle.nets
    nets.train()
    channels_last = device.type == "cuda"
    if channels_last:
        nets.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    vgg_weights = str(run.vgg_weights) if run.vgg_weights else None
    ctx = impl.make_context(nets, cfg, device=device, amp_dtype=amp_dtype, seed=resolved.seed, vgg_weights=vgg_weights)
    ctx.channels_last = channels_last
    if getattr(ctx, "config", None) is None:
        ctx.config = cfg
    return bundle, ctx


def _restore(resolved: ResolvedRun, opts, scheds, ctx, sampler, *, device, amp_dtype, log) -> int:
    """Load the optimizer, scheduler, step-context, sampler and RNG states of the checkpoint being
    resumed; returns its iteration."""
    data, latest = resolved.resume_data, resolved.paths.latest
    try:
        for name, opt in opts.items():
            opt.load_state_dict(data["optimizers"][name])
        for name, sch in scheds.items():
            sch.load_state_dict(data["schedulers"][name])
        ctx.load_state_dict(data["ctx"]["step"])
        sampler.load_state_dict(data["ctx"]["sampler"])
        set_rng_state(data["ctx"]["rng"], device)
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise UsageError("--resume", f"{latest}: cannot restore the training state: {e}") from None
    stored_amp = resolved.stored_run.get("amp")
    if stored_amp not in (None, amp_name(amp_dtype)):
        log(
            f"[train] note: the run trained with {stored_amp}, it continues with {amp_name(amp_dtype)} "
            "(--amp): it will not match an uninterrupted run"
        )
    return int(data["iteration"])


def _run_record(resolved: ResolvedRun, data: TrainData, device, amp_dtype, parallel: SingleProcess) -> dict:
    """The ``run`` record every checkpoint carries (what ``--resume`` and readers of the run need)."""
    return {
        "seed": resolved.seed,
        "data": str(data.root.resolve()),
        "keypoints": str(Path(data.keypoints).resolve()) if data.keypoints is not None else None,
        "pairs_file": str(Path(data.train_table.pairs_file).resolve()),
        "pairs_sha256": data.train_table.pairs_sha256,
        "num_pairs": len(data.train_table),
        "amp": amp_name(amp_dtype),
        "device": str(device),
        "workers": parallel.world_size,
    }


# ---------------------------------------------------------------------------------------------
# the library entry point


def train(
    run: RunConfig,
    *,
    hooks: Sequence[Hook] = (),
    log: Callable[[str], None] = print,
    parallel: SingleProcess | None = None,
) -> TrainReport:
    """Run (or resume) training as ``run`` says; see the module docstring.

    ``parallel``: this process's part in a multi-worker run (``cluster.train_ray`` passes one to
    each of its workers); None trains in this one process, and then ``run.workers`` must be 1:
    several workers need the cluster layer (``python -m generators.train --workers N`` or
    ``cluster.train_ray.train_on_ray``), which this module does not import."""
    run.validate()
    if parallel is None:
        if run.workers > 1:
            raise UsageError(
                "--workers",
                f"{run.workers} workers: train() runs one process; use python -m generators.train "
                "--workers N or cluster.train_ray.train_on_ray",
            )
        parallel = SingleProcess()
    tune_malloc()  # the Deformable GAN trains ~1.3x faster on CPU (its docstring); the results are the same
    device = resolve_device(run.device)
    amp_dtype = resolve_amp(run.amp, device)
    resolved = resolve_run(run, log)
    data = load_data(run, resolved, log)
    check_required_weights(resolved.impl, resolved.config, run)
    state = build_state(run, resolved, data, device=device, amp_dtype=amp_dtype, parallel=parallel, log=log)
    resume_with = _resume_command(run)
    progress = run_loop(
        state,
        hooks=hooks,
        log=log,
        progress_bar=run.progress,
        desc=f"{resolved.method}/{resolved.preset}",
        resume_command=resume_with,
    )
    report = _report(resolved, progress, device=device, amp_dtype=amp_dtype, resume_command=resume_with)
    for line in report.lines():
        log(line)
    return report


def _report(resolved: ResolvedRun, progress: LoopProgress, *, device, amp_dtype, resume_command: str) -> TrainReport:
    paths, schedule = resolved.paths, resolved.schedule
    checkpoint = progress.checkpoint
    if checkpoint is None and paths.latest.is_file():
        checkpoint = paths.latest
    return TrainReport(
        method=resolved.method,
        preset=resolved.preset,
        start_iteration=progress.start,
        iteration=progress.completed,
        iterations=schedule.iterations,
        batch_size=schedule.batch_size,
        seconds=progress.seconds,
        final_losses=progress.losses,
        checkpoint=checkpoint,
        samples=paths.samples,
        log=paths.log,
        device=str(device),
        amp=amp_name(amp_dtype),
        interrupted=progress.interrupted,
        resume_command=resume_command,
    )


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
    p.add_argument(
        "--pairs",
        type=Path,
        help="train pairs CSV (from,to) to train on instead of the dataset's market-pairs-train.csv, e.g. the "
        "pairs among the images a reduced set keeps",
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
        pairs=args.pairs,
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
        run = run_config_from_args(args)
        if run.workers > 1:
            # The one place training reaches up to the cluster layer: N processes with Ray Train.
            from cluster.train_ray import train_on_ray

            report = train_on_ray(run, hooks=hooks)
        else:
            report = train(run, hooks=hooks)
    except (UsageError, DatasetError, CheckpointError, MissingWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return INTERRUPTED_EXIT if report.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
