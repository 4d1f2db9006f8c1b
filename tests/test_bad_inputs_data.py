"""The data layer on the defects real collections have: a table of damaged copies of a small Market root.

Every case ends in a DatasetError naming the file and line (or column, joint), a counted skip, an
excluded image, or a documented acceptance, never another exception; and the input folder is
byte-for-byte untouched by reading it.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
from data_fixtures import jpeg, kp_row, make_market, touch, tree_digest

from augment.data.checks import check_images
from augment.data.errors import DatasetError
from augment.data.keypoints import match_images, read_dataset_annotations, read_pairs
from augment.data.market import merge_skips, read_market

TRAIN = "bounding_box_train"
ANN = "market-annotation-train.csv"
PAIRS = "market-pairs-train.csv"
FIRST = "0002_c1s1_000451_03.jpg"  # line 2 of the train annotation file


def load(root: Path, *, size_rule: str = "refuse") -> dict:
    """What a command does with a dataset before any work: index, keypoints, pairs, matching, image checks."""
    ds = read_market(root)
    ann = read_dataset_annotations(root)
    read_pairs(root / PAIRS)
    _, matched = match_images(ann, list(ds.records()))
    report = check_images([r.path for r in ds.records()], divisor=4, size_rule=size_rule)
    return {"ds": ds, "report": report, "skips": merge_skips(ds.skips(), ann.skips(), matched.as_dict())}


def edit_row(root: Path, name: str, column: int, joint: int, value: str) -> None:
    """Replace one coordinate of one annotation row by raw text (kept as written, e.g. NaN or true)."""
    path = root / ANN
    lines = path.read_text().splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if line.startswith(name + ":"))
    name_, ys, xs = lines[i].rstrip("\n").split(":")
    cols = [json.loads(ys), json.loads(xs)]
    text = [", ".join(str(v) for v in c) for c in cols]
    parts = [p.strip() for p in text[column].split(",")]
    parts[joint] = value
    text[column] = ", ".join(parts)
    lines[i] = f"{name_}:[{text[0]}]:[{text[1]}]\n"
    path.write_text("".join(lines))


def write_bytes_line(root: Path, name: str, raw: bytes) -> None:
    path = root / name
    path.write_bytes(path.read_bytes() + raw)


def rename_train_image(root: Path, old: str, new: str) -> None:
    (root / TRAIN / old).rename(root / TRAIN / new)
    (root / ANN).write_text((root / ANN).read_text().replace(old, new))


def empty_train(root: Path) -> None:
    for p in (root / TRAIN).iterdir():
        p.unlink()


def only_junk_train(root: Path) -> None:
    for p in (root / TRAIN).iterdir():
        if not p.name.startswith(("-1", "0000")):
            p.unlink()


def add_row(root: Path, line: str) -> None:
    with open(root / ANN, "a") as f:
        f.write(line)


# (id, damage, expectation): ("error", regex) | ("skip", reason, count, example) | ("excluded", file) | ("ok", check)
CASES = [
    ("bom-annotations", lambda r: (r / ANN).write_bytes(b"\xef\xbb\xbf" + (r / ANN).read_bytes()), ("ok", None)),
    ("bom-pairs", lambda r: (r / PAIRS).write_bytes(b"\xef\xbb\xbf" + (r / PAIRS).read_bytes()), ("ok", None)),
    ("nan", lambda r: edit_row(r, FIRST, 0, 0, "NaN"), ("error", rf"{ANN}:2: keypoints_y joint 0 \(nose\) is NaN")),
    (
        "infinity",
        lambda r: edit_row(r, FIRST, 1, 2, "Infinity"),
        ("error", rf"{ANN}:2: keypoints_x joint 2 \(Rsho\) is Inf"),
    ),
    ("true", lambda r: edit_row(r, FIRST, 0, 4, "true"), ("error", rf"{ANN}:2: keypoints_y joint 4 \(Rwri\) is true")),
    (
        "fraction",
        lambda r: edit_row(r, FIRST, 0, 5, "3.5"),
        ("error", rf"{ANN}:2: keypoints_y joint 5 \(Lsho\) is 3\.5"),
    ),
    ("integral-float", lambda r: edit_row(r, FIRST, 0, 5, "6.0"), ("ok", None)),
    (
        "17-joints",
        lambda r: add_row(r, kp_row("0002_c9s9_000001_01.jpg", [1] * 17, [1] * 18)),
        ("error", rf"{ANN}:8: keypoints_y must list 18 integers, got 17"),
    ),
    (
        "latin-1-annotations",
        lambda r: write_bytes_line(r, ANN, b"caf\xe9:[]:[]\n"),
        ("error", rf"{ANN}:8: byte 0xe9 at column 4 is not UTF-8"),
    ),
    (
        "latin-1-pairs",
        lambda r: write_bytes_line(r, PAIRS, b"\xe9,b.jpg\n"),
        ("error", rf"{PAIRS}:4: byte 0xe9 at column 1 is not UTF-8"),
    ),
    (
        "duplicate-row",
        lambda r: add_row(r, (r / ANN).read_text().splitlines(keepends=True)[1]),
        ("error", rf"{ANN}:8: duplicate row for {FIRST} \(first at line 2\)"),
    ),
    ("bad-header", lambda r: (r / ANN).write_text("name,y,x\n"), ("error", rf"{ANN}:1: header must be")),
    ("empty-train", empty_train, ("error", rf"{TRAIN}: no training images \(the folder is empty\)")),
    ("only-junk-train", only_junk_train, ("error", rf"{TRAIN}: no training images \(all 2 files were skipped")),
    (
        "unparsable-name",
        lambda r: touch(r / TRAIN / "IMG_0001.jpg", jpeg()),
        ("error", r"IMG_0001\.jpg: file name 'IMG_0001\.jpg' is not a Market-1501 name"),
    ),
    (
        "upper-case-JPG",
        lambda r: rename_train_image(r, FIRST, FIRST.replace(".jpg", ".JPG")),
        ("ok", lambda out: FIRST.replace(".jpg", ".JPG") in {x.name for x in out["ds"].train}),
    ),
    ("missing-query", lambda r: shutil.rmtree(r / "query"), ("ok", lambda out: out["ds"].missing_splits == ("query",))),
    ("non-image-file", lambda r: touch(r / TRAIN / "Thumbs.db"), ("skip", "non-image files in train", 1, "Thumbs.db")),
    ("junk-and-distractor", lambda r: None, ("skip", "junk (-1) images in train", 1, "-1_c1s1_000401_03.jpg")),
    (
        "row-without-image",
        lambda r: add_row(r, kp_row("0099_c1s1_000001_01.jpg", [1] * 18, [1] * 18)),
        ("skip", "annotation rows without an image", 3, "0099_c1s1_000001_01.jpg"),
    ),
    (
        "joint-outside",
        lambda r: edit_row(r, FIRST, 0, 3, "130"),
        ("skip", "joints outside the 128x64 image (set missing)", 1, f"{ANN}:2 {FIRST} Relb=(130,"),
    ),
    (
        "one-coordinate",
        lambda r: edit_row(r, FIRST, 1, 7, "-1"),
        ("skip", "joints with one coordinate missing (set missing)", 1, f"{ANN}:2 {FIRST} Lwri"),
    ),
    ("zero-bytes", lambda r: (r / TRAIN / FIRST).write_bytes(b""), ("excluded", FIRST)),
    ("truncated-jpeg", lambda r: (r / TRAIN / FIRST).write_bytes(jpeg()[:-60]), ("excluded", FIRST)),
    ("other-size", lambda r: (r / TRAIN / FIRST).write_bytes(jpeg(64, 32)), ("excluded", FIRST)),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case):
    _, damage, expect = case
    root = make_market(tmp_path / "data with spaces" / "Market-1501")
    damage(root)
    before = tree_digest(root)
    kind = expect[0]
    if kind == "error":
        with pytest.raises(DatasetError, match=expect[1]):
            load(root)
    else:
        out = load(root)
        if kind == "ok":
            assert expect[1] is None or expect[1](out)
        elif kind == "skip":
            reason, count, example = expect[1:]
            entry = out["skips"][reason]
            assert entry["count"] == count and any(example in e for e in entry["examples"])
        else:  # excluded: named, and an error in strict mode
            report = out["report"]
            assert [p.name for p in report.excluded] == [expect[1]]
            with pytest.raises(DatasetError, match=re.escape(expect[1])):
                check_images([p.path for p in report.images], strict=True)
    assert tree_digest(root) == before


def test_other_size_under_the_resize_rule(tmp_path):
    root = make_market(tmp_path / "m")
    (root / TRAIN / FIRST).write_bytes(jpeg(64, 32))
    report = load(root, size_rule="resize")["report"]
    assert report.excluded == [] and [p.name for p in report.resized] == [FIRST]
