"""Any generator, through files: ``augment.run --export-plan`` / ``--import-generated`` (augment.exchange).

The external tool is played by the ``copy`` method's Transferer run on the exported rows (it reads only
plan.csv). Its images imported equal an in-process ``--method copy`` run: same file names, labels,
cameras and manifest rows (method and checkpoint hash aside), and every training file's bytes equal when
the tool returns PNG (the importer's JPEG encoding of the same pixels is the executor's). A returned
JPEG is decoded and encoded once more: its imported bytes equal ``encode_image(read_rgb(returned))``.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import generators
from augment.data.imageio import encode_image, read_rgb, sha256_file
from augment.data.keypoints import read_annotations
from augment.data.market import DatasetError, parse_market_name, read_market
from augment.exchange import CSV_COLUMNS, ExchangeError, export_plan, import_generated
from augment.plan import PlanSpec, read_plan
from augment.run import RunOptions, main
from augment.runtime import UsageError
from generators.checkpoint import save
from generators.inference import Transferer

ROOT = Path(__file__).resolve().parent.parent
PLAN = ["--portion", "0.3", "--seed", "1", "--method", "copy"]
TIMING = ["seconds", "batch_id", "worker", "generated_at", "finished_at"]


@pytest.fixture(scope="module")
def copy_checkpoint(tmp_path_factory) -> Path:
    return save(tmp_path_factory.mktemp("ckpt") / "copy.pt", generators.build("copy", "synth"), iteration=0)


def args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--batch-size", "4", *PLAN, *extra]


def external_tool(export: Path, ckpt: Path, into: Path, fmt: str = "png") -> list[str]:
    """A generator outside the project: reads plan.csv only, writes one image per row into ``into``
    (``png``: ``<output stem>.png``; ``jpg``: the output name, JPEG). Returns the output names."""
    with open(export / "plan.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    src = np.stack([read_rgb(r["source_path"]) for r in rows])

    def kps(r: dict, which: str) -> np.ndarray:
        return np.stack([json.loads(r[f"{which}_keypoints_y"]), json.loads(r[f"{which}_keypoints_x"])], 1)

    out = Transferer(ckpt, device="cpu")(
        src, np.stack([kps(r, "source") for r in rows]), np.stack([kps(r, "target") for r in rows])
    )
    into.mkdir(parents=True, exist_ok=True)
    for r, img in zip(rows, out):
        name = r["output_name"] if fmt == "jpg" else Path(r["output_name"]).stem + ".png"
        (into / name).write_bytes(encode_image(img, Path(name).suffix))
    return [r["output_name"] for r in rows]


def train_files(out: Path) -> dict[str, str]:
    d = out / "bounding_box_train"
    return {p.name: sha256_file(p) for p in sorted(d.iterdir()) if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def in_process(tiny_market, copy_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inproc") / "copy"
    main([*args(tiny_market, out), "--checkpoint", str(copy_checkpoint), "--executor", "local", "--threads", "1"])
    return out


@pytest.fixture(scope="module")
def exported(tiny_market, copy_checkpoint, tmp_path_factory) -> tuple[Path, list[str]]:
    """The export, and the external tool's PNG images written beside plan.csv and plan.json."""
    folder = tmp_path_factory.mktemp("exchange") / "ex"
    summary = main([*args(tiny_market, folder / "unused"), "--export-plan", str(folder)])
    assert sorted(p.name for p in folder.iterdir()) == ["plan.csv", "plan.json"] and summary.rows > 5
    return folder, external_tool(folder, copy_checkpoint, folder)


