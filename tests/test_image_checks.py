"""Image checks before work: unreadable and truncated files, sizes, the size rule, divisibility."""

import json

import numpy as np
import pytest
from data_fixtures import jpeg, png, touch, tree_digest

from augment.data.checks import check_images, fit_to_size, inspect_image, scale_keypoints
from augment.data.errors import DatasetError
from augment.data.imageio import read_rgb, truncation


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs with space"
    for i in range(5):
        touch(d / f"ok{i}.jpg", jpeg(32, 16, seed=i))
    touch(d / "ok.png", png(32, 16))
    touch(d / "empty.jpg", b"")
    touch(d / "cut.jpg", jpeg(32, 16)[:-40])
    touch(d / "cut.png", png(32, 16)[:-12])
    touch(d / "text.jpg", b"not an image at all")
    touch(d / "big.jpg", jpeg(64, 32))
    touch(d / "odd.jpg", jpeg(30, 18))
    return d


def test_report_per_file(folder):
    before = tree_digest(folder)
    paths = sorted(folder.iterdir()) + [folder / "gone.jpg", folder / "ok0.jpg"]  # ok0 twice: checked once
    report = check_images(paths, divisor=4, workers=3)
    assert report.by_path()[folder / "big.jpg"].size == (64, 32)
    assert report.size == (32, 16) and report.size_divisible  # the most common size
    errors = {s.path.name: s.error for s in report.unreadable}
    assert errors == {
        "empty.jpg": "cannot decode image: zero bytes",
        "cut.jpg": "cannot decode image: truncated JPEG (no end-of-image marker)",
        "cut.png": "cannot decode image: truncated PNG (no IEND chunk)",
        "text.jpg": "cannot decode image",
        "gone.jpg": "cannot read: No such file or directory",
    }
    assert {s.path.name: s.size for s in report.other_size} == {"big.jpg": (64, 32), "odd.jpg": (30, 18)}
    assert report.counts() == {"images": 13, "unreadable": 5, "other_size": 2, "excluded": 7, "resized": 0}
    assert sorted(p.name for p in report.excluded) == sorted([*errors, "big.jpg", "odd.jpg"])
    assert json.loads(json.dumps(report.as_dict()))["other_size_files"][0]["size"] == [64, 32]
    assert len(report.problems) == 7 and any(
        "odd.jpg: image is 30x18, the dataset's images are 32x16" in p for p in report.problems
    )
    assert any("gone.jpg" in line for line in report.lines())
    assert tree_digest(folder) == before


def test_strict_mode_raises_naming_files(folder):
    with pytest.raises(DatasetError, match=r"6 image problems:(.|\n)*cut\.jpg: cannot decode image: truncated JPEG"):
        check_images(sorted(folder.iterdir()), strict=True)
    good = sorted(folder.glob("ok*"))
    assert check_images(good, strict=True, divisor=8).problems == []


def test_resize_rule_and_divisibility(folder):
    report = check_images(
        [folder / "ok0.jpg", folder / "big.jpg", folder / "odd.jpg"], size=(32, 16), size_rule="resize"
    )
    assert [p.name for p in report.resized] == ["big.jpg", "odd.jpg"] and report.excluded == []
    assert report.problems == []
    odd = check_images([folder / "odd.jpg"], divisor=4)
    assert odd.size == (30, 18) and not odd.size_divisible
    assert odd.problems == ["the dataset's images are 30x18, not divisible by 4 as the generator needs"]
    with pytest.raises(DatasetError, match="not divisible by 4"):
        check_images([folder / "odd.jpg"], divisor=4, strict=True)
    with pytest.raises(ValueError, match="size_rule"):
        check_images([], size_rule="stretch")


def test_read_rgb_refuses_truncated_and_missing_files(folder):
    with pytest.raises(DatasetError, match=r"cut\.jpg: cannot decode image: truncated JPEG"):
        read_rgb(folder / "cut.jpg")
    with pytest.raises(DatasetError, match=r"gone\.jpg: cannot read image"):
        read_rgb(folder / "gone.jpg")
    assert read_rgb(folder / "ok0.jpg").shape == (32, 16, 3)
    # trailing bytes after the end marker (some writers pad) are not truncation
    assert truncation(jpeg() + b"\0" * 100) == "" and inspect_image(folder / "ok.png").size == (32, 16)


def test_scale_keypoints_maps_pixel_centres():
    kps = np.array([[0, 0], [127, 63], [-1, -1], [64, 32]], dtype=np.int32)
    up = scale_keypoints(kps, (128, 64), (256, 128))
    assert up.tolist() == [[1, 1], [255, 127], [-1, -1], [129, 65]] and up.dtype == np.int32
    down = scale_keypoints(up, (256, 128), (128, 64))
    assert down.tolist() == [[0, 0], [127, 63], [-1, -1], [64, 32]]  # round trip by a factor 2
    # a lone missing coordinate marks the joint missing
    assert scale_keypoints(np.array([[5, -1]]), (10, 10), (20, 20)).tolist() == [[-1, -1]]


def test_fit_to_size():
    img = np.zeros((256, 128, 3), np.uint8)
    img[100:110, 40:50] = 255
    kps = np.full((18, 2), -1, np.int64)
    kps[0] = (104, 44)
    out, k = fit_to_size(img, kps, (128, 64))
    assert out.shape == (128, 64, 3) and k[0].tolist() == [52, 22] and (k[1:] == -1).all()
    assert out[52, 22].min() > 200  # the joint still sits on the bright patch
    same, k2 = fit_to_size(out, k, (128, 64))
    assert same is out and k2 is k
