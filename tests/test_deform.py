"""Deformable GAN: official sizes, the Keras instance norm, the deformable skips (warp layer), the
nearest-neighbour loss, presets and the training step.

The references below are written from the official layer list (docs/methods.md#deformable-gan: the
official conditional_gan.py / pose_transform.py), with torch.nn.functional, numpy and plain Python
loops; they share no code with generators/deform.py or generators/warp.py.
"""

from __future__ import annotations

import math
import re

import generator_inputs
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from augment.data.pose import NO_POINT_AFFINE, heatmaps, part_affines, part_masks
from generators import deform
from generators.base import apply_overrides, build, count_flops, count_parameters, get_method
from generators.checkpoint import load, save
from generators.deform import KerasInstanceNorm, nn_loss
from generators.inference import transfer
from generators.losses import VGG19_FILE, MissingWeightsError, VGGFeatures, vgg19_prefix
from generators.warp import round_half_away_from_zero, warp_parts

H, W = 128, 64
SPEC = {"G": 61.1e6, "G_none": 36.1e6, "D": 2.80e6}
# A tiny network of the same structure: 4 levels (32x16 images -> 4x2), 2 warped skips.
TINY = {
    "enc_filters": (4, 8, 8, 8),
    "dec_filters": (8, 8, 4),
    "warped_skips": 2,
    "dec_dropout": 1,
    "disc_filters": (4, 8),
}


@pytest.fixture(scope="module")
def market():
    return build("deform", "market", seed=0)


def random_kps(batch, h, w, seed):
    return generator_inputs.random_kps(batch, h, w, seed, inset=True, missing=16)  # Lear missing


def conditions(src_kps, tgt_kps, size):
    return {
        "src_pose": heatmaps(src_kps, size),
        "tgt_pose": heatmaps(tgt_kps, size),
        "affines": part_affines(src_kps, tgt_kps)[0],
        "masks": part_masks(tgt_kps, size),
    }


def randomise_norms(net, seed):
    """Non-trivial scalar gamma / beta so that the norm's affine part is exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, KerasInstanceNorm):
            with torch.no_grad():
                m.weight.copy_(torch.rand(1, generator=g) + 0.5)
                m.bias.copy_(torch.randn(1, generator=g) * 0.3)


# ------------------------------------------------------------------------------------------------
# Independent references
# ------------------------------------------------------------------------------------------------


def ref_norm(x, gamma, beta, eps=1e-3):
    """keras-contrib InstanceNormalization(axis=None), numpy float64: one mean / population std per
    sample over H, W, C; (x - mean) / (std + eps) * gamma + beta with scalar gamma, beta."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = np.sqrt(((x - mean) ** 2).mean(axis=(1, 2, 3), keepdims=True))
    return (x - mean) / (std + eps) * gamma + beta


def _std_round(v):
    """C++ std::round."""
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def ref_warp_sources(affines, masks, size):
    """For ONE sample: the source pixel each part reads at every feature pixel, by explicit loops.

    affines (P,2,3) full-resolution backward maps (x, y); masks (P,H,W); size (h, w) of the
    feature map. Translation / (H/h); source position in float32 (so positions that are exact
    halves in real arithmetic, common with affines fitted to integer keypoints, round as the TF
    kernel rounds them); std::round; masks resized by TF1 nearest (floor(i * H / h)).
    Returns sy, sx (P,h,w) int and used (P,h,w) bool (inside the map and the mask).
    """
    h, w = size
    full_h, full_w = masks.shape[-2:]
    f32 = np.float32  # the TF kernel evaluates a0 * x + a1 * y + a2 in float32, in this order
    sy, sx = np.zeros((len(affines), h, w), int), np.zeros((len(affines), h, w), int)
    used = np.zeros((len(affines), h, w), bool)
    for p, ((a0, a1, a2), (b0, b1, b2)) in enumerate(np.asarray(affines, dtype=np.float32)):
        a2, b2 = a2 / f32(full_w / w), b2 / f32(full_h / h)  # the layer's affine_mul division
        for y in range(h):
            for x in range(w):
                sx[p, y, x] = _std_round(float(a0 * f32(x) + a1 * f32(y) + a2))
                sy[p, y, x] = _std_round(float(b0 * f32(x) + b1 * f32(y) + b2))
                mask = masks[p, int(math.floor(y * full_h / h)), int(math.floor(x * full_w / w))]
                used[p, y, x] = 0 <= sx[p, y, x] < w and 0 <= sy[p, y, x] < h and mask != 0
    return sy, sx, used


