"""SPGNet-pose: official sizes, the generator's function against an independent loop-based
reference, ACE, region maps, part flow, augmentation, losses and training steps.

The reference forward below is written from the official models/SPG_net_market.py layer list
(docs/methods.md#spgnet) with torch.nn.functional, per-sample and per-region Python
loops (as the official Zencoder and ACE do), and weights looked up by state_dict key: it shares
no code with generators/spgnet.py.
"""

from __future__ import annotations

import dataclasses
import math
import re

import generator_inputs
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import generators
from augment.data.keypoints import JOINT_INDEX
from augment.data.pose import joint_disks
from generators import spgnet
from generators.base import apply_overrides, build, count_flops, count_parameters, get_method
from generators.checkpoint import load, save
from generators.inference import transfer
from generators.losses import VGG19_FILE, VGG19_LAYERS, MissingWeightsError, vgg19_prefix

H, W = 128, 64
OFFICIAL_G = 30_914_805  # regions=20 (CIHP), the official Market generator
MARKET_G = 27_070_005  # regions=11 (pose part maps)
MARKET_D = 2_787_137

TINY = dict(
    nf=4,
    max_nf=8,
    num_scales=3,
    num_warp_scales=2,
    style_length=8,
    spade_hidden=4,
    zencoder_nf=2,
    ndf=4,
    d_layers=2,
    gan_start=0,
)


@pytest.fixture(scope="module")
def market():
    return build("spgnet", "market", seed=0)


@pytest.fixture(scope="module")
def official():
    return build("spgnet", "market", seed=0, regions=20)


def tiny_bundle(seed=0, **extra):
    return build("spgnet", "synth", seed=seed, **{**TINY, **extra})


