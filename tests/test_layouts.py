"""DukeMTMC-reID, MSMT17 and CUHK03-NP read into the Market index; detection; generated names; round trips."""

import os
import shutil
from pathlib import Path

import pytest
from data_fixtures import CUHK03, DUKE, MSMT17_LISTS, make_folders, make_msmt17, touch, tree_digest
from hypothesis import given
from hypothesis import strategies as st

from augment.data.keypoints import is_pairable_name
from augment.data.market import (
    LAYOUTS,
    DatasetError,
    link_split,
    parse_image_name,
    parse_market_name,
    read_market,
    write_market,
)

REAL_NAMES = {
    "market": "0002_c1s1_000451_03.jpg",
    "duke": "0001_c2_f0046182.jpg",
    "cuhk03": "0001_c1_1.png",
    "msmt17": "0000_000_01_0303morning_0015_0.jpg",
}


def items(records):
    return sorted((r.name, r.pid, r.camera) for r in records)


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme,name", REAL_NAMES.items())
def test_each_scheme_parses_its_names_only(scheme, name):
    parsed = parse_image_name(name)
    assert parsed.scheme == scheme and not parsed.is_generated and parsed.filename() == name
    for other in REAL_NAMES:
        if other != scheme:
            with pytest.raises(DatasetError, match="is not a"):
                parse_image_name(name, other)


def test_fields_of_each_scheme():
    assert (lambda n: (n.pid, n.camera))(parse_image_name("0001_c2_f0046182.jpg")) == (1, 2)
    assert (lambda n: (n.pid, n.camera))(parse_image_name("0003_c2_10.png")) == (3, 2)
    assert (lambda n: (n.pid, n.camera))(parse_image_name("1040_123_15_0114afternoon_1234_3.jpg")) == (1040, 15)
    # only Market-1501 names junk and distractors; MSMT17's 0000 is a person
    assert parse_image_name("0000_c1s1_000151_01.jpg").is_distractor
    assert not parse_image_name(REAL_NAMES["msmt17"]).is_distractor
    assert is_pairable_name(REAL_NAMES["msmt17"]) and not is_pairable_name("0000_c1s1_000151_01.jpg")


@given(scheme=st.sampled_from(sorted(REAL_NAMES)), tag=st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,11}", fullmatch=True))
def test_generated_names_keep_pid_camera_and_never_collide(scheme, tag):
    real = parse_market_name(REAL_NAMES[scheme])
    gen = real.with_tag(tag)
    back = parse_market_name(gen.filename())
    assert back == gen and back.scheme == scheme and back.is_generated
    assert (back.pid, back.camera) == (real.pid, real.camera)
    assert gen.filename() != real.filename()


def test_tag_must_start_with_a_letter_outside_market():
    with pytest.raises(ValueError, match="start with a letter"):
        parse_market_name(REAL_NAMES["duke"]).with_tag("03")
    # which is why this is no CUHK03 name with tag "03" (nor a Market name)
    with pytest.raises(DatasetError, match="0002_c1_000451_03"):
        parse_market_name("0002_c1_000451_03.jpg")


# --- DukeMTMC-reID -------------------------------------------------------------------------------


def test_duke_detected_no_id_rules(tmp_path):
    root = make_folders(tmp_path / "DukeMTMC-reID", DUKE)
    before = tree_digest(root)
    ds = read_market(root)
    assert ds.layout == "duke" and read_market(root, layout="duke").fingerprint() == ds.fingerprint()
    assert items(ds.train) == [
        ("0001_c2_f0046182.jpg", 1, 2),
        ("0001_c5_f0051341.jpg", 1, 5),
        ("0003_c1_f0044158.jpg", 3, 1),
    ]
    assert [r.pid for r in ds.gallery] == [2, 2, 5000] and ds.skipped.total() == 0
    assert ds.split_folder("gallery") == root / "bounding_box_test"
    assert tree_digest(root) == before
    with pytest.raises(DatasetError, match="0001_c2_f0046182.jpg.* is not a Market-1501 name"):
        read_market(root, layout="market")


def test_duke_folder_with_a_foreign_name(tmp_path):
    root = make_folders(tmp_path / "duke", DUKE)
    touch(root / "bounding_box_train" / "0002_c1s1_000451_03.jpg")
    with pytest.raises(DatasetError, match=r"bounding_box_train/0002_c1s1_000451_03\.jpg: .*not a DukeMTMC-reID name"):
        read_market(root)


def test_duke_same_items_as_torchreid(tmp_path):
    torchreid = pytest.importorskip("reid_eval.compat").import_torchreid()
    root = make_folders(tmp_path / "dukemtmc-reid" / "DukeMTMC-reID", DUKE)
    theirs = torchreid.reid.data.datasets.image.DukeMTMCreID(root=str(tmp_path), verbose=False)
    ours = read_market(root)
    for split, mine in (("query", ours.query), ("gallery", ours.gallery)):
        assert sorted((Path(p).name, pid, cam) for p, pid, cam, *_ in getattr(theirs, split)) == sorted(
            (r.name, r.pid, r.camera - 1) for r in mine
        )


