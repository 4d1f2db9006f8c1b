"""Which generator checkpoint a run uses, checked before any work.

With ``--checkpoint`` the file given; for a method with nothing to train (the ``copy`` control) its
config-only checkpoint; on the embedded dataset the method's embedded-dataset checkpoint, trained
first when absent; on other data a checkpoint is required. Every checkpoint is read once here
(format and weight hash checked, the method compared with ``--method``); its content hash goes into
the run identity and its stored config gives the generator's input rule (``augment.validate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from augment.runtime import UsageError

DEFAULT_RUNS = Path("runs")
INTERRUPTED_EXIT = 130  # the shell's status for a run stopped by SIGINT (generators.train's too)


class TrainingInterrupted(Exception):
    """The embedded checkpoint's training stopped (Ctrl-C / SIGTERM) before its schedule's end: nothing was
    generated with the half-trained generator; running the same command again resumes the training."""


@dataclass(frozen=True)
class CheckpointChoice:
    """The checkpoint a run generates with: its path, weight content hash (16 hex), method and config."""

    path: Path
    content_hash: str
    method: str
    config: dict


def _method(name: str):
    from generators.base import get_method

    return get_method(name)


def ensure_embedded_checkpoint(method: str, data: Path, iterations: int | None) -> Path:
    """The method's embedded-dataset checkpoint, trained first (generators.train) when absent, and its
    training resumed first when an earlier run stopped it short of its schedule (a checkpoint is used only
    at the end of its schedule). Raises :class:`TrainingInterrupted` when the training is stopped now."""
    from generators.checkpoint import CheckpointError, read_checkpoint
    from generators.train import RunConfig, train

    ckpt = DEFAULT_RUNS / "generators" / f"{method}-synth" / "checkpoints" / "latest.pt"
    run_dir = ckpt.parent.parent
    if ckpt.is_file():
        info = read_checkpoint(ckpt)
        done, total = int(info["iteration"]), int(info["config"]["train"]["iterations"])
        if done >= total:
            return ckpt
        config = RunConfig(out=run_dir, resume=True)
        print(f"[augment] {ckpt} stopped at iteration {done}/{total}: resuming its training first")
    else:
        config = RunConfig(out=run_dir, method=method, data=data, preset="synth", iterations=iterations)
        argv = ["--method", method, "--data", str(data), "--preset", "synth", "--out", str(config.out)]
        argv += ["--iterations", str(iterations)] if iterations else []
        print(
            f"[augment] no {method} checkpoint for the embedded dataset at {ckpt}: training one "
            f"(python -m generators.train {' '.join(argv)})"
        )
    report = train(config)
    if report.interrupted:
        raise TrainingInterrupted(
            f"the training of {run_dir} stopped at iteration {report.iteration}/{report.iterations}; nothing was "
            "generated: run the same command again to resume it"
        )
    if not ckpt.is_file():
        raise CheckpointError(f"{ckpt}: training did not produce it")
    return ckpt


def untrained_checkpoint(method: str) -> Path:
    """The checkpoint of a method with nothing to train (its config alone), written once."""
    from generators.base import build
    from generators.checkpoint import save

    ckpt = DEFAULT_RUNS / "generators" / method / "checkpoints" / "latest.pt"
    if not ckpt.is_file():
        save(ckpt, build(method, "synth"), iteration=0)
    return ckpt


def read_choice(path: Path, method: str, dataset_fingerprint: str) -> CheckpointChoice:
    """Refuse, before any work, a missing, corrupt or other-method checkpoint (UsageError naming --checkpoint)."""
    from generators.checkpoint import CheckpointError, read_checkpoint

    try:
        info = read_checkpoint(path)
    except CheckpointError as e:
        raise UsageError("--checkpoint", str(e)) from None
    if info["method"] != method:
        raise UsageError(
            "--checkpoint",
            f"{path} holds a {info['method']!r} generator but --method is {method!r}; pass --method {info['method']}",
        )
    trained_on = info.get("dataset_fingerprint")
    if trained_on and trained_on != dataset_fingerprint:
        print(f"[augment] note: {path} was trained on dataset {trained_on}, this dataset is {dataset_fingerprint}")
    return CheckpointChoice(Path(path), str(info["content_hash"])[:16], info["method"], dict(info["config"]))


def check_checkpoint(path: Path, method: str, dataset_fingerprint: str) -> str:
    """:func:`read_choice`'s content hash (16 hex)."""
    return read_choice(path, method, dataset_fingerprint).content_hash


def choose_checkpoint(
    method: str, given: Path | None, data: Path, embedded: bool, train_iterations: int | None, fingerprint: str
) -> CheckpointChoice:
    """The checkpoint to generate with (module docstring), read and checked."""
    if given is not None:
        checkpoint = given
    elif not _method(method).trainable:  # e.g. the copy control: nothing to train, on any dataset
        checkpoint = untrained_checkpoint(method)
    elif embedded:
        checkpoint = ensure_embedded_checkpoint(method, data, train_iterations)
    else:
        raise UsageError(
            "--checkpoint",
            f"required with --data (train one: python -m generators.train --method {method} "
            f"--data {data} --preset market --out DIR)",
        )
    return read_choice(checkpoint, method, fingerprint)
