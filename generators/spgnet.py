# Long file: one method, one readable file (conditions, networks, losses, training step, top to bottom).
"""SPGNet (Lv et al., CVPR 2021, "Learning Semantic Person Image Generation by Region-Adaptive
Normalization"), the "SPGNet-pose" variant: the official generator, discriminator, losses and
schedule, conditioned on pose-rendered part maps and an analytic part-affine flow instead of
human parsing and the Intr-Flow network.

Source: cszy98/SPGNet @ 3c1f6b5 (models/SPG_net_market.py, models/pose_transfer_model.py,
models/networks.py, models/modules.py, options/pose_transfer_options.py, train_market.sh,
data/pose_transfer_parsing_market_dataset.py). Facts and sources: docs/methods.md#spgnet.

Why a variant. The official Market model reads, for every training and test pair, a 20-class
CIHP parsing of the source and of the *target* (``seg/{src}___{tgt}.png``, made offline by PGN
and an unreleased parsing generator) and a dense flow + visibility map from a frozen Intr-Flow
network (``checkpoints/FlowReg_market``, trained on SMPL-rendered correspondences). Neither can be
regenerated here, so (docs/methods.md#spgnet-pose):

- Change 1, regions. R = 11 one-hot part maps rendered from the keypoints
  (:func:`pose_regions`), in channel order :data:`REGION_NAMES`: 0 background, 1 torso (the quad
  Rhip-Lhip-Lsho-Rsho, filled by the crossing rule of ``augment.data.pose``), 2 head (Deformable GAN's
  head box, ``augment.data.pose.part_masks``), 3-10 the 8 Deformable GAN limb rectangles (mask
  version, lower limbs extended 0.5). Where parts overlap, the first of :data:`REGION_PRIORITY`
  wins: forearms, upper arms, torso, head, lower legs, upper legs (right before left); pixels of
  no part are background. The source map pools the style codes, the target map drives every ACE.
- Change 2, flow. A dense backward flow from Deformable GAN's 10 part affines
  (``augment.data.pose.part_affines``: target (x, y) -> source (x, y)): each target pixel of region r
  >= 1 uses the affine of part r-1, flow = A(x, y) - (x, y) in pixels (channel 0 = x, 1 = y, the
  official ``flow_2to1`` convention: the warped feature at (x, y) samples the source at
  (x, y) + flow). Visibility: 0 inside a part with a valid affine, 1 inside a part whose affine is
  undefined (joint missing in the source on both sides, or a singular fit: "human pixel without
  correspondence", as Intr-Flow's label 1), 2 background; the flow is 0 where vis != 0 (the
  official code multiplies netF's flow by (vis < 2)). Intr-Flow's network outputs flow / 20 and
  the official model multiplies it by 20 (``flow_scale``); this flow is in pixels already.
  ``feat_warp=False`` is the official ``--G_feat_warp 0``: no warping, the encoder's appearance
  features feed the skips directly (the visibility blocks stay in the network, unused, as there).

Inputs of G (B = batch, H x W = 128 x 64)
    x_p    target joints (B,18,H,W): binary disks of radius 4 (augment.data.pose.joint_disks).
    x_a    source image (B,3,H,W) in [-1,1].
    s_seg, d_seg  one-hot region maps of source and target (B,R,H,W).
    flow (B,2,H,W) pixels, vis (B,1,H,W) in {0,1,2}, or None (no warping).

Generator (``DualUnetGenerator_SEAN``; nf 32, max_nf 128, 5 scales, 4 warped, BN, ReLU)
    pre-convs: 1x1 conv (no bias) + BN, pose 18 -> 32 and appearance 3 -> 32.
    Scale l = 0..4, c_in = min(32(l+1), 128) = 32/64/96/128/128, c_out = min(32(l+2), 128):
        2 ResidualBlocks x + BN(conv3x3(ReLU(x))) per stream, each output kept as a skip;
        then ReLU -> conv3x3 s2 (c_in -> c_out) -> BN (128x64 -> 4x2 after 5 scales).
    Warping (l < 4): flow avg-pooled over 2^l and divided by 2^l, vis min-pooled; the skip is
        x_w = warp(x_a) through the residual visibility block
        x_w + BN(conv3x3(ReLU(cat(x_w, BN(conv1x1(ReLU(cat(x_w (vis==0), x_w (vis==1)))))))))
        (``ResidualBlock(c, 2c)``, vis_mode 'residual'); the encoder continues with unwarped x_a.
        Bilinear ``grid_sample`` with align_corners=True, zero padding: the official grid is
        normalised by 2g/(W-1) - 1, the align_corners=True convention of PyTorch 1.2 it ran on
        (it calls grid_sample without the argument, which on PyTorch >= 1.3 means False and
        shifts and stretches every warp by up to half a pixel).
    Bottleneck: cat(pose, appearance) 256 -> 1x1 conv + BN -> 128.
    Decoder, l = 4..0: x = ACE(PixelShuffle2(conv3x3(ReLU(x)) -> 4 c_in)), then 2
        ResidualBlock_SEAN (skips popped in reverse): a = SNconv1x1(ReLU(ACE(skip))) (2c -> c),
        x = x + SNconv3x3(ReLU(ACE(cat(x, a)))) (2c -> c), skip = cat(pose skip, appearance skip);
        convs without bias, spectral norm (one power iteration per training forward).
    Output: ReflectionPad 3 -> conv7x7 (32 -> 3, bias) -> tanh.

ACE (region-adaptive normalisation, SEAN), on C channels
    n = BatchNorm(affine=False)(x + noise), noise = N(0,1) per pixel (B,1,H,W) x learned
        per-channel scale (zeros at init). Training forwards only unless ``eval_noise`` (the
        official code adds it in eval too; here inference is deterministic by default).
    Style codes (once per forward): ``Zencoder`` on the source image: ReflPad1 conv3x3 3 -> 32,
        conv s2 32 -> 64, conv s2 64 -> 128, ConvT s2 128 -> 256, ReflPad1 conv3x3 256 -> 128,
        tanh (InstanceNorm without affine and LeakyReLU 0.2 between) -> (B,128,64,32), averaged
        over each source region (nearest-resized to 64x32) -> codes (B,R,128), 0 for an empty
        region.
    Style branch: mu_j = ReLU(fc_j(code_j)) (one 128x128 Linear per region, stacked (R,128,128)
        and applied with one einsum), broadcast over the target region j (nearest-resized map),
        then conv3x3 (128 -> C) -> gamma_s, beta_s.
    SPADE branch: conv3x3 (R -> 64) + ReLU, then conv3x3 (64 -> C) -> gamma_p, beta_p.
    gamma = s(a_g) gamma_s + (1 - s(a_g)) gamma_p, beta likewise (s = sigmoid, a_g = a_b = 0 at
        init: both branches weigh 1/2); out = n (1 + gamma) + beta.

Discriminator (``NLayerDiscriminator``; ndf 64, 3 layers, BN, sigmoid)
    Input cat(source image, image, target joints) (24 ch). conv4x4 s2 (bias) -> 64, LReLU 0.2;
    conv4x4 s2 -> 128, BN, LReLU; -> 256 s2; conv4x4 s1 -> 512, BN, LReLU; conv4x4 s1 -> 1
    (bias); sigmoid. 128x64 -> 14x6 patch map.

Losses and one training iteration (official order: one G forward, then D's step, then G's step)
    D: lambda_gan * 0.5 * (BCE(D(src, tgt, joints), 1) + BCE(D(src, fake.detach(), joints), 0))
       (reported: the term times lambda_gan, as its gradient is).
    G: lambda_l1 |fake - tgt|_1 + lambda_content * sum_i 0.125 |phi_i(fake) - phi_i(tgt)|_1
       + lambda_gan BCE(D(src, fake, joints), 1), phi_i = VGG-19 relu1_1, relu2_1, relu3_1,
       relu4_1, relu5_1 (inputs mapped to [0,1] then ImageNet mean/std); D scores the fake after
       its own update, as officially. The GAN terms (and D's training) start at ``gan_start``
       (official: epoch 6 of 10). lambda_l1 1, lambda_content 1, lambda_gan 0.01.
    BCE from D's pre-sigmoid map in fp32 (generators.losses.bce_gan_loss).
    Optimisers: Adam (0.5, 0.999): G lr 2e-4, no weight decay; D lr 2e-5, weight decay 4e-4.
    Init: 'kaiming' (the official default): Conv / ConvT / Linear weights kaiming-normal fan_in
    (a=0), every bias 0, BN weight N(1, 0.02); ACE's noise scales and blend logits stay 0.
    Augmentation (training, target only, on the device): scale s = 1.2^U(-1,1), shifts
    dx, dy = randint(-10, 10) (upper end exclusive), the official cv2.warpAffine matrix
    [[s, 0, H(1-s)/2 + dx], [0, s, W(1-s)/2 + dy]] (H and W are swapped there, so the scaling
    centre is (x, y) = (H/2, W/2) = (64, 32), not the image centre: kept as trained), bilinear,
    replicated border; target keypoints mapped by it and rounded, those leaving the image
    missing. Part maps, flow and joints are rendered from the augmented target keypoints.

Presets (parameters; forward GFLOPs per 128x64 image = 2 x conv/convT/linear MACs, count_flops;
the einsum of the stacked fc_j, R x 128 x 128 MACs per ACE, is not counted)
    | preset                   | G params   | G GFLOPs | D params  | D GFLOPs | training             |
    |--------------------------|------------|----------|-----------|----------|----------------------|
    | official, regions=20     | 30,914,805 | 38.40    | 2,787,137 | 0.81     | (parsing: not here)  |
    | market (regions=11)      | 27,070,005 | 37.83    | 2,787,137 | 0.81     | 82,380 it, batch 32  |
    | synth                    |    531,305 |  0.66    |    47,337 | 0.02     |  1,200 it, batch 8   |
    tests/test_spgnet.py recomputes every number of this table.

Market schedule. ``train_market.sh``: batch 32, 10 epochs, step LR policy with a 100-epoch step
(so constant for the whole run), GAN from epoch 6. An epoch is the whole training split
(DataLoader, shuffle, drop_last); the split file is not released, and the Market split of the
methods SPGNet builds on (Intr-Flow, PATN, Deformable GAN) has 263,632 pairs: 8,238 iterations
per epoch, 82,380 iterations, GAN from iteration 41,190 (5 epochs). The official test script
puts netG in eval mode (BatchNorm running statistics), as here; its ACE noise stays on there,
here only with ``eval_noise=True`` (inference is deterministic by default).

The ``synth`` preset is the same structure sized for a 2-core CPU (``SYNTH``; most of its time goes
to the 5 ACEs per scale at full resolution): nf 8,
max_nf 32, ONE residual block per scale and stream instead of 2 (3 ACEs per decoder scale
instead of 5), 5 scales (4 warped), style codes 8 wide from a Zencoder of width 4, SPADE hidden
8, ndf 8; batch 8, 1,200 iterations, GAN from iteration 600 (half the run, as officially); no
content loss (VGG-19 weights cannot be assumed offline: ``--set perceptual=true --vgg-weights
PATH`` turns it on). Everything else (regions, flow, ACE, losses, optimisers, augmentation) is
the market recipe. ``market`` needs the VGG weights and stops before training with
MissingWeightsError (naming the file, ``--vgg-weights PATH`` and ``--no-perceptual``).

What the variant loses (README): see :data:`VARIANT_NOTE`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from augment.data.keypoints import JOINT_INDEX, NUM_JOINTS
from augment.data.pose import (
    LIMBS,
    TORSO_POINTS,
    fill_polygons,
    joint_disks,
    part_affines,
    part_masks,
)
from generators.base import Method, StepContext, TrainSchedule, inference_batch, like_source, register_method
from generators.blocks import check_divisible, frozen
from generators.losses import PerceptualL1, bce_gan_loss, load_vgg_features

VARIANT_NOTE = (
    "SPGNet here is the 'SPGNet-pose' variant. The official Market-1501 model conditions its "
    "region-adaptive normalisation on 20-class CIHP human parsing of the source and of the "
    "target and warps appearance features with a flow and visibility map predicted by a frozen "
    "Intr-Flow network. The released code reads both from pair-specific files made offline "
    "(PGN parsing plus an unreleased target-parsing generator) and from a FlowReg checkpoint "
    "trained on SMPL-rendered correspondences, none of which can be regenerated here, so the "
    "faithful Market model is not feasible. The variant keeps the generator, ACE normalisation, "
    "discriminator, losses and schedule unchanged, but replaces parsing by 11 part maps drawn "
    "from the keypoints (background, head box, torso quad, 8 limb rectangles) and the learned "
    "flow by the piecewise-affine flow of Deformable GAN's 10 body parts. It therefore loses "
    "clothing, hair, face and skin semantics (a style code per garment or body-surface class "
    "becomes one per geometric body part, and nothing separates a jacket from the arm inside "
    "it); the learned prediction of the target parsing (target regions are now exact "
    "renderings of the target pose, not the shapes of clothes and hair); and 3D-consistent "
    "dense correspondence with occlusion reasoning (each part moves by one 2D affine map, "
    "overlaps are resolved by a fixed priority, there is no 'visible on the body but hidden in "
    "the source' label except for parts missing from the source altogether, and the background "
    "is never warped)."
)

# ----------------------------------------------------------------------------------------------
# Regions: pose-rendered part maps
# ----------------------------------------------------------------------------------------------

LIMB_NAMES = tuple(f"{a}-{b}" for a, b in LIMBS)
# Channel r >= 1 is Deformable GAN part r - 1 (augment.data.pose.PART_NAMES order).
REGION_NAMES = ("background", "torso", "head") + LIMB_NAMES
NUM_REGIONS = len(REGION_NAMES)  # 11
OFFICIAL_REGIONS = 20  # CIHP classes of the official model
# Overlaps go to the first listed part: forearms and upper arms swing over the body, the tight
# torso quad beats the loose head box, lower legs beat upper legs at the knee; right before left.
REGION_PRIORITY = (
    "Relb-Rwri",
    "Lelb-Lwri",
    "Rsho-Relb",
    "Lsho-Lelb",
    "torso",
    "head",
    "Rkne-Rank",
    "Lkne-Lank",
    "Rhip-Rkne",
    "Lhip-Lkne",
)
VIS_VISIBLE, VIS_NO_CORRESPONDENCE, VIS_BACKGROUND = 0, 1, 2


def torso_quads(kps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N,18,2) (y,x) int keypoints -> (N,H,W) bool: pixel centres inside the quad Rhip, Lhip,
    Lsho, Rsho (even-odd crossing rule of augment.data.pose); empty unless all four are present."""
    h, w = size
    ids = torch.tensor([JOINT_INDEX[n] for n in TORSO_POINTS], device=kps.device)
    corners = kps[:, ids].double()  # (N,4,2) (y,x)
    present = (kps[:, ids] >= 0).all(-1).all(-1)  # (N,)
    nan = torch.full_like(corners, float("nan"))
    corners = torch.where(present[:, None, None], corners, nan)  # NaN polygons are empty
    return fill_polygons(corners[..., 1], corners[..., 0], n_ray=w, n_scan=h)


