"""Inception-v3 features for FID, IS and mask-IS.

Two weight sets share one module (:class:`InceptionV3`), picked by ``variant``:

- ``"fid"`` — the 2015 TensorFlow Inception graph (``inception-2015-12-05``, 1008 classes) that the TF-era
  IS code (OpenAI's ``inception_score.py``, copied by PATN and Deformable GAN) and TF FID ran, as ported to
  PyTorch by pytorch-fid (``pt_inception-2015-12-05-6726825d.pth``) and torch-fidelity
  (``weights-inception-2015-12-05-6726825d.pth``; same key layout). The graph differs from torchvision's
  Inception in three places: average pools exclude the zero padding (``count_include_pad=False``), the
  last block's pool branch is a 3x3 *max* pool, and the classifier has 1008 outputs.
- ``"torchvision"`` — torchvision's ImageNet Inception-v3 (``inception_v3_google-0cc3c7bd.pth``), which
  GFLA's ``script/metrics.py`` uses for its FID (its own InceptionV3 wrapper over
  ``torchvision.models.inception_v3(pretrained=True)``).

Outputs (:meth:`InceptionV3.forward`, input already resized to 299x299 and normalised):
``pool3`` (N, 2048), the global average pool ("pool_3" in the TF graph; FID's features);
``logits_unbiased`` (N, classes) = pool3 @ fc.weight^T, the logits the TF-era IS code softmaxes (it
multiplies pool_3 by the ``softmax/logits/MatMul`` weights and never adds the bias);
``logits`` = logits_unbiased + fc.bias.

Input conventions (:data:`INPUTS`), from uint8 RGB images of any size:
``tf1`` (TF graph / torch-fidelity): float 0..255 -> TF1 bilinear to 299 -> (x - 128) / 128;
``pytorch-fid`` (pytorch-fid): x / 255 -> ``F.interpolate`` bilinear to 299 -> 2x - 1;
``gfla`` (GFLA's torchvision Inception): x / 255 -> ``F.interpolate`` bilinear to 299 -> torchvision's
``transform_input`` (x * std / 0.5 + (mean - 0.5) / 0.5 per channel, ImageNet mean/std).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from generators.quality.device import as_nchw_uint8, exact_fp32
from generators.quality.resize import resize
from generators.quality.weights import WeightsSpec, find_weights, load_exact, read_state_dict

SIZE = 299
FID_WEIGHTS = WeightsSpec(
    metric="FID/IS (2015 TF Inception)",
    files=("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth"),
    source="pytorch-fid (github.com/mseitzer/pytorch-fid, release 'fid_weights') or torch-fidelity "
    "(github.com/toshas/torch-fidelity, release v0.2.0), both converted from TensorFlow's inception-2015-12-05",
    path_flag="--inception-weights PATH",
    skip_flag="--skip fid,is",
)
TORCHVISION_WEIGHTS = WeightsSpec(
    metric="FID (torchvision Inception-v3, GFLA protocol)",
    files=("inception_v3_google-0cc3c7bd.pth",),
    source="torchvision (Inception_V3_Weights.IMAGENET1K_V1, download.pytorch.org/models)",
    path_flag="--inception-weights PATH",
    skip_flag="--skip fid",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Conv(nn.Module):
    """conv (no bias) -> BatchNorm (eps 1e-3, TF's) -> ReLU; keys ``conv.*``, ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor, tf_pool: bool) -> torch.Tensor:
    # TF's SAME average pool divides by the number of real pixels; torchvision's counts the padding
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=not tf_pool)


