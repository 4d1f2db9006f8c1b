"""The image-quality switches of the synth presets (upsampling, feature matching, weight EMA), the
identity proxy (generators.identity) and the quality-vs-time command (generators.quality_curve)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from generator_inputs import tiny_batch
from torch import nn

from augment.data.constants import IMAGENET_MEAN, IMAGENET_STD
from generators import identity, quality_compare, quality_curve
from generators.base import build, count_flops, count_parameters
from generators.blocks import WeightEMA, upsample_layers
from generators.checkpoint import load, save
from generators.identity_critic import IdentityEncoder, pair_contrastive_loss, recognition_loss
from generators.losses import feature_matching_loss

H, W = 128, 64
TINY_PATN = {"ngf": 4, "n_blocks": 2, "ndf": 4, "d_blocks": 1, "pool_size": 3}
CRITIC = {"identity.weight": 0.5, "identity.width": 4, "identity.dim": 8}
TINY_DEFORM = {
    "enc_filters": (4, 8, 8, 8, 8, 8),
    "dec_filters": (8, 8, 8, 8, 4),
    "disc_filters": (4, 8, 8, 8),
}


# ------------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------------


def test_upsampling_shapes_parameters_and_no_checkerboard():
    """A kernel-3 stride-2 transposed conv of a constant map is not constant (uneven overlap: the
    checkerboard); resize + conv is constant away from the border. Same parameters for kernel 3."""
    x = torch.ones(1, 4, 8, 8)
    layers = {mode: nn.Sequential(*upsample_layers(4, 2, mode)) for mode in ("convt", "nearest", "bilinear")}
    for net in layers.values():
        nn.init.uniform_(net[-1].weight, 0.1, 1.0)
    outs = {mode: net(x) for mode, net in layers.items()}
    assert all(o.shape == (1, 2, 16, 16) for o in outs.values())
    assert count_parameters(layers["convt"]) == count_parameters(layers["nearest"]) == 4 * 2 * 9
    inner = {mode: o[..., 2:-2, 2:-2] for mode, o in outs.items()}
    # per channel: the channels differ by their own constant, which says nothing of a checkerboard
    convt = inner["convt"][0]
    assert (convt.std(dim=(1, 2)) > 0.1 * convt.mean(dim=(1, 2)).abs()).all()
    assert torch.allclose(inner["nearest"], inner["nearest"][..., :1, :1].expand_as(inner["nearest"]), atol=1e-5)
    assert torch.allclose(inner["bilinear"], inner["bilinear"][..., :1, :1].expand_as(inner["bilinear"]), atol=1e-5)
    k4 = nn.Sequential(*upsample_layers(4, 2, "convt", kernel=4))
    assert k4(x).shape == (1, 2, 16, 16)
    with pytest.raises(ValueError, match="unknown upsample"):
        upsample_layers(4, 2, "pixelshuffle")


def test_weight_ema_update_and_warm_up():
    src = nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1))
    ema = WeightEMA(0.9)
    avg = ema.copy_of(src)
    assert all(not p.requires_grad for p in avg.parameters())
    before = avg[0].weight.detach().clone()
    with torch.no_grad():
        src[0].weight.add_(1.0)
        src[1].running_mean.fill_(3.0)
    ema.update(avg, src, step=1000)  # decay 0.9 (warm-up over)
    assert torch.allclose(avg[0].weight, 0.9 * before + 0.1 * src[0].weight)
    assert avg[1].running_mean.item() == 3.0
    ema.update(avg, src, step=0)  # warm-up: d = 1/10
    assert torch.allclose(avg[0].weight, src[0].weight, atol=0.1 * 0.9 + 1e-6)
    with pytest.raises(ValueError):
        WeightEMA(1.0)


def test_feature_matching_loss_by_hand():
    g = torch.Generator().manual_seed(0)
    fake = [torch.randn(2, 3, 4, 4, generator=g, requires_grad=True), torch.randn(2, 5, 2, 2, generator=g)]
    real = [torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 5, 2, 2, generator=g)]
    expected = ((fake[0] - real[0]).abs().mean() + (fake[1] - real[1]).abs().mean()) / 2
    assert torch.allclose(feature_matching_loss(fake, real), expected)
    with pytest.raises(ValueError):
        feature_matching_loss(fake, real[:1])


# ------------------------------------------------------------------------------------------------
# the switches in the methods
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["patn", "deform"])
def test_official_defaults_of_the_new_switches(method):
    for preset in ("market", "synth"):
        cfg = build(method, preset).config
        if preset == "market":
            assert (cfg.upsample, cfg.lambda_fm, cfg.ema_decay) == ("convt", 0.0, 0.0)
    assert "G_ema" not in build(method, "market").nets


@pytest.mark.parametrize(
    "method, tiny, size",
    [("patn", TINY_PATN, (32, 16)), ("deform", TINY_DEFORM, (128, 64))],
)
def test_switches_train_and_sample_from_the_average(method, tiny, size):
    b = build(method, "synth", seed=0, upsample="nearest", lambda_fm=2.0, ema_decay=0.5, **tiny, **CRITIC)
    impl, cfg, nets = b.impl, b.config, b.nets
    opts = impl.make_optimizers(nets, cfg)
    assert "G_ema" in nets and "G_ema" not in opts and opts["E"].defaults["lr"] == 1e-3
    critic_before = [p.detach().clone() for p in nets["E"].parameters()]
    ctx = impl.make_context(nets, cfg, seed=0)
    batch = tiny_batch(4, *size)
    nets.train()
    for _ in range(3):
        losses = impl.train_step(nets, opts, batch, ctx)
        ctx.iteration += 1
    assert {"FM", "ID", "E"} <= set(losses) and all(math.isfinite(v) for v in losses.values())
    assert all(not torch.equal(a, p) for a, p in zip(critic_before, nets["E"].parameters()))
    assert not torch.equal(next(nets["G_ema"].parameters()), next(nets["G"].parameters()))
    nets.eval()
    with torch.no_grad():
        out = b.generate(batch["src_img"], batch["src_kps"], batch["tgt_kps"])
        nets["G"], saved = nets["G_ema"], nets["G"]  # generate must use the average
        same = b.generate(batch["src_img"], batch["src_kps"], batch["tgt_kps"])
    assert torch.equal(out, same) and saved is not nets["G"]


def test_identity_critic_losses_and_checkpoint(tmp_path):
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    ce = lambda logits: F.cross_entropy(logits, torch.arange(4))
    assert torch.allclose(pair_contrastive_loss(a, a.flip(0), 0.5), (ce(a @ a.flip(0).t() / 0.5) * 2) / 2)
    assert torch.allclose(recognition_loss(a, a, 0.1), ce(a @ a.t() / 0.1))
    z = IdentityEncoder(4, 8)(torch.rand(3, 3, 128, 64) * 2 - 1)
    assert z.shape == (3, 8) and torch.allclose(z.norm(dim=1), torch.ones(3))
    b = build("patn", "synth", **TINY_PATN, **CRITIC, ema_decay=0.9)
    back = load(save(tmp_path / "c.pt", b), "cpu")
    assert back.config.identity.weight == 0.5 and set(back.nets) == {"G", "D_PB", "D_PP", "G_ema", "E"}


def test_patn_feature_matching_term_is_the_mean_over_critics():
    """FM = lambda_fm * mean over (D_PB, D_PP) of the feature-matching loss of their activations."""
    b = build("patn", "synth", seed=1, lambda_fm=3.0, dropout=False, d_dropout=False, **TINY_PATN)
    impl, cfg, nets = b.impl, b.config, b.nets
    ctx = impl.make_context(nets, cfg, seed=0)
    nets.train()
    g = torch.Generator().manual_seed(0)
    fake, real = torch.rand(2, 3, 32, 16, generator=g) * 2 - 1, torch.rand(2, 3, 32, 16, generator=g) * 2 - 1
    cond_pb, cond_pp = torch.rand(2, 18, 32, 16, generator=g), real.flip(0)
    critics = [(nets["D_PB"], cond_pb), (nets["D_PP"], cond_pp)]
    terms = impl.generator_losses(ctx, fake, real, critics)
    expected = []
    for D, c in critics:
        f, r = D.features(torch.cat([fake, c], 1)), D.features(torch.cat([real, c], 1))
        assert len(f) == 4 and torch.equal(f[-1], D.logits(torch.cat([fake, c], 1)))
        expected.append(sum(F.l1_loss(a, z) for a, z in zip(f[:-1], r[:-1])) / (len(f) - 1))
    assert torch.allclose(terms["FM"], 3.0 * sum(expected) / 2)
    assert set(terms) == {"L1", "perceptual", "G_GAN", "FM"}


def test_upsample_switch_keeps_patn_parameter_count():
    a, b = build("patn", "market"), build("patn", "market", upsample="bilinear")
    assert count_parameters(a.nets["G"]) == count_parameters(b.nets["G"]) == 41_365_763
    fa = count_flops(a.nets["G"], (torch.zeros(1, 3, H, W), torch.zeros(1, 36, H, W)))
    fb = count_flops(b.nets["G"], (torch.zeros(1, 3, H, W), torch.zeros(1, 36, H, W)))
    assert fb.macs > fa.macs


# ------------------------------------------------------------------------------------------------
# identity proxy
# ------------------------------------------------------------------------------------------------


def test_rank1_and_ap_by_hand():
    d = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [1.0, 2.0, 3.0, 4.0]])
    matches = torch.tensor([[False, True, False, True], [True, False, False, False], [True, False, False, False]])
    valid = torch.ones_like(matches)
    valid[2, 0] = False  # the only match left out: not counted
    r1, ap = identity.rank1_and_ap(d, matches, valid)
    assert r1[0] == 0 and r1[1] == 0 and math.isnan(r1[2])
    assert ap[0] == pytest.approx((1 / 2 + 2 / 4) / 2) and ap[1] == pytest.approx(1 / 4)


class _PixelMean(nn.Module):
    """A stand-in re-ID network: the mean colour of the image (B,3)."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def test_identity_proxy_on_the_tiny_dataset(tiny_market, tmp_path):
    """Copy-source and real-target queries are scored against the real test images with the
    per-pair exclusions; a generator checkpoint is scored end to end."""
    embed = identity.ReidEmbedder(_PixelMean(), (64, 32))
    feats = embed(np.full((2, 128, 64, 3), 255, np.uint8))
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert feats.shape == (2, 3) and torch.allclose(feats, white.expand(2, 3), atol=1e-5)
    ckpt = save(tmp_path / "g.pt", build("patn", "synth", **TINY_PATN), iteration=0)
    report, gallery = identity.evaluate_identity(identity.IdentityConfig(ckpt, tiny_market, pairs=6), embed)
    assert report.n_pairs == 6 and 0 < report.counted <= 6
    assert set(report.rank1) == set(identity.QUERY_KINDS)
    assert all(0 <= v <= 1 for v in report.rank1.values())
    assert len(gallery.names) == len(set(gallery.names)) and (gallery.pids != -1).all()
    again, _ = identity.evaluate_identity(identity.IdentityConfig(ckpt, tiny_market, pairs=6), embed, gallery)
    assert again.rank1 == report.rank1


