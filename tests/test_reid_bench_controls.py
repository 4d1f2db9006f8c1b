"""reid_eval.bench as an instrument: the none-iters and copy controls, what each regime's generator trained on,
statistics over seeds, and the resume of a partly finished multi-seed grid. Tiny data, tiny networks."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import augment.run
import augment.synth
from augment.data.imageio import read_rgb
from augment.data.keypoints import read_pairs
from augment.data.market import parse_market_name, read_market
from augment.synth import render_dataset
from generators.checkpoint import read_checkpoint
from reid_eval import bench, bench_generators, bench_run
from reid_eval.bench import BenchOptions
from reid_eval.bench_stats import add_recovery, recovery, summarize

TINY_GENERATOR = {"ngf": "4", "n_blocks": "1", "ndf": "4", "d_blocks": "1", "pool_size": "3"}


@pytest.fixture(scope="module")
def tiny_disjoint(tmp_path_factory, tiny_market_config):
    """The tiny dataset's population 1: other people, the same cameras (the disjoint regime's data)."""
    root = tmp_path_factory.mktemp("synth") / "tiny-disjoint"
    return render_dataset(replace(tiny_market_config, population=1), root, log=None)


def options(tmp_path, **kw) -> BenchOptions:
    base = dict(
        models=("inception",),
        portions=(0.5, 1.0),
        methods=("none",),
        seeds=(0,),
        epochs=1,
        batch_size=8,
        device="cpu",
        out=tmp_path / "bench",
        jobs=1,
        threads=1,
        generator_iterations=2,
        generator_overrides=dict(TINY_GENERATOR),
    )
    base.update(kw)
    return BenchOptions(**base)


def _rows(results: pd.DataFrame, method: str, regime: str = "-", p: float = 0.5) -> pd.DataFrame:
    return results[(results["method"] == method) & (results["generator_data"] == regime) & (results["value"] == p)]


def _run_record(out, results, regime) -> tuple[dict, dict]:
    """(the checkpoint's run record, generator.json) of the generator of the p = 0.5 patn cell of ``regime``."""
    folder = out / "generators" / _rows(results, "patn", regime)["generator"].iloc[0]
    record = json.loads((folder / bench_generators.GENERATOR_FILE).read_text())
    return read_checkpoint(folder / "checkpoints" / "latest.pt")["run"], record


def test_controls_and_regimes_end_to_end(tiny_market, tiny_disjoint, tmp_path, monkeypatch):
    """The embedded path (bench-trained generators) on the tiny dataset, two worker processes."""
    monkeypatch.chdir(tmp_path)  # copy's config-only checkpoint goes to runs/generators/copy/
    monkeypatch.setattr(augment.run, "embedded_dataset", lambda *a, **k: tiny_market)
    monkeypatch.setattr(augment.synth, "embedded_disjoint_dataset", lambda log=print: tiny_disjoint)
    opts = options(
        tmp_path, methods=("none", "none-iters", "copy", "patn"), generator_data=("full", "kept", "disjoint")
    )
    results = bench.run_bench(replace(opts, jobs=2))
    out = tmp_path / "bench"
    assert len(results) == 2 * 6 and set(results["generator_data"]) == {"-", "full", "kept", "disjoint"}

    # none-iters: the reduced set, trained exactly as many steps, on as many images, as its generated partner
    none, ni, copy = (_rows(results, m).iloc[0] for m in ("none", "none-iters", "copy"))
    generated = results[(results["value"] == 0.5) & results["method"].isin(["copy", "patn"])]
    assert ni["train_images"] == none["train_images"] == 14 and ni["generated_images"] == 0
    assert ni["images_per_epoch"] == copy["train_images"] and copy["generated_images"] > 0
    assert (generated["train_images"] == copy["train_images"]).all()  # every method's set holds the same rows
    assert (generated["iterations"] == ni["iterations"]).all() and ni["iterations"] > none["iterations"]
    assert (generated["images_seen"] == ni["images_seen"]).all()
    ni_metrics = json.loads((out / "cells" / "inception-cpu" / "portion0.5-none-iters-s0" / "metrics.json").read_text())
    assert (
        ni_metrics["training"]["sampler"] == "with replacement"
        and ni_metrics["run_key"]["images_per_epoch"] == copy["train_images"]
    )
    assert ni["recovery"] == 0 or np.isnan(ni["recovery"])

    # copy: every generated image of its set is its source image (within JPEG re-encoding)
    copy_set = out / "sets" / "portion0.5-copy-s0"
    manifest = pd.read_parquet(copy_set / "manifest.parquet")
    sources = {r.name: r.path for r in read_market(tiny_market).train}
    gen = manifest[manifest["kind"] == "generated"]
    assert len(gen) == copy["generated_images"] and (gen["status"] == "done").all()
    for row in gen.itertuples():
        made = read_rgb(copy_set / "bounding_box_train" / row.output_name).astype(int)
        assert np.abs(made - read_rgb(sources[row.source_name]).astype(int)).mean() < 2.0
        assert parse_market_name(row.output_name).pid == parse_market_name(row.source_name).pid

    # regimes: kept trained on pairs among the kept images only; full on every training pair; disjoint elsewhere
    kept = set(pd.read_parquet(out / "sets" / "portion0.5-none-s0" / "plan.parquet")["source_name"])
    removed = {r.name for r in read_market(tiny_market).train} - kept
    run, record = _run_record(out, results, "kept")
    pairs = read_pairs(run["pairs_file"])
    names = set(pairs["from"]) | set(pairs["to"])
    assert len(pairs) == run["num_pairs"] == record["num_pairs"] > 0 and names <= kept and not names & removed
    assert (pairs["from"].str[:4] == pairs["to"].str[:4]).all()  # same identity
    run, _ = _run_record(out, results, "full")
    full_pairs = read_pairs(run["pairs_file"])
    assert set(full_pairs["from"]) & removed  # the published protocol: its generator has seen the removed images
    run, _ = _run_record(out, results, "disjoint")
    assert run["data"] == str(tiny_disjoint.resolve())
    assert json.loads((tiny_disjoint / "synth-config.json").read_text())["config"]["population"] == 1
    assert _rows(results, "patn", "full", 1.0)["reused_from"].iloc[0]  # p = 1: the real set, trained once

    # a second run finds every generator and cell finished: nothing trains
    def no_training(job):
        raise AssertionError(f"trained again: {job}")

    monkeypatch.setattr(bench_run, "train_cell", no_training)
    monkeypatch.setattr(bench_run, "train_generator", no_training)
    pd.testing.assert_frame_equal(bench.run_bench(opts), results)


def test_resume_of_a_partly_finished_multi_seed_grid(tiny_market, tmp_path, monkeypatch):
    """A grid stopped after its first training resumes with the others only; summary over both seeds."""
    opts = options(tmp_path, data=tiny_market, portions=(0.5,), seeds=(0, 1))
    real_train, calls = bench_run.train_cell, []

    def crash_on_second(job):
        calls.append(job["options"]["seed"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # the machine went away mid-grid
        return real_train(job)

    monkeypatch.setattr(bench_run, "train_cell", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        bench.run_bench(opts)
    assert calls == [0, 1] and len(pd.read_csv(tmp_path / "bench" / "results.csv")) == 1  # seed 0 was recorded

    def count(job):
        calls.append(job["options"]["seed"])
        return real_train(job)

    calls.clear()
    monkeypatch.setattr(bench_run, "train_cell", count)
    results = bench.run_bench(opts)
    assert calls == [1] and sorted(results["seed"]) == [0, 1]
    summary = pd.read_csv(tmp_path / "bench" / "summary.csv")
    assert list(summary["n"]) == [2] and summary["seeds"].iloc[0] == "0 1"
    assert summary["rank1_pct_mean"].iloc[0] == pytest.approx(results["rank1_pct"].mean())
    assert summary["rank1_pct_std"].iloc[0] == pytest.approx(results["rank1_pct"].std(ddof=1), nan_ok=True)


def test_kept_regime_with_too_few_pairs_is_skipped_and_weights_are_checked_first(tiny_market, tmp_path):
    """At p = 0.2 every tiny identity keeps one image: no pair to learn from, so the cell is skipped with the
    counts; at p = 0.5 on given data the generator would train with the market preset, whose VGG-19 weights
    are missing here: refused before any work."""
    from generators.losses import MissingWeightsError, default_vgg19_path

    opts = options(tmp_path, data=tiny_market, portions=(0.2,), methods=("patn",), generator_data=("kept",))
    results = bench.run_bench(opts)
    assert results.empty
    table = (tmp_path / "bench" / "table.md").read_text()
    assert "## Skipped cells" in table and "portion0.2-patn-on-kept-s0" in table
    assert "6 kept images of 6 identities give 0 pairs over 0 identities" in table
    if default_vgg19_path().is_file():
        pytest.skip("VGG-19 weights present on this machine")
    with pytest.raises(MissingWeightsError):
        bench.run_bench(replace(opts, portions=(0.5,), out=tmp_path / "b2"))
    assert not (tmp_path / "b2" / "sets").exists() and not (tmp_path / "b2" / "cells").exists()


def _fake(rows) -> pd.DataFrame:
    cols = ["model", "recipe", "method", "generator_data", "protocol", "value", "seed", "rank1_pct", "column"]
    base = dict(rank5_pct=0.0, map_pct=0.0, cuhk03_rank1_pct=0.0, recovery=np.nan, train_images=10)
    base.update(generated_images=0, iterations=5, images_seen=40)
    return pd.DataFrame([{**dict(zip(cols, r)), **base} for r in rows])


def test_recovery_and_summary_statistics_over_seeds():
    rows = [("inception", "cpu", "none-iters", "-", "portion", 0.1, s, v, "0.1") for s, v in ((0, 10.0), (1, 20.0))]
    rows += [("inception", "cpu", "patn", "full", "portion", 0.1, s, v, "0.1") for s, v in ((0, 40.0), (1, 35.0))]
    rows += [("inception", "cpu", "patn", "full", "portion", 0.1, 2, 50.0, "0.1")]  # no none-iters for seed 2
    rows += [("inception", "cpu", "none", "-", "portion", 1.0, 0, 70.0, "1.0")]  # the ceiling, seed 0 only
    results = add_recovery(_fake(rows))
    patn = results[(results["method"] == "patn")]
    # per seed: the same seed's none-iters; seed 1 has no p = 1.0 cell, so the ceiling's mean over seeds (70)
    assert patn["recovery"].iloc[0] == pytest.approx((40 - 10) / (70 - 10))
    assert patn["recovery"].iloc[1] == pytest.approx((35 - 20) / (70 - 20))
    assert np.isnan(patn["recovery"].iloc[2])  # no none-iters partner for seed 2
    assert (results[results["method"] == "none-iters"]["recovery"] == 0).all()
    assert np.isnan(results[results["value"] == 1.0]["recovery"]).all()

    summary = summarize(results).set_index("method")
    assert summary.loc["patn", "n"] == 3 and summary.loc["patn", "seeds"] == "0 1 2"
    assert summary.loc["patn", "rank1_pct_mean"] == pytest.approx(125 / 3)
    assert summary.loc["patn", "rank1_pct_std"] == pytest.approx(np.std([40, 35, 50], ddof=1))
    assert summary.loc["patn", "recovery_n"] == 2
    assert summary.loc["patn", "recovery_mean"] == pytest.approx((0.5 + 0.3) / 2)
    assert summary.loc["patn", "recovery_std"] == pytest.approx(np.std([0.5, 0.3], ddof=1))
    assert summary.loc["patn", "recovery_of_means"] == pytest.approx((125 / 3 - 15) / (70 - 15))
    assert summary.loc["none", "n"] == 1 and np.isnan(summary.loc["none", "rank1_pct_std"])
    assert np.isnan(recovery(50.0, 70.0, 70.0)) and np.isnan(recovery(50.0, 80.0, 70.0))  # no positive gap


def test_external_generator_through_files(tiny_market, tmp_path, monkeypatch):
    """An external method: the first run exports each set's plan and waits; a tool writes the images beside it
    (here: each source image under its output name, as PNG); the next run imports and trains on them."""
    import cv2

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(augment.run, "embedded_dataset", lambda *a, **k: tiny_market)
    ext = tmp_path / "ext"
    opts = options(tmp_path, portions=(0.5,), methods=("none", "ext"), external={"ext": ext})
    first = bench.run_bench(opts)
    assert list(first["method"]) == ["none"]  # ext waits for its images
    (folder,) = [p for p in ext.iterdir() if p.is_dir()]
    plan = pd.read_csv(folder / "plan.csv")
    assert len(plan) > 0 and (folder / "plan.json").is_file()
    for row in plan.itertuples():  # the stand-in tool reads plan.csv only
        image = cv2.imread(row.source_path)
        cv2.imwrite(str(folder / (row.output_name.rsplit(".", 1)[0] + ".png")), image)
    second = bench.run_bench(opts)
    made = second[second["method"] == "ext"].iloc[0]
    assert made["generated_images"] == len(plan) and made["train_images"] > first["train_images"].iloc[0]
    manifest = pd.read_parquet(tmp_path / "bench" / "sets" / folder.name / "manifest.parquet")
    assert set(manifest.loc[manifest["kind"] == "generated", "method"]) == {"external:ext"}