def region_labels(kps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Region index map (N,H,W) int64 in [0, 11) (:data:`REGION_NAMES`) of keypoints (N,18,2)."""
    kps = torch.as_tensor(kps).long()
    masks = part_masks(kps, size).bool()  # (N,10,H,W), torso = image
    masks[:, 0] = torso_quads(kps, size)
    labels = torch.zeros_like(masks[:, 0], dtype=torch.long)  # background
    for name in reversed(REGION_PRIORITY):  # paint lowest priority first; 10 batched steps
        region = REGION_NAMES.index(name)
        labels = torch.where(masks[:, region - 1], region, labels)
    return labels


def one_hot_regions(labels: torch.Tensor, regions: int = NUM_REGIONS) -> torch.Tensor:
    """(N,H,W) int64 -> (N,R,H,W) float32 one-hot."""
    return F.one_hot(labels, regions).permute(0, 3, 1, 2).float()


def pose_regions(kps, size: tuple[int, int] = (128, 64)) -> torch.Tensor:
    """One-hot part maps (N,11,H,W) float32 of (N,18,2) (y,x) keypoints, on their device."""
    return one_hot_regions(region_labels(kps, size))


def part_flow(
    src_kps: torch.Tensor, tgt_kps: torch.Tensor, tgt_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense backward flow (N,2,H,W) float32 in pixels (x, y) and visibility (N,1,H,W) float32.

    Target pixel (x, y) in region r >= 1 maps to A_{r-1} (x, y) in the source, A = Deformable
    GAN's part affine (target -> source); flow = A (x, y) - (x, y) there, vis 0; vis 1 and flow
    0 where that affine is undefined; vis 2 and flow 0 on the background (r = 0).
    """
    n, h, w = tgt_labels.shape
    affines, valid = part_affines(src_kps, tgt_kps)  # (N,10,2,3), (N,10)
    part = (tgt_labels - 1).clamp(min=0)  # (N,H,W)
    batch = torch.arange(n, device=part.device)[:, None, None]
    a = affines[batch, part]  # (N,H,W,2,3)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=part.device, dtype=torch.float32),
        torch.arange(w, device=part.device, dtype=torch.float32),
        indexing="ij",
    )
    src_x = a[..., 0, 0] * xs + a[..., 0, 1] * ys + a[..., 0, 2]
    src_y = a[..., 1, 0] * xs + a[..., 1, 1] * ys + a[..., 1, 2]
    body = tgt_labels > 0
    visible = body & valid[batch, part]
    vis = torch.where(visible, VIS_VISIBLE, torch.where(body, VIS_NO_CORRESPONDENCE, VIS_BACKGROUND))
    flow = torch.stack([src_x - xs, src_y - ys], 1) * visible[:, None]
    return flow, vis[:, None].float()


