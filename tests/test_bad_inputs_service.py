"""augment.run on the defects real collections have: a table of damaged copies of the tiny dataset.

Every case runs the command (``main()`` in-process, or a subprocess where the case kills it) and
ends in an ``error: ...`` with status 2 whose message names the file, row or flag, or in a finished
run whose skips count and name what was left out; never a traceback. The input folder is hashed
before and after: no case writes into it. A finished run's outputs are checked too: every row
done, every generated image at the dataset's size, nothing made from an excluded file.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import pandas as pd
import pytest
from data_fixtures import tree_digest
from service_fixtures import contrast_checkpoint, train_hashes  # noqa: F401  (fixture)

from augment.data.imageio import read_rgb
from augment.run import main
from augment.validate import OTHER_SIZE, UNREADABLE

ROOT = Path(__file__).resolve().parent.parent
TRAIN, QUERY = "bounding_box_train", "query"
ANN = "market-annotation-train.csv"
BAD = "0001_c2s2_001527_01.jpg"  # line 2 of the annotation file; kept or a target pose depending on the plan
PROTOCOL = ["--portion", "0.3", "--seed", "1"]


@dataclass
class Ctx:
    data: Path
    out: Path
    ckpt: Path
    tmp: Path
    reference: Path  # the clean run's output (same flags, undamaged data)

    def argv(self, *extra: str, data: Path | None = None, out: Path | None = None) -> list[str]:
        return [
            "--method",
            "patn",
            "--data",
            str(data or self.data),
            "--checkpoint",
            str(self.ckpt),
            "--out",
            str(out or self.out),
            "--executor",
            "local",
            "--batch-size",
            "4",
            "--threads",  # in the run identity: the same in the subprocesses and here
            "1",
            *PROTOCOL,
            *extra,
        ]


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, stderr) of ``augment.run`` in-process; any exception but SystemExit fails the test."""
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def edit_line(path: Path, line_no: int, fn: Callable[[str], str]) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[line_no - 1] = fn(lines[line_no - 1])
    path.write_text("".join(lines))


def set_first_y(value: str) -> Callable[[Path], None]:
    """The first keypoints_y value of line 2 set to ``value`` (raw text: NaN, Infinity, true)."""
    return lambda c: edit_line(c.data / ANN, 2, lambda ln: re.sub(r":\[\s*-?\d+", f":[{value}", ln, count=1))


def resize_image(name: str, size: tuple[int, int]) -> Callable[[Path], None]:
    def damage(c: Ctx) -> None:
        p = c.data / TRAIN / name
        img = cv2.imread(str(p))
        cv2.imwrite(str(p), cv2.resize(img, (size[1], size[0])))

    return damage


def resize_all(size: tuple[int, int]) -> Callable[[Ctx], None]:
    def damage(c: Ctx) -> None:
        for p in (c.data / TRAIN).iterdir():
            resize_image(p.name, size)(c)

    return damage


def rename_upper(c: Ctx) -> None:
    upper = BAD.replace(".jpg", ".JPG")
    (c.data / TRAIN / BAD).rename(c.data / TRAIN / upper)
    (c.data / ANN).write_text((c.data / ANN).read_text().replace(BAD, upper))


def move_dataset(c: Ctx) -> list[str]:
    """First run, then the dataset moves: the rerun remakes the links (no dangling query link)."""
    assert main(c.argv()).generated_this_run > 0
    moved = c.tmp / "moved"
    c.data.rename(moved)
    c.data = moved
    return c.argv()


def kill_in_prepare(c: Ctx) -> list[str]:
    """A run killed inside prepare_output (right after linking the gallery), then the same command."""
    cmd = [sys.executable, str(ROOT / "tests" / "faults.py"), "--exit-after-call", "augment.output:link_split:1"]
    proc = subprocess.run([*cmd, "--", *c.argv()], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert (c.out / "run.json").is_file() and not (c.out / "manifest.parquet").exists()
    return c.argv()


def edit_keypoints_between_runs(c: Ctx) -> list[str]:
    main(c.argv())
    edit_line(c.data / ANN, 3, lambda ln: re.sub(r":\[(\d+)", lambda m: f":[{int(m[1]) + 1}", ln, count=1))
    return c.argv()


def out_is_data(c: Ctx) -> list[str]:
    return c.argv("--overwrite", out=c.data)


def out_inside_data(c: Ctx) -> list[str]:
    return c.argv("--overwrite", out=c.data / "augmented")


def out_contains_data(c: Ctx) -> list[str]:
    return c.argv("--overwrite", out=c.data.parent)


def out_is_keypoint_folder(c: Ctx) -> list[str]:
    kp = c.tmp / "kp"
    kp.mkdir()
    shutil.move(c.data / ANN, kp / ANN)
    return c.argv("--keypoints", str(kp), "--overwrite", out=kp)


def spaces(c: Ctx) -> list[str]:
    spaced = c.tmp / "my data" / "market copy"
    spaced.parent.mkdir()
    c.data.rename(spaced)
    c.data = spaced
    return c.argv(out=c.tmp / "out dir" / "a b")


def read_only_out(c: Ctx) -> list[str]:
    c.out.mkdir()
    c.out.chmod(0o555)
    return c.argv()


def done_and_clean(excluded: str | None = None, reason: str | None = None, same_bytes: bool = False):
    """The finished run's checks: every row done, generated images at 128x64, the excluded file counted and
    named and in no row; with ``same_bytes`` the images equal the clean reference run's."""

    def check(c: Ctx, out: Path) -> None:
        m = pd.read_parquet(out / "manifest.parquet")
        assert (m.status == "done").all() and len(m) > 0
        gen = m[m.kind == "generated"]
        assert all(read_rgb(out / TRAIN / n).shape == (128, 64, 3) for n in gen.output_name)
        summary = json.loads((out / "summary.json").read_text())
        if excluded is not None:
            assert not m[["output_name", "source_name", "target_pose_name"]].isin([excluded]).any().any()
            assert summary["skipped"][reason]["count"] == 1
            assert excluded in " ".join(summary["skipped"][reason]["examples"])
        if same_bytes:
            assert train_hashes(out) == train_hashes(c.reference)

    return check


def _non_utf8(c: Ctx) -> None:
    path = c.data / ANN
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"_", b"_\xff", 1)
    path.write_bytes(b"\n".join(lines))


