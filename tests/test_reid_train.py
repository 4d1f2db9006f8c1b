"""reid_eval.train end to end on the tiny embedded dataset, the recipes, and the Open-ReID ResNet-50 head."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from augment import runtime
from augment.data.market import read_market
from reid_eval import compat, engine, recipes, train
from reid_eval.models import build_reid_model
from reid_eval.recipes import RECIPES, RandomSizedRectCrop

TINY = ["--model", "inception", "--recipe", "cpu", "--batch-size", "8", "--device", "cpu", "--seed", "3"]


def test_tiny_training_run_end_to_end(tiny_market, tmp_path):
    out = tmp_path / "run"
    metrics = train.main(["--data", str(tiny_market), "--out", str(out), "--epochs", "1", *TINY])
    written = json.loads((out / "metrics.json").read_text())
    assert written["rank1"] == pytest.approx(metrics["rank1"])
    for k in ("rank1", "rank5", "rank10", "mAP", "cuhk03_rank1"):
        assert 0.0 <= written[k] <= 1.0
    assert written["rank1"] <= written["rank5"] <= written["rank10"]
    assert written["num_queries"] == 13  # the tiny dataset's query split (junk and distractors skipped)
    assert written["model"]["architecture"] == "openreid_inception"
    assert written["model"]["imagenet_weights"] is False and "from scratch" in written["model"]["pretrained_note"]
    assert written["model"]["input_size"] == [64, 32]
    assert written["training"]["train_images"] == 31 and written["training"]["train_ids"] == 6
    assert written["training"]["iterations_per_epoch"] == 31 // 8  # drop_last
    assert written["training"]["iterations"] == 3 and written["training"]["images_seen"] == 24
    assert written["training"]["images_per_epoch"] == 31 and written["training"]["history"][0]["iterations"] == 3
    assert "images_per_epoch" not in written["run_key"]  # run keys of one-pass runs are as before
    assert written["data"]["fingerprint"] and written["recipe"]["name"] == "cpu"
    assert written["seed"] == 3 and written["training"]["history"][0]["epoch"] == 1
    log = (out / "train.log").read_text()
    assert "epoch: [1/1]" in log and "[reid] Rank-1" in log  # torchreid's progress lines and our summary

    # the checkpoint loads with compat.load_checkpoint and reproduces the evaluated model's outputs
    ckpt = compat.load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and ckpt["rank1"] == pytest.approx(written["rank1"])
    model, _ = build_reid_model("openreid_inception", ckpt["meta"]["num_classes"], pretrained=False)
    model.load_state_dict(ckpt["state_dict"])
    train_pids = sorted({r.pid for r in read_market(tiny_market).train})
    assert ckpt["meta"]["pid_to_label"] == {str(pid): label for label, pid in enumerate(train_pids)}

    # same command again: the finished run is returned, not retrained
    mtime = (out / "metrics.json").stat().st_mtime_ns
    args = ["--data", str(tiny_market), "--out", str(out), "--epochs", "1", *TINY]
    again = train.run_training(train.options_from_args(train.build_parser().parse_args(args)))  # the library call
    assert again["rank1"] == written["rank1"] and (out / "metrics.json").stat().st_mtime_ns == mtime
    # another run into the same folder is refused, naming what differs
    with pytest.raises(runtime.UsageError, match="epochs"):
        train.run_training(replace(train.options_from_args(train.build_parser().parse_args(args)), epochs=2))


def test_images_per_epoch_resamples_with_replacement_from_the_seed():
    """--images-per-epoch N: floor(N / batch) steps per epoch whatever the set's size, draws with replacement,
    the same draws for the same torch seed (the run's seed_everything), others for another."""
    dataset = torch.utils.data.TensorDataset(torch.arange(10))
    plain = torch.utils.data.DataLoader(dataset, batch_size=4, drop_last=True)
    loader = engine.resampling_loader(plain, 31)
    assert len(loader) == 31 // 4 and loader.batch_size == 4 and loader.drop_last

    def draws(seed):
        torch.manual_seed(seed)
        return torch.cat([b[0] for b in loader]).tolist()

    first = draws(3)
    assert len(first) == 28 and set(first) <= set(range(10)) and len(set(first)) < len(first)  # repeats
    assert draws(3) == first and draws(4) != first
    with pytest.raises(runtime.UsageError, match="--images-per-epoch"):
        train.TrainOptions(data="x", images_per_epoch=1).validate()


@pytest.mark.parametrize(
    "sampling",
    [[], ["--images-per-epoch", "20"], ["--loss", "siamese"]],
    ids=["one-pass", "with-replacement", "siamese"],
)
def test_interrupted_run_resumes_to_the_same_weights(tiny_market, tmp_path, monkeypatch, sampling):
    base = ["--data", str(tiny_market), "--epochs", "2", *TINY, *sampling]
    train.main(base + ["--out", str(tmp_path / "straight")])

    calls = {"n": 0}
    original = train.ReidSoftmaxEngine.train

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # during the second epoch, after the first one's checkpoint
        return original(self, *args, **kwargs)

    monkeypatch.setattr(train.ReidSoftmaxEngine, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.main(base + ["--out", str(tmp_path / "resumed")])
    assert compat.load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 1
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    monkeypatch.setattr(train.ReidSoftmaxEngine, "train", original)
    resumed = train.main(base + ["--out", str(tmp_path / "resumed")])
    assert resumed["training"]["resumed_from_epoch"] == 1
    a = compat.load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["state_dict"]
    b = compat.load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert resumed["rank1"] == straight["rank1"] and resumed["mAP"] == straight["mAP"]
    assert (
        resumed["training"]["iterations"]
        == straight["training"]["iterations"]
        == 2 * ((20 if "--images-per-epoch" in sampling else 31) // 8)
    )


def test_bad_options_name_the_flag(tiny_market, tmp_path, capsys):
    for argv, message in [
        (["--data", str(tiny_market), "--out", str(tmp_path), "--epochs", "0", *TINY], "--epochs"),
        (
            ["--data", str(tiny_market), "--out", str(tmp_path), "--model", "inception", "--batch-size", "1"],
            "--batch-size",
        ),
        (
            ["--data", str(tiny_market), "--out", str(tmp_path), "--pretrained", "require", *TINY],
            "--pretrained: require: inception",
        ),
        (["--data", str(tmp_path / "missing"), "--out", str(tmp_path)], "dataset root does not exist"),
        (
            ["--data", str(tiny_market), "--out", str(tmp_path), *TINY, "--loss", "siamese", "--batch-size", "6"],
            "--loss siamese forms batches of identities x 4 images",
        ),
    ]:
        with pytest.raises(SystemExit) as e:
            train.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and message in err
    with pytest.raises(runtime.UsageError, match="--epochs: must be >= 1"):
        train.run_training(train.TrainOptions(data=tiny_market, epochs=0))


# ----------------------------------------------------------------------------------------------- recipes
def test_openreid_recipe_is_the_published_protocol():
    r = RECIPES["openreid"]
    assert (r.batch_size, r.optim, r.momentum, r.nesterov, r.weight_decay, r.gamma) == (
        256,
        "sgd",
        0.9,
        True,
        5e-4,
        0.1,
    )
    assert r.train_transform == "openreid" and not r.label_smooth and r.dist_metric == "euclidean"
    res, inc = r.model("resnet50"), r.model("inception")
    assert (res.architecture, res.input_size, res.epochs, res.step_epochs, res.lr, res.base_lr_mult) == (
        "openreid_resnet50",
        (256, 128),
        50,
        40,
        0.1,
        0.1,
    )
    assert (inc.architecture, inc.input_size, inc.epochs, inc.step_epochs, inc.lr, inc.pretrained) == (
        "openreid_inception",
        (144, 56),
        70,
        60,
        0.1,
        False,
    )
    for m in (res, inc):
        assert m.model_kwargs == {"num_features": 128, "dropout": 0.5, "eval_output": "logits"}
    t = RECIPES["torchreid"]
    assert (t.optim, t.batch_size, t.label_smooth, t.train_transform) == ("adam", 32, True, "random_flip")
    assert (t.model("resnet50").lr, t.model("resnet50").epochs, t.model("resnet50").step_epochs) == (3e-4, 60, 20)


def test_staged_learning_rate_only_with_imagenet_weights():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)
            self.classifier = nn.Linear(2, 3)

    torchreid = compat.import_torchreid()
    opts = train.TrainOptions(data="unused", model="resnet50", recipe="openreid")
    plan = train.RunPlan(opts, RECIPES["openreid"], 50, 256, torch.device("cpu"), None, 0, "unused")
    optimizer, scheduler, staged = engine.build_optimizer(torchreid, plan, Tiny(), imagenet=True)
    assert staged and [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01, 0.1])
    assert optimizer.param_groups[0]["params"][0] is not None and optimizer.defaults["nesterov"]
    assert len(optimizer.param_groups[0]["params"]) == 2  # conv1 weight and bias: the pretrained base
    for _ in range(40):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.001, 0.01])  # x0.1 at epoch 40
    optimizer, _, staged = engine.build_optimizer(torchreid, plan, Tiny(), imagenet=False)
    assert not staged and [g["lr"] for g in optimizer.param_groups] == [0.1]