# The official content loss's VGG-19 layers (torchvision features[:2], [:7], [:12], [:21], [:30]).
VGG_CONTENT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


# ----------------------------------------------------------------------------------------------
# Config and presets
# ----------------------------------------------------------------------------------------------


@dataclass
class SPGNetConfig:
    """Network, loss and schedule settings. Defaults are the official Market-1501 recipe except
    ``regions`` (11 pose part maps; the official 20 CIHP classes need parsing)."""

    nf: int = 32  # width after the pre-convs (G_nf)
    max_nf: int = 128  # G_max_nf
    num_scales: int = 5  # G_n_scale (Market)
    num_warp_scales: int = 4  # G_n_warp_scale (Market): warping at scales 0..3
    n_residual_blocks: int = 2
    regions: int = NUM_REGIONS  # R: channels of the region maps (official CIHP: 20)
    style_length: int = 128  # ACE style code width
    spade_hidden: int = 64  # SPADE hidden width ("Yes, hardcoded")
    zencoder_nf: int = 32  # Zencoder width (ConvT output 8x this: 256)
    feat_warp: bool = True  # G_feat_warp
    eval_noise: bool = False  # ACE noise in eval mode too (official: always)
    joint_radius: int = 4
    ndf: int = 64
    d_layers: int = 3
    lambda_l1: float = 1.0
    lambda_content: float = 1.0
    content_weights: tuple[float, ...] = (0.125, 0.125, 0.125, 0.125, 0.125)
    perceptual: bool = True  # train with the VGG-19 content term (needs weights)
    lambda_gan: float = 0.01
    gan_start: int = 41_190  # iteration from which D trains and G gets the GAN term
    lr_D: float = 2e-5
    weight_decay: float = 0.0
    weight_decay_D: float = 4e-4
    augment: bool = True  # target-only scale / shift augmentation
    aug_scale: float = 1.2
    aug_shift: int = 10
    train: TrainSchedule = field(default_factory=TrainSchedule)

    def __post_init__(self):
        if not 1 <= self.num_warp_scales <= self.num_scales and self.feat_warp:
            raise ValueError(
                f"num_warp_scales={self.num_warp_scales} must lie in [1, num_scales="
                f"{self.num_scales}] when feat_warp is on"
            )
        if len(self.content_weights) != len(VGG_CONTENT_LAYERS):
            raise ValueError(
                f"content_weights needs {len(VGG_CONTENT_LAYERS)} numbers "
                f"(relu1_1 .. relu5_1), got {len(self.content_weights)}"
            )
        if self.regions < 1 or self.num_scales < 1 or self.n_residual_blocks < 1:
            raise ValueError("regions, num_scales and n_residual_blocks must be >= 1")

    @property
    def uses_perceptual(self) -> bool:
        return self.perceptual and self.lambda_content > 0


