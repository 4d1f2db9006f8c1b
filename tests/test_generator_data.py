"""generators.data: pair validation (errors name file, line and image), decoding, the image cache,
and the seeded resumable PairSampler."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from augment.data.keypoints import Annotations, build_pairs, read_annotations, write_annotations, write_pairs
from augment.data.market import DatasetError
from generators.data import (
    OFFICIAL_EPOCH_PAIRS,
    PairDataset,
    PairSampler,
    decode_image,
    fixed_pairs,
    load_pairs,
    make_loader,
)


def make_tiny_root(tmp_path: Path, *, ids=(2, 7, 9), per_id=3, size=(128, 64), seed=0) -> Path:
    """A tiny Market-layout root of noisy one-colour JPEGs with annotation and pairs CSVs (all pairs of an id)."""
    rng = np.random.default_rng(seed)
    root = tmp_path / "tiny"
    names = {"train": [], "test": []}
    for split, folder, pids in (("train", "bounding_box_train", ids), ("test", "bounding_box_test", (1, 4))):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for pid in pids:
            for k in range(per_id):
                name = f"{pid:04d}_c{k % 6 + 1}s1_{100 * k + pid:06d}_01.jpg"
                # a colour per identity plus noise: learnable, and every image differs
                colour = np.array([(37 * pid) % 256, (91 * pid) % 256, (151 * pid) % 256])
                img = np.clip(colour + rng.normal(0, 20, (*size, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(root / folder / name), img)
                names[split].append(name)
    (root / "query").mkdir()
    h, w = size
    for split in ("train", "test"):
        n = len(names[split])
        coords = np.stack([rng.integers(0, h, (n, 18)), rng.integers(0, w, (n, 18))], -1).astype(np.int32)
        coords[:, 16:] = -1  # ears missing, as often in Market
        ann = Annotations(names[split], coords)
        write_annotations(root / f"market-annotation-{split}.csv", ann)
        write_pairs(root / f"market-pairs-{split}.csv", build_pairs(ann))
    return root


@pytest.fixture
def root(tmp_path):
    return make_tiny_root(tmp_path)


def test_pairs_loaded_and_batch_format(root):
    ds = PairDataset(root, "train")
    pairs = pd.read_csv(root / "market-pairs-train.csv")
    assert len(ds) == len(pairs) == 3 * 3 * 2  # 3 ids, all ordered pairs of 3 images
    item = ds[4]
    assert (item["src_name"], item["tgt_name"]) == (pairs["from"][4], pairs["to"][4])
    ann = read_annotations(root / "market-annotation-train.csv")
    assert item["src_kps"].dtype == torch.int64 and item["src_kps"].shape == (18, 2)
    assert np.array_equal(item["tgt_kps"].numpy(), ann[item["tgt_name"]])
    img = item["src_img"]
    assert img.dtype == torch.float32 and img.shape == (3, 128, 64)
    assert -1.0 <= img.min() and img.max() <= 1.0
    # RGB order and scaling against an independent decode
    bgr = cv2.imread(str(root / "bounding_box_train" / item["src_name"]))
    expect = torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(img, expect, atol=1e-6)
    batch = ds.batch([0, 1, 2])
    assert batch["src_img"].shape == (3, 3, 128, 64) and batch["tgt_kps"].shape == (3, 18, 2)
    assert batch["src_name"] == [ds[i]["src_name"] for i in range(3)]


def test_test_split_uses_gallery_and_test_pairs(root):
    ds = PairDataset(root, "test")
    assert len(ds) == 2 * 3 * 2
    assert all(n.startswith(("0001", "0004")) for n in ds.table.image_names)


def _rewrite_pairs(root: Path, rows: list[tuple[str, str]]) -> Path:
    path = root / "market-pairs-train.csv"
    write_pairs(path, pd.DataFrame(rows, columns=["from", "to"]))
    return path


def test_missing_image_error_names_file_row_and_image(root):
    pairs = pd.read_csv(root / "market-pairs-train.csv")
    rows = list(zip(pairs["from"], pairs["to"]))
    rows.insert(3, (rows[0][0], "0002_c5s1_999999_01.jpg"))  # data row 4 -> line 5 (header is line 1)
    path = _rewrite_pairs(root, rows)
    with pytest.raises(DatasetError, match=r"market-pairs-train\.csv:5: to image 0002_c5s1_999999_01\.jpg is not in"):
        load_pairs(root, "train")
    # skip mode counts instead
    table = load_pairs(root, "train", missing="skip")
    assert len(table) == len(pairs)
    assert table.skipped.counts["pairs naming an image not in the dataset"] == 1
    assert 5 not in table.lines and path == table.pairs_file


def test_image_without_keypoints_is_an_error(root):
    ann = read_annotations(root / "market-annotation-train.csv")
    victim = ann.names[1]
    keep = [n for n in ann.names if n != victim]
    write_annotations(root / "market-annotation-train.csv", ann.subset(keep))
    pairs = pd.read_csv(root / "market-pairs-train.csv")
    first = int(np.flatnonzero((pairs["from"] == victim).to_numpy())[0]) + 2
    with pytest.raises(DatasetError, match=rf"market-pairs-train\.csv:{first}: from image {victim} has no row"):
        load_pairs(root, "train")
    table = load_pairs(root, "train", missing="skip")
    lost = int(((pairs["from"] == victim) | (pairs["to"] == victim)).sum())
    assert len(table) == len(pairs) - lost == 18 - 4
    assert victim not in table.image_names


def test_junk_names_are_counted_skips(root):
    pairs = pd.read_csv(root / "market-pairs-train.csv")
    rows = list(zip(pairs["from"], pairs["to"])) + [("-1_c1s1_000001_01.jpg", pairs["to"][0])]
    _rewrite_pairs(root, rows)
    table = load_pairs(root, "train")
    assert len(table) == len(pairs)
    assert table.skipped.counts["pairs naming junk (-1) or distractor (0000) images"] == 1


def test_unreadable_and_missized_images_named(root, tmp_path):
    bad = root / "bounding_box_train" / "0002_c1s1_000002_01.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="0002_c1s1_000002_01.jpg: cannot decode image"):
        decode_image(bad)
    small = tmp_path / "small.jpg"
    cv2.imwrite(str(small), np.zeros((64, 32, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"small\.jpg: image is 64x32, expected 128x64"):
        decode_image(small)


def test_cache_gives_same_images_and_skips_decoding(root, monkeypatch):
    cached = PairDataset(root, "train", cache=True)
    plain = PairDataset(root, "train", cache=False)
    assert PairDataset(root, "train").cache_enabled  # auto: a tiny set fits
    first = [cached[i] for i in range(len(cached))]
    import generators.data as data_mod

    def no_decode(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(data_mod, "decode_image", no_decode)
    for i in range(len(cached)):
        again = cached[i]
        assert torch.equal(again["src_img"], first[i]["src_img"])
    monkeypatch.undo()
    assert all(torch.equal(plain[i]["tgt_img"], first[i]["tgt_img"]) for i in range(len(plain)))


def _take(sampler: PairSampler, n: int) -> list[list[int]]:
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_sampler_is_seeded_and_official_by_default():
    a = _take(PairSampler(100, seed=3, batch_size=8, epoch_size=20), 10)
    b = _take(PairSampler(100, seed=3, batch_size=8, epoch_size=20), 10)
    c = _take(PairSampler(100, seed=4, batch_size=8, epoch_size=20), 10)
    assert a == b and a != c
    assert all(len(x) == 8 and all(0 <= i < 100 for i in x) for x in a)
    s = PairSampler(10, seed=0, batch_size=4)
    assert s.replacement and s.epoch_size == 10
    assert PairSampler(10**6, seed=0, batch_size=4, epoch_size=OFFICIAL_EPOCH_PAIRS).epoch_order(0).shape == (4000,)
    # with replacement: draws repeat within an epoch of a small table, as random.randint does officially
    assert len(set(PairSampler(10, seed=0, batch_size=1, epoch_size=50).epoch_order(0).tolist())) <= 10
    # without replacement an epoch is a subset of distinct pairs
    order = PairSampler(30, seed=0, batch_size=4, epoch_size=30, replacement=False).epoch_order(2)
    assert sorted(order.tolist()) == list(range(30))


@pytest.mark.parametrize("replacement", [True, False])
def test_sampler_resumes_exactly(replacement):
    full = _take(PairSampler(37, seed=11, batch_size=6, epoch_size=13, replacement=replacement), 12)
    s = PairSampler(37, seed=11, batch_size=6, epoch_size=13, replacement=replacement)
    it = iter(s)
    first = []
    for _ in range(5):
        first.append(next(it))
        s.advance(6)
    # iterating ahead (prefetch) does not move the consumed position
    _ = [next(it) for _ in range(3)]
    state = s.state_dict()
    assert (state["epoch"], state["index"]) == divmod(5 * 6, 13)
    resumed = PairSampler(37, seed=11, batch_size=6, epoch_size=13, replacement=replacement)
    resumed.load_state_dict(state)
    assert first + _take(resumed, 7) == full
    other = PairSampler(37, seed=12, batch_size=6, epoch_size=13, replacement=replacement)
    with pytest.raises(ValueError, match="seed=11"):
        other.load_state_dict(state)


def test_loader_batches_follow_sampler(root):
    ds = PairDataset(root, "train")
    sampler = PairSampler(len(ds), seed=0, batch_size=4)
    expect = _take(sampler, 3)
    loader = make_loader(ds, sampler, num_workers=0)
    it = iter(loader)
    for idx in expect:
        batch = next(it)
        assert batch["src_name"] == [ds.table.image_names[ds.table.src[i]] for i in idx]
        assert batch["src_img"].shape == (4, 3, 128, 64)


def test_fixed_pairs_deterministic_and_spread(root):
    table = load_pairs(root, "test")
    idx = fixed_pairs(table, 4)
    assert idx.tolist() == fixed_pairs(table, 4).tolist()
    assert idx[0] == 0 and idx[-1] == len(table) - 1 and len(set(idx.tolist())) == 4
    assert len(fixed_pairs(table, 1000)) == len(table)


def test_image_size_inferred_and_enforced(tmp_path):
    root = make_tiny_root(tmp_path, size=(32, 16))
    ds = PairDataset(root, "train")
    assert ds.table.image_size == (32, 16) and ds[0]["src_img"].shape == (3, 32, 16)
    odd = root / "bounding_box_train" / ds.table.image_names[-1]
    cv2.imwrite(str(odd), np.zeros((40, 16, 3), np.uint8))
    with pytest.raises(DatasetError, match=rf"{odd.name}: image is 40x16, expected 32x16"):
        [PairDataset(root, "train", cache=False)[i] for i in range(len(ds))]


def test_embedded_dataset_pairs(tiny_market):
    from augment.data.market import read_market

    for split in ("train", "test"):
        ds = PairDataset(tiny_market, split)
        pairs = pd.read_csv(tiny_market / f"market-pairs-{split}.csv")
        assert len(ds) == len(pairs) and ds.table.skipped.total() == 0
        assert ds.table.image_size == (128, 64)
        assert ds.table.dataset_fingerprint == read_market(tiny_market).fingerprint()
        item = ds[len(ds) - 1]
        assert (item["src_name"], item["tgt_name"]) == (pairs["from"].iloc[-1], pairs["to"].iloc[-1])


def test_keypoints_dir_and_worker_loader(root, tmp_path):
    kp = tmp_path / "keypoints"
    kp.mkdir()
    for f in root.glob("market-*.csv"):
        f.rename(kp / f.name)
    with pytest.raises(DatasetError, match="market-annotation-train.csv not found"):
        load_pairs(root, "train")
    ds = PairDataset(root, "train", keypoints_dir=kp)
    assert ds.table.pairs_file == kp / "market-pairs-train.csv"
    # a worker process yields the very batches of the in-process loader
    a = iter(make_loader(ds, PairSampler(len(ds), seed=2, batch_size=3), num_workers=0))
    b = iter(make_loader(ds, PairSampler(len(ds), seed=2, batch_size=3), num_workers=1))
    for _ in range(3):
        x, y = next(a), next(b)
        assert x["src_name"] == y["src_name"] and torch.equal(x["tgt_img"], y["tgt_img"])