def ref_warp(feat, affines, masks):
    """AffineTransformLayer(10, 'max', (H, W)) for ONE sample, numpy: feat (C,h,w) -> (C,h,w):
    each part's nearest samples (zero fill) times its mask, max over the parts."""
    sy, sx, used = ref_warp_sources(affines, masks, feat.shape[1:])
    h, w = feat.shape[1:]
    sampled = feat[:, np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)] * used  # (C,P,h,w)
    return sampled.max(axis=1)


def ref_warp_torch(feat, affines, masks):
    """The same in torch for a batch, differentiable: stack of the P sampled maps, amax (the
    gradient TF's reduce_max gives: split among ties)."""
    out = []
    for i in range(feat.shape[0]):
        sy, sx, used = ref_warp_sources(affines[i].numpy(), masks[i].numpy(), feat.shape[2:])
        h, w = feat.shape[2:]
        sampled = feat[i][:, torch.from_numpy(np.clip(sy, 0, h - 1)), torch.from_numpy(np.clip(sx, 0, w - 1))]
        out.append((sampled * torch.from_numpy(used)).amax(dim=1))
    return torch.stack(out)


def ref_nn_loss(reference, generated, k=3):
    """Official nn_loss then mean, by loops: per generated pixel the min over the k x k window of
    the reference (outside: -10000 in every channel) of sum_c |reference - generated|."""
    b, c, h, w = generated.shape
    r = k // 2
    total = 0.0
    for i in range(b):
        for y in range(h):
            for x in range(w):
                best = math.inf
                for dy in range(-r, r + 1):
                    for dx in range(-r, r + 1):
                        yy, xx = y + dy, x + dx
                        inside = 0 <= yy < h and 0 <= xx < w
                        ref = reference[i, :, yy, xx] if inside else np.full(c, -10000.0)
                        best = min(best, float(np.abs(ref - generated[i, :, y, x]).sum()))
                total += best
    return total / (b * h * w)


def _conv(sd, key, x, stride=1, padding=0, bias=False):
    return F.conv2d(x, sd[f"{key}.weight"], sd[f"{key}.bias"] if bias else None, stride, padding)


def _norm(sd, key, x):
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    return (x - mean) / (std + 1e-3) * sd[f"{key}.weight"] + sd[f"{key}.bias"]


def ref_encoder(sd, prefix, x, n):
    """conv3x3 same + bias, then [LReLU 0.2, pad 1, conv4x4 s2 no bias, IN] (last: no IN)."""
    outs = [_conv(sd, f"{prefix}.layers.0", x, padding=1, bias=True)]
    for i in range(1, n):
        y = _conv(sd, f"{prefix}.layers.{i}.1", F.pad(F.leaky_relu(outs[-1], 0.2), (1, 1, 1, 1)), stride=2)
        outs.append(_norm(sd, f"{prefix}.layers.{i}.2", y) if i < n - 1 else y)
    return outs


def ref_generator(sd, src, bp1, bp2, affines, masks, n, warped, mask_mode=True):
    """make_generator in eval mode (no dropout), ConvT 'valid' followed by Cropping2D((1, 1))."""
    if mask_mode:
        app = ref_encoder(sd, "appearance", torch.cat([src, bp1], 1), n)
        pose = ref_encoder(sd, "pose", bp2, n)
        skips = []
        for i, (a, p) in enumerate(zip(app, pose)):
            if i < warped:
                a = ref_warp_torch(a, affines, masks)
            skips.append(torch.cat([a, p], 1))
    else:
        skips = ref_encoder(sd, "encoder", torch.cat([src, bp1, bp2], 1), n)
    x = None
    for i in range(n - 1):
        inp = skips[-1] if i == 0 else torch.cat([x, skips[-1 - i]], 1)
        y = F.conv_transpose2d(F.relu(inp), sd[f"decoder.{i}.1.weight"], stride=2)[..., 1:-1, 1:-1]
        x = _norm(sd, f"decoder.{i}.2", y)
    x = torch.cat([x, skips[0]], 1)
    return torch.tanh(_conv(sd, "output.1", F.relu(x), padding=1, bias=True))


def ref_discriminator(sd, x, n_blocks):
    """conv4x4 s2 valid + bias, blocks [LReLU, pad 1, conv4x4 s2, IN], [LReLU, pad, conv -> 1], sigmoid."""
    x = _conv(sd, "model.0", x, stride=2, bias=True)
    for i in range(1, n_blocks + 1):
        y = _conv(sd, f"model.{i}.1", F.pad(F.leaky_relu(x, 0.2), (1, 1, 1, 1)), stride=2)
        x = _norm(sd, f"model.{i}.2", y)
    x = _conv(sd, f"model.{n_blocks + 1}.1", F.pad(F.leaky_relu(x, 0.2), (1, 1, 1, 1)), stride=2)
    return torch.sigmoid(x)


