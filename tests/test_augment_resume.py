"""augment.run resumes to the uninterrupted run's bytes, and refuses a folder made from anything else.

The generator has real contrast (service_fixtures), so byte identity is not vacuous: on this setup a
batch of 1 gives other bytes than a batch of 4 for some rows (the convolutions sum in another order),
and the rows deleted below are chosen among those, so regenerating them in any batch but their
original one would fail the test.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import pandas as pd
import pytest
from service_fixtures import contrast_checkpoint, train_hashes  # noqa: F401  (fixture)

from augment.data.imageio import read_rgb
from augment.data.keypoints import read_annotations
from augment.execute import RECORD_COLUMNS, place_real_rows
from augment.output import OutputLayout
from augment.plan import read_plan
from augment.run import main

ANN = "market-annotation-train.csv"


def argv(data: Path, ckpt: Path, out: Path, *extra: str, batch: int = 4, portion: str = "0.3") -> list[str]:
    """augment.run's arguments; ``extra`` flags replace the defaults of the same name."""
    args = [
        "--method",
        "patn",
        "--data",
        str(data),
        "--checkpoint",
        str(ckpt),
        "--out",
        str(out),
        "--executor",
        "local",
        "--batch-size",
        str(batch),
        "--threads",
        "1",
        "--portion",
        portion,
        "--seed",
        "1",
    ]
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


@pytest.fixture(scope="module")
def runs(tiny_market, contrast_checkpoint, tmp_path_factory):  # noqa: F811
    """The uninterrupted run (batch 4) and the same plan in batches of 1."""
    base = tmp_path_factory.mktemp("runs")
    main(argv(tiny_market, contrast_checkpoint, base / "b4"))
    main(argv(tiny_market, contrast_checkpoint, base / "b1", batch=1))
    return base / "b4", base / "b1"


def test_redone_rows_have_the_uninterrupted_bytes_whatever_the_batch(runs, tiny_market, contrast_checkpoint, tmp_path):  # noqa: F811
    ref, single = runs
    out = tmp_path / "out"
    shutil.copytree(ref, out, symlinks=True)
    h4, h1 = train_hashes(ref), train_hashes(single)
    gen = [n for n in read_plan(ref / "plan.parquet").generated()["output_name"]]
    sensitive = [n for n in gen if h4[n] != h1[n]]  # rows whose bytes depend on the batch
    print(f"[resume] {len(sensitive)} of {len(gen)} rows differ between batches of 1 and 4")
    victims = (sensitive + [n for n in gen if n not in sensitive])[:3]
    train = out / "bounding_box_train"
    (train / victims[0]).unlink()
    (train / victims[1]).write_bytes(b"garbage")
    (train / victims[2]).write_bytes((train / victims[2]).read_bytes()[:-10])
    untouched = {n: (train / n).stat().st_mtime_ns for n in gen if n not in victims}
    summary = main(argv(tiny_market, contrast_checkpoint, out))
    assert summary.generated_this_run == 3 and summary.already_done == len(gen) - 3
    assert train_hashes(out) == h4
    assert {n: (train / n).stat().st_mtime_ns for n in untouched} == untouched  # batch neighbours not rewritten
    m = pd.read_parquet(out / "manifest.parquet")
    assert (m.status == "done").all() and dict(zip(m.output_name, m.output_hash)) == h4


@pytest.mark.parametrize(
    "extra,field",
    [
        (["--batch-size", "2"], "batch_size"),
        (["--checkpoint", "OTHER"], "checkpoint_hash"),
        (["--size-rule", "resize"], "size_rule"),
        (["--device", "cpu", "--precision", "bf16"], "precision"),
        (["--threads", "3"], "cpu_threads"),
    ],
    ids=["batch-size", "checkpoint", "size-rule", "precision", "threads"],
)
def test_any_identity_change_is_refused(runs, tiny_market, contrast_checkpoint, tmp_path, extra, field, capsys):  # noqa: F811
    ref, _ = runs
    from generators.base import build
    from generators.checkpoint import save

    other = save(tmp_path / "other.pt", build("patn", "synth", ngf=8, n_blocks=1, ndf=8, seed=5))
    extra = [str(other) if v == "OTHER" else v for v in extra]
    before = train_hashes(ref)
    with pytest.raises(SystemExit) as e:
        main(argv(tiny_market, contrast_checkpoint, ref, *extra))
    err = capsys.readouterr().err
    assert e.value.code == 2 and re.search(rf"holds a run of another .*{field}.*--overwrite", err), err
    assert train_hashes(ref) == before