# ------------------------------------------------------------------------------------------------
# quality curve
# ------------------------------------------------------------------------------------------------


def test_train_step_gflops_counts_the_official_step():
    """PATN: G forward once, each discriminator three times (G step, real and fake in its step)."""
    b = build("patn", "synth")
    g = count_flops(b.nets["G"], (torch.zeros(1, 3, H, W), torch.zeros(1, 36, H, W))).gflops_per_sample
    pb = count_flops(b.nets["D_PB"], torch.zeros(1, 21, H, W)).gflops_per_sample
    pp = count_flops(b.nets["D_PP"], torch.zeros(1, 6, H, W)).gflops_per_sample
    expected = 3 * (g + 3 * pb + 3 * pp) * b.config.train.batch_size
    assert quality_curve.train_step_gflops(b) == pytest.approx(expected, rel=1e-6)
    with_fm = quality_curve.train_step_gflops(build("patn", "synth", lambda_fm=1.0))
    assert with_fm == pytest.approx(expected + 3 * (pb + pp) * b.config.train.batch_size, rel=1e-6)


def test_quality_curve_command_on_the_tiny_dataset(tiny_market, tmp_path, capsys):
    out = tmp_path / "curve"
    argv = ["--method", "patn", "--data", str(tiny_market), "--minutes", "0.0001", "--clock", "cpu"]
    argv += ["--iterations", "3", "--pairs", "4", "--out", str(out)]
    argv += [f"--set={k}={v}" for k, v in TINY_PATN.items()]
    assert quality_curve.main(argv) == 0
    with open(out / "curve.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["point"] for r in rows] == ["m0p0001", "end"]
    assert rows[-1]["iteration"] == "3" and float(rows[0]["cpu_s"]) <= float(rows[1]["cpu_s"])
    assert all(0 < float(r["copy_mask_ssim"]) <= 1 and float(r["ssim"]) == float(r["ssim"]) for r in rows)
    assert (out / "curve.png").stat().st_size > 1000 and (out / "marks" / "m0p0001.pt").is_file()
    assert quality_curve.main(argv) == 2  # the folder holds a run
    assert "already holds" in capsys.readouterr().err
    assert quality_curve.main([*argv[:-2], "--out", str(tmp_path / "x"), "--minutes", "0"]) == 2
    capsys.readouterr()
    assert quality_compare.main([str(out), "--out", str(tmp_path / "compare.png")]) == 0  # reads what it wrote
    assert "| patn synth | " in capsys.readouterr().out and (tmp_path / "compare.png").stat().st_size > 1000


def _curve_folder(folder, method, clock, rows):
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"config": {"method": method, "preset": "synth", "clock": clock}}))
    columns = ["point", "minutes", "iteration", "ssim", "mask_ssim", "l1", "copy_ssim", "copy_mask_ssim", "copy_l1"]
    lines = [",".join(columns)] + [",".join(str(v) for v in (*row, 0.19, 0.82, 0.2)) for row in rows]
    (folder / "curve.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_quality_compare_marks_each_curves_best_point_and_refuses_mixed_clocks(tmp_path, capsys):
    a = _curve_folder(
        tmp_path / "a", "patn", "cpu", [("m3", 3, 100, 0.23, 0.85, 0.16), ("end", 20, 900, 0.26, 0.84, 0.18)]
    )
    b = _curve_folder(
        tmp_path / "b", "deform", "cpu", [("m3", 3, 50, 0.30, 0.88, 0.15), ("end", 20, 400, 0.28, 0.89, 0.14)]
    )
    table = quality_compare.compare([a, b], tmp_path / "c.png")
    rows = {(r.split(" | ")[0][2:], r.split(" | ")[1]): r for r in table.splitlines()[2:]}
    # best SSIM: patn's last point, deform's first; best L1 (lowest): patn's first, deform's last
    assert "**0.2600**" in rows["patn synth", "20.0"] and "**0.1600**" in rows["patn synth", "3.0"]
    assert "**0.3000**" in rows["deform synth", "3.0"] and "**0.1400**" in rows["deform synth", "20.0"]
    assert "**" not in rows["patn synth: copy-source", "-"] and (tmp_path / "c.png").stat().st_size > 1000
    c = _curve_folder(tmp_path / "c", "pg2", "wall", [("end", 20, 10, 0.2, 0.8, 0.2)])
    assert quality_compare.main([str(a), str(c), "--out", str(tmp_path / "d.png")]) == 2
    assert "different clocks" in capsys.readouterr().err and not (tmp_path / "d.png").exists()
    assert quality_compare.main([str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
