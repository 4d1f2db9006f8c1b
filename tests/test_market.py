"""Market-1501 names, index rules, layouts, writing and fingerprints."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from augment.data.market import (
    DatasetError,
    MarketName,
    dataset_fingerprint,
    merge_skips,
    parse_market_name,
    read_market,
    write_market,
)


def touch(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "Market"
    for n in [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c3s3_077419_03.jpg",
        "-1_c1s1_000401_03.jpg",
        "0000_c1s1_000151_01.jpg",
        "Thumbs.db",
    ]:
        touch(root / "bounding_box_train" / n)
    for n in ["0001_c1s1_001051_03.jpg", "0001_c3s1_001251_02.jpg", "0000_c2s1_000301_01.jpg", "-1_c2s1_000201_01.jpg"]:
        touch(root / "bounding_box_test" / n, b"xy")
    for n in ["0001_c1s1_001051_00.jpg", "0001_c3s1_001251_00.jpg"]:
        touch(root / "query" / n)
    return root


def test_parse_known_name():
    mn = parse_market_name("0002_c1s1_000451_03.jpg")
    assert (mn.pid, mn.camera, mn.sequence, mn.frame, mn.box, mn.tag) == (2, 1, 1, 451, 3, "")
    assert parse_market_name("-1_c1s1_000401_03.jpg").is_junk
    assert parse_market_name("0000_c6s2_000001_01.jpg").is_distractor
    gen = parse_market_name("0002_c1s1_000451_03_patn-00012.png")
    assert gen.is_generated and gen.tag == "patn-00012" and gen.ext == ".png"


@pytest.mark.parametrize(
    "bad",
    [
        "2_c1s1_000451_03.jpg",
        "0002_c1_000451_03.jpg",
        "0002_c1s1_451_03.jpg",
        "0002_c1s1_000451_03.gif",
        "abc.jpg",
        "0002_c1s1_000451_03_.jpg",
    ],
)
def test_bad_names_rejected_with_name(bad):
    with pytest.raises(DatasetError, match=bad.replace(".", r"\.")):
        parse_market_name(bad)


@given(
    pid=st.one_of(st.just(-1), st.integers(0, 9999)),
    camera=st.integers(1, 9),
    sequence=st.integers(1, 9),
    frame=st.integers(0, 999999),
    box=st.integers(0, 99),
    tag=st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9-]{1,12}", fullmatch=True)),
    ext=st.sampled_from([".jpg", ".png"]),
)
def test_name_round_trip(pid, camera, sequence, frame, box, tag, ext):
    mn = MarketName(pid, camera, sequence, frame, box, tag, ext)
    assert parse_market_name(mn.filename()) == mn


@given(tag=st.from_regex(r"[A-Za-z0-9-]{1,12}", fullmatch=True))
def test_generated_name_never_equals_real(tag):
    real = MarketName(2, 1, 1, 451, 3)
    assert real.with_tag(tag).filename() != real.filename()


def test_read_rules_and_counts(tmp_path):
    ds = read_market(make_root(tmp_path))
    assert ds.layout == "market"
    assert [r.name for r in ds.train] == [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c3s3_077419_03.jpg",
    ]
    # gallery keeps the distractor, drops junk
    assert sorted(r.pid for r in ds.gallery) == [0, 1, 1]
    assert len(ds.query) == 2
    c = ds.skipped.counts
    assert c["junk (-1) images in train"] == 1
    assert c["distractor (0000) images in train"] == 1
    assert c["non-image files in train"] == 1
    assert c["junk (-1) images in gallery"] == 1
    assert ds.summary()["train"] == {"images": 3, "identities": 2, "cameras": 3}


def test_renamed_layout(tmp_path):
    root = tmp_path / "market_data"
    touch(root / "train" / "0002_c1s1_000451_03.jpg")
    touch(root / "test" / "0001_c1s1_001051_03.jpg")
    ds = read_market(root)
    assert ds.layout == "renamed" and len(ds.train) == 1 and len(ds.gallery) == 1 and ds.query == []


def test_missing_query_folder_is_an_empty_split(tmp_path):
    """Rule: a missing gallery or query folder is an empty split, recorded (the renamed layout has none)."""
    root = make_root(tmp_path)
    for p in (root / "query").iterdir():
        p.unlink()
    (root / "query").rmdir()
    ds = read_market(root)
    assert ds.query == [] and ds.missing_splits == ("query",) and len(ds.train) == 3
    assert ds.summary()["missing_splits"] == ["query"]
    assert any("query" in line and "read as empty" in line for line in ds.summary_lines())


def test_missing_or_empty_train_folder_named(tmp_path):
    root = make_root(tmp_path)
    for p in (root / "bounding_box_train").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match=r"bounding_box_train: no training images \(the folder is empty\)"):
        read_market(root)
    touch(root / "bounding_box_train" / "-1_c1s1_000401_03.jpg")
    touch(root / "bounding_box_train" / "Thumbs.db")
    with pytest.raises(DatasetError, match=r"no training images \(all 2 files were skipped: junk .* 1; non-image"):
        read_market(root)
    assert len(read_market(root, splits=("gallery", "query")).gallery) == 3  # train not asked for: fine
    (root / "bounding_box_train").rename(root / "elsewhere")
    with pytest.raises(DatasetError, match="bounding_box_train"):
        read_market(root)


def test_not_a_root(tmp_path):
    with pytest.raises(DatasetError, match="bounding_box_train"):
        read_market(tmp_path)


def test_unparsable_file_named(tmp_path):
    root = make_root(tmp_path)
    touch(root / "bounding_box_train" / "holiday.jpg")
    with pytest.raises(DatasetError, match="holiday.jpg"):
        read_market(root)


def test_write_round_trip_and_fingerprint(tmp_path):
    root = make_root(tmp_path)
    ds = read_market(root)
    out = write_market(ds, tmp_path / "copy")
    ds2 = read_market(out)
    assert [r.name for r in ds2.records()] == [r.name for r in ds.records()]
    assert ds2.fingerprint() == ds.fingerprint() == dataset_fingerprint(root)
    # size change -> new fingerprint
    (out / "query" / "0001_c1s1_001051_00.jpg").write_bytes(b"longer")
    assert dataset_fingerprint(out) != ds.fingerprint()


def test_write_modes(tmp_path):
    ds = read_market(make_root(tmp_path))
    for mode in ("hardlink", "symlink"):
        out = write_market(ds, tmp_path / mode, mode=mode)
        assert read_market(out).fingerprint() == ds.fingerprint()
    assert (tmp_path / "symlink" / "query" / "0001_c1s1_001051_00.jpg").is_symlink()


def test_upper_case_extension_and_spaces(tmp_path):
    """Rule: .JPG (any case) is an image under the same rules, its name kept; paths with spaces work."""
    root = tmp_path / "my data" / "Market copy"
    touch(root / "bounding_box_train" / "0002_c1s1_000451_03.JPG")
    touch(root / "bounding_box_train" / "0002_c2s1_000551_01.jpg")
    touch(root / "bounding_box_test" / "0001_c1s1_001051_03.Jpeg")
    ds = read_market(root)
    assert [r.name for r in ds.train] == ["0002_c1s1_000451_03.JPG", "0002_c2s1_000551_01.jpg"]
    assert [r.name for r in ds.gallery] == ["0001_c1s1_001051_03.Jpeg"]
    # generated names get a lower-case extension (torchreid globs *.jpg) and never equal a real one
    assert (
        parse_market_name("0002_c1s1_000451_03.JPG").with_tag("patn-0").filename() == "0002_c1s1_000451_03_patn-0.jpg"
    )
    out = write_market(ds, tmp_path / "out dir")
    assert read_market(out).fingerprint() == ds.fingerprint()
    assert (out / "bounding_box_train" / "0002_c1s1_000451_03.JPG").is_file()


def test_skips_are_a_plain_dict(tmp_path):
    ds = read_market(make_root(tmp_path))
    s = ds.skips()
    assert s["junk (-1) images in train"] == {"count": 1, "examples": ["-1_c1s1_000401_03.jpg"]}
    assert s["non-image files in train"] == {"count": 1, "examples": ["Thumbs.db"]}
    assert json.loads(json.dumps(s)) == s
    merged = merge_skips(s, s)
    assert merged["junk (-1) images in train"] == {"count": 2, "examples": ["-1_c1s1_000401_03.jpg"] * 2}