# ------------------------------------------------------------------------------------------------
# Sizes
# ------------------------------------------------------------------------------------------------


def _norm_count(net):
    return sum(isinstance(m, KerasInstanceNorm) for m in net.modules())


def test_market_parameter_counts(market):
    G, D = market.nets["G"], market.nets["D"]
    baseline = build("deform", "market_baseline").nets["G"]
    assert count_parameters(G) == 61_109_085
    assert count_parameters(baseline) == 36_072_533
    assert count_parameters(D) == 2_803_782
    for net, key in ((G, "G"), (baseline, "G_none"), (D, "D")):
        assert float(f"{count_parameters(net):.3g}") == SPEC[key]
    # Hand count from the layer list: conv weights (+ biases of layer 0 / output / D's first conv)
    # and 2 scalars per norm: 2 x 4 encoder norms + 5 decoder norms (G), 3 (D).
    enc = lambda c_in: c_in * 64 * 9 + 64 + 64 * 128 * 16 + 128 * 256 * 16 + 256 * 512 * 16 + 512 * 512 * 16 * 2 + 4 * 2
    dec_mask = (1024 * 512 + 1536 * 512 * 2 + 1024 * 256 + 512 * 128) * 16 + 5 * 2 + 256 * 3 * 9 + 3
    assert count_parameters(G) == enc(21) + enc(18) + dec_mask
    dec_none = (512 * 512 + 1024 * 512 * 2 + 768 * 256 + 384 * 128) * 16 + 5 * 2 + 192 * 3 * 9 + 3
    assert count_parameters(baseline) == enc(39) + dec_none
    assert count_parameters(D) == 42 * 64 * 16 + 64 + (64 * 128 + 128 * 256 + 256 * 512 + 512) * 16 + 3 * 2
    assert _norm_count(G) == 13 and _norm_count(baseline) == 9 and _norm_count(D) == 3
    norms = [m for m in G.modules() if isinstance(m, KerasInstanceNorm)]
    assert all(m.weight.numel() == 1 and m.bias.numel() == 1 for m in norms)
    assert not any(
        isinstance(m, (torch.nn.InstanceNorm2d, torch.nn.GroupNorm, torch.nn.BatchNorm2d)) for m in G.modules()
    )


def test_market_layer_shapes(market):
    """Skips 128x64 ... 4x2 with 2 x 64/128/256/512/512/512 channels; decoder inputs; D 3x1 patches."""
    G, D = market.nets["G"], market.nets["D"]
    kps1, kps2 = random_kps(1, H, W, 1), random_kps(1, H, W, 2)
    with torch.no_grad():
        skips = G.skips(torch.zeros(1, 3, H, W), **conditions(kps1, kps2, (H, W)))
        assert [tuple(s.shape[1:]) for s in skips] == [
            (128, 128, 64),
            (256, 64, 32),
            (512, 32, 16),
            (1024, 16, 8),
            (1024, 8, 4),
            (1024, 4, 2),
        ]
        assert D(torch.zeros(2, 42, H, W)).shape == (2, 1, 3, 1)
    assert [b[1].in_channels for b in G.decoder] == [1024, 1536, 1536, 1024, 512]
    assert [b[1].out_channels for b in G.decoder] == [512, 512, 512, 256, 128]
    assert [any(isinstance(m, torch.nn.Dropout) for m in b) for b in G.decoder] == [True] * 3 + [False] * 2
    assert G.output[1].in_channels == 256 and G.output[1].bias is not None
    assert G.appearance.layers[0].in_channels == 21 and G.pose.layers[0].in_channels == 18
    assert all(b[1].bias is None for b in G.decoder) and G.appearance.layers[1][1].bias is None
    assert not any(isinstance(m, KerasInstanceNorm) for m in G.appearance.layers[5])  # layer 5: no norm


def test_preset_table_in_docstring_is_true(market):
    rows = re.findall(
        r"\|\s*(\w+)\s*\|\s*([\d,]+)\s*\|\s*([\d.]+)\s*\|\s*([\d,]+)\s*\|\s*([\d.]+)\s*\|", deform.__doc__
    )
    assert {r[0] for r in rows} == set(get_method("deform").presets)
    kps1, kps2 = random_kps(1, H, W, 1), random_kps(1, H, W, 2)
    cond = conditions(kps1, kps2, (H, W))
    for preset, g_params, g_gflops, d_params, d_gflops in rows:
        nets = market.nets if preset == "market" else build("deform", preset).nets
        num = lambda s: int(s.replace(",", ""))
        assert count_parameters(nets["G"]) == num(g_params), preset
        assert count_parameters(nets["D"]) == num(d_params), preset
        fl = count_flops(
            nets["G"], (torch.zeros(1, 3, H, W), cond["src_pose"], cond["tgt_pose"], cond["affines"], cond["masks"])
        )
        assert f"{fl.gflops_per_sample:.2f}" == g_gflops, preset
        assert f"{count_flops(nets['D'], torch.zeros(1, 42, H, W)).gflops_per_sample:.2f}" == d_gflops


