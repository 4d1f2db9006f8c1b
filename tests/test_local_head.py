"""A real Ray head on 127.0.0.1 (cluster.local_head): jobs, uploads, token auth, clean stop.

Slow by nature: a head start and every job take seconds (docs/measurements.md#tests).
One head serves the module, with token auth on (the stricter path: every client and the job's
own ``ray.init`` must carry the token); the last test stops it and checks that nothing else
was touched. The default ``auth="disabled"`` differs only in the environment checked below.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import ray  # noqa: F401  (puts Ray's vendored psutil on sys.path)
from ray.exceptions import AuthenticationError
from ray.job_submission import JobStatus, JobSubmissionClient

from cluster import submit
from cluster.local_head import DEAD_REPORT_URL, MARKER_ENV, LocalRayHead

ROOT = Path(__file__).resolve().parent.parent
JOB_DEADLINE_S = 120


def wait_for(client: JobSubmissionClient, sid: str, deadline_s: float = JOB_DEADLINE_S) -> JobStatus:
    """The job's terminal status; on timeout the job is stopped and the test fails with its log tail."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < deadline_s:
        status = client.get_job_status(sid)
        if status.is_terminal():
            return status
        time.sleep(0.2)
    client.stop_job(sid)
    raise AssertionError(f"job {sid} not finished after {deadline_s} s:\n{client.get_job_logs(sid)[-3000:]}")


@pytest.fixture(scope="module")
def preexisting_pids() -> set[int]:
    """Processes alive before this module's head: certainly not the head's."""
    return set(psutil.pids())


@pytest.fixture(scope="module")
def head(preexisting_pids):
    # one unit of the custom resource, like a GPU node group of cluster/configs
    h = LocalRayHead(num_cpus=2, resources={"generator": 1}, auth="token")
    with h:
        print(f"\n[local head] started in {h.start_seconds:.1f} s: {h}")
        yield h


