"""Shared fixtures: a tiny embedded dataset (augment.synth), rendered once per test session."""

from pathlib import Path

import pytest
import torch

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