# ------------------------------------------------------------------------------------------------
# The Keras instance norm
# ------------------------------------------------------------------------------------------------


def test_keras_instance_norm_matches_hand_computation():
    norm = KerasInstanceNorm()
    assert count_parameters(norm) == 2 and norm.eps == 1e-3
    with torch.no_grad():
        norm.weight.fill_(1.7)
        norm.bias.fill_(-0.4)
    g = torch.Generator().manual_seed(0)
    # Channels on different scales: a per-channel norm would equalise them, this one must not.
    x = torch.randn(3, 5, 6, 4, generator=g) * torch.tensor([0.01, 0.1, 1, 3, 10]).view(1, 5, 1, 1) + 2
    x[2] *= 1e-3  # tiny std: eps added to the std (not the variance) matters
    out = norm(x)
    assert torch.allclose(out.double(), torch.from_numpy(ref_norm(x.numpy(), 1.7, -0.4)), atol=1e-5)
    # A hand computation on one small sample.
    v = torch.tensor([1.0, 2.0, 3.0, 6.0]).view(1, 1, 2, 2)  # mean 3, population std sqrt(3.5)
    expected = (v - 3) / (math.sqrt(3.5) + 1e-3) * 1.7 - 0.4
    assert torch.allclose(norm(v), expected, atol=1e-6)
    # Not nn.InstanceNorm2d / GroupNorm(1, C): those differ on this input.
    assert not torch.allclose(F.instance_norm(x, eps=1e-3) * 1.7 - 0.4, out, atol=1e-2)
    assert not torch.allclose(F.group_norm(x, 1, eps=1e-3) * 1.7 - 0.4, out, atol=1e-3)  # eps in the root
    # bf16 input: same function within bf16 rounding, bf16 output.
    xb = x[:2].bfloat16()
    assert norm(xb).dtype == torch.bfloat16
    assert torch.allclose(norm(xb).float(), norm(xb.float()), atol=0.05)


# ------------------------------------------------------------------------------------------------
# The warp layer
# ------------------------------------------------------------------------------------------------


def _affine(tx=0.0, ty=0.0, a=((1.0, 0.0), (0.0, 1.0))):
    return [[a[0][0], a[0][1], tx], [a[1][0], a[1][1], ty]]


def _parts(first, n_parts=10):
    """first part given, the others the official "no point" transform."""
    return torch.tensor([[first] + [list(map(list, NO_POINT_AFFINE))] * (n_parts - 1)], dtype=torch.float32)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_translation_moves_by_the_scaled_offset(level):
    """Backward map target -> source (x + 16, y - 32) at 128x64: at 128/2^l the feature at
    (x, y) comes from (x + 16/2^l, y - 32/2^l); outside the map: 0."""
    s = 2**level
    h, w = H // s, W // s
    feat = torch.rand(2, 3, h, w) + 0.5  # positive: the max with masked zeros keeps the sample
    affines = _parts(_affine(16.0, -32.0)).expand(2, -1, -1, -1)
    masks = torch.ones(2, 10, H, W)
    out = warp_parts(feat, affines, masks)
    dx, dy = 16 // s, -32 // s
    expected = torch.zeros_like(feat)
    expected[:, :, -dy:, : w - dx] = feat[:, :, : h + dy, dx:]
    assert torch.equal(out, expected)


