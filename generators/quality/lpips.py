"""LPIPS v0.1 (Zhang et al. 2018), AlexNet and VGG-16 variants, as the ``lpips`` package computes it.

``d(x, y) = sum_l mean_hw( w_l . (n(f_l(s(x))) - n(f_l(s(y))))^2 )`` where
- x, y are RGB images in [-1, 1] (``lpips.im2tensor``: uint8 / 127.5 - 1);
- s is the ScalingLayer: ``(x - shift) / scale`` with shift (-0.030, -0.088, -0.188), scale (0.458, 0.448, 0.450)
  (version 0.1; version 0.0 skipped it);
- f_l are five ReLU outputs of the ImageNet backbone: AlexNet relu1..relu5 (torchvision ``alexnet().features``
  up to indices 1, 4, 7, 9, 11) or VGG-16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (indices 3, 8, 15, 22, 29);
- n normalises each pixel's feature vector: ``f / (sqrt(sum_c f^2) + 1e-10)``;
- w_l are the learned non-negative 1x1 convolutions ("lin" layers) shipped inside the ``lpips`` wheel
  (``lpips/weights/v0.1/alex.pth``, ``vgg.pth``; keys ``linK.model.1.weight``).

Backbone weights come from torchvision's cache files ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``
(or a path); the linear layers from the installed ``lpips`` package (or a path). Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from generators.quality.device import as_nchw_uint8, exact_fp32
from generators.quality.weights import MetricWeightsError, WeightsSpec, find_weights, freeze, read_state_dict

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


@dataclass(frozen=True)
class Backbone:
    """One LPIPS backbone: its layer list (torchvision ``features`` indices), the indices whose outputs are
    compared, their channel counts, and the weight files."""

    layers: tuple  # ("C", cin, cout, kernel, stride, padding) | ("M",) ; every conv is followed by a ReLU
    taps: tuple[int, ...]
    channels: tuple[int, ...]
    weights: WeightsSpec
    lin_file: str


def _vgg16_layers() -> tuple:
    layers, cin = [], 3
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if width == "M":
            layers.append(("M", 2, 2))
        else:
            layers.append(("C", cin, width, 3, 1, 1))
            cin = width
    return tuple(layers)


BACKBONES = {
    "alex": Backbone(
        layers=(
            ("C", 3, 64, 11, 4, 2),
            ("M", 3, 2),
            ("C", 64, 192, 5, 1, 2),
            ("M", 3, 2),
            ("C", 192, 384, 3, 1, 1),
            ("C", 384, 256, 3, 1, 1),
            ("C", 256, 256, 3, 1, 1),
        ),
        taps=(1, 4, 7, 9, 11),
        channels=(64, 192, 384, 256, 256),
        weights=WeightsSpec(
            metric="LPIPS (AlexNet backbone)",
            files=("alexnet-owt-7be5be79.pth",),
            source="torchvision (AlexNet_Weights.IMAGENET1K_V1, download.pytorch.org/models)",
            path_flag="--lpips-backbone PATH",
            skip_flag="--skip lpips",
        ),
        lin_file="alex.pth",
    ),
    "vgg": Backbone(
        layers=_vgg16_layers(),
        taps=(3, 8, 15, 22, 29),
        channels=(64, 128, 256, 512, 512),
        weights=WeightsSpec(
            metric="LPIPS (VGG-16 backbone)",
            files=("vgg16-397923af.pth",),
            source="torchvision (VGG16_Weights.IMAGENET1K_V1, download.pytorch.org/models)",
            path_flag="--lpips-backbone PATH",
            skip_flag="--skip lpips",
        ),
        lin_file="vgg.pth",
    ),
}


def _features(backbone: Backbone) -> nn.Sequential:
    """torchvision's ``features`` layout (same indices, so its state dict keys load unchanged)."""
    modules: list[nn.Module] = []
    for spec in backbone.layers:
        if spec[0] == "M":
            modules.append(nn.MaxPool2d(kernel_size=spec[1], stride=spec[2]))
        else:
            _, cin, cout, k, s, p = spec
            modules += [nn.Conv2d(cin, cout, k, stride=s, padding=p), nn.ReLU()]
    return nn.Sequential(*modules)