# --- CUHK03-NP -----------------------------------------------------------------------------------


def test_cuhk03_variants_and_ambiguity(tmp_path):
    root = tmp_path / "cuhk03-np"
    make_folders(root / "detected", CUHK03)
    make_folders(root / "labeled", {k: v[:-1] + ["0009_c1_4.png"] for k, v in CUHK03.items()})
    with pytest.raises(DatasetError, match="both detected/ and labeled/.*cuhk03-detected or cuhk03-labeled"):
        read_market(root)
    det = read_market(root, layout="cuhk03-detected")
    lab = read_market(root, layout="cuhk03-labeled")
    assert det.layout == "cuhk03-detected" and lab.layout == "cuhk03-labeled" and det.root == root
    assert items(det.train) == [("0001_c1_1.png", 1, 1), ("0001_c2_6.png", 1, 2), ("0003_c1_2.png", 3, 1)]
    assert "0009_c1_4.png" in {r.name for r in lab.train}
    assert read_market(root / "detected").layout == "cuhk03"  # the folder itself: the names say CUHK03
    shutil.rmtree(root / "labeled")
    assert read_market(root).layout == "cuhk03-detected"  # one variant present: unambiguous


def test_cuhk03_damaged_copies_named(tmp_path):
    root = tmp_path / "cuhk03-np"
    make_folders(root / "labeled", CUHK03)
    with pytest.raises(DatasetError, match=r"cuhk03-np/detected: missing CUHK03-NP folder detected/"):
        read_market(root, layout="cuhk03-detected")
    shutil.rmtree(root / "labeled" / "bounding_box_train")
    shutil.rmtree(root / "labeled" / "bounding_box_test")
    with pytest.raises(DatasetError, match="labeled: damaged CUHK03-NP copy"):
        read_market(root)
    with pytest.raises(DatasetError, match="not a CUHK03-NP root"):
        read_market(tmp_path / "cuhk03-np" / "labeled" / "query", layout="cuhk03")


# --- MSMT17 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["MSMT17_V1", "MSMT17_V2"])
def test_msmt17_lists(tmp_path, version):
    base = make_msmt17(tmp_path / "msmt17" / version, version)
    before = tree_digest(tmp_path)
    for root in (base, base.parent):  # the version folder, or the folder holding it
        ds = read_market(root)
        assert ds.layout == "msmt17" and ds.split_folder("train") is None and ds.missing_splits == ()
        assert items(ds.train) == [
            ("0000_000_01_0303morning_0008_0.jpg", 0, 1),
            ("0000_001_02_0303morning_0100_1.jpg", 0, 2),
            ("0001_000_03_0303noon_0200_0.jpg", 1, 3),
        ]
        assert [r.camera for r in ds.gallery] == [10, 15] and len(ds.query) == 1
        assert ds.skips() == {
            "validation images (list_val.txt) not used for training": {
                "count": 1,
                "examples": ["0001_001_04_0303noon_0300_0.jpg"],
            }
        }
    trainval = read_market(base, layout="msmt17-trainval")
    assert len(trainval.train) == 4 and trainval.skipped.total() == 0
    assert tree_digest(tmp_path) == before


def test_msmt17_same_items_as_torchreid(tmp_path):
    torchreid = pytest.importorskip("reid_eval.compat").import_torchreid()
    base = make_msmt17(tmp_path / "msmt17" / "MSMT17_V1")
    theirs = torchreid.reid.data.datasets.image.MSMT17(root=str(tmp_path), verbose=False)
    ours = read_market(base)
    for split, mine in (("train", ours.train), ("query", ours.query), ("gallery", ours.gallery)):
        assert sorted((Path(p).name, pid, cam) for p, pid, cam, *_ in getattr(theirs, split)) == sorted(
            (r.name, r.pid, r.camera - 1) for r in mine
        )


def _edit_list(base: Path, key: str, text: str) -> None:
    (base / f"list_{key}.txt").write_text(text)


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda b: (b / "list_train.txt").unlink(), r"list_train\.txt: damaged MSMT17 copy"),
        (lambda b: shutil.rmtree(b / "test"), r"list_gallery\.txt:1: .*does not exist \(2 listed images missing"),
        (lambda b: shutil.rmtree(b / "train"), r"no training image folder"),
        (
            lambda b: _edit_list(b, "gallery", "0000/0000_001_10_0113morning_0040_2.jpg\n"),
            r"list_gallery\.txt:1: expected",
        ),
        (
            lambda b: _edit_list(b, "gallery", "0000/0000_001_10_0113morning_0040_2.jpg 3\n"),
            r"person id 3 in the list but 0000",
        ),
        (
            lambda b: _edit_list(b, "train", "0000/0000_000_01_0303morning_0008_0.jpg 0\n0000/holiday.jpg 0\n"),
            r"list_train\.txt:2: file name 'holiday\.jpg' is not a MSMT17 name",
        ),
        (lambda b: _edit_list(b, "train", "../../etc/passwd 0\n"), r"list_train\.txt:1: .* must be a path inside"),
        (lambda b: _edit_list(b, "train", "\n"), r"list_train\.txt: no training images \(the list names no image\)"),
        (lambda b: (b / "list_train.txt").write_bytes(b"\xff 0\n"), r"list_train\.txt:1: byte 0xff at column 1"),
        (
            lambda b: os.rename(b / "list_val.txt", b / "list_val.bak") or (b / "list_train.txt").unlink(),
            r"list_train\.txt: damaged",
        ),
    ],
)
def test_msmt17_damaged_copies_named(tmp_path, damage, match):
    base = make_msmt17(tmp_path / "MSMT17_V1")
    damage(base)
    with pytest.raises(DatasetError, match=match):
        read_market(base)


