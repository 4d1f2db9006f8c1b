"""The Deformable GAN's Table 4 in the bench (--table deform4): the grid, features of a trained run and the distances
learnt on them, the Discriminative Embedding's pairs, batches and loss, the Table-4 layout, a tiny grid end to end."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from augment.plan import PlanSpec
from reid_eval import bench, bench_run, compat, features, metrics, published, siamese, train
from reid_eval.bench import BenchError, BenchOptions
from reid_eval.bench_grid import TABLE4_METHODS, Cell
from reid_eval.bench_table4 import render_table4
from reid_eval.datasets import load_splits
from reid_eval.metric_learning import EuclideanConfig, Metric, evaluate_metric

SMALL_KISSME = {"kissme": {"pca_dim": 8}}  # the tiny set has 31 training images: PCA to 200 is undefined there


def _parse(*argv) -> BenchOptions:
    return bench.options_from_args(bench.build_parser().parse_args(["--table", "deform4", *argv]))


# ------------------------------------------------------------------------------------------------------ grid
def test_deform4_grid_cells_sets_and_flags():
    default = _parse()
    assert default.out.name == "bench-deform4" and default.rows == [("none", "-"), ("deform", "full")]
    assert [c.name for c in bench.build_grid(default)] == [
        f"poses10-{m}-s{s}" for s in (0, 1, 2) for m in ("none", "deform-on-full-t-steps")
    ]
    full = _parse(
        *("--methods", "none,none-iters,copy,deform", "--lengths", "t-steps,epochs", "--seeds", "1"),
        *("--reid-methods", "euclidean,xqda,kissme,embedding", "--poses-per-image", "4"),
    )
    cells = bench.build_grid(full)
    names = [c.name for c in cells]
    assert names[:6] == [
        "poses4-none-s1",
        "poses4-none-iters-s1",
        "poses4-copy-t-steps-s1",
        "poses4-copy-s1",
        "poses4-deform-on-full-t-steps-s1",
        "poses4-deform-on-full-s1",
    ]
    assert names[6:] == [n.replace("-s1", "-siamese-s1") for n in names[:6]]
    cell = dict(zip(names, cells))
    real = PlanSpec("portion", portion=1.0, generate=False, seed=1)
    # T is the real set; A is augment.run's K-poses plan (the same spec as its command line)
    from augment.run import build_parser, spec_from_args

    a_spec = spec_from_args(build_parser().parse_args(["--poses-per-image", "4", "--method", "deform", "--seed", "1"]))
    assert cell["poses4-none-s1"].plan_spec() == cell["poses4-none-iters-s1"].plan_spec() == real
    assert cell["poses4-deform-on-full-s1"].plan_spec() == a_spec
    assert cell["poses4-deform-on-full-s1"].set_name == "poses4-deform-s1-on-full"
    # images per epoch: none-iters draws as many as A holds, A at t-steps as many as T, the others one pass
    assert cell["poses4-none-iters-s1"].partner_spec() == PlanSpec("poses", per_image=4, method="copy", seed=1)
    assert cell["poses4-deform-on-full-t-steps-s1"].partner_spec() == real
    assert cell["poses4-copy-t-steps-siamese-s1"].partner_spec() == real
    assert cell["poses4-deform-on-full-s1"].partner_spec() is None and cell["poses4-none-s1"].partner_spec() is None
    assert {c.column for c in cells if c.is_control} == {"T"} and {c.column for c in cells if not c.is_control} == {"A"}
    # cell.json leaves the defaults out, so that cells finished before length and loss existed stay finished
    assert set(cell["poses4-none-s1"].settings()) == {"model", "method", "protocol", "value", "seed", "generator_data"}
    assert cell["poses4-copy-t-steps-siamese-s1"].settings()["loss"] == "siamese"
    # the distances learnt per cell: the IDE's on softmax cells, Euclidean on the Discriminative Embedding's
    assert bench_run.cell_metrics(cell["poses4-none-s1"], full) == ("euclidean", "xqda", "kissme")
    assert bench_run.cell_metrics(cell["poses4-none-siamese-s1"], full) == ("euclidean",)
    assert bench_run.cell_metrics(Cell("inception", "none", "portion", 0.1, 0), full) == ()
    for argv, message in [
        (["--lengths", "forever"], "--lengths"),
        (["--reid-methods", "lda"], "--reid-methods"),
        (["--portions", "0.5"], "--portions and --ratios belong to --table patn5"),
        (["--poses-per-image", "0"], "--poses-per-image must be >= 1"),
    ]:
        with pytest.raises(BenchError, match=message):
            _parse(*argv).validate()
    with pytest.raises(BenchError, match="--lengths: for --table deform4 only"):
        bench.options_from_args(bench.build_parser().parse_args(["--lengths", "epochs"]))
    assert bench.options_from_args(bench.build_parser().parse_args([])).out.name == "bench"  # patn5 as before


# --------------------------------------------------------------------------------------------- the layout
def _results(rows) -> pd.DataFrame:
    base = {c: 0 for c in bench.RESULT_COLUMNS}
    base.update({c: np.nan for c in bench.RESULT_COLUMNS if c.startswith(("euclidean_", "xqda_", "kissme_"))})
    out = []
    for method, regime, length, loss, seed, scores in rows:
        cell = Cell("inception", method, "poses", 10.0, seed, regime, length, loss)
        row = dict(base, model="inception", recipe="cpu", method=method, generator_data=regime, protocol="poses")
        row.update(value=10.0, seed=seed, length=length, loss=loss, column=cell.column, reused_from="", **scores)
        out.append(row)
    return pd.DataFrame(out, columns=bench.RESULT_COLUMNS)


def _ide(rank1: float, mean_ap: float) -> dict:
    """Scores of the three IDE distances: Euclidean as given, XQDA 1 more, KISSME 2 more."""
    return {
        f"{name}_{what}_pct": value + i
        for i, name in enumerate(("euclidean", "xqda", "kissme"))
        for what, value in (("rank1", rank1), ("map", mean_ap))
    }


def test_table4_layout_and_published_numbers():
    results = _results(
        [
            ("none", "-", "epochs", "softmax", 0, _ide(50.0, 30.0)),
            ("none", "-", "epochs", "softmax", 1, _ide(52.0, 32.0)),
            ("deform", "full", "t-steps", "softmax", 0, _ide(60.0, 40.0)),
            ("none", "-", "epochs", "siamese", 0, {"euclidean_rank1_pct": 55.5, "euclidean_map_pct": 35.0}),
            ("copy", "-", "t-steps", "softmax", 0, _ide(51.0, 31.0)),
        ]
    )
    opts = BenchOptions.for_table("deform4", methods=("none", "copy", "deform"))
    text = render_table4(results, opts, opts.rows, skipped=["inception poses10-deform-on-kept-s0: why"])
    lines = text.splitlines()
    fair = "trained for T's steps (|T| images of A drawn per epoch: the fair comparison)"
    start = lines.index(f"### Inception: A = T + 10 Deform, full images per real image, {fair}")
    assert lines[start + 2 : start + 8] == [
        "| re-ID method | T Rank-1 | T mAP | A Rank-1 | A mAP |",
        "|---|---|---|---|---|",
        "| IDE + Euclidean | 51.0 ± 1.4 / 73.9 | 31.0 ± 1.4 / 48.8 | 60.0 / 78.5 | 40.0 / 55.9 |",
        "| IDE + XQDA | 52.0 ± 1.4 / 73.2 | 32.0 ± 1.4 / 50.9 | 61.0 / 77.8 | 41.0 / 57.9 |",
        "| IDE + KISSME | 53.0 ± 1.4 / 75.1 | 33.0 ± 1.4 / 51.5 | 62.0 / 79.5 | 42.0 / 58.1 |",
        "| Discriminative Embedding | 55.5 / 78.3 | 35.0 / 55.5 | – / 80.6 | – / 61.3 |",
    ]
    copy = lines.index(f"### Inception: A = T + 10 Copy images per real image, {fair}")
    assert lines[copy + 4] == "| IDE + Euclidean | 51.0 ± 1.4 / 73.9 | 31.0 ± 1.4 / 48.8 | 51.0 / – | 31.0 / – |"
    assert "| Inception | T | None | - | epochs | softmax | 2 |" in text  # every cell in detail, n = 2 seeds
    assert "- inception poses10-deform-on-kept-s0: why" in lines
    assert lines[lines.index(f"## Published: {published.DEFORM_SOURCE}") + 4 :] == [
        "| IDE + Euclidean | 73.9 | 48.8 | 78.5 | 55.9 |",
        "| IDE + XQDA | 73.2 | 50.9 | 77.8 | 57.9 |",
        "| IDE + KISSME | 75.1 | 51.5 | 79.5 | 58.1 |",
        "| Discriminative Embedding | 78.3 | 55.5 | 80.6 | 61.3 |",
    ]
    # transcription: every published A beats its T (the paper's claim); the bench's rows are the paper's
    assert all(a_r1 > t_r1 and a_map > t_map for t_r1, t_map, a_r1, a_map in published.DEFORM_TABLE4.values())
    assert [label for label, _, _ in TABLE4_METHODS.values()] == list(published.DEFORM_TABLE4)


# ------------------------------------------------------------------------------ features of a trained run
@pytest.fixture(scope="module")
def trained_run(tiny_market, tmp_path_factory):
    out = tmp_path_factory.mktemp("reid") / "run"
    options = dict(model="inception", recipe="cpu", epochs=1, batch_size=8, device="cpu", seed=3, threads=1)
    train.run_training(train.TrainOptions(data=tiny_market, out=out, **options))
    return out


def test_features_of_a_trained_run(trained_run, tiny_market):
    found = features.run_features(trained_run, device="cpu")
    splits = load_splits(tiny_market)
    for split in ("train", "query", "gallery"):
        fs, items = getattr(found, split), getattr(splits, f"{split}_items")
        assert fs.features.shape == (len(items), 1536) and fs.features.dtype == torch.float32  # Inception's pool5
        assert fs.pids.tolist() == [i[1] for i in items] and fs.cams.tolist() == [i[2] for i in items]
    assert (found.train.features >= 0).all() and found.layer == "pool"  # average-pooled post-ReLU maps

    # the run's own output, through the same path, gives exactly the training's own evaluation
    output = features.run_features(trained_run, layer="output", device="cpu")
    q, g = output.query, output.gallery
    assert q.features.shape == (len(splits.query_items), splits.num_train_pids)  # Open-ReID's head: the logits
    own = metrics.evaluate_all(compat.DISTANCES["euclidean"](q.features, g.features), q.pids, g.pids, q.cams, g.cams)
    written = json.loads((trained_run / "metrics.json").read_text())
    assert own["rank1"] == written["rank1"] and own["mAP"] == written["mAP"]

    # a learnt metric that is the identity scores exactly as the Euclidean distance on the run's features
    identity = Metric("identity", M=torch.eye(1536), l2_normalize=True)
    a, b = (evaluate_metric(m, found.query, found.gallery, device="cpu") for m in (identity, EuclideanConfig().fit()))
    assert a["rank1"] == b["rank1"] and a["mAP"] == b["mAP"] and np.array_equal(a["cmc"], b["cmc"])


def test_evaluate_run_writes_and_reuses_its_record(trained_run, monkeypatch):
    names = ("euclidean", "xqda", "kissme")
    record = features.evaluate_run(trained_run, names, seed=0, device="cpu", options=SMALL_KISSME)
    assert json.loads((trained_run / features.METRIC_FILE).read_text()) == record
    assert record["feature_dim"] == 1536 and record["train_images"] == 31 and list(record["metrics"]) == list(names)
    assert all(0 <= record["metrics"][n]["rank1"] <= 1 and 0 <= record["metrics"][n]["mAP"] <= 1 for n in names)
    assert record["metrics"]["kissme"]["info"]["pca_dim"] == 8
    found = features.run_features(trained_run, device="cpu")  # the Euclidean entry: evaluate_metric on them
    direct = evaluate_metric(EuclideanConfig().fit(), found.query, found.gallery, device="cpu")
    assert record["metrics"]["euclidean"]["mAP"] == direct["mAP"]

    def no_features(*a, **k):
        raise AssertionError("features extracted again")

    monkeypatch.setattr(features, "run_features", no_features)
    assert features.evaluate_run(trained_run, names, seed=0, device="cpu", options=SMALL_KISSME) == record
    monkeypatch.undo()
    # a learner its data cannot define is recorded with the reason; the others still run
    again = features.evaluate_run(trained_run, ("kissme", "euclidean"), seed=1, device="cpu")
    assert "200" in again["metrics"]["kissme"]["error"] and "rank1" in again["metrics"]["euclidean"]


# ------------------------------------------------------------------------------- Discriminative Embedding
def test_verification_pairs_and_identity_batches():
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])  # identity 3 has no second image: no pair of its own
    torch.manual_seed(0)
    first, second, same = siamese.verification_pairs(pids)
    pos, neg = same == 1, same == 0
    assert int(pos.sum()) == int(neg.sum()) == 7 and sorted(first[pos].tolist()) == list(range(7))
    assert (pids[first[pos]] == pids[second[pos]]).all() and (first[pos] != second[pos]).all()
    assert (pids[first[neg]] != pids[second[neg]]).all()
    torch.manual_seed(0)
    assert all(torch.equal(x, y) for x, y in zip(siamese.verification_pairs(pids), (first, second, same)))

    labels = [0] * 5 + [1] * 2 + [2] * 3 + [3]
    sampler = siamese.IdentityBatchSampler(labels, batch_size=8, num_instances=4, num_samples=25)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 25 // 8
    for batch in batches:
        ids = [labels[i] for i in batch]
        assert len(batch) == 8 and len(set(ids)) == 2 and all(ids.count(i) == 4 for i in set(ids))
        if 0 in ids:  # five images: four drawn without repeats
            assert len({i for i in batch if labels[i] == 0}) == 4
    with pytest.raises(ValueError, match="verification needs 2 to 4"):
        siamese.IdentityBatchSampler(labels, batch_size=32, num_instances=4, num_samples=64)


def test_siamese_loss_is_identification_plus_verification():
    model = nn.Module()
    model.num_features = 5  # the training feature's size, as an Open-ReID head has it
    stub = SimpleNamespace(criterion=nn.CrossEntropyLoss(), model=siamese.attach_verifier(model))
    logits, feats, pids = torch.randn(6, 3), torch.randn(6, 5), torch.tensor([0, 0, 1, 1, 2, 2])
    torch.manual_seed(1)
    loss, out = siamese.ReidSiameseEngine.losses(stub, (logits, feats), pids)
    torch.manual_seed(1)
    a, b, same = siamese.verification_pairs(pids)
    verification = nn.functional.cross_entropy(model.verifier((feats[a] - feats[b]) ** 2), same)
    assert torch.allclose(loss, nn.functional.cross_entropy(logits, pids) + verification) and out is logits
    assert model.verifier.weight.shape == (2, 5)


# --------------------------------------------------------------------------------------------- end to end
def _tiny_deform4(tiny_market, tmp_path, **fields) -> BenchOptions:
    """Table 4 on the tiny dataset: T and K = 2 copies per image, one epoch of batch 8, in this process."""
    base = dict(data=tiny_market, methods=("none", "copy"), poses_per_image=2, epochs=1, batch_size=8)
    base.update(device="cpu", out=tmp_path / "bench", sets_dir=tmp_path / "sets", jobs=1, threads=1)
    return BenchOptions.for_table("deform4", **base, **fields)


def test_deform4_grid_end_to_end_then_resume(tiny_market, tmp_path, monkeypatch):
    """T and A (copies, K = 2) at T's steps, the IDE's three distances and the Discriminative Embedding."""
    opts = _tiny_deform4(
        tiny_market,
        tmp_path,
        reid_methods=("euclidean", "xqda", "kissme", "embedding"),
        metric_options=SMALL_KISSME,
        seeds=(0,),
    )
    results = bench.run_bench(opts)
    assert list(zip(results["method"], results["length"], results["loss"])) == [
        ("none", "epochs", "softmax"),
        ("copy", "t-steps", "softmax"),
        ("none", "epochs", "siamese"),
        ("copy", "t-steps", "siamese"),
    ]
    t, a = results.iloc[0], results.iloc[1]
    assert t["train_images"] == 31 and t["generated_images"] == 0 and a["generated_images"] > 31
    assert a["images_per_epoch"] == 31 and (results["iterations"] == 31 // 8).all()  # A trained for T's steps
    learnt = ["euclidean_rank1_pct", "xqda_rank1_pct", "kissme_rank1_pct", "euclidean_map_pct"]
    assert results.loc[results["loss"] == "softmax", learnt].notna().all().all()
    de = results[results["loss"] == "siamese"]
    assert de["euclidean_rank1_pct"].notna().all() and de["xqda_rank1_pct"].isna().all()
    cells = tmp_path / "bench" / "cells" / "inception-cpu"
    written = json.loads((cells / "poses2-copy-t-steps-siamese-s0" / "metrics.json").read_text())
    assert written["training"]["loss"] == "siamese" and written["run_key"]["loss"] == "siamese"
    state = compat.load_checkpoint(cells / "poses2-copy-t-steps-siamese-s0" / "checkpoint.pt")["state_dict"]
    assert state["verifier.weight"].shape == (2, 128)  # on the Open-ReID head's 128-d training feature
    record = json.loads((cells / "poses2-none-s0" / features.METRIC_FILE).read_text())
    assert record["metrics"]["kissme"]["info"]["pca_dim"] == 8 and record["feature_dim"] == 1536
    table = (tmp_path / "bench" / "table.md").read_text()
    assert f"| IDE + Euclidean | {t['euclidean_rank1_pct']:.1f} / 73.9 | {t['euclidean_map_pct']:.1f} / 48.8 |" in table
    assert (tmp_path / "bench" / "table4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(pd.read_parquet(tmp_path / "bench" / "results.parquet").columns) == bench.RESULT_COLUMNS

    def no_training(job):
        raise AssertionError(f"cell trained again: {job}")

    monkeypatch.setattr(bench_run, "train_cell", no_training)
    pd.testing.assert_frame_equal(bench.run_bench(opts), results)


def test_deform4_seeds_share_one_set_by_default():
    """--set-seeds first (deform4's default): every seed's A is the first seed's plan (one set, built once),
    while each seed still trains its own cell; --set-seeds each plans per seed, and cell.json says which."""
    shared = bench.build_grid(_parse())
    a_cells = [c for c in shared if not c.is_control]
    assert [c.seed for c in a_cells] == [0, 1, 2] and len({c.name for c in a_cells}) == 3
    assert {c.set_name for c in a_cells} == {"poses10-deform-s0-on-full"}
    assert {c.plan_spec().seed for c in shared} == {0}
    assert "plan_seed" not in a_cells[0].settings() and a_cells[2].settings()["plan_seed"] == 0
    each = bench.build_grid(_parse("--set-seeds", "each"))
    assert [c.set_name for c in each if not c.is_control] == [f"poses10-deform-s{s}-on-full" for s in (0, 1, 2)]
    patn = bench.options_from_args(bench.build_parser().parse_args([]))
    assert patn.set_seeds == "each" and patn.set_seed is None
    with pytest.raises(BenchError, match="--set-seeds must be one of each, first"):
        BenchOptions.for_table("deform4", set_seeds="some").validate()


def test_deform4_shared_set_trains_every_seed(tiny_market, tmp_path):
    opts = _tiny_deform4(tiny_market, tmp_path, reid_methods=("euclidean",), seeds=(0, 1))
    results = bench.run_bench(opts)
    a = results[results["method"] == "copy"]
    assert list(a["seed"]) == [0, 1] and list(a["set_seed"]) == [0, 0]
    assert a["set_dir"].nunique() == 1 and (a["reused_from"] == "").all()  # one set, two trainings
    assert sorted(p.name for p in (tmp_path / "sets").iterdir()) == ["portion1-none-s0", "poses2-copy-s0"]
    assert "one A (planned with seed 0) for every seed" in (tmp_path / "bench" / "table.md").read_text()
