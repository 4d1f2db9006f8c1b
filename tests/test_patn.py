"""PATN and the resnet baseline: official sizes, state-dict layout, function, presets, training step.

The reference forwards below are written from the official layer list (docs/methods.md#patn: the
official models/model_variants.py and networks.py), with torch.nn.functional and the weights looked up by
their official state_dict keys: they share no code with generators/patn.py.
"""

from __future__ import annotations

import collections
import math
import re

import pytest
import torch
import torch.nn.functional as F
from generator_inputs import random_kps, tiny_batch

import generators
from augment.data.pose import heatmaps
from generators import patn
from generators.base import (
    StepContext,
    TrainSchedule,
    apply_overrides,
    build,
    count_flops,
    count_parameters,
    get_method,
    inference_batch,
    like_source,
    lr_factor,
)
from generators.blocks import check_divisible
from generators.losses import VGG19_FILE, MissingWeightsError, vgg19_prefix

H, W = 128, 64
BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def market():
    return build("patn", "market", seed=0)


def randomise_bn_stats(net: torch.nn.Module, seed: int) -> None:
    """Non-trivial running statistics so that eval-mode BatchNorm is not an identity."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


# ------------------------------------------------------------------------------------------------
# Independent reference: the official layer list, functional, weights by official key
# ------------------------------------------------------------------------------------------------


def _conv(sd, key, x, stride=1, padding=0, bias=False):
    return F.conv2d(x, sd[f"{key}.weight"], sd[f"{key}.bias"] if bias else None, stride, padding)


def _bn(sd, key, x):
    return F.batch_norm(
        x,
        sd[f"{key}.running_mean"],
        sd[f"{key}.running_var"],
        sd[f"{key}.weight"],
        sd[f"{key}.bias"],
        training=False,
        eps=1e-5,
    )


def _rpad(x, p):
    return F.pad(x, (p, p, p, p), mode="reflect")


def _encoder(sd, prefix, x, n_down):
    """ReflPad3-Conv7-BN-ReLU (indices 0-3), then [Conv3 s2-BN-ReLU] at indices 4-6, 7-9, ..."""
    x = F.relu(_bn(sd, f"{prefix}.2", _conv(sd, f"{prefix}.1", _rpad(x, 3))))
    for i in range(n_down):
        c = 4 + 3 * i
        x = F.relu(_bn(sd, f"{prefix}.{c + 1}", _conv(sd, f"{prefix}.{c}", x, stride=2, padding=1)))
    return x


def _resblock(sd, key, x):
    """Official ResnetBlock with dropout: 0 pad, 1 conv, 2 BN, 3 ReLU, 4 Dropout, 5 pad, 6 conv, 7 BN."""
    y = F.relu(_bn(sd, f"{key}.2", _conv(sd, f"{key}.1", _rpad(x, 1))))
    return x + _bn(sd, f"{key}.7", _conv(sd, f"{key}.6", _rpad(y, 1)))


def _decoder(sd, prefix, x, n_down):
    for i in range(n_down):
        c = 3 * i
        x = F.conv_transpose2d(x, sd[f"{prefix}.{c}.weight"], None, stride=2, padding=1, output_padding=1)
        x = F.relu(_bn(sd, f"{prefix}.{c + 1}", x))
    return torch.tanh(_conv(sd, f"{prefix}.{3 * n_down + 1}", _rpad(x, 3), bias=True))


def reference_patn(sd, src_img, pose_pair, n_blocks, n_down=2):
    x1 = _encoder(sd, "model.stream1_down", src_img, n_down)
    x2 = _encoder(sd, "model.stream2_down", pose_pair, n_down)
    for i in range(n_blocks):
        s1, s2 = f"model.att.{i}.conv_block_stream1", f"model.att.{i}.conv_block_stream2"
        a = F.relu(_bn(sd, f"{s1}.2", _conv(sd, f"{s1}.1", _rpad(x1, 1))))
        a = _bn(sd, f"{s1}.7", _conv(sd, f"{s1}.6", _rpad(a, 1)))
        p = F.relu(_bn(sd, f"{s2}.2", _conv(sd, f"{s2}.1", _rpad(x2, 1))))
        p = _conv(sd, f"{s2}.6", _rpad(p, 1))  # no norm on the pose output
        x1 = x1 + a * torch.sigmoid(p)
        x2 = torch.cat([p, x1], dim=1)
    return _decoder(sd, "model.stream1_up", x1, n_down)


def reference_resnet_generator(sd, src_img, pose_pair, n_blocks, n_down=2):
    x = _encoder(sd, "model", torch.cat([src_img, pose_pair], 1), n_down)
    first = 4 + 3 * n_down
    for i in range(n_blocks):
        x = _resblock(sd, f"model.{first + i}.conv_block", x)
    # Decoder layers follow the blocks in the same Sequential: renumber them from 0.
    base = first + n_blocks
    dec = {
        f"up.{int(k.split('.')[1]) - base}.{k.split('.', 2)[2]}": v
        for k, v in sd.items()
        if k.startswith("model.") and k.split(".")[1].isdigit() and int(k.split(".")[1]) >= base
    }
    return _decoder(dec, "up", x, n_down)


def reference_discriminator(sd, x, n_blocks=3, n_down=2):
    x = _encoder(sd, "model", x, n_down)
    for i in range(n_blocks):
        x = _resblock(sd, f"model.{4 + 3 * n_down + i}.conv_block", x)
    return torch.sigmoid(x)


def official_generator_keys(n_blocks=9, n_down=2):
    keys = set()
    bn = lambda p: {f"{p}.{e}" for e in BN_ENTRIES}
    for stream in ("stream1_down", "stream2_down"):
        keys.add(f"model.{stream}.1.weight")
        keys |= bn(f"model.{stream}.2")
        for i in range(n_down):
            keys.add(f"model.{stream}.{4 + 3 * i}.weight")
            keys |= bn(f"model.{stream}.{5 + 3 * i}")
    for i in range(n_blocks):
        s1, s2 = f"model.att.{i}.conv_block_stream1", f"model.att.{i}.conv_block_stream2"
        keys |= {f"{s1}.1.weight", f"{s1}.6.weight", f"{s2}.1.weight", f"{s2}.6.weight"}
        keys |= bn(f"{s1}.2") | bn(f"{s1}.7") | bn(f"{s2}.2")
    for i in range(n_down):
        keys.add(f"model.stream1_up.{3 * i}.weight")
        keys |= bn(f"model.stream1_up.{3 * i + 1}")
    keys |= {f"model.stream1_up.{3 * n_down + 1}.weight", f"model.stream1_up.{3 * n_down + 1}.bias"}
    return keys


def official_discriminator_keys(n_blocks=3, n_down=2):
    keys = {"model.1.weight"} | {f"model.2.{e}" for e in BN_ENTRIES}
    for i in range(n_down):
        keys.add(f"model.{4 + 3 * i}.weight")
        keys |= {f"model.{5 + 3 * i}.{e}" for e in BN_ENTRIES}
    for b in range(n_blocks):
        k = f"model.{4 + 3 * n_down + b}.conv_block"
        keys |= {f"{k}.1.weight", f"{k}.6.weight"} | {f"{k}.{j}.{e}" for j in (2, 7) for e in BN_ENTRIES}
    return keys


# ------------------------------------------------------------------------------------------------
# Sizes, layout, function
# ------------------------------------------------------------------------------------------------


def test_market_parameter_counts_and_flops(market):
    nets = market.nets
    assert count_parameters(nets["G"]) == 41_365_763
    assert count_parameters(nets["D_PB"]) == 3_977_408
    assert count_parameters(nets["D_PP"]) == 3_930_368
    patbs = sum(count_parameters(b) for b in nets["G"].model.att)
    assert patbs == 40_125_952  # official: PATBs 40,125,952
    flops = count_flops(nets["G"], (torch.zeros(1, 3, H, W), torch.zeros(1, 36, H, W)))
    assert round(flops.gflops_per_sample, 2) == 45.04  # official network: 45.04 GFLOPs per 128x64 image


def test_official_state_dict_layout(market):
    G, D_PB, D_PP = market.nets["G"], market.nets["D_PB"], market.nets["D_PP"]
    assert set(G.state_dict()) == official_generator_keys()
    assert set(D_PB.state_dict()) == official_discriminator_keys()
    assert set(D_PP.state_dict()) == official_discriminator_keys()
    sd = G.state_dict()
    shapes = {
        "model.stream1_down.1.weight": (64, 3, 7, 7),
        "model.stream2_down.1.weight": (64, 36, 7, 7),  # cat(BP1, BP2)
        "model.stream2_down.7.weight": (256, 128, 3, 3),
        "model.att.0.conv_block_stream2.1.weight": (256, 256, 3, 3),  # block 1: C = 256
        "model.att.1.conv_block_stream2.1.weight": (512, 512, 3, 3),  # blocks 2-9: C = 512
        "model.att.1.conv_block_stream2.2.weight": (512,),
        "model.att.8.conv_block_stream2.6.weight": (256, 512, 3, 3),
        "model.att.8.conv_block_stream1.6.weight": (256, 256, 3, 3),
        "model.stream1_up.0.weight": (256, 128, 3, 3),  # ConvTranspose (in, out)
        "model.stream1_up.3.weight": (128, 64, 3, 3),
        "model.stream1_up.7.weight": (3, 64, 7, 7),
        "model.stream1_up.7.bias": (3,),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert tuple(D_PB.state_dict()["model.1.weight"].shape) == (64, 21, 7, 7)
    assert tuple(D_PP.state_dict()["model.1.weight"].shape) == (64, 6, 7, 7)
    assert isinstance(D_PB.model[-1], torch.nn.Sigmoid)  # sigmoid on the 256-channel map itself


def test_initialisation_follows_official(market):
    G, D = market.nets["G"], market.nets["D_PB"]
    convs = [m.weight for m in G.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    w = torch.cat([c.flatten() for c in convs])
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 5e-4
    bns = [m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    gamma = torch.cat([m.weight for m in bns])
    assert abs(gamma.mean().item() - 1) < 2e-3 and abs(gamma.std().item() - 0.02) < 2e-3
    assert all(torch.all(m.bias == 0) for m in bns)
    # D keeps PyTorch's default init: BN weight exactly 1, conv weights uniform within 1/sqrt(fan_in).
    d_bns = [m for m in D.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) for m in d_bns)
    first = D.model[1].weight
    assert first.abs().max().item() <= 1 / math.sqrt(21 * 49) + 1e-6
    # Same seed -> same weights; build() leaves the global RNG alone.
    state = torch.random.get_rng_state()
    again = build("patn", "synth", seed=0).nets["G"].state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    first_build = build("patn", "synth", seed=0).nets["G"].state_dict()
    assert all(torch.equal(again[k], first_build[k]) for k in again)


def test_generator_computes_the_official_function(market):
    """Eval mode, random BN statistics, random inputs: module == functional reference."""
    G = market.nets["G"]
    randomise_bn_stats(G, 1)
    G.eval()
    g = torch.Generator().manual_seed(2)
    src, pose = torch.rand(1, 3, H, W, generator=g) * 2 - 1, torch.rand(1, 36, H, W, generator=g)
    with torch.no_grad():
        out = G(src, pose)
        ref = reference_patn(G.state_dict(), src, pose, n_blocks=9)
    G.train()
    assert out.shape == (1, 3, H, W)
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()


def test_discriminator_and_small_generator_compute_the_official_function(market):
    D = market.nets["D_PP"]
    randomise_bn_stats(D, 3)
    D.eval()
    x = torch.randn(2, 6, H, W, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out, ref = D(x), reference_discriminator(D.state_dict(), x)
        logits = D.logits(x)
    D.train()
    assert out.shape == (2, 256, 32, 16)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(torch.sigmoid(logits), out, atol=1e-6)

    small = build("patn", "market", ngf=8, n_blocks=3).nets["G"]
    randomise_bn_stats(small, 5)
    small.eval()
    src, pose = torch.rand(3, 3, 32, 16) * 2 - 1, torch.rand(3, 36, 32, 16)
    with torch.no_grad():
        assert torch.allclose(small(src, pose), reference_patn(small.state_dict(), src, pose, 3), atol=1e-5)


def test_resnet_baseline_sizes_and_function():
    """5/9/13 blocks differ by exactly 4 ResnetBlock(256)s; 39-channel single encoder."""
    block = 2 * (256 * 256 * 9) + 2 * 2 * 256  # two convs without bias + two BNs
    encoder = 39 * 64 * 49 + 2 * 64 + 64 * 128 * 9 + 2 * 128 + 128 * 256 * 9 + 2 * 256
    decoder = 256 * 128 * 9 + 2 * 128 + 128 * 64 * 9 + 2 * 64 + 64 * 3 * 49 + 3
    for preset, n in (("market5", 5), ("market", 9), ("market13", 13)):
        b = build("resnet", preset)
        assert b.config.n_blocks == n
        assert count_parameters(b.nets["G"]) == encoder + n * block + decoder
        assert count_parameters(b.nets["D_PB"]) == 3_977_408  # PATN's discriminators
    small = build("resnet", "market", ngf=8, n_blocks=2).nets["G"]
    randomise_bn_stats(small, 6)
    small.eval()
    src, pose = torch.rand(2, 3, 32, 16) * 2 - 1, torch.rand(2, 36, 32, 16)
    with torch.no_grad():
        ref = reference_resnet_generator(small.state_dict(), src, pose, 2)
        assert torch.allclose(small(src, pose), ref, atol=1e-5)


def test_load_official_state_dict(tmp_path):
    """Files as the official code saves them (PyTorch 0.3: no num_batches_tracked, no metadata)."""
    src = build("patn", "market", ngf=8, n_blocks=2, seed=1).nets
    dst = build("patn", "market", ngf=8, n_blocks=2, seed=2).nets
    for name in ("G", "D_PB"):
        old_style = collections.OrderedDict(
            (k, v.clone()) for k, v in src[name].state_dict().items() if "num_batches_tracked" not in k
        )
        path = tmp_path / f"latest_net_net{name}.pth"
        torch.save(old_style, path)
        patn.load_official_state_dict(dst[name], path)
        for k, v in src[name].state_dict().items():
            if "num_batches_tracked" not in k:
                assert torch.equal(dst[name].state_dict()[k], v), k
    # DataParallel-prefixed file
    path = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in src["D_PP"].state_dict().items()}, path)
    patn.load_official_state_dict(dst["D_PP"], path)
    # D_PB weights into D_PP: the error names the file
    with pytest.raises(ValueError, match="latest_net_netD_PB.pth"):
        patn.load_official_state_dict(dst["D_PP"], tmp_path / "latest_net_netD_PB.pth")
    # A whole official run folder: netG and netD_PB present, netD_PP absent.
    fresh = build("patn", "market", ngf=8, n_blocks=2, seed=3).nets
    assert patn.load_official_checkpoints(fresh, tmp_path) == ["G", "D_PB"]
    assert torch.equal(
        fresh["G"].model.att[1].conv_block_stream2[6].weight, src["G"].model.att[1].conv_block_stream2[6].weight
    )
    with pytest.raises(FileNotFoundError, match="120_net_netG.pth"):
        patn.load_official_checkpoints(fresh, tmp_path, epoch="120")


# ------------------------------------------------------------------------------------------------
# Presets and their documented sizes
# ------------------------------------------------------------------------------------------------


def test_market_preset_is_the_official_recipe():
    cfg = get_method("patn").preset("market")
    assert (cfg.ngf, cfg.n_blocks, cfg.n_downsampling, cfg.norm, cfg.padding, cfg.dropout) == (
        64,
        9,
        2,
        "batch",
        "reflect",
        True,
    )
    assert (cfg.ndf, cfg.d_blocks, cfg.d_dropout, cfg.pool_size, cfg.pose_sigma) == (64, 3, True, 50, 6.0)
    assert (cfg.lambda_gan, cfg.lambda_l1, cfg.lambda_perceptual, cfg.perceptual) == (5.0, 10.0, 10.0, True)
    t = cfg.train
    assert t.batch_size == 32 and t.lr == 2e-4 and tuple(t.betas) == (0.5, 0.999)
    assert t.iterations == (500 + 200) * 4000 // 32 == 87_500
    assert t.decay_start == 500 * 4000 // 32 == 62_500
    assert get_method("patn").required_weights(cfg) == ["vgg19"]
    synth = get_method("patn").preset("synth")
    assert get_method("patn").required_weights(synth) == [] and not synth.perceptual


def test_preset_table_in_docstring_is_true(market):
    """Every row of the table in generators/patn.py's docstring is recomputed."""
    rows = re.findall(
        r"\|\s*(patn|resnet) (\w+)\s*\|\s*([\d,]+)\s*\|\s*([\d.]+)\s*\|\s*([\d,]+)\s*\|"
        r"\s*([\d,]+)\s*\|",
        patn.__doc__,
    )
    assert len(rows) == 6
    num = lambda s: int(s.replace(",", ""))
    for method, preset, g_params, g_gflops, pb, pp in rows:
        nets = market.nets if (method, preset) == ("patn", "market") else build(method, preset).nets
        assert count_parameters(nets["G"]) == num(g_params), (method, preset)
        assert count_parameters(nets["D_PB"]) == num(pb) and count_parameters(nets["D_PP"]) == num(pp)
        if method == "patn" and preset == "market":
            continue  # measured in test_market_parameter_counts_and_flops
        fl = count_flops(nets["G"], (torch.zeros(1, 3, H, W), torch.zeros(1, 36, H, W)))
        assert f"{fl.gflops_per_sample:.2f}" == g_gflops, (method, preset)
    d = re.search(r"D GFLOPs per image: D_PB ([\d.]+), D_PP ([\d.]+) \(market\); ([\d.]+) / ([\d.]+)", patn.__doc__)
    for preset, (pb, pp) in (("market", d.groups()[:2]), ("synth", d.groups()[2:])):
        nets = market.nets if preset == "market" else build("patn", preset).nets
        assert f"{count_flops(nets['D_PB'], torch.zeros(1, 21, H, W)).gflops_per_sample:.2f}" == pb
        assert f"{count_flops(nets['D_PP'], torch.zeros(1, 6, H, W)).gflops_per_sample:.2f}" == pp


