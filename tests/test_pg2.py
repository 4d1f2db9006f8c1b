"""PG2: official sizes, the layer list as a functional reference, the two-stage training step.

The reference forwards below are written from the official layer list (docs/methods.md#pg2: the
official models.py / wgan_gp.py), with torch.nn.functional, explicit TensorFlow 'SAME'
pads and the weights looked up by state_dict key: they share no code with generators/pg2.py.
"""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from generator_inputs import random_kps, tiny_batch

from augment.data.pose import pg2_pose_maps, pose_mask_pg2
from generators import pg2
from generators.base import apply_overrides, build, count_flops, count_parameters, get_method
from generators.checkpoint import load, save
from generators.inference import transfer

H, W = 128, 64
# Official sizes (3 significant digits, docs/methods.md#pg2) and the exact counts of the faithful networks.
SPEC_MILLIONS = {"G1": 70.8, "G2": 6.06, "D": 4.32}
EXACT = {"G1": 70_795_075, "G2": 6_058_883, "D": 4_324_737}


@pytest.fixture(scope="module")
def market():
    return build("pg2", "market", seed=0)


# ------------------------------------------------------------------------------------------------
# Independent reference: the official layer list, functional, weights by key, explicit SAME pads
# ------------------------------------------------------------------------------------------------