class BlockA(nn.Module):
    """Mixed_5b/5c/5d (35x35): 1x1, 5x5, double 3x3, pool + 1x1."""

    def __init__(self, cin: int, pool_features: int, tf_pool: bool):
        super().__init__()
        self.tf_pool = tf_pool
        self.branch1x1 = Conv(cin, 64, 1)
        self.branch5x5_1 = Conv(cin, 48, 1)
        self.branch5x5_2 = Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = Conv(cin, 64, 1)
        self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, padding=1)
        self.branch_pool = Conv(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = self.branch_pool(_avg3(x, self.tf_pool))
        return torch.cat([self.branch1x1(x), b5, b3, pool], 1)


class BlockB(nn.Module):
    """Mixed_6a: 35x35 -> 17x17 (stride-2 3x3, double 3x3, max pool)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = Conv(cin, 64, 1)
        self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class BlockC(nn.Module):
    """Mixed_6b..6e (17x17): 1x1, factorised 7x7, double factorised 7x7, pool + 1x1."""

    def __init__(self, cin: int, c7: int, tf_pool: bool):
        super().__init__()
        self.tf_pool = tf_pool
        self.branch1x1 = Conv(cin, 192, 1)
        self.branch7x7_1 = Conv(cin, c7, 1)
        self.branch7x7_2 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = Conv(cin, c7, 1)
        self.branch7x7dbl_2 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            d = conv(d)
        d = self.branch7x7dbl_5(d)
        pool = self.branch_pool(_avg3(x, self.tf_pool))
        return torch.cat([self.branch1x1(x), b7, d, pool], 1)


class BlockD(nn.Module):
    """Mixed_7a: 17x17 -> 8x8."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = Conv(cin, 192, 1)
        self.branch3x3_2 = Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = Conv(cin, 192, 1)
        self.branch7x7x3_2 = Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):
    """Mixed_7b/7c (8x8): 1x1, split 3x3, double split 3x3, pool + 1x1. ``pool``: "avg_tf", "avg" or "max"."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = Conv(cin, 320, 1)
        self.branch3x3_1 = Conv(cin, 384, 1)
        self.branch3x3_2a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = Conv(cin, 448, 1)
        self.branch3x3dbl_2 = Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.pool == "max":  # the TF graph's last block pools with max (an oddity of that graph)
            pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            pooled = _avg3(x, tf_pool=self.pool == "avg_tf")
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


VARIANTS = {"fid": (True, 1008, FID_WEIGHTS), "torchvision": (False, 1000, TORCHVISION_WEIGHTS)}


class InceptionV3(nn.Module):
    """Inception-v3 up to pool3 and the classifier; ``variant`` "fid" or "torchvision" (module docstring).

    forward: (N, 3, 299, 299) normalised float -> {"pool3": (N, 2048), "logits_unbiased": (N, K),
    "logits": (N, K)}, K = 1008 (fid) or 1000 (torchvision)."""

    def __init__(self, variant: str = "fid"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        self.variant = variant
        tf, classes, _ = VARIANTS[variant]
        self.Conv2d_1a_3x3 = Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = Conv(80, 192, 3)
        self.Mixed_5b = BlockA(192, 32, tf)
        self.Mixed_5c = BlockA(256, 64, tf)
        self.Mixed_5d = BlockA(288, 64, tf)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128, tf)
        self.Mixed_6c = BlockC(768, 160, tf)
        self.Mixed_6d = BlockC(768, 160, tf)
        self.Mixed_6e = BlockC(768, 192, tf)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, "avg_tf" if tf else "avg")
        self.Mixed_7c = BlockE(2048, "max" if tf else "avg")
        self.fc = nn.Linear(2048, classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c):
            x = block(x)
        for block in (self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        pool3 = x.mean(dim=(2, 3))
        unbiased = pool3 @ self.fc.weight.t()
        return {"pool3": pool3, "logits_unbiased": unbiased, "logits": unbiased + self.fc.bias}


def load_inception(variant: str = "fid", path: str | os.PathLike | None = None) -> InceptionV3:
    """The frozen :class:`InceptionV3` with its weights from ``path`` or the torch cache
    (:data:`FID_WEIGHTS` / :data:`TORCHVISION_WEIGHTS` name the files). Raises
    :class:`~generators.quality.weights.MetricWeightsError` when absent, ValueError when the file holds
    another network."""
    net = InceptionV3(variant)
    spec = VARIANTS[variant][2]
    file = find_weights(spec, path)
    state = read_state_dict(file, f"Inception-v3 ({variant})")
    if variant == "torchvision":  # the auxiliary classifier is not part of the feature path
        state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    return load_exact(net, state, file, f"Inception-v3 ({variant})")


@dataclass(frozen=True)
class InputConvention:
    """How a reference turns uint8 images into the network's input: ``prepare`` maps a (N, 3, H, W)
    uint8 batch to (N, 3, 299, 299) float32."""

    name: str
    prepare: Callable[[torch.Tensor], torch.Tensor]


def _tf1(x: torch.Tensor) -> torch.Tensor:
    return (resize(x.float(), (SIZE, SIZE), "tf1-bilinear") - 128) / 128


def _pytorch_fid(x: torch.Tensor) -> torch.Tensor:
    return 2 * resize(x.float() / 255, (SIZE, SIZE), "torch-bilinear") - 1


def _gfla(x: torch.Tensor) -> torch.Tensor:
    x = resize(x.float() / 255, (SIZE, SIZE), "torch-bilinear")
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    return x * (std / 0.5) + (mean - 0.5) / 0.5


INPUTS: dict[str, InputConvention] = {
    "tf1": InputConvention("tf1", _tf1),
    "pytorch-fid": InputConvention("pytorch-fid", _pytorch_fid),
    "gfla": InputConvention("gfla", _gfla),
}


@torch.no_grad()
def inception_features(
    net: InceptionV3,
    images,
    convention: str = "tf1",
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """pool3 and logits of uint8 RGB images ((N, H, W, 3) array or (N, 3, H, W) tensor, any H, W).

    Runs in batches of ``batch_size`` on ``device`` (default: the network's), float32 with TF32 off.
    Returns CPU float32 tensors {"pool3": (N, 2048), "logits_unbiased": (N, K), "logits": (N, K)}."""
    if convention not in INPUTS:
        raise ValueError(f"convention must be one of {', '.join(INPUTS)}, got {convention!r}")
    prepare = INPUTS[convention].prepare
    x = as_nchw_uint8(images)
    device = torch.device(device) if device is not None else next(net.parameters()).device
    net = net.to(device)
    chunks: dict[str, list[torch.Tensor]] = {"pool3": [], "logits_unbiased": [], "logits": []}
    with exact_fp32():
        for start in range(0, x.shape[0], batch_size):
            batch = x[start : start + batch_size].to(device, non_blocking=True)
            out = net(prepare(batch))
            for key in chunks:
                chunks[key].append(out[key].float().cpu())
    if not chunks["pool3"]:
        k = net.fc.out_features
        return {"pool3": torch.zeros(0, 2048), "logits_unbiased": torch.zeros(0, k), "logits": torch.zeros(0, k)}
    return {key: torch.cat(parts) for key, parts in chunks.items()}