def test_no_point_transform_gives_zeros_and_max_merge():
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(1, 4, 32, 16, generator=g)
    masks = torch.ones(1, 10, H, W)
    no_point = _parts(list(map(list, NO_POINT_AFFINE)))
    assert torch.equal(warp_parts(feat, no_point, masks), torch.zeros_like(feat))
    # Two identity-like parts shifted by +-1 feature pixel (4 image pixels at 32x16), both masked
    # in everywhere: the max of the two shifted maps and of the 8 masked-off "no point" zeros.
    affines = _parts(_affine(4.0, 0.0))
    affines[0, 1] = torch.tensor(_affine(-4.0, 0.0))
    out = warp_parts(feat, affines, masks)
    left = torch.zeros_like(feat)
    left[..., :-1] = feat[..., 1:]
    right = torch.zeros_like(feat)
    right[..., 1:] = feat[..., :-1]
    assert torch.equal(out, torch.maximum(torch.maximum(left, right), torch.zeros_like(feat)))
    # Part 1 masked out on the right half (image columns >= 32): there only part 0 and the zeros.
    masks[:, 1, :, 32:] = 0
    out = warp_parts(feat, affines, masks)
    zero = torch.zeros_like(feat)
    assert torch.equal(out[..., 8:], torch.maximum(left, zero)[..., 8:])
    assert torch.equal(out[..., :8], torch.maximum(torch.maximum(left, right), zero)[..., :8])


def test_rounding_is_half_away_from_zero():
    """A 1-pixel shift at 128x64 is 0.5 at 64x32: std::round sends x + 0.5 to x + 1 for every x
    (banker's rounding would keep even x in place)."""
    assert round_half_away_from_zero(torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 0.49])).tolist() == [
        1.0,
        2.0,
        3.0,
        -1.0,
        -3.0,
        0.0,
    ]
    feat = torch.arange(1, 64 * 32 + 1, dtype=torch.float32).view(1, 1, 64, 32)
    out = warp_parts(feat, _parts(_affine(1.0, 0.0)), torch.ones(1, 10, H, W))
    assert torch.equal(out[..., :-1], feat[..., 1:]) and torch.all(out[..., -1] == 0)


