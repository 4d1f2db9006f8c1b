"""Multi-worker training (2 Ray Train workers) resumes bit-exact: a run whose rank-0 worker dies after
iteration 3 (its last checkpoint is iteration 2) is restarted by Ray Train, resumes from that
checkpoint, and ends with the uninterrupted 2-worker run's weights, optimizer states, sampler
position and log, bit for bit (the comparison is 2 workers against 2 workers: the summation order is
the same, so no tolerance). One session Ray from conftest; the worker group starts three times.
"""

from __future__ import annotations

import json

import faults
import pytest
import torch
from test_generator_data import make_tiny_root
from test_train_ray import run_config
from test_train_resume import log_lines, tensors

from cluster import train_ray
from cluster.train_ray import train_on_ray
from generators.checkpoint import read_checkpoint

ITERATIONS = 4


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_tiny_root(tmp_path_factory.mktemp("data"), size=(32, 16))


def test_two_workers_killed_mid_run_resume_bit_exact(local_ray, root, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = lambda out: run_config(root, out, 2, iterations=ITERATIONS, checkpoint_every=2, sample_every=ITERATIONS)
    straight = train_on_ray(config(tmp_path / "a"), log=lambda s: None)
    assert straight.iteration == ITERATIONS
    marker = tmp_path / "worker-killed"
    monkeypatch.setattr(train_ray, "_worker", faults.worker_killed_once(marker, after_iteration=3))
    resumed = train_on_ray(config(tmp_path / "b"), log=lambda s: None, max_failures=1)
    assert marker.exists(), "the fault hook did not fire"
    assert resumed.iteration == ITERATIONS and resumed.start_iteration == 2  # restarted from iteration 2
    a = read_checkpoint(tmp_path / "a" / "checkpoints" / "latest.pt")
    b = read_checkpoint(tmp_path / "b" / "checkpoints" / "latest.pt")
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys() and len(ta) > 20
    assert [k for k in ta if not torch.equal(ta[k], tb[k])] == []
    assert a["ctx"]["sampler"] == b["ctx"]["sampler"] and a["content_hash"] == b["content_hash"]
    assert a["schedulers"] == b["schedulers"]
    assert log_lines(tmp_path / "a" / "train_log.jsonl") == log_lines(tmp_path / "b" / "train_log.jsonl")
    assert json.loads((tmp_path / "b" / "train_log.jsonl").read_text().splitlines()[-1])["iteration"] == ITERATIONS
