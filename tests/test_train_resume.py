"""generators.train resumes bit-exact for every method, on CPU: a run interrupted and resumed ends with
the uninterrupted run's weights, optimizer and scheduler states, RNG states, sampler position, image
pools and log, bit for bit.

Each method trains a tiny network of its own structure on 32x16 images for 5 iterations; the
interrupted run stops after iteration 2 (a hook raises KeyboardInterrupt, as Ctrl-C would: the loop
checkpoints the last completed iteration) and is resumed from its folder alone. Dropout (Deformable
GAN's decoder, PATN's discriminator) and image pools draw random numbers, so the RNG states must
travel in the checkpoint; PG2 switches from stage 1 to stage 2 after iteration 3, after the resume.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_generator_data import make_tiny_root

from generators.checkpoint import read_checkpoint
from generators.train import IterationInfo, RunConfig, train

ITERATIONS, STOP = 5, 2
PATN_TINY = {"ngf": "4", "n_blocks": "1", "ndf": "4", "d_blocks": "1", "pool_size": "3"}
OVERRIDES = {
    "patn": PATN_TINY,
    "resnet": PATN_TINY,
    "pg2": {
        "image_size": "32,16",
        "g1_hidden": "4",
        "g1_blocks": "3",
        "z_num": "8",
        "g2_hidden": "4",
        "ndf": "4",
        "stage1_iterations": "3",  # the stage switch comes after the resume
    },
    "deform": {
        "enc_filters": "4,8,8,8",
        "dec_filters": "8,8,4",
        "warped_skips": "2",
        "dec_dropout": "1",
        "disc_filters": "4,8",
    },
    "spgnet": {
        "nf": "4",
        "max_nf": "8",
        "num_scales": "3",
        "num_warp_scales": "2",
        "style_length": "8",
        "spade_hidden": "4",
        "zencoder_nf": "2",
        "ndf": "4",
        "d_layers": "2",
        "gan_start": "0",
    },
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_tiny_root(tmp_path_factory.mktemp("data"), size=(32, 16))


def run_config(root: Path, out: Path, method: str) -> RunConfig:
    return RunConfig(
        out=out,
        data=root,
        method=method,
        preset="synth",
        iterations=ITERATIONS,
        batch_size=2,
        checkpoint_every=ITERATIONS,
        sample_every=ITERATIONS,
        overrides={**OVERRIDES[method], "train.decay_start": "3"},  # the learning rate decays after the resume
        progress=False,
        num_samples=2,
        amp="off",
        device="cpu",
    )


def stop_after(iteration: int):
    def hook(info: IterationInfo) -> None:
        if info.iteration == iteration:
            raise KeyboardInterrupt

    return hook


def tensors(data: dict) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint dict (nets, optimizers, context: RNG states, pools), by path."""
    out: dict[str, torch.Tensor] = {}

    def walk(prefix: str, x) -> None:
        if torch.is_tensor(x):
            out[prefix] = x
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(f"{prefix}.{i}", v)

    for key in ("nets", "optimizers", "ctx"):
        walk(key, data[key])
    return out


def plain(data: dict) -> dict:
    """The non-tensor part of the scheduler and context state (sampler position, iteration, python RNG)."""

    def strip(x):
        if torch.is_tensor(x):
            return None
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [strip(v) for v in x]
        return x

    return {"schedulers": strip(data["schedulers"]), "ctx": strip(data["ctx"]), "iteration": data["iteration"]}


def log_lines(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in open(path)]


@pytest.mark.parametrize("method", sorted(OVERRIDES))
def test_interrupted_and_resumed_training_is_bit_exact(method, root, tmp_path):
    straight = train(run_config(root, tmp_path / "a", method), log=lambda s: None)
    assert straight.iteration == ITERATIONS and not straight.interrupted
    first = train(run_config(root, tmp_path / "b", method), hooks=[stop_after(STOP)], log=lambda s: None)
    assert first.interrupted and first.iteration == STOP
    at_stop = tensors(read_checkpoint(tmp_path / "b" / "checkpoints" / "latest.pt"))
    resumed = train(
        RunConfig(out=tmp_path / "b", resume=True, amp="off", device="cpu", progress=False, num_samples=2),
        log=lambda s: None,
    )
    assert resumed.start_iteration == STOP and resumed.iteration == ITERATIONS
    a = read_checkpoint(tmp_path / "a" / "checkpoints" / "latest.pt")
    b = read_checkpoint(tmp_path / "b" / "checkpoints" / "latest.pt")
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys() and len(ta) > 20
    assert [k for k in ta if not torch.equal(ta[k], tb[k])] == []
    assert plain(a) == plain(b) and a["content_hash"] == b["content_hash"]
    assert log_lines(tmp_path / "a" / "train_log.jsonl") == log_lines(tmp_path / "b" / "train_log.jsonl")
    # not vacuous: the weights moved in the iterations after the resume, and the learning rate decayed
    assert any(not torch.equal(at_stop[k], tb[k]) for k in at_stop if k.startswith("nets."))
    log = log_lines(tmp_path / "a" / "train_log.jsonl")
    assert log[-1]["lr"] < log[0]["lr"]  # the decay ran after the resume
    if method == "pg2":  # the stage switch (G1 trains in stage 1 only) came after the resume
        assert ["G1" in line for line in log] == [True] * 3 + [False] * 2


def test_a_scheduler_ahead_of_its_optimizer_does_not_warn(root, tmp_path):
    """SPGNet's D optimizer first steps at gan_start while its LR schedule follows every iteration, on purpose:
    torch's "lr_scheduler.step() before optimizer.step()" warning would only alarm the user."""
    cfg = replace(run_config(root, tmp_path / "run", "spgnet"), iterations=3)
    cfg.overrides["gan_start"] = "5"  # D never steps in these three iterations
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg, log=lambda s: None)
    assert not [str(w.message) for w in caught if "lr_scheduler.step()" in str(w.message)]