# ------------------------------------------------------------------------------------------------
# Inference and training
# ------------------------------------------------------------------------------------------------


def test_generate_uses_source_then_target_heatmaps():
    b = build("patn", "synth", seed=3, dropout=False)  # train-mode BN: O(1) signals, no randomness
    src = torch.rand(2, 3, H, W) * 2 - 1
    kp1, kp2 = random_kps(2, H, W, 1), random_kps(2, H, W, 2)
    with torch.no_grad():
        out = b.generate(src, kp1, kp2)
        direct = b.nets["G"](src, torch.cat([heatmaps(kp1, (H, W), 6.0), heatmaps(kp2, (H, W), 6.0)], 1))
        swapped = b.nets["G"](src, torch.cat([heatmaps(kp2, (H, W), 6.0), heatmaps(kp1, (H, W), 6.0)], 1))
    assert out.shape == (2, 3, H, W) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1
    assert torch.allclose(out, direct, atol=1e-6)
    assert not torch.allclose(out, swapped, atol=1e-3)
    with pytest.raises(ValueError, match="divisible by 4"):
        b.generate(torch.zeros(1, 3, 30, 16), kp1[:1], kp2[:1])


def tiny_bundle(method="patn", **extra):
    over = {"ngf": 4, "n_blocks": 2, "ndf": 4, "d_blocks": 1, "pool_size": 3, **extra}
    return build(method, "synth", seed=0, **over)