def _conv(sd, key, x, stride=1, pad=None):
    """Conv with TF 'SAME' for even sizes: stride 1 pads k//2 all round; stride 2 pads
    (k-2)//2 before and (k-1)//2 after (k=3: 0/1, k=5: 1/2)."""
    w = sd[f"{key}.weight"]
    k = w.shape[-1]
    if stride == 1:
        x = F.pad(x, (k // 2,) * 4)
    else:
        x = F.pad(x, ((k - 2) // 2, (k - 1) // 2, (k - 2) // 2, (k - 1) // 2))
    return F.conv2d(x, w, sd[f"{key}.bias"], stride)


def _pair(sd, key, x, residual):
    y = F.relu(_conv(sd, f"{key}.conv2", F.relu(_conv(sd, f"{key}.conv1", x))))
    return x + y if residual else y


def reference_g1(sd, src, pose, blocks):
    x = F.relu(_conv(sd, "conv_in", torch.cat([src, pose], 1)))
    skips = []
    for i in range(blocks):
        x = _pair(sd, f"encoder.{i}", x, True)
        skips.append(x)
        if i < blocks - 1:
            x = F.relu(_conv(sd, f"down.{i}", x, stride=2))
    b, c, h, w = x.shape
    z_w = sd["fc_encode.weight"]  # (z, h*w*c) in NHWC order
    z = torch.einsum("bchw,zhwc->bz", x, z_w.view(-1, h, w, c)) + sd["fc_encode.bias"]
    out = z @ sd["fc_decode.weight"].T + sd["fc_decode.bias"]  # (b, h*w*n) in NHWC order
    x = out.view(b, h, w, -1).permute(0, 3, 1, 2)
    for i in range(blocks):
        x = _pair(sd, f"decoder.{i}", torch.cat([x, skips[blocks - 1 - i]], 1), True)
        if i < blocks - 1:
            x = x.repeat_interleave(2, 2).repeat_interleave(2, 3)  # nearest x2
            x = F.relu(F.conv2d(x, sd[f"up.{i}.weight"], sd[f"up.{i}.bias"]))
    return _conv(sd, "conv_out", x)


def reference_g2(sd, g1, src, blocks):
    x = F.relu(_conv(sd, "conv_in", torch.cat([g1, src], 1)))
    kept = []
    for i in range(blocks):
        x = _pair(sd, f"encoder.{i}", x, False)
        if i > 0:
            kept.append(x)
        if i < blocks - 1:
            x = F.relu(_conv(sd, f"down.{i}", x, stride=2))
    for i in range(blocks):
        if i < blocks - 1:
            x = torch.cat([x, kept[-1 - i]], 1)
        x = _pair(sd, f"decoder.{i}", x, False)
        if i < blocks - 1:
            x = x.repeat_interleave(2, 2).repeat_interleave(2, 3)
    return _conv(sd, "conv_out", x)


def reference_d(sd, x):
    """Train-mode BatchNorm: statistics of the batch (biased variance, eps 1e-5)."""
    x = F.leaky_relu(_conv(sd, "conv1", x, stride=2), 0.2)
    for i in (2, 3, 4):
        x = _conv(sd, f"conv{i}", x, stride=2)
        mean, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True)
        x = (x - mean) / torch.sqrt(var + 1e-5) * sd[f"bn{i}.weight"].view(1, -1, 1, 1) + sd[f"bn{i}.bias"].view(
            1, -1, 1, 1
        )
        x = F.leaky_relu(x, 0.2)
    return (x.flatten(1) @ sd["output.weight"].T + sd["output.bias"]).view(-1)


def g1_closed_form(n=128, N=5, z=64, bottom=(8, 4), c_in=21):
    conv = lambda a, b, k=3: a * b * k * k + b
    widths = [n * (i + 1) for i in range(N)]
    total = conv(c_in, n) + sum(2 * conv(c, c) for c in widths)
    total += sum(conv(widths[i], widths[i + 1]) for i in range(N - 1))
    hw = bottom[0] * bottom[1]
    total += (hw * widths[-1] * z + z) + (z * hw * n + hw * n)
    dec = [n + widths[-1]] + [2 * n * (N - i) for i in range(1, N)]
    total += sum(2 * conv(c, c) for c in dec)
    total += sum(conv(dec[i], n * (N - 1 - i), 1) for i in range(N - 1))
    return total + conv(dec[-1], 3)


# ------------------------------------------------------------------------------------------------
# Sizes, layer list, function
# ------------------------------------------------------------------------------------------------


def test_market_parameter_counts(market):
    counts = {k: count_parameters(market.nets[k]) for k in ("G1", "G2", "D")}
    assert counts == EXACT
    for name, millions in SPEC_MILLIONS.items():
        digits = 1 if millions >= 10 else 2  # 3 significant digits
        assert round(counts[name] / 1e6, digits) == millions, name
    # the same numbers from the layer list, by arithmetic
    assert g1_closed_form() == EXACT["G1"]
    conv = lambda a, b, k=3: a * b * k * k + b
    g2 = (
        conv(6, 128)
        + 2 * conv(128, 128)
        + conv(128, 128)
        + conv(128, 256)
        + conv(256, 256)
        + conv(256, 256)
        + conv(256, 384)
        + conv(384, 384)
        + conv(768, 128)
        + conv(128, 128)
        + conv(384, 128)
        + conv(128, 128)
        + 2 * conv(128, 128)
        + conv(128, 3)
    )
    assert g2 == EXACT["G2"]
    d = conv(3, 64, 5) + conv(64, 128, 5) + conv(128, 256, 5) + conv(256, 512, 5) + 2 * (128 + 256 + 512) + 16384 + 1
    assert d == EXACT["D"]


def test_market_layer_list(market):
    G1, G2, D = market.nets["G1"], market.nets["G2"], market.nets["D"]
    assert G1.conv_in.weight.shape == (128, 21, 3, 3)  # cat(IA, PB)
    assert [b.conv1.weight.shape[0] for b in G1.encoder] == [128, 256, 384, 512, 640]
    assert [d.weight.shape[:2] for d in G1.down] == [(256, 128), (384, 256), (512, 384), (640, 512)]
    assert all(d.stride == (2, 2) for d in G1.down)
    assert G1.fc_encode.weight.shape == (64, 8 * 4 * 640) and G1.fc_decode.weight.shape == (8 * 4 * 128, 64)
    assert [b.conv1.weight.shape[1] for b in G1.decoder] == [768, 1024, 768, 512, 256]
    assert [u.weight.shape for u in G1.up] == [(512, 768, 1, 1), (384, 1024, 1, 1), (256, 768, 1, 1), (128, 512, 1, 1)]
    assert G1.conv_out.weight.shape == (3, 256, 3, 3)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Tanh)) for m in G1.modules())
    assert all(m.bias is not None for m in G1.modules() if isinstance(m, torch.nn.Conv2d))
    assert G2.conv_in.weight.shape == (128, 6, 3, 3)  # cat(G1, IA)
    assert [b.conv1.weight.shape[:2] for b in G2.encoder] == [(128, 128), (256, 128), (384, 256)]
    assert [d.weight.shape[:2] for d in G2.down] == [(128, 128), (256, 256)]  # width kept
    assert [b.conv1.weight.shape[:2] for b in G2.decoder] == [(128, 768), (128, 384), (128, 128)]
    assert D.conv1.weight.shape == (64, 3, 5, 5) and D.conv4.weight.shape == (512, 256, 5, 5)
    assert D.output.weight.shape == (1, 16384)
    assert [m.eps for m in D.modules() if isinstance(m, torch.nn.BatchNorm2d)] == [1e-5] * 3


