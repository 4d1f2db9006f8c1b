"""PG2: Pose Guided Person Image Generation (Ma et al., NeurIPS 2017), as the official code builds it.

Source: charliememory/Pose-Guided-Person-Image-Generation @ c32f859 (TF 1.4: models.py,
trainer.py ``PG2``, wgan_gp.py ``DCGANDiscriminator``, tflib/ops/{conv2d,linear,batchnorm}.py,
utils.py ``_getPoseMask`` / ``_getSparseKeypoint``, run_market_train.sh). Facts and sources:
docs/methods.md#pg2.

Inputs (B = batch, 128x64 on Market)
    IA  source image (B,3,H,W) in [-1,1]        IB  target image (B,3,H,W) in [-1,1]
    PB  target pose (B,18,H,W): solid disks d^2 <= 4^2 per joint, rescaled to {-1,+1}
        (``poses*2-1``; a missing joint is an all -1 map): augment.data.pose.pg2_pose_maps.
    M   target pose mask (B,1,H,W) in {0,1} (``_getPoseMask``, r4): augment.data.pose.pose_mask_pg2.

Stage-I generator G1 (``GeneratorCNN_Pose_UAEAfterResidual``; N = log2(H) - 2 = 5 blocks,
n = 128, z = 64). ReLU everywhere (``build_model`` passes tf.nn.relu, overriding ELU), no
normalisation, every conv biased, TF 'SAME' padding (stride-2 convs pad 0 before / 1 after).
    x = ReLU(conv3(cat(IA, PB)))  21 -> n
    encoder block i = 0..N-1, width c_i = n(i+1):
        x = x + ReLU(conv3(ReLU(conv3(x))))     (the add comes after both activations)
        skip_i = x;  if i < N-1: x = ReLU(conv3 stride 2 (c_i -> n(i+2)))
    bottleneck: flatten in TF's NHWC order (h, w, c) -> FC 8*4*640 -> z (linear)
                -> FC z -> 8*4*n (linear), read as (h, w, c) = (8, 4, n)
    decoder step i = 0..N-1: x = cat(x, skip_{N-1-i})   768/1024/768/512/256 channels
        x = x + ReLU(conv3(ReLU(conv3(x))));  if i < N-1: x = ReLU(conv1(NN-upsample x2(x)))
        to n(N-1-i) = 512/384/256/128
    G1 = conv3(x) -> 3, linear: NO tanh (the official code only clips when saving images).

Stage-II generator G2 (``UAE_noFC_After2Noise``, N-2 = 3 blocks, n = 128, noise_dim = 0)
    x = ReLU(conv3(cat(G1, IA)))  6 -> n
    encoder block i = 0..2 at n(i+1): x = ReLU(conv3(ReLU(conv3(x)))) (no residual);
        blocks 1, 2 are kept as skips; if i < 2: x = ReLU(conv3 stride 2, width kept)
    decoder step i = 0..2: if i < 2: x = cat(x, skips[-1-i]) (step 0 therefore concatenates
        the bottom feature with ITSELF: 384 + 384); x = ReLU(conv3(ReLU(conv3(x)))) -> n;
        if i < 2: NN-upsample x2 (no conv)
    DiffMap = conv3(x) -> 3 (linear);  G2 = G1 + DiffMap.

Discriminator D (``DCGANDiscriminator``, dim = 64, unconditional, 3-channel images)
    conv5 s2 -> 64, LReLU 0.2; conv5 s2 -> 128 / 256 / 512, each BatchNorm + LReLU 0.2;
    flatten (NCHW order: the TF code transposed to NCHW first) 512*8*4 = 16384 -> Linear -> 1.
    All convs biased, 'SAME' padding (stride 2, kernel 5: pad 1 before / 2 after). BatchNorm
    (eps 1e-5) always normalises with the statistics of the batch (tflib's fused batch norm
    with is_training=None keeps no moving averages); it is only ever run on the 4-way batch
    cat(IB, IA, G1, G2) (``triplet``), so the four groups share their statistics.

Initialisation
    G1, G2: slim defaults: Xavier/Glorot-uniform weights (convs and FCs), zero biases.
    D: tflib with ``set_weights_stdev(0.02)``: weights UNIFORM with standard deviation 0.02
    (+-0.02*sqrt(3); read as "N(0, 0.02)" elsewhere, but tflib draws uniformly), zero biases, BN scale 1 /
    offset 0.

Losses and one training iteration (``step`` = completed iterations = ``ctx.iteration``)
    step < stage1_iterations (22k): G1 alone.
        L_G1 = mean|G1 - IB| + mean(|G1 - IB| * M)          (the "(1 + M)" pose-mask L1)
    step >= stage1_iterations: G1 frozen; G2 then D, 1:1 (official order).
        L_G2 = BCE(D(G2), 1) + 10 * [mean|G2 - IB| + mean(|G2 - IB| * M)]
        L_D  = 0.5 * BCE(D(IB), 1) + 0.25 * BCE(D(IA), 0) + 0.25 * BCE(D(G2), 0)
        (the source image counts as a fake: the README's "triplet"). Both losses come from one
        D forward each over cat(IB, IA, G1, G2); the D step recomputes G2 with the weights the
        G2 step just updated, as the official separate ``sess.run(d_optim)`` does. BCE is taken
        from D's logit in fp32 (``sigmoid_cross_entropy_with_logits`` itself).
    Market: Adam lr 2e-5, betas (0.5, 0.999) for G1, G2 and D, hard-coded in ``_getOptimizer``;
    the run script's --g_lr/--d_lr 2e-5 and --lr_update_step 50000 change nothing (the halving
    ops update tf.Variables the optimizers never read), so the rate is constant; batch 16,
    60,000 steps (max_step), the stage boundary 22,000 hard-coded in ``train()``.

Differences from the official run (documented, deliberate)
    - Official G2 and D steps are separate ``sess.run`` calls, each dequeuing a NEW batch; here
      one iteration uses one batch for both (the project's train_step contract).
    - ``generate`` clamps G2 to [-1,1]; the official test path clips only while saving images
      (denorm_img). The training losses see the unclamped G1 / G2, as in the official code.
    - D's BatchNorm keeps PyTorch running statistics (never used: D runs in training mode only).
    - Stage switch by ``stage1_iterations`` in the config (the official 22000 is a literal).

Presets (parameters; forward GFLOPs per 128x64 image = 2 x conv/linear MACs, see count_flops)
    | preset | G1 params  | G1 GFLOPs | G2 params | G2 GFLOPs | D params  | D GFLOPs | training |
    |--------|------------|-----------|-----------|-----------|-----------|----------|----------|
    | market | 70,795,075 | 74.75 | 6,058,883 | 20.40 | 4,324,737 | 0.65 | 60,000 it (G1 alone to 22,000), batch 16 |
    | synth  |  1,283,619 |  1.22 |    96,115 |  0.34 |    70,193 | 0.01 | 2,800 it (G1 alone to 2,300), batch 8 |
    tests/test_pg2.py recomputes every number of this table.

The ``synth`` preset keeps the structure (5 G1 blocks down to an 8x4 FC bottleneck at 128x64, 3
G2 blocks with the self-concatenation, the DCGAN D on the 4-way batch, the losses, Adam
2e-5 -> see below, constant rate) at 1/8 of the widths: G1 n = 16 (widths 16..80), z = 64,
G2 n = 16, D dim = 8; batch 8, 2,800 iterations. G1 trains alone for 2,300 of them at 2e-4
(``g1_lr_scale`` 10: at the official 2e-5 the small G1 is still a blur after a CPU-sized
budget), then G2 and D train for 500 iterations at the official 2e-5 with G1 frozen, as in
the official second stage. Training time: docs/measurements.md#generator-training.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from augment.data.keypoints import NUM_JOINTS
from generators.base import (
    Method,
    StepContext,
    TrainSchedule,
    inference_batch,
    like_source,
    lr_lambda,
    register_method,
)
from generators.blocks import frozen
from generators.losses import bce_gan_loss

LEAK = 0.2  # wgan_gp.LeakyReLU default alpha

# ----------------------------------------------------------------------------------------------
# Config and presets
# ----------------------------------------------------------------------------------------------


@dataclass
class PG2Config:
    """Network, loss and schedule settings. Defaults are the official Market-1501 run
    (run_market_train.sh with the values trainer.py hard-codes); see :data:`PG2_PRESETS`."""

    image_size: tuple[int, int] = (128, 64)  # (H, W): fixes the FC bottleneck and D's Linear
    g1_hidden: int = 128  # conv_hidden_num: G1 widths n, 2n, ..., N n
    g1_blocks: int = 5  # repeat_num = log2(128) - 2
    z_num: int = 64  # FC bottleneck
    g2_hidden: int = 128  # G2 widths n, 2n, 3n (the same conv_hidden_num officially)
    g2_blocks: int = 3  # repeat_num - 2
    ndf: int = 64  # DCGAN discriminator dim
    pose_radius: int = 4  # joint disks and pose mask radius (pixels)
    lambda_l1: float = 10.0  # weight of stage-2's masked L1 next to the GAN term
    stage1_iterations: int = 22_000  # iterations of G1 alone, then G2 + D with G1 frozen
    g1_lr_scale: float = 1.0  # G1's Adam rate = g1_lr_scale * train.lr (official: 1)
    train: TrainSchedule = field(default_factory=TrainSchedule)

    def __post_init__(self):
        h, w = (int(s) for s in self.image_size)
        self.image_size = (h, w)
        for name in ("g1_hidden", "g1_blocks", "z_num", "g2_hidden", "g2_blocks", "ndf", "pose_radius"):
            if getattr(self, name) < 1:
                raise ValueError(f"PG2Config: {name} must be >= 1, got {getattr(self, name)}")
        for name, blocks in (("g1_blocks", self.g1_blocks), ("g2_blocks", self.g2_blocks)):
            step = 2 ** (blocks - 1)
            if h % step or w % step:
                raise ValueError(
                    f"PG2Config: image_size {h}x{w} must be divisible by {step} "
                    f"({name}={blocks}: {blocks - 1} stride-2 convs, then as many x2 "
                    f"upsamplings back to the skips)"
                )
        if self.g1_lr_scale <= 0:
            raise ValueError(f"PG2Config: g1_lr_scale must be > 0, got {self.g1_lr_scale}")
        if not 0 <= self.stage1_iterations <= self.train.iterations:
            raise ValueError(
                f"PG2Config: stage1_iterations={self.stage1_iterations} must lie in [0, "
                f"train.iterations={self.train.iterations}] (G1 trains alone for stage1_iterations, "
                f"then G2 and D); set it with --set stage1_iterations=K (official: 22000 of 60000)"
            )

    @property
    def bottom_size(self) -> tuple[int, int]:
        """G1's feature size at the FC bottleneck (8x4 on Market)."""
        s = 2 ** (self.g1_blocks - 1)
        return self.image_size[0] // s, self.image_size[1] // s