# ---- without starting anything ----------------------------------------------------------------------
def test_head_command_and_environment(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.9.9.9:6379")
    h = LocalRayHead(num_cpus=3)
    try:
        cmd = h.start_command()
        for flag in [
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={h.ports['port']}",
            "--num-cpus=3",
            "--num-gpus=0",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={h.ports['dashboard_port']}",
            "--disable-usage-stats",
            f"--temp-dir={h.temp_dir}",
            "--include-dashboard=true",
        ]:
            assert flag in cmd
        assert "stop" not in cmd
        assert len(set(h.ports.values())) == len(h.ports)  # every port distinct
        env = h.head_env()
        assert env["RAY_AUTH_MODE"] == "disabled" and env["RAY_USAGE_STATS_ENABLED"] == "0"
        assert env["RAY_USAGE_STATS_REPORT_URL"] == DEAD_REPORT_URL and env[MARKER_ENV] == h.marker
        assert "RAY_ADDRESS" not in env  # the head must not join the caller's cluster
        assert h.address == f"http://127.0.0.1:{h.ports['dashboard_port']}"
        assert h.gcs_address == f"127.0.0.1:{h.ports['port']}" and h.headers == {}
        tok = LocalRayHead(auth="token")
        assert tok.head_env()["RAY_AUTH_MODE"] == "token" and tok.head_env()["RAY_AUTH_TOKEN"] == tok.token
        assert tok.headers == {"Authorization": f"Bearer {tok.token}"}
        tok.stop()
    finally:
        h.stop()  # never started: only removes its temp dir
    assert not h.temp_dir.exists()


def test_bad_settings_fail_before_starting(tmp_path):
    with pytest.raises(ValueError, match="auth"):
        LocalRayHead(tmp_path / "a", auth="password")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        LocalRayHead(tmp_path / "b")
    with pytest.raises(ValueError, match="too long"):
        LocalRayHead(tmp_path / ("c" * 80))


# ---- one head for the module ------------------------------------------------------------------------
def test_trivial_job_round_trip(head, monkeypatch):
    # JobSubmissionClient prefers these variables to the address it is given
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    names = {p.name() for p in head.processes()}
    assert {"gcs_server", "raylet"} <= names
    t0 = time.perf_counter()
    client = JobSubmissionClient(head.address, headers=head.headers)
    sid = client.submit_job(entrypoint="python -c \"print('ok')\"")
    assert wait_for(client, sid) == JobStatus.SUCCEEDED
    assert "ok" in client.get_job_logs(sid).splitlines()
    print(f"[local head] trivial job round trip {time.perf_counter() - t0:.1f} s")
    # a failing entrypoint is reported as FAILED, and its id cannot be reused
    failed = submit.submit_job(
        head.address,
        ["python", "-c", "raise SystemExit(3)"],
        working_dir=ROOT / "cluster",
        submission_id="fails-1",
        headers=head.headers,
        write=lambda s: None,
    )
    assert failed.status == "FAILED" and not failed.ok
    with pytest.raises(RuntimeError, match="already exists"):
        submit.submit_job(
            head.address,
            ["python", "-c", "pass"],
            working_dir=ROOT / "cluster",
            submission_id="fails-1",
            headers=head.headers,
            wait=False,
        )


# Runs inside the job: where the project came from, what was uploaded, which cluster Ray attaches to.
JOB_PROBE = r"""
import json, os
import augment.data.market
from cluster.ray_executor import actor_resources, ray_session
files = sorted(os.path.relpath(os.path.join(r, f), ".") for r, ds, fs in os.walk(".") for f in fs
               if "__pycache__" not in r)
with ray_session(os.environ["RAY_ADDRESS"]) as ray:
    worker_module = ray.get(ray.remote(lambda: __import__("augment.data.market").data.market.__file__).remote())
    report = {"cwd": os.getcwd(), "module": augment.data.market.__file__, "files": files,
              "env_address": os.environ["RAY_ADDRESS"], "gcs": ray.get_runtime_context().gcs_address,
              "nodes": len(ray.nodes()), "worker_module": worker_module, "auth": os.environ["RAY_AUTH_MODE"],
              "plan": actor_resources(ray.cluster_resources(), None, None)}
print("PROBE " + json.dumps(report))
"""


def test_submit_uploads_the_project_and_the_job_attaches_to_its_cluster(head, tmp_path, monkeypatch):
    # a project copy with everything .rayignore must keep out of the upload
    wd = tmp_path / "proj"
    for pkg in ("augment", "cluster"):
        shutil.copytree(ROOT / pkg, wd / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".rayignore", wd)
    for rel in [
        "data/synth-market/a.jpg",
        "runs/generators/latest.pt",
        ".venv/bin/python",
        ".git/HEAD",
        "model.pt",
        "job_inputs/small.pt",
    ]:
        (wd / rel).parent.mkdir(parents=True, exist_ok=True)
        (wd / rel).write_bytes(b"x")
    # Ray's client lets RAY_ADDRESS override the address it is given; cluster.submit must not
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:9")
    chunks: list[str] = []
    t0 = time.perf_counter()
    outcome = submit.submit_job(
        head.address, ["python", "-c", JOB_PROBE], working_dir=wd, headers=head.headers, write=chunks.append
    )
    seconds = time.perf_counter() - t0
    assert outcome.status == "SUCCEEDED", outcome.logs
    print(f"[local head] cluster.submit job (upload, ray.init in the job, one task) {seconds:.1f} s")
    (line,) = [ln for ln in outcome.logs.splitlines() if ln.startswith("PROBE ")]
    probe = json.loads(line[len("PROBE ") :])
    assert "PROBE" in "".join(chunks)  # the logs were followed live
    # the project ran from the uploaded copy, in the driver and in a worker, not from this checkout
    job_dir = probe["cwd"]
    assert "runtime_resources/working_dir_files" in job_dir
    assert probe["module"] == f"{job_dir}/augment/data/market.py" == probe["worker_module"]
    # exactly what cluster.submit predicts was uploaded: no data, runs, .venv, .git or stray weights
    uploaded = set(probe["files"])
    assert uploaded == submit.uploaded_files(wd)
    assert "job_inputs/small.pt" in uploaded and "augment/run.py" in uploaded
    assert not [f for f in uploaded if f.startswith(("data/", "runs/", ".venv/", ".git/")) or f == "model.pt"]
    # ray_session(RAY_ADDRESS) joined the job's own cluster (same GCS port, one node), with the
    # token the driver inherited from the head
    assert probe["auth"] == "token"
    assert probe["env_address"].endswith(f":{head.ports['port']}")
    assert probe["gcs"].endswith(f":{head.ports['port']}") and probe["nodes"] == 1
    # and the executor would pin generator actors with the custom resource
    assert probe["plan"]["resources"] == {"generator": 1} and probe["plan"]["device"] == "cpu"


def test_clients_without_the_token_are_refused(head):
    # "Missing", or "Invalid" when this process already runs in token mode with another token
    # (an earlier local ray.init() in the same pytest session writes ~/.ray/auth_token and
    # sets RAY_AUTH_MODE=token here)
    with pytest.raises(AuthenticationError, match="(Missing|Invalid) authentication token"):
        submit.make_client(head.address)
    with pytest.raises(AuthenticationError, match="Invalid authentication token"):
        submit.make_client(head.address, {"Authorization": "Bearer wrong"})
    assert isinstance(head.job_client().list_jobs(), list)


def test_stop_ends_only_this_heads_processes(head, preexisting_pids):
    # decoys: a sibling temp dir (same prefix) and a foreign marker value must survive
    decoys = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", f"--temp-dir={head.temp_dir}x"]),
        subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(120)"],
            env={**os.environ, MARKER_ENV: head.marker + "-other"},
        ),
    ]
    try:
        ours = {p.pid for p in head.processes()}
        assert ours and not ours & {d.pid for d in decoys}
        foreign = (preexisting_pids & set(psutil.pids())) | {d.pid for d in decoys} | {os.getpid()}
        t0 = time.perf_counter()
        stopped = head.stop()
        print(f"[local head] stopped {len(stopped)} processes in {time.perf_counter() - t0:.1f} s")
        assert ours <= set(stopped)
        assert not set(stopped) & foreign  # nothing that was not ours was signalled
        assert head.processes() == []
        alive = [
            p for p in psutil.process_iter(["cmdline"]) if str(head.temp_dir) + "/" in " ".join(p.info["cmdline"] or ())
        ]
        assert alive == []
        assert all(d.poll() is None for d in decoys)
        assert not head.temp_dir.exists()
    finally:
        for d in decoys:
            d.kill()
            d.wait()