def test_warp_matches_loop_reference_on_random_affines():
    """Random affines (rotation / scale / shear, some parts "no point"), random part masks, a batch,
    3 resolutions, negative features: equals the per-sample, per-part, per-pixel reference."""
    g = torch.Generator().manual_seed(3)
    b, full = 3, (32, 16)
    lin = torch.eye(2) + 0.3 * torch.randn(b, 10, 2, 2, generator=g)
    shift = torch.randn(b, 10, 2, 1, generator=g) * 6
    affines = torch.cat([lin, shift], -1)
    affines[0, 3] = torch.tensor(NO_POINT_AFFINE)
    masks = (torch.rand(b, 10, *full, generator=g) > 0.4).float()
    for s in (1, 2, 4):
        feat = torch.randn(b, 5, full[0] // s, full[1] // s, generator=g)
        out = warp_parts(feat, affines, masks)
        ref = np.stack([ref_warp(feat[i].numpy(), affines[i].numpy(), masks[i].numpy()) for i in range(b)])
        assert torch.allclose(out, torch.from_numpy(ref).float()), s
        # bf16 features: the same samples (indexing is exact), in bf16.
        out_bf16 = warp_parts(feat.bfloat16(), affines, masks)
        assert out_bf16.dtype == torch.bfloat16 and torch.equal(out_bf16, out.bfloat16())
        # batched == one sample at a time
        assert torch.equal(warp_parts(feat[1:2], affines[1:2], masks[1:2]), out[1:2])
    # Gradient: that of the max over the stacked part maps (continuous features: no ties but
    # between parts reading the same pixel or masked-off zeros, which give the same gradient).
    for s in (1, 2):
        feat = torch.randn(b, 4, full[0] // s, full[1] // s, generator=g, requires_grad=True)
        upstream = torch.randn(feat.shape, generator=g)
        (grad,) = torch.autograd.grad((warp_parts(feat, affines, masks) * upstream).sum(), feat)
        (ref_grad,) = torch.autograd.grad((ref_warp_torch(feat, affines, masks) * upstream).sum(), feat)
        assert grad.abs().sum() > 0 and torch.allclose(grad, ref_grad, atol=1e-6)


def test_same_pose_warp_is_identity():
    """Source pose == target pose: the torso transform is the identity and its mask the whole
    image, so positive features come back unchanged at every resolution."""
    kps = random_kps(2, H, W, 7)
    affines, valid = part_affines(kps, kps)
    assert bool(valid[:, 0].all())
    masks = part_masks(kps, (H, W))
    for s in (1, 2, 4, 8):
        feat = torch.rand(2, 3, H // s, W // s) + 0.1
        assert torch.allclose(warp_parts(feat, affines, masks), feat)


# ------------------------------------------------------------------------------------------------
# Losses
# ------------------------------------------------------------------------------------------------


def test_nn_loss_matches_loop_reference_on_random_vgg_features():
    torch.manual_seed(0)
    vgg = VGGFeatures(vgg19_prefix(4), (deform.VGG_CONTENT_LAYER,))  # random weights, never real ones
    g = torch.Generator().manual_seed(1)
    real, fake = torch.rand(2, 3, 7, 5, generator=g) * 2 - 1, torch.rand(2, 3, 7, 5, generator=g) * 2 - 1
    with torch.no_grad():
        (fr,), (ff,) = vgg(real), vgg(fake)
    assert fr.shape == (2, 64, 7, 5) and fr.min() >= 0  # block1_conv2 after its ReLU
    assert nn_loss(fr, ff).item() == pytest.approx(ref_nn_loss(fr.numpy(), ff.numpy()), rel=1e-5)
    assert nn_loss(fr, ff, 5).item() == pytest.approx(ref_nn_loss(fr.numpy(), ff.numpy(), 5), rel=1e-5)
    # The min over the window: a map moved by one pixel costs nothing, by two it does.
    moved = torch.cat([fr[..., :1], fr[..., :-1]], dim=-1)  # gen[x] = ref[x - 1] (x >= 1)
    assert nn_loss(fr, moved).item() == 0.0 and nn_loss(fr, fr).item() == 0.0
    moved2 = torch.cat([fr[..., :2], fr[..., :-2]], dim=-1)
    assert nn_loss(fr, moved2).item() > 0 and nn_loss(fr, moved2, 5).item() == 0.0
    # Gradient reaches the generated map only through the chosen neighbour.
    ff.requires_grad_(True)
    nn_loss(fr, ff).backward()
    assert ff.grad.abs().sum() > 0
    # k = 1 is the plain mean L1 (official st_loss).
    assert deform.content_distance(fr, ff, 1).item() == pytest.approx((fr - ff).abs().mean().item())


def test_vgg_preprocessing():
    vgg = VGGFeatures(vgg19_prefix(4), normalization=deform.VGG_INPUTS["keras"])
    rgb = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1)
    # 255 (x + 1) / 2 = (0, 127.5, 255); minus (103.939, 116.779, 123.68) in RGB order; then BGR.
    expected = torch.tensor([255 - 123.68, 127.5 - 116.779, 0 - 103.939]).view(1, 3, 1, 1)
    assert torch.allclose(vgg.preprocess(rgb), expected, atol=1e-4)
    tv = VGGFeatures(vgg19_prefix(4), normalization=deform.VGG_INPUTS["torchvision"])
    expected = (torch.tensor([0.0, 0.5, 1.0]) - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225]
    )
    assert torch.allclose(tv.preprocess(rgb), expected.view(1, 3, 1, 1), atol=1e-5)
    with pytest.raises(ValueError, match="vgg_input"):
        apply_overrides(get_method("deform").preset("synth"), {"vgg_input": "caffe"})


# ------------------------------------------------------------------------------------------------
# Function of the networks
# ------------------------------------------------------------------------------------------------


def test_generator_and_discriminator_compute_the_official_function():
    """Eval mode (no dropout), random norm affines and inputs: modules == functional references,
    with the warp computed by the loop reference; the 'none' baseline too."""
    b = build("deform", "market", seed=1, **TINY)
    G, D = b.nets["G"], b.nets["D"]
    randomise_norms(G, 2)
    randomise_norms(D, 3)
    G.eval()
    g = torch.Generator().manual_seed(4)
    size = (32, 16)
    src = torch.rand(2, 3, *size, generator=g) * 2 - 1
    kps1, kps2 = random_kps(2, *size, 5), random_kps(2, *size, 6)
    cond = conditions(kps1, kps2, size)
    with torch.no_grad():
        out = G(src, **cond)
        ref = ref_generator(
            G.state_dict(), src, cond["src_pose"], cond["tgt_pose"], cond["affines"], cond["masks"], n=4, warped=2
        )
        assert out.shape == (2, 3, *size)
        assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()
        assert torch.allclose(b.generate(src, kps1, kps2), out)
        x = torch.randn(3, 42, *size, generator=g)
        assert torch.allclose(D(x), ref_discriminator(D.state_dict(), x, n_blocks=1), atol=1e-6)
        assert D(x).shape == (3, 1, 3, 1)
        # The warp matters: other affines, other output.
        other = dict(cond, affines=part_affines(kps2, kps1)[0])
        assert not torch.allclose(G(src, **other), out, atol=1e-4)

    base = build("deform", "market_baseline", seed=1, **TINY).nets["G"]
    randomise_norms(base, 7)
    base.eval()
    with torch.no_grad():
        out = base(src, cond["src_pose"], cond["tgt_pose"])
        ref = ref_generator(
            base.state_dict(), src, cond["src_pose"], cond["tgt_pose"], None, None, n=4, warped=0, mask_mode=False
        )
        assert torch.allclose(out, ref, atol=1e-5)
        # Baseline: no affines / masks needed (and ignored).
        assert torch.allclose(base(src, **cond), out)
    with pytest.raises(ValueError, match="affines"):
        G(src, cond["src_pose"], cond["tgt_pose"])
    with pytest.raises(ValueError, match="divisible by 8"):
        b.generate(torch.zeros(1, 3, 36, 16), kps1[:1], kps2[:1])


def test_initialisation_is_keras_default(market):
    G = market.nets["G"]
    conv = G.decoder[1][1]  # ConvTranspose 1536 -> 512, 4x4
    bound = math.sqrt(6 / (16 * (1536 + 512)))  # glorot uniform
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.95 * bound
    assert torch.all(G.appearance.layers[0].bias == 0) and torch.all(G.output[1].bias == 0)
    norms = [m for m in G.modules() if isinstance(m, KerasInstanceNorm)]
    assert all(m.weight.item() == 1 and m.bias.item() == 0 for m in norms)


# ------------------------------------------------------------------------------------------------
# Presets, weights, training
# ------------------------------------------------------------------------------------------------


def test_market_preset_is_the_official_recipe():
    impl = get_method("deform")
    cfg = impl.preset("market")
    assert (cfg.warp_skip, cfg.enc_filters, cfg.dec_filters, cfg.warped_skips, cfg.dec_dropout) == (
        "mask",
        (64, 128, 256, 512, 512, 512),
        (512, 512, 512, 256, 128),
        4,
        3,
    )
    assert (cfg.disc_filters, cfg.norm_eps, cfg.pose_sigma) == ((64, 128, 256, 512), 1e-3, 6.0)
    assert (cfg.gan_penalty_weight, cfg.l1_penalty_weight, cfg.nn_loss_area_size, cfg.perceptual) == (
        1.0,
        0.01,
        3,
        True,
    )
    t = cfg.train
    assert (t.iterations, t.batch_size, t.lr, tuple(t.betas)) == (90 * 1000, 4, 2e-4, (0.5, 0.999))
    assert t.decay_start == t.iterations  # constant learning rate
    assert impl.required_weights(cfg) == ["vgg19"]
    for name in ("market_dsc", "market_baseline"):
        c = impl.preset(name)
        assert (c.l1_penalty_weight, c.nn_loss_area_size, c.perceptual) == (100.0, 1, False)
        assert impl.required_weights(c) == []
    assert impl.preset("market_baseline").warp_skip == "none"
    assert impl.preset("market_dsc").warp_skip == "mask"
    synth = impl.preset("synth")
    assert impl.required_weights(synth) == [] and synth.warp_skip == "mask"
    with pytest.raises(ValueError, match="warp_skip"):
        build("deform", "synth", warp_skip="full")


def tiny_batch(batch=4, h=32, w=16, seed=0):
    return generator_inputs.tiny_batch(batch, h, w, seed, kps=random_kps)


def test_training_steps_lower_the_content_loss_and_update_both_networks():
    torch.manual_seed(0)
    b = build("deform", "synth", seed=0, **TINY, **{"train.lr": 1e-3})
    impl, cfg, nets = b.impl, b.config, b.nets
    opts = impl.make_optimizers(nets, cfg)
    ctx = impl.make_context(nets, cfg, seed=0)
    assert "vgg" not in ctx.losses
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in nets.items()}
    batch = tiny_batch()
    nets.train()
    history = [impl.train_step(nets, opts, batch, ctx) for _ in range(25)]
    assert set(history[0]) == {"G", "content", "G_GAN", "D", "D_real", "D_fake"}
    assert all(math.isfinite(v) for h in history for v in h.values())
    first, last = history[0]["content"], sum(h["content"] for h in history[-3:]) / 3
    assert last < 0.7 * first, (first, last)
    for n, net in nets.items():
        assert any(not torch.equal(a, p) for a, p in zip(before[n], net.parameters())), n


