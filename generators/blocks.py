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
"""

from __future__ import annotations

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
