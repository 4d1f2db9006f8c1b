"""Shared fixtures: a tiny embedded dataset (augment.synth), rendered once per test session."""

import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning (set before torch loads its OpenMP runtime):
# spinning threads slow small operations 20-100x when other processes share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

# The tests run tiny networks: one intra-op thread is as fast on 2 idle cores and far faster
# when the machine is busy (OpenMP threads spin against other processes).
torch.set_num_threads(1)

from augment.synth import SynthConfig, render_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_market_config() -> SynthConfig:
    """6 train + 6 test identities with 4-6 images each, 3 junk and 3 distractor images (~70 images)."""
    return SynthConfig.tiny()


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory, tiny_market_config) -> Path:
    """Root of the tiny dataset: Market-1501 layout, community keypoint/pair CSVs, preview.png. Read-only."""
    root = tmp_path_factory.mktemp("synth") / "tiny-market"
    return render_dataset(tiny_market_config, root, log=None)


@pytest.fixture(scope="session")
def local_ray():
    """One private local Ray for the whole session (never attaches to another Ray on the machine)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    root = str(Path(__file__).resolve().parent.parent)
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=256 * 2**20,
        runtime_env={"env_vars": {"PYTHONPATH": root}},
    )
    yield ray
    ray.shutdown()