def test_flops_and_preset_table_in_docstring(market):
    """Every row of the table in generators/pg2.py's docstring is recomputed."""
    rows = re.findall(
        r"\|\s*(market|synth)\s*\|\s*([\d,]+)\s*\|\s*([\d.]+)\s*\|\s*([\d,]+)\s*\|"
        r"\s*([\d.]+)\s*\|\s*([\d,]+)\s*\|\s*([\d.]+)\s*\|",
        pg2.__doc__,
    )
    assert [r[0] for r in rows] == ["market", "synth"]
    num = lambda s: int(s.replace(",", ""))
    img, pose = torch.zeros(1, 3, H, W), torch.zeros(1, 18, H, W)
    for preset, g1, g1_fl, g2, g2_fl, d, d_fl in rows:
        nets = market.nets if preset == "market" else build("pg2", preset).nets
        assert [count_parameters(nets[k]) for k in ("G1", "G2", "D")] == [num(g1), num(g2), num(d)]
        assert f"{count_flops(nets['G1'], (img, pose)).gflops_per_sample:.2f}" == g1_fl
        assert f"{count_flops(nets['G2'], (img, img)).gflops_per_sample:.2f}" == g2_fl
        assert f"{count_flops(nets['D'], torch.zeros(2, 3, H, W)).gflops_per_sample:.2f}" == d_fl
    synth = get_method("pg2").preset("synth")
    iters = re.search(r"synth .*\| ([\d,]+) it \(G1 alone to ([\d,]+)\), batch (\d+)", pg2.__doc__).groups()
    assert (num(iters[0]), num(iters[1]), int(iters[2])) == (
        synth.train.iterations,
        synth.stage1_iterations,
        synth.train.batch_size,
    )


def test_networks_compute_the_official_function():
    """Narrow nets at the real 128x64 size (5 G1 blocks down to the 8x4 FC): module == reference."""
    b = build("pg2", "market", seed=1, g1_hidden=8, z_num=16, g2_hidden=8, ndf=4)
    G1, G2, D = b.nets["G1"], b.nets["G2"], b.nets["D"]
    g = torch.Generator().manual_seed(2)
    src = torch.rand(2, 3, H, W, generator=g) * 2 - 1
    pose = torch.where(torch.rand(2, 18, H, W, generator=g) < 0.1, 1.0, -1.0)
    with torch.no_grad():
        out1 = G1(src, pose)
        ref1 = reference_g1(G1.state_dict(), src, pose, 5)
        out2 = G2(out1, src)
        ref2 = reference_g2(G2.state_dict(), out1, src, 3)
        batch = torch.cat([src, out1])
        out_d, ref_d = D(batch), reference_d(D.state_dict(), batch)
    assert out1.shape == out2.shape == (2, 3, H, W) and out_d.shape == (4,)
    assert out1.abs().max() > 0.01  # not vacuous
    assert torch.allclose(out1, ref1, atol=1e-5, rtol=1e-4), (out1 - ref1).abs().max()
    assert torch.allclose(out2, ref2, atol=1e-5, rtol=1e-4), (out2 - ref2).abs().max()
    assert torch.allclose(out_d, ref_d, atol=1e-4, rtol=1e-4), (out_d - ref_d).abs().max()
    # PyTorch's symmetric padding would not be the same function (TF pads the odd pixel after)
    sd = G1.state_dict()
    sym = F.conv2d(
        F.pad(
            torch.relu(F.conv2d(torch.cat([src, pose], 1), sd["conv_in.weight"], sd["conv_in.bias"], padding=1)),
            (0,) * 4,
        ),
        sd["down.0.weight"],
        sd["down.0.bias"],
        stride=2,
        padding=1,
    )
    x = F.relu(G1.conv_in(torch.cat([src, pose], 1)))
    assert not torch.allclose(G1.down[0](x), sym, atol=1e-4)