@pytest.mark.parametrize("method", ["patn", "resnet"])
def test_training_steps_lower_l1_and_update_every_network(method):
    torch.manual_seed(0)
    b = tiny_bundle(method, **{"train.lr": 1e-3})
    impl, cfg, nets = b.impl, b.config, b.nets
    opts = impl.make_optimizers(nets, cfg)
    ctx = impl.make_context(nets, cfg, seed=0)
    assert set(ctx.pools) == {"D_PP", "D_PB"} and "perceptual" not in ctx.losses
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in nets.items()}
    batch = tiny_batch()
    nets.train()
    history = [impl.train_step(nets, opts, batch, ctx) for _ in range(25)]
    assert set(history[0]) == {"G", "L1", "perceptual", "G_GAN", "D_PP", "D_PB"}
    assert all(math.isfinite(v) for h in history for v in h.values())
    first, last = history[0]["L1"], sum(h["L1"] for h in history[-3:]) / 3
    assert last < 0.75 * first, (first, last)
    for n, net in nets.items():
        assert any(not torch.equal(a, p) for a, p in zip(before[n], net.parameters())), n
    assert len(ctx.pools["D_PP"]) == 3 and ctx.pools["D_PB"].images.shape[1] == 3 + 18
    assert ctx.pools["D_PP"].images.shape[1] == 3 + 3