def test_edited_keypoints_refused_then_overwrite_regenerates_all(tiny_market, contrast_checkpoint, tmp_path, capsys):  # noqa: F811
    data = tmp_path / "data"
    shutil.copytree(tiny_market, data)
    out = tmp_path / "out"
    first = main(argv(data, contrast_checkpoint, out))
    lines = (data / ANN).read_text().splitlines(keepends=True)
    lines[1] = re.sub(r":\[(\d+)", lambda m: f":[{int(m[1]) + 1}", lines[1], count=1)  # one joint moves 1 pixel
    (data / ANN).write_text("".join(lines))
    with pytest.raises(SystemExit):
        main(argv(data, contrast_checkpoint, out))
    assert "another dataset_fingerprint" in capsys.readouterr().err
    summary = main([*argv(data, contrast_checkpoint, out), "--overwrite"])
    assert summary.already_done == 0 and summary.generated_this_run == first.generated_this_run
    fresh = tmp_path / "fresh"
    main(argv(data, contrast_checkpoint, fresh))
    assert train_hashes(out) == train_hashes(fresh)  # nothing of the old run is left: no mix


def test_a_folder_of_an_older_version_is_refused(runs, tiny_market, contrast_checkpoint, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "old"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"plan_hash": "x", "checkpoint_hash": "y", "method": "patn"}))
    with pytest.raises(SystemExit):
        main(argv(tiny_market, contrast_checkpoint, out))
    assert "another version of augment.run" in capsys.readouterr().err


def test_resize_rule_uses_an_image_of_another_size_with_scaled_keypoints(tiny_market, contrast_checkpoint, tmp_path):  # noqa: F811
    data = tmp_path / "data"
    shutil.copytree(tiny_market, data)
    name = "0001_c2s2_001527_01.jpg"
    original = read_annotations(data / ANN)[name]
    img = cv2.imread(str(data / "bounding_box_train" / name))
    cv2.imwrite(str(data / "bounding_box_train" / name), cv2.resize(img, (128, 256)))
    text = (data / ANN).read_text()  # its row in its own (256x128) frame: every coordinate doubled
    row = next(ln for ln in text.splitlines() if ln.startswith(name))
    ys = [int(v) * 2 if v >= 0 else -1 for v in original[:, 0]]
    xs = [int(v) * 2 if v >= 0 else -1 for v in original[:, 1]]
    (data / ANN).write_text(text.replace(row, f"{name}:{json.dumps(ys)}:{json.dumps(xs)}"))
    out = tmp_path / "out"
    summary = main(argv(data, contrast_checkpoint, out, "--size-rule", "resize", portion="1.0"))
    assert summary.image_checks["resized"] == 1 and summary.image_checks["size_rule"] == "resize"
    m = pd.read_parquet(out / "manifest.parquet")
    row = m[m.output_name == name].iloc[0]  # p = 1.0: kept, written resized, keypoints back in 128x64
    assert row.status == "done" and read_rgb(out / "bounding_box_train" / name).shape == (128, 64, 3)
    assert (row.source_kps.reshape(-1, 2) == original).all()
    assert read_annotations(out / ANN)[name].tolist() == original.tolist()


def test_a_real_row_is_done_only_with_its_file(tiny_market, tmp_path):
    from augment.data.market import read_market

    ds = read_market(tiny_market)
    layout = OutputLayout(tmp_path / "o")
    layout.train_dir.mkdir(parents=True)
    gone = tmp_path / "gone.jpg"
    rows = pd.DataFrame({"output_name": [ds.train[0].name, "x.jpg"], "source_name": [ds.train[0].name, "x.jpg"]})
    ds.train.append(type(ds.train[0])("x.jpg", gone, "train", 1, 1, 0))  # a source gone since the checks
    recs = place_real_rows(rows, ds, layout)
    assert list(recs.columns) == RECORD_COLUMNS
    assert recs.status.tolist() == ["done", "failed"] and "gone.jpg: source image not found" in recs.reason.iloc[1]
    assert not (layout.train_dir / "x.jpg").exists()


def test_a_killed_overwrite_is_cleared_again_and_plan_only_keeps_a_run_plan(
    runs,
    tiny_market,
    contrast_checkpoint,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    ref, _ = runs
    out = tmp_path / "out"
    shutil.copytree(ref, out, symlinks=True)
    from augment import output

    real_rmtree = shutil.rmtree

    def killed(path, *args, **kwargs):  # the clear dies after one folder: run.json (removed last) is still there
        real_rmtree(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(output.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        main([*argv(tiny_market, contrast_checkpoint, out, batch=2), "--overwrite"])
    monkeypatch.setattr(output.shutil, "rmtree", real_rmtree)
    assert (out / "run.json").is_file()
    with pytest.raises(SystemExit):  # still the old identity: refused without --overwrite
        main(argv(tiny_market, contrast_checkpoint, out, batch=2))
    assert "another batch_size" in capsys.readouterr().err
    summary = main([*argv(tiny_market, contrast_checkpoint, out, batch=2), "--overwrite"])
    assert summary.already_done == 0 and (pd.read_parquet(out / "manifest.parquet").status == "done").all()
    # --plan-only with another plan into this folder: refused, the folder's plan stays its run's plan
    plan_before = (out / "plan.parquet").read_bytes()
    with pytest.raises(SystemExit):
        main([*argv(tiny_market, contrast_checkpoint, out, batch=2, portion="0.5"), "--plan-only"])
    assert "another plan_hash" in capsys.readouterr().err and (out / "plan.parquet").read_bytes() == plan_before