def test_epochs_override_scales_the_lr_step(tiny_market):
    from reid_eval.datasets import load_splits

    splits = load_splits(tiny_market)
    plan = train._plan(
        train.TrainOptions(data=tiny_market, model="inception", recipe="openreid", epochs=7, device="cpu"), splits
    )
    m = plan.recipe.model("inception")
    assert (plan.epochs, m.epochs, m.step_epochs) == (7, 7, 6)  # 60/70 of the way, as the recipe's step
    assert plan.batch_size == 31  # the recipe's 256 capped at the 31 training images


def test_random_sized_rect_crop_area_and_aspect():
    torch.manual_seed(0)
    crop = RandomSizedRectCrop(144, 56)
    img = Image.new("RGB", (64, 128))
    seen = []
    original_crop = Image.Image.crop

    def spy(self, box):
        seen.append(box)
        return original_crop(self, box)

    Image.Image.crop = spy
    try:
        outs = [crop(img) for _ in range(200)]
    finally:
        Image.Image.crop = original_crop
    assert all(o.size == (56, 144) for o in outs)
    assert len(seen) > 100  # most draws fit a 128x64 image
    for x0, y0, x1, y1 in seen:
        w, h = x1 - x0, y1 - y0
        assert 0 <= x0 and x1 <= 64 and 0 <= y0 and y1 <= 128
        assert 0.64 * 8192 * 0.9 <= w * h <= 8192 and 1.8 <= h / w <= 3.3  # rounding of small sides
    # a draw is reproducible from the torch seed
    ramp = Image.fromarray(np.arange(128 * 64 * 3, dtype=np.uint8).reshape(128, 64, 3))
    torch.manual_seed(5)
    a = np.asarray(crop(ramp))
    torch.manual_seed(5)
    b = np.asarray(crop(ramp))
    torch.manual_seed(6)
    c = np.asarray(crop(ramp))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_precision_choice(monkeypatch):
    cpu = torch.device("cpu")
    assert recipes.resolve_precision("fp32", cpu) is None
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)
    assert recipes.resolve_precision("auto", cpu) is None
    with pytest.raises(ValueError, match="--precision"):
        recipes.resolve_precision("bf16", cpu)
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: True)
    assert recipes.resolve_precision("auto", cpu) is torch.bfloat16


