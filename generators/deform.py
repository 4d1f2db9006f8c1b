"""Deformable GAN (Siarohin et al., CVPR 2018), as the official Keras code builds and trains it.

Source: AliaksandrSiarohin/pose-gan @ 8693ec4 (conditional_gan.py: make_generator, make_discriminator,
nn_loss, CGAN; pose_transform.py: AffineTransformLayer, affine_transforms, pose_masks; cmd.py;
pose_dataset.py; README "Market full" recipe) with its submodule AliaksandrSiarohin/gan @ a4aa9a3
(gan.py: the log losses; train.py: the D-then-G step; layer_utils.py: the VGG content model) and
keras-contrib's InstanceNormalization. Facts and sources: docs/methods.md#deformable-gan.

Inputs (B = batch, 128x64 on Market; H, W divisible by 2**(len(enc_filters) - 1) = 32)
    P1 source image (B,3,H,W) in [-1,1]; P2 target image; BP1 / BP2 source / target heatmaps
    (B,18,H,W), exp(-d^2 / (2 * 6^2)) (augment.data.pose.heatmaps, official cords_to_map);
    affines (B,10,2,3): augment.data.pose.part_affines(src_kps, tgt_kps), backward target (x,y) ->
    source (x,y) in full-resolution pixels, "no point" (+1000 shift) for unusable parts;
    masks (B,10,H,W): augment.data.pose.part_masks(tgt_kps), target frame (torso = whole image).

Normalisation (:class:`KerasInstanceNorm`, every "IN" below): keras-contrib
``InstanceNormalization()`` with its default axis=None: per sample ONE mean and ONE (population)
standard deviation over H x W x C, y = gamma * (x - mean) / (std + 1e-3) + beta with a SINGLE
scalar gamma and beta (2 parameters per layer). Not nn.InstanceNorm2d (per channel, eps inside
the square root) and not GroupNorm(1, C) (per-channel affine, eps inside the root).

Generator (``make_generator``, warp_skip='mask', use_input_pose, heatmaps; 128x64 widths)
    Two encoders with widths 64/128/256/512/512/512 (outputs at 128x64, 64x32, ..., 4x2):
        appearance: cat(P1, BP1) (21 ch); pose: BP2 (18 ch)
        layer 0: conv3x3 'same' with bias (no activation / norm)
        layers 1-5: LeakyReLU 0.2 -> zero pad 1 -> conv4x4 s2 without bias -> IN (layer 5: no IN)
    Skips: i = 0..3 (128x64 ... 16x8): cat(warp_parts(appearance_i), pose_i) (pose second);
           i = 4, 5: cat(appearance_i, pose_i).  warp_parts = generators.warp (mask, max).
    Decoder 512/512/512/256/128, each ReLU -> ConvT4x4 s2 without bias (Keras 'valid' + Cropping
    (1,1) = PyTorch padding=1) -> IN (-> Dropout 0.5 in the first 3): block 0 on skip 5, block
    i on cat(previous, skip 5-i); then cat(previous, skip 0) -> ReLU -> conv3x3 (bias) -> tanh.
    warp_skip='none' (the paper's baseline): ONE encoder on cat(P1, BP1, BP2) (39 ch), skips are
    its plain outputs.
Discriminator (``make_discriminator``, disc_type='call')
    cat(P1, BP1, image, BP2) (42 ch) -> conv4x4 s2 'valid' (bias) -> 64; 3 blocks [LeakyReLU 0.2,
    pad 1, conv4x4 s2 no bias, IN] -> 128/256/512; [LeakyReLU, pad 1, conv4x4 s2 no bias] -> 1;
    sigmoid: 3x1 patch probabilities at 128x64 (:meth:`DeformDiscriminator.logits` gives the
    map before the sigmoid).
Initialisation: Keras defaults, glorot-uniform kernels (nn.init.xavier_uniform_ gives the same
bound for Conv and ConvTranspose), zero biases, gamma 1 / beta 0.

Losses and one training iteration (gan @ a4aa9a3 Trainer.train_one_step with training_ratio 1:
first D, then G)
    D: -mean log D(P1,BP1,P2,BP2) - mean log(1 - D(P1,BP1,G,BP2))      (real and fake in one
       forward, as the official concatenated batch; per-sample norm, so the same function)
    G: gan_penalty_weight * -mean log D(P1,BP1,G,BP2)
       + l1_penalty_weight * content(P2, G)
    content (official ``st_loss``) on phi = VGG-19 block1_conv2 (post-ReLU; torchvision
    ``features[:4]``) when ``perceptual``, else on the raw pixels: for nn_loss_area_size k > 1
    the nearest-neighbour loss :func:`nn_loss` = mean over pixels of min over the k x k
    neighbourhood of the TARGET's features (padded with -10000) of sum_c |phi(P2) - phi(G)|;
    for k = 1, mean |phi(P2) - phi(G)|.
    Market "full" (README): gan 1, l1_penalty_weight 0.01, k = 3, block1_conv2; Adam 2e-4
    (0.5, 0.999) for both; batch 4; 90 epochs x 1000 iterations, constant rate (no decay).
    The log losses are evaluated as BCE on D's pre-sigmoid map in fp32 (the official
    -log(p + 1e-7) without the 1e-7, stable under autocast). One G forward per iteration feeds
    both steps (the official code draws separate batches for D and G and runs G twice; G does
    not change in between, so only the dropout sample / batch differ). During G's backward D
    is frozen.

VGG input (``vgg_input``). The official content model (gan/layer_utils.py) feeds Keras' Caffe
VGG-19: x -> 255 (x + 1) / 2, minus (103.939, 116.779, 123.68) in RGB channel order, THEN flipped
to BGR ("keras"; the mean is subtracted before the flip, so the means land on the wrong channels,
as in the original). The preprocessing belongs to the weights: this project's standard VGG-19
file (torchvision's vgg19-dcbb9e9d.pth, what ``--vgg-weights`` and the trainer look for) was
trained on RGB in [0,1] normalised by the ImageNet mean/std ("torchvision", the market default).
Its block1_conv2 features are on another scale than the Caffe model's (the Caffe net reads grey
levels 0-255 minus the mean, torchvision's about 58x smaller numbers), so the 0.01 weight, tuned
on Caffe features, does not strike the same balance against the GAN term. For the original
exactly: a Caffe VGG-19 converted to the torchvision layout (e.g. jcjohnson/pytorch-vgg's
vgg19-d01eb7cb.pth) with ``--vgg-weights FILE --set vgg_input=keras``.

Presets (parameters; forward GFLOPs per 128x64 image = 2 x conv/convT MACs, base.count_flops)
    | preset          | G params   | G GFLOPs | D params  | D GFLOPs | recipe                          |
    |-----------------|------------|----------|-----------|----------|---------------------------------|
    | market          | 61,109,085 | 17.12    | 2,803,782 | 0.49     | full: mask, NN-VGG 0.01, k=3    |
    | market_dsc      | 61,109,085 | 17.12    | 2,803,782 | 0.49     | dsc: mask, pixel L1 100         |
    | market_baseline | 36,072,533 | 11.59    | 2,803,782 | 0.49     | baseline: none, pixel L1 100    |
    | synth           |    846,141 |  0.89    |    49,422 | 0.03     | dsc recipe, small widths        |
    market*: 90,000 iterations at batch 4, Adam 2e-4 (0.5, 0.999), no decay.
    Official sizes: G 61.1M (baseline 36.1M), D 2.80M. tests/test_deform.py recomputes every number here.

The ``synth`` preset (embedded 128x64 dataset, 2-core CPU; training time in
docs/measurements.md#generator-training): the official structure
(two encoders, 6 levels, 4 deformable skips, the same norms, dropout and discriminator) at reduced
widths (encoders 16/32/64/64/64/64, decoder 64/64/64/32/16, D 8/16/32/64), trained with the
official "dsc" recipe (mean pixel L1, weight 100, + GAN 1), batch 8, 1,800 iterations at the
constant official rate (SYNTH_SCHEDULE). Two quality switches, neither touching the deformable
skips: the decoder upsamples by nearest resize + Conv3 instead of ConvT4 stride 2 (fewer parameters,
more FLOPs at the higher resolution), and samples come from an EMA (decay 0.999) of G's weights.
Measured on the first 1,000 embedded test pairs (1,800 iterations, seed 0): SSIM / mask-SSIM
0.2871 / 0.8832 -> 0.3292 / 0.8863, re-ID identity proxy (``generators.identity``) 51.7% -> 58.1%
(copy-source 71.8%, real target images 83.4%). Why not
the "full" recipe: VGG-19 weights cannot be assumed offline, and its content term on raw pixels
(what ``--no-perceptual`` gives on ``market``: the official ``--content_loss_layer none``, i.e. the
3x3 NN loss on pixels at weight 0.01) is nearly weightless next to the GAN term. Without VGG
weights on Market, train ``market_dsc`` rather than ``market --no-perceptual``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from augment.data.keypoints import NUM_JOINTS
from generators.base import Method, StepContext, TrainSchedule, inference_batch, register_method
from generators.blocks import check_divisible, check_upsample, frozen, upsample_layers
from generators.identity_critic import IdentityCriticConfig, QualityTerms
from generators.losses import bce_gan_loss, feature_matching_loss, load_vgg_features
from generators.warp import warp_parts

WARP_SKIPS = ("mask", "none")
# vgg_input -> the extractor's normalisation (generators.losses.VGG_NORMALIZATIONS): torchvision's
# weights want ImageNet mean/std; "keras" is the official Caffe preprocessing (BGR, 0-255 minus the
# Caffe means, subtracted in RGB order as the original does).
VGG_INPUTS = {"torchvision": "imagenet", "keras": "caffe"}
VGG_CONTENT_LAYER = "relu1_2"  # Keras block1_conv2 (post-ReLU) = torchvision features[:4]
NN_PAD_VALUE = -10000.0  # official padding of the target features

# ----------------------------------------------------------------------------------------------
# Config and presets
# ----------------------------------------------------------------------------------------------


@dataclass
class DeformConfig:
    """Network, loss and schedule settings; defaults are the official Market "full" recipe.
    Loss fields carry the official flag names (cmd.py)."""

    warp_skip: str = "mask"  # mask (deformable skips) | none (baseline)
    enc_filters: tuple[int, ...] = (64, 128, 256, 512, 512, 512)
    dec_filters: tuple[int, ...] = (512, 512, 512, 256, 128)
    warped_skips: int = 4  # skips 0..3 are warped (AffineTransformLayer, i < 4)
    dec_dropout: int = 3  # Dropout(0.5) in the first 3 decoder blocks
    disc_filters: tuple[int, ...] = (64, 128, 256, 512)
    norm_eps: float = 1e-3  # keras-contrib InstanceNormalization epsilon
    pose_sigma: float = 6.0
    gan_penalty_weight: float = 1.0
    l1_penalty_weight: float = 0.01  # weight of the content term
    nn_loss_area_size: int = 3  # k: nearest-neighbour loss over k x k (1 = plain L1)
    perceptual: bool = True  # content on VGG-19 block1_conv2 (else raw pixels)
    vgg_input: str = "torchvision"  # torchvision | keras (see the module docstring)
    # Switches beyond the official recipe (their defaults are the official behaviour):
    upsample: str = "convt"  # decoder: convt (official ConvT4 s2) | nearest | bilinear (+ Conv3)
    lambda_fm: float = 0.0  # discriminator feature matching weight (0: off)
    ema_decay: float = 0.0  # sample from an EMA of G's weights ("G_ema"; 0: off)
    identity: IdentityCriticConfig = field(default_factory=IdentityCriticConfig)  # weight 0: off
    train: TrainSchedule = field(default_factory=TrainSchedule)

    def __post_init__(self):
        if self.warp_skip not in WARP_SKIPS:
            raise ValueError(f"warp_skip must be one of {', '.join(WARP_SKIPS)}, got {self.warp_skip!r}")
        if self.vgg_input not in VGG_INPUTS:
            raise ValueError(f"vgg_input must be one of {', '.join(VGG_INPUTS)}, got {self.vgg_input!r}")
        if len(self.enc_filters) < 2 or len(self.dec_filters) != len(self.enc_filters) - 1:
            raise ValueError(
                f"need >= 2 encoder widths and one decoder width fewer; got enc_filters="
                f"{self.enc_filters}, dec_filters={self.dec_filters}"
            )
        if not 0 <= self.warped_skips <= len(self.enc_filters):
            raise ValueError(f"warped_skips must lie in [0, {len(self.enc_filters)}], got {self.warped_skips}")
        if not 0 <= self.dec_dropout <= len(self.dec_filters):
            raise ValueError(f"dec_dropout must lie in [0, {len(self.dec_filters)}], got {self.dec_dropout}")
        if len(self.disc_filters) < 1:
            raise ValueError("disc_filters needs at least one width")
        if self.nn_loss_area_size < 1 or self.nn_loss_area_size % 2 == 0:
            raise ValueError(f"nn_loss_area_size must be odd and >= 1, got {self.nn_loss_area_size}")
        check_upsample(self.upsample)
        if self.lambda_fm < 0 or not 0 <= self.ema_decay < 1:
            raise ValueError(f"need lambda_fm >= 0 and 0 <= ema_decay < 1, got {self.lambda_fm}, {self.ema_decay}")

    @property
    def uses_perceptual(self) -> bool:
        return self.perceptual and self.l1_penalty_weight > 0

    @property
    def downsampling(self) -> int:
        """Halvings of the image size in the encoder."""
        return len(self.enc_filters) - 1


MARKET_SCHEDULE = TrainSchedule(
    iterations=90_000,  # 90 epochs x 1000 batches (pose_dataset.number_of_batches_per_epoch)
    batch_size=4,
    lr=2e-4,
    betas=(0.5, 0.999),
    decay_start=90_000,  # the official learning rate is constant
    checkpoint_every=30_000,  # checkpoint_ratio 30 epochs
    sample_every=1_000,  # display_ratio 1 epoch
    num_workers=4,
)

# Sized for a 2-core CPU (bf16 autocast); the README lists the measured training time.
SYNTH_SCHEDULE = TrainSchedule(
    iterations=1_800,
    batch_size=8,
    lr=2e-4,
    betas=(0.5, 0.999),
    decay_start=1_800,
    checkpoint_every=600,
    sample_every=300,
    num_workers=2,
)

PIXEL_L1 = dict(l1_penalty_weight=100.0, nn_loss_area_size=1, perceptual=False)  # dsc / baseline

DEFORM_PRESETS = {
    "market": DeformConfig(train=MARKET_SCHEDULE),
    "market_dsc": DeformConfig(**PIXEL_L1, train=MARKET_SCHEDULE),
    "market_baseline": DeformConfig(warp_skip="none", **PIXEL_L1, train=MARKET_SCHEDULE),
    "synth": DeformConfig(
        enc_filters=(16, 32, 64, 64, 64, 64),
        dec_filters=(64, 64, 64, 32, 16),
        disc_filters=(8, 16, 32, 64),
        **PIXEL_L1,
        upsample="nearest",  # resize + conv3 and an EMA of G: measured better at equal iterations (docstring)
        ema_decay=0.999,
        train=SYNTH_SCHEDULE,
    ),
}

# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------


class KerasInstanceNorm(nn.Module):
    """keras-contrib ``InstanceNormalization(axis=None)``: (B,C,H,W) -> (B,C,H,W).

    Per sample: y = gamma * (x - mean) / (std + eps) + beta, mean and population std over all of
    C x H x W, scalar gamma / beta (2 parameters). Evaluated as y = x * a + b with per-sample
    a = gamma / (std + eps), b = beta - mean * a (fp32 scalars; the same function).
    """

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Reductions accumulate in fp32 even for bf16 / fp16 inputs; the per-sample scale and
        # shift are fp32 scalars and the map itself is touched once, in its own dtype.
        var, mean = torch.var_mean(x, dim=(1, 2, 3), correction=0, keepdim=True)
        scale = self.weight / (var.float().sqrt() + self.eps)  # (B,1,1,1)
        shift = self.bias - mean.float() * scale
        return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


def down_block(c_in: int, c_out: int, norm: bool, eps: float) -> nn.Sequential:
    """Official ``block(down=True)``: LeakyReLU 0.2 -> pad 1 -> conv4x4 s2 (no bias) -> (IN)."""
    layers: list[nn.Module] = [nn.LeakyReLU(0.2), nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False)]
    if norm:
        layers.append(KerasInstanceNorm(eps))
    return nn.Sequential(*layers)


def up_block(c_in: int, c_out: int, dropout: bool, eps: float, upsample: str = "convt") -> nn.Sequential:
    """Official ``block(down=False, leaky=False)``: ReLU -> ConvT4x4 s2 'valid' + crop 1 (= padding
    1, no bias) -> IN -> (Dropout 0.5). Doubles H and W. ``upsample`` nearest / bilinear: resize,
    then conv3x3 'same' (zero padding, no bias) instead of the ConvT (blocks.upsample_layers)."""
    layers: list[nn.Module] = [
        nn.ReLU(),
        *upsample_layers(c_in, c_out, upsample, kernel=4, bias=False, padding="zero"),
        KerasInstanceNorm(eps),
    ]
    if dropout:
        layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Official ``encoder``: (B,in,H,W) -> [feature_i (B, filters[i], H/2^i, W/2^i)] for every i.

    Layer 0 conv3x3 'same' with bias; layers 1.. :func:`down_block`, the last without norm."""

    def __init__(self, in_channels: int, filters: tuple[int, ...], eps: float):
        super().__init__()
        n = len(filters)
        self.layers = nn.ModuleList(
            [nn.Conv2d(in_channels, filters[0], 3, padding=1, bias=True)]
            + [down_block(filters[i - 1], filters[i], norm=i < n - 1, eps=eps) for i in range(1, n)]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class DeformGenerator(nn.Module):
    """G(P1, BP1, BP2, affines, masks) -> (B,3,H,W) in [-1,1] (see the module docstring).

    warp_skip 'mask': appearance encoder on cat(P1, BP1), pose encoder on BP2, skips
    i < warped_skips warped part-wise (``affines`` (B,10,2,3), ``masks`` (B,10,H,W) required);
    'none': one encoder on cat(P1, BP1, BP2) (affines / masks ignored).
    """

    def __init__(self, cfg: DeformConfig):
        super().__init__()
        enc, dec, eps = tuple(cfg.enc_filters), tuple(cfg.dec_filters), cfg.norm_eps
        self.warp_skip = cfg.warp_skip
        self.warped_skips = cfg.warped_skips if cfg.warp_skip == "mask" else 0
        self.pose_sigma = cfg.pose_sigma
        self.downsampling = cfg.downsampling
        if cfg.warp_skip == "mask":
            self.appearance = Encoder(3 + NUM_JOINTS, enc, eps)
            self.pose = Encoder(NUM_JOINTS, enc, eps)
            skips = [2 * c for c in enc]
        else:
            self.encoder = Encoder(3 + 2 * NUM_JOINTS, enc, eps)
            skips = list(enc)
        n = len(enc)
        ins = [skips[n - 1]] + [dec[i - 1] + skips[n - 1 - i] for i in range(1, n - 1)]
        self.decoder = nn.ModuleList(
            up_block(ins[i], dec[i], dropout=i < cfg.dec_dropout, eps=eps, upsample=cfg.upsample) for i in range(n - 1)
        )
        self.output = nn.Sequential(nn.ReLU(), nn.Conv2d(dec[-1] + skips[0], 3, 3, padding=1, bias=True), nn.Tanh())

    def skips(self, src_img, src_pose, tgt_pose, affines=None, masks=None) -> list[torch.Tensor]:
        """The skip tensors, finest first: [(B, c_i, H/2^i, W/2^i)]."""
        if self.warp_skip == "none":
            return self.encoder(torch.cat([src_img, src_pose, tgt_pose], 1))
        if affines is None or masks is None:
            raise ValueError("warp_skip='mask' needs the part affines (B,10,2,3) and masks (B,10,H,W)")
        app = self.appearance(torch.cat([src_img, src_pose], 1))
        pose = self.pose(tgt_pose)
        out = []
        for i, (a, p) in enumerate(zip(app, pose)):
            if i < self.warped_skips:
                a = warp_parts(a, affines, masks)
            out.append(torch.cat([a, p], 1))
        return out

    def forward(self, src_img, src_pose, tgt_pose, affines=None, masks=None) -> torch.Tensor:
        skips = self.skips(src_img, src_pose, tgt_pose, affines, masks)
        x = self.decoder[0](skips[-1])
        for i, block in enumerate(self.decoder[1:], start=1):
            x = block(torch.cat([x, skips[-1 - i]], 1))
        return self.output(torch.cat([x, skips[0]], 1))


class DeformDiscriminator(nn.Module):
    """D(cat(P1, BP1, image, BP2)) (B,42,H,W) -> probabilities (B,1,h,w) (3x1 at 128x64)."""

    def __init__(self, cfg: DeformConfig, in_channels: int = 2 * (3 + NUM_JOINTS)):
        super().__init__()
        f, eps = tuple(cfg.disc_filters), cfg.norm_eps
        self.model = nn.Sequential(
            nn.Conv2d(in_channels, f[0], 4, stride=2, padding=0, bias=True),  # Keras 'valid'
            *(down_block(f[i - 1], f[i], norm=True, eps=eps) for i in range(1, len(f))),
            down_block(f[-1], 1, norm=False, eps=eps),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage (first conv, each down block); the last is :meth:`logits`."""
        out = []
        for layer in self.model:
            x = layer(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def init_keras(net: nn.Module) -> nn.Module:
    """Keras defaults: glorot-uniform kernels, zero biases (norms start at gamma 1, beta 0)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------


def nn_loss(reference: torch.Tensor, generated: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Official ``nn_loss`` averaged: mean over (B,H,W) of min over the size x size neighbourhood
    of ``reference`` (padded with -10000) of sum_c |reference - generated|. (B,C,H,W) inputs,
    computed in fp32; ``reference`` is the real target's map (no gradient needed)."""
    if reference.shape != generated.shape:
        raise ValueError(f"nn_loss: shapes differ {tuple(reference.shape)} vs {tuple(generated.shape)}")
    b, c, h, w = generated.shape
    pad = size // 2
    ref = F.pad(reference.float(), (pad, pad, pad, pad), value=NN_PAD_VALUE)
    neighbours = F.unfold(ref, size).view(b, c, size * size, h, w)  # (B,C,k*k,H,W)
    dist = (neighbours - generated.float().unsqueeze(2)).abs().sum(1)  # (B,k*k,H,W)
    return dist.amin(1).mean()


def content_distance(reference: torch.Tensor, generated: torch.Tensor, area: int) -> torch.Tensor:
    """Official ``st_loss``: :func:`nn_loss` for area > 1, else mean |reference - generated|."""
    if area > 1:
        return nn_loss(reference, generated, area)
    return (reference.float() - generated.float()).abs().mean()


# ----------------------------------------------------------------------------------------------
# Pose encodings
# ----------------------------------------------------------------------------------------------


def pose_inputs(
    G: DeformGenerator, src_kps, tgt_kps, size: tuple[int, int], device: torch.device
) -> dict[str, torch.Tensor]:
    """The generator's conditions built on ``device`` from (B,18,2) (y,x) keypoints (-1 missing):
    src_pose / tgt_pose (B,18,H,W) heatmaps and, for warp_skip 'mask', affines (B,10,2,3) and
    masks (B,10,H,W) float32 (augment.data.pose, vectorised; fp32/fp64 whatever autocast is on)."""
    from augment.data.pose import heatmaps, part_affines, part_masks  # the data layer's encoders

    h, w = int(size[0]), int(size[1])
    src = torch.as_tensor(src_kps).to(device)
    tgt = torch.as_tensor(tgt_kps).to(device)
    with torch.autocast(device_type=device.type, enabled=False):
        out = {"src_pose": heatmaps(src, (h, w), G.pose_sigma), "tgt_pose": heatmaps(tgt, (h, w), G.pose_sigma)}
        if G.warp_skip == "mask":
            out["affines"] = part_affines(src, tgt)[0]
            out["masks"] = part_masks(tgt, (h, w))
    return out


# ----------------------------------------------------------------------------------------------
# Method
# ----------------------------------------------------------------------------------------------


@register_method
class DeformableGAN(QualityTerms, Method):
    """Deformable GAN with the official loss recipe (see the module docstring)."""

    name = "deform"
    Config = DeformConfig
    presets = DEFORM_PRESETS

    def build_networks(self, cfg: DeformConfig) -> dict[str, nn.Module]:
        G = init_keras(DeformGenerator(cfg))
        return {"G": G, "D": init_keras(DeformDiscriminator(cfg)), **self.quality_networks(G, cfg)}

    def generate(self, nets, src_img, src_kps, tgt_kps) -> torch.Tensor:
        G = self.sampler(nets)
        x = inference_batch(G, src_img, src_kps, tgt_kps, lambda img: check_divisible(img, G.downsampling))
        return G(x.src_img, **pose_inputs(G, x.src_kps, x.tgt_kps, x.size, x.device))

    def required_weights(self, cfg: DeformConfig) -> list[str]:
        return ["vgg19"] if cfg.uses_perceptual else []

    def make_context(
        self, nets, cfg: DeformConfig, *, device="cpu", amp_dtype=None, seed: int = 0, vgg_weights=None
    ) -> StepContext:
        ctx = super().make_context(nets, cfg, device=device, amp_dtype=amp_dtype, seed=seed, vgg_weights=vgg_weights)
        if cfg.uses_perceptual:  # raises MissingWeightsError before any training
            vgg = load_vgg_features(vgg_weights, (VGG_CONTENT_LAYER,), normalization=VGG_INPUTS[cfg.vgg_input])
            ctx.losses["vgg"] = vgg.to(ctx.device)
        return ctx

    def content_loss(self, ctx: StepContext, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Unweighted content term between the target ``real`` and ``fake`` (module docstring)."""
        cfg: DeformConfig = ctx.config
        if "vgg" in ctx.losses:
            vgg = ctx.losses["vgg"]
            with torch.no_grad():
                (ref,) = vgg(real)
            (gen,) = vgg(fake)
            return content_distance(ref, gen, cfg.nn_loss_area_size)
        return content_distance(real, fake, cfg.nn_loss_area_size)

    def train_step(self, nets, opts, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, float]:
        """One iteration: D step, then G step (official order). Returns the weighted loss terms."""
        cfg: DeformConfig = ctx.config
        G, D = nets["G"], nets["D"]
        x = ctx.batch(batch, lambda img: check_divisible(img, G.downsampling))
        P1, P2 = x.src_img, x.tgt_img
        cond = pose_inputs(G, x.src_kps, x.tgt_kps, x.size, ctx.device)
        BP1, BP2 = ctx.layout(cond["src_pose"]), ctx.layout(cond["tgt_pose"])
        n = P1.shape[0]

        with ctx.autocast():
            fake = G(P1, BP1, BP2, cond.get("affines"), cond.get("masks"))

        # D step: real and fake quadruples in one forward --------------------------------------
        real_in = torch.cat([P1, BP1, P2, BP2], 1)
        fake_in = torch.cat([P1, BP1, fake.detach().to(P1.dtype), BP2], 1)
        with ctx.autocast():
            logits = D.logits(torch.cat([real_in, fake_in], 0))
            loss_real, loss_fake = bce_gan_loss(logits[:n], True), bce_gan_loss(logits[n:], False)
            loss_D = loss_real + loss_fake
        ctx.backward_step(loss_D, opts["D"])

        # G step against the updated, frozen D --------------------------------------------------
        with frozen(D):
            with ctx.autocast():
                fake_in = torch.cat([P1, BP1, fake, BP2], 1)
                extra = {}
                if cfg.lambda_fm > 0:  # D's stages on the fake quadruple against the real one
                    fake_feats = D.features(fake_in)
                    with torch.no_grad():
                        real_feats = D.features(real_in)
                    extra["FM"] = cfg.lambda_fm * feature_matching_loss(fake_feats[:-1], real_feats[:-1])
                    logits_fake = fake_feats[-1]
                else:
                    logits_fake = D.logits(fake_in)
                loss_gan = cfg.gan_penalty_weight * bce_gan_loss(logits_fake, True)
                loss_content = cfg.l1_penalty_weight * self.content_loss(ctx, fake, P2)
                extra.update(self.identity_term(nets, ctx, fake, x))
            loss_G = loss_gan + loss_content
            for term in extra.values():  # none in the official recipes
                loss_G = loss_G + term
            ctx.backward_step(loss_G, opts["G"])
        critic = self.after_generator_step(nets, opts, ctx, x)
        terms = {"G": loss_G, "content": loss_content, "G_GAN": loss_gan, **extra}
        return ctx.finish({**terms, "D": loss_D, "D_real": loss_real, "D_fake": loss_fake, **critic})
