"""Evaluation protocols: PG2's and GFLA's SSIM against scikit-image, the registry, file naming and strips,
``--folder`` round trips, the missing-weights report, and the network metrics end to end with random weights."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from metric_weights import write_metric_weights
from skimage.metrics import structural_similarity

from augment.data.imageio import encode_image, read_rgb
from augment.data.keypoints import read_dataset_annotations
from augment.data.market import DatasetError, read_market
from augment.data.pose import pose_mask_pg2
from generators import evaluate
from generators.base import build
from generators.checkpoint import save
from generators.data import load_pairs
from generators.metrics import SSIM_DEFS, mask_ssim, ssim
from generators.quality import suite as suite_module
from generators.quality.folder import match_folder
from generators.quality.lpips import load_lpips, lpips_distance
from generators.quality.pose_decode import PoseConfig
from generators.quality.protocols import IMAGE_IO, MASKS, METRIC_INFO, PROTOCOLS, EvalProtocol, get_protocol
from generators.quality.strips import (
    NAMINGS,
    cut_strip,
    detect_naming,
    jpeg_roundtrip_strip,
    name_key,
    official_strip,
    pg2_denorm,
    pg2_loader_roundtrip,
    strip_name,
)
from generators.quality.suite import whole_batch_count

SIZE = (128, 64)


def related_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gen = rng.integers(0, 256, (n, *SIZE, 3), dtype=np.uint8)
    ref = np.clip(gen.astype(int) + rng.integers(-50, 51, gen.shape), 0, 255).astype(np.uint8)
    ref[0] = rng.integers(0, 256, ref[0].shape)  # one unrelated pair
    return gen, ref


def body_keypoints() -> np.ndarray:
    kps = np.full((18, 2), -1, np.int64)
    joints = {0: (14, 32), 1: (30, 32), 2: (30, 22), 5: (30, 42), 3: (50, 18), 6: (50, 46), 8: (70, 26)}
    joints.update({11: (70, 38), 9: (95, 25), 12: (95, 39), 10: (118, 24), 13: (118, 40), 14: (10, 30)})
    for j, yx in joints.items():
        kps[j] = yx
    return kps


# ---------------------------------------------------------------------------------------------
# SSIM definitions


def test_pg2_ssim_is_scikit_images_defaults():
    """PG2's score.py: compare_ssim(G, target, multichannel=True) on uint8 images, nothing else given."""
    gen, ref = related_images(4, seed=0)
    expected = [structural_similarity(g, r, channel_axis=-1) for g, r in zip(gen, ref)]
    np.testing.assert_allclose(ssim(gen, ref, definition="pg2"), expected, rtol=0, atol=1e-12)
    # the arguments spelled out: 7x7 uniform window, sample covariance, data range 255
    spelled = structural_similarity(
        gen[1], ref[1], channel_axis=-1, win_size=7, use_sample_covariance=True, data_range=255
    )
    assert abs(expected[1] - spelled) < 1e-15
    assert abs(ssim(gen[1], ref[1], definition="pg2") - ssim(gen[1], ref[1])) > 1e-3  # not PATN's number
    # a fixed data range: a darker generated image does not change the constants, unlike PATN's
    dark = (gen[1] // 2).astype(np.uint8)
    assert abs(ssim(dark, ref[1], definition="pg2") - structural_similarity(dark, ref[1], channel_axis=-1)) < 1e-12


def test_pg2_mask_rule_is_score_mask_py():
    """score_mask.py: np.uint8(mask / 255. * image) with the SOURCE's PG2 mask saved as 0/255, then PG2's SSIM."""
    gen, ref = related_images(1, seed=1)
    mask = pose_mask_pg2(body_keypoints()[None], SIZE)[0]  # float {0, 1}
    saved = (mask * 255).astype(np.uint8)  # trainer.test: mask * 255 written as PNG
    g = np.uint8(saved[:, :, None] / 255.0 * gen[0])
    r = np.uint8(saved[:, :, None] / 255.0 * ref[0])
    expected = structural_similarity(g, r, channel_axis=-1)
    assert 0.1 < mask.mean() < 0.6
    assert abs(mask_ssim(gen[0], ref[0], mask > 0.5, definition="pg2") - expected) < 1e-12
    assert MASKS[PROTOCOLS["pg2-2017"].mask].of == "source"


def test_gfla_ssim_is_its_script():
    """GFLA: compare_ssim(gt / 255, pred / 255, data_range=1, win_size=51, multichannel=True) (float64 here)."""
    gen, ref = related_images(3, seed=2)
    expected = [
        structural_similarity(r / 255.0, g / 255.0, data_range=1, win_size=51, channel_axis=-1)
        for g, r in zip(gen, ref)
    ]
    np.testing.assert_allclose(ssim(gen, ref, definition="gfla"), expected, rtol=0, atol=1e-12)
    assert SSIM_DEFS["gfla"].weights().shape == (51,)


def test_pg2_uint8_conversions():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0, 1.2]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    assert pg2_denorm(x)[0, 0, :, 0].tolist() == [0, 63, 127, 254, 255, 255]  # clip((x+1)*127.5), truncated
    img = torch.arange(256, dtype=torch.uint8).view(1, 16, 16, 1).expand(1, 16, 16, 3)
    back = pg2_loader_roundtrip(img).int()
    assert ((img.int() - back) >= 0).all() and ((img.int() - back) <= 1).all()


