"""The Ray executor writes exactly the images the local executor writes, and survives an actor that
crashes mid-job with batches in flight (decoded and queued for it, others written before). The
generator has real contrast (service_fixtures), so "the same images" is not vacuous."""

from dataclasses import replace
from pathlib import Path

import faults
import pandas as pd
import pytest
from service_fixtures import make_contrast_checkpoint

from augment.data.imageio import sha256_file
from augment.plan import PlanSpec
from augment.run import RunOptions, run_augmentation
from augment.runtime import UsageError
from cluster import ray_executor
from cluster.ray_executor import RAY_EXECUTOR, actor_resources


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_market, tmp_path_factory) -> Path:
    return make_contrast_checkpoint(tmp_path_factory.mktemp("ckpt") / "contrast.pt", tiny_market)


def hashes(out: Path) -> dict:
    d = out / "bounding_box_train"
    return {p.name: sha256_file(p) for p in sorted(d.iterdir()) if not p.name.startswith(".")}


def test_actor_resources_never_ask_for_absent_gpus():
    r = actor_resources({"CPU": 2.0}, None, None)
    assert r["num_gpus"] == 0 and r["actors"] == 1 and r["device"] == "cpu" and r["num_cpus"] < 2
    r = actor_resources({"CPU": 16.0, "GPU": 4.0, "generator": 4.0}, None, None)
    assert r["num_gpus"] == 1 and r["actors"] == 4 and r["resources"] == {"generator": 1}
    with pytest.raises(UsageError, match="--device: cuda, but the Ray cluster has no GPU"):
        actor_resources({"CPU": 2.0}, None, "cuda")
    with pytest.raises(UsageError, match="--actors: 3 > 2 GPUs"):
        actor_resources({"CPU": 8.0, "GPU": 2.0}, 3, None)


def test_a_dashboard_address_is_refused():
    with pytest.raises(UsageError, match="--address: http://h:8265 .*job-submission"):
        with ray_executor.ray_session("http://h:8265"):
            pass


def test_ray_equals_local_and_survives_an_actor_killed_mid_job(
    local_ray, tiny_market, tiny_checkpoint, tmp_path, monkeypatch
):
    spec = PlanSpec("ratio", per_image=1, seed=2)
    # the same CPU thread count in both: it is part of the run identity (it can change the sums' order)
    opts = RunOptions(data=tiny_market, checkpoint=tiny_checkpoint, batch_size=3, threads=2)
    local = run_augmentation(spec, replace(opts, out=tmp_path / "local"))
    batches = -(-local.generated_this_run // 3)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    marker = tmp_path / "killed-once"
    # the actor's 4th call exits its process, with batches decoded and queued for it and others written;
    # Ray Data restarts the actor and retries the batches it held
    killed = faults.actor_killed_once(marker, at_call=4, shards=tmp_path / "ray" / ".shards")
    monkeypatch.setattr(ray_executor, "_GenerateUDF", killed)
    summary = run_augmentation(spec, replace(opts, out=tmp_path / "ray"), RAY_EXECUTOR)
    assert marker.exists(), "the fault hook did not fire"
    written_before = int(marker.read_text().split()[1])
    print(f"\n[ray] actor killed with {written_before} of {batches} batches written")
    assert 0 < written_before < batches  # mid-job: some batches out, others still to come
    assert summary.generated_this_run == local.generated_this_run and summary.executor == "ray"
    assert hashes(tmp_path / "ray") == hashes(tmp_path / "local")
    m = pd.read_parquet(tmp_path / "ray" / "manifest.parquet")
    assert m.output_name.is_unique and (m.status == "done").all()
