"""generators.train: bit-exact resume, Ctrl-C / SIGTERM checkpoints, weights checked before training,
loss goes down, sample grids, the CLI and its flag errors. Tiny PATN nets on 32x16 images."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_generator_data import make_tiny_root

from augment.runtime import UsageError, cpu_supports_bf16, resolve_amp, resolve_device
from generators.checkpoint import load, read_checkpoint
from generators.losses import MissingWeightsError
from generators.samples import render_skeleton
from generators.train import (
    INTERRUPTED_EXIT,
    IterationInfo,
    RunConfig,
    main,
    train,
)

TINY = {"ngf": "4", "n_blocks": "1", "ndf": "4", "d_blocks": "1", "pool_size": "3"}
TINY_ARGS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_tiny_root(tmp_path_factory.mktemp("data"), size=(32, 16))


def tiny_run(root: Path, out: Path, **kw) -> RunConfig:
    base = dict(
        out=out,
        data=root,
        method="patn",
        preset="synth",
        iterations=6,
        batch_size=2,
        checkpoint_every=3,
        sample_every=3,
        overrides=dict(TINY),
        progress=False,
        num_samples=2,
    )
    base.update(kw)
    return RunConfig(**base)


def stop_at(iteration: int):
    def hook(info: IterationInfo):
        if info.iteration == iteration:
            raise KeyboardInterrupt

    return hook


def all_tensors(data: dict):
    """(name, tensor) of nets, optimizer states and schedulers of a checkpoint dict."""
    out = []
    for net, sd in data["nets"].items():
        out += [(f"nets.{net}.{k}", v) for k, v in sd.items()]
    for opt, sd in data["optimizers"].items():
        for pid, st in sd["state"].items():
            out += [(f"opt.{opt}.{pid}.{k}", v) for k, v in st.items()]
    return out


@pytest.mark.parametrize(
    "amp",
    ["off", pytest.param("bf16", marks=pytest.mark.skipif(not cpu_supports_bf16(), reason="CPU without native bf16"))],
)
def test_resume_is_bit_exact(root, tmp_path, amp):
    straight = train(tiny_run(root, tmp_path / "a", amp=amp), log=lambda s: None)
    assert not straight.interrupted and straight.iteration == 6 and straight.amp == amp.replace("off", "fp32")

    first = train(tiny_run(root, tmp_path / "b", amp=amp), hooks=[stop_at(4)], log=lambda s: None)
    assert first.interrupted and first.iteration == 4
    assert read_checkpoint(tmp_path / "b" / "checkpoints" / "latest.pt")["iteration"] == 4
    # no --data: the resumed run reads the data folder recorded in the checkpoint
    resumed = train(
        RunConfig(out=tmp_path / "b", resume=True, amp=amp, progress=False, num_samples=2), log=lambda s: None
    )
    assert resumed.start_iteration == 4 and resumed.iteration == 6 and not resumed.interrupted

    a = read_checkpoint(tmp_path / "a" / "checkpoints" / "latest.pt")
    b = read_checkpoint(tmp_path / "b" / "checkpoints" / "latest.pt")
    ta, tb = all_tensors(a), all_tensors(b)
    assert [n for n, _ in ta] == [n for n, _ in tb] and len(ta) > 50
    unequal = [n for (n, x), (_, y) in zip(ta, tb) if not torch.equal(x, y)]
    assert unequal == []
    assert a["content_hash"] == b["content_hash"]
    assert a["schedulers"] == b["schedulers"]
    assert a["ctx"]["sampler"] == b["ctx"]["sampler"]
    assert torch.equal(a["ctx"]["rng"]["torch"], b["ctx"]["rng"]["torch"])
    for name in a["ctx"]["step"]["pools"]:
        assert torch.equal(a["ctx"]["step"]["pools"][name]["images"], b["ctx"]["step"]["pools"][name]["images"])
    # the log of the resumed run equals the straight one, line for line (losses, lr)
    strip = lambda p: [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in open(p)]
    assert strip(tmp_path / "a" / "train_log.jsonl") == strip(tmp_path / "b" / "train_log.jsonl")


def test_resume_sensitive_to_seed(root, tmp_path):
    # The equality above is not vacuous: another seed gives other weights after the same steps.
    a = train(tiny_run(root, tmp_path / "a", iterations=2, seed=0), log=lambda s: None)
    b = train(tiny_run(root, tmp_path / "b", iterations=2, seed=1), log=lambda s: None)
    wa = read_checkpoint(a.checkpoint)["nets"]["G"]
    wb = read_checkpoint(b.checkpoint)["nets"]["G"]
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)


def test_keyboard_interrupt_leaves_valid_checkpoint(root, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "--data",
            str(root),
            "--out",
            str(out),
            "--iterations",
            "6",
            "--batch-size",
            "2",
            "--checkpoint-every",
            "100",
            "--sample-every",
            "100",
            "--no-progress",
            *TINY_ARGS,
        ],
        hooks=[stop_at(2)],
    )
    assert rc == INTERRUPTED_EXIT
    text = capsys.readouterr().out
    assert "interrupted" in text and f"--out {out} --resume" in text
    latest = out / "checkpoints" / "latest.pt"
    assert read_checkpoint(latest)["iteration"] == 2
    assert os.path.samefile(latest, out / "checkpoints" / "iter_000002.pt")
    bundle = load(latest)
    assert not bundle.nets.training
    assert [f for f in os.listdir(out / "checkpoints") if f.startswith(".")] == []  # no temp files left
    assert len(open(out / "train_log.jsonl").readlines()) == 2


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_after_the_iteration(root, tmp_path, signum):
    before = signal.getsignal(signum)

    def hook(info):
        if info.iteration == 3:
            os.kill(os.getpid(), signum)  # handled: the loop stops after iteration 3

    report = train(
        tiny_run(root, tmp_path / "run", checkpoint_every=100, sample_every=100), hooks=[hook], log=lambda s: None
    )
    assert report.interrupted and report.iteration == 3
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["iteration"] == 3
    assert signal.getsignal(signum) is before  # handlers restored


def test_missing_vgg_stops_before_anything_is_built(root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    import generators.train as train_mod

    def no_build(*a, **k):
        raise AssertionError("networks built before the weights check")

    monkeypatch.setattr(train_mod, "build", no_build)
    run = tiny_run(root, tmp_path / "run", overrides={**TINY, "perceptual": "true"})
    with pytest.raises(MissingWeightsError) as err:
        train(run, log=lambda s: None)
    message = str(err.value)
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    assert "--no-perceptual" in message and "--vgg-weights" in message
    assert not (tmp_path / "run" / "checkpoints").exists()
    # the same through the CLI: exit status 2, message on stderr; --no-perceptual trains
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(root), "--out", str(tmp_path / "cli"), "--preset", "market", "--no-progress"])
    assert exit_.value.code == 2 and "vgg19-dcbb9e9d.pth" in capsys.readouterr().err
    monkeypatch.undo()
    report = train(
        tiny_run(root, tmp_path / "ok", iterations=1, no_perceptual=True, overrides={**TINY, "perceptual": "true"}),
        log=lambda s: None,
    )
    assert report.iteration == 1


def test_training_lowers_the_l1_loss(root, tmp_path):
    report = train(
        tiny_run(
            root,
            tmp_path / "run",
            iterations=40,
            checkpoint_every=40,
            sample_every=40,
            overrides={**TINY, "train.lr": "0.002"},
        ),
        log=lambda s: None,
    )
    l1 = [json.loads(line)["L1"] for line in open(report.log)]
    assert len(l1) == 40
    assert np.mean(l1[-5:]) < 0.8 * np.mean(l1[:5])


def test_cli_smoke_outputs(root, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "--method",
            "patn",
            "--preset",
            "synth",
            "--data",
            str(root),
            "--out",
            str(out),
            "--iterations",
            "6",
            "--batch-size",
            "2",
            "--checkpoint-every",
            "3",
            "--sample-every",
            "3",
            "--num-samples",
            "3",
            "--seed",
            "5",
            "--amp",
            "off",
            "--device",
            "cpu",
            "--no-progress",
            *TINY_ARGS,
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    for word in ("finished", "images/s", "final losses", "checkpoint:", "samples:", "log:"):
        assert word in text
    names = sorted(os.listdir(out / "checkpoints"))
    assert names == ["iter_000003.pt", "iter_000006.pt", "latest.pt"]
    data = read_checkpoint(out / "checkpoints" / "latest.pt")
    assert data["iteration"] == 6 and data["run"]["seed"] == 5 and data["config"]["ngf"] == 4
    assert data["config"]["train"]["iterations"] == 6 and data["config"]["train"]["decay_start"] == 4  # 6*2000/3000
    assert len(data["dataset_fingerprint"]) == 16
    grid = cv2.imread(str(out / "samples" / "iter_000006.png"))
    assert grid.shape == (3 * 32 + 2 * 2, 5 * 16 + 4 * 2, 3)
    assert sorted(os.listdir(out / "samples")) == ["iter_000003.png", "iter_000006.png"]
    lines = [json.loads(line) for line in open(out / "train_log.jsonl")]
    assert [line["iteration"] for line in lines] == [1, 2, 3, 4, 5, 6]
    # constant until 4 iterations are done, then linear to 0 at 6: the 6th step runs at half the rate
    assert [line["lr"] for line in lines] == pytest.approx([2e-4] * 5 + [1e-4])
    # a finished run resumed again does nothing; a fresh run into the same folder is refused
    assert main(["--out", str(out), "--data", str(root), "--resume", "--no-progress"]) == 0
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--data", str(root), "--no-progress"])
    assert "pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--workers", "0"], "--workers"),
        (["--amp", "fp16", "--device", "cpu"], "--amp"),
        (["--amp", "half"], "--amp"),
        (["--iterations", "0"], "--iterations"),
        (["--set", "no_such_field=1"], "--set"),
        (["--set", "ngf"], "--set"),
        (["--method", "nope"], "--method"),
        (["--preset", "nope"], "--preset"),
        (["--resume"], "--resume"),
        (["--vgg-weights", "/no/such/file.pth"], "--vgg-weights"),
    ],
)
def test_flag_errors_name_the_flag(root, tmp_path, capsys, argv, flag):
    with pytest.raises(SystemExit) as e:
        main(["--data", str(root), "--out", str(tmp_path / "run"), "--no-progress", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert flag in err
    if flag == "--workers":
        assert "must be >= 1, got 0" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resume_refuses_changed_model_flags(root, tmp_path):
    train(tiny_run(root, tmp_path / "run", iterations=1), log=lambda s: None)
    with pytest.raises(UsageError, match="--batch-size"):
        train(RunConfig(out=tmp_path / "run", data=root, resume=True, batch_size=4), log=lambda s: None)
    with pytest.raises(UsageError, match="--method"):
        train(RunConfig(out=tmp_path / "run", data=root, resume=True, method="resnet"), log=lambda s: None)
    other = make_tiny_root(tmp_path / "other", ids=(3, 5), size=(32, 16))
    with pytest.raises(UsageError, match=rf"--data: {other} has fingerprint .*, the run to resume trained on"):
        train(RunConfig(out=tmp_path / "run", data=other, resume=True), log=lambda s: None)


def test_cuda_flags_on_a_cpu_machine():
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    with pytest.raises(UsageError, match="--device"):
        resolve_device("cuda")
    # CPU auto: bf16 exactly where the CPU has native bf16, else fp32
    assert resolve_amp("auto", torch.device("cpu")) == (torch.bfloat16 if cpu_supports_bf16() else None)
    assert resolve_amp("off", torch.device("cpu")) is None


def test_skeleton_drawing():
    kps = np.full((18, 2), -1)
    kps[1] = (5, 8)  # neck
    kps[2] = (10, 4)  # Rsho
    img = render_skeleton(kps, (32, 16))
    assert img.shape == (32, 16, 3) and img.dtype == np.uint8
    assert img[5, 8].any() and img[10, 4].any() and not img[25, 2].any()
    assert not render_skeleton(np.full((18, 2), -1), (32, 16)).any()


def test_trains_on_the_embedded_dataset(tiny_market, tmp_path):
    """The real data path end to end: the rendered tiny dataset, 128x64, 2 iterations, then inference."""
    from augment.data.market import read_market
    from generators.inference import Transferer

    out = tmp_path / "run"
    assert (
        main(
            [
                "--data",
                str(tiny_market),
                "--out",
                str(out),
                "--iterations",
                "2",
                "--batch-size",
                "2",
                "--no-progress",
                *TINY_ARGS,
            ]
        )
        == 0
    )
    latest = out / "checkpoints" / "latest.pt"
    assert read_checkpoint(latest)["dataset_fingerprint"] == read_market(tiny_market).fingerprint()
    assert cv2.imread(str(out / "samples" / "iter_000002.png")).shape == (6 * 128 + 5 * 2, 5 * 64 + 4 * 2, 3)
    src = np.zeros((3, 128, 64, 3), np.uint8)
    kps = np.full((3, 18, 2), 20)
    fake = Transferer(latest, device="cpu")(src, kps, kps)
    assert fake.shape == (3, 128, 64, 3) and fake.dtype == np.uint8


def test_interrupt_inside_a_step_keeps_the_last_checkpoint(root, tmp_path, monkeypatch):
    from generators.base import get_method

    impl = get_method("patn")
    real_step = impl.train_step
    calls = {"n": 0}

    def step(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # the third iteration is half done (no signal handler could delay it)
            raise KeyboardInterrupt
        return real_step(*a, **k)

    monkeypatch.setattr(impl, "train_step", step)
    run = tiny_run(root, tmp_path / "run", checkpoint_every=1)
    report = train(run, log=lambda s: None)
    assert report.interrupted and report.iteration == 2
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["iteration"] == 2
    assert not (tmp_path / "run" / "checkpoints" / "iter_000003.pt").exists()
    monkeypatch.undo()
    resumed = train(
        RunConfig(out=tmp_path / "run", data=root, resume=True, progress=False, num_samples=2), log=lambda s: None
    )
    assert resumed.iteration == 6
    assert [json.loads(line)["iteration"] for line in open(resumed.log)] == [1, 2, 3, 4, 5, 6]


def test_bad_image_mid_run_keeps_completed_iterations(tmp_path, monkeypatch):
    root = make_tiny_root(tmp_path, size=(32, 16))
    run = tiny_run(root, tmp_path / "run", checkpoint_every=100, sample_every=100)

    def corrupt_everything(info):
        if info.iteration == 2:  # images are decoded lazily: the next batch meets broken files
            for f in (root / "bounding_box_train").iterdir():
                f.write_bytes(b"broken")

    import generators.data as data_mod
    from augment.data.market import DatasetError

    monkeypatch.setattr(data_mod, "CACHE_AUTO_LIMIT_BYTES", 0)  # no cache: the broken files are read again
    with pytest.raises(DatasetError, match="cannot decode image"):
        train(run, hooks=[corrupt_everything], log=lambda s: None)
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["iteration"] == 2


def test_training_on_a_given_pairs_file(root, tmp_path):
    """--pairs restricts training to those pairs (a reduced set's kept images); the checkpoint records them
    and a resumed run keeps training on them."""
    import pandas as pd

    from augment.data.keypoints import find_keypoint_file, read_pairs, write_pairs

    pairs = read_pairs(find_keypoint_file(root, "pairs", "train"))
    subset = pairs[pairs["from"].str[:4] == pairs["from"].iloc[0][:4]].head(3)
    assert 0 < len(subset) < len(pairs)
    path = write_pairs(tmp_path / "kept-pairs.csv", pd.DataFrame(subset).reset_index(drop=True))
    train(tiny_run(root, tmp_path / "run", pairs=path, iterations=4), log=lambda s: None, hooks=[stop_at(2)])
    run = read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["run"]
    assert run["pairs_file"] == str(path.resolve()) and run["num_pairs"] == len(subset)
    resume = RunConfig(out=tmp_path / "run", resume=True, progress=False)
    train(resume, log=lambda s: None)
    run = read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["run"]
    assert run["pairs_file"] == str(path.resolve()) and run["num_pairs"] == len(subset)
    with pytest.raises(UsageError, match="--pairs"):
        train(tiny_run(root, tmp_path / "other", pairs=tmp_path / "absent.csv"), log=lambda s: None)