# ------------------------------------------------------------------------------------ Open-ReID ResNet-50
def test_openreid_resnet50_head(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no ImageNet file: from scratch
    from reid_eval import openreid_resnet

    openreid_resnet.register()
    torch.manual_seed(0)
    model, info = build_reid_model(
        "openreid_resnet50", 10, pretrained="auto", **RECIPES["openreid"].model("resnet50").model_kwargs
    )
    assert not info.imagenet_weights and info.input_size == (256, 128)
    fc = model.fc
    assert [type(m) for m in fc] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout]
    assert (fc[0].in_features, fc[0].out_features, fc[3].p) == (2048, 128, 0.5)
    assert (model.classifier.in_features, model.classifier.out_features) == (128, 10)
    # Open-ReID from-scratch init: linears N(0, 0.001), zero bias
    assert model.classifier.weight.std().item() == pytest.approx(0.001, rel=0.1)
    assert fc[0].weight.std().item() == pytest.approx(0.001, rel=0.1) and not fc[0].bias.any()
    # backbone of torchvision's ResNet-50 (23,508,032 parameters without its fc) + Open-ReID's head
    head = 2048 * 128 + 128 + 2 * 128 + 128 * 10 + 10
    assert info.num_params == 23_508_032 + head
    x = torch.randn(2, 3, 64, 32)
    model.train()
    assert model(x).shape == (2, 10)
    model.eval()
    with torch.no_grad():
        logits = model(x)
        model.eval_output = "embedding"
        embedding = model(x)
    assert logits.shape == (2, 10) and embedding.shape == (2, 128) and (embedding >= 0).all()
    assert torch.allclose(model.classifier(embedding), logits, atol=1e-6)
    model.pretrained_head_init()  # kaiming-normal fan_out: std sqrt(2 / 128)
    assert fc[0].weight.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.1)


def test_recipe_override_helper():
    r = recipes.get_recipe("cpu", batch_size=8)
    assert r.batch_size == 8 and RECIPES["cpu"].batch_size == 64
    assert replace(r, batch_size=64) == RECIPES["cpu"]
    with pytest.raises(KeyError, match="unknown recipe"):
        recipes.get_recipe("nope")