def test_same_padding_rule():
    assert pg2.same_padding(128, 3, 2) == (0, 1) and pg2.same_padding(64, 5, 2) == (1, 2)
    assert pg2.same_padding(7, 3, 2) == (1, 1) and pg2.same_padding(16, 3, 1) == (1, 1)
    conv = pg2.SameConv2d(2, 3, 5, stride=2)
    assert conv(torch.zeros(1, 2, 15, 9)).shape == (1, 3, 8, 5)  # ceil(size / 2)


def test_initialisation_follows_official(market):
    G1, D = market.nets["G1"], market.nets["D"]
    for m in G1.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            fan_in, fan_out = m.weight[0].numel(), m.weight.shape[0] * m.weight[0, 0].numel()
            assert m.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out)) + 1e-7  # Glorot uniform
            assert torch.all(m.bias == 0)
    big = G1.decoder[1].conv1.weight  # 1024x1024x3x3: std of U(-a, a) is a / sqrt(3)
    assert abs(big.std().item() - math.sqrt(6 / (2 * 1024 * 9)) / math.sqrt(3)) < 1e-4
    bound = 0.02 * math.sqrt(3)
    w = torch.cat([m.weight.flatten() for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))])
    assert w.abs().max() <= bound + 1e-7 and abs(w.std().item() - 0.02) < 2e-4
    assert all(torch.all(m.bias == 0) for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert all(
        torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in D.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    # same seed -> same weights; build() leaves the global RNG alone
    state = torch.random.get_rng_state()
    a, b = build("pg2", "synth", seed=3).nets.state_dict(), build("pg2", "synth", seed=3).nets.state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------
# Inference
# ------------------------------------------------------------------------------------------------


def test_generate_is_g1_plus_diffmap_on_the_target_pose():
    b = build("pg2", "synth", seed=4)
    g = torch.Generator().manual_seed(5)
    src = torch.rand(2, 3, H, W, generator=g) * 2 - 1
    kp1, kp2 = random_kps(2, H, W, 1), random_kps(2, H, W, 2)
    with torch.no_grad():
        # an output conv bias pushes G1 + DiffMap past 1 somewhere: the clamp is exercised
        b.nets["G2"].conv_out.bias.fill_(0.9)
        out = b.generate(src, kp1, kp2)
        pose = pg2_pose_maps(kp2, (H, W))
        assert set(pose.unique().tolist()) == {-1.0, 1.0} and torch.all(pose[:, 3] == -1)
        g1 = b.nets["G1"](src, pose)
        diff = b.nets["G2"](g1, src)
        other_source_pose = b.generate(src, kp2, kp2)
        other_target = b.generate(src, kp1, kp1)
    assert out.shape == (2, 3, H, W) and out.dtype == torch.float32
    assert torch.equal(out, (g1 + diff).clamp(-1, 1))
    assert (g1 + diff).max() > 1 and out.max() == 1 and out.min() >= -1
    assert diff.abs().max() > 1e-3  # the DiffMap contributes
    assert torch.equal(out, other_source_pose)  # PG2 reads the target pose only
    assert not torch.allclose(out, other_target, atol=1e-4)
    with pytest.raises(ValueError, match="built for 128x64"):
        b.generate(torch.zeros(1, 3, 64, 32), kp1[:1], kp2[:1])


def test_checkpoint_round_trip_and_numpy_transfer(tmp_path):
    b = build("pg2", "synth", seed=6, g1_hidden=4, g2_hidden=4, ndf=4)
    b.nets.eval()
    path = save(tmp_path / "pg2.pt", b, iteration=7)
    back = load(path)
    assert back.method == "pg2" and back.config == b.config
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    kps = random_kps(3, H, W, 8).numpy()
    out_a = transfer(b, imgs, kps, kps[::-1].copy(), batch_size=2)
    out_b = transfer(str(path), imgs, kps, kps[::-1].copy(), batch_size=3, channels_last=False)
    assert out_a.shape == (3, H, W, 3) and out_a.dtype == np.uint8
    assert np.abs(out_a.astype(int) - out_b.astype(int)).max() <= 1  # channels-last vs. not: rounding


# ------------------------------------------------------------------------------------------------
# Losses and the two-stage training step
# ------------------------------------------------------------------------------------------------


def test_pose_mask_l1_hand_value():
    fake = torch.zeros(1, 3, 2, 2)
    real = torch.tensor([[[[1.0, -2.0], [0.5, 0.0]]] * 3])  # |diff| = 1, 2, 0.5, 0 per channel
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])  # (B,1,H,W): pixels (0,0), (1,0)
    l1, masked = pg2.pose_mask_l1(fake, real, mask)
    assert l1.item() == pytest.approx((1 + 2 + 0.5 + 0) / 4)
    assert masked.item() == pytest.approx((1 + 0.5) / 4)  # mean over all 12 elements
    assert (l1 + masked).item() == pytest.approx(1.25)  # the (1 + M) weighted L1


