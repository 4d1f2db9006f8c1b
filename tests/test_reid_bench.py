"""reid_eval.bench: the grid, a tiny end-to-end run, cell resume and reuse, the Table-5 rendering."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from augment.plan import PlanSpec
from reid_eval import bench, bench_pool, bench_run, published
from reid_eval.bench import BenchError, BenchOptions, Cell, build_grid, render_markdown


def tiny_options(tiny_market, tmp_path, **kw) -> BenchOptions:
    base = dict(
        data=tiny_market,
        models=("inception",),
        portions=(0.5, 1.0),
        methods=("none",),
        epochs=1,
        batch_size=8,
        device="cpu",
        out=tmp_path / "bench",
        sets_dir=tmp_path / "sets",
        jobs=1,
        threads=1,
        seeds=(0,),
    )
    base.update(kw)
    return BenchOptions(**base)


def test_tiny_bench_end_to_end_then_resume_and_reuse(tiny_market, tmp_path, monkeypatch):
    opts = tiny_options(tiny_market, tmp_path, jobs=2)  # two trainings in two worker processes
    results = bench.run_bench(opts)
    out = tmp_path / "bench"
    assert list(results["value"]) == [0.5, 1.0] and set(results["method"]) == {"none"}
    assert set(results["protocol"]) == {"portion"} and set(results["generator_data"]) == {"-"}
    assert list(results["train_images"]) == [14, 31]  # p=0.5 keeps round(0.5 n) per identity, >= 1
    assert (results["generated_images"] == 0).all() and (results["reused_from"] == "").all()
    assert results["rank1_pct"].between(0, 100).all() and results["map_pct"].between(0, 100).all()
    assert list(results["iterations"]) == [14 // 8, 31 // 8] and list(results["images_seen"]) == [8, 24]
    csv = pd.read_csv(out / "results.csv")
    parquet = pd.read_parquet(out / "results.parquet")
    assert len(csv) == len(parquet) == 2 and list(parquet.columns) == bench.RESULT_COLUMNS
    assert bench.RESULT_COLUMNS[:16] == [  # the columns, in its order
        "model",
        "recipe",
        "method",
        "generator_data",
        "protocol",
        "value",
        "seed",
        "train_images",
        "generated_images",
        "iterations",
        "images_seen",
        "rank1_pct",
        "rank5_pct",
        "map_pct",
        "cuhk03_rank1_pct",
        "recovery",
    ]
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["n"]) == [1, 1] and summary["rank1_pct_std"].isna().all()
    assert np.allclose(csv["rank1_pct"], results["rank1_pct"])
    assert (out / "rank1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "table.md").read_text()
    assert "| method (model) | 0.5 | 1.0 |" in table
    assert f"| None (Inception) | {results['rank1_pct'].iloc[0]:.1f} / 39.2 | " in table  # one seed: no spread
    cell_dir = out / "cells" / "inception-cpu" / "portion0.5-none-s0"
    metrics = json.loads((cell_dir / "metrics.json").read_text())
    assert metrics["training"]["epochs"] == 1 and (cell_dir / "checkpoint.pt").exists()

    # resume: every cell is finished, so nothing trains (a training call would fail) and results are the same
    def no_training(job):
        raise AssertionError(f"cell trained again: {job}")

    monkeypatch.setattr(bench_run, "train_cell", no_training)
    again = bench.run_bench(opts)
    pd.testing.assert_frame_equal(again, results)

    # patn at p=1.0 generates nothing: its set is the real set, so the 'none' cell's training is reused
    reuse = bench.run_bench(tiny_options(tiny_market, tmp_path, portions=(1.0,), methods=("none", "patn")))
    patn = reuse[reuse["method"] == "patn"]
    assert list(patn["generator_data"]) == ["full", "disjoint"]  # a row per regime, both the real set here
    assert patn["reused_from"].str.endswith("portion1-none-s0").all()
    assert (patn["rank1_pct"] == reuse[reuse["method"] == "none"].iloc[0]["rank1_pct"]).all()
    assert (tmp_path / "sets" / "portion1-patn-s0" / "bounding_box_train").is_dir()


def test_cells_sharing_a_set_in_one_run_train_once(tiny_market, tmp_path):
    """none and patn at p=1.0 are the same real set: one training, the second cell reuses its
    metrics.json (as written, JSON, whatever the training returned in memory)."""
    results = bench.run_bench(tiny_options(tiny_market, tmp_path, portions=(1.0,), methods=("none", "patn")))
    cells = tmp_path / "bench" / "cells" / "inception-cpu"
    names = ("none", "patn-on-full")
    none, patn = (json.loads((cells / f"portion1-{m}-s0" / "metrics.json").read_text()) for m in names)
    assert patn["reused_from"].endswith("portion1-none-s0") and "reused_from" not in none
    assert patn["rank1"] == none["rank1"] and patn["cmc"] == none["cmc"]
    assert not (cells / "portion1-patn-on-full-s0" / "checkpoint.pt").exists()  # it never trained
    assert len(results) == 3 and results["rank1_pct"].nunique() == 1


def test_generating_cells_need_a_checkpoint_with_data(tiny_market, tmp_path, capsys):
    opts = tiny_options(tiny_market, tmp_path, methods=("none", "patn"))
    with pytest.raises(BenchError, match=r"--checkpoint METHOD\[:REGIME\]=PATH .*missing for patn:disjoint, patn:full"):
        bench.run_bench(opts)
    assert not (tmp_path / "sets").exists()  # refused before building anything
    with pytest.raises(BenchError, match="regime 'kept' is not among --generator-data"):
        bench.run_bench(tiny_options(tiny_market, tmp_path, methods=("patn",), checkpoints={"patn:kept": tmp_path}))
    with pytest.raises(BenchError, match="the bench trains them"):
        opts = tiny_options(tiny_market, tmp_path, methods=("patn",), generator_data=("kept",))
        bench.run_bench(replace(opts, checkpoints={"patn:kept": tmp_path}))
    with pytest.raises(BenchError, match="--generator-data"):
        bench.run_bench(tiny_options(tiny_market, tmp_path, generator_data=("leaky",)))
    with pytest.raises(BenchError, match="--methods: 'nope'"):
        bench.run_bench(tiny_options(tiny_market, tmp_path, methods=("nope",)))
    with pytest.raises(BenchError, match="no such file"):
        bench.run_bench(
            tiny_options(tiny_market, tmp_path, methods=("patn",), checkpoints={"patn": tmp_path / "missing.pt"})
        )
    with pytest.raises(BenchError, match="--portions"):
        bench.run_bench(tiny_options(tiny_market, tmp_path, portions=(0.0,)))
    with pytest.raises(SystemExit) as e:
        bench.main(["--checkpoint", "patn"])
    assert e.value.code == 2 and "METHOD=PATH" in capsys.readouterr().err


def test_grid_and_augment_flags():
    opts = BenchOptions(
        models=("inception", "resnet50"),
        portions=(0.1, 1.0),
        methods=("none", "none-iters", "copy", "patn", "patn*"),
        generator_data=("full", "disjoint"),
        ratios=(2, 3),
        seeds=(0,),
    )
    cells = build_grid(opts)
    rows = 3 + 2 * 2  # none, none-iters, copy; patn and patn* once per regime
    per_model = 2 * rows + 2 * (rows - 1)  # portions x rows, then ratios x rows without 'none'
    assert len(cells) == 2 * per_model
    assert [c.name for c in cells[:7]] == [
        "portion0.1-none-s0",
        "portion0.1-none-iters-s0",
        "portion0.1-copy-s0",
        "portion0.1-patn-on-full-s0",
        "portion0.1-patn-on-disjoint-s0",
        "portion0.1-patn-kept-on-full-s0",
        "portion0.1-patn-kept-on-disjoint-s0",
    ]
    assert not any(c.method == "none" and c.protocol == "ratio" for c in cells)
    assert {c.generator_data for c in cells if c.method in ("none", "none-iters", "copy")} == {"-"}
    # each cell's set is an augment.run plan (the same spec as the command line's flags)
    assert Cell("inception", "none", "portion", 0.3, 1).plan_spec() == PlanSpec(
        "portion", portion=0.3, generate=False, seed=1
    )
    assert Cell("inception", "patn*", "portion", 0.3, 0, "full").plan_spec() == PlanSpec(
        "portion", portion=0.3, target_poses="kept", method="patn"
    )
    assert Cell("inception", "patn", "ratio", 2, 0).plan_spec() == PlanSpec("ratio", per_image=1, method="patn")
    from augment.run import build_parser, spec_from_args

    flags = [
        (Cell("inception", "none", "portion", 0.3, 1), ["--portion", "0.3", "--seed", "1", "--no-generate"]),
        (Cell("inception", "none-iters", "portion", 0.3, 1), ["--portion", "0.3", "--seed", "1", "--no-generate"]),
        (Cell("inception", "copy", "portion", 0.3, 1), ["--portion", "0.3", "--seed", "1", "--method", "copy"]),
        (Cell("inception", "patn*", "portion", 0.3, 0, "kept"), ["--portion", "0.3", "--target-poses", "kept"]),
        (Cell("inception", "patn", "ratio", 3, 2, "disjoint"), ["--ratio", "3", "--seed", "2"]),
    ]
    for cell, argv in flags:
        assert cell.plan_spec() == spec_from_args(build_parser().parse_args(argv))
    # none-iters: the reduced set, matched to the generated set of its p and seed (a ratio's: the real set)
    ni = Cell("inception", "none-iters", "portion", 0.3, 1)
    assert ni.partner_spec() == PlanSpec("portion", portion=0.3, method="copy", seed=1)
    assert Cell("inception", "none-iters", "portion", 1.0, 1).partner_spec() is None  # p = 1: it is 'none'
    assert Cell("inception", "none-iters", "ratio", 2, 0).plan_spec() == PlanSpec(
        "portion", portion=1.0, generate=False, seed=0
    )
    assert Cell("inception", "patn", "portion", 1.0, 0, "full").generates is False
    assert Cell("inception", "patn", "portion", 0.9, 0).generates and Cell("x", "patn", "ratio", 3, 0).generates
    assert not Cell("inception", "none-iters", "portion", 0.1, 0).generates
    assert (
        Cell("inception", "copy", "portion", 0.1, 0).generates
        and not Cell("i", "copy", "portion", 0.1, 0).needs_generator
    )
    # two regimes never share a set folder; the controls share the reduced set's
    assert Cell("i", "patn", "portion", 0.1, 0, "kept").set_name == "portion0.1-patn-s0-on-kept"
    assert ni.set_name == Cell("i", "none", "portion", 0.3, 1).set_name == "portion0.3-none-s1"
    assert Cell("inception", "none", "portion", 0.1, 0).column == 0.1
    assert Cell("inception", "patn", "ratio", 3, 0).column == "3x"
    # seeds: every cell per seed, the ceiling p = 1.0 with the first seed unless --ceiling-seeds says otherwise
    grid = build_grid(BenchOptions(portions=(0.1, 1.0), methods=("none",), seeds=(0, 1, 2)))
    assert [(c.value, c.seed) for c in grid] == [(0.1, 0), (1.0, 0), (0.1, 1), (0.1, 2)]
    grid = build_grid(BenchOptions(portions=(0.1, 1.0), methods=("none",), seeds=(0, 1), ceiling_seeds=(0, 1)))
    assert [(c.value, c.seed) for c in grid] == [(0.1, 0), (1.0, 0), (0.1, 1), (1.0, 1)]
    args = bench.build_parser().parse_args(["--quick", "--checkpoint", "patn:disjoint=x.pt", "--ceiling-seeds", "all"])
    quick = bench.options_from_args(args)
    assert quick.seeds == (0,) and quick.ceiling == (0,) and quick.checkpoint_for("patn", "disjoint") == Path("x.pt")
    assert quick.checkpoint_for("patn", "full") is None
    assert bench.options_from_args(bench.build_parser().parse_args(["--ceiling-seeds", "all"])).ceiling == (0, 1, 2)


def _fake_results(rows):
    base = {c: 0 for c in bench.RESULT_COLUMNS}
    out = []
    for model, method, protocol, value, seed, rank1, *regime in rows:
        regime = regime[0] if regime else ("-" if method in ("none", "none-iters", "copy") else "full")
        r = dict(
            base,
            model=model,
            recipe="cpu",
            method=method,
            generator_data=regime,
            protocol=protocol,
            value=value,
            seed=seed,
            rank1_pct=rank1,
            recovery=np.nan,
            column=str(Cell(model, method, protocol, value, seed).column),
            reused_from="",
        )
        out.append(r)
    return pd.DataFrame(out, columns=bench.RESULT_COLUMNS)


def test_published_table_rendering():
    results = _fake_results(
        [
            ("inception", "none", "portion", 0.1, 0, 10.0),
            ("inception", "none", "portion", 0.1, 1, 20.0),
            ("inception", "patn", "portion", 0.1, 0, 33.33),
            ("inception", "patn", "portion", 0.1, 0, 30.0, "disjoint"),
            ("inception", "patn", "ratio", 2, 0, 61.0),
            ("resnet50", "patn*", "portion", 1.0, 0, 70.06),
        ]
    )
    text = render_markdown(
        results,
        ("inception", "resnet50"),
        ("none", "patn", ("patn", "disjoint"), "patn*"),
        (0.1, 0.5, 1.0),
        (2,),
        recipe="cpu",
        data="embedded",
        skipped=["inception portion0.1-patn-on-kept-s0: too few pairs"],
    )
    lines = text.splitlines()
    header = lines.index("| method (model) | 0.1 | 0.5 | 1.0 | 2x |")
    body = lines[header + 2 : header + 10]
    assert body == [
        "| None (Inception) | 15.0 ± 7.1 / 5.7 | – / 39.2 | – / 52.7 | – / – |",  # mean ± std over two seeds
        "| PATN, full (Inception) | 33.3 / 42.3 | – / 48.0 | – / 52.7 | 61.0 / 56.6 |",
        "| PATN, disjoint (Inception) | 30.0 / – | – / – | – / – | – / – |",  # not the published protocol
        "| PATN*, full (Inception) | – / – | – / – | – / – | – / – |",  # the paper has no Inception PATN* row
        "| None (ResNet-50) | – / 9.2 | – / 56.2 | – / 65.3 | – / – |",
        "| PATN, full (ResNet-50) | – / 52.6 | – / 60.3 | – / 65.3 | – / 65.3 |",
        "| PATN, disjoint (ResNet-50) | – / – | – / – | – / – | – / – |",
        "| PATN*, full (ResNet-50) | – / 53.3 | – / 58.8 | 70.1 / 65.3 | – / 65.1 |",
    ]
    # the full published table follows, with its source
    assert published.PATN_SOURCE in text
    deform = (
        "| Deform (ResNet-50) | 51.9 | 53.9 | 55.4 | 56.1 | 57.6 | 59.4 | 60.5 | 62.2 | 63.5 | 65.3 | 64.2 | 64.6 |"
    )
    assert deform in lines
    assert "| Inception | 2x | PATN | full | 1 | 61.0 | 0.0 | 0.0 | – |" in text  # our cells in detail
    assert "| Inception | p=0.1 | None | - | 2 | 15.0 ± 7.1 |" in text
    assert "- inception portion0.1-patn-on-kept-s0: too few pairs" in lines


def test_plot_writes_png(tmp_path):
    results = _fake_results(
        [("inception", "none", "portion", p, 0, 10 + 40 * p) for p in (0.1, 0.5, 1.0)]
        + [("inception", "patn", "ratio", 2, 0, 55.0)]
    )
    results = pd.concat([results, _fake_results([("inception", "none", "portion", 0.1, 1, 14.0)])])
    path = bench.plot_rank1(results, ("inception",), ("none", "patn"), (0.1, 0.5, 1.0), (2,), tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_published_numbers_are_consistent():
    """Transcription check: every row of a model shares the real p = 1.0 set, so its 1.0 column is the
    'None' row's; the paper's ten portions and two ratios are all there."""
    for (method, model), row in published.PATN_TABLE5.items():
        assert row[1.0] == published.PATN_TABLE5[("none", model)][1.0]
        assert [k for k in row if not isinstance(k, str)] == list(published.PATN_PORTIONS)
        ratios = [k for k in row if isinstance(k, str)]
        assert ratios == ([] if method == "none" else ["2x", "3x"])
        values = [row[p] for p in published.PATN_PORTIONS]
        assert values == sorted(values)  # more real data never lowered Rank-1 in the table
    assert published.PATN_TABLE5[("patn", "resnet50")][0.1] == 52.6
    assert published.DEFORM_TABLE4["IDE + Euclidean"] == (73.9, 48.8, 78.5, 55.9)
    assert published.method_label("patn*") == "PATN*" and published.method_label("pg2*") == "PG2*"
    assert published.column_key(portion=0.30000000000000004) == 0.3 and published.column_key(ratio=3) == "3x"


def test_short_trainings_wait_for_every_generator(monkeypatch, capsys):
    """The pool runs jobs in submission order: a `none` cell (182 images per epoch beside 1,854) queued at the start
    would run mid-grid; held back until the last generator has finished, it runs last, beside the last long one."""
    from concurrent.futures import Future
    from types import SimpleNamespace

    sizes = {"none-s0": 182, "none-s0-again": 182, "copy-s0": 1854, "none-iters-s0": 1854, "patn-s0": 1854}
    sizes["patn-s1"] = 1873
    keys = {"none-s0-again": "none-s0"}  # another cell of the same training: it joins the held one
    queued, group_sizes = [], {}
    monkeypatch.setattr(
        bench_run.Scheduler,
        "_pending",
        lambda self, c: SimpleNamespace(key=keys.get(c, c), images_per_epoch=sizes[c], cell=c),
    )

    def queue(self, group):
        queued.append(group[0].key)
        group_sizes[group[0].key] = len(group)

    monkeypatch.setattr(bench_run.Scheduler, "_queue", queue)
    monkeypatch.setattr(bench_run, "write_record", lambda *a: None)
    scheduler = bench_run.Scheduler(SimpleNamespace(generators={}), SimpleNamespace(threads=None), None, None, 0.0)
    scheduler.waiting = {"patn-full": ["patn-s0"], "patn-disjoint": ["patn-s1"]}
    scheduler._start(["none-s0", "copy-s0", "none-iters-s0"])
    scheduler._start(["none-s0-again"])
    assert queued == ["copy-s0", "none-iters-s0"]
    for name in ("patn-full", "patn-disjoint"):
        done = Future()
        done.set_result({"seconds": 1.0})
        scheduler.futures[done] = ("generator", SimpleNamespace(name=name))
        scheduler._handle(done)
        assert ("none-s0" in queued) == (name == "patn-disjoint")  # held until the last generator is done
    assert queued == ["copy-s0", "none-iters-s0", "patn-s0", "patn-s1", "none-s0"] and not scheduler.held
    assert group_sizes["none-s0"] == 2  # trained once for both cells
    # without a generator in training nothing waits: longest first
    now, later = bench_run.defer_short([[SimpleNamespace(images_per_epoch=n)] for n in (182, 1909)], False)
    assert [g[0].images_per_epoch for g in now] == [1909, 182] and later == []


def test_an_interrupted_bench_stops_its_worker_processes():
    """`kill` (SIGTERM) reaches the grid as KeyboardInterrupt, and stopping the pool ends a training in flight
    (a pool shut down with cancel_futures alone lets it run on, writing into a cell a resumed bench restarts)."""
    import multiprocessing as mp
    import os
    import signal
    import time
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.connection import wait

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), bench_pool.sigterm_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is undone

    pool = ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("spawn"))
    futures = [pool.submit(time.sleep, 120) for _ in range(3)]  # two run, one waits in the queue
    deadline = time.monotonic() + 60
    while sum(f.running() for f in futures) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # the workers start and take their jobs
    processes = list(pool._processes.values())
    assert len(processes) == 2 and all(p.is_alive() for p in processes)
    started = time.monotonic()
    bench_pool.stop_pool(pool, grace=10)
    exited = wait([p.sentinel for p in processes], timeout=0)  # ready once a process has exited
    assert len(exited) == 2 and time.monotonic() - started < 15


def test_bench_generator_schedule_on_the_embedded_dataset(tmp_path):
    """PATN's synth generators train EMBEDDED_ITERATIONS on the embedded dataset; the other methods, another
    preset, real data or --generator-iterations keep their own schedule; the schedule is in the cache key."""
    from reid_eval.bench_generators import EMBEDDED_ITERATIONS, GeneratorResolver

    def resolver(embedded=True, **fields):
        return GeneratorResolver(BenchOptions(out=tmp_path, **fields), tmp_path, None, embedded=embedded)

    assert resolver().iterations("patn") == EMBEDDED_ITERATIONS["patn"] == 1300
    assert resolver().iterations("deform") is None and resolver(embedded=False).iterations("patn") is None
    assert resolver(generator_preset="market").iterations("patn") is None
    assert resolver(generator_iterations=2500).iterations("patn") == 2500
    short, preset = resolver()._trained("patn", "full", "f", tmp_path), resolver(generator_iterations=2500)
    assert short.iterations == 1300 and short.folder != preset._trained("patn", "full", "f", tmp_path).folder