def test_loss_terms_follow_the_official_formulas():
    """D step first (on G's output), then G against the UPDATED D; log losses and weights."""
    b = build(
        "deform",
        "synth",
        seed=0,
        dec_dropout=0,
        gan_penalty_weight=2.0,
        l1_penalty_weight=3.0,
        nn_loss_area_size=3,
        **{k: v for k, v in TINY.items() if k != "dec_dropout"},
    )
    impl, cfg, nets = b.impl, b.config, b.nets
    opts = impl.make_optimizers(nets, cfg)
    ctx = impl.make_context(nets, cfg, seed=0)
    batch = tiny_batch(seed=5)
    nets.train()  # no dropout (dec_dropout=0); the norm has no running statistics
    cond = conditions(batch["src_kps"], batch["tgt_kps"], (32, 16))
    with torch.no_grad():
        fake = nets["G"](batch["src_img"], **cond)
        quad = lambda img: torch.cat([batch["src_img"], cond["src_pose"], img, cond["tgt_pose"]], 1)
        d_real, d_fake = nets["D"](quad(batch["tgt_img"])), nets["D"](quad(fake))
        loss_d = -torch.log(d_real).mean() - torch.log(1 - d_fake).mean()
        content = 3.0 * ref_nn_loss(batch["tgt_img"].numpy(), fake.numpy())
    out = impl.train_step(nets, opts, batch, ctx)
    assert out["D"] == pytest.approx(loss_d.item(), rel=1e-5)
    assert out["D"] == pytest.approx(out["D_real"] + out["D_fake"], rel=1e-6)
    assert out["content"] == pytest.approx(content, rel=1e-5)
    with torch.no_grad():  # D after its step (G's step leaves D alone), on the pre-step fake
        gan = -2.0 * torch.log(nets["D"](quad(fake))).mean()
    assert out["G_GAN"] == pytest.approx(gan.item(), rel=1e-4)
    assert out["G"] == pytest.approx(out["G_GAN"] + out["content"], rel=1e-6)