def tiny_config(**extra):
    over = {
        "image_size": (32, 16),
        "g1_hidden": 4,
        "g1_blocks": 3,
        "z_num": 8,
        "g2_hidden": 4,
        "ndf": 4,
        "stage1_iterations": 2,
        "train.iterations": 40,
        "train.decay_start": 40,
        **extra,
    }
    return over


def setup(**extra):
    b = build("pg2", "synth", seed=0, **tiny_config(**extra))
    impl, cfg, nets = b.impl, b.config, b.nets
    nets.train()
    return impl, cfg, nets, impl.make_optimizers(nets, cfg), impl.make_context(nets, cfg, seed=0)


def snapshot(nets):
    return {n: [p.detach().clone() for p in net.parameters()] for n, net in nets.items()}


def changed(before, nets):
    return {n for n, net in nets.items() if any(not torch.equal(a, p) for a, p in zip(before[n], net.parameters()))}


def test_stage_switch_at_the_boundary_and_the_four_way_batch():
    impl, cfg, nets, opts, ctx = setup()
    batch = tiny_batch()
    d_inputs = []
    hook = nets["D"].register_forward_pre_hook(lambda m, args: d_inputs.append(args[0].detach().clone()))
    bn = nets["D"].bn2
    for it in range(4):
        ctx.iteration = it
        before, tracked = snapshot(nets), int(bn.num_batches_tracked)
        out = impl.train_step(nets, opts, batch, ctx)
        if it < 2:
            assert changed(before, nets) == {"G1"} and set(out) == {"G1", "L1", "mask_L1"}
            assert d_inputs == [] and int(bn.num_batches_tracked) == tracked
        else:
            assert changed(before, nets) == {"G2", "D"}
            assert set(out) == {"G2", "G2_GAN", "L1", "mask_L1", "D"}
            # one D forward per optimizer step, each over the whole 4-way batch: one BN update each
            assert int(bn.num_batches_tracked) == tracked + 2
            assert [x.shape[0] for x in d_inputs] == [16, 16]
            with torch.no_grad():
                g1 = nets["G1"](batch["src_img"], pg2_pose_maps(batch["tgt_kps"], (32, 16)))
            for x in d_inputs:  # cat(IB, IA, G1, G2)
                assert torch.equal(x[:4], batch["tgt_img"]) and torch.equal(x[4:8], batch["src_img"])
                assert torch.allclose(x[8:12], g1, atol=1e-6)
            assert not torch.allclose(d_inputs[0][12:], d_inputs[1][12:])  # G2 recomputed after its step
            d_inputs.clear()
    hook.remove()
    assert opts["G2"].state and opts["D"].state  # their Adam states start at the boundary


def test_stage_losses_follow_the_official_formulas():
    impl, cfg, nets, opts, ctx = setup(lambda_l1=7.0)
    batch = tiny_batch(seed=3)
    src, tgt = batch["src_img"], batch["tgt_img"]
    pose = pg2_pose_maps(batch["tgt_kps"], (32, 16))
    mask = pose_mask_pg2(batch["tgt_kps"], (32, 16))[:, None]
    assert 0 < mask.mean() < 1
    bce = torch.nn.BCEWithLogitsLoss()
    # stage 1
    with torch.no_grad():
        d = (nets["G1"](src, pose) - tgt).abs()
    out = impl.train_step(nets, opts, batch, ctx)
    assert out["L1"] == pytest.approx(d.mean().item(), rel=1e-5)
    assert out["mask_L1"] == pytest.approx((d * mask).mean().item(), rel=1e-5)
    assert out["G1"] == pytest.approx((d + d * mask).mean().item(), rel=1e-5)
    # stage 2: the G2 step with D as it was, the D step with the updated G2 and D as it was
    ctx.iteration = cfg.stage1_iterations
    G1, G2_before, D_before = nets["G1"], copy.deepcopy(nets["G2"]), copy.deepcopy(nets["D"])
    with torch.no_grad():
        g1 = G1(src, pose)
        g2 = g1 + G2_before(g1, src)
        logits = copy.deepcopy(D_before)(torch.cat([tgt, src, g1, g2]))  # train-mode BN, one batch
        separate = copy.deepcopy(D_before)(g2)
    out = impl.train_step(nets, opts, batch, ctx)
    d2 = (g2 - tgt).abs()
    gan = bce(logits[12:], torch.ones(4))
    assert out["G2_GAN"] == pytest.approx(gan.item(), rel=1e-5)
    assert out["G2_GAN"] != pytest.approx(bce(separate, torch.ones(4)).item(), rel=1e-3)  # shared stats matter
    assert out["G2"] == pytest.approx(gan.item() + 7.0 * (d2 + d2 * mask).mean().item(), rel=1e-5)
    with torch.no_grad():
        g2_new = g1 + nets["G2"](g1, src)
        logits = copy.deepcopy(D_before)(torch.cat([tgt, src, g1, g2_new]))
    loss_d = (
        0.5 * bce(logits[:4], torch.ones(4))
        + 0.25 * bce(logits[4:8], torch.zeros(4))
        + 0.25 * bce(logits[12:], torch.zeros(4))
    )
    assert out["D"] == pytest.approx(loss_d.item(), rel=1e-5)