def walking_kps(batch: int, h: int = H, w: int = W, seed: int = 0) -> torch.Tensor:
    """Plausible standing poses (all 18 joints) with random jitter, (B,18,2) (y,x)."""
    base = {
        "nose": (16, 32),
        "neck": (28, 32),
        "Rsho": (30, 22),
        "Relb": (50, 18),
        "Rwri": (68, 16),
        "Lsho": (30, 42),
        "Lelb": (50, 46),
        "Lwri": (68, 48),
        "Rhip": (66, 26),
        "Rkne": (90, 25),
        "Rank": (116, 24),
        "Lhip": (66, 38),
        "Lkne": (90, 39),
        "Lank": (116, 40),
        "Leye": (14, 35),
        "Reye": (14, 29),
        "Lear": (16, 38),
        "Rear": (16, 26),
    }
    k = torch.tensor([base[n] for n in sorted(base, key=JOINT_INDEX.get)], dtype=torch.float64)
    k = k * torch.tensor([h / H, w / W], dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    jitter = torch.randn(batch, 18, 2, generator=g, dtype=torch.float64) * torch.tensor([h, w]) / 40
    k = (k + jitter).round().long()
    return torch.stack([k[..., 0].clamp(0, h - 1), k[..., 1].clamp(0, w - 1)], -1)


def tiny_batch(batch=4, h=32, w=16, seed=0):
    return generator_inputs.tiny_batch(batch, h, w, seed, kps=walking_kps)


def randomise(net: torch.nn.Module, seed: int) -> None:
    """Non-trivial BN running stats and ACE blend / noise parameters (zeros at init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if isinstance(m, spgnet.ACE):
                m.blending_gamma.fill_(float(torch.randn(1, generator=g)))
                m.blending_beta.fill_(float(torch.randn(1, generator=g)))
                m.noise_var.copy_(torch.randn(m.noise_var.shape, generator=g))
            if isinstance(m, spgnet.RegionLinear):
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


# ------------------------------------------------------------------------------------------------
# Sizes
# ------------------------------------------------------------------------------------------------


def expected_generator_params(R, nf=32, max_nf=128, scales=5, warp_scales=4, S=128, hidden=64, zf=32):
    """The official layer list, counted by hand (docs/methods.md#spgnet)."""
    bn = lambda c: 2 * c
    ace = lambda c: (
        (R * hidden * 9 + hidden) + 2 * (hidden * c * 9 + c) + R * (S * S + S) + 2 * (S * c * 9 + c) + c + 2
    )  # SPADE, fc_j, style convs, noise scales, 2 blend logits
    zen = (
        (3 * zf * 9 + zf)
        + (zf * 2 * zf * 9 + 2 * zf)
        + (2 * zf * 4 * zf * 9 + 4 * zf)
        + (4 * zf * 8 * zf * 9 + 8 * zf)
        + (8 * zf * S * 9 + S)
    )
    total = zen + (18 * nf + bn(nf)) + (3 * nf + bn(nf)) + (nf * 3 * 49 + 3)
    for l in range(scales):
        c_in, c_out = min(nf * (l + 1), max_nf), min(nf * (l + 2), max_nf)
        res = c_in * c_in * 9 + bn(c_in)
        down = c_in * c_out * 9 + bn(c_out)
        total += 2 * (2 * res + down)  # two encoders
        if l < warp_scales:
            total += 2 * (2 * c_in * c_in + bn(c_in) + 2 * c_in * c_in * 9 + bn(c_in))
        if l == scales - 1:
            total += 2 * c_out * c_out + bn(c_out)  # dec_fuse
        total += c_out * 4 * c_in * 9 + ace(c_in)  # upsample + its ACE
        total += 2 * (2 * c_in * c_in + 2 * c_in * c_in * 9 + 2 * ace(2 * c_in))
    return total


def test_official_and_variant_parameter_counts(official, market):
    assert count_parameters(official.nets["G"]) == OFFICIAL_G == expected_generator_params(20)
    assert round(OFFICIAL_G / 1e6, 1) == 30.9  # official: 30.9M
    assert count_parameters(market.nets["G"]) == MARKET_G == expected_generator_params(11)
    assert count_parameters(market.nets["D"]) == MARKET_D == count_parameters(official.nets["D"])
    assert round(MARKET_D / 1e6, 2) == 2.79  # official: 2.79M
    # 25 ACEs, each with one 128x128 fc per region: the difference is in fc_j and SPADE's first conv.
    aces = [m for m in market.nets["G"].modules() if isinstance(m, spgnet.ACE)]
    assert len(aces) == 25
    assert OFFICIAL_G - MARKET_G == 25 * 9 * (128 * 128 + 128 + 64 * 9)


def test_preset_table_in_docstring_is_true(official, market):
    rows = re.findall(
        r"\|\s*([\w ,=()]+?)\s*\|\s*([\d,]+)\s*\|\s*([\d.]+)\s*\|\s*([\d,]+)\s*\|"
        r"\s*([\d.]+)\s*\|",
        spgnet.__doc__,
    )
    assert [r[0] for r in rows] == ["official, regions=20", "market (regions=11)", "synth"]
    num = lambda s: int(s.replace(",", ""))
    builds = {"official, regions=20": official, "market (regions=11)": market, "synth": build("spgnet", "synth")}
    for label, g_params, g_gflops, d_params, d_gflops in rows:
        b = builds[label]
        R = b.config.regions
        assert count_parameters(b.nets["G"]) == num(g_params), label
        assert count_parameters(b.nets["D"]) == num(d_params), label
        inputs = (
            torch.zeros(1, 18, H, W),
            torch.zeros(1, 3, H, W),
            torch.zeros(1, R, H, W),
            torch.zeros(1, R, H, W),
            torch.zeros(1, 2, H, W),
            torch.zeros(1, 1, H, W),
        )
        assert f"{count_flops(b.nets['G'], inputs).gflops_per_sample:.2f}" == g_gflops, label
        assert f"{count_flops(b.nets['D'], torch.zeros(1, 24, H, W)).gflops_per_sample:.2f}" == d_gflops


def test_layer_shapes_follow_the_official_structure(market):
    b = build("spgnet", "synth", seed=0)
    G = b.nets["G"]
    cfg = b.config
    shapes = {}
    hooks = [
        m.register_forward_hook(lambda m, a, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
        for n, m in G.named_children()
    ]
    c = b.impl.conditions(G, walking_kps(2, seed=1), walking_kps(2, seed=2), (H, W), torch.device("cpu"))
    G.eval()
    with torch.no_grad():
        out = G(c.joints, torch.zeros(2, 3, H, W), c.s_seg, c.d_seg, c.flow, c.vis)
    for h in hooks:
        h.remove()
    assert out.shape == (2, 3, H, W)
    nf, mx = cfg.nf, cfg.max_nf
    for l in range(cfg.num_scales):
        c_in, c_out = min(nf * (l + 1), mx), min(nf * (l + 2), mx)
        at = (H >> l, W >> l)
        for s in ("encp", "enca"):
            assert shapes[f"{s}_{l}_res_0"] == (2, c_in, *at)
            assert shapes[f"{s}_{l}_downsample"] == (2, c_out, H >> (l + 1), W >> (l + 1))
        assert shapes[f"dec_{l}_upsample"] == (2, c_in, *at)  # PixelShuffle(2)
        assert shapes[f"dec_{l}_upsample_norm"] == (2, c_in, *at)
        assert shapes[f"dec_{l}_res_0"] == (2, c_in, *at)
        assert (f"enca_{l}_vis_0" in shapes) == (l < cfg.num_warp_scales)
    assert shapes["dec_fuse"] == (2, min(nf * (cfg.num_scales + 1), mx), H >> cfg.num_scales, W >> cfg.num_scales)
    assert shapes["Zencoder"] == (2, spgnet.NUM_REGIONS, cfg.style_length)
    D = market.nets["D"]
    assert D(torch.zeros(1, 24, H, W)).shape == (1, 1, 14, 6)
    convs = [m for m in D.model if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 128, 256, 512, 1]
    assert [m.stride[0] for m in convs] == [2, 2, 2, 1, 1]
    assert [m.bias is not None for m in convs] == [True, False, False, False, True]
    assert isinstance(D.model[-1], torch.nn.Sigmoid)


def test_initialisation_follows_official_kaiming(market):
    G = market.nets["G"]
    ace = G.dec_0_res_0.conv_norm
    assert torch.equal(ace.blending_gamma, torch.zeros(1)) and torch.equal(ace.noise_var, torch.zeros(64))
    w = G.dec_2_res_1.conv.weight_orig  # spectral-norm conv
    assert w.std().item() == pytest.approx(math.sqrt(2 / (w[0].numel())), rel=0.05)
    fc = ace.fc_mu.weight  # (11,128,128)
    assert fc.shape == (11, 128, 128) and fc.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.05)
    assert torch.equal(ace.fc_mu.bias, torch.zeros(11, 128)) and torch.equal(ace.conv_gamma.bias, torch.zeros(64))
    bn = G.encp_1_res_0.conv[1]
    assert bn.weight.std().item() == pytest.approx(0.02, rel=0.3) and torch.equal(bn.bias, torch.zeros(64))


# ------------------------------------------------------------------------------------------------
# Independent reference forward
# ------------------------------------------------------------------------------------------------


def _bn(sd, key, x, affine=True):
    return F.batch_norm(
        x,
        sd[f"{key}.running_mean"],
        sd[f"{key}.running_var"],
        sd[f"{key}.weight"] if affine else None,
        sd[f"{key}.bias"] if affine else None,
        training=False,
        eps=1e-5,
    )


def _sn_weight(sd, key):
    w = sd[f"{key}.weight_orig"]
    sigma = sd[f"{key}.weight_u"] @ w.reshape(w.shape[0], -1) @ sd[f"{key}.weight_v"]
    return w / sigma


def _conv(sd, key, x, stride=1, padding=0):
    return F.conv2d(x, sd[f"{key}.weight"], sd.get(f"{key}.bias"), stride, padding)


def ref_zencoder(sd, img, seg):
    x = F.pad(img, (1, 1, 1, 1), mode="reflect")
    x = F.leaky_relu(F.instance_norm(_conv(sd, "Zencoder.model.1", x)), 0.2)
    x = F.leaky_relu(F.instance_norm(_conv(sd, "Zencoder.model.4", x, 2, 1)), 0.2)
    x = F.leaky_relu(F.instance_norm(_conv(sd, "Zencoder.model.7", x, 2, 1)), 0.2)
    x = F.conv_transpose2d(x, sd["Zencoder.model.10.weight"], sd["Zencoder.model.10.bias"], 2, 1, 1)
    x = F.leaky_relu(F.instance_norm(x), 0.2)
    codes = torch.tanh(_conv(sd, "Zencoder.model.14", F.pad(x, (1, 1, 1, 1), mode="reflect")))
    seg = F.interpolate(seg, size=codes.shape[2:], mode="nearest")
    out = torch.zeros(codes.shape[0], seg.shape[1], codes.shape[1])
    for i in range(codes.shape[0]):  # official loops
        for j in range(seg.shape[1]):
            mask = seg[i, j].bool()
            if mask.sum() > 0:
                out[i, j] = codes[i][:, mask].mean(1)
    return out


def ref_ace(sd, key, x, seg, codes):
    n = _bn(sd, f"{key}.param_free_norm", x, affine=False)
    seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
    S = codes.shape[2]
    middle = torch.zeros(x.shape[0], S, *x.shape[2:])
    for i in range(x.shape[0]):
        for j in range(seg.shape[1]):
            mask = seg[i, j].bool()
            if mask.sum() > 0:
                mu = F.relu(sd[f"{key}.fc_mu.weight"][j] @ codes[i, j] + sd[f"{key}.fc_mu.bias"][j])
                middle[i][:, mask] = mu[:, None].expand(S, int(mask.sum()))
    g_s, b_s = _conv(sd, f"{key}.conv_gamma", middle, padding=1), _conv(sd, f"{key}.conv_beta", middle, padding=1)
    actv = F.relu(_conv(sd, f"{key}.Spade.mlp_shared.0", seg, padding=1))
    g_p = _conv(sd, f"{key}.Spade.mlp_gamma", actv, padding=1)
    b_p = _conv(sd, f"{key}.Spade.mlp_beta", actv, padding=1)
    a_g, a_b = torch.sigmoid(sd[f"{key}.blending_gamma"]), torch.sigmoid(sd[f"{key}.blending_beta"])
    return n * (1 + a_g * g_s + (1 - a_g) * g_p) + a_b * b_s + (1 - a_b) * b_p


def ref_res(sd, key, x, a=None):
    r = x if a is None else torch.cat([x, _bn(sd, f"{key}.conv_a.1", _conv(sd, f"{key}.conv_a.0", F.relu(a)))], 1)
    return x + _bn(sd, f"{key}.conv.1", _conv(sd, f"{key}.conv.0", F.relu(r), padding=1))


def ref_warp(x, flow):
    b, _, h, w = x.shape
    xx = torch.arange(w).view(1, -1).repeat(h, 1).float()
    yy = torch.arange(h).view(-1, 1).repeat(1, w).float()
    grid = torch.stack([xx, yy])[None] + flow
    grid = torch.stack([2 * grid[:, 0] / (w - 1) - 1, 2 * grid[:, 1] / (h - 1) - 1], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def ref_generator(sd, cfg, x_p, x_a, s_seg, d_seg, flow, vis):
    codes = ref_zencoder(sd, x_a, s_seg)
    hp, ha = [], []
    x = _bn(sd, "encp_pre_conv.1", _conv(sd, "encp_pre_conv.0", x_p))
    for l in range(cfg.num_scales):
        for i in range(2):
            x = ref_res(sd, f"encp_{l}_res_{i}", x)
            hp.append(x)
        x = _bn(sd, f"encp_{l}_downsample.2", _conv(sd, f"encp_{l}_downsample.1", F.relu(x), 2, 1))
    xp = x
    x = _bn(sd, "enca_pre_conv.1", _conv(sd, "enca_pre_conv.0", x_a))
    for l in range(cfg.num_scales):
        for i in range(2):
            x = ref_res(sd, f"enca_{l}_res_{i}", x)
            if flow is not None and l < cfg.num_warp_scales:
                fl = F.avg_pool2d(flow, 2**l) / 2**l
                vl = -F.max_pool2d(-vis.round(), 2**l)
                xw = ref_warp(x, fl)
                ha.append(ref_res(sd, f"enca_{l}_vis_{i}", xw, torch.cat([xw * (vl == 0), xw * (vl == 1)], 1)))
            else:
                ha.append(x)
        x = _bn(sd, f"enca_{l}_downsample.2", _conv(sd, f"enca_{l}_downsample.1", F.relu(x), 2, 1))
    x = _bn(sd, "dec_fuse.1", _conv(sd, "dec_fuse.0", torch.cat([xp, x], 1)))
    for l in range(cfg.num_scales - 1, -1, -1):
        x = F.pixel_shuffle(_conv(sd, f"dec_{l}_upsample.1", F.relu(x), padding=1), 2)
        x = ref_ace(sd, f"dec_{l}_upsample_norm", x, d_seg, codes)
        for i in (1, 0):
            k = f"dec_{l}_res_{i}"
            a = torch.cat([hp.pop(), ha.pop()], 1)
            a = F.conv2d(F.relu(ref_ace(sd, f"{k}.conv_a_norm", a, d_seg, codes)), _sn_weight(sd, f"{k}.conv_a"))
            r = torch.cat([x, a], 1)
            x = x + F.conv2d(
                F.relu(ref_ace(sd, f"{k}.conv_norm", r, d_seg, codes)), _sn_weight(sd, f"{k}.conv"), padding=1
            )
    return torch.tanh(_conv(sd, "dec_output.1", F.pad(x, (3, 3, 3, 3), mode="reflect")))


@pytest.mark.parametrize("feat_warp", [True, False])
def test_generator_computes_the_official_function(feat_warp):
    b = tiny_bundle(seed=2, feat_warp=feat_warp, n_residual_blocks=2)
    G = b.nets["G"]
    randomise(G, 3)
    G.eval()
    h, w = 32, 16
    g = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 11, (2, 2, h // 4, w // 4), generator=g)
    labels[:, :, 0, 0] = 0
    labels[0, 0] = torch.where(labels[0, 0] == 5, 0, labels[0, 0])  # region 5 empty in one source
    segs = F.interpolate(
        F.one_hot(labels, 11).permute(0, 1, 4, 2, 3).float().flatten(0, 1), size=(h, w), mode="nearest"
    ).view(2, 2, 11, h, w)
    s_seg, d_seg = segs[:, 0], segs[:, 1]
    x_p = (torch.rand(2, 18, h, w, generator=g) > 0.9).float()
    x_a = torch.rand(2, 3, h, w, generator=g) * 2 - 1
    flow = torch.randn(2, 2, h, w, generator=g) * 3
    vis = torch.randint(0, 3, (2, 1, h, w), generator=g).float()
    with torch.no_grad():
        out = G(x_p, x_a, s_seg, d_seg, flow if feat_warp else None, vis if feat_warp else None)
        ref = ref_generator(G.state_dict(), b.config, x_p, x_a, s_seg, d_seg, flow if feat_warp else None, vis)
    assert out.shape == (2, 3, h, w) and out.abs().max() <= 1
    assert out.std() > 0.05  # not a degenerate output
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------------
# ACE, region pooling, fc_j
# ------------------------------------------------------------------------------------------------


def test_ace_blends_both_branches_equally_at_init():
    torch.manual_seed(0)
    ace = spgnet.ACE(6, regions=11, style_length=8, spade_hidden=4).eval()
    assert torch.sigmoid(ace.blending_gamma).item() == 0.5
    labels = torch.randint(0, 11, (2, 8, 4))
    seg = F.one_hot(labels, 11).permute(0, 3, 1, 2).float()
    codes, x = torch.randn(2, 11, 8), torch.randn(2, 6, 8, 4)
    with torch.no_grad():
        ace.param_free_norm.running_var.fill_(2.0)
        n = x / math.sqrt(2.0 + 1e-5)
        middle = torch.einsum("brs,brhw->bshw", F.relu(ace.fc_mu(codes)), seg)
        g_s, b_s = ace.conv_gamma(middle), ace.conv_beta(middle)
        g_p, b_p = ace.Spade(seg)
        out = ace(x, seg, codes)
        torch.testing.assert_close(out, n * (1 + 0.5 * g_s + 0.5 * g_p) + 0.5 * b_s + 0.5 * b_p)
        ace.blending_gamma.fill_(30.0)
        ace.blending_beta.fill_(-30.0)  # style gamma, SPADE beta
        torch.testing.assert_close(ace(x, seg, codes), n * (1 + g_s) + b_p, atol=1e-5, rtol=1e-5)
    # Noise: learned per-channel scale of one N(0,1) map per pixel, in training forwards only.
    ace.noise_var.data.fill_(0.0)
    ace.noise_var.data[2] = 1.0
    ace.train()
    torch.manual_seed(1)
    a = ace(x, seg, codes)
    torch.manual_seed(1)
    ace.noise_var.data[2] = 0.0
    b = ace(x, seg, codes)
    assert torch.equal(a[:, [0, 1, 3, 4, 5]], b[:, [0, 1, 3, 4, 5]]) and not torch.equal(a[:, 2], b[:, 2])


def test_region_pooling_matches_a_loop_reference():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(3, 5, 6, 4, generator=g)
    labels = torch.randint(0, 7, (3, 12, 8), generator=g)
    labels[1][labels[1] == 4] = 0  # an empty region
    seg = F.one_hot(labels, 7).permute(0, 3, 1, 2).float()
    pooled = spgnet.region_average(codes, seg)  # seg resized 12x8 -> 6x4
    small = labels[:, ::2, ::2]  # nearest = even rows/cols
    for i in range(3):
        for j in range(7):
            mask = small[i] == j
            want = codes[i][:, mask].mean(1) if mask.any() else torch.zeros(5)
            torch.testing.assert_close(pooled[i, j], want)
    assert torch.equal(pooled[1, 4], torch.zeros(5))


def test_region_fc_matches_separate_linears():
    torch.manual_seed(0)
    fc = spgnet.RegionLinear(5, 8)
    fc.bias.data.normal_()
    codes = torch.randn(3, 5, 8)
    out = fc(codes)
    for j in range(5):
        torch.testing.assert_close(out[:, j], F.linear(codes[:, j], fc.weight[j], fc.bias[j]))


# ------------------------------------------------------------------------------------------------
# Region maps and flow
# ------------------------------------------------------------------------------------------------


def test_region_maps_are_one_hot_with_documented_priority():
    kps = walking_kps(3, seed=5)
    kps[1, JOINT_INDEX["Rwri"]] = kps[1, JOINT_INDEX["Rhip"]] - torch.tensor([10, -4])  # forearm over torso
    seg = spgnet.pose_regions(kps, (H, W))
    assert seg.shape == (3, 11, H, W) and torch.equal(seg.sum(1), torch.ones(3, H, W))
    labels = seg.argmax(1)
    names = spgnet.REGION_NAMES
    assert set(labels.unique().tolist()) == set(range(11))  # every part drawn
    # The torso quad covers the midpoint between hips and shoulders; the head its joints.
    mid = (kps[0, JOINT_INDEX["Rhip"]] + kps[0, JOINT_INDEX["Lsho"]]) // 2
    assert names[labels[0, mid[0], mid[1]]] == "torso"
    assert names[labels[0, kps[0, 0, 0], kps[0, 0, 1]]] == "head"
    assert labels[0, 0, 0] == 0 and labels[0, H - 1, W - 1] == 0  # background
    # Where the moved forearm crosses the torso quad, the forearm wins.
    torso = spgnet.torso_quads(kps[1:2], (H, W))[0]
    forearm = spgnet.part_masks(kps[1:2], (H, W))[0, names.index("Relb-Rwri") - 1].bool()
    both = torso & forearm
    assert both.any() and (labels[1][both] == names.index("Relb-Rwri")).all()
    # Without a torso joint there is no torso scale: nothing but background.
    kps[2, JOINT_INDEX["Lhip"]] = -1
    assert (spgnet.region_labels(kps[2:], (H, W)) == 0).all()


def test_translation_flow_moves_pixels_and_marks_background():
    tgt = walking_kps(2, seed=7)
    src = tgt + torch.tensor([5, -3])  # source = target moved (dy, dx)
    labels = spgnet.region_labels(tgt, (H, W))
    flow, vis = spgnet.part_flow(src, tgt, labels)
    body = labels > 0
    assert flow.shape == (2, 2, H, W) and vis.shape == (2, 1, H, W)
    assert (vis[:, 0][body] == 0).all() and (vis[:, 0][~body] == 2).all()
    torch.testing.assert_close(flow[:, 0][body], torch.full_like(flow[:, 0][body], -3.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(flow[:, 1][body], torch.full_like(flow[:, 1][body], 5.0), atol=1e-3, rtol=0)
    assert (flow[:, :, ~body[0]][0] == 0).all()
    # Warping the source image with it puts source pixel (y+5, x-3) at target pixel (y, x).
    img = torch.rand(2, 3, H, W)
    warped = spgnet.warp(img, flow)
    ys, xs = torch.nonzero(body[0], as_tuple=True)
    ok = (ys + 5 < H) & (xs - 3 >= 0)
    torch.testing.assert_close(warped[0][:, ys[ok], xs[ok]], img[0][:, ys[ok] + 5, xs[ok] - 3], atol=1e-4, rtol=0)
    # A limb missing in the source on both sides has no correspondence: vis 1, flow 0.
    src[0, JOINT_INDEX["Rkne"]] = -1
    src[0, JOINT_INDEX["Lkne"]] = -1
    flow, vis = spgnet.part_flow(src, tgt, labels)
    shin = labels[0] == spgnet.REGION_NAMES.index("Rkne-Rank")
    assert shin.any() and (vis[0, 0][shin] == 1).all() and (flow[0][:, shin] == 0).all()


def test_warp_is_align_corners_true():
    x = torch.rand(1, 2, 6, 5)
    torch.testing.assert_close(spgnet.warp(x, torch.zeros(1, 2, 6, 5)), x, atol=1e-6, rtol=0)  # identity
    shifted = spgnet.warp(x, torch.ones(1, 2, 6, 5))  # sample (x+1, y+1)
    torch.testing.assert_close(shifted[..., :-1, :-1], x[..., 1:, 1:])
    assert (shifted[..., -1, :] == 0).all()  # zero padding outside


def test_feat_warp_off_runs_without_flow():
    b = tiny_bundle(feat_warp=False)
    G = b.nets["G"]
    batch = tiny_batch(2)
    c = b.impl.conditions(G, batch["src_kps"], batch["tgt_kps"], (32, 16), torch.device("cpu"))
    assert c.flow is None and c.vis is None
    G.train()
    out = b.generate(batch["src_img"], batch["src_kps"], batch["tgt_kps"])
    out.mean().backward()
    assert out.shape == (2, 3, 32, 16)
    assert G.enca_0_vis_0.conv[0].weight.grad is None  # built, unused (as officially)
    assert G.enca_0_res_0.conv[0].weight.grad is not None
    on = tiny_bundle(feat_warp=True)
    on.nets.eval()
    b.nets.eval()
    with torch.no_grad():
        assert not torch.allclose(
            on.generate(batch["src_img"], batch["src_kps"], batch["tgt_kps"]),
            b.generate(batch["src_img"], batch["src_kps"], batch["tgt_kps"]),
        )


# ------------------------------------------------------------------------------------------------
# Augmentation
# ------------------------------------------------------------------------------------------------


def test_target_augmentation_matches_the_official_matrix():
    img = torch.rand(2, 3, 32, 16)
    kps = walking_kps(2, 32, 16, seed=3)
    one, zero = torch.ones(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    out, moved = spgnet.affine_target(img, kps, one, torch.tensor([3.0, 0.0]), torch.tensor([-2.0, 0.0]))
    torch.testing.assert_close(out[0][:, :-2, 3:], img[0][:, 2:, :-3], atol=1e-5, rtol=0)  # x+3, y-2
    # Border replicated: the 3 new columns repeat input column 0, the 2 new rows input row 31.
    torch.testing.assert_close(out[0][:, :-2, :3], img[0][:, 2:, :1].expand(3, 30, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0][:, -2:, 3:], img[0][:, 31:, :-3].expand(3, 2, 13), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], img[1], atol=1e-5, rtol=0)  # identity
    shifted = kps[0] + torch.tensor([-2, 3])
    inside = (shifted[:, 0] >= 0) & (shifted[:, 1] < 16)
    assert torch.equal(moved[0][inside], shifted[inside]) and (moved[0][~inside] == -1).all()
    # Scale 1.2 about (x, y) = (H/2, W/2) = (16, 8) as the official (H, W-swapped) matrix writes it.
    s = torch.tensor([1.2, 1.2], dtype=torch.float64)
    _, scaled = spgnet.affine_target(img, kps, s, zero, zero)
    want_x = torch.round(1.2 * kps[..., 1].double() + 0.5 * 32 * (1 - 1.2))
    want_y = torch.round(1.2 * kps[..., 0].double() + 0.5 * 16 * (1 - 1.2))
    keep = (want_x >= 0) & (want_x < 16) & (want_y >= 0) & (want_y < 32)
    assert torch.equal(scaled[..., 1][keep], want_x[keep].long()) and (scaled[~keep] == -1).all()
    # Draws: s = 1.2^U(-1,1), shifts in [-10, 10) (checked through the keypoint of a fixed point).
    torch.manual_seed(0)
    centre = torch.full((1, 18, 2), -1)
    centre[0, 0] = torch.tensor([32, 32])  # (y, x) = (W/2, H/2): the scale centre
    big = torch.zeros(400, 3, 64, 64)
    _, moved = spgnet.augment_target(big, centre.expand(400, 18, 2))
    d = moved[:, 0] - torch.tensor([32, 32])  # a pure shift there: (dy, dx)
    assert d.min() == -10 and d.max() == 9 and len(d.unique()) > 15


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def test_market_preset_is_the_official_recipe():
    cfg = get_method("spgnet").preset("market")
    t = cfg.train
    assert (t.batch_size, t.lr, t.betas) == (32, 2e-4, (0.5, 0.999))
    assert t.iterations == 10 * (263_632 // 32) == 82_380 and t.decay_start == t.iterations
    assert cfg.gan_start == 5 * 8_238 == 41_190
    assert (cfg.lambda_l1, cfg.lambda_content, cfg.lambda_gan) == (1.0, 1.0, 0.01)
    assert cfg.content_weights == (0.125,) * 5 and cfg.perceptual
    assert (cfg.lr_D, cfg.weight_decay, cfg.weight_decay_D) == (2e-5, 0.0, 4e-4)
    assert (cfg.nf, cfg.max_nf, cfg.num_scales, cfg.num_warp_scales) == (32, 128, 5, 4)
    assert (cfg.augment, cfg.aug_scale, cfg.aug_shift, cfg.joint_radius) == (True, 1.2, 10, 4)
    assert cfg.regions == 11 and cfg.feat_warp
    impl = get_method("spgnet")
    assert impl.required_weights(cfg) == ["vgg19"]
    synth = impl.preset("synth")
    assert impl.required_weights(synth) == [] and not synth.perceptual
    b = tiny_bundle()
    opts = impl.make_optimizers(b.nets, b.config)
    g, d = opts["G"].param_groups[0], opts["D"].param_groups[0]
    assert (g["lr"], g["weight_decay"], d["lr"], d["weight_decay"]) == (2e-4, 0.0, 2e-5, 4e-4)
    assert d["betas"] == (0.5, 0.999)


def test_training_steps_lower_l1_and_start_the_gan_late():
    torch.manual_seed(0)
    b = tiny_bundle(gan_start=15, **{"train.lr": 1e-3})
    impl, cfg, nets = b.impl, b.config, b.nets
    opts = impl.make_optimizers(nets, cfg)
    ctx = impl.make_context(nets, cfg, seed=0)
    assert "content" not in ctx.losses
    d_before = [p.detach().clone() for p in nets["D"].parameters()]
    g_before = [p.detach().clone() for p in nets["G"].parameters()]
    batch = tiny_batch()
    nets.train()
    history = []
    for it in range(30):
        ctx.iteration = it
        history.append(impl.train_step(nets, opts, batch, ctx))
        if it == 14:
            assert all(torch.equal(a, p) for a, p in zip(d_before, nets["D"].parameters()))
    assert set(history[0]) == {"G", "L1", "content", "G_GAN", "D"}
    assert all(math.isfinite(v) for h in history for v in h.values())
    assert history[14]["D"] == 0.0 and history[15]["D"] > 0 and history[15]["G_GAN"] > 0
    first, last = history[0]["L1"], sum(h["L1"] for h in history[-3:]) / 3
    assert last < 0.8 * first, (first, last)
    assert any(not torch.equal(a, p) for a, p in zip(d_before, nets["D"].parameters()))
    assert any(not torch.equal(a, p) for a, p in zip(g_before, nets["G"].parameters()))


def test_loss_terms_follow_the_official_weights():
    b = tiny_bundle(lambda_gan=0.5, lambda_l1=2.0, augment=False)
    impl, cfg, nets = b.impl, b.config, b.nets
    opts = impl.make_optimizers(nets, cfg)
    ctx = impl.make_context(nets, cfg, seed=0)
    batch = tiny_batch(seed=5)
    nets.eval()  # running stats, no noise
    D = nets["D"]
    with torch.no_grad():
        fake = b.generate(batch["src_img"], batch["src_kps"], batch["tgt_kps"])
        joints = joint_disks(batch["tgt_kps"], (32, 16))
        bce = torch.nn.BCELoss()
        p_real = D(torch.cat([batch["src_img"], batch["tgt_img"], joints], 1))
        p_fake = D(torch.cat([batch["src_img"], fake, joints], 1))
        d_loss = 0.5 * 0.5 * (bce(p_real, torch.ones_like(p_real)) + bce(p_fake, torch.zeros_like(p_fake)))
        l1 = 2.0 * (fake - batch["tgt_img"]).abs().mean()
    out = impl.train_step(nets, opts, batch, ctx)
    with torch.no_grad():  # G's GAN term: the updated D
        p_new = D(torch.cat([batch["src_img"], fake, joints], 1))
        gan = 0.5 * bce(p_new, torch.ones_like(p_new))
    assert out["D"] == pytest.approx(d_loss.item(), rel=1e-5)
    assert out["L1"] == pytest.approx(l1.item(), rel=1e-5)
    assert out["G_GAN"] == pytest.approx(gan.item(), rel=1e-4)
    assert out["G"] == pytest.approx(l1.item() + gan.item(), rel=1e-5) and out["content"] == 0.0


def test_training_step_under_bf16_autocast_is_finite():
    b = tiny_bundle()
    impl, cfg, nets = b.impl, b.config, b.nets
    opts = impl.make_optimizers(nets, cfg)
    ctx = impl.make_context(nets, cfg, amp_dtype=torch.bfloat16, seed=0)
    nets.train()
    out = impl.train_step(nets, opts, tiny_batch(), ctx)
    assert all(math.isfinite(v) for v in out.values()) and out["D"] > 0


def test_missing_vgg_and_content_loss(tmp_path, monkeypatch):
    impl = get_method("spgnet")
    b = tiny_bundle()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    cfg = apply_overrides(b.config, {"perceptual": True})
    with pytest.raises(MissingWeightsError) as err:
        impl.make_context(b.nets, cfg)
    text = str(err.value)
    assert str(tmp_path / "empty" / "hub" / "checkpoints" / VGG19_FILE) in text
    assert "--no-perceptual" in text and "--vgg-weights" in text
    # torchvision's VGG-19 "E" features, first 30 modules: same layers, so its keys load.
    from torchvision.models.vgg import cfgs, make_layers

    reference = make_layers(cfgs["E"])[:30]
    vgg = vgg19_prefix(30)
    assert [type(m) for m in vgg] == [type(m) for m in reference]
    assert {k: v.shape for k, v in vgg.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    stops = [VGG19_LAYERS.index(name) + 1 for name in spgnet.VGG_CONTENT_LAYERS]
    assert stops == [2, 7, 12, 21, 30] and all(isinstance(reference[stop - 1], torch.nn.ReLU) for stop in stops)
    path = tmp_path / "vgg.pth"
    torch.save({f"features.{k}": v for k, v in reference.state_dict().items()}, path)
    ctx = impl.make_context(b.nets, cfg, vgg_weights=str(path))
    loss = ctx.losses["content"]
    x, y = torch.rand(1, 3, 32, 16) * 2 - 1, torch.rand(1, 3, 32, 16) * 2 - 1
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    norm = lambda t: ((t + 1) / 2 - mean) / std
    with torch.no_grad():  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 = features[:2], [:7], [:12], [:21], [:30]
        want = sum(0.125 * (reference[:n](norm(x)) - reference[:n](norm(y))).abs().mean() for n in (2, 7, 12, 21, 30))
    assert loss(x, y).item() == pytest.approx(want.item(), rel=1e-5) and loss(x, x).item() == 0.0
    b.nets.train()
    out = impl.train_step(b.nets, impl.make_optimizers(b.nets, cfg), tiny_batch(), ctx)
    assert out["content"] > 0


# ------------------------------------------------------------------------------------------------
# Inference, checkpoints, registry
# ------------------------------------------------------------------------------------------------


def test_generate_checkpoint_round_trip_and_transfer(tmp_path):
    b = tiny_bundle(seed=5)
    randomise(b.nets["G"], 6)
    b.nets.eval()
    batch = tiny_batch(3, seed=9)
    with torch.inference_mode():
        out = b.generate(batch["src_img"], batch["src_kps"], batch["tgt_kps"])
        again = b.generate(batch["src_img"], batch["src_kps"], batch["tgt_kps"])
    assert out.shape == (3, 3, 32, 16) and out.dtype == torch.float32 and out.abs().max() <= 1
    assert torch.equal(out, again)  # no ACE noise in eval mode
    path = save(tmp_path / "spg.pt", b, iteration=3)
    loaded = load(path)
    assert loaded.method == "spgnet" and loaded.config == b.config
    with torch.inference_mode():
        assert torch.equal(loaded.generate(batch["src_img"], batch["src_kps"], batch["tgt_kps"]), out)
    uint8 = ((batch["src_img"].permute(0, 2, 3, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    fakes = transfer(loaded, uint8, batch["src_kps"].numpy(), batch["tgt_kps"].numpy(), batch_size=2)
    assert fakes.shape == (3, 32, 16, 3) and fakes.dtype == np.uint8
    with torch.inference_mode():
        direct = loaded.generate(
            torch.from_numpy(uint8).permute(0, 3, 1, 2).float() / 127.5 - 1, batch["src_kps"], batch["tgt_kps"]
        )
    want = ((direct.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    assert np.abs(fakes.astype(int) - want.astype(int)).max() <= 1


def test_generate_rejects_official_region_count_and_bad_sizes():
    b = tiny_bundle(regions=20)
    batch = tiny_batch(1)
    with pytest.raises(ValueError, match="regions=20.*11 pose part maps"):
        b.generate(batch["src_img"], batch["src_kps"], batch["tgt_kps"])
    with pytest.raises(ValueError, match="divisible by 8"):
        tiny_bundle().generate(torch.zeros(1, 3, 30, 16), batch["src_kps"], batch["tgt_kps"])


def test_registry_and_config_round_trip():
    assert "spgnet" in generators.METHODS
    impl = get_method("spgnet")
    cfg = impl.preset("market")
    assert impl.config_from_dict(dataclasses.asdict(cfg)) == cfg
    b = build("spgnet", "synth", **{"feat_warp": "false", "train.iterations": "40", "train.decay_start": 40})
    assert b.config.feat_warp is False and b.config.train.iterations == 40
    with pytest.raises(ValueError, match="content_weights"):
        build("spgnet", "synth", content_weights=(1.0, 2.0))
