"""Network pieces shared by more than one method (pix2pix / CycleGAN lineage, as PATN uses them).

- :func:`norm_layer` and :func:`conv_bias` — the official rule: convolutions carry a bias only
  when the norm is InstanceNorm (BatchNorm's shift makes a conv bias redundant).
- :func:`pad_layers` — reflect / replicate padding modules, or zero padding inside the conv.
- :class:`ResnetBlock` — x + [pad, conv3, norm, ReLU, (Dropout 0.5), pad, conv3, norm], with the
  official module indices (``conv_block.1`` is the first conv, ``conv_block.5``/``.6`` the second
  with/without dropout), so official state dicts load unchanged.
- :func:`init_weights` — the official ``init_type='normal'``: every Conv*/Linear weight
  N(0, 0.02), BatchNorm2d weight N(1, 0.02) and bias 0; conv biases keep PyTorch's default.
- :func:`frozen` — a discriminator as a fixed critic during the generator's step.
- :func:`check_divisible` — the input size a generator with ``levels`` halvings accepts.
- :func:`upsample_layers` — a 2x upsampling conv: the official transposed convolution, or resize
  (nearest / bilinear) then a stride-1 conv, which cannot make checkerboard patterns (a
  stride-2 transposed conv whose kernel is not a multiple of 2 overlaps unevenly).
- :class:`WeightEMA` — an exponential moving average of a network's weights (sampling copy).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn

NORMS = {
    "batch": functools.partial(nn.BatchNorm2d, affine=True),
    "instance": functools.partial(nn.InstanceNorm2d, affine=False),
}
PADDINGS = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d, "zero": None}
UPSAMPLES = ("convt", "nearest", "bilinear")


def norm_layer(kind: str) -> Callable[[int], nn.Module]:
    """Factory ``channels -> norm module`` for ``kind`` in :data:`NORMS`."""
    try:
        return NORMS[kind]
    except KeyError:
        raise ValueError(f"unknown norm {kind!r}; known: {', '.join(NORMS)}") from None


def conv_bias(kind: str) -> bool:
    """Official ``use_bias``: True only for InstanceNorm."""
    norm_layer(kind)  # validates
    return kind == "instance"


def pad_layers(kind: str, amount: int) -> tuple[list[nn.Module], int]:
    """(padding modules to put before a conv, the conv's own ``padding``) for ``kind``."""
    if kind not in PADDINGS:
        raise ValueError(f"unknown padding {kind!r}; known: {', '.join(PADDINGS)}")
    pad = PADDINGS[kind]
    return ([], amount) if pad is None else ([pad(amount)], 0)


class ResnetBlock(nn.Module):
    """Residual block at constant width ``dim``: (B,dim,H,W) -> (B,dim,H,W)."""

    def __init__(self, dim: int, norm: str = "batch", padding: str = "reflect", dropout: bool = True):
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        layers: list[nn.Module] = []
        pads, p = pad_layers(padding, 1)
        layers += [*pads, nn.Conv2d(dim, dim, 3, padding=p, bias=bias), make_norm(dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        pads, p = pad_layers(padding, 1)
        layers += [*pads, nn.Conv2d(dim, dim, 3, padding=p, bias=bias), make_norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


def init_weights(net: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Official weight init; only ``normal`` is used by the methods here (others raise)."""
    if kind != "normal":
        raise ValueError(f"unknown init {kind!r}; known: normal")

    def init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    return net.apply(init)


@contextmanager
def frozen(*nets: nn.Module | None):
    """Parameters of ``nets`` need no gradient inside the block (G's step: D is a fixed critic).
    Same updates as the official code, which lets D gradients accumulate and zeroes them later."""
    params = [p for net in nets if net is not None for p in net.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def check_divisible(img: torch.Tensor, levels: int, what: str = "downsamplings") -> None:
    """Raise ValueError unless img's (H, W) are divisible by 2**levels (``levels`` halvings)."""
    h, w = img.shape[-2:]
    factor = 2**levels
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} must be divisible by {factor} ({levels} {what})")


def check_upsample(mode: str) -> str:
    """``mode`` if it is one of :data:`UPSAMPLES`, else ValueError."""
    if mode not in UPSAMPLES:
        raise ValueError(f"unknown upsample {mode!r}; known: {', '.join(UPSAMPLES)}")
    return mode


def upsample_layers(
    c_in: int, c_out: int, mode: str, *, kernel: int = 3, bias: bool = False, padding: str = "reflect"
) -> list[nn.Module]:
    """Layers that double H and W: (B,c_in,h,w) -> (B,c_out,2h,2w).

    ``convt``: ConvTranspose2d(kernel, stride 2) with the padding that doubles exactly (kernel 3:
    padding 1, output_padding 1, PATN; kernel 4: padding 1, Deformable GAN). ``nearest`` /
    ``bilinear``: resize by 2, then Conv2d(kernel 3, stride 1) behind ``padding`` (same parameter
    count as the kernel-3 transposed conv; 4x its MACs, which run at the doubled size).
    """
    check_upsample(mode)
    if mode == "convt":
        if kernel not in (3, 4):
            raise ValueError(f"transposed-conv upsampling needs kernel 3 or 4, got {kernel}")
        extra = 1 if kernel == 3 else 0
        return [nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=1, output_padding=extra, bias=bias)]
    resize = nn.Upsample(scale_factor=2, mode=mode, **({} if mode == "nearest" else {"align_corners": False}))
    pads, p = pad_layers(padding, 1)
    return [resize, *pads, nn.Conv2d(c_in, c_out, 3, padding=p, bias=bias)]


class WeightEMA:
    """Exponential moving average of ``source``'s parameters in a frozen copy (Karras et al. 2018;
    Yazici et al. 2019: averaged generator weights give smoother, sharper samples than the last
    iterate of an oscillating GAN game).

    ``update(step)``: target <- d * target + (1 - d) * source with d = min(decay, (1 + step) /
    (10 + step)) (the warm-up lets the copy follow the fast early changes), buffers (BatchNorm
    running statistics) copied. The copy never trains (parameters need no gradient).
    """

    def __init__(self, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.decay = decay

    @staticmethod
    def copy_of(source: nn.Module) -> nn.Module:
        """A frozen deep copy of ``source`` to hold the average."""
        target = copy.deepcopy(source)
        for p in target.parameters():
            p.requires_grad_(False)
        return target

    @torch.no_grad()
    def update(self, target: nn.Module, source: nn.Module, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s.detach().to(t.dtype), 1.0 - d)
        for t, s in zip(target.buffers(), source.buffers()):
            t.copy_(s)
