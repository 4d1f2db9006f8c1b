"""Open-ReID Inception, offline model building and the torchreid 0.2.5 compatibility patches."""

import os
import pickle
import types

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from reid_eval import compat, metrics
from reid_eval.models import (
    INCEPTION_PARAMS_MARKET,
    MissingPretrainedWeightsError,
    OpenReIDInception,
    build_reid_model,
    register_models,
)


@pytest.fixture(scope="module")
def torchreid():
    module = compat.import_torchreid()
    compat.apply_torchreid_patches()
    register_models()
    return module


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """TORCH_HOME without weights, and any download attempt fails loudly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.utils.model_zoo, "load_url", no_network)
    return tmp_path / "torch_home"


# ------------------------------------------------------------------------------------------- Inception
def test_inception_parameter_count_with_market_head():
    """num_features=128, dropout=0.5, 751-way classifier (Open-ReID softmax recipe on Market-1501)."""
    model = OpenReIDInception(751, num_features=128, dropout=0.5)
    total = sum(p.numel() for p in model.parameters())
    assert total == INCEPTION_PARAMS_MARKET == 6_648_335  # "6.65M"
    assert sum(p.numel() for p in model.classifier.parameters()) == 128 * 751 + 751
    assert (
        sum(p.numel() for p in model.feat.parameters()) + sum(p.numel() for p in model.feat_bn.parameters())
        == 1536 * 128 + 128 + 2 * 128
    )
    # the head is the only part that depends on the number of identities
    assert total - sum(p.numel() for p in OpenReIDInception(1).parameters()) == 750 * 129


def test_inception_shapes_train_and_eval():
    torch.manual_seed(0)
    model = OpenReIDInception(751).eval()
    with torch.no_grad():  # Open-ReID's input size: final map 1536 x 10 x 4
        assert model.featuremaps(torch.randn(1, 3, 144, 56)).shape == (1, 1536, 10, 4)
    x = torch.randn(2, 3, 48, 24)  # the rest on a smaller input (fully convolutional up to the pooling)
    model.train()
    assert model(x).shape == (2, 751)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 751)  # Open-ReID retrieves with the classifier output
        model.eval_output = "embedding"
        embedding = model(x)
    assert embedding.shape == (2, 128) and (embedding >= 0).all()  # post-ReLU embedding
    triplet = OpenReIDInception(751, loss="triplet").train()
    logits, features = triplet(x)
    assert logits.shape == (2, 751) and features.shape == (2, 128)


def test_registered_in_torchreid_factory(torchreid):
    register_models()  # idempotent
    model = torchreid.models.build_model("openreid_inception", num_classes=7, loss="softmax")
    assert isinstance(model, OpenReIDInception) and model.classifier.out_features == 7
    assert "openreid_inception" in getattr(torchreid.reid.models, "__model_factory")


# ---------------------------------------------------------------------------------- offline building
def test_resnet50_auto_without_cached_weights_builds_from_scratch(empty_torch_home):
    model, info = build_reid_model("resnet50", num_classes=10, pretrained="auto")
    assert not info.imagenet_weights and info.weights_file is None and info.loaded_tensors == 0
    assert info.input_size == (256, 128)
    assert model.classifier.out_features == 10


def test_resnet50_pretrained_true_missing_weights_names_file(empty_torch_home):
    with pytest.raises(MissingPretrainedWeightsError) as err:
        build_reid_model("resnet50", num_classes=10, pretrained=True)
    expected = os.path.join(str(empty_torch_home), "hub", "checkpoints", "resnet50-19c8e357.pth")
    assert expected in str(err.value) and "pretrained=False" in str(err.value)


def test_resnet50_loads_cached_weights_file(empty_torch_home):
    """A (tiny, fake) ImageNet file in the cache is used: matching tensors are copied, the rest is left."""
    path = empty_torch_home / "hub" / "checkpoints" / "resnet50-19c8e357.pth"
    path.parent.mkdir(parents=True)
    conv1 = torch.full((64, 3, 7, 7), 0.25)
    torch.save({"conv1.weight": conv1, "fc.weight": torch.zeros(1000, 2048)}, path)
    model, info = build_reid_model("resnet50", num_classes=10, pretrained="auto")
    assert info.imagenet_weights and info.weights_file == str(path) and info.loaded_tensors == 1
    assert torch.equal(model.conv1.weight, conv1)


def test_inception_never_pretrained(empty_torch_home):
    _, info = build_reid_model("openreid_inception", num_classes=5, pretrained="auto")
    assert not info.imagenet_weights and info.num_params == sum(p.numel() for p in OpenReIDInception(5).parameters())
    with pytest.raises(ValueError, match="from scratch"):
        build_reid_model("openreid_inception", num_classes=5, pretrained=True)
    with pytest.raises(KeyError, match="known"):
        build_reid_model("vgg", num_classes=5)


# ------------------------------------------------------------------------------------- compat patches
def test_patches_are_idempotent(torchreid):
    assert compat.apply_torchreid_patches() == []
    assert torchreid.utils.load_checkpoint is compat._torchreid_load_checkpoint
    assert torchreid.metrics.evaluate_rank is compat.torchreid_evaluate_rank


def test_checkpoint_round_trip_through_patched_torchreid_loader(torchreid, tmp_path):
    model = OpenReIDInception(5, num_features=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = compat.build_scheduler(optimizer)
    state = {
        "state_dict": model.state_dict(),
        "epoch": 3,
        "rank1": np.float32(0.42),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    torchreid.utils.save_checkpoint(state, str(tmp_path))
    path = str(tmp_path / "model.pth.tar-3")
    with pytest.raises(pickle.UnpicklingError):  # the torch >= 2.6 problem the patch fixes
        torch.load(path)
    fresh = OpenReIDInception(5, num_features=8)
    start_epoch = torchreid.utils.resume_from_checkpoint(path, fresh, optimizer, scheduler)
    assert start_epoch == 3
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    assert compat.load_checkpoint(path)["rank1"] == np.float32(0.42)


def test_patched_evaluate_rank_equals_ours(torchreid):
    rng = np.random.default_rng(0)
    distmat = rng.permuted(np.tile(np.arange(200, dtype=np.float32), (25, 1)), axis=1)
    q_pids, g_pids = rng.integers(0, 10, 25), rng.integers(0, 10, 200)
    q_cams, g_cams = rng.integers(0, 3, 25), rng.integers(0, 3, 200)
    cmc, m_ap = torchreid.metrics.evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20)
    ours_cmc, ours_map = metrics.evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, 20)
    ref_cmc, ref_map = torchreid.reid.metrics.rank.eval_market1501(distmat, q_pids, g_pids, q_cams, g_cams, 20)
    np.testing.assert_array_equal(cmc, ours_cmc)
    np.testing.assert_array_equal(cmc, ref_cmc)
    assert m_ap == ours_map and abs(m_ap - ref_map) < 1e-6
    # torchreid's own python eval_cuhk03 uses np.bool (gone in numpy 2); the patched path works
    cuhk03_cmc, cuhk03_map = torchreid.metrics.evaluate_rank(
        distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20, use_metric_cuhk03=True
    )
    assert cuhk03_cmc.dtype == np.float32 and cuhk03_cmc.shape == (20,) and cuhk03_map == ours_map


def test_constant_scheduler_keeps_learning_rate():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    scheduler = compat.build_scheduler(optimizer, None)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.05


# ------------------------------------------------------------------------------ engine, end to end
class TinyReID(Dataset):
    """torchreid-style samples: dict(img (3, 32, 16), pid, camid); 3 identities x 2 cameras."""

    def __init__(self, count, seed):
        generator = torch.Generator().manual_seed(seed)
        self.pids = torch.arange(count) % 3
        self.camids = (torch.arange(count) // 3) % 2
        self.imgs = torch.randn(count, 3, 32, 16, generator=generator) + self.pids[:, None, None, None]

    def __len__(self):
        return len(self.pids)

    def __getitem__(self, i):
        return {"img": self.imgs[i], "pid": int(self.pids[i]), "camid": int(self.camids[i])}


def tiny_engine(torchreid):
    datamanager = types.SimpleNamespace(
        train_loader=DataLoader(TinyReID(12, 0), batch_size=4, shuffle=False, drop_last=True),
        test_loader={
            "tiny": {
                "query": DataLoader(TinyReID(6, 1), batch_size=4),
                "gallery": DataLoader(TinyReID(12, 2), batch_size=4),
            }
        },
        num_train_pids=3,
        sources=["tiny"],
    )
    torch.manual_seed(0)
    model = torchreid.models.build_model("openreid_inception", num_classes=3, loss="softmax")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    return torchreid.engine.ImageSoftmaxEngine(datamanager, model, optimizer, scheduler=None, use_gpu=False)


@pytest.mark.filterwarnings("ignore:gallery has only 12 samples")  # torchreid's max_rank=50 on a tiny gallery
def test_engine_run_without_scheduler_saves_and_evaluates(torchreid, tmp_path):
    engine = tiny_engine(torchreid)
    # scheduler=None made save_model crash before the patch
    engine.run(save_dir=str(tmp_path), max_epoch=1, print_freq=100, ranks=[1, 5])
    checkpoint = compat.load_checkpoint(str(tmp_path / "model" / "model.pth.tar-1"))
    assert checkpoint["scheduler"] is None and checkpoint["epoch"] == 1

    engine.model.train()
    results = compat.evaluate_engine(engine, max_rank=5, topk=5, ranks=(1, 5))["tiny"]
    assert engine.model.training  # evaluate_engine restores the mode
    engine.model.eval()
    with torch.no_grad():
        qf = engine.model(TinyReID(6, 1).imgs)
        gf = engine.model(TinyReID(12, 2).imgs)
    distmat = compat.DISTANCES["euclidean"](qf, gf)
    q, g = TinyReID(6, 1), TinyReID(12, 2)
    expected = metrics.evaluate_all(distmat, q.pids, g.pids, q.camids, g.camids, max_rank=5, topk=5, ranks=(1, 5))
    assert results["rank1"] == pytest.approx(expected["rank1"])
    assert results["mAP"] == pytest.approx(expected["mAP"], abs=1e-6)
    assert results["cuhk03_rank1"] == pytest.approx(expected["cuhk03_rank1"])
    assert float(engine.test(ranks=[1, 5])) == pytest.approx(results["rank1"])  # torchreid's own test() via the patch