@pytest.mark.parametrize("stage", [1, 2])
def test_training_lowers_the_l1_of_each_stage(stage):
    """Stage 1 trains G1; stage 2 (here from an untrained, frozen G1) trains G2 to correct it."""
    torch.manual_seed(0)
    impl, cfg, nets, opts, ctx = setup(stage1_iterations=25 if stage == 1 else 0, **{"train.lr": 1e-3})
    batch = tiny_batch()
    history = []
    for it in range(25):
        ctx.iteration = it
        history.append(impl.train_step(nets, opts, batch, ctx))
    assert all(math.isfinite(v) for h in history for v in h.values())
    assert ("G1" in history[-1]) == (stage == 1)
    assert sum(h["L1"] for h in history[-3:]) / 3 < 0.6 * history[0]["L1"]
    if stage == 2:
        assert history[-1]["D"] < history[0]["D"]


def test_training_step_under_bf16_autocast_is_finite():
    impl, cfg, nets, opts, ctx = setup()
    ctx = impl.make_context(nets, cfg, amp_dtype=torch.bfloat16)
    for it in (0, 2):
        ctx.iteration = it
        out = impl.train_step(nets, opts, tiny_batch(), ctx)
        assert all(math.isfinite(v) for v in out.values())


# ------------------------------------------------------------------------------------------------
# Presets, config checks, resume across the stage boundary
# ------------------------------------------------------------------------------------------------


def test_market_preset_is_the_official_recipe():
    impl = get_method("pg2")
    cfg = impl.preset("market")
    assert (cfg.image_size, cfg.g1_hidden, cfg.g1_blocks, cfg.z_num) == ((128, 64), 128, 5, 64)
    assert cfg.g1_blocks == int(math.log2(128)) - 2 and cfg.g2_blocks == cfg.g1_blocks - 2
    assert (cfg.g2_hidden, cfg.ndf, cfg.pose_radius, cfg.lambda_l1) == (128, 64, 4, 10.0)
    t = cfg.train
    assert (t.iterations, t.batch_size, t.lr, tuple(t.betas)) == (60_000, 16, 2e-5, (0.5, 0.999))
    assert t.decay_start == t.iterations  # constant rate
    assert cfg.stage1_iterations == 22_000 and cfg.g1_lr_scale == 1.0
    assert impl.required_weights(cfg) == []
    nets = build("pg2", "market", g1_hidden=4, z_num=4, g2_hidden=4, ndf=4).nets
    opts = impl.make_optimizers(nets, cfg)
    assert {n: (o.param_groups[0]["lr"], o.param_groups[0]["betas"]) for n, o in opts.items()} == {
        n: (2e-5, (0.5, 0.999)) for n in ("G1", "G2", "D")
    }
    assert all(len(opts[n].param_groups[0]["params"]) == len(list(nets[n].parameters())) for n in opts)
    synth = impl.preset("synth")
    assert (synth.image_size, synth.g1_blocks, synth.g2_blocks) == ((128, 64), 5, 3)  # same structure
    assert synth.bottom_size == cfg.bottom_size == (8, 4)
    assert synth.train.lr == t.lr and synth.lambda_l1 == cfg.lambda_l1  # stage 2 at the official rate
    rates = {n: o.param_groups[0]["lr"] for n, o in impl.make_optimizers(nets, synth).items()}
    assert rates == pytest.approx({"G1": synth.g1_lr_scale * 2e-5, "G2": 2e-5, "D": 2e-5})
    assert 0 < synth.stage1_iterations < synth.train.iterations


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"stage1_iterations=22000 .*--set stage1_iterations"):
        build("pg2", "market", **{"train.iterations": 1000, "train.decay_start": 1000})
    with pytest.raises(ValueError, match="divisible by 16"):
        build("pg2", "synth", image_size=(120, 64))
    cfg = apply_overrides(get_method("pg2").preset("synth"), {"image_size": "64,32"})
    assert cfg.image_size == (64, 32) and cfg.bottom_size == (4, 2)
    from dataclasses import asdict

    assert get_method("pg2").config_from_dict(asdict(cfg)) == cfg


