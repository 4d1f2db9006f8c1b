"""Market-layout folders as torchreid datasets: relabelling, junk/distractor rules, registration."""

import os
from pathlib import Path

import pytest
from PIL import Image

from augment.data.market import DatasetError
from reid_eval import compat
from reid_eval.datasets import load_splits, register_market_dir, registered_names


def _write(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (16, 32), (10 * i % 255, 80, 120)).save(folder / name)


def make_market(root: Path, train: list[str], gallery: list[str], query: list[str]) -> Path:
    _write(root / "bounding_box_train", train)
    _write(root / "bounding_box_test", gallery)
    _write(root / "query", query)
    return root


TRAIN = [
    "0015_c1s1_000001_01.jpg",
    "0002_c2s1_000002_01.jpg",
    "0002_c3s1_000003_01.jpg",
    "0007_c6s1_000004_01.jpg",
    "0007_c1s1_000004_01_patn-0.jpg",  # generated: keeps id 7 and camera 1
    "-1_c1s1_000005_01.jpg",
    "0000_c2s1_000006_01.jpg",
]  # junk and distractor: not training data
GALLERY = [
    "0003_c1s1_000010_01.jpg",
    "0003_c2s1_000011_01.jpg",
    "0004_c4s1_000012_01.jpg",
    "0000_c5s1_000013_01.jpg",
    "-1_c6s1_000014_01.jpg",
]
QUERY = ["0003_c3s1_000020_01.jpg", "0004_c1s1_000021_01.jpg", "0000_c2s1_000022_01.jpg", "-1_c2s1_000023_01.jpg"]


@pytest.fixture(scope="module")
def torchreid():
    module = compat.import_torchreid()
    compat.apply_torchreid_patches()
    return module


def test_relabelling_cameras_and_market_rules(tmp_path):
    root = make_market(tmp_path / "m", TRAIN, GALLERY, QUERY)
    s = load_splits(root)
    # train pids 2, 7, 15 -> labels 0, 1, 2 in ascending id order; junk and distractor skipped
    assert s.pid_to_label == {2: 0, 7: 1, 15: 2}
    train = {Path(p).name: (label, cam) for p, label, cam in s.train_items}
    assert train == {
        "0015_c1s1_000001_01.jpg": (2, 0),
        "0002_c2s1_000002_01.jpg": (0, 1),
        "0002_c3s1_000003_01.jpg": (0, 2),
        "0007_c6s1_000004_01.jpg": (1, 5),
        "0007_c1s1_000004_01_patn-0.jpg": (1, 0),
    }
    assert s.generated_train_images == 1 and s.num_train_pids == 3
    # gallery keeps the distractor (id 0), drops junk; query drops both; ids stay original, cameras 0-based
    assert sorted((Path(p).name, pid, cam) for p, pid, cam in s.gallery_items) == [
        ("0000_c5s1_000013_01.jpg", 0, 4),
        ("0003_c1s1_000010_01.jpg", 3, 0),
        ("0003_c2s1_000011_01.jpg", 3, 1),
        ("0004_c4s1_000012_01.jpg", 4, 3),
    ]
    assert sorted((Path(p).name, pid, cam) for p, pid, cam in s.query_items) == [
        ("0003_c3s1_000020_01.jpg", 3, 2),
        ("0004_c1s1_000021_01.jpg", 4, 0),
    ]
    assert s.skipped == {
        "junk (-1) images in train": 1,
        "distractor (0000) images in train": 1,
        "junk (-1) images in gallery": 1,
        "junk (-1) images in query": 1,
        "distractor (0000) images in query": 1,
    }
    assert all(os.path.isabs(p) for p, _, _ in s.train_items + s.query_items + s.gallery_items)