def test_loss_terms_follow_the_official_weights():
    """One step's reported terms equal the official formulas evaluated on the same tensors."""
    b = tiny_bundle(lambda_gan=3.0, lambda_l1=7.0, pool_size=50)
    impl, cfg, nets = b.impl, b.config, b.nets
    opts = impl.make_optimizers(nets, cfg)
    ctx = impl.make_context(nets, cfg, seed=0)
    batch = tiny_batch(seed=5)
    nets.eval()  # no dropout / batch statistics, so the forward can be repeated exactly
    with torch.no_grad():
        BP1, BP2 = heatmaps(batch["src_kps"], (32, 16)), heatmaps(batch["tgt_kps"], (32, 16))
        fake = nets["G"](batch["src_img"], torch.cat([BP1, BP2], 1))
        l1 = 7.0 * (fake - batch["tgt_img"]).abs().mean()
        bce = torch.nn.BCELoss()
        p_pb = nets["D_PB"](torch.cat([fake, BP2], 1))
        p_pp = nets["D_PP"](torch.cat([fake, batch["src_img"]], 1))
        gan = 3.0 * (bce(p_pb, torch.ones_like(p_pb)) + bce(p_pp, torch.ones_like(p_pp))) / 2
        # D_PP is not changed by the G step; the pool (size 50) is empty, so it returns this batch.
        real_pp = nets["D_PP"](torch.cat([batch["tgt_img"], batch["src_img"]], 1))
    out = impl.train_step(nets, opts, batch, ctx)
    assert out["L1"] == pytest.approx(l1.item(), rel=1e-5)
    assert out["G_GAN"] == pytest.approx(gan.item(), rel=1e-5)
    assert out["perceptual"] == 0.0
    assert out["G"] == pytest.approx(l1.item() + gan.item(), rel=1e-5)
    d_pp = 0.5 * 3.0 * (bce(real_pp, torch.ones_like(real_pp)) + bce(p_pp, torch.zeros_like(p_pp)))
    assert out["D_PP"] == pytest.approx(d_pp.item(), rel=1e-4)