def test_iterations_flag_keeps_stage_one_share_of_the_run():
    """--iterations N scales the stage switch with the decay point (the synth preset's 2,300 of 2,800 would
    otherwise be refused for any shorter run); an explicit --set stage1_iterations wins."""
    from generators.train import RunConfig
    from generators.train_setup import _config_overrides

    impl, synth = get_method("pg2"), get_method("pg2").preset("synth")
    short = _config_overrides(RunConfig(out=None, method="pg2", preset="synth", iterations=280), impl, "synth")
    expected = round(280 * synth.stage1_iterations / synth.train.iterations)
    assert short["stage1_iterations"] == expected == 230 and short["train.decay_start"] == 280
    cfg = apply_overrides(synth, short)
    assert (cfg.stage1_iterations, cfg.train.iterations) == (230, 280)
    given = RunConfig(out=None, method="pg2", preset="synth", iterations=280, overrides={"stage1_iterations": "7"})
    assert _config_overrides(given, impl, "synth")["stage1_iterations"] == "7"
    patn = _config_overrides(
        RunConfig(out=None, method="patn", preset="synth", iterations=100), get_method("patn"), "synth"
    )
    assert set(patn) == {"train.iterations", "train.decay_start"}  # no schedule fields of its own


def test_resume_across_the_stage_boundary_is_bit_exact(tmp_path):
    from test_generator_data import make_tiny_root

    from generators.checkpoint import read_checkpoint
    from generators.train import RunConfig, train

    root = make_tiny_root(tmp_path / "data", size=(32, 16))
    sets = {
        k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
        for k, v in tiny_config(stage1_iterations=3).items()
        if not k.startswith("train.")
    }
    run = lambda out, **kw: RunConfig(
        out=out,
        data=root,
        method="pg2",
        preset="synth",
        iterations=6,
        batch_size=2,
        checkpoint_every=2,
        sample_every=6,
        overrides=dict(sets),
        progress=False,
        num_samples=2,
        amp="off",
        **kw,
    )
    straight = train(run(tmp_path / "a"), log=lambda s: None)
    assert straight.iteration == 6

    def stop(info):
        if info.iteration == 2:
            raise KeyboardInterrupt

    first = train(run(tmp_path / "b"), hooks=[stop], log=lambda s: None)
    assert first.interrupted and first.iteration == 2  # before the boundary (3)
    train(RunConfig(out=tmp_path / "b", resume=True, amp="off", progress=False, num_samples=2), log=lambda s: None)
    a = read_checkpoint(tmp_path / "a" / "checkpoints" / "latest.pt")
    b = read_checkpoint(tmp_path / "b" / "checkpoints" / "latest.pt")
    assert a["iteration"] == b["iteration"] == 6 and a["content_hash"] == b["content_hash"]
    for name in ("G2", "D"):
        assert a["optimizers"][name]["state"], name  # stage 2 ran after the resume
        for pid, st in a["optimizers"][name]["state"].items():
            assert all(torch.equal(v, b["optimizers"][name]["state"][pid][k]) for k, v in st.items())
    lines = lambda p: [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in open(p)]
    log_a = lines(tmp_path / "a" / "train_log.jsonl")
    assert log_a == lines(tmp_path / "b" / "train_log.jsonl")
    assert ["G1" in row for row in log_a] == [True] * 3 + [False] * 3  # the stage switch in the log
