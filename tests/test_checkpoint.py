"""generators.checkpoint: self-describing round trip, atomic writes, and a clear error naming the file
for every kind of bad file."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from generators.base import build
from generators.checkpoint import (
    FORMAT,
    CheckpointError,
    code_version,
    load,
    read_checkpoint,
    save,
    weights_hash,
)

TINY = dict(ngf=4, n_blocks=1, ndf=4, d_blocks=1, pool_size=3)


@pytest.fixture(scope="module")
def bundle():
    return build("patn", "synth", seed=3, **TINY, **{"train.iterations": 77, "train.decay_start": 11})


@pytest.fixture
def saved(bundle, tmp_path):
    return save(tmp_path / "model.pt", bundle, iteration=5, dataset_fingerprint="abcd" * 4)


def _inputs(n=2, size=(32, 16)):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(n, 3, *size, generator=g) * 2 - 1
    kps = torch.stack(
        [torch.randint(0, size[0], (n, 18), generator=g), torch.randint(0, size[1], (n, 18), generator=g)], -1
    )
    return img, kps, kps.flip(0)


def test_round_trip_same_outputs_and_config(bundle, saved):
    loaded = load(saved)
    assert (loaded.method, loaded.preset) == ("patn", "synth")
    assert loaded.config == bundle.config  # nested TrainSchedule and the betas tuple round-trip
    assert dataclasses.is_dataclass(loaded.config.train) and isinstance(loaded.config.train.betas, tuple)
    assert loaded.config.train.iterations == 77 and loaded.config.ngf == 4
    assert not loaded.nets.training
    bundle.nets.eval()
    img, src, tgt = _inputs()
    with torch.inference_mode():
        assert torch.equal(loaded.generate(img, src, tgt), bundle.generate(img, src, tgt))
    for name, net in bundle.nets.items():
        for k, v in net.state_dict().items():
            assert torch.equal(v, loaded.nets[name].state_dict()[k]), (name, k)
    assert load(saved, for_training=True).nets.training


def test_file_is_self_describing_and_plain(saved):
    data = torch.load(saved, weights_only=True)  # plain types only: no pickled code
    assert data["format"] == FORMAT and data["iteration"] == 5 and data["dataset_fingerprint"] == "abcd" * 4
    assert data["code_version"] == code_version() and code_version().startswith("0.1.0")
    assert data["content_hash"] == weights_hash(data["nets"])
    assert set(data["nets"]) == {"G", "G_ema", "D_PB", "D_PP"}  # the synth preset samples from an EMA of G
    assert data["config"]["train"]["decay_start"] == 11


def test_weights_hash_sees_every_bit():
    a = {"G": {"w": torch.zeros(3), "n": torch.tensor(1)}}
    b = {"G": {"w": torch.zeros(3), "n": torch.tensor(2)}}  # scalar buffer differs
    c = {"G": {"w": torch.zeros(3, dtype=torch.float64), "n": torch.tensor(1)}}  # dtype differs
    hashes = {weights_hash(x) for x in (a, b, c)}
    assert len(hashes) == 3
    d = {"G": {"w": torch.zeros(3)}}
    d["G"]["w"][1] = -0.0  # sign bit only
    assert weights_hash(d) != weights_hash({"G": {"w": torch.zeros(3)}})


def test_missing_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'nope.pt'}: checkpoint file not found"):
        load(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load(tmp_path)


@pytest.mark.parametrize("keep", [0.5, 0.98, 10])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)] if keep < 1 else data[:keep])
    with pytest.raises(CheckpointError, match=rf"{saved}: (truncated or corrupt|corrupt)"):
        load(saved)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match=rf"{path}: (truncated or corrupt|corrupt)"):
        load(path)


def test_foreign_torch_files(tmp_path):
    plain = tmp_path / "state_dict.pt"
    torch.save({"conv.weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match=rf"{plain}: not a {FORMAT} checkpoint \(no 'format' key"):
        load(plain)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(2), tensor)
    with pytest.raises(CheckpointError, match="no 'format' key; the file holds a Tensor"):
        load(tensor)
    pickled = tmp_path / "pickled.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a pickled model: classes outside the weights-only allow-list
    with pytest.raises(CheckpointError, match=rf"{pickled}: not a {FORMAT} checkpoint: it stores Python objects"):
        load(pickled)


def _rewrite(path, change):
    data = torch.load(path, weights_only=True)
    change(data)
    torch.save(data, path)


def test_other_format_version(saved):
    _rewrite(saved, lambda d: d.update(format="poseaug-generator/99"))
    with pytest.raises(CheckpointError, match="format 'poseaug-generator/99'"):
        load(saved)


def test_unknown_method(saved):
    _rewrite(saved, lambda d: d.update(method="nope"))
    with pytest.raises(CheckpointError, match=rf"{saved}: unknown method 'nope'; known methods: .*patn"):
        load(saved)


def test_config_not_matching_networks(saved):
    _rewrite(saved, lambda d: d["config"].update(ngf=8))
    with pytest.raises(CheckpointError, match=rf"{saved}: weights of G do not match its stored config"):
        load(saved)


def test_config_from_another_code_version(saved):
    _rewrite(saved, lambda d: d["config"].update(new_knob=1))
    with pytest.raises(CheckpointError, match=rf"{saved}: stored config does not fit.*new_knob"):
        load(saved)


def test_altered_weights_fail_the_hash(saved):
    def alter(d):
        w = d["nets"]["G"]["model.stream1_down.1.weight"]
        w.view(-1)[0] += 1e-3

    _rewrite(saved, alter)
    with pytest.raises(CheckpointError, match=rf"{saved}: weights do not match the stored content hash"):
        load(saved)


def test_atomic_write_keeps_old_file_on_failure(bundle, saved, monkeypatch):
    before = saved.read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save(saved, bundle, iteration=9)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]  # no temporary left
    assert read_checkpoint(saved)["iteration"] == 5