# ---------------------------------------------------------------------------------------------
# registry, naming, strips


def test_protocol_registry():
    assert set(PROTOCOLS) == {"direct", "patn2019", "pg2-2017", "gfla2020"}
    assert evaluate.EvalConfig().protocol == "direct" and PROTOCOLS["direct"].metrics == evaluate.METRICS
    for p in PROTOCOLS.values():
        assert p.io in IMAGE_IO and p.ssim in SSIM_DEFS and p.mask in MASKS and p.sources
        assert set(p.units()) == set(p.metrics) and all(m in METRIC_INFO for m in p.metrics)
    patn, pg2, gfla = PROTOCOLS["patn2019"], PROTOCOLS["pg2-2017"], PROTOCOLS["gfla2020"]
    assert IMAGE_IO[patn.io].jpeg_strips and {"is", "mask_is", "pckh", "ds"} <= set(patn.metrics)
    assert pg2.ssim == "pg2" and {"is", "mask_is"} <= set(pg2.metrics) and "pckh" not in pg2.metrics
    assert gfla.fid_real == "train" and gfla.inception == "torchvision" and gfla.whole_batches == 64
    assert {"fid", "lpips", "ssim_256"} <= set(gfla.metrics)
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("pix2pix")
    with pytest.raises(ValueError, match="unknown metric"):
        EvalProtocol("x", "", (), ("ssim", "nope"))
    assert whole_batch_count(130, 64) == 128 and whole_batch_count(50, 64) == 50 and whole_batch_count(7, None) == 7


def test_file_naming():
    a, b = "0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg"
    assert strip_name(a, b) == f"{a}___{b}_vis.png"
    assert NAMINGS["strip"].parse(strip_name(a, b, ".jpg")) == (a, b)
    assert NAMINGS["strip"].parse(f"{a}___{b}.png") is None
    assert NAMINGS["pair"].parse("0002_c1s1_000451_03___0002_c2s1_000551_01.png") == (
        "0002_c1s1_000451_03",
        "0002_c2s1_000551_01",
    )
    assert detect_naming(["x___y_vis.png", "notes.txt"]) == "strip" and detect_naming(["x___y.jpg"]) == "pair"
    assert name_key(a) == "0002_c1s1_000451_03" == name_key("0002_c1s1_000451_03")


