"""``python -m augment.run`` killed at random moments ends with the uninterrupted run's bytes.

Each try starts the command in its own process group and sends SIGKILL to the whole group at a
random moment (seeded): one during start-up and validation; then, measured from the try's
``run.json`` being written, moments inside the generation window of the uninterrupted run (shrunk
by the share of batches already on disk: a rerun has less to do), which cover output preparation,
placing the real images and generation mid-batch; the last one anywhere in the working window,
the records at the end included. After every kill the next try is the same command again; a last
uninterrupted one finishes the job. The result must equal the uninterrupted run byte for byte:
every training image, every row done once, nothing temporary left. The generator has real
contrast (service_fixtures) and the batch size does not divide the plan, so a resume that
regenerated a row in another batch would show.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from service_fixtures import contrast_checkpoint, train_hashes  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261130
KILLS = 5


def command(data: Path, ckpt: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "augment.run",
        "--method",
        "patn",
        "--data",
        str(data),
        "--checkpoint",
        str(ckpt),
        "--out",
        str(out),
        "--executor",
        "local",
        "--batch-size",
        "3",
        "--poses-per-image",
        "2",
        "--seed",
        "4",
    ]


def start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )  # stderr: tqdm's few lines and any error, far below a pipe's buffer


def run_json_written_after(out: Path, t_ns: int) -> bool:
    try:
        return (out / "run.json").stat().st_mtime_ns >= t_ns
    except FileNotFoundError:
        return False


def timeline(cmd: list[str], out: Path) -> tuple[float, float, float]:
    """(seconds to run.json, from run.json to the last batch written, from run.json to the exit) of an
    uninterrupted run."""
    t0, t0_ns = time.time(), time.time_ns()
    proc = start(cmd)
    t_prep = None
    while proc.poll() is None:
        if t_prep is None and run_json_written_after(out, t0_ns):
            t_prep = time.time()
        time.sleep(0.005)
    assert proc.returncode == 0, proc.communicate()[1].decode()[-3000:]
    t_end = time.time()
    t_prep = t_prep or t_end
    last_batch = max(p.stat().st_mtime for p in (out / ".shards").glob("*.parquet"))
    return t_prep - t0, max(last_batch - t_prep, 0.05), t_end - t_prep


def kill_at(cmd: list[str], out: Path, delay: float, after_run_json: bool) -> str:
    """Start the command and SIGKILL its process group ``delay`` s after the start (or after its run.json)."""
    t0_ns = time.time_ns()
    proc = start(cmd)
    if after_run_json:
        while proc.poll() is None and not run_json_written_after(out, t0_ns):
            time.sleep(0.002)
    time.sleep(delay)
    if proc.poll() is not None:
        return f"finished before the kill (status {proc.returncode})"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    shards = len(list((out / ".shards").glob("*.parquet"))) if (out / ".shards").is_dir() else 0
    return (
        f"killed ({shards} shards on disk, manifest {'present' if (out / 'manifest.parquet').exists() else 'absent'})"
    )


def test_random_sigkills_then_rerun_give_the_uninterrupted_bytes(tiny_market, contrast_checkpoint, tmp_path):  # noqa: F811
    ref, out = tmp_path / "ref", tmp_path / "out"
    t_prep, t_gen, t_work = timeline(command(tiny_market, contrast_checkpoint, ref), ref)
    batches = len(list((ref / ".shards").glob("*.parquet")))
    rng = random.Random(SEED)
    outcomes = [
        f"from start: {kill_at(command(tiny_market, contrast_checkpoint, out), out, rng.uniform(0, t_prep), False)}"
    ]
    for i in range(KILLS - 1):
        # a rerun has less to do: the window shrinks with the batches already on disk
        left = 1 - len(list((out / ".shards").glob("*.parquet"))) / batches if (out / ".shards").is_dir() else 1
        delay = rng.uniform(0, t_work) if i == KILLS - 2 else rng.uniform(0, t_gen * max(left, 0.1))
        outcome = kill_at(command(tiny_market, contrast_checkpoint, out), out, delay, True)
        outcomes.append(f"after run.json +{delay:.2f} s: {outcome}")
    print(f"\n[kill] start-up {t_prep:.1f} s, generation {t_gen:.1f} s, working window {t_work:.1f} s")
    print("  " + "\n  ".join(outcomes))
    assert sum("killed" in o for o in outcomes) >= KILLS - 2, outcomes
    proc = start(command(tiny_market, contrast_checkpoint, out))
    _, err = proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in err.decode(), err.decode()[-3000:]
    assert train_hashes(out) == train_hashes(ref)
    m = pd.read_parquet(out / "manifest.parquet")
    assert m.output_name.is_unique and (m.status == "done").all()
    assert len(m) == len(pd.read_parquet(ref / "manifest.parquet"))
    assert not [p for d in (out, out / "bounding_box_train", out / ".shards") for p in d.glob(".*.tmp*")]
