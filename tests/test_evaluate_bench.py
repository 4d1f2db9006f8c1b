"""generators.evaluate and generators.bench command lines on the tiny embedded dataset and tiny nets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from augment.data.imageio import read_rgb
from augment.data.keypoints import read_dataset_annotations, read_pairs
from augment.data.market import read_market
from augment.data.pose import pose_mask_eval
from generators import bench, evaluate
from generators.base import build, count_parameters
from generators.checkpoint import save
from generators.inference import transfer
from generators.metrics import l1, mask_ssim, psnr, ssim

BATCH = 16


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised small PATN, saved as a run's checkpoint."""
    bundle = build("patn", "synth", ngf=8, n_blocks=1, ndf=8)
    return save(tmp_path_factory.mktemp("run") / "checkpoints" / "latest.pt", bundle, iteration=7)


@pytest.fixture(scope="module")
def test_pairs(tiny_market):
    """The test pairs read directly: (from names, to names, images by name, keypoints by name)."""
    pairs = read_pairs(tiny_market / "market-pairs-test.csv")
    dataset = read_market(tiny_market)
    paths = {r.name: r.path for split in ("gallery", "query") for r in dataset.split(split)}
    names = sorted(set(pairs["from"]) | set(pairs["to"]))
    images = {n: read_rgb(paths[n]) for n in names}
    annotations = read_dataset_annotations(tiny_market)
    return list(pairs["from"]), list(pairs["to"]), images, annotations


def direct_metrics(generated, targets, target_kps):
    mask = pose_mask_eval(target_kps, targets.shape[1:3])
    return {
        "ssim": ssim(generated, targets),
        "mask_ssim": mask_ssim(generated, targets, mask),
        "l1": l1(generated, targets),
        "psnr": psnr(generated, targets),
    }