def test_msmt17_missing_query_list_and_duplicates(tmp_path):
    base = make_msmt17(tmp_path / "MSMT17_V1")
    (base / "list_query.txt").unlink()
    ds = read_market(base)
    assert ds.query == [] and ds.missing_splits == ("query",)
    with pytest.raises(DatasetError, match="list_val.txt: missing"):
        (base / "list_val.txt").unlink() or read_market(base, layout="msmt17-trainval")
    # the same file name in train and test folders: flattening would merge them
    lists = {**MSMT17_LISTS, "gallery": [("0000/0000_000_01_0303morning_0008_0.jpg", 0)]}
    base2 = make_msmt17(tmp_path / "b" / "MSMT17_V1", lists=lists)
    with pytest.raises(DatasetError, match="same file name as .*names must be unique"):
        read_market(base2)


def test_msmt17_train_folder_without_lists_is_named(tmp_path):
    base = make_msmt17(tmp_path / "MSMT17_V1")
    for f in base.glob("list_*.txt"):
        f.unlink()
    with pytest.raises(DatasetError, match="train/ holds folders, as MSMT17 does, but list_train.txt is missing"):
        read_market(base)


# --- every layout written in the Market layout reads back the same -------------------------------


def _roots(tmp_path):
    yield make_folders(tmp_path / "duke", DUKE), None
    yield make_folders(tmp_path / "cuhk" / "detected", CUHK03), None
    yield make_msmt17(tmp_path / "MSMT17_V2", "MSMT17_V2"), None
    yield make_msmt17(tmp_path / "tv" / "MSMT17_V1"), "msmt17-trainval"


def test_market_layout_copy_reads_back_the_same(tmp_path):
    for root, layout in _roots(tmp_path):
        ds = read_market(root, layout=layout)
        out = write_market(ds, tmp_path / "out" / root.name)
        back = read_market(out)
        assert back.layout == ds.layout.split("-")[0]  # msmt17-trainval copies read back as msmt17
        for split in ("train", "gallery", "query"):
            assert items(back.split(split)) == items(ds.split(split))
        assert back.fingerprint() == ds.fingerprint()
        # generated images beside the real ones keep id and camera
        real = back.train[0]
        gen = parse_market_name(real.name).with_tag("patn-0").filename()
        shutil.copyfile(real.path, out / "bounding_box_train" / gen)
        again = read_market(out)
        (g,) = [r for r in again.train if r.market_name.is_generated]
        assert (g.name, g.pid, g.camera) == (gen, real.pid, real.camera)


def test_layout_registry_and_unknown_layout(tmp_path):
    assert set(LAYOUTS) == {
        "market",
        "renamed",
        "duke",
        "cuhk03",
        "cuhk03-detected",
        "cuhk03-labeled",
        "msmt17",
        "msmt17-trainval",
    }
    with pytest.raises(DatasetError, match="unknown layout 'viper'"):
        read_market(tmp_path, layout="viper")
    with pytest.raises(DatasetError, match="not a dataset root.*MSMT17"):
        read_market(tmp_path)


def test_link_split_for_folder_and_list_layouts(tmp_path):
    duke = read_market(make_folders(tmp_path / "duke", DUKE))
    msmt = read_market(make_msmt17(tmp_path / "MSMT17_V1"))
    for ds in (duke, msmt):
        out = tmp_path / "out" / ds.layout
        out.mkdir(parents=True)
        for split, folder in (("gallery", "bounding_box_test"), ("query", "query")):
            for _ in range(2):  # idempotent
                link = link_split(ds, split, out / folder)
            assert link == out / folder
        assert link.is_symlink() == (ds.layout == "duke")
        back = read_market(out, splits=("gallery", "query"))
        assert back.layout == ds.layout
        assert items(back.gallery) == items(ds.gallery) and items(back.query) == items(ds.query)
    assert link_split(msmt, "query", tmp_path / "none") is not None
    empty = read_market(make_folders(tmp_path / "d2", {"bounding_box_train": DUKE["bounding_box_train"]}))
    assert link_split(empty, "query", tmp_path / "q") is None and not (tmp_path / "q").exists()
