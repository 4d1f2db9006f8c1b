"""The Ray executor writes exactly the images the local executor writes, and survives a crashed actor."""

from dataclasses import replace
from pathlib import Path

import faults
import pandas as pd
import pytest

from augment.data.imageio import sha256_file
from augment.plan import PlanSpec
from augment.run import RunOptions, run_augmentation
from augment.runtime import UsageError
from cluster import ray_executor
from cluster.ray_executor import RAY_EXECUTOR, actor_resources


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    import generators.patn  # noqa: F401
    from generators.base import build
    from generators.checkpoint import save

    return save(tmp_path_factory.mktemp("ckpt") / "tiny.pt", build("patn", "synth", ngf=8, n_blocks=1, ndf=8))


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


def test_ray_equals_local_and_survives_a_killed_actor(local_ray, tiny_market, tiny_checkpoint, tmp_path, monkeypatch):
    spec = PlanSpec("portion", portion=0.3, seed=2)
    opts = RunOptions(data=tiny_market, checkpoint=tiny_checkpoint, batch_size=4)
    run_augmentation(spec, replace(opts, out=tmp_path / "local"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    marker = tmp_path / "killed-once"
    # the first actor call exits its process; Ray Data restarts the actor and retries the batch
    monkeypatch.setattr(ray_executor, "_GenerateUDF", faults.actor_killed_once(marker))
    summary = run_augmentation(spec, replace(opts, out=tmp_path / "ray"), RAY_EXECUTOR)
    assert marker.exists(), "the fault hook did not fire"
    assert summary.generated_this_run > 0 and summary.executor == "ray"
    assert hashes(tmp_path / "ray") == hashes(tmp_path / "local")
    m = pd.read_parquet(tmp_path / "ray" / "manifest.parquet")
    assert m.output_name.is_unique and (m.status == "done").all()