MARKET_SCHEDULE = TrainSchedule(
    iterations=60_000,  # max_step
    batch_size=16,
    lr=2e-5,  # _getOptimizer's literal (the --g_lr/--d_lr flags are not read)
    betas=(0.5, 0.999),
    decay_start=60_000,  # constant rate: lr_update_step's halving ops are never used
    checkpoint_every=3_000,  # official: every log_step * 30 = 6,000 steps; finer here
    sample_every=600,
    num_workers=4,
)

SYNTH_SCHEDULE = TrainSchedule(
    iterations=2_800,
    batch_size=8,
    lr=2e-5,
    betas=(0.5, 0.999),
    decay_start=2_800,
    checkpoint_every=500,
    sample_every=250,
    num_workers=2,
)

PG2_PRESETS = {
    "market": PG2Config(train=MARKET_SCHEDULE),
    # 1/8 widths; G1 at 10x the official rate for most of the run, then a short stage 2 at the
    # official rate (see the module docstring for why).
    "synth": PG2Config(
        g1_hidden=16, g2_hidden=16, ndf=8, stage1_iterations=2_300, g1_lr_scale=10.0, train=SYNTH_SCHEDULE
    ),
}

# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) of one dimension: output ceil(size / stride),
    the odd pixel of padding goes after (stride 2, kernel 3, even size: (0, 1))."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (biased). Stride 1 with an odd kernel pads k//2 on
    every side (the conv's own padding); larger strides pad asymmetrically from the input size."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        symmetric = stride == 1 and kernel % 2 == 1
        super().__init__(c_in, c_out, kernel, stride, padding=kernel // 2 if symmetric else 0)
        self.symmetric = symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            k, s = self.kernel_size[0], self.stride[0]
            top, bottom = same_padding(x.shape[-2], k, s)
            left, right = same_padding(x.shape[-1], k, s)
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class ConvPair(nn.Module):
    """ReLU(conv3(ReLU(conv3(x)))) (c_in -> c_out -> c_out), plus x when ``residual``
    (G1's blocks: the add follows both activations, as ``x = x + res`` in models.py)."""

    def __init__(self, c_in: int, c_out: int, residual: bool):
        super().__init__()
        if residual and c_in != c_out:
            raise ValueError(f"a residual pair keeps its width, got {c_in} -> {c_out}")
        self.conv1 = SameConv2d(c_in, c_out, 3)
        self.conv2 = SameConv2d(c_out, c_out, 3)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv2(F.relu(self.conv1(x))))
        return x + y if self.residual else y


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 (tf.image.resize_nearest_neighbor, align_corners=False)."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def init_slim(net: nn.Module) -> nn.Module:
    """slim.conv2d / fully_connected defaults: Xavier-uniform weights, zero biases."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def init_tflib(net: nn.Module, stdev: float = 0.02) -> nn.Module:
    """tflib with set_weights_stdev(stdev): uniform weights of standard deviation ``stdev``,
    zero biases; BatchNorm scale 1, offset 0."""
    bound = stdev * 3**0.5
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------


class G1Generator(nn.Module):
    """Stage-I U-Net with residual blocks and a fully connected bottleneck.

    forward(src_img (B,3,H,W), pose (B,18,H,W)) -> coarse image (B,3,H,W), unbounded.
    """

    def __init__(self, cfg: PG2Config, in_channels: int = 3 + NUM_JOINTS):
        super().__init__()
        n, N = cfg.g1_hidden, cfg.g1_blocks
        self.image_size = cfg.image_size  # generate() reads these two
        self.pose_radius = cfg.pose_radius
        self.bottom = cfg.bottom_size
        widths = [n * (i + 1) for i in range(N)]
        self.conv_in = SameConv2d(in_channels, n, 3)
        self.encoder = nn.ModuleList(ConvPair(c, c, residual=True) for c in widths)
        self.down = nn.ModuleList(SameConv2d(widths[i], widths[i + 1], 3, stride=2) for i in range(N - 1))
        h, w = self.bottom
        self.fc_encode = nn.Linear(h * w * widths[-1], cfg.z_num)
        self.fc_decode = nn.Linear(cfg.z_num, h * w * n)
        # decoder step i sees cat(x, skip_{N-1-i}): n + Nn at i = 0, then 2 n (N - i)
        dec_widths = [n + widths[-1]] + [2 * n * (N - i) for i in range(1, N)]
        self.decoder = nn.ModuleList(ConvPair(c, c, residual=True) for c in dec_widths)
        self.up = nn.ModuleList(SameConv2d(dec_widths[i], n * (N - 1 - i), 1) for i in range(N - 1))
        self.conv_out = SameConv2d(dec_widths[-1], 3, 3)

    def forward(self, src_img: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv_in(torch.cat([src_img, pose], 1)))
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            skips.append(x)
            if i < len(self.down):
                x = F.relu(self.down[i](x))
        if tuple(x.shape[-2:]) != self.bottom:
            raise ValueError(
                f"G1 was built for {self.image_size[0]}x{self.image_size[1]} images "
                f"(bottleneck {self.bottom}), got input {tuple(src_img.shape[-2:])}"
            )
        b = x.shape[0]
        z = self.fc_encode(x.permute(0, 2, 3, 1).reshape(b, -1))  # TF NHWC flatten (h, w, c)
        x = self.fc_decode(z).view(b, *self.bottom, -1).permute(0, 3, 1, 2)
        for i, block in enumerate(self.decoder):
            x = block(torch.cat([x, skips[-1 - i]], 1))
            if i < len(self.up):
                x = F.relu(self.up[i](upsample2(x)))
        return self.conv_out(x)


class G2Generator(nn.Module):
    """Stage-II fully convolutional U-Net that outputs the difference map.

    forward(g1 (B,3,H,W), src_img (B,3,H,W)) -> DiffMap (B,3,H,W), unbounded; G2 = g1 + DiffMap.
    """

    def __init__(self, cfg: PG2Config, in_channels: int = 3 + 3):
        super().__init__()
        n, M = cfg.g2_hidden, cfg.g2_blocks
        widths = [n * (i + 1) for i in range(M)]
        self.conv_in = SameConv2d(in_channels, n, 3)
        self.encoder = nn.ModuleList(ConvPair(c_in, c, residual=False) for c_in, c in zip([n] + widths[:-1], widths))
        self.down = nn.ModuleList(SameConv2d(c, c, 3, stride=2) for c in widths[:-1])
        # decoder step i < M-1 sees cat(x, skip of encoder block M-1-i): at i = 0 the bottom
        # with itself (2 M n), then n + (M - i) n; the last step sees x alone
        dec_in = [(widths[-1] if i == 0 else n) + (widths[M - 1 - i] if i < M - 1 else 0) for i in range(M)]
        self.decoder = nn.ModuleList(ConvPair(c, n, residual=False) for c in dec_in)
        self.conv_out = SameConv2d(n, 3, 3)

    def forward(self, g1: torch.Tensor, src_img: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv_in(torch.cat([g1, src_img], 1)))
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i > 0:
                skips.append(x)
            if i < len(self.down):
                x = F.relu(self.down[i](x))
        last = len(self.decoder) - 1
        for i, block in enumerate(self.decoder):
            if i < last:
                x = torch.cat([x, skips[-1 - i]], 1)
            x = block(x)
            if i < last:
                x = upsample2(x)
        return self.conv_out(x)


class DCGANDiscriminator(nn.Module):
    """Unconditional DCGAN critic: images (B,3,H,W) -> logits (B,).

    conv5 s2 (LReLU), then 3 x [conv5 s2, BatchNorm, LReLU] doubling the width, Linear on the
    NCHW-flattened (8 dim, H/16, W/16) map."""

    def __init__(self, cfg: PG2Config, in_channels: int = 3):
        super().__init__()
        d = cfg.ndf
        self.conv1 = SameConv2d(in_channels, d, 5, stride=2)
        self.conv2 = SameConv2d(d, 2 * d, 5, stride=2)
        self.bn2 = nn.BatchNorm2d(2 * d, eps=1e-5)
        self.conv3 = SameConv2d(2 * d, 4 * d, 5, stride=2)
        self.bn3 = nn.BatchNorm2d(4 * d, eps=1e-5)
        self.conv4 = SameConv2d(4 * d, 8 * d, 5, stride=2)
        self.bn4 = nn.BatchNorm2d(8 * d, eps=1e-5)
        h, w = cfg.image_size
        for _ in range(4):
            h, w = -(-h // 2), -(-w // 2)
        self.output = nn.Linear(8 * d * h * w, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(images), LEAK)
        for conv, bn in ((self.conv2, self.bn2), (self.conv3, self.bn3), (self.conv4, self.bn4)):
            x = F.leaky_relu(bn(conv(x)), LEAK)
        return self.output(x.flatten(1)).view(-1)


# ----------------------------------------------------------------------------------------------
# Pose encodings and the loss
# ----------------------------------------------------------------------------------------------


def target_pose_maps(kps, size, radius: int, device: torch.device) -> torch.Tensor:
    """(B,18,2) (y,x) keypoints, -1 missing -> (B,18,H,W) {-1,+1} disk maps on ``device``."""
    from augment.data.pose import pg2_pose_maps  # the data layer's encoder (imported on first use)

    return pg2_pose_maps(torch.as_tensor(kps).to(device), size=(int(size[0]), int(size[1])), radius=radius)


def target_pose_mask(kps, size, radius: int, device: torch.device) -> torch.Tensor:
    """(B,18,2) keypoints -> PG2 training mask M (B,1,H,W) {0,1} on ``device``."""
    from augment.data.pose import pose_mask_pg2

    return pose_mask_pg2(torch.as_tensor(kps).to(device), size=(int(size[0]), int(size[1])), radius=radius).unsqueeze(1)


def pose_mask_l1(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PG2's pose-mask L1 terms in fp32: (mean |fake - real|, mean(|fake - real| * M)), means over
    all B*3*H*W elements (M (B,1,H,W) broadcast over the channels); the loss is their sum."""
    diff = (fake.float() - real.float()).abs()
    return diff.mean(), (diff * mask).mean()


def _check_size(img: torch.Tensor, image_size: tuple[int, int]) -> None:
    if tuple(img.shape[-2:]) != tuple(image_size):
        raise ValueError(
            f"PG2 was built for {image_size[0]}x{image_size[1]} images "
            f"(config image_size: its FC bottleneck and D's Linear depend on it), "
            f"got {img.shape[-2]}x{img.shape[-1]}"
        )


# ----------------------------------------------------------------------------------------------
# Method
# ----------------------------------------------------------------------------------------------


class StageIdleLambdaLR(torch.optim.lr_scheduler.LambdaLR):
    """LambdaLR without torch's one-off "lr_scheduler.step() before optimizer.step()" warning:
    in stage 1 the G2 and D optimizers legitimately never step while their schedules advance."""

    def step(self, *args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            super().step(*args, **kwargs)


@register_method
class PG2(Method):
    """PG2 with the official two-stage recipe (see the module docstring)."""

    name = "pg2"
    Config = PG2Config
    presets = PG2_PRESETS
    schedule_fields = ("stage1_iterations",)  # --iterations N keeps stage 1's share of the run

    def build_networks(self, cfg: PG2Config) -> dict[str, nn.Module]:
        G1 = init_slim(G1Generator(cfg))
        G2 = init_slim(G2Generator(cfg))
        D = init_tflib(DCGANDiscriminator(cfg))
        return {"G1": G1, "G2": G2, "D": D}

    @staticmethod
    def stages(nets, src_img: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(G1 output, DiffMap) for a source image and the target pose maps."""
        g1 = nets["G1"](src_img, pose)
        return g1, nets["G2"](g1, src_img)

    def generate(self, nets, src_img, src_kps, tgt_kps) -> torch.Tensor:
        """G2 = G1 + DiffMap, clamped to [-1,1] (official: clipped when saved). src_kps unused:
        PG2 conditions on the target pose only."""
        G1 = nets["G1"]
        x = inference_batch(G1, src_img, src_kps, tgt_kps, lambda img: _check_size(img, G1.image_size))
        pose = like_source(target_pose_maps(x.tgt_kps, x.size, G1.pose_radius, x.device), x.src_img)
        g1, diff = self.stages(nets, x.src_img, pose)
        return (g1 + diff).float().clamp(-1, 1)

    def make_optimizers(self, nets, cfg: PG2Config) -> dict[str, torch.optim.Optimizer]:
        """Adam(train.lr, betas) for G1, G2 and D (G1's rate times ``g1_lr_scale``)."""
        t = cfg.train
        return {
            name: torch.optim.Adam(
                net.parameters(), lr=t.lr * (cfg.g1_lr_scale if name == "G1" else 1.0), betas=tuple(t.betas)
            )
            for name, net in nets.items()
        }

    def make_schedulers(self, opts, cfg) -> dict:
        """The shared rule (constant at the official settings) on G1, G2 and D. Their rates follow
        the iteration even while a stage leaves an optimizer idle (G2 and D in stage 1)."""
        return {name: StageIdleLambdaLR(opt, lr_lambda(cfg.train)) for name, opt in opts.items()}

    def in_stage1(self, cfg: PG2Config, iteration: int) -> bool:
        """Official ``if step < 22000``: G1 alone."""
        return iteration < cfg.stage1_iterations

    def train_step(self, nets, opts, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, float]:
        """One iteration: the G1 step (stage 1) or the G2 step then the D step (stage 2)."""
        cfg: PG2Config = ctx.config
        x = ctx.batch(batch, lambda img: _check_size(img, cfg.image_size))
        pose = ctx.layout(target_pose_maps(x.tgt_kps, x.size, cfg.pose_radius, ctx.device))
        mask = target_pose_mask(x.tgt_kps, x.size, cfg.pose_radius, ctx.device)
        step = self.stage1_step if self.in_stage1(cfg, ctx.iteration) else self.stage2_step
        return step(nets, opts, ctx, x.src_img, x.tgt_img, pose, mask)

    def stage1_step(self, nets, opts, ctx: StepContext, IA, IB, pose, mask) -> dict[str, float]:
        """G1 alone: the pose-mask L1 of its coarse image. IA, IB (B,3,H,W); pose (B,18,H,W); mask (B,1,H,W)."""
        with ctx.autocast():
            g1 = nets["G1"](IA, pose)
        l1, mask_l1 = pose_mask_l1(g1, IB, mask)
        loss_G1 = l1 + mask_l1
        ctx.backward_step(loss_G1, opts["G1"])
        return ctx.finish({"G1": loss_G1, "L1": l1, "mask_L1": mask_l1})

    def stage2_step(self, nets, opts, ctx: StepContext, IA, IB, pose, mask) -> dict[str, float]:
        """G1 frozen; the G2 step, then the D step on the 4-way batch (arguments as :meth:`stage1_step`)."""
        cfg: PG2Config = ctx.config
        G1, G2, D = nets["G1"], nets["G2"], nets["D"]
        with torch.no_grad(), ctx.autocast():  # G1 is frozen in stage 2
            g1 = G1(IA, pose).float()
        n = IA.shape[0]
        # G2 step: D is a fixed critic, run on the whole 4-way batch (shared BN statistics)
        with frozen(D):
            with ctx.autocast():
                g2 = g1 + G2(g1, IA).float()
                logits = D(torch.cat([IB, IA, g1, g2], 0))
            gan = bce_gan_loss(logits[3 * n :], True)
            l1, mask_l1 = pose_mask_l1(g2, IB, mask)
            loss_G2 = gan + cfg.lambda_l1 * (l1 + mask_l1)
            ctx.backward_step(loss_G2, opts["G2"])
        # D step: a fresh forward with the G2 the step above updated
        with ctx.autocast():
            with torch.no_grad():
                g2 = g1 + G2(g1, IA).float()
            logits = D(torch.cat([IB, IA, g1, g2], 0))
        real, fake_src, fake_g2 = logits[:n], logits[n : 2 * n], logits[3 * n :]
        loss_D = (
            0.5 * bce_gan_loss(real, True) + 0.25 * bce_gan_loss(fake_src, False) + 0.25 * bce_gan_loss(fake_g2, False)
        )
        ctx.backward_step(loss_D, opts["D"])
        return ctx.finish({"G2": loss_G2, "G2_GAN": gan, "L1": l1, "mask_L1": mask_l1, "D": loss_D})