def test_training_step_under_bf16_autocast_is_finite():
    b = tiny_bundle()
    impl, cfg, nets = b.impl, b.config, b.nets
    opts = impl.make_optimizers(nets, cfg)
    ctx = impl.make_context(nets, cfg, amp_dtype=torch.bfloat16, seed=0)
    assert ctx.scaler is None  # bf16 / CPU: no GradScaler
    out = impl.train_step(nets, opts, tiny_batch(), ctx)
    assert all(math.isfinite(v) for v in out.values())
    assert ctx.pools["D_PB"].images.dtype == torch.float32


def test_context_state_roundtrip_and_missing_vgg(tmp_path, monkeypatch):
    b = tiny_bundle()
    impl, cfg, nets = b.impl, b.config, b.nets
    opts = impl.make_optimizers(nets, cfg)
    ctx = impl.make_context(nets, cfg, seed=4)
    for _ in range(3):
        impl.train_step(nets, opts, tiny_batch(), ctx)
    ctx.iteration = 3
    state = ctx.state_dict()
    fresh = impl.make_context(nets, cfg, seed=99)
    fresh.load_state_dict(state)
    assert fresh.iteration == 3
    probe = torch.randn(4, 6, 32, 16)
    assert torch.equal(ctx.pools["D_PP"].query(probe), fresh.pools["D_PP"].query(probe))

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(MissingWeightsError) as err:
        impl.make_context(nets, apply_overrides(cfg, {"perceptual": True}))
    text = str(err.value)
    assert str(tmp_path / "empty" / "hub" / "checkpoints" / VGG19_FILE) in text
    assert "--no-perceptual" in text and "--vgg-weights" in text
    # With a weights file given by path the perceptual term is on.
    vgg = vgg19_prefix(4)
    path = tmp_path / "my_vgg.pth"
    torch.save({f"features.{k}": v for k, v in vgg.state_dict().items()}, path)
    ctx = impl.make_context(nets, apply_overrides(cfg, {"perceptual": True}), vgg_weights=str(path))
    assert "perceptual" in ctx.losses
    out = impl.train_step(nets, opts, tiny_batch(), ctx)
    assert out["perceptual"] > 0