MARKET_EPOCH_ITERATIONS = 263_632 // 32  # 8,238: the Market train split at batch 32, drop_last

MARKET_SCHEDULE = TrainSchedule(
    iterations=10 * MARKET_EPOCH_ITERATIONS,  # 82,380 (n_epoch 10)
    batch_size=32,
    lr=2e-4,
    betas=(0.5, 0.999),
    decay_start=10 * MARKET_EPOCH_ITERATIONS,  # StepLR(100 epochs): constant for 10 epochs
    checkpoint_every=MARKET_EPOCH_ITERATIONS,  # save_epoch_freq 1
    sample_every=1_000,
    num_workers=8,
)

# 2-core CPU size (training time: docs/measurements.md#generator-training).
SYNTH_SCHEDULE = TrainSchedule(
    iterations=1_200,
    batch_size=8,
    lr=2e-4,
    betas=(0.5, 0.999),
    decay_start=1_200,
    checkpoint_every=500,
    sample_every=250,
    num_workers=2,
)

SYNTH = dict(
    nf=8,
    max_nf=32,
    n_residual_blocks=1,
    style_length=8,
    spade_hidden=8,
    zencoder_nf=4,
    ndf=8,
    perceptual=False,
    gan_start=600,
    train=SYNTH_SCHEDULE,
)

SPGNET_PRESETS = {
    "market": SPGNetConfig(gan_start=5 * MARKET_EPOCH_ITERATIONS, train=MARKET_SCHEDULE),
    "synth": SPGNetConfig(**SYNTH),
}

# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------


