"""Fault injection for the service's tests: production code carries no hook, tests patch it in.

Three faults, each a replacement object that a test installs with ``monkeypatch.setattr`` (in this
process) or through the command below (in a subprocess or a Ray job's driver):

- :func:`exiting_write_atomic`: ``augment.execute.write_atomic`` that exits the process abruptly
  (``os._exit``, as SIGKILL would: no cleanup, no manifest) right after the N-th image written into
  a train folder; mid-batch when N is not a multiple of the batch size.
- :func:`exiting_call`: any module function (``module:name``) that exits the process abruptly right
  after its N-th call, e.g. ``augment.output:link_split`` to die inside ``prepare_output``.
- :func:`worker_killed_once`: ``cluster.train_ray._worker`` whose rank-0 process exits abruptly after
  a given training iteration (once per marker), so Ray Train restarts the worker group, which
  resumes from the last checkpoint. Defined inside the function too (shipped by value).
- :func:`actor_killed_once`: ``cluster.ray_executor._GenerateUDF`` that exits its own process (a
  crashed generator actor) on its ``calls``-th call in an actor, once per ``marker`` file (created
  then, holding how many shards were on disk: batches were in flight and written around it). The
  class is defined inside the function, so Ray ships it by value: the actors need not import this
  module.

Command line (the augment.run arguments after ``--``; run as a script, not ``-m``: other
distributions install a top-level ``tests`` package that would shadow this folder)::

    python tests/faults.py [--exit-after-images N] [--exit-after-call MODULE:NAME:N]
                           [--kill-actor-once MARKER [--kill-actor-at-call N]] -- <augment.run arguments>
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def exiting_write_atomic(images: int, status: int = 137) -> Callable:
    """``write_atomic`` that exits with ``status`` once ``images`` images were written by this process."""
    from augment import execute
    from augment.data.market import MARKET_DIRS

    write_atomic = execute.write_atomic
    written = 0

    def write_then_maybe_exit(path, data, *args, **kwargs):
        nonlocal written
        result = write_atomic(path, data, *args, **kwargs)
        path = Path(path)
        if path.parent.name == MARKET_DIRS["train"] and path.suffix.lower() in IMAGE_SUFFIXES:
            written += 1
            if written >= images:
                os._exit(status)
        return result

    return write_then_maybe_exit


def exiting_call(target: str, calls: int = 1, status: int = 137) -> tuple[object, str, Callable]:
    """(module, name, replacement) for ``module:name``: the function, exiting the process after call ``calls``."""
    import importlib

    module_name, name = target.split(":")
    module = importlib.import_module(module_name)
    original = getattr(module, name)
    count = 0

    def call_then_maybe_exit(*args, **kwargs):
        nonlocal count
        result = original(*args, **kwargs)
        count += 1
        if count >= calls:
            os._exit(status)
        return result

    return module, name, call_then_maybe_exit


def worker_killed_once(marker: str | os.PathLike, after_iteration: int) -> Callable:
    """A Ray Train worker function: ``cluster.train_ray._worker`` whose rank 0 exits its process right after
    iteration ``after_iteration`` (before that iteration's checkpoint, as a crash would), once per marker."""
    from cluster import train_ray

    worker = train_ray._worker
    marker = str(marker)

    def killed_once_worker(config: dict):
        import ray.train

        import generators.train as gen_train

        train = gen_train.train
        rank = ray.train.get_context().get_world_rank()

        def exit_after(info) -> None:
            if rank == 0 and info.iteration == after_iteration and not os.path.exists(marker):
                Path(marker).write_text(str(os.getpid()))
                os._exit(1)

        def train_with_fault(run, *, hooks=(), **kwargs):
            return train(run, hooks=[*hooks, exit_after], **kwargs)

        gen_train.train = train_with_fault  # _worker imports it from generators.train when it runs
        return worker(config)

    return killed_once_worker


def actor_killed_once(
    marker: str | os.PathLike, at_call: int = 1, shards: str | os.PathLike | None = None, wait_s: float = 60.0
) -> type:
    """A generator UDF for ``cluster.ray_executor`` that kills its actor on its ``at_call``-th call (once per marker).

    ``shards``: a folder of shards; the actor waits (up to ``wait_s``) until a batch is written there before
    dying, so it dies with batches both written and in flight, and writes the shard count into the marker.
    """
    from cluster.ray_executor import _GenerateUDF

    marker = str(marker)
    shards = str(shards) if shards is not None else None

    class KilledOnceUDF(_GenerateUDF):
        calls = 0

        def __call__(self, batch: dict) -> dict:
            self.calls += 1
            if self.calls >= at_call and not os.path.exists(marker):
                deadline = time.monotonic() + wait_s
                while shards and not list(Path(shards).glob("*.parquet")) and time.monotonic() < deadline:
                    time.sleep(0.05)
                written = len(list(Path(shards).glob("*.parquet"))) if shards else 0
                Path(marker).write_text(f"{os.getpid()} {written}")
                os._exit(1)  # a crashed actor: Ray Data restarts it and retries the batch
            return super().__call__(batch)

    return KilledOnceUDF


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(prog="python tests/faults.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--exit-after-images", type=int, metavar="N")
    p.add_argument("--exit-after-call", metavar="MODULE:NAME:N")
    p.add_argument("--kill-actor-once", metavar="MARKER")
    p.add_argument("--kill-actor-at-call", type=int, default=1, metavar="N")
    a = p.parse_args(argv[:cut])
    if a.exit_after_call:
        target, _, calls = a.exit_after_call.rpartition(":")
        module, name, fn = exiting_call(target, int(calls))
        setattr(module, name, fn)
    if a.exit_after_images:
        from augment import execute

        execute.write_atomic = exiting_write_atomic(a.exit_after_images)
    if a.kill_actor_once:
        from cluster import ray_executor

        ray_executor._GenerateUDF = actor_killed_once(a.kill_actor_once, a.kill_actor_at_call)
    from augment.run import main as augment_main

    augment_main(argv[cut + 1 :])


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT_ROOT))  # a script's path starts at tests/: the project comes first
    main()