# ------------------------------------------------------------------------------------------------
# Registry, overrides, schedule
# ------------------------------------------------------------------------------------------------


def test_the_prologue_and_tail_every_method_shares():
    batch = tiny_batch()
    checked = []
    ctx = StepContext(channels_last=True)
    x = ctx.batch(batch, checked.append)
    assert checked == [x.src_img] and x.size == (32, 16) and x.device == torch.device("cpu")
    cl = torch.channels_last
    assert x.src_img.is_contiguous(memory_format=cl) and x.tgt_img.is_contiguous(memory_format=cl)
    assert torch.equal(x.src_img, batch["src_img"]) and torch.equal(x.tgt_kps, torch.as_tensor(batch["tgt_kps"]))
    pose = torch.rand(4, 18, 32, 16)
    assert ctx.layout(pose).is_contiguous(memory_format=cl) and StepContext().layout(pose) is pose
    assert like_source(pose, x.src_img).is_contiguous(memory_format=cl) and like_source(pose, batch["src_img"]) is pose

    class Scaler:
        updates = 0

        def update(self):
            self.updates += 1

    ctx.scaler = Scaler()
    out = ctx.finish({"b": torch.tensor(2.5), "a": torch.tensor(1.0, requires_grad=True) * 3})
    assert out == {"b": 2.5, "a": 3.0} and list(out) == ["b", "a"] and ctx.scaler.updates == 1

    net, kps = torch.nn.Conv2d(3, 3, 1), batch["src_kps"][:1]
    with pytest.raises(ValueError, match="divisible by 4"):
        inference_batch(net, torch.rand(1, 3, 30, 16), kps, kps, lambda img: check_divisible(img, 2))
    x = inference_batch(net, torch.rand(1, 3, 32, 16), kps, kps.numpy(), lambda img: check_divisible(img, 2))
    assert x.tgt_img is None and torch.equal(x.tgt_kps, kps)