def conv_bn(c_in: int, c_out: int, kernel: int = 1, padding: int = 0) -> nn.Sequential:
    """Official ``conv`` / ``channel_mapping``: conv (no bias) then BatchNorm (keys .0, .1)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=False), nn.BatchNorm2d(c_out))


class ResidualBlock(nn.Module):
    """Official ``ResidualBlock`` (BN, ReLU, no dropout), (B,dim,h,w) -> (B,dim,h,w).

    Without ``dim_a``: x + BN(conv3x3(ReLU(x))). With it (the visibility block):
    x + BN(conv3x3(ReLU(cat(x, BN(conv1x1(ReLU(a)))))))), a (B,dim_a,h,w).
    """

    def __init__(self, dim: int, dim_a: int | None = None):
        super().__init__()
        if dim_a:
            self.conv_a = conv_bn(dim_a, dim)
        self.conv = conv_bn(2 * dim if dim_a else dim, dim, 3, 1)

    def forward(self, x: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        residual = x if a is None else torch.cat([x, self.conv_a(F.relu(a))], 1)
        return x + self.conv(F.relu(residual))


class Zencoder(nn.Module):
    """Style encoder: (B,3,H,W) image -> codes (B,S,H/2,W/2), pooled per region (B,R,S).

    Official ``Zencoder(3, 128)`` layer list (``model.<i>`` keys); its InstanceNorm after the
    ConvT is declared for 64 channels and applied to 256 (no affine: the same operation).
    """

    def __init__(self, style_length: int = 128, ngf: int = 32):
        super().__init__()
        act = lambda: nn.LeakyReLU(0.2)
        self.model = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(3, ngf, 3),
            nn.InstanceNorm2d(ngf),
            act(),
            nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1),
            nn.InstanceNorm2d(2 * ngf),
            act(),
            nn.Conv2d(2 * ngf, 4 * ngf, 3, stride=2, padding=1),
            nn.InstanceNorm2d(4 * ngf),
            act(),
            nn.ConvTranspose2d(4 * ngf, 8 * ngf, 3, stride=2, padding=1, output_padding=1),
            nn.InstanceNorm2d(8 * ngf),
            act(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(8 * ngf, style_length, 3),
            nn.Tanh(),
        )

    def forward(self, image: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return region_average(self.model(image), seg)


def region_average(codes: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """Mean of ``codes`` (B,S,h,w) over each region of one-hot ``seg`` (B,R,H,W) (nearest-resized
    to h x w) -> (B,R,S); zeros for a region with no pixel (official ``codes_vector``)."""
    seg = F.interpolate(seg, size=codes.shape[-2:], mode="nearest").to(codes.dtype)
    sums = torch.einsum("bshw,brhw->brs", codes, seg)
    area = seg.sum((2, 3))[..., None]  # (B,R,1)
    return torch.where(area > 0, sums / area.clamp(min=1), torch.zeros_like(sums))


class RegionLinear(nn.Module):
    """R independent Linear(S, S) layers (official ``fc_mu0`` .. ``fc_mu{R-1}``), stacked:
    weight (R,S_out,S_in), bias (R,S_out); (B,R,S) -> (B,R,S) with one einsum."""

    def __init__(self, regions: int, features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(regions, features, features))
        self.bias = nn.Parameter(torch.zeros(regions, features))
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / features))  # kaiming fan_in, per region

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.einsum("brs,rts->brt", codes, self.weight.to(codes.dtype)) + self.bias.to(codes.dtype)


class SPADE(nn.Module):
    """SPADE branch of ACE: seg (B,R,h,w) -> gamma, beta (B,C,h,w) via conv3x3 R -> hidden +
    ReLU, then one conv3x3 hidden -> C each (official key names ``mlp_shared.0`` etc.)."""

    def __init__(self, channels: int, regions: int, hidden: int = 64):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(regions, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actv = self.mlp_shared(seg)
        return self.mlp_gamma(actv), self.mlp_beta(actv)


class ACE(nn.Module):
    """Region-adaptive normalisation of (B,C,h,w) features; see the module docstring.

    forward(x, seg (B,R,H,W) one-hot at any resolution >= h x w, codes (B,R,S)) -> (B,C,h,w).
    """

    def __init__(
        self, channels: int, regions: int, style_length: int = 128, spade_hidden: int = 64, eval_noise: bool = False
    ):
        super().__init__()
        self.eval_noise = eval_noise
        self.blending_gamma = nn.Parameter(torch.zeros(1))
        self.blending_beta = nn.Parameter(torch.zeros(1))
        self.noise_var = nn.Parameter(torch.zeros(channels))
        self.param_free_norm = nn.BatchNorm2d(channels, affine=False)
        self.Spade = SPADE(channels, regions, spade_hidden)
        self.fc_mu = RegionLinear(regions, style_length)
        self.conv_gamma = nn.Conv2d(style_length, channels, 3, padding=1)
        self.conv_beta = nn.Conv2d(style_length, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        if self.training or self.eval_noise:
            b, _, h, w = x.shape
            noise = torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype)
            x = torch.addcmul(x, noise, self.noise_var.view(1, -1, 1, 1).to(x.dtype))
        normalized = self.param_free_norm(x)
        seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest").to(normalized.dtype)
        mu = F.relu(self.fc_mu(codes.to(normalized.dtype)))  # (B,R,S)
        middle = torch.einsum("brs,brhw->bshw", mu, seg)  # code of each pixel's region
        gamma_s, beta_s = self.conv_gamma(middle), self.conv_beta(middle)
        gamma_p, beta_p = self.Spade(seg)
        # lerp(p, s, a) = a s + (1 - a) p: the official blend, in one pass over the maps.
        gamma = torch.lerp(gamma_p, gamma_s, torch.sigmoid(self.blending_gamma).to(gamma_s.dtype))
        beta = torch.lerp(beta_p, beta_s, torch.sigmoid(self.blending_beta).to(beta_s.dtype))
        return torch.addcmul(beta, normalized, 1 + gamma)  # n (1 + gamma) + beta


class ResidualBlockSEAN(nn.Module):
    """Official ``ResidualBlock_SEAN(dim, 2 dim)``: x (B,dim,h,w), skip a (B,2dim,h,w) ->
    x + SNconv3x3(ReLU(ACE(cat(x, SNconv1x1(ReLU(ACE(a))))))) (convs without bias)."""

    def __init__(self, dim: int, regions: int, style_length: int, spade_hidden: int, eval_noise: bool):
        super().__init__()
        ace = lambda c: ACE(c, regions, style_length, spade_hidden, eval_noise)
        self.conv_a = spectral_norm(nn.Conv2d(2 * dim, dim, 1, bias=False))
        self.conv_a_norm = ace(2 * dim)
        self.conv = spectral_norm(nn.Conv2d(2 * dim, dim, 3, padding=1, bias=False))
        self.conv_norm = ace(2 * dim)

    def forward(self, x, seg, codes, a):
        a = self.conv_a(F.relu(self.conv_a_norm(a, seg, codes)))
        residual = torch.cat([x, a], 1)
        return x + self.conv(F.relu(self.conv_norm(residual, seg, codes)))


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp (official ``warp_acc_flow``): out(x, y) = x sampled at (x, y) + flow(x, y),
    bilinear, zeros outside; flow (B,2,h,w) in pixels of x's grid, channel 0 = x. align_corners
    =True, the convention of the official normalisation; fp32 sampling even under autocast
    (bf16 grid coordinates would be off by up to a quarter pixel)."""
    b, _, h, w = x.shape
    ys = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w)
    flow = flow.float()
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    with torch.autocast(device_type=x.device.type, enabled=False):
        out = F.grid_sample(
            x.float(), torch.stack([gx, gy], -1), mode="bilinear", padding_mode="zeros", align_corners=True
        )
    return out.to(x.dtype)