# (id, damage: Ctx -> argv or None, expected): ("error", regex on stderr) | ("ok", check(ctx, out))
CASES = [
    ("other-size-image", resize_image(BAD, (256, 128)), ("ok", done_and_clean(BAD, OTHER_SIZE))),
    ("size-not-divisible-one-image", resize_image(BAD, (130, 66)), ("ok", done_and_clean(BAD, OTHER_SIZE))),
    ("size-not-divisible-dataset", resize_all((130, 66)), ("error", r"--checkpoint: .*130x66, not divisible by 4")),
    (
        "zero-byte-target-pose",
        lambda c: (c.data / TRAIN / BAD).write_bytes(b""),
        ("ok", done_and_clean(BAD, UNREADABLE)),
    ),
    (
        "truncated-jpeg",
        lambda c: (c.data / TRAIN / BAD).write_bytes((c.data / TRAIN / BAD).read_bytes()[:700]),
        ("ok", done_and_clean(BAD, UNREADABLE)),
    ),
    ("nan-keypoint", set_first_y("NaN"), ("error", rf"{ANN}:2: .*keypoints_y.*NaN")),
    ("infinity-keypoint", set_first_y("Infinity"), ("error", rf"{ANN}:2: .*keypoints_y")),
    ("boolean-keypoint", set_first_y("true"), ("error", rf"{ANN}:2: .*keypoints_y")),
    (
        "bom",
        lambda c: (c.data / ANN).write_bytes(b"\xef\xbb\xbf" + (c.data / ANN).read_bytes()),
        ("ok", done_and_clean(same_bytes=True)),
    ),
    (
        "non-utf8-byte",
        _non_utf8,
        ("error", rf"{ANN}:3"),
    ),
    ("empty-train", lambda c: [p.unlink() for p in (c.data / TRAIN).iterdir()], ("error", rf"{TRAIN}.*empty")),
    ("out-is-data-with-overwrite", out_is_data, ("error", r"--out: .* is the input")),
    ("out-inside-data", out_inside_data, ("error", r"--out: .* lies inside the input")),
    ("out-contains-data", out_contains_data, ("error", r"--out: .* contains the input")),
    ("out-is-keypoint-folder", out_is_keypoint_folder, ("error", r"--out: .* is the input")),
    ("moved-dataset", move_dataset, ("ok", done_and_clean(same_bytes=True))),
    ("killed-inside-prepare-output", kill_in_prepare, ("ok", done_and_clean(same_bytes=True))),
    (
        "keypoints-edited-between-runs",
        edit_keypoints_between_runs,
        ("error", r"another dataset_fingerprint.*--overwrite"),
    ),
    ("upper-case-jpg", rename_upper, ("ok", done_and_clean())),
    ("missing-query", lambda c: shutil.rmtree(c.data / QUERY), ("ok", done_and_clean(same_bytes=True))),
    ("path-with-spaces", spaces, ("ok", done_and_clean(same_bytes=True))),
    ("read-only-output-folder", read_only_out, ("error", r"--out: .* is read-only")),
]


@pytest.fixture(scope="module")
def reference(tiny_market, contrast_checkpoint, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("ref") / "out"
    main(Ctx(tiny_market, out, contrast_checkpoint, out.parent, out).argv())
    return out


@pytest.mark.parametrize("case_id,damage,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case_id, damage, expected, tiny_market, contrast_checkpoint, reference, tmp_path, capsys):  # noqa: F811
    ctx = Ctx(tmp_path / "data", tmp_path / "out", contrast_checkpoint, tmp_path, reference)
    shutil.copytree(tiny_market, ctx.data)
    argv = damage(ctx)
    argv = argv if isinstance(argv, list) and argv and argv[0] == "--method" else ctx.argv()
    before = tree_digest(ctx.data)
    code, err = run_main(argv, capsys)
    try:
        if expected[0] == "error":
            assert code == 2, err
            assert re.search(expected[1], err), err
            assert re.search(r"^error: ", err, re.M), err
        else:
            assert code == 0, err
            out = Path(argv[argv.index("--out") + 1])
            expected[1](ctx, out)
        assert tree_digest(ctx.data) == before, "the run changed its input dataset"
    finally:
        if ctx.out.exists():
            ctx.out.chmod(0o755)
