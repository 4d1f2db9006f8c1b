"""Open-ReID's ResNet-50 re-ID model on torchreid's ResNet-50 (what PATN Table 5's ResNet-50 rows trained).

Open-ReID (Cysu/open-reid reid/models/resnet.py, softmax recipe): torchvision ResNet-50 (last stride 2) ->
global average pool (2048) -> Linear(2048, 128) + BN1d + ReLU -> dropout 0.5 -> Linear(128, num_classes),
retrieval on the classifier output. torchreid's ``resnet50`` instead classifies the pooled 2048-d feature
and retrieves with it. torchreid's ResNet with ``fc_dims=[128], dropout_p=0.5`` builds exactly Open-ReID's
head (its ``fc`` is Linear + BN1d + ReLU + Dropout); this class adds Open-ReID's initialisation and
retrieval output:

* init from scratch (Open-ReID ``reset_params``): convs kaiming-normal fan_out, BN2d 1/0, every Linear
  N(0, 0.001) with zero bias, the embedding BN 1/0; with ImageNet weights, Open-ReID initialises the
  embedding Linear kaiming-normal fan_out instead (``pretrained_head_init()``; reid_eval.train calls it
  when the weights were loaded).
* eval mode returns the logits (``eval_output='logits'``, Open-ReID's Evaluator) or the 128-d embedding.
* state-dict names are torchreid's (``conv1``, ``layer1``..``layer4``, ``fc.0``, ``fc.1``, ``classifier``), so
  the ImageNet file ``resnet50-19c8e357.pth`` loads into the backbone by name, and torchreid's staged
  learning rate takes ``new_layers=['fc', 'classifier']``.

``register()`` adds 'openreid_resnet50' to torchreid's model factory and to ``reid_eval.models.MODEL_SPECS``
(so ``build_reid_model`` loads the cached ImageNet weights the same way as for torchreid's resnet50).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from reid_eval.compat import import_torchreid

__all__ = ["OpenReIDResNet50", "openreid_resnet50", "register", "NAME"]

NAME = "openreid_resnet50"


# torchreid's ResNet is the base class; importing torchreid takes seconds, so import this module lazily.
_resnet = import_torchreid().reid.models.resnet


class OpenReIDResNet50(_resnet.ResNet):
    """Open-ReID ResNet-50. Input (B, 3, H, W) (Open-ReID: 256x128).

    Train: logits (B, num_classes) for loss='softmax', (logits, embedding (B, num_features)) for 'triplet'.
    Eval: logits, or the embedding (B, num_features) with eval_output='embedding'.
    """

    def __init__(
        self,
        num_classes: int,
        loss: str = "softmax",
        num_features: int = 128,
        dropout: float = 0.5,
        eval_output: Literal["logits", "embedding"] = "logits",
        **kwargs,
    ):
        if eval_output not in ("logits", "embedding"):
            raise ValueError(f"eval_output must be 'logits' or 'embedding', got {eval_output!r}")
        if num_classes < 1 or num_features < 1:
            raise ValueError(f"num_classes and num_features must be >= 1, got {num_classes}, {num_features}")
        super().__init__(
            num_classes=num_classes,
            loss=loss,
            block=_resnet.Bottleneck,
            layers=[3, 4, 6, 3],
            last_stride=2,
            fc_dims=[num_features],
            dropout_p=dropout if dropout > 0 else None,
            **kwargs,
        )
        self.eval_output = eval_output
        self.num_features = num_features
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Open-ReID's from-scratch init (convs kaiming-normal fan_out; every Linear N(0, 0.001); BN 1/0)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)

    def pretrained_head_init(self) -> None:
        """Open-ReID's embedding init when the backbone is ImageNet-pretrained: kaiming-normal fan_out."""
        nn.init.kaiming_normal_(self.fc[0].weight, mode="fan_out")
        nn.init.zeros_(self.fc[0].bias)

    def forward(self, x: torch.Tensor):
        if self.training:
            return super().forward(x)
        embedding = self.fc(self.global_avgpool(self.featuremaps(x)).flatten(1))
        return self.classifier(embedding) if self.eval_output == "logits" else embedding


def openreid_resnet50(
    num_classes: int, loss: str = "softmax", pretrained: bool = False, use_gpu: bool = True, **kwargs
) -> nn.Module:
    """torchreid model-factory entry. ``pretrained`` is ignored here: ImageNet weights are loaded from the
    torch cache by ``reid_eval.models.build_reid_model`` (torchreid's own path would download them)."""
    del pretrained, use_gpu
    return OpenReIDResNet50(num_classes, loss=loss, **kwargs)


def register() -> None:
    """Add 'openreid_resnet50' to torchreid's model factory and to reid_eval.models.MODEL_SPECS (idempotent)."""
    from reid_eval import models

    getattr(import_torchreid().reid.models, "__model_factory")[NAME] = openreid_resnet50
    models.MODEL_SPECS.setdefault(NAME, models.ModelSpec(openreid_resnet50, "resnet50-19c8e357.pth", (256, 128)))
