"""Community annotation and pairs CSVs, the pair rule, image/annotation matching."""

import json
from itertools import permutations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from augment.data.keypoints import (
    JOINTS,
    MISSING,
    Annotations,
    build_pairs,
    match_images,
    read_annotations,
    read_pairs,
    write_annotations,
    write_pairs,
)
from augment.data.market import DatasetError, ImageRecord

HEADER = "name:keypoints_y:keypoints_x\n"


def kp_row(name, ys, xs):
    return f"{name}:{json.dumps(ys)}:{json.dumps(xs)}\n"


def full_pose(seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, 128, 18), rng.integers(0, 64, 18)], -1).astype(np.int32)


def test_joint_order():
    assert JOINTS[:6] == ("nose", "neck", "Rsho", "Relb", "Rwri", "Lsho")
    assert JOINTS[8] == "Rhip" and JOINTS[11] == "Lhip" and JOINTS[14:] == ("Leye", "Reye", "Lear", "Rear")


def test_round_trip(tmp_path):
    kps = np.stack([full_pose(i) for i in range(3)])
    kps[1, 4] = MISSING
    ann = Annotations(["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s3_077419_03.jpg"], kps)
    p = write_annotations(tmp_path / "a.csv", ann)
    text = p.read_text().splitlines()
    assert text[0] == "name:keypoints_y:keypoints_x"
    # y first
    assert text[1].split(":")[1] == json.dumps(kps[0, :, 0].tolist())
    back = read_annotations(p)
    assert back.names == ann.names
    np.testing.assert_array_equal(back.coords, kps)
    assert back.skipped.total() == 0


def test_community_text_parses(tmp_path):
    ys = [13, 24, 24, 42, 57, 24, 42, 58, 62, 87, 111, 62, 87, 112, 11, 11, 12, 13]
    xs = [31, 30, 20, 18, 17, 40, 43, 44, 24, 23, 22, 37, 38, 39, 34, 28, 37, 25]
    p = tmp_path / "a.csv"
    p.write_text(HEADER + kp_row("0002_c1s1_000451_03.jpg", ys, xs))
    ann = read_annotations(p)
    np.testing.assert_array_equal(ann["0002_c1s1_000451_03.jpg"][:, 0], ys)
    np.testing.assert_array_equal(ann["0002_c1s1_000451_03.jpg"][:, 1], xs)


