"""Augmentation as Ray jobs on a real local head: a job whose driver is SIGKILLed mid-run is
re-submitted, resumes (skipping the rows already written) and ends with exactly the images of a
clean local run; the re-submitted job also loses a generator actor on the way and survives it.

One LocalRayHead (2 CPUs, its own temp dir) for the module, stopped by the harness (never
``ray stop``). Slow by nature: a head start, then per job an upload, a driver start and a Ray Data
actor start (docs/measurements.md#tests).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import ray  # noqa: F401  (puts Ray's vendored psutil on sys.path)
from ray.job_submission import JobStatus
from service_fixtures import make_contrast_checkpoint
from test_local_head import wait_for

from augment.data.imageio import sha256_file
from augment.run import main as augment_main
from cluster import submit
from cluster.local_head import LocalRayHead

ROOT = Path(__file__).resolve().parent.parent
JOB_DEADLINE_S = 150


@pytest.fixture(scope="module")
def head():
    with LocalRayHead(num_cpus=2) as h:
        print(f"\n[cluster jobs] head up in {h.start_seconds:.1f} s: {h}")
        yield h


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_market, tmp_path_factory) -> Path:
    """Outputs with real contrast (service_fixtures): equal bytes across batches are not vacuous."""
    return make_contrast_checkpoint(tmp_path_factory.mktemp("ckpt") / "contrast.pt", tiny_market)


def train_hashes(out: Path) -> dict[str, str]:
    d = out / "bounding_box_train"
    return {p.name: sha256_file(p) for p in sorted(d.iterdir()) if not p.name.startswith(".")}


def driver_process(client, sid: str, head: LocalRayHead, out: Path) -> psutil.Process:
    """The job's driver (the process running augment.run), as Ray records it; checked to be
    this head's process running this command before anything is signalled."""
    pid = client.get_job_info(sid).driver_info.pid
    proc = psutil.Process(int(pid))
    cmdline = " ".join(proc.cmdline())
    assert "augment.run" in cmdline and str(out) in cmdline, cmdline
    assert proc.pid in {p.pid for p in head.processes()}  # carries the head's marker: ours to kill
    return proc


def test_killed_driver_job_resumes_to_the_local_result(head, tiny_market, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    common = [
        "--method",
        "patn",
        "--data",
        str(tiny_market),
        "--checkpoint",
        str(tiny_checkpoint),
        "--portion",
        "0.3",
        "--batch-size",
        "3",  # > 1: a batch redone after the kill must be the same batch (fixed by plan order and size)
        "--threads",
        "2",  # in the run identity: the local reference and the job's actors use the same count
        "--seed",
        "3",
    ]
    reference = augment_main([*common, "--executor", "local", "--out", str(tmp_path / "local")])
    planned = reference.rows["generated_done"]
    assert planned >= 10

    out = tmp_path / "ray-job"
    command = submit.augment_command([*common, "--out", str(out)])  # checked by augment.run's parser
    assert command[-2:] == ["--executor", "ray"]
    client = head.job_client()

    # 1. submit; SIGKILL the driver as soon as a batch is on disk --------------------------------------
    t0 = time.perf_counter()
    first = submit.submit_job(
        head.address,
        command,
        working_dir=ROOT,
        submission_id="augment-killed",
        wait=False,
        headers=head.headers,
        write=lambda s: None,
    )
    shards = out / ".shards"
    while not (shards.is_dir() and any(shards.glob("*.parquet"))):
        status = client.get_job_status(first.submission_id)
        assert not status.is_terminal(), (
            f"job ended ({status}) before any batch:\n{client.get_job_logs(first.submission_id)[-3000:]}"
        )
        assert time.perf_counter() - t0 < JOB_DEADLINE_S, "no batch written in time"
        time.sleep(0.02)
    driver = driver_process(client, first.submission_id, head, out)
    os.kill(driver.pid, signal.SIGKILL)
    at_kill = len(list(shards.glob("*.parquet")))
    print(
        f"[cluster jobs] first batch after {time.perf_counter() - t0:.1f} s; driver {driver.pid} killed "
        f"with {at_kill} batch(es) written"
    )
    status = wait_for(client, first.submission_id, JOB_DEADLINE_S)
    assert status != JobStatus.SUCCEEDED and status == JobStatus.FAILED
    assert not (out / "summary.json").exists()  # the run never got to its end
    written = len(list(shards.glob("*.parquet")))  # in-flight writes may have landed after the kill
    assert 1 <= written < -(-planned // 3), "the job was not interrupted mid-run"

    # 2. the same command again, new submission id; this time one generator actor dies too -----------
    marker = tmp_path / "actor-killed-once"
    # the same augment.run arguments, through the test entry point that kills the first generator actor
    faulty = [
        "python",
        "tests/faults.py",
        "--kill-actor-once",
        str(marker),
        "--",
        *command[len(submit.AUGMENT_ENTRYPOINT) :],
    ]
    t1 = time.perf_counter()
    second = client.submit_job(
        entrypoint=shlex.join(faulty), submission_id="augment-resumed", runtime_env=submit.runtime_env(ROOT)
    )
    status = wait_for(client, second, JOB_DEADLINE_S)
    logs = client.get_job_logs(second)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    print(f"[cluster jobs] resumed job SUCCEEDED in {time.perf_counter() - t1:.1f} s")
    assert marker.exists(), "the actor fault hook did not fire in the job"

    # 3. every planned row exactly once, done; the images are the clean local run's ---------------------
    summary = json.loads((out / "summary.json").read_text())
    print(
        f"[cluster jobs] {written} batch(es) on disk after the kill; resumed: {summary['already_done']} rows "
        f"already done, {summary['generated_this_run']} generated (of {planned})"
    )
    assert summary["already_done"] >= 1 and summary["generated_this_run"] >= 1
    assert summary["already_done"] + summary["generated_this_run"] == planned
    assert f"({summary['already_done']} already done)" in logs
    plan = pd.read_parquet(out / "plan.parquet")
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert len(manifest) == len(plan) and manifest["output_name"].is_unique
    assert set(manifest["output_name"]) == set(plan["output_name"])
    assert (manifest["status"] == "done").all()
    assert train_hashes(out) == train_hashes(tmp_path / "local")
    assert not list((out / "bounding_box_train").glob(".*.tmp*"))  # the killed run's partial files are gone
