"""The augmentation service end to end on the tiny embedded dataset (local executor)."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from service_fixtures import make_contrast_checkpoint

from augment.data.imageio import read_rgb, sha256_file
from augment.data.keypoints import read_annotations
from augment.data.market import DatasetError, parse_market_name, read_market
from augment.plan import PlanSpec, read_plan
from augment.run import RunOptions, main, run_augmentation
from augment.runtime import UsageError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_market, tmp_path_factory) -> Path:
    """A generator whose outputs have real contrast (a flat grey one would make byte identity vacuous)."""
    return make_contrast_checkpoint(tmp_path_factory.mktemp("ckpt") / "contrast.pt", tiny_market)


def augment_args(data, ckpt, out, *extra):
    return [
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
        "4",
        "--threads",  # in the run identity: the same in the subprocesses and here
        "1",
        *extra,
    ]


def file_hashes(train_dir: Path) -> dict:
    return {p.name: sha256_file(p) for p in sorted(train_dir.iterdir()) if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def reference_run(tiny_market, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("aug") / "p03"
    summary = main(augment_args(tiny_market, tiny_checkpoint, out, "--portion", "0.3", "--seed", "1"))
    return out, summary


def test_output_layout_manifest_and_reader(reference_run, tiny_market):
    out, summary = reference_run
    plan = read_plan(out / "plan.parquet")
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert len(manifest) == len(plan.table) and manifest.output_name.is_unique
    assert (manifest.status == "done").all()
    gen = manifest[manifest.kind == "generated"]
    assert len(gen) == plan.summary["generated_rows"] > 0
    assert gen.checkpoint_hash.str.len().eq(16).all()
    # every row's file exists with the recorded hash; nothing else is in the train folder
    train = out / "bounding_box_train"
    assert file_hashes(train) == dict(zip(manifest.output_name, manifest.output_hash))
    # generated images: decodable 128x64 RGB, names keep pid and camera
    for row in gen.head(5).itertuples():
        assert read_rgb(train / row.output_name).shape == (128, 64, 3)
        mn = parse_market_name(row.output_name)
        assert mn.pid == row.pid and mn.camera == row.camera and mn.is_generated
    # the Market reader loads the result; query/gallery are the real ones, linked
    ds, real = read_market(out), read_market(tiny_market)
    assert len(ds.train) == len(manifest)
    assert [r.name for r in ds.query] == [r.name for r in real.query]
    assert (out / "query").is_symlink() and (out / "bounding_box_test").is_symlink()
    # annotations of the output train set: generated images carry their target pose
    ann = read_annotations(out / "market-annotation-train.csv")
    row = gen.iloc[0]
    np.testing.assert_array_equal(ann[row.output_name].reshape(-1), row.target_kps)
    s = json.loads((out / "summary.json").read_text())
    assert s["generated_this_run"] == len(gen) and (out / "preview.png").stat().st_size > 0
    assert summary.rows["generated_done"] == len(gen) and s == json.loads(summary.to_json())


def test_rerun_is_idempotent(reference_run, tiny_market, tiny_checkpoint):
    out, _ = reference_run
    before = file_hashes(out / "bounding_box_train")
    manifest_before = pd.read_parquet(out / "manifest.parquet")
    summary = main(augment_args(tiny_market, tiny_checkpoint, out, "--portion", "0.3", "--seed", "1"))
    assert summary.generated_this_run == 0 and summary.already_done == len(
        manifest_before[manifest_before.kind == "generated"]
    )
    assert file_hashes(out / "bounding_box_train") == before
    after = pd.read_parquet(out / "manifest.parquet")
    assert len(after) == len(manifest_before)
    pd.testing.assert_frame_equal(after.drop(columns=["seconds"]), manifest_before.drop(columns=["seconds"]))


def test_deleted_or_corrupted_image_is_redone(reference_run, tiny_market, tiny_checkpoint, tmp_path):
    out, _ = reference_run
    manifest = pd.read_parquet(out / "manifest.parquet")
    gen = manifest[manifest.kind == "generated"].output_name.tolist()
    before = file_hashes(out / "bounding_box_train")
    (out / "bounding_box_train" / gen[0]).unlink()
    (out / "bounding_box_train" / gen[1]).write_bytes(b"garbage")
    summary = main(augment_args(tiny_market, tiny_checkpoint, out, "--portion", "0.3", "--seed", "1"))
    assert summary.generated_this_run == 2
    assert file_hashes(out / "bounding_box_train") == before


@pytest.mark.parametrize("crash_after", [3, 9])  # mid-batch (batch 4) and later
def test_crash_and_resume_gives_the_same_images(reference_run, tiny_market, tiny_checkpoint, tmp_path, crash_after):
    ref_out, _ = reference_run
    out = tmp_path / "crashed"
    cmd = [
        sys.executable,
        str(ROOT / "tests" / "faults.py"),  # augment.run with an abrupt exit after that many images written
        "--exit-after-images",
        str(crash_after),
        "--",
        *augment_args(tiny_market, tiny_checkpoint, out, "--portion", "0.3", "--seed", "1"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert not (out / "manifest.parquet").exists()
    partial = [p for p in (out / "bounding_box_train").iterdir() if "_patn-" in p.name]
    assert 0 < len(partial) < len(read_plan(ref_out / "plan.parquet").generated())
    summary = main(augment_args(tiny_market, tiny_checkpoint, out, "--portion", "0.3", "--seed", "1"))
    assert summary.already_done == (crash_after // 4) * 4  # finished batches were kept
    assert file_hashes(out / "bounding_box_train") == file_hashes(ref_out / "bounding_box_train")
    m = pd.read_parquet(out / "manifest.parquet")
    assert m.output_name.is_unique and (m.status == "done").all()


def test_no_generate_and_kept_poses(tiny_market, tmp_path):
    spec = PlanSpec("portion", portion=0.5, generate=False)
    summary = run_augmentation(spec, RunOptions(data=tiny_market, out=tmp_path / "none"))
    m = pd.read_parquet(tmp_path / "none" / "manifest.parquet")
    assert (m.kind == "real").all() and summary.checkpoint is None and summary.executor == "local"
    assert len(read_market(tmp_path / "none").train) == len(m) < len(read_market(tiny_market).train)


def test_plan_only_needs_no_checkpoint(tiny_market, tmp_path):
    main(["--data", str(tiny_market), "--out", str(tmp_path / "p"), "--ratio", "2", "--plan-only"])
    plan = read_plan(tmp_path / "p" / "plan.parquet")
    assert plan.summary["generated_rows"] > 0 and not (tmp_path / "p" / "bounding_box_train").exists()


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--portion", "0"], "error: --portion: must be in (0, 1]"),
        (["--portion", "0.5", "--ratio", "2"], "not allowed with"),
        (["--ratio", "1"], "error: --ratio: must be >= 2, got 1"),
        (["--ratio", "2", "--target-poses", "kept"], "error: --target-poses: goes with --portion"),
        (["--portion", "0.5", "--batch-size", "0"], "error: --batch-size: must be >= 1"),
        (["--portion", "0.5", "--seed", "-1"], "error: --seed: must be >= 0"),
    ],
)
def test_bad_flags(tiny_market, tmp_path, args, msg, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--data", str(tiny_market), "--out", str(tmp_path / "x"), *args])
    assert e.value.code == 2 and msg in capsys.readouterr().err


def test_bad_paths_named(tiny_market, tiny_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(
            [
                "--data",
                str(tiny_market),
                "--checkpoint",
                str(tmp_path / "nope.pt"),
                "--portion",
                "0.5",
                "--out",
                str(tmp_path / "o"),
            ]
        )
    assert e.value.code == 2 and "error: --checkpoint: " in capsys.readouterr().err
    spec = PlanSpec("portion", portion=0.5)
    with pytest.raises(UsageError, match="--checkpoint: .*nope.pt"):
        run_augmentation(spec, RunOptions(data=tiny_market, checkpoint=tmp_path / "nope.pt", out=tmp_path / "o"))
    with pytest.raises(UsageError, match="--checkpoint: required with --data"):
        run_augmentation(spec, RunOptions(data=tiny_market, out=tmp_path / "o"))
    with pytest.raises(DatasetError, match="does not exist"):
        run_augmentation(PlanSpec("portion", portion=0.5, generate=False), RunOptions(data=tmp_path / "missing"))


def test_other_plan_in_same_folder_refused(reference_run, tiny_market, tiny_checkpoint):
    out, _ = reference_run
    with pytest.raises(DatasetError, match="another plan_hash"):
        run_augmentation(
            PlanSpec("portion", portion=0.5, seed=1),
            RunOptions(data=tiny_market, checkpoint=tiny_checkpoint, out=out, batch_size=4),
        )


def test_unknown_method_and_other_method_checkpoint(tiny_market, tmp_path):
    from generators.base import build
    from generators.checkpoint import save

    opts = RunOptions(data=tiny_market, out=tmp_path / "o")
    with pytest.raises(UsageError, match="--method: unknown method 'nope'"):
        run_augmentation(PlanSpec("portion", portion=0.5, method="nope"), opts)
    other = save(tmp_path / "resnet.pt", build("resnet", "synth", ngf=8, n_blocks=1, ndf=8))
    with pytest.raises(UsageError, match="holds a 'resnet' generator but --method is 'patn'"):
        run_augmentation(PlanSpec("portion", portion=0.5), RunOptions(data=tiny_market, checkpoint=other, out=opts.out))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="junk.pt: truncated or corrupt"):
        run_augmentation(
            PlanSpec("portion", portion=0.5),
            RunOptions(data=tiny_market, checkpoint=tmp_path / "junk.pt", out=opts.out),
        )
    assert not (tmp_path / "o").exists()  # refused before any work


def test_dataset_without_keypoints_refused(tiny_market, tmp_path, capsys):
    import shutil

    data = tmp_path / "nokp"
    shutil.copytree(tiny_market, data, ignore=shutil.ignore_patterns("*.csv"))
    with pytest.raises(DatasetError, match="market-annotation-train.csv not found"):
        run_augmentation(PlanSpec("portion", portion=0.5, generate=False), RunOptions(data=data, out=tmp_path / "o"))
    with pytest.raises(SystemExit) as e:  # the command line says the same, with status 2
        main(["--data", str(data), "--portion", "0.5", "--no-generate", "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "market-annotation-train.csv not found" in capsys.readouterr().err


def test_ensure_embedded_checkpoint_trains_through_the_library(tmp_path, monkeypatch):
    """A missing embedded-dataset checkpoint is trained by generators.train.train(RunConfig), not its CLI."""
    from augment import run as run_module
    from generators import train as gen_train
    from generators.checkpoint import CheckpointError

    monkeypatch.chdir(tmp_path)
    seen = []

    def fake_train(config):  # a finished run: its checkpoint at the end of its schedule
        from generators.base import build
        from generators.checkpoint import save

        seen.append(config)
        schedule = {"train.iterations": 7, "train.decay_start": 7}
        save(config.out / "checkpoints" / "latest.pt", build("patn", "synth", ngf=4, **schedule), iteration=7)
        return SimpleNamespace(interrupted=False)

    monkeypatch.setattr(gen_train, "train", fake_train)
    ckpt = run_module.ensure_embedded_checkpoint("patn", Path("data/synth"), 7)
    assert ckpt == Path("runs/generators/patn-synth/checkpoints/latest.pt") and ckpt.is_file()
    (config,) = seen
    assert (config.method, config.preset, config.data, config.iterations) == ("patn", "synth", Path("data/synth"), 7)
    assert run_module.ensure_embedded_checkpoint("patn", Path("data/synth"), 7) == ckpt and len(seen) == 1
    monkeypatch.setattr(gen_train, "train", lambda config: SimpleNamespace(interrupted=False))
    with pytest.raises(CheckpointError, match="training did not produce it"):
        run_module.ensure_embedded_checkpoint("pg2", Path("data/synth"), None)


def test_steady_state_window_runs_from_first_generation_to_last_write():
    """A write stage that lags and writes every batch in one burst at the end (as Ray's can) must
    not shrink the window to the burst: it runs from the first batch leaving the generator."""
    import pandas as pd

    from augment.run import steady_state

    rows = []
    for b in range(4):  # the generator finishes a batch of 8 every 2 s; all writes land at t=10
        rows += [
            {
                "output_name": f"{b}_{i}.jpg",
                "batch_id": f"b{b}",
                "generated_at": 2.0 * (b + 1),
                "finished_at": 10.0 + 0.01 * b,
            }
            for i in range(8)
        ]
    seconds, images = steady_state(pd.DataFrame(rows))
    assert images == 24  # the first batch's images were made before the window opened
    assert seconds == pytest.approx(10.03 - 2.0)
    assert steady_state(pd.DataFrame(columns=["output_name", "batch_id", "generated_at", "finished_at"])) == (0.0, 0)


def test_copy_control_needs_no_checkpoint_and_copies_its_sources(tiny_market, tmp_path, monkeypatch):
    """``--method copy`` on any dataset: no checkpoint to give or train; every generated image is its
    source image (re-encoded as JPEG), with the generated row's name, label and camera."""
    monkeypatch.chdir(tmp_path)  # its config-only checkpoint goes to runs/generators/copy/
    out = tmp_path / "copy"
    args = ["--method", "copy", "--data", str(tiny_market), "--out", str(out), "--executor", "local"]
    summary = main([*args, "--portion", "0.3", "--batch-size", "3"])
    assert Path(summary.checkpoint) == Path("runs/generators/copy/checkpoints/latest.pt")
    manifest = pd.read_parquet(out / "manifest.parquet")
    gen = manifest[(manifest["kind"] == "generated") & (manifest["status"] == "done")]
    assert len(gen) > 5
    paths = {r.name: r.path for r in read_market(tiny_market).train}
    for row in gen.itertuples():
        made = read_rgb(out / "bounding_box_train" / row.output_name).astype(int)
        source = read_rgb(paths[row.source_name]).astype(int)
        assert np.abs(made - source).mean() < 2.0  # JPEG re-encoding at quality 95, nothing else
        assert parse_market_name(row.output_name).pid == parse_market_name(row.source_name).pid


def test_interrupted_embedded_training_generates_nothing_and_resumes(tiny_market, tmp_path, monkeypatch):
    """The embedded checkpoint's training stopped half-way (Ctrl-C): the run exits 130 without generating
    with the half-trained generator; the same command again resumes the training to its end, then generates."""
    import augment.run
    import generators.train
    from generators.checkpoint import read_checkpoint
    from generators.train_loop import IterationInfo

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(augment.run, "embedded_dataset", lambda *a, **k: tiny_market)
    real_train = generators.train.train

    def stop_at_2(info: IterationInfo):
        if info.iteration == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(generators.train, "train", lambda config: real_train(config, hooks=[stop_at_2]))
    args = ["--method", "patn", "--portion", "0.3", "--executor", "local", "--train-iterations", "4"]
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 130
    ckpt = Path("runs/generators/patn-synth/checkpoints/latest.pt")
    assert read_checkpoint(ckpt)["iteration"] == 2 and not Path("runs/augment").exists()
    monkeypatch.setattr(generators.train, "train", real_train)
    summary = main(args)
    assert read_checkpoint(ckpt)["iteration"] == 4 and summary.generated_this_run > 0