def test_bad_header_named(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("name,keypoints_y,keypoints_x\n")
    with pytest.raises(DatasetError, match=r"bad\.csv:1: header"):
        read_annotations(p)


@pytest.mark.parametrize(
    "row,msg",
    [
        ("0002_c1s1_000451_03.jpg:[1,2]\n", "expected name:keypoints_y"),
        ("0002_c1s1_000451_03.jpg:[1,2]:[3,4]\n", "18 integers"),
        ("0002_c1s1_000451_03.jpg:[1,2:[3,4]\n", "not a JSON list"),
        ("0002_c1s1_000451_03.jpg:not json:[3,4]\n", "not a JSON list"),
    ],
)
def test_bad_rows_named_with_line(tmp_path, row, msg):
    p = tmp_path / "a.csv"
    p.write_text(HEADER + kp_row("0001_c1s1_000001_01.jpg", [1] * 18, [1] * 18) + row)
    with pytest.raises(DatasetError, match=rf"a\.csv:3: .*{msg}"):
        read_annotations(p)


def test_duplicate_row(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text(HEADER + kp_row("0001_c1s1_000001_01.jpg", [1] * 18, [1] * 18) * 2)
    with pytest.raises(DatasetError, match="duplicate.*line 2"):
        read_annotations(p)


def test_keypoint_outside_image_counted_then_strict(tmp_path):
    ys = [5] * 18
    xs = [5] * 18
    ys[3] = 130  # below the 128-high image
    xs[7] = -5
    p = tmp_path / "a.csv"
    p.write_text(HEADER + kp_row("0001_c1s1_000001_01.jpg", ys, xs))
    ann = read_annotations(p)
    kp = ann["0001_c1s1_000001_01.jpg"]
    assert (kp[3] == MISSING).all() and (kp[7] == MISSING).all() and (kp[0] == 5).all()
    ((reason, n),) = ann.skipped.counts.items()
    assert n == 2 and "outside" in reason
    assert any("a.csv:2" in e and "Relb" in e for e in ann.skipped.examples[reason])
    with pytest.raises(DatasetError, match=r"a\.csv:2 .*Relb"):
        read_annotations(p, strict=True)


def test_pairs_rule_and_sampling(tmp_path):
    names = [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0002_c3s1_000651_01.jpg",
        "0003_c1s1_000001_01.jpg",
        "0003_c2s1_000001_01.jpg",
        "0004_c1s1_000001_01.jpg",
        "0000_c1s1_000151_01.jpg",
        "-1_c1s1_000401_03.jpg",
    ]
    kps = np.stack([full_pose(i) for i in range(len(names))])
    kps[4, 8] = MISSING  # 0003 second image lacks Rhip -> 0003 has no pairs
    kps[6] = full_pose(50)
    ann = Annotations(names, kps)
    pairs = build_pairs(ann)
    expected = list(permutations(names[:3], 2))
    assert list(zip(pairs["from"], pairs["to"])) == expected
    # sampling reproduces pandas' sample with random_state, as the community script does
    s = build_pairs(ann, sample=4, random_state=0)
    ref = (
        pd.DataFrame({"from": [a for a, _ in expected], "to": [b for _, b in expected]})
        .sample(n=4, random_state=0)
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(s, ref)
    assert len(build_pairs(ann, sample=100)) == 6
    write_pairs(tmp_path / "p.csv", pairs)
    pd.testing.assert_frame_equal(read_pairs(tmp_path / "p.csv"), pairs)


def test_pairs_with_index_column_and_bad_header(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text(",from,to\n0,a.jpg,b.jpg\n")
    assert read_pairs(p).values.tolist() == [["a.jpg", "b.jpg"]]
    p.write_text("src,dst\na,b\n")
    with pytest.raises(DatasetError, match=r"p\.csv:1"):
        read_pairs(p)


def test_match_images_counts_both_directions(tmp_path):
    recs = [
        ImageRecord(n, Path(tmp_path / n), "train", int(n[:4]), 1, 1)
        for n in ["0002_c1s1_000451_03.jpg", "0003_c1s1_000451_03.jpg"]
    ]
    ann = Annotations(
        ["0002_c1s1_000451_03.jpg", "0009_c1s1_000451_03.jpg"], np.stack([full_pose(), full_pose(1)]), source="ann.csv"
    )
    kept, report = match_images(ann, recs)
    assert [r.name for r in kept] == ["0002_c1s1_000451_03.jpg"]
    assert report.counts["images without an annotation row"] == 1
    assert report.counts["annotation rows without an image"] == 1
    assert "0009_c1s1_000451_03.jpg" in report.examples["annotation rows without an image"][0]
    with pytest.raises(DatasetError, match="0009"):
        match_images(ann, recs, strict=True)


GOOD = kp_row("0001_c1s1_000001_01.jpg", [1] * 18, [1] * 18)


def test_bom_accepted(tmp_path):
    """Excel saves CSVs with a UTF-8 BOM: both readers take it."""
    p = tmp_path / "a.csv"
    p.write_bytes(b"\xef\xbb\xbf" + (HEADER + GOOD).encode())
    assert read_annotations(p).names == ["0001_c1s1_000001_01.jpg"]
    q = tmp_path / "p.csv"
    q.write_bytes(b"\xef\xbb\xbffrom,to\r\na.jpg,b.jpg\r\n")
    assert read_pairs(q).values.tolist() == [["a.jpg", "b.jpg"]]


@pytest.mark.parametrize(
    "value,msg",
    [
        ("NaN", "joint 3 \\(Relb\\) is NaN, not a finite"),
        ("Infinity", "joint 3 \\(Relb\\) is Infinity, not a finite"),
        ("-Infinity", "joint 3 \\(Relb\\) is -Infinity, not a finite"),
        ("1e400", "joint 3 \\(Relb\\) is inf, not a finite"),
        ("true", "joint 3 \\(Relb\\) is true, not an integer"),
        ("false", "joint 3 \\(Relb\\) is false, not an integer"),
        ("3.5", "joint 3 \\(Relb\\) is 3.5, not an integer"),
        ('"4"', 'joint 3 \\(Relb\\) is "4", not an integer'),
        ("null", "joint 3 \\(Relb\\) is null, not an integer"),
        ("[4]", "joint 3 \\(Relb\\) is \\[4\\], not an integer"),
        ("99999999999", "joint 3 \\(Relb\\) is 99999999999, out of range"),
    ],
)
def test_bad_coordinates_named_with_line_column_and_joint(tmp_path, value, msg):
    ys = ["5"] * 18
    ys[3] = value
    p = tmp_path / "a.csv"
    p.write_text(HEADER + GOOD + f"0001_c1s1_000002_01.jpg:[{', '.join(ys)}]:{json.dumps([5] * 18)}\n")
    with pytest.raises(DatasetError, match=rf"a\.csv:3: keypoints_y {msg}"):
        read_annotations(p)


def test_integral_floats_read_as_integers(tmp_path):
    """Decision: 12.0 is the pixel 12 (the community files hold ints; accepting 12.0 is harmless)."""
    p = tmp_path / "a.csv"
    p.write_text(HEADER + "0001_c1s1_000001_01.jpg:[12.0" + ", 5" * 17 + "]:[1e1" + ", 5" * 17 + "]\n")
    kp = read_annotations(p)["0001_c1s1_000001_01.jpg"]
    assert kp[0].tolist() == [12, 10] and kp.dtype == np.int32


def test_wrong_joint_count_named(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text(HEADER + GOOD + kp_row("0001_c1s1_000002_01.jpg", [1] * 18, [1] * 17))
    with pytest.raises(DatasetError, match=r"a\.csv:3: keypoints_x must list 18 integers, got 17 values"):
        read_annotations(p)


def test_undecodable_bytes_named_with_line(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes((HEADER + GOOD).encode() + b"0001_c1s1_00\xe9002_01.jpg:[]:[]\n")
    with pytest.raises(DatasetError, match=r"a\.csv:3: byte 0xe9 at column 13 is not UTF-8"):
        read_annotations(p)
    q = tmp_path / "p.csv"
    q.write_bytes(b"from,to\na.jpg,b.jpg\n\xff\xfe,c.jpg\n")
    with pytest.raises(DatasetError, match=r"p\.csv:3: byte 0xff at column 1 is not UTF-8"):
        read_pairs(q)


def test_empty_name_and_line_endings(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text(HEADER + f":{json.dumps([1] * 18)}:{json.dumps([1] * 18)}\n")
    with pytest.raises(DatasetError, match=r"a\.csv:2: empty image name"):
        read_annotations(p)
    # old Mac line breaks (\r) and Windows ones (\r\n) read like \n, as open(newline="") iterates
    for sep in ("\r", "\r\n"):
        p.write_bytes((HEADER + GOOD + "\n").replace("\n", sep).encode())
        assert read_annotations(p).names == ["0001_c1s1_000001_01.jpg"]


def test_frame_check_off(tmp_path):
    """image_size=None: native-size images, any non-negative coordinate is inside."""
    p = tmp_path / "a.csv"
    p.write_text(HEADER + kp_row("0001_c2_f0000001.jpg", [300] + [-1] * 17, [150] + [-1] * 17))
    assert read_annotations(p, image_size=None)["0001_c2_f0000001.jpg"][0].tolist() == [300, 150]
    assert read_annotations(p)["0001_c2_f0000001.jpg"][0].tolist() == [MISSING, MISSING]


def test_annotation_skips_plain_dict(tmp_path):
    ys = [5] * 18
    ys[3] = 130
    p = tmp_path / "a.csv"
    p.write_text(HEADER + kp_row("0001_c1s1_000001_01.jpg", ys, [5] * 18))
    s = read_annotations(p).skips()
    assert s == {
        "joints outside the 128x64 image (set missing)": {
            "count": 1,
            "examples": [f"{p}:2 0001_c1s1_000001_01.jpg Relb=(130,5)"],
        }
    }


def test_msmt17_person_zero_is_pairable():
    """Only Market-1501 names junk (-1) and distractors (0000); MSMT17's 0000 is a person."""
    names = ["0000_000_01_0303morning_0015_0.jpg", "0000_001_02_0303morning_0020_0.jpg"]
    pairs = build_pairs(Annotations(names, np.stack([full_pose(0), full_pose(1)])))
    assert len(pairs) == 2
    assert not build_pairs(
        Annotations(["0000_c1s1_000001_01.jpg", "0000_c2s1_000002_01.jpg"], np.stack([full_pose(0)] * 2))
    ).shape[0]
