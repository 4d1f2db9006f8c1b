"""Fault injection for the service's tests: production code carries no hook, tests patch it in.

Two faults, each a replacement object that a test installs with ``monkeypatch.setattr`` (in this
process) or through the command below (in a subprocess or a Ray job's driver):

- :func:`exiting_write_atomic`: ``augment.execute.write_atomic`` that exits the process abruptly
  (``os._exit``, as SIGKILL would: no cleanup, no manifest) right after the N-th image written into
  a train folder; mid-batch when N is not a multiple of the batch size.
- :func:`actor_killed_once`: ``cluster.ray_executor._GenerateUDF`` whose first call in any actor
  that finds no file at ``marker`` creates it and exits its own process (a crashed generator
  actor, once per marker). The class is defined inside the function, so Ray ships it by value:
  the actors need not import this module.

Command line (the augment.run arguments after ``--``; run as a script, not ``-m``: other
distributions install a top-level ``tests`` package that would shadow this folder)::

    python tests/faults.py [--exit-after-images N] [--kill-actor-once MARKER] -- <augment.run arguments>
"""

from __future__ import annotations

import argparse
import os
import sys
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


def actor_killed_once(marker: str | os.PathLike) -> type:
    """A generator UDF for ``cluster.ray_executor`` whose first call (per marker) kills its actor."""
    from cluster.ray_executor import _GenerateUDF

    marker = str(marker)

    class KilledOnceUDF(_GenerateUDF):
        def __call__(self, batch: dict) -> dict:
            if not os.path.exists(marker):
                Path(marker).write_text(str(os.getpid()))
                os._exit(1)  # a crashed actor: Ray Data restarts it and retries the batch
            return super().__call__(batch)

    return KilledOnceUDF


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(prog="python tests/faults.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--exit-after-images", type=int, metavar="N")
    p.add_argument("--kill-actor-once", metavar="MARKER")
    a = p.parse_args(argv[:cut])
    if a.exit_after_images:
        from augment import execute

        execute.write_atomic = exiting_write_atomic(a.exit_after_images)
    if a.kill_actor_once:
        from cluster import ray_executor

        ray_executor._GenerateUDF = actor_killed_once(a.kill_actor_once)
    from augment.run import main as augment_main

    augment_main(argv[cut + 1 :])


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT_ROOT))  # a script's path starts at tests/: the project comes first
    main()