def test_training_step_under_bf16_autocast_is_finite():
    b = build("deform", "synth", seed=0, **TINY)
    impl, cfg, nets = b.impl, b.config, b.nets
    ctx = impl.make_context(nets, cfg, amp_dtype=torch.bfloat16, seed=0)
    out = impl.train_step(nets, impl.make_optimizers(nets, cfg), tiny_batch(), ctx)
    assert all(math.isfinite(v) for v in out.values())


def test_vgg_weights_required_and_used(tmp_path, monkeypatch):
    b = build("deform", "synth", seed=0, **TINY)
    impl, nets = b.impl, b.nets
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    market_like = apply_overrides(b.config, {"perceptual": True, "l1_penalty_weight": 0.01, "nn_loss_area_size": 3})
    with pytest.raises(MissingWeightsError) as err:
        impl.make_context(nets, market_like)
    text = str(err.value)
    assert str(tmp_path / "empty" / "hub" / "checkpoints" / VGG19_FILE) in text
    assert "--no-perceptual" in text and "--vgg-weights" in text
    with pytest.raises(MissingWeightsError):
        impl.make_context(build("deform", "market", **TINY).nets, get_method("deform").preset("market"))
    torch.manual_seed(0)
    path = tmp_path / "random_vgg.pth"  # random weights in the torchvision layout
    torch.save({f"features.{k}": v for k, v in vgg19_prefix(4).state_dict().items()}, path)
    ctx = impl.make_context(nets, market_like, vgg_weights=str(path))
    vgg = ctx.losses["vgg"]
    assert isinstance(vgg, VGGFeatures) and vgg.normalization == "imagenet" and vgg.layers == ("relu1_2",)
    batch = tiny_batch(seed=2)
    nets.eval()
    with torch.no_grad():
        fake = b.generate(batch["src_img"], batch["src_kps"], batch["tgt_kps"])
        expected = 0.01 * ref_nn_loss(vgg(batch["tgt_img"])[0].numpy(), vgg(fake)[0].numpy())
    out = impl.train_step(nets, impl.make_optimizers(nets, market_like), batch, ctx)
    assert out["content"] == pytest.approx(expected, rel=1e-4)


def test_checkpoint_round_trip_and_numpy_transfer(tmp_path):
    b = build("deform", "synth", seed=2, **TINY)
    randomise_norms(b.nets["G"], 1)
    path = save(tmp_path / "deform.pt", b, iteration=3)
    loaded = load(path)
    assert loaded.method == "deform" and loaded.config == b.config
    assert isinstance(loaded.config.enc_filters, tuple)
    batch = tiny_batch(batch=3, seed=9)
    b.nets.eval()
    with torch.no_grad():
        expected = b.generate(batch["src_img"], batch["src_kps"], batch["tgt_kps"])
        assert torch.equal(loaded.generate(batch["src_img"], batch["src_kps"], batch["tgt_kps"]), expected)
    images = ((batch["src_img"].permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    out = transfer(loaded, images, batch["src_kps"].numpy(), batch["tgt_kps"].numpy(), batch_size=2)
    assert out.dtype == np.uint8 and out.shape == (3, 32, 16, 3)
    with torch.no_grad():
        direct = loaded.generate(
            torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1, batch["src_kps"], batch["tgt_kps"]
        )
    ref = ((direct.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).numpy()
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
