"""The bench's worker pool: the in-process stand-in for one job at a time, and stopping a process pool so
that nothing trains on after the bench is interrupted (Ctrl-C, or SIGTERM from `kill`)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from concurrent.futures import Future
from multiprocessing.connection import wait as wait_for_exit

__all__ = ["InlinePool", "sigterm_interrupts", "stop_pool"]


class InlinePool:
    """The pool's interface in this process: a job runs when submitted (one job at a time, output shown)."""

    def submit(self, fn, job) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(job))
        except Exception as e:  # handed to the caller by future.result(), as a process pool does
            future.set_exception(e)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM raises KeyboardInterrupt while the grid runs (main thread only), so that `kill` stops the
    worker processes as Ctrl-C does instead of leaving them to train on without a parent."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_pool(pool, grace: float = 10.0) -> None:
    """Cancel queued jobs and end the running ones: ``shutdown(cancel_futures=True)`` alone lets a worker
    finish its training, which would go on writing into a cell that a resumed bench may start again."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # gone after shutdown: take them first
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.exitcode is None:
            process.terminate()  # SIGTERM: a generator training checkpoints its last iteration and exits
    # a sentinel turns ready when its process exits, whichever thread reaps it (the pool's own thread joins too)
    running = {process.sentinel: process for process in processes}
    deadline = time.monotonic() + grace
    while running and (left := deadline - time.monotonic()) > 0:
        for sentinel in wait_for_exit(list(running), timeout=left):
            del running[sentinel]
    for process in running.values():
        process.kill()
