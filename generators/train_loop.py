"""The loop of ``generators.train``: iterations over a built (or restored) training state.

:func:`run_loop` runs the iterations a :class:`TrainState` has left: one method ``train_step`` per
batch, the LR schedulers, the sampler position, then the bookkeeping of that iteration (a line of
``train_log.jsonl``, hooks, sample grids and checkpoints on their schedule). Ctrl-C or SIGTERM
(:class:`StopFlag`) ends the loop after the iteration in progress with a checkpoint; an error
outside a step saves the completed iterations before it propagates.

How one run spreads over processes is a strategy object (:class:`SingleProcess` here; the
multi-worker one is ``cluster.train_ray.RayTrainWorkers``): the loop asks it which batches to
train on, whether this process writes the run folder, and which losses to log, and lets it
install the gradient synchronisation on the step context (``StepContext.before_optimizer_step``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from augment.data.atomic import write_atomic
from augment.data.imageio import encode_image
from augment.data.market import place_file
from augment.runtime import deterministic_kernels, rng_state
from generators.base import Bundle, Method, StepContext, TrainSchedule
from generators.checkpoint import save
from generators.data import PairSampler
from generators.samples import sample_grid
from generators.train_setup import RunPaths

SCHEDULER_BEFORE_OPTIMIZER = r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`"


@dataclass
class IterationInfo:
    """What a hook sees after each completed iteration (hooks may raise KeyboardInterrupt to stop)."""

    iteration: int
    losses: dict[str, float]
    bundle: Bundle
    optimizers: dict


Hook = Callable[[IterationInfo], None]


class SingleProcess:
    """How a run spreads over processes: here, not at all (one process does everything).

    The interface a multi-worker strategy overrides (``cluster.train_ray.RayTrainWorkers``: the
    same loop in every worker); ``generators.train.train(..., parallel=...)`` takes one."""

    rank = 0
    world_size = 1

    @property
    def writes(self) -> bool:
        """Whether this process writes the run folder (checkpoints, samples, log)."""
        return self.rank == 0

    def shard(self, sampler: PairSampler) -> PairSampler:
        """The batches this process trains on (all of them)."""
        return sampler

    def start(self, nets, ctx: StepContext, *, seed: int, iteration: int) -> None:
        """Called once the training state is in place (built or restored), before the first step;
        a multi-worker strategy synchronises the weights here and sets ``ctx.before_optimizer_step``."""

    def reduce_losses(self, losses: dict[str, float]) -> dict[str, float]:
        """The losses to log for a step (one process: its own)."""
        return losses


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


@dataclass
class TrainState:
    """Everything the loop advances or saves, built or restored by ``generators.train``."""

    impl: Method
    bundle: Bundle
    schedule: TrainSchedule
    ctx: StepContext
    opts: dict[str, torch.optim.Optimizer]
    scheds: dict[str, Any]
    sampler: PairSampler  # or the strategy's shard of it
    loader: Any  # iterable of training batches drawn by ``sampler``
    sample_rows: dict  # the fixed pairs of the sample grids (a PairDataset batch)
    paths: RunPaths
    parallel: SingleProcess
    device: torch.device
    dataset_fingerprint: str
    run_info: dict  # the checkpoint's "run" record (seed, data, amp, workers, ...)
    start: int  # completed iterations when the loop starts


@dataclass
class LoopProgress:
    """Where the loop stands; after :func:`run_loop`, what it did."""

    start: int
    completed: int
    losses: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None  # the last checkpoint this run wrote
    in_step: bool = False  # an iteration is half done (its state must not be saved)
    interrupted: bool = False
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# writing


def write_checkpoint(state: TrainState, iteration: int) -> Path:
    """``checkpoints/iter_XXXXXX.pt`` of ``iteration`` and ``latest.pt`` pointing at it (writer only);
    returns the path either way."""
    path = state.paths.checkpoint(iteration)
    if not state.parallel.writes:
        return path
    ctx = {"step": state.ctx.state_dict(), "rng": rng_state(state.device), "sampler": state.sampler.state_dict()}
    save(
        path,
        state.bundle,
        iteration=iteration,
        dataset_fingerprint=state.dataset_fingerprint,
        optimizers=state.opts,
        schedulers=state.scheds,
        ctx=ctx,
        run=state.run_info,
    )
    link_latest(path, state.paths.latest)
    return path


def write_samples(state: TrainState, iteration: int) -> Path:
    """``samples/iter_XXXXXX.png``: the fixed sample pairs generated in eval mode (writer only)."""
    path = state.paths.sample(iteration)
    if not state.parallel.writes:
        return path
    rows, nets, device = state.sample_rows, state.bundle.nets, state.device
    # Eval-mode forward in a forked RNG: sampling never changes what training draws next.
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if device.type == "cuda" else []):
        nets.eval()
        try:
            with torch.inference_mode(), state.ctx.autocast():
                gen = state.bundle.generate(rows["src_img"].to(device), rows["src_kps"], rows["tgt_kps"])
        finally:
            nets.train()
    write_atomic(path, encode_image(sample_grid(rows, gen), ".png"))
    return path


def link_latest(path: Path, latest: Path) -> None:
    """Point ``latest`` at ``path`` atomically (hard link, copy where links are impossible)."""
    place_file(path, latest, "hardlink")


def read_log_tail(path: Path, keep_until: int) -> None:
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


# ---------------------------------------------------------------------------------------------
# the loop


def train_iteration(state: TrainState, batch: dict, progress: LoopProgress) -> None:
    """One optimisation step on ``batch``, the LR schedulers, the iteration count and sampler position."""
    progress.in_step = True
    progress.losses = state.parallel.reduce_losses(
        state.impl.train_step(state.bundle.nets, state.opts, batch, state.ctx)
    )
    with warnings.catch_warnings():
        # every schedule follows the iteration count, also one whose optimizer has not stepped yet (SPGNet's
        # D before gan_start): torch's "scheduler before optimizer" warning is about a mistake not made here
        warnings.filterwarnings("ignore", message=SCHEDULER_BEFORE_OPTIMIZER)
        for sch in state.scheds.values():
            sch.step()
    progress.completed += 1
    state.ctx.iteration = progress.completed
    state.sampler.advance(len(batch["src_name"]))
    progress.in_step = False


def record_iteration(
    state: TrainState, progress: LoopProgress, *, lr: float, t0: float, log_file: IO[str], bar, hooks: Sequence[Hook]
) -> None:
    """The bookkeeping of a completed iteration: log line, progress bar, hooks, samples, checkpoint."""
    done, schedule = progress.completed, state.schedule
    line = {"iteration": done, "lr": lr, "seconds": round(time.perf_counter() - t0, 4), **progress.losses}
    log_file.write(json.dumps(line) + "\n")
    bar.set_postfix({k: f"{v:.3f}" for k, v in progress.losses.items()}, refresh=False)
    bar.update(1)
    info = IterationInfo(done, progress.losses, state.bundle, state.opts)
    for hook in hooks:
        hook(info)
    if done % schedule.sample_every == 0 or done == schedule.iterations:
        write_samples(state, done)
    if done % schedule.checkpoint_every == 0 or done == schedule.iterations:
        log_file.flush()
        progress.checkpoint = write_checkpoint(state, done)


def _iterate(state, progress, *, stop: StopFlag, t0: float, log_file, bar, hooks) -> None:
    """Iterations until the schedule's end, or until a signal asks to stop (KeyboardInterrupt)."""
    batches = iter(state.loader)
    try:
        while progress.completed < state.schedule.iterations:
            batch = next(batches)
            lr = state.opts[next(iter(state.opts))].param_groups[0]["lr"]
            train_iteration(state, batch, progress)
            record_iteration(state, progress, lr=lr, t0=t0, log_file=log_file, bar=bar, hooks=hooks)
            if stop:
                raise KeyboardInterrupt
    finally:
        batches = None  # shuts DataLoader workers down now, not when the traceback is freed