class LPIPS(nn.Module):
    """LPIPS v0.1; ``net`` "alex" or "vgg". forward(x, y): two (N, 3, H, W) batches in [-1, 1] -> (N,)."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"net must be one of {', '.join(BACKBONES)}, got {net!r}")
        self.net_name = net
        self.backbone = BACKBONES[net]
        self.features = _features(self.backbone)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.backbone.channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five unit-normalised feature maps of a [-1, 1] batch."""
        h = (x - self.shift) / self.scale
        out = []
        for index, module in enumerate(self.features):
            h = module(h)
            if index in self.backbone.taps:
                out.append(h / (h.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS))
            if index == self.backbone.taps[-1]:
                break
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(x.shape[0])
        for lin, fx, fy in zip(self.lins, self.taps(x), self.taps(y)):
            total = total + lin((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total


def lpips_linear_path(net: str) -> Path | None:
    """The wheel's ``lpips/weights/v0.1/<net>.pth`` of the installed ``lpips`` package (not imported), or None."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / BACKBONES[net].lin_file


def load_lpips(
    net: str = "alex", backbone_path: str | os.PathLike | None = None, linear_path: str | os.PathLike | None = None
) -> LPIPS:
    """The frozen :class:`LPIPS` with torchvision backbone weights (``backbone_path`` or the torch cache) and
    the ``lpips`` wheel's linear layers (``linear_path`` or the installed package). Raises
    :class:`~generators.quality.weights.MetricWeightsError` when either file is absent."""
    model = LPIPS(net)
    backbone = model.backbone
    file = find_weights(backbone.weights, backbone_path)
    state = read_state_dict(file, f"torchvision {net} backbone")
    wanted = model.features.state_dict()
    sub = {k: state.get(f"features.{k}") for k in wanted}
    bad = [k for k, v in sub.items() if v is None or v.shape != wanted[k].shape]
    if bad:
        raise ValueError(f"{file} is not torchvision's {net} state dict: features.{bad[0]} missing or misshapen")
    model.features.load_state_dict(sub)

    lin_spec = WeightsSpec(
        metric=f"LPIPS v0.1 linear layers ({net})",
        files=(f"lpips/weights/v0.1/{backbone.lin_file}",),
        source="the lpips package (PyPI 'lpips', richzhang/PerceptualSimilarity), which ships them in its wheel",
        path_flag="--lpips-linear PATH (or pip install lpips)",
        skip_flag="--skip lpips",
    )
    lin_file = Path(linear_path) if linear_path is not None else lpips_linear_path(net)
    if lin_file is None or not lin_file.is_file():
        raise MetricWeightsError(lin_spec, [lin_file or Path(lin_spec.files[0])])
    lin_state = read_state_dict(lin_file, f"LPIPS {net} linear layers")
    for k, lin in enumerate(model.lins):
        weight = lin_state.get(f"lin{k}.model.1.weight")
        if weight is None or weight.shape != lin.weight.shape:
            raise ValueError(f"{lin_file}: lin{k}.model.1.weight missing or not of shape {tuple(lin.weight.shape)}")
        lin.weight.data.copy_(weight)
    return freeze(model)


def uint8_to_lpips(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> float32 in [-1, 1] as ``lpips.im2tensor`` (x / 127.5 - 1)."""
    return images.float() / 127.5 - 1.0


@torch.no_grad()
def lpips_distance(model: LPIPS, images_a, images_b, batch_size: int = 64, device=None, mask=None) -> torch.Tensor:
    """Per-pair LPIPS of two uint8 image sets ((N, H, W, 3) or (N, 3, H, W), same sizes) -> (N,) CPU float32.

    ``mask`` (N, H, W) bool / 0-1: both images in [-1, 1] are multiplied by it first (GFLA's masked LPIPS, so
    masked-out pixels become 0, mid grey)."""
    a, b = as_nchw_uint8(images_a), as_nchw_uint8(images_b)
    if a.shape != b.shape:
        raise ValueError(f"image sets differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    m = None if mask is None else torch.as_tensor(mask).float().unsqueeze(1)  # (N, 1, H, W)
    if m is not None and (m.shape[0] != a.shape[0] or m.shape[2:] != a.shape[2:]):
        raise ValueError(f"mask of shape {tuple(m.shape)} does not fit images {tuple(a.shape)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device)
    out = []
    with exact_fp32():
        for start in range(0, a.shape[0], batch_size):
            xa = uint8_to_lpips(a[start : start + batch_size].to(device))
            xb = uint8_to_lpips(b[start : start + batch_size].to(device))
            if m is not None:
                mb = m[start : start + batch_size].to(device)
                xa, xb = xa * mb, xb * mb
            out.append(model(xa, xb).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)