def read_pairs_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def test_evaluate_cli_scores_generator_and_copy_source(tiny_market, tiny_checkpoint, test_pairs, tmp_path, capsys):
    out = tmp_path / "eval"
    n = 40
    rc = evaluate.main(
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--data",
            str(tiny_market),
            "--pairs",
            str(n),
            "--batch-size",
            str(BATCH),
            "--device",
            "cpu",
            "--out",
            str(out),
            "--save-images",
            "--grid-rows",
            "5",
            "--no-progress",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "copy-source" in printed and "patn/synth it 7" in printed and "mask-SSIM" in printed

    froms, tos, images, annotations = test_pairs
    src = np.stack([images[a] for a in froms[:n]])
    tgt = np.stack([images[b] for b in tos[:n]])
    src_kps, tgt_kps = annotations.get_many(froms[:n]), annotations.get_many(tos[:n])
    floor = direct_metrics(src, tgt, tgt_kps)  # copy-source: the source image is the output

    table = read_pairs_csv(out / "pairs.csv")
    assert list(table["from"]) == froms[:n] and list(table["to"]) == tos[:n]  # first n rows, file order
    assert list(table["line"].astype(int)) == list(range(2, n + 2))
    report = json.loads((out / "metrics.json").read_text())
    assert report["pairs_evaluated"] == n and report["pairs_total"] == len(froms)
    assert report["iteration"] == 7 and report["method"] == "patn" and report["precision"] == "fp32"
    for m in ("ssim", "mask_ssim", "l1", "psnr"):
        np.testing.assert_allclose(table[f"copy_source_{m}"].astype(float), floor[m], rtol=0, atol=1e-12)
        assert report["results"]["copy_source"][m]["mean"] == pytest.approx(floor[m].mean(), abs=1e-12)
        assert report["results"]["copy_source"][m]["n"] == n

    # the generator row: the same checkpoint through the public transfer(), scored directly
    from generators.checkpoint import load

    fake = transfer(load(tiny_checkpoint), src, src_kps, tgt_kps, batch_size=BATCH)
    mine = direct_metrics(fake, tgt, tgt_kps)
    for m in ("ssim", "mask_ssim", "l1"):
        np.testing.assert_allclose(table[f"generated_{m}"].astype(float), mine[m], rtol=0, atol=1e-3)
    # an untrained generator outputs near-uniform grey: far below the floor on SSIM
    assert report["results"]["generated"]["ssim"]["mean"] < report["results"]["copy_source"]["ssim"]["mean"]

    grid = read_rgb(out / "grid.png")
    assert grid.shape == (5 * 128 + 4 * 2, 5 * 64 + 4 * 2, 3)
    strips = sorted((out / "images").iterdir())
    assert len(strips) == n and strips[0].name.endswith("_vis.png") and "___" in strips[0].name
    # the official tool's reading of a strip: panels 0, 2, 4 = source, target, generated
    first = read_rgb(out / "images" / f"{froms[0]}___{tos[0]}_vis.png")
    np.testing.assert_array_equal(first[:, :64], images[froms[0]])
    np.testing.assert_array_equal(first[:, 128:192], images[tos[0]])
    np.testing.assert_array_equal(first[:, 256:], fake[0])


def test_evaluate_official_io_path(tiny_market, tiny_checkpoint, test_pairs, tmp_path):
    out = tmp_path / "official"
    report = evaluate.evaluate(
        evaluate.EvalConfig(
            checkpoint=tiny_checkpoint,
            data=tiny_market,
            pairs=12,
            batch_size=BATCH,
            device="cpu",
            out=out,
            save_images=True,
            official_io=True,
            grid_rows=0,
            progress=False,
        ),
        log=lambda s: None,
    )
    assert report.info["official_io"] and not (out / "grid.png").exists()
    jpgs = sorted((out / "images").glob("*_vis.jpg"))
    assert len(jpgs) == 12
    # the scored copy-source figures are those of the JPEG panels the official tool would read back
    froms, tos, images, annotations = test_pairs
    panels = [
        cv2.cvtColor(cv2.imread(str(out / "images" / f"{a}___{b}_vis.jpg")), cv2.COLOR_BGR2RGB)
        for a, b in zip(froms[:12], tos[:12])
    ]
    src = np.stack([p[:, :64] for p in panels])
    tgt = np.stack([p[:, 128:192] for p in panels])
    floor = direct_metrics(src, tgt, annotations.get_many(tos[:12]))
    # cv2 and PIL decode JPEG with the same libjpeg defaults up to rounding: close, not bit-equal
    np.testing.assert_allclose(report.per_pair["copy_source_ssim"], floor["ssim"], atol=5e-3)
    exact = direct_metrics(
        np.stack([images[a] for a in froms[:12]]),
        np.stack([images[b] for b in tos[:12]]),
        annotations.get_many(tos[:12]),
    )
    assert not np.allclose(report.per_pair["copy_source_ssim"], exact["ssim"], atol=1e-6)  # JPEG changed pixels


def test_official_quantisation_truncates():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.5, 0.999, 1.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    u8 = evaluate.official_tensor2im(x)
    assert u8.shape == (1, 1, 6, 3)
    # (x+1)/2*255: 0, 0.1275, 127.5, 191.25, 254.87, 255 -> truncated
    assert u8[0, 0, :, 0].tolist() == [0, 0, 127, 191, 254, 255]
    img = torch.arange(256, dtype=torch.uint8).view(1, 16, 16, 1).expand(1, 16, 16, 3)
    back = evaluate.official_loader_roundtrip(img).int()
    assert ((img.int() - back) >= 0).all() and ((img.int() - back) <= 1).all()  # loses at most one level


def test_evaluate_errors_name_the_flag(tiny_market, tiny_checkpoint, tmp_path, capsys):
    assert evaluate.main(["--checkpoint", str(tiny_checkpoint), "--data", str(tiny_market), "--pairs", "0"]) == 2
    assert "--pairs" in capsys.readouterr().err
    missing = tmp_path / "nope.pt"
    assert evaluate.main(["--checkpoint", str(missing), "--data", str(tiny_market)]) == 2
    assert str(missing) in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert (
        evaluate.main(
            ["--checkpoint", str(bad), "--data", str(tiny_market), "--out", str(tmp_path / "o"), "--no-progress"]
        )
        == 2
    )
    assert str(bad) in capsys.readouterr().err
    assert (
        evaluate.main(
            ["--checkpoint", str(tiny_checkpoint), "--data", str(tiny_market), "--precision", "fp16", "--device", "cpu"]
        )
        == 2
    )
    assert "--precision" in capsys.readouterr().err


def test_bench_cli_runs_and_reports_ratio(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench.main(
        [
            "--method",
            "patn",
            "--preset",
            "synth",
            "--device",
            "cpu",
            "--batch-sizes",
            "1,2",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--iterations",
            "1",
            "--no-compile",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "x eager" in printed and "fast path at batch 2" in printed and "load average" in printed
    report = json.loads(out.read_text())
    (res,) = report["methods"]
    reference = build("patn", "synth")
    # the bench times the network that samples: the synth preset's EMA copy of G
    assert res["nets"] == ["G_ema"] and res["parameters"] == count_parameters(reference.nets["G"]) == 440_995
    assert res["gflops_per_image"] == pytest.approx(0.74, abs=0.005)  # the preset table in generators/patn.py
    rows = {(t["variant"], t["batch"]): t for t in res["timings"]}
    assert set(b for _, b in rows) == {1, 2} and ("eager fp32", 1) in rows
    for (variant, _batch), t in rows.items():
        assert len(t["repeats"]) == 2 and t["images_per_second"] > 0
        if variant == "eager fp32":
            assert t["vs_eager"] == pytest.approx(1.0) and t["max_abs_diff"] is None
        else:  # agreement measured, and the outputs it was measured on are spread (not vacuous)
            assert t["agrees"] is True and t["max_abs_diff"] < 0.125
    assert res["output_std"] > 0.1
    assert set(res["fast_path"]) == {"1", "2"}
    assert report["load_average_before"] is not None


def test_bench_all_methods_and_bad_flags(tmp_path, capsys):
    out = tmp_path / "all.json"
    rc = bench.main(
        [
            "--method",
            "all",
            "--preset",
            "synth",
            "--device",
            "cpu",
            "--batch-sizes",
            "1",
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--iterations",
            "1",
            "--no-compile",
            "--weights",
            "init",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    methods = [m["method"] for m in json.loads(out.read_text())["methods"]]
    from generators.base import METHODS, network_methods

    assert methods == network_methods() == sorted(set(METHODS) - {"copy"}) and {"patn", "resnet"} <= set(methods)
    capsys.readouterr()
    assert bench.main(["--method", "nosuch", "--preset", "synth"]) == 2
    assert "--method" in capsys.readouterr().err
    assert bench.main(["--method", "patn", "--preset", "synth", "--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err