class SPGNetGenerator(nn.Module):
    """``DualUnetGenerator_SEAN`` with vis_mode 'residual' (official attribute names).

    forward(x_p (B,18,H,W), x_a (B,3,H,W), s_seg, d_seg (B,R,H,W), flow (B,2,H,W) | None,
    vis (B,1,H,W) | None) -> (B,3,H,W) in [-1,1]. H, W divisible by 2**num_scales.
    """

    def __init__(self, cfg: SPGNetConfig, pose_channels: int = NUM_JOINTS):
        super().__init__()
        self.num_scales, self.num_warp_scales = cfg.num_scales, cfg.num_warp_scales
        self.n_res, self.regions = cfg.n_residual_blocks, cfg.regions
        self.feat_warp, self.joint_radius = cfg.feat_warp, cfg.joint_radius
        nf, max_nf = cfg.nf, cfg.max_nf
        ace = lambda c: ACE(c, cfg.regions, cfg.style_length, cfg.spade_hidden, cfg.eval_noise)
        self.Zencoder = Zencoder(cfg.style_length, cfg.zencoder_nf)
        self.encp_pre_conv = conv_bn(pose_channels, nf)
        self.enca_pre_conv = conv_bn(3, nf)
        for l in range(cfg.num_scales):
            c_in, c_out = min(nf * (l + 1), max_nf), min(nf * (l + 2), max_nf)
            for stream in ("encp", "enca"):
                for i in range(cfg.n_residual_blocks):
                    self.add_module(f"{stream}_{l}_res_{i}", ResidualBlock(c_in))
                    if stream == "enca" and l < cfg.num_warp_scales:
                        self.add_module(f"enca_{l}_vis_{i}", ResidualBlock(c_in, 2 * c_in))
                self.add_module(
                    f"{stream}_{l}_downsample",
                    nn.Sequential(
                        nn.ReLU(), nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out)
                    ),
                )
            if l == cfg.num_scales - 1:
                self.dec_fuse = conv_bn(2 * c_out, c_out)
            self.add_module(
                f"dec_{l}_upsample",
                nn.Sequential(nn.ReLU(), nn.Conv2d(c_out, 4 * c_in, 3, padding=1, bias=False), nn.PixelShuffle(2)),
            )
            self.add_module(f"dec_{l}_upsample_norm", ace(c_in))
            for i in range(cfg.n_residual_blocks):
                self.add_module(
                    f"dec_{l}_res_{i}",
                    ResidualBlockSEAN(c_in, cfg.regions, cfg.style_length, cfg.spade_hidden, cfg.eval_noise),
                )
        self.dec_output = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(nf, 3, 7))

    def block(self, name: str) -> nn.Module:
        return self._modules[name]

    def forward(self, x_p, x_a, s_seg, d_seg, flow=None, vis=None) -> torch.Tensor:
        codes = self.Zencoder(x_a, s_seg)  # (B,R,S)
        warping = flow is not None
        if warping:
            if vis is None:
                raise ValueError("SPGNetGenerator: flow given without vis")
            vis = vis.round()
        hidden_p, hidden_a = [], []
        x_p = self.encp_pre_conv(x_p)
        for l in range(self.num_scales):
            for i in range(self.n_res):
                x_p = self.block(f"encp_{l}_res_{i}")(x_p)
                hidden_p.append(x_p)
            x_p = self.block(f"encp_{l}_downsample")(x_p)
        x_a = self.enca_pre_conv(x_a)
        for l in range(self.num_scales):
            if warping and l < self.num_warp_scales:
                k = 2**l  # vis: min-pool = priority visible > no correspondence > background
                flow_l = F.avg_pool2d(flow, k) / k if l else flow
                vis_l = -F.max_pool2d(-vis, k) if l else vis
                keep = torch.cat([(vis_l == 0), (vis_l == 1)], 1).to(x_a.dtype)  # (B,2,h,w)
            for i in range(self.n_res):
                x_a = self.block(f"enca_{l}_res_{i}")(x_a)
                if warping and l < self.num_warp_scales:
                    x_w = warp(x_a, flow_l)
                    expanded = torch.cat([x_w * keep[:, :1], x_w * keep[:, 1:]], 1)
                    hidden_a.append(self.block(f"enca_{l}_vis_{i}")(x_w, expanded))
                else:
                    hidden_a.append(x_a)
            x_a = self.block(f"enca_{l}_downsample")(x_a)
        x = self.dec_fuse(torch.cat([x_p, x_a], 1))
        for l in range(self.num_scales - 1, -1, -1):
            x = self.block(f"dec_{l}_upsample_norm")(self.block(f"dec_{l}_upsample")(x), d_seg, codes)
            for i in range(self.n_res - 1, -1, -1):
                skip = torch.cat([hidden_p.pop(), hidden_a.pop()], 1)
                x = self.block(f"dec_{l}_res_{i}")(x, d_seg, codes, skip)
        return torch.tanh(self.dec_output(x))