def _on_interrupt(state: TrainState, progress: LoopProgress, log_file, log: Callable[[str], None]) -> None:
    """Ctrl-C / SIGTERM / a hook stopped the run: checkpoint the last completed iteration."""
    progress.interrupted = True
    log_file.flush()
    latest = state.paths.latest
    if progress.in_step:
        # Raised inside an iteration (no signal handler: e.g. not the main thread): the nets
        # are half-updated, so the last checkpoint written stays the one to resume.
        log(
            f"[train] interrupted inside iteration {progress.completed + 1}: nothing new saved; "
            f"{latest} (if any) is intact"
        )
    elif progress.checkpoint is None or progress.checkpoint != state.paths.checkpoint(progress.completed):
        progress.checkpoint = write_checkpoint(state, progress.completed)


def _on_error(state, progress: LoopProgress, log_file, log, resume_command: str) -> None:
    """An error (e.g. an unreadable image met by the loader): keep the completed iterations."""
    done = progress.completed
    if not progress.in_step and done > progress.start and progress.checkpoint != state.paths.checkpoint(done):
        log_file.flush()
        path = write_checkpoint(state, done)
        log(
            f"[train] stopped by an error after iteration {done}; saved {path}; after fixing the "
            f"cause resume with: {resume_command}"
        )


def run_loop(
    state: TrainState,
    *,
    hooks: Sequence[Hook] = (),
    log: Callable[[str], None] = print,
    progress_bar: bool = True,
    desc: str = "",
    resume_command: str = "",
) -> LoopProgress:
    """Train from ``state.start`` to the schedule's end (or a stop); returns what was done.

    Errors other than KeyboardInterrupt propagate after the completed iterations are saved."""
    progress = LoopProgress(start=state.start, completed=state.start)
    iterations = state.schedule.iterations
    t0 = time.perf_counter()
    bar = None
    log_path = state.paths.log if state.parallel.writes else os.devnull
    with deterministic_kernels(state.device.type == "cpu"), StopFlag() as stop, open(log_path, "a") as log_file:
        try:
            if progress.completed >= iterations:
                log(f"[train] nothing to do: the checkpoint is at iteration {progress.completed}/{iterations}")
            else:
                from tqdm import tqdm

                bar = tqdm(
                    total=iterations,
                    initial=state.start,
                    unit="it",
                    disable=not progress_bar,
                    dynamic_ncols=True,
                    desc=desc,
                )
                _iterate(state, progress, stop=stop, t0=t0, log_file=log_file, bar=bar, hooks=hooks)
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()  # before any message, so it does not tear the bar
            _on_interrupt(state, progress, log_file, log)
        except Exception:
            if bar is not None:
                bar.close()
            _on_error(state, progress, log_file, log, resume_command)
            raise
        finally:
            if bar is not None:
                bar.close()
    progress.seconds = time.perf_counter() - t0
    return progress