def test_registry_and_overrides():
    assert {"patn", "resnet"} <= set(generators.METHODS)
    assert generators.get_method("patn").name == "patn"
    with pytest.raises(ValueError, match=r"unknown method 'pathn'.*patn.*resnet"):
        get_method("pathn")
    with pytest.raises(ValueError, match=r"no preset 'fashion'.*market.*synth"):
        build("patn", "fashion")
    with pytest.raises(ValueError, match=r"unknown config field 'ngff'"):
        build("patn", "synth", ngff=3)
    b = build(
        "patn",
        "synth",
        **{"train.iterations": "40", "train.decay_start": 10, "dropout": "false", "train.betas": "0.9,0.99"},
    )
    assert b.config.train.iterations == 40 and b.config.train.decay_start == 10
    assert b.config.dropout is False and b.config.train.betas == (0.9, 0.99)
    assert not any(isinstance(m, torch.nn.Dropout) for m in b.nets["G"].modules())
    assert get_method("patn").preset("synth").train.iterations != 40  # presets untouched
    with pytest.raises(ValueError, match="expected int"):
        build("patn", "synth", **{"train.iterations": "many"})
    with pytest.raises(ValueError, match="decay_start"):
        build("patn", "synth", **{"train.decay_start": 10**9})
    cfg = get_method("resnet").preset("market13")
    from dataclasses import asdict

    assert get_method("resnet").config_from_dict(asdict(cfg)) == cfg


def test_lr_schedule():
    cfg = get_method("patn").preset("market")
    f = lambda it: lr_factor(it, cfg.train.decay_start, cfg.train.iterations)
    assert f(0) == 1.0 and f(62_499) == 1.0 and f(62_500) == 1.0
    assert f(75_000) == pytest.approx(0.5) and f(81_250) == pytest.approx(0.25)
    assert f(87_500) == 0.0 and f(90_000) == 0.0
    # The schedulers apply it per iteration to every optimizer.
    b = tiny_bundle(**{"train": TrainSchedule(iterations=10, decay_start=6, lr=1e-3)})
    opts = b.impl.make_optimizers(b.nets, b.config)
    scheds = b.impl.make_schedulers(opts, b.config)
    lrs = []
    for _ in range(10):
        lrs.append(opts["D_PB"].param_groups[0]["lr"])
        for o in opts.values():
            o.step()
        for s in scheds.values():
            s.step()
    assert lrs[:7] == [1e-3] * 7
    assert lrs[7:] == pytest.approx([7.5e-4, 5e-4, 2.5e-4])
    assert opts["G"].param_groups[0]["lr"] == 0.0
