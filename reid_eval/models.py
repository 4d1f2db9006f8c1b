"""Re-ID backbones for torchreid: Open-ReID's small Inception and torchreid's ResNet-50 with offline weights.

* ``OpenReIDInception``: the custom BN-Inception of Open-ReID (Cysu/open-reid reid/models/inception.py),
  re-implemented with the same layer list and parameter names (state dicts are interchangeable):
  conv1-3 (3x3, 32 ch, BN+ReLU) -> maxpool 2x2/2 (pad 1) -> blocks 4a 4b 5a 5b 6a 6b (branch widths
  64 64 128 128 256 256; 'avg' blocks: 4 branches, stride 1; 'max' blocks: two conv branches and a max-pool
  branch, stride 2) -> global average pool (1536) -> Linear(1536, num_features) + BN1d + ReLU -> dropout ->
  Linear(num_features, num_classes). Trained from scratch; Open-ReID's softmax recipe uses 144x56 inputs
  (final map 1536x10x4), num_features=128, dropout=0.5. With a 751-way head it has 6,648,335 parameters
  (``INCEPTION_PARAMS_MARKET``; tests/test_reid_models.py proves it).
* torchreid conventions (so its engines can train it): train mode returns logits for loss='softmax' and
  (logits, embedding) for loss='triplet'; eval mode returns the retrieval feature. Open-ReID retrieves with the
  classifier output (``eval_output='logits'``, the default here, as its Evaluator calls model(x) on a model with
  num_classes > 0); ``eval_output='embedding'`` returns the 128-d post-ReLU embedding instead.
* ``register_models()`` adds 'openreid_inception' to torchreid's model factory (idempotent).
* ``build_reid_model()`` builds a registered architecture; ImageNet weights for torchreid's ResNets are loaded
  only from the torch hub cache ($TORCH_HOME/hub/checkpoints/<file>), never downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "InceptionBlock",
    "OpenReIDInception",
    "openreid_inception",
    "register_models",
    "build_reid_model",
    "ModelInfo",
    "ModelSpec",
    "MODEL_SPECS",
    "imagenet_weights_path",
    "INCEPTION_PARAMS_MARKET",
    "MissingPretrainedWeightsError",
]

# 751 training identities (Market-1501), num_features=128: "6.65M" rounded (docs/reid.md#models).
INCEPTION_PARAMS_MARKET = 6_648_335

PoolKind = Literal["avg", "max"]
# (name, branch width, pool kind, stride) in Open-ReID's order
INCEPTION_BLOCKS: tuple[tuple[str, int, PoolKind, int], ...] = (
    ("inception4a", 64, "avg", 1),
    ("inception4b", 64, "max", 2),
    ("inception5a", 128, "avg", 1),
    ("inception5b", 128, "max", 2),
    ("inception6a", 256, "avg", 1),
    ("inception6b", 256, "max", 2),
)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias, 'same' padding for odd kernels) + BN + ReLU; Sequential so keys read conv1.0.weight etc."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class InceptionBlock(nn.Module):
    """Open-ReID inception block. Input (B, in_channels, H, W).

    'avg' (stride 1): 1x1->3x3 | 1x1->3x3->3x3 | 1x1 | avgpool3x3->1x1, output (B, 4*width, H, W).
    'max' (stride s): 1x1->3x3/s | 1x1->3x3->3x3/s | maxpool3x3/s, output (B, 2*width + in_channels, H/s, W/s).
    """

    def __init__(self, in_channels: int, width: int, pool: PoolKind, stride: int):
        super().__init__()
        if pool == "avg" and stride != 1:
            raise ValueError(f"an 'avg' inception block has stride 1, got {stride}")
        branches = [
            nn.Sequential(_conv_bn_relu(in_channels, width, 1), _conv_bn_relu(width, width, stride=stride)),
            nn.Sequential(
                _conv_bn_relu(in_channels, width, 1),
                _conv_bn_relu(width, width),
                _conv_bn_relu(width, width, stride=stride),
            ),
        ]
        if pool == "avg":
            branches += [
                _conv_bn_relu(in_channels, width, 1),
                nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), _conv_bn_relu(in_channels, width, 1)),
            ]
            self.out_channels = 4 * width
        else:
            branches.append(nn.MaxPool2d(3, stride=stride, padding=1))
            self.out_channels = 2 * width + in_channels
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class OpenReIDInception(nn.Module):
    """Open-ReID Inception for re-ID. Input (B, 3, H, W), Open-ReID uses H, W = 144, 56.

    Outputs: train + loss 'softmax' -> logits (B, num_classes); train + 'triplet' -> (logits, embedding
    (B, num_features)); eval -> logits (eval_output='logits') or embedding (eval_output='embedding').
    norm=True L2-normalises the embedding instead of the ReLU (Open-ReID's option).
    """

    def __init__(
        self,
        num_classes: int,
        loss: str = "softmax",
        num_features: int = 128,
        dropout: float = 0.5,
        norm: bool = False,
        eval_output: Literal["logits", "embedding"] = "logits",
    ):
        super().__init__()
        if num_classes < 1 or num_features < 1:
            raise ValueError(f"num_classes and num_features must be >= 1, got {num_classes}, {num_features}")
        if loss not in ("softmax", "triplet"):
            raise ValueError(f"loss must be 'softmax' or 'triplet', got {loss!r}")
        if eval_output not in ("logits", "embedding"):
            raise ValueError(f"eval_output must be 'logits' or 'embedding', got {eval_output!r}")
        self.loss, self.norm, self.eval_output = loss, norm, eval_output
        self.num_classes, self.num_features = num_classes, num_features
        self.conv1 = _conv_bn_relu(3, 32)
        self.conv2 = _conv_bn_relu(32, 32)
        self.conv3 = _conv_bn_relu(32, 32)
        self.pool3 = nn.MaxPool2d(kernel_size=2, stride=2, padding=1)
        channels = 32
        for name, width, pool, stride in INCEPTION_BLOCKS:
            block = InceptionBlock(channels, width, pool, stride)
            self.add_module(name, block)
            channels = block.out_channels
        self.feature_channels = channels  # 1536
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feat = nn.Linear(channels, num_features)
        self.feat_bn = nn.BatchNorm1d(num_features)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(num_features, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Open-ReID init: convs kaiming-normal (fan_out), BN2d weight 1 / bias 0, linears N(0, 0.001), bias 0.

        feat_bn keeps torch's default (weight 1, bias 0); Open-ReID left it to the PyTorch 0.3 default.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)

    def featuremaps(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1536, H', W'); (144, 56) -> (10, 4)."""
        x = self.pool3(self.conv3(self.conv2(self.conv1(x))))
        for name, *_ in INCEPTION_BLOCKS:
            x = getattr(self, name)(x)
        return x

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_features): pooled features -> Linear -> BN -> ReLU (or L2 norm)."""
        e = self.feat_bn(self.feat(self.avgpool(self.featuremaps(x)).flatten(1)))
        return F.normalize(e) if self.norm else F.relu(e)

    def forward(self, x: torch.Tensor):
        e = self.embedding(x)
        if not self.training:
            return self.classifier(e) if self.eval_output == "logits" else e
        logits = self.classifier(self.drop(e))
        return logits if self.loss == "softmax" else (logits, e)


def openreid_inception(
    num_classes: int, loss: str = "softmax", pretrained: bool = False, use_gpu: bool = True, **kwargs
) -> OpenReIDInception:
    """torchreid model-factory entry. `pretrained` is ignored: no ImageNet weights exist for this network and
    Open-ReID trains it from scratch (torchreid's build_model passes pretrained=True by default)."""
    del pretrained, use_gpu
    return OpenReIDInception(num_classes, loss=loss, **kwargs)


def register_models() -> None:
    """Add 'openreid_inception' to torchreid's model factory (torchreid.reid.models.__model_factory). Idempotent."""
    from reid_eval.compat import import_torchreid

    models = import_torchreid().reid.models
    factory = getattr(models, "__model_factory")  # module-level dict (no name mangling outside classes)
    factory["openreid_inception"] = openreid_inception


# --------------------------------------------------------------------------- build with offline weights
class MissingPretrainedWeightsError(FileNotFoundError):
    """pretrained=True but the ImageNet weight file is not in the torch hub cache."""


@dataclass(frozen=True)
class ModelSpec:
    """How to build one architecture: builder(num_classes, loss, **kwargs) and its ImageNet weight file (or None)."""

    builder: Callable[..., nn.Module]
    imagenet_file: str | None
    input_size: tuple[int, int]  # (height, width) of the Open-ReID / torchreid recipe


def _torchreid_builder(name: str) -> Callable[..., nn.Module]:
    def build(num_classes: int, loss: str = "softmax", **kwargs) -> nn.Module:
        from reid_eval.compat import import_torchreid

        models = import_torchreid().reid.models
        # pretrained=False: torchreid would download; weights are loaded from the cache by build_reid_model
        return getattr(models, "__model_factory")[name](
            num_classes=num_classes, loss=loss, pretrained=False, use_gpu=False, **kwargs
        )

    return build


# torchreid's resnet50 / resnet50_fc512 both start from torchvision's resnet50-19c8e357.pth (model_urls['resnet50'])
MODEL_SPECS: dict[str, ModelSpec] = {
    "resnet50": ModelSpec(_torchreid_builder("resnet50"), "resnet50-19c8e357.pth", (256, 128)),
    "resnet50_fc512": ModelSpec(_torchreid_builder("resnet50_fc512"), "resnet50-19c8e357.pth", (256, 128)),
    "openreid_inception": ModelSpec(openreid_inception, None, (144, 56)),
}


@dataclass(frozen=True)
class ModelInfo:
    """What build_reid_model built: imagenet_weights says whether ImageNet weights were loaded, from weights_file."""

    name: str
    num_classes: int
    loss: str
    imagenet_weights: bool
    weights_file: str | None
    num_params: int
    input_size: tuple[int, int]
    loaded_tensors: int = 0


def imagenet_weights_path(filename: str) -> str:
    """$TORCH_HOME/hub/checkpoints/<filename> (torch.hub's cache; TORCH_HOME defaults to ~/.cache/torch)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def _load_matching(model: nn.Module, path: str) -> int:
    """Copy tensors whose name and shape match (torchreid's init_pretrained_weights rule); returns how many."""
    weights = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    matched = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"{path}: no tensor matches the model by name and shape; is it an ImageNet ResNet file?")
    own.update(matched)
    model.load_state_dict(own)
    return len(matched)


def build_reid_model(
    name: str, num_classes: int, pretrained: bool | Literal["auto"] = "auto", loss: str = "softmax", **kwargs
) -> tuple[nn.Module, ModelInfo]:
    """Build `name` (a MODEL_SPECS key) for `num_classes` identities; never touches the network.

    pretrained: 'auto' loads ImageNet weights when the file is in the torch hub cache, else trains from
    scratch; True requires the file (MissingPretrainedWeightsError names it); False never loads.
    Architectures without ImageNet weights (openreid_inception) build from scratch with 'auto'/False and
    reject True.
    """
    if name not in MODEL_SPECS:
        raise KeyError(f"unknown re-ID model {name!r}; known: {sorted(MODEL_SPECS)}")
    if pretrained not in (True, False, "auto"):
        raise ValueError(f"pretrained must be True, False or 'auto', got {pretrained!r}")
    spec = MODEL_SPECS[name]
    if spec.imagenet_file is None and pretrained is True:
        raise ValueError(
            f"{name} has no ImageNet weights (Open-ReID trains it from scratch); use pretrained=False or 'auto'"
        )
    weights_file = None
    if spec.imagenet_file is not None and pretrained is not False:
        path = imagenet_weights_path(spec.imagenet_file)
        if os.path.isfile(path):
            weights_file = path
        elif pretrained is True:
            raise MissingPretrainedWeightsError(
                f"ImageNet weights for {name} not found: {path} is missing (looked in $TORCH_HOME/hub/checkpoints; "
                f"nothing is downloaded). Place {spec.imagenet_file} there, or build with pretrained=False "
                "(or 'auto') to train from scratch."
            )
    model = spec.builder(num_classes, loss=loss, **kwargs)
    loaded = _load_matching(model, weights_file) if weights_file else 0
    info = ModelInfo(
        name=name,
        num_classes=num_classes,
        loss=loss,
        imagenet_weights=weights_file is not None,
        weights_file=weights_file,
        num_params=sum(p.numel() for p in model.parameters()),
        input_size=spec.input_size,
        loaded_tensors=loaded,
    )
    return model, info