def test_strips_are_cut_back_into_their_panels():
    rng = np.random.default_rng(3)
    src, tgt, gen = (rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(3))
    kps = body_keypoints()
    panels = official_strip(src, kps, tgt, kps, gen)
    strip = np.concatenate(panels, axis=1)
    assert strip.shape == (128, 320, 3)
    for mine, theirs in zip(cut_strip(strip), panels):
        np.testing.assert_array_equal(mine, theirs)
    decoded, data = jpeg_roundtrip_strip(panels)
    assert data[:2] == b"\xff\xd8" and all(p.shape == (*SIZE, 3) for p in decoded)
    assert 0 < np.abs(decoded[4].astype(int) - gen).mean() < 60  # JPEG moved pixels, the panel is still the output
    with pytest.raises(ValueError, match="5 equal panels"):
        cut_strip(strip[:, :-1])


# ---------------------------------------------------------------------------------------------
# evaluate: folders, protocols, missing weights


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    bundle = build("patn", "synth", ngf=8, n_blocks=1, ndf=8)
    return save(tmp_path_factory.mktemp("run") / "checkpoints" / "latest.pt", bundle, iteration=3)


def run(tiny_market, out: Path, *extra: str) -> dict:
    args = ["--data", str(tiny_market), "--device", "cpu", "--out", str(out), "--no-progress", "--batch-size", "8"]
    assert evaluate.main([*args, *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def pairs_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


@pytest.mark.parametrize("protocol", ["direct", "patn2019"])
def test_folder_round_trip_gives_the_same_scores(protocol, tiny_market, tiny_checkpoint, tmp_path, capsys):
    """evaluate --save-images, then --folder on the saved strips: the same per-pair SSIM (PNG strips for direct,
    the scored JPEG bytes for patn2019)."""
    skip = ["--skip", "is,pckh"] if protocol == "patn2019" else []
    run(tiny_market, tmp_path / "a", "--checkpoint", str(tiny_checkpoint), "--pairs", "20", "--save-images",
                "--protocol", protocol, *skip)  # fmt: skip
    images = tmp_path / "a" / "images"
    ext = ".jpg" if protocol == "patn2019" else ".png"
    assert len(list(images.glob(f"*_vis{ext}"))) == 20
    again = run(tiny_market, tmp_path / "b", "--folder", str(images), "--pairs", "20", "--protocol", protocol, *skip)
    a, b = pairs_csv(tmp_path / "a" / "pairs.csv"), pairs_csv(tmp_path / "b" / "pairs.csv")
    for column in ("generated_ssim", "generated_mask_ssim", "copy_source_ssim", "generated_psnr"):
        np.testing.assert_array_equal(a[column], b[column])
    assert again["folder"]["naming"] == "strip" and again["folder"]["pairs_missing"] == 0
    assert again["method"] == "folder" and "folder images" in capsys.readouterr().out


def test_folder_counts_missing_pairs_and_foreign_files(tiny_market, tiny_checkpoint, tmp_path):
    run(tiny_market, tmp_path / "a", "--checkpoint", str(tiny_checkpoint), "--pairs", "12", "--save-images")
    strips = tmp_path / "a" / "images"
    pairs = pairs_csv(tmp_path / "a" / "pairs.csv")
    # the generated panels alone, named <from>___<to>.png without the .jpg, as later repositories release them
    single = tmp_path / "single"
    single.mkdir()
    for a, b in list(zip(pairs["from"], pairs["to"]))[:9]:  # 3 pairs missing
        strip = read_rgb(strips / strip_name(a, b))
        (single / f"{name_key(a)}___{name_key(b)}.png").write_bytes(encode_image(strip[:, 256:], ".png"))
    (single / "9999_c1s1_000001_01___9999_c1s1_000002_01.png").write_bytes(encode_image(strip[:, 256:], ".png"))
    (single / "readme.txt").write_text("not an image")
    report = run(tiny_market, tmp_path / "b", "--folder", str(single), "--pairs", "12")
    folder = report["folder"]
    assert folder["naming"] == "pair" and folder["files_scored"] == 9 and folder["pairs_missing"] == 3
    assert folder["files_not_in_pairs"] == 1 and folder["other_files"] == 1 and report["pairs_evaluated"] == 9
    # scored against the dataset's images: the same numbers as the strips' own panels (PNG, exact)
    mine = pairs_csv(tmp_path / "b" / "pairs.csv")
    np.testing.assert_array_equal(mine["generated_ssim"], pairs["generated_ssim"][:9])
    (single / f"{name_key(pairs['from'][0])}___{name_key(pairs['to'][0])}.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="two files for the pair"):
        match_folder(single, load_pairs(tiny_market, "test"), np.arange(12))


def test_pg2_protocol_scores_pg2_files_with_the_source_mask(tiny_market, tiny_checkpoint, tmp_path):
    report = run(tiny_market, tmp_path / "pg2", "--checkpoint", str(tiny_checkpoint), "--pairs", "8",
                 "--protocol", "pg2-2017", "--skip", "is", "--save-images")  # fmt: skip
    assert report["metrics"] == ["ssim", "mask_ssim", "l1", "psnr"] and report["image_io"]["name"] == "pg2-official"
    table = pairs_csv(tmp_path / "pg2" / "pairs.csv")
    annotations = read_dataset_annotations(tiny_market)
    for k in range(3):
        panels = cut_strip(read_rgb(tmp_path / "pg2" / "images" / strip_name(table["from"][k], table["to"][k])))
        gen, tgt = panels[4], panels[2]
        mask = pose_mask_pg2(annotations.get_many([table["from"][k]]), SIZE)[0]
        g, t = np.uint8(mask[:, :, None] * gen), np.uint8(mask[:, :, None] * tgt)
        assert abs(float(table["generated_mask_ssim"][k]) - structural_similarity(g, t, channel_axis=-1)) < 1e-12
        assert abs(float(table["generated_ssim"][k]) - structural_similarity(gen, tgt, channel_axis=-1)) < 1e-12
    assert set(report["not_computed"]) == {"is", "mask_is"}


def test_missing_weights_are_reported_not_computed(tiny_market, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    report = run(
        tiny_market, tmp_path / "e", "--checkpoint", str(tiny_checkpoint), "--pairs", "6", "--protocol", "patn2019"
    )
    printed = capsys.readouterr().out
    assert report["metrics"] == ["ssim", "mask_ssim", "l1", "psnr"]  # the rest still ran
    missing = report["not_computed"]
    assert set(missing) == {"is", "mask_is", "pckh", "ds"}
    assert "pt_inception-2015-12-05-6726825d.pth" in missing["is"]["reason"] and missing["is"]["flag"] == (
        "--inception-weights PATH"
    )
    assert missing["pckh"]["file_names"] == ["body_pose_model.pth", "pose_estimator.h5"]
    assert missing["pckh"]["flag"] == "--openpose-weights PATH" and "not implemented" in missing["ds"]["reason"]
    assert "NOT COMPUTED IS, mask-IS: " in printed and "--inception-weights PATH" in printed
    assert "NOT COMPUTED PCKh: " in printed and "body_pose_model.pth" in printed and "NOT COMPUTED DS" in printed
    # a path that does not exist is a usage error naming the flag; skipping is reported as such
    bad = ["--checkpoint", str(tiny_checkpoint), "--data", str(tiny_market), "--protocol", "patn2019"]
    assert evaluate.main([*bad, "--openpose-weights", str(tmp_path / "none.pth")]) == 2
    assert "--openpose-weights" in capsys.readouterr().err
    assert evaluate.main([*bad, "--skip", "nonsense"]) == 2 and "--skip" in capsys.readouterr().err
    assert evaluate.main(["--folder", str(tmp_path), "--data", str(tiny_market), "--save-images"]) == 2
    skipped = run(tiny_market, tmp_path / "s", "--checkpoint", str(tiny_checkpoint), "--pairs", "6",
                  "--protocol", "patn2019", "--skip", "is,pckh")  # fmt: skip
    assert skipped["not_computed"]["mask_is"]["reason"] == "left out with --skip mask_is"


# ---------------------------------------------------------------------------------------------
# network metrics end to end, random weights by path


def finite(record: dict) -> bool:
    return np.isfinite(record["value"])


def test_patn2019_network_metrics_run_end_to_end(tiny_market, tiny_checkpoint, tmp_path):
    weights = write_metric_weights(tmp_path / "w")
    cfg = evaluate.EvalConfig(checkpoint=tiny_checkpoint, data=tiny_market, pairs=10, batch_size=10, device="cpu",
                              out=tmp_path / "p", protocol="patn2019", weights=weights, progress=False,
                              pose=PoseConfig(scales=(0.5,)))  # fmt: skip
    report = evaluate.evaluate(cfg, log=lambda s: None)
    assert report.metrics == ("ssim", "mask_ssim", "l1", "psnr", "is", "mask_is", "pckh")
    assert set(report.not_computed) == {"ds"}
    for who in ("generated", "copy_source"):
        res = report.results[who]
        assert finite(res["is"]) and finite(res["mask_is"]) and res["is"]["value"] >= 1.0 - 1e-9
        assert res["is"]["n"] == 10 and res["pckh"]["images"] == 10 and 0 <= res["pckh"]["value"] <= 1
    assert report.info["seconds"]["networks"] > 0


def test_gfla2020_network_metrics_run_end_to_end(tiny_market, tiny_checkpoint, tmp_path, monkeypatch):
    """LPIPS per pair equals the LPIPS of the saved PNG outputs; FID reads the whole training split (its
    2048x2048 matrix square root, equal to pytorch-fid's in test_quality_inception, is stubbed for speed);
    --floor pixel leaves the copy-source row's network metrics out."""
    seen = []

    def cheap_fid(a, b):
        seen.append((a.shape, b.shape))
        return float(((a.mean(0) - b.mean(0)) ** 2).sum())

    monkeypatch.setattr(suite_module, "fid_from_features", cheap_fid)
    weights = write_metric_weights(tmp_path / "w", "torchvision")
    cfg = evaluate.EvalConfig(checkpoint=tiny_checkpoint, data=tiny_market, pairs=10, batch_size=5, device="cpu",
                              out=tmp_path / "g", protocol="gfla2020", weights=weights, progress=False,
                              save_images=True, floor="pixel")  # fmt: skip
    report = evaluate.evaluate(cfg, log=lambda s: None)
    assert report.metrics == ("fid", "lpips", "mask_lpips", "ssim", "ssim_256", "l1", "psnr")
    n_train = len(read_market(tiny_market).split("train"))
    assert seen == [((10, 2048), (n_train, 2048))] and report.results["generated"]["fid"]["n_real"] == n_train
    assert report.results["generated"]["lpips"]["n"] == 10  # fewer than one batch of 64: all used
    net = load_lpips("alex", weights.lpips_backbone)
    rows = pairs_csv(tmp_path / "g" / "pairs.csv")
    for k, (a, b) in enumerate(zip(rows["from"], rows["to"])):  # the PNG strips hold exactly what was scored
        panels = cut_strip(read_rgb(tmp_path / "g" / "images" / strip_name(a, b)))
        d = lpips_distance(net, panels[4][None], panels[2][None])
        assert abs(float(rows["generated_lpips"][k]) - float(d[0])) < 1e-5
    assert all(finite(report.results["generated"][m]) for m in ("fid", "lpips", "mask_lpips"))
    assert "lpips" not in report.results["copy_source"] and "copy_source_lpips" not in rows
    assert "copy_source_ssim" in rows and "n/c" in "\n".join(report.table_lines())
