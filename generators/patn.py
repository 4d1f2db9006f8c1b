"""PATN: Progressive Pose Attention Transfer (Zhu et al., CVPR 2019), as the official code builds it.

Source: tengteng95/Pose-Transfer @ 281ee2d (models/model_variants.py, models/networks.py,
models/PATN.py, losses/L1_plus_perceptualLoss.py, util/image_pool.py, scripts/train_star.sh).
Also here: the paper's ablation baseline ``resnet`` (PATBs replaced by plain residual blocks).

Inputs (B = batch, 128x64 on Market; any H, W divisible by 2**n_downsampling)
    P1  source image (B,3,H,W) in [-1,1]          P2  target image (B,3,H,W)
    BP1 source heatmaps (B,18,H,W)                BP2 target heatmaps (B,18,H,W)
    heatmaps: exp(-d^2 / (2 * 6^2)) per joint at full resolution (augment.data.pose.heatmaps).

Generator (``PATNGenerator``; ngf = 64, 2 downsamplings, 9 PATBs on Market)
    stream1_down (appearance, P1, 3ch) and stream2_down (pose, cat(BP1, BP2), 36ch), separate:
        ReflPad3-Conv7(->ngf)-BN-ReLU, then 2x [Conv3 s2 p1-BN-ReLU]: ngf -> 2ngf -> 4ngf = 256
    PATB i (dim = 256; C = 256 for block 1, 512 = cat(pose, appearance) for blocks 2..9):
        s1 = Pad-Conv3(dim)-BN-ReLU-Drop-Pad-Conv3(dim)-BN                (appearance)
        s2 = Pad-Conv3(C->C)-BN-ReLU-Drop-Pad-Conv3(C->dim)               (pose, no last norm)
        x1 <- x1 + s1 * sigmoid(s2);   x2 <- cat(s2, x1)   (pre-sigmoid s2 first: 512ch)
    stream1_up: 2x [ConvT3 s2 p1 op1-BN-ReLU] (256 -> 128 -> 64), ReflPad3-Conv7(64->3, bias)-Tanh
    Convs carry no bias (BatchNorm follows), except the output conv. Dropout 0.5 is on.
    Init: every conv weight N(0, 0.02), BN weight N(1, 0.02), BN bias 0 (official 'normal').

Discriminators (``ResnetDiscriminator``, PyTorch default init as define_D never re-inits)
    D_PB sees cat(image, BP2) (21ch): does the image fit the target pose?
    D_PP sees cat(image, P1) (6ch):   does the image show the source person?
    ReflPad3-Conv7(->64)-BN-ReLU, 2x [Conv3 s2-BN-ReLU] (64 -> 128 -> 256), 3 ResnetBlocks(256,
    BN, Dropout 0.5), Sigmoid on the 256-channel 32x16 map itself (no final 1-channel conv).

Official state_dict keys (``load_official_state_dict`` loads latest_net_netG.pth etc. strictly)
    G (PATNetwork wraps PATNModel as ``model``):
        model.stream1_down.{1,4,7}.weight            convs (no bias); .{2,5,8}.* BatchNorm
        model.stream2_down.{1,4,7}.weight, .{2,5,8}.*
        model.att.{0..8}.conv_block_stream1.{1,6}.weight     convs; .{2,7}.* BatchNorm
        model.att.{0..8}.conv_block_stream2.{1,6}.weight     convs; .2.* BatchNorm
        model.stream1_up.{0,3}.weight                ConvTranspose (in, out, 3, 3); .{1,4}.* BN
        model.stream1_up.7.weight / .bias            output conv (the only conv bias)
        BatchNorm entries: .weight .bias .running_mean .running_var .num_batches_tracked
        (files from PyTorch < 0.4.1 lack num_batches_tracked; BatchNorm fills it in on load).
    Files of an official run: checkpoints/<name>/<epoch>_net_{netG,netD_PB,netD_PP}.pth
    (``load_official_checkpoints``).
    D: model.1 conv7, model.{2,5,8} BN, model.{4,7} stride-2 convs, model.{10,11,12}.conv_block.
       {1,6}.weight convs / {2,7}.* BN, model.13 Sigmoid.
    Indices count the parameter-free layers (pads, ReLU, Dropout), as nn.Sequential does.

Losses and one training iteration (official order: G, then D_PP, then D_PB)
    G:    lambda_A * |G - P2|_1 + lambda_B * |vgg(G) - vgg(P2)|_1   (relu1_2; "l1_plus_perL1")
          + lambda_GAN * (BCE(D_PB(G, BP2), 1) + BCE(D_PP(G, P1), 1)) / 2
    D_PP: 0.5 * lambda_GAN * (BCE(D_PP(P2, P1), 1) + BCE(D_PP(pool_PP(G, P1)), 0))
    D_PB: 0.5 * lambda_GAN * (BCE(D_PB(P2, BP2), 1) + BCE(D_PB(pool_PB(G, BP2)), 0))
    The pools (50 each) hold the detached concatenated pairs (image + condition), not images.
    BCE is evaluated from D's pre-sigmoid map in fp32 (the same function as the official
    BCELoss(sigmoid), stable under autocast). During G's backward the D weights are frozen
    (the official code lets their gradients accumulate and zeroes them before D's step: same
    updates, less work).
    Market: lambda_GAN 5, lambda_A 10, lambda_B 10, Adam 2e-4 (0.5, 0.999), batch 32.

Presets (parameters; forward GFLOPs per 128x64 image = 2 x conv/convT MACs, see count_flops)
    | method / preset  | G params   | G GFLOPs | D_PB params | D_PP params | training            |
    |------------------|------------|----------|-------------|-------------|---------------------|
    | patn market      | 41,365,763 | 45.04    | 3,977,408   | 3,930,368   | 87,500 it, batch 32 |
    | patn synth       |    440,995 |  0.74    |    32,664   |    26,784   |  2,500 it, batch 8  |
    | resnet market5   |  6,773,635 |  9.41    | 3,977,408   | 3,930,368   | as patn market      |
    | resnet market    | 11,496,323 | 14.24    | 3,977,408   | 3,930,368   | as patn market      |
    | resnet market13  | 16,219,011 | 19.07    | 3,977,408   | 3,930,368   | as patn market      |
    | resnet synth     |    139,507 |  0.43    |    32,664   |    26,784   |  2,500 it, batch 8  |
    D GFLOPs per image: D_PB 5.31, D_PP 4.54 (market); 0.16 / 0.07 (synth).
    tests/test_patn.py recomputes every number of this table.

Market schedule: the official 500 + 200 "epochs" of 4,000 random pairs at batch 32 are
125 iterations each: 87,500 iterations, linear decay from iteration 62,500 (epoch 500) to 0.
(The official epoch-wise LambdaLR already lowers the rate in epoch 500 and trains epoch 700 at
rate 0; the iteration rule here is the same ramp shifted by under one epoch.) No flipping.

The ``synth`` preset is sized for the embedded 128x64 dataset on a 2-core CPU (training time: README):
the official structure at ngf 8 (bottleneck 32 channels), 6 PATBs, ndf 8 with 1 ResnetBlock per
discriminator, batch 8, 2,500 iterations, decay from 1,500: about 4 GFLOPs of training work per
image (3 x G forward + 8 x D forwards). It trains WITHOUT the perceptual term: VGG-19 weights
cannot be assumed on offline machines (turn it on with ``--set perceptual=true`` and
``--vgg-weights``). Two quality switches differ from the official structure, neither touching the
attention blocks: the decoder upsamples by nearest resize + Conv3 instead of ConvT3 stride 2 (same
parameters, no checkerboard), and samples come from an EMA (decay 0.999) of G's weights (``G_ema``).
At equal iterations they lifted test-pair SSIM 0.2402 -> 0.2802 and the re-ID identity proxy
19.6% -> 23.5% (docs/methods.md, with the switches measured and left off). ``market`` needs the
VGG-19 weights and stops before training with MissingWeightsError (naming the file,
``--vgg-weights PATH`` and ``--no-perceptual``).

Resnet baseline (method ``resnet``). The paper's ablation (Sec. 4.3, Table 3) compares PATN with
a "Resnet generator" of 5/9/13 residual blocks; the repository ships no code for it. Read here as
the CycleGAN/pix2pix ResnetGenerator that PATN's code derives from, fed the concatenation of all
conditions cat(P1, BP1, BP2) (39ch) through ONE encoder (the same ReflPad3-Conv7 + 2 stride-2
convs), n ResnetBlocks(256, BN, Dropout 0.5), and PATN's decoder; state_dict keys are the
CycleGAN ResnetGenerator's (``model.<index>...``). Discriminators, losses and schedule are PATN's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from augment.data.keypoints import NUM_JOINTS
from generators.base import Method, StepContext, TrainSchedule, inference_batch, register_method
from generators.blocks import (
    ResnetBlock,
    check_divisible,
    check_upsample,
    conv_bias,
    frozen,
    init_weights,
    norm_layer,
    pad_layers,
    upsample_layers,
)
from generators.identity_critic import IdentityCriticConfig, QualityTerms
from generators.losses import (
    VGG19_LAYERS,
    ImagePool,
    PerceptualL1,
    VGGFeatures,
    bce_gan_loss,
    feature_matching_loss,
    load_vgg19_features,
    random_vgg19_features,
)

# ----------------------------------------------------------------------------------------------
# Config and presets
# ----------------------------------------------------------------------------------------------


@dataclass
class PATNConfig:
    """Network, loss and schedule settings. Defaults are the official Market-1501 recipe
    (scripts/train_star.sh); see :data:`PATN_PRESETS`."""

    ngf: int = 64  # generator width after the first conv
    n_blocks: int = 9  # PATBs (or residual blocks for ``resnet``)
    n_downsampling: int = 2  # stride-2 convs per encoder (= ConvTs in the decoder)
    norm: str = "batch"  # batch (affine) | instance
    padding: str = "reflect"  # reflect | replicate | zero, inside the blocks
    dropout: bool = True  # Dropout(0.5) in the generator's blocks
    ndf: int = 64  # discriminator width
    d_blocks: int = 3  # ResnetBlocks per discriminator (official n_layers_D)
    d_downsampling: int = 2
    d_dropout: bool = True  # Dropout(0.5) in the discriminators' blocks
    pose_sigma: float = 6.0  # heatmap sigma in pixels
    lambda_gan: float = 5.0
    lambda_l1: float = 10.0  # lambda_A
    lambda_perceptual: float = 10.0  # lambda_B
    perceptual: bool = True  # train with the VGG-19 relu1_2 term (needs weights)
    perceptual_layers: int = 4  # VGG-19 features[:4] = relu1_2 (official index 3, inclusive)
    perceptual_weights: str = "imagenet"  # imagenet (official: the file) | random (frozen seeded init, no file)
    pool_size: int = 50
    with_d_pb: bool = True
    with_d_pp: bool = True
    # Switches beyond the official recipe (their defaults are the official behaviour):
    upsample: str = "convt"  # decoder: convt (official ConvT3 s2) | nearest | bilinear (+ Conv3)
    lambda_fm: float = 0.0  # discriminator feature matching weight (0: off)
    ema_decay: float = 0.0  # sample from an EMA of G's weights ("G_ema"; 0: off)
    identity: IdentityCriticConfig = field(default_factory=IdentityCriticConfig)  # weight 0: off
    train: TrainSchedule = field(default_factory=TrainSchedule)

    def __post_init__(self):
        norm_layer(self.norm)
        pad_layers(self.padding, 1)
        check_upsample(self.upsample)
        if self.perceptual_weights not in ("imagenet", "random"):
            raise ValueError(f"perceptual_weights must be imagenet or random, got {self.perceptual_weights!r}")
        if self.lambda_fm < 0 or not 0 <= self.ema_decay < 1:
            raise ValueError(f"need lambda_fm >= 0 and 0 <= ema_decay < 1, got {self.lambda_fm}, {self.ema_decay}")
        if self.n_blocks < 0 or self.n_downsampling < 0:
            raise ValueError("n_blocks and n_downsampling must be >= 0")
        if not 0 <= self.d_downsampling <= 2:
            raise ValueError(f"d_downsampling must be 0, 1 or 2, got {self.d_downsampling}")

    @property
    def uses_perceptual(self) -> bool:
        return self.perceptual and self.lambda_perceptual > 0


MARKET_SCHEDULE = TrainSchedule(
    iterations=87_500,  # (500 + 200) epochs x 4,000 pairs / 32
    batch_size=32,
    lr=2e-4,
    betas=(0.5, 0.999),
    decay_start=62_500,  # niter = 500 epochs
    checkpoint_every=2_500,  # official save_epoch_freq: 20 epochs
    sample_every=1_250,
    num_workers=4,
)

SYNTH_SCHEDULE = TrainSchedule(
    iterations=2_500,
    batch_size=8,
    lr=2e-4,
    betas=(0.5, 0.999),
    decay_start=1_500,
    checkpoint_every=500,
    sample_every=250,
    num_workers=2,
)

# 2-core CPU size: ~4 GFLOPs of training work per image (G forward 0.74 GFLOPs).
# resize + conv decoder and an EMA of G's weights: measured better at equal iterations (docstring).
SYNTH_NETS = dict(ngf=8, ndf=8, d_blocks=1, perceptual=False, upsample="nearest", ema_decay=0.999, train=SYNTH_SCHEDULE)

PATN_PRESETS = {
    "market": PATNConfig(train=MARKET_SCHEDULE),
    "synth": PATNConfig(n_blocks=6, **SYNTH_NETS),
}

RESNET_PRESETS = {
    "market": PATNConfig(train=MARKET_SCHEDULE),
    "market5": PATNConfig(n_blocks=5, train=MARKET_SCHEDULE),
    "market13": PATNConfig(n_blocks=13, train=MARKET_SCHEDULE),
    "synth": PATNConfig(n_blocks=6, **SYNTH_NETS),
}

# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------


def encoder_layers(in_channels: int, ngf: int, n_down: int, norm: str) -> list[nn.Module]:
    """ReflPad3-Conv7(in->ngf)-Norm-ReLU, then n_down x [Conv3 s2 p1-Norm-ReLU] doubling width.
    (B,in,H,W) -> (B, ngf*2**n_down, H/2**n_down, W/2**n_down)."""
    make_norm, bias = norm_layer(norm), conv_bias(norm)
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(in_channels, ngf, 7, bias=bias),
        make_norm(ngf),
        nn.ReLU(True),
    ]
    for i in range(n_down):
        c = ngf * 2**i
        layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), make_norm(2 * c), nn.ReLU(True)]
    return layers


def decoder_layers(
    ngf: int, n_down: int, norm: str, out_channels: int = 3, upsample: str = "convt", padding: str = "reflect"
) -> list[nn.Module]:
    """n_down x [ConvT3 s2 p1 op1-Norm-ReLU] halving width, then ReflPad3-Conv7(bias)-Tanh.
    ``upsample`` nearest / bilinear: each ConvT3 becomes resize-Pad-Conv3 (blocks.upsample_layers)."""
    make_norm, bias = norm_layer(norm), conv_bias(norm)
    layers: list[nn.Module] = []
    for i in range(n_down):
        c = ngf * 2 ** (n_down - i)
        layers += [
            *upsample_layers(c, c // 2, upsample, bias=bias, padding=padding),
            make_norm(c // 2),
            nn.ReLU(True),
        ]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
    return layers


def _conv_pair(
    c_in: int, c_mid: int, c_out: int, norm: str, padding: str, dropout: bool, last_norm: bool
) -> nn.Sequential:
    """Pad-Conv3(c_in->c_mid)-Norm-ReLU-(Drop)-Pad-Conv3(c_mid->c_out)-(Norm), official indices."""
    make_norm, bias = norm_layer(norm), conv_bias(norm)
    pads, p = pad_layers(padding, 1)
    layers = [*pads, nn.Conv2d(c_in, c_mid, 3, padding=p, bias=bias), make_norm(c_mid), nn.ReLU(True)]
    if dropout:
        layers.append(nn.Dropout(0.5))
    pads, p = pad_layers(padding, 1)
    layers += [*pads, nn.Conv2d(c_mid, c_out, 3, padding=p, bias=bias)]
    if last_norm:
        layers.append(make_norm(c_out))
    return nn.Sequential(*layers)


class PATBlock(nn.Module):
    """Pose-Attentional Transfer Block.

    x1: appearance (B,dim,h,w); x2: pose (B,pose_in,h,w), pose_in = dim (first block) or 2*dim.
    Returns x1' = x1 + s1(x1) * sigmoid(s2(x2)) (B,dim,h,w) and x2' = cat(s2(x2), x1') (B,2dim,h,w).
    """

    def __init__(self, dim: int, pose_in: int, norm: str, padding: str, dropout: bool):
        super().__init__()
        self.conv_block_stream1 = _conv_pair(dim, dim, dim, norm, padding, dropout, last_norm=True)
        self.conv_block_stream2 = _conv_pair(pose_in, pose_in, dim, norm, padding, dropout, last_norm=False)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pose = self.conv_block_stream2(x2)
        x1 = x1 + self.conv_block_stream1(x1) * torch.sigmoid(pose)
        return x1, torch.cat([pose, x1], dim=1)


class PATNBody(nn.Module):
    """Official PATNModel: the two encoders, the PATB cascade and the decoder."""

    def __init__(
        self,
        pose_channels: int,
        ngf: int,
        n_blocks: int,
        n_down: int,
        norm: str,
        padding: str,
        dropout: bool,
        upsample: str = "convt",
    ):
        super().__init__()
        dim = ngf * 2**n_down
        self.stream1_down = nn.Sequential(*encoder_layers(3, ngf, n_down, norm))
        self.stream2_down = nn.Sequential(*encoder_layers(pose_channels, ngf, n_down, norm))
        self.att = nn.ModuleList(
            PATBlock(dim, dim if i == 0 else 2 * dim, norm, padding, dropout) for i in range(n_blocks)
        )
        self.stream1_up = nn.Sequential(*decoder_layers(ngf, n_down, norm, upsample=upsample, padding=padding))

    def forward(self, src_img: torch.Tensor, pose_pair: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.stream1_down(src_img), self.stream2_down(pose_pair)
        for block in self.att:
            x1, x2 = block(x1, x2)
        return self.stream1_up(x1)


class PATNGenerator(nn.Module):
    """PATN generator: (P1 (B,3,H,W), cat(BP1, BP2) (B,36,H,W)) -> (B,3,H,W) in [-1,1].

    The body sits in ``self.model`` as in the official PATNetwork wrapper, so state_dict keys
    read ``model.stream1_down.1.weight`` etc.
    """

    def __init__(self, cfg: PATNConfig, pose_channels: int = 2 * NUM_JOINTS):
        super().__init__()
        self.model = PATNBody(
            pose_channels, cfg.ngf, cfg.n_blocks, cfg.n_downsampling, cfg.norm, cfg.padding, cfg.dropout, cfg.upsample
        )
        self.pose_sigma = cfg.pose_sigma
        self.n_downsampling = cfg.n_downsampling

    def forward(self, src_img: torch.Tensor, pose_pair: torch.Tensor) -> torch.Tensor:
        return self.model(src_img, pose_pair)


class ResnetGenerator(nn.Module):
    """Ablation baseline: one encoder over cat(P1, BP1, BP2) (B,39,H,W), ``n_blocks``
    ResnetBlocks, PATN's decoder -> (B,3,H,W). Keys: CycleGAN ResnetGenerator's ``model.<i>``."""

    def __init__(self, cfg: PATNConfig, pose_channels: int = 2 * NUM_JOINTS):
        super().__init__()
        dim = cfg.ngf * 2**cfg.n_downsampling
        self.model = nn.Sequential(
            *encoder_layers(3 + pose_channels, cfg.ngf, cfg.n_downsampling, cfg.norm),
            *(ResnetBlock(dim, cfg.norm, cfg.padding, cfg.dropout) for _ in range(cfg.n_blocks)),
            *decoder_layers(cfg.ngf, cfg.n_downsampling, cfg.norm, upsample=cfg.upsample, padding=cfg.padding),
        )
        self.pose_sigma = cfg.pose_sigma
        self.n_downsampling = cfg.n_downsampling

    def forward(self, src_img: torch.Tensor, pose_pair: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat([src_img, pose_pair], dim=1))


class ResnetDiscriminator(nn.Module):
    """Official ResnetDiscriminator: (B,in,H,W) -> probabilities (B,4ndf,H/4,W/4) (Market: 256x32x16).

    ``forward`` returns sigmoid probabilities like the official net; :meth:`logits` returns the
    map before the sigmoid, which the losses use (numerically stable BCE)."""

    def __init__(
        self,
        in_channels: int,
        ndf: int = 64,
        n_blocks: int = 3,
        n_down: int = 2,
        norm: str = "batch",
        padding: str = "reflect",
        dropout: bool = True,
    ):
        super().__init__()
        dim = ndf * 2**n_down
        self.model = nn.Sequential(
            *encoder_layers(in_channels, ndf, n_down, norm),
            *(ResnetBlock(dim, norm, padding, dropout) for _ in range(n_blocks)),
            nn.Sigmoid(),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.model[:-1]:
            x = layer(x)
        return x

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after every ReLU of the encoder and every ResnetBlock; the last is
        :meth:`logits` (feature matching uses the others)."""
        out = []
        for layer in self.model[:-1]:
            x = layer(x)
            if isinstance(layer, (nn.ReLU, ResnetBlock)):
                out.append(x)
        if not out or out[-1] is not x:
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model[-1](self.logits(x))


def build_discriminators(cfg: PATNConfig) -> dict[str, nn.Module]:
    """D_PB on cat(image, BP2) (3+18 ch) and D_PP on cat(image, P1) (3+3 ch), default init."""
    make = lambda c: ResnetDiscriminator(
        c, cfg.ndf, cfg.d_blocks, cfg.d_downsampling, cfg.norm, cfg.padding, cfg.d_dropout
    )
    nets = {}
    if cfg.with_d_pb:
        nets["D_PB"] = make(3 + NUM_JOINTS)
    if cfg.with_d_pp:
        nets["D_PP"] = make(3 + 3)
    return nets


def load_official_state_dict(net: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load an official checkpoint (``latest_net_netG.pth``, ``..._netD_PB.pth``,
    ``..._netD_PP.pth``) into ``net`` with ``strict=True``; a ``module.`` prefix (DataParallel)
    is removed. Errors name the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read official checkpoint {path}: {exc}") from exc
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} is not a state dict (got {type(state).__name__})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not match {type(net).__name__}: {exc}") from exc
    return net


OFFICIAL_FILE_LABELS = {"G": "netG", "D_PB": "netD_PB", "D_PP": "netD_PP"}


def load_official_checkpoints(
    nets: Mapping[str, nn.Module], directory: str | os.PathLike, epoch: str = "latest"
) -> list[str]:
    """Load ``<epoch>_net_netG.pth`` (required) and the discriminator files that exist from an
    official ``checkpoints/<name>/`` folder into ``nets``; returns the names loaded."""
    loaded = []
    for name, label in OFFICIAL_FILE_LABELS.items():
        path = Path(directory) / f"{epoch}_net_{label}.pth"
        if name not in nets:
            continue
        if not path.is_file():
            if name == "G":
                raise FileNotFoundError(f"official generator weights not found: {path}")
            continue
        load_official_state_dict(nets[name], path)
        loaded.append(name)
    return loaded


# ----------------------------------------------------------------------------------------------
# Pose encoding
# ----------------------------------------------------------------------------------------------


def pose_heatmaps(kps, size: tuple[int, int], sigma: float, device: torch.device) -> torch.Tensor:
    """(B,18,2) (y,x) keypoints, -1 missing -> (B,18,H,W) float32 Gaussian maps on ``device``."""
    from augment.data.pose import heatmaps  # the data layer's encoder (imported on first use)

    kps = torch.as_tensor(kps).to(device)
    return heatmaps(kps, size=(int(size[0]), int(size[1])), sigma=sigma)  # denormal-free


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------


@register_method
class PATN(QualityTerms, Method):
    """PATN with the official loss recipe (see the module docstring)."""

    name = "patn"
    Config = PATNConfig
    presets = PATN_PRESETS
    generator_class: type[nn.Module] = PATNGenerator

    def build_networks(self, cfg: PATNConfig) -> dict[str, nn.Module]:
        G = init_weights(self.generator_class(cfg), "normal")
        return {"G": G, **build_discriminators(cfg), **self.quality_networks(G, cfg)}

    def pose_pair(self, G: nn.Module, src_kps, tgt_kps, size, device) -> torch.Tensor:
        """cat(BP1, BP2): (B,36,H,W), source maps first (official order)."""
        return torch.cat(
            [pose_heatmaps(src_kps, size, G.pose_sigma, device), pose_heatmaps(tgt_kps, size, G.pose_sigma, device)],
            dim=1,
        )

    def generate(self, nets, src_img, src_kps, tgt_kps) -> torch.Tensor:
        G = self.sampler(nets)
        x = inference_batch(G, src_img, src_kps, tgt_kps, lambda img: check_divisible(img, G.n_downsampling))
        return G(x.src_img, self.pose_pair(G, x.src_kps, x.tgt_kps, x.size, x.device))

    def required_weights(self, cfg: PATNConfig) -> list[str]:
        return ["vgg19"] if cfg.uses_perceptual and cfg.perceptual_weights == "imagenet" else []

    def make_context(
        self, nets, cfg: PATNConfig, *, device="cpu", amp_dtype=None, seed: int = 0, vgg_weights=None
    ) -> StepContext:
        ctx = super().make_context(nets, cfg, device=device, amp_dtype=amp_dtype, seed=seed, vgg_weights=vgg_weights)
        if cfg.uses_perceptual:  # raises MissingWeightsError before any training
            if cfg.perceptual_weights == "random":
                features = random_vgg19_features(cfg.perceptual_layers, seed)
            else:
                features = load_vgg19_features(vgg_weights, cfg.perceptual_layers)  # [:4]: up to relu1_2
            extractor = VGGFeatures(features, (VGG19_LAYERS[cfg.perceptual_layers - 1],))
            ctx.losses["perceptual"] = PerceptualL1(extractor).to(ctx.device)
        for i, name in enumerate(("D_PP", "D_PB")):
            if name in nets:
                ctx.pools[name] = ImagePool(cfg.pool_size, seed=seed * 1000 + i)
        return ctx

    def train_step(self, nets, opts, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, float]:
        """One iteration: G step, then D_PP, then D_PB. Returns the weighted loss terms."""
        cfg: PATNConfig = ctx.config
        G, D_PB, D_PP = nets["G"], nets["D_PB"] if "D_PB" in nets else None, nets["D_PP"] if "D_PP" in nets else None
        x = ctx.batch(batch, lambda img: check_divisible(img, G.n_downsampling))
        P1, P2 = x.src_img, x.tgt_img
        BP1 = ctx.layout(pose_heatmaps(x.src_kps, x.size, G.pose_sigma, ctx.device))
        BP2 = ctx.layout(pose_heatmaps(x.tgt_kps, x.size, G.pose_sigma, ctx.device))

        # G step ---------------------------------------------------------------------------------
        with ctx.autocast():
            fake = G(P1, torch.cat([BP1, BP2], dim=1))
        critics = [(D, cond) for D, cond in ((D_PB, BP2), (D_PP, P1)) if D is not None]  # official order
        with frozen(D_PB, D_PP):
            with ctx.autocast():
                g_terms = self.generator_losses(ctx, fake, P2, critics)
                g_terms.update(self.identity_term(nets, ctx, fake, x))
            loss_G = sum(g_terms.values())
            ctx.backward_step(loss_G, opts["G"])
        extra = self.after_generator_step(nets, opts, ctx, x)

        # D steps: real pair vs. a pooled fake pair --------------------------------------------
        fake = fake.detach().float()
        d_losses = {}
        for name, D, condition in (("D_PP", D_PP, P1), ("D_PB", D_PB, BP2)):
            if D is None:
                continue
            real_pair = torch.cat([P2, condition], 1)
            fake_pair = ctx.pools[name].query(torch.cat([fake, condition], 1))
            with ctx.autocast():
                loss_D = (
                    0.5
                    * cfg.lambda_gan
                    * (bce_gan_loss(D.logits(real_pair), True) + bce_gan_loss(D.logits(fake_pair), False))
                )
            ctx.backward_step(loss_D, opts[name])
            d_losses[name] = loss_D.detach()
        return ctx.finish({"G": loss_G, **g_terms, **d_losses, **extra})

    def generator_losses(self, ctx: StepContext, fake, real, critics) -> dict[str, torch.Tensor]:
        """G's weighted terms: L1, perceptual, G_GAN (the mean BCE over the critics), and FM
        (feature matching on each critic's activations, only when ``lambda_fm`` > 0).
        ``critics``: [(D, condition)], each D judging cat(image, condition)."""
        cfg: PATNConfig = ctx.config
        zero = fake.new_zeros((), dtype=torch.float32)
        terms = {"L1": F.l1_loss(fake.float(), real) * cfg.lambda_l1}
        terms["perceptual"] = (
            ctx.losses["perceptual"](fake, real) * cfg.lambda_perceptual if "perceptual" in ctx.losses else zero
        )
        gan, fm = [], []
        for D, condition in critics:
            fake_in = torch.cat([fake, condition], 1)
            if cfg.lambda_fm > 0:
                fake_feats = D.features(fake_in)
                with torch.no_grad():
                    real_feats = D.features(torch.cat([real.to(fake.dtype), condition], 1))
                fm.append(feature_matching_loss(fake_feats[:-1], real_feats[:-1]))
                gan.append(bce_gan_loss(fake_feats[-1], True))
            else:
                gan.append(bce_gan_loss(D.logits(fake_in), True))
        terms["G_GAN"] = sum(gan) * cfg.lambda_gan / len(gan) if gan else zero
        if cfg.lambda_fm > 0:
            terms["FM"] = sum(fm) * cfg.lambda_fm / len(fm) if fm else zero
        return terms


@register_method
class ResnetBaseline(PATN):
    """PATN's ablation baseline: residual blocks instead of PATBs (5 / 9 / 13 blocks)."""

    name = "resnet"
    presets = RESNET_PRESETS
    generator_class = ResnetGenerator