@pytest.fixture(scope="module")
def imported(tiny_market, exported, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imp") / "copy"
    main([*args(tiny_market, out), "--import-generated", str(exported[0])])
    return out


def test_export_rows_are_the_plans_generated_rows(tiny_market, exported, in_process):
    folder, names = exported
    plan = read_plan(in_process / "plan.parquet")
    gen = plan.generated()
    with open(folder / "plan.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    doc = json.loads((folder / "plan.json").read_text())
    assert list(rows[0]) == CSV_COLUMNS and names == gen["output_name"].tolist() == [
        r["output_name"] for r in doc["rows"]
    ]
    assert doc["plan_hash"] == plan.plan_hash() and doc["image_size"] == {"height": 128, "width": 64}
    assert len(doc["keypoints"]["joints"]) == 18 and doc["readme"] and doc["importer_checks"]
    assert doc["dataset"]["root"] == str(tiny_market.resolve()) and "--import-generated" in doc["import_command"]
    for r, j, p in zip(rows, doc["rows"], gen.itertuples()):
        assert {k: json.loads(v) if k.endswith(("_y", "_x")) else v for k, v in r.items()} == {
            k: v if isinstance(v, list) else str(v) for k, v in j.items()
        }
        src = np.array([j["source_keypoints_y"], j["source_keypoints_x"]]).T.reshape(-1)
        tgt = np.array([j["target_keypoints_y"], j["target_keypoints_x"]]).T.reshape(-1)
        assert (src == p.source_kps).all() and (tgt == p.target_kps).all()
        assert (j["label"], j["camera"], j["seed"], j["source_name"]) == (p.label, p.camera, p.seed, p.source_name)
        assert Path(j["source_path"]).is_absolute() and Path(j["source_path"]).name == p.source_name
        assert Path(j["target_pose_path"]).name == p.target_pose_name


def test_round_trip_equals_the_in_process_copy_run(imported, in_process, exported):
    """Same names, labels, cameras, manifest rows (method aside), and every training file's bytes."""
    assert train_files(imported) == train_files(in_process)
    a, b = pd.read_parquet(imported / "manifest.parquet"), pd.read_parquet(in_process / "manifest.parquet")
    gen = a["kind"] == "generated"
    assert (a.loc[gen, "method"] == "external:copy").all() and (a.loc[~gen, "method"] == "").all()
    identity = json.loads((imported / "run.json").read_text())
    assert (
        identity["method"] == "external:copy" and (a.loc[gen, "checkpoint_hash"] == identity["checkpoint_hash"]).all()
    )
    drop = [*TIMING, "method", "checkpoint_hash"]
    pd.testing.assert_frame_equal(a.drop(columns=drop), b.drop(columns=drop))
    for name in ("market-annotation-train.csv", "preview.png"):
        assert sha256_file(imported / name) == sha256_file(in_process / name), name
    ds = read_market(imported)
    assert sorted(r.name for r in ds.train) == sorted(a["output_name"])
    for r in a[gen].itertuples():
        n = parse_market_name(r.output_name)
        assert (n.pid, n.camera, n.is_generated) == (r.label, r.camera, True)
    s = json.loads((imported / "summary.json").read_text())
    assert (
        s["executor"] == "import" and s["checkpoint"] == str(exported[0]) and s["rows"]["generated_done"] == gen.sum()
    )


def test_rerun_is_idempotent_and_other_images_are_refused(tiny_market, imported, exported, tmp_path):
    before = train_files(imported)
    summary = main([*args(tiny_market, imported), "--import-generated", str(exported[0])])
    assert summary.generated_this_run == 0 and train_files(imported) == before
    other = tmp_path / "other"
    shutil.copytree(exported[0], other)
    first = other / (Path(exported[1][0]).stem + ".png")
    first.write_bytes(encode_image(255 - read_rgb(first), ".png"))
    with pytest.raises(DatasetError, match="another checkpoint_hash"):  # the images' content hash differs
        import_generated(
            PlanSpec("portion", portion=0.3, seed=1, method="copy"), RunOptions(tiny_market, out=imported), other
        )


def test_a_returned_jpeg_is_reencoded_as_the_executor_encodes(
    tiny_market, exported, copy_checkpoint, in_process, tmp_path
):
    folder = tmp_path / "jpg"
    names = external_tool(exported[0], copy_checkpoint, folder, fmt="jpg")
    assert all(sha256_file(folder / n) == train_files(in_process)[n] for n in names)  # the tool's JPEG = the run's
    out = tmp_path / "out"
    main([*args(tiny_market, out), "--import-generated", str(folder), "--method-name", "copy-jpg"])
    for n in names:
        assert (out / "bounding_box_train" / n).read_bytes() == encode_image(read_rgb(folder / n), ".jpg")
    m = pd.read_parquet(out / "manifest.parquet")
    assert set(m.loc[m.kind == "generated", "method"]) == {"external:copy-jpg"}


def damaged(exported, tmp_path) -> tuple[Path, dict[str, str]]:
    """A copy of the returned images with one row missing, one of another size, one truncated, one zero
    bytes, one returned twice (.jpg and .png), and two files no row expects."""
    folder, names = exported
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    png = [bad / (Path(n).stem + ".png") for n in names]
    png[0].unlink()
    png[1].write_bytes(encode_image(read_rgb(png[1])[:64, :32], ".png"))
    png[2].write_bytes(png[2].read_bytes()[:-40])
    png[3].write_bytes(b"")
    (bad / names[4]).write_bytes(encode_image(read_rgb(png[4]), ".jpg"))
    (bad / "notes.txt").write_text("x")
    (bad / "0001_c1s1_000000_00_copy-9.jpg").write_bytes(png[5].read_bytes())
    expect = {names[1]: "size 64x32, not the dataset's 128x64", names[2]: "truncated PNG", names[3]: "zero bytes"}
    expect[names[4]] = "two files for one row"
    return bad, {"missing": names[0], **expect}


def test_missing_wrong_size_truncated_and_extra_files_are_named(tiny_market, exported, tmp_path, capsys):
    bad, expect = damaged(exported, tmp_path)
    spec = PlanSpec("portion", portion=0.3, seed=1, method="copy")
    with pytest.raises(ExchangeError) as e:
        import_generated(spec, RunOptions(tiny_market, out=tmp_path / "o"), bad)
    err = e.value
    assert err.missing == [expect.pop("missing")] and err.extra == ["0001_c1s1_000000_00_copy-9.jpg", "notes.txt"]
    assert set(err.bad) == set(expect) and all(expect[n] in why for n, why in err.bad.items())
    assert "1 missing, 4 unusable" in str(err) and "--import-partial" in str(err)
    assert not (tmp_path / "o").exists()  # refused before any work
    with pytest.raises(SystemExit) as e:
        main([*args(tiny_market, tmp_path / "o"), "--import-generated", str(bad)])
    assert e.value.code == 2 and "error: " in (msg := capsys.readouterr().err) and "not returned: expected" in msg


def test_partial_import_records_the_rest_failed(tiny_market, exported, in_process, tmp_path):
    bad, expect = damaged(exported, tmp_path)
    out = tmp_path / "partial"
    summary = main([*args(tiny_market, out), "--import-generated", str(bad), "--import-partial"])
    m = pd.read_parquet(out / "manifest.parquet").set_index("output_name")
    failed = m[m.status == "failed"]
    assert set(failed.index) == {expect["missing"], *[n for n in expect if n != "missing"]}
    assert "not returned" in failed.loc[expect["missing"], "reason"]
    assert summary.rows == {"generated_done": len(exported[1]) - 5, "generated_failed": 5, "real_done": 11}
    assert summary.skipped[f"files in {bad} not in the plan"]["count"] == 2
    done = m[(m.status == "done")].index
    assert all(train_files(out)[n] == train_files(in_process)[n] for n in done)
    assert not any((out / "bounding_box_train" / n).exists() for n in failed.index)
    assert set(read_annotations(out / "market-annotation-train.csv").names) == set(done)


def test_an_interrupted_import_resumes_to_the_same_bytes(tiny_market, exported, imported, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, str(ROOT / "tests" / "faults.py"), "--exit-after-images", "6", "--"]
    proc = subprocess.run(
        [*cmd, *args(tiny_market, out), "--import-generated", str(exported[0])],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert not (out / "manifest.parquet").exists()
    summary = main([*args(tiny_market, out), "--import-generated", str(exported[0])])
    assert summary.already_done == 4 and summary.generated_this_run == len(exported[1]) - 4  # the first batch kept
    assert train_files(out) == train_files(imported)
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "manifest.parquet").drop(columns=TIMING),
        pd.read_parquet(imported / "manifest.parquet").drop(columns=TIMING),
    )


def test_an_export_of_another_plan_or_dataset_is_refused(tiny_market, exported, tmp_path):
    with pytest.raises(ExchangeError, match="exported for the plan portion0.3-copy-s1 .* --portion 0.3 --method copy"):
        import_generated(
            PlanSpec("portion", portion=0.5, seed=1, method="copy"),
            RunOptions(tiny_market, out=tmp_path / "o"),
            exported[0],
        )
    data = tmp_path / "data"
    shutil.copytree(tiny_market, data)
    gallery = sorted((data / "bounding_box_test").glob("0*.jpg"))[0]
    gallery.write_bytes(encode_image(read_rgb(gallery), ".jpg", quality=80))  # a test image: same plan, other bytes
    with pytest.raises(ExchangeError, match="changed since the export"):
        import_generated(
            PlanSpec("portion", portion=0.3, seed=1, method="copy"), RunOptions(data, out=tmp_path / "o"), exported[0]
        )


@pytest.mark.parametrize(
    "extra,msg",
    [
        (["--method-name", "x"], "error: --method-name: goes with --import-generated"),
        (["--import-partial"], "error: --import-partial: goes with --import-generated"),
        (["--export-plan", "E", "--method-name", "x"], "error: --method-name: goes with --import-generated"),
        (["--export-plan", "E", "--checkpoint", "c.pt"], "error: --checkpoint: not used with --export-plan"),
        (["--import-generated", "E", "--plan-only"], "error: --plan-only: not used with"),
        (["--export-plan", "E", "--import-generated", "E"], "not allowed with"),
        (["--export-plan", "E", "--method", "my_gen"], "error: --method: 'my_gen' must start with a letter"),
        (["--import-generated", "E", "--method-name", "ext:x"], "error: --method-name: 'ext:x' must start"),
        (["--export-plan", "E", "--no-generate"], "error: --no-generate: the reduced set alone has no generated"),
    ],
)
def test_bad_flags(tiny_market, tmp_path, extra, msg, capsys):
    (tmp_path / "E").mkdir()
    extra = [str(tmp_path / "E") if x == "E" else x for x in extra]
    with pytest.raises(SystemExit) as e:
        main(["--data", str(tiny_market), "--portion", "0.3", "--out", str(tmp_path / "o"), *extra])
    assert e.value.code == 2 and msg in capsys.readouterr().err


def test_export_never_writes_into_the_dataset_and_any_method_name_goes(tiny_market, tmp_path):
    opts = RunOptions(tiny_market)
    with pytest.raises(UsageError, match="--export-plan: .* lies inside the input"):
        export_plan(PlanSpec("portion", portion=0.3), opts, tiny_market / "ex")
    summary = export_plan(PlanSpec("ratio", per_image=1, method="diffusion-v2"), opts, tmp_path / "e")
    doc = json.loads((tmp_path / "e" / "plan.json").read_text())
    assert summary.rows == len(doc["rows"]) > 0 and all("_diffusion-v2-0." in r["output_name"] for r in doc["rows"])
    with pytest.raises(UsageError, match="--export-plan: .* holds the export of another plan"):
        export_plan(PlanSpec("ratio", per_image=2, method="diffusion-v2"), opts, tmp_path / "e")