def test_train_from_one_folder_test_from_another(tmp_path):
    real = make_market(tmp_path / "real", TRAIN, GALLERY, QUERY)
    reduced = make_market(tmp_path / "reduced", TRAIN[:2], [], [])
    s = load_splits(reduced, test_root=real)
    assert len(s.train_items) == 2 and len(s.query_items) == 2 and len(s.gallery_items) == 4
    assert all(Path(p).parent.parent == real for p, _, _ in s.query_items + s.gallery_items)
    with pytest.raises(DatasetError, match="no query images"):
        load_splits(reduced)  # its own (empty) test split


def test_bad_folders_raise_before_training(tmp_path):
    with pytest.raises(DatasetError, match="no training images"):
        load_splits(make_market(tmp_path / "a", ["-1_c1s1_000001_01.jpg"], GALLERY, QUERY))
    # every query's identity is only in the gallery under the query's own camera: nothing to evaluate
    with pytest.raises(DatasetError, match="no query image has a gallery image"):
        load_splits(make_market(tmp_path / "b", TRAIN, ["0003_c3s1_000010_01.jpg"], ["0003_c3s1_000020_01.jpg"]))
    with pytest.raises(DatasetError, match="not a Market-1501 name"):
        load_splits(make_market(tmp_path / "c", TRAIN + ["oops.jpg"], GALLERY, QUERY))


def test_same_content_as_torchreids_market1501(tiny_market, tmp_path, torchreid):
    """Our reader agrees with torchreid's own Market1501 class on a Market-layout folder (after relabelling)."""
    (tmp_path / "market1501").mkdir()
    os.symlink(tiny_market, tmp_path / "market1501" / "Market-1501-v15.09.15")
    theirs = torchreid.reid.data.datasets.image.Market1501(root=str(tmp_path), verbose=False)
    ours = load_splits(tiny_market)

    def canon(items):  # torchreid: (path, pid, camid, dsetid); compare by real path
        return sorted((os.path.realpath(i[0]), i[1], i[2]) for i in items)

    assert canon(ours.gallery_items) == canon(theirs.gallery)
    assert canon(ours.query_items) == canon(theirs.query)

    def partition(items):  # torchreid relabels in set order: compare which images share a label
        groups: dict = {}
        for path, label, cam, *_ in items:
            groups.setdefault(label, set()).add((os.path.realpath(path), cam))
        return sorted(sorted(g) for g in groups.values())

    assert partition(ours.train_items) == partition(theirs.train)
    assert sorted({label for _, label, _ in ours.train_items}) == list(range(ours.num_train_pids))


def test_two_registrations_in_one_process(tmp_path, torchreid):
    a = make_market(tmp_path / "a", TRAIN, GALLERY, QUERY)
    b = make_market(tmp_path / "b", TRAIN[:3], GALLERY, QUERY)
    name_a, splits_a = register_market_dir(a)
    name_b, splits_b = register_market_dir(b)
    assert name_a != name_b and {name_a, name_b} <= set(registered_names())
    assert register_market_dir(a)[0] == name_a  # same content again: same name, no duplicate-name error
    for name, splits in ((name_a, splits_a), (name_b, splits_b)):
        dm = torchreid.reid.data.ImageDataManager(
            root="", sources=name, height=32, width=16, use_gpu=False, batch_size_train=2, workers=0, transforms=None
        )
        assert dm.num_train_pids == splits.num_train_pids
        train_set = dm.train_loader.dataset
        assert sorted(x[:3] for x in train_set.train) == sorted(splits.train_items)
        query = dm.test_loader[name]["query"].dataset
        gallery = dm.test_loader[name]["gallery"].dataset
        assert len(query) == len(splits.query_items) and len(gallery) == len(splits.gallery_items)
        item = query[0]
        assert tuple(item["img"].shape) == (3, 32, 16) and item["pid"] == splits.query_items[0][1]
    assert dm.num_train_pids == 2  # folder b: ids 15 and 2
    # content change -> a new name (the old registration stays valid for runs already set up)
    _write(a / "bounding_box_train", ["0009_c1s1_000100_01.jpg"])
    name_a2, splits_a2 = register_market_dir(a)
    assert name_a2 != name_a and splits_a2.num_train_pids == 4