class NLayerDiscriminator(nn.Module):
    """Official PatchGAN ``NLayerDiscriminator`` (BN, sigmoid, output bias): (B,in,H,W) ->
    probabilities (B,1,H/8-2,W/8-2) for 3 layers (14x6 at 128x64). :meth:`logits` skips the
    sigmoid (the losses use it)."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2 if n < n_layers else 1, padding=1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1), nn.Sigmoid()]
        self.model = nn.Sequential(*layers)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model[:-1](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_kaiming(net: nn.Module) -> nn.Module:
    """Official ``weights_init_kaiming``: Conv*/Linear weights kaiming-normal (fan_in, a=0),
    affine BN weights N(1, 0.02), every bias 0. Spectral-norm convs: the raw weight
    (``weight_orig``, which the official code reaches through ``m.weight``'s shared storage).
    :class:`RegionLinear` initialises itself the same way; ACE's blend and noise parameters
    are not touched (0)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = m.weight_orig if hasattr(m, "weight_orig") else m.weight
            nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
        if isinstance(getattr(m, "bias", None), nn.Parameter):
            nn.init.zeros_(m.bias)
    return net


# ----------------------------------------------------------------------------------------------
# Target augmentation
# ----------------------------------------------------------------------------------------------


def augment_target(
    img: torch.Tensor, kps: torch.Tensor, scale_range: float = 1.2, shift: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Official Market target augmentation, batched: per sample s = scale_range^U(-1,1) and
    integer shifts dx, dy uniform in [-shift, shift) (``np.random.randint``), then
    :func:`affine_target`. The draws come from torch's global CPU generator (checkpointed by the
    trainer), so they do not depend on the device."""
    b = img.shape[0]
    s = scale_range ** (torch.rand(b, dtype=torch.float64) * 2 - 1)
    if shift > 0:
        dx = torch.randint(-shift, shift, (b,)).double()
        dy = torch.randint(-shift, shift, (b,)).double()
    else:
        dx = dy = torch.zeros(b, dtype=torch.float64)
    return affine_target(img, kps, s, dx, dy)


def affine_target(
    img: torch.Tensor, kps: torch.Tensor, s: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and shift a batch of target images and keypoints as the official loader does.

    img (B,3,H,W), kps (B,18,2) int64 (y,x), s / dx / dy (B,). The official cv2.warpAffine matrix
    [[s, 0, H(1-s)/2 + dx], [0, s, W(1-s)/2 + dy]] maps (x, y) -> (x', y') (H and W as written
    there: the scaling centre is (x, y) = (H/2, W/2)); each output pixel samples the input at the
    inverse map, bilinear, replicated border (BORDER_REPLICATE). Keypoints are mapped, rounded to
    the nearest pixel, and marked missing (-1) when they leave the image.
    """
    b, _, h, w = img.shape
    dev = img.device
    s, dx, dy = (torch.as_tensor(v, dtype=torch.float64).to(dev) for v in (s, dx, dy))
    tx, ty = 0.5 * h * (1 - s) + dx, 0.5 * w * (1 - s) + dy
    ys = torch.arange(h, device=dev, dtype=torch.float64).view(1, h, 1)
    xs = torch.arange(w, device=dev, dtype=torch.float64).view(1, 1, w)
    src_x = ((xs - tx.view(b, 1, 1)) / s.view(b, 1, 1)).expand(b, h, w)
    src_y = ((ys - ty.view(b, 1, 1)) / s.view(b, 1, 1)).expand(b, h, w)
    # align_corners=True: -1 and +1 are the centres of the first and last pixels.
    grid = torch.stack([src_x * (2.0 / (w - 1)) - 1, src_y * (2.0 / (h - 1)) - 1], -1).float()
    out = F.grid_sample(img.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    kx = torch.round(s[:, None] * kps[..., 1].double() + tx[:, None])
    ky = torch.round(s[:, None] * kps[..., 0].double() + ty[:, None])
    inside = (kps >= 0).all(-1) & (kx >= 0) & (kx < w) & (ky >= 0) & (ky < h)
    moved = torch.stack([ky, kx], -1).long()
    moved = torch.where(inside[..., None], moved, torch.full_like(moved, -1))
    return out.to(img.dtype), moved


# ----------------------------------------------------------------------------------------------
# Method
# ----------------------------------------------------------------------------------------------


@dataclass
class Conditions:
    """What G needs besides the source image, built from keypoints on the model's device."""

    joints: torch.Tensor  # (B,18,H,W) target joint disks
    s_seg: torch.Tensor  # (B,R,H,W) source regions
    d_seg: torch.Tensor  # (B,R,H,W) target regions
    flow: torch.Tensor | None  # (B,2,H,W) pixels, or None without warping
    vis: torch.Tensor | None  # (B,1,H,W)


@register_method
class SPGNet(Method):
    """SPGNet-pose (see the module docstring)."""

    name = "spgnet"
    Config = SPGNetConfig
    presets = SPGNET_PRESETS

    def build_networks(self, cfg: SPGNetConfig) -> dict[str, nn.Module]:
        G = init_kaiming(SPGNetGenerator(cfg))
        D = init_kaiming(NLayerDiscriminator(3 + 3 + NUM_JOINTS, cfg.ndf, cfg.d_layers))
        return {"G": G, "D": D}

    def conditions(self, G: SPGNetGenerator, src_kps, tgt_kps, size, device) -> Conditions:
        """Joint disks, part maps and flow of a batch of keypoint pairs, on ``device``."""
        if G.regions != NUM_REGIONS:
            raise ValueError(
                f"this SPGNet has regions={G.regions}, but this project renders "
                f"{NUM_REGIONS} pose part maps (regions={OFFICIAL_REGIONS} is the "
                "official CIHP parsing, which cannot be produced here)"
            )
        size = (int(size[0]), int(size[1]))
        src_kps = torch.as_tensor(src_kps).to(device).long()
        tgt_kps = torch.as_tensor(tgt_kps).to(device).long()
        src_labels, tgt_labels = region_labels(src_kps, size), region_labels(tgt_kps, size)
        flow = vis = None
        if G.feat_warp:
            flow, vis = part_flow(src_kps, tgt_kps, tgt_labels)
        return Conditions(
            joints=joint_disks(tgt_kps, size, G.joint_radius),
            s_seg=one_hot_regions(src_labels),
            d_seg=one_hot_regions(tgt_labels),
            flow=flow,
            vis=vis,
        )

    def generate(self, nets, src_img, src_kps, tgt_kps) -> torch.Tensor:
        G = nets["G"]
        x = inference_batch(G, src_img, src_kps, tgt_kps, lambda img: check_divisible(img, G.num_scales, "scales"))
        c = self.conditions(G, x.src_kps, x.tgt_kps, x.size, x.device)
        c.joints = like_source(c.joints, x.src_img)
        return G(c.joints, x.src_img, c.s_seg, c.d_seg, c.flow, c.vis)

    def required_weights(self, cfg: SPGNetConfig) -> list[str]:
        return ["vgg19"] if cfg.uses_perceptual else []

    def make_optimizers(self, nets, cfg: SPGNetConfig) -> dict[str, torch.optim.Optimizer]:
        """Adam (betas from the schedule): G at lr, D at lr_D with weight decay 4e-4."""
        t = cfg.train
        opts = {
            "G": torch.optim.Adam(nets["G"].parameters(), lr=t.lr, betas=tuple(t.betas), weight_decay=cfg.weight_decay)
        }
        if "D" in nets:
            opts["D"] = torch.optim.Adam(
                nets["D"].parameters(), lr=cfg.lr_D, betas=tuple(t.betas), weight_decay=cfg.weight_decay_D
            )
        return opts

    def make_context(
        self, nets, cfg: SPGNetConfig, *, device="cpu", amp_dtype=None, seed: int = 0, vgg_weights=None
    ) -> StepContext:
        ctx = super().make_context(nets, cfg, device=device, amp_dtype=amp_dtype, seed=seed, vgg_weights=vgg_weights)
        if cfg.uses_perceptual:  # raises MissingWeightsError before any training
            vgg = load_vgg_features(vgg_weights, VGG_CONTENT_LAYERS)  # ImageNet mean/std on [0,1]
            ctx.losses["content"] = PerceptualL1(vgg, cfg.content_weights).to(ctx.device)
        return ctx

    def train_step(self, nets, opts, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, float]:
        """One iteration: G forward, D step (from ``gan_start``), G step. Returns the weighted terms."""
        cfg: SPGNetConfig = ctx.config
        G, D = nets["G"], nets["D"] if "D" in nets else None
        x = ctx.batch(batch, lambda img: check_divisible(img, G.num_scales, "scales"))
        src, tgt, tgt_kps = x.src_img, x.tgt_img, x.tgt_kps.long()
        if cfg.augment:
            tgt, tgt_kps = augment_target(tgt, tgt_kps, cfg.aug_scale, cfg.aug_shift)
            tgt = ctx.layout(tgt)
        c = self.conditions(G, x.src_kps, tgt_kps, x.size, ctx.device)
        c.joints = ctx.layout(c.joints)
        use_gan = D is not None and cfg.lambda_gan > 0 and ctx.iteration >= cfg.gan_start
        zero = src.new_zeros(())

        with ctx.autocast():
            fake = G(c.joints, src, c.s_seg, c.d_seg, c.flow, c.vis)

        loss_D = zero
        if use_gan:
            real_in = torch.cat([src, tgt, c.joints], 1)
            fake_in = torch.cat([src, fake.detach().to(src.dtype), c.joints], 1)
            with ctx.autocast():
                loss_D = (
                    cfg.lambda_gan
                    * 0.5
                    * (bce_gan_loss(D.logits(real_in), True) + bce_gan_loss(D.logits(fake_in), False))
                )
            ctx.backward_step(loss_D, opts["D"])

        with frozen(D):
            with ctx.autocast():
                loss_l1 = F.l1_loss(fake.float(), tgt.float()) * cfg.lambda_l1
                loss_content = (
                    ctx.losses["content"](fake, tgt) * cfg.lambda_content if "content" in ctx.losses else zero
                )
                loss_gan = (
                    bce_gan_loss(D.logits(torch.cat([src, fake.to(src.dtype), c.joints], 1)), True) * cfg.lambda_gan
                    if use_gan
                    else zero
                )
            loss_G = loss_l1 + loss_content + loss_gan
            ctx.backward_step(loss_G, opts["G"])
        return ctx.finish({"G": loss_G, "L1": loss_l1, "content": loss_content, "G_GAN": loss_gan, "D": loss_D})
