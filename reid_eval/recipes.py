"""Training recipes for the re-ID models (``--recipe``), and the transforms they use.

``openreid``: the protocol PATN Table 5 followed (Open-ReID ``examples/softmax_loss.py``):
  ResNet-50 at 256x128 (Open-ReID head: 128-d embedding + BN + ReLU, dropout 0.5, classifier; see
  reid_eval.openreid_resnet), ImageNet weights when cached, lr 0.1 for the new layers and 0.01 for the
  pretrained base, x0.1 at epoch 40, 50 epochs; Inception at 144x56 from scratch, lr 0.1 everywhere,
  x0.1 at epoch 60, 70 epochs. Both: RandomSizedRectCrop (area 0.64-1, aspect 2-3) + horizontal flip,
  batch 256, SGD nesterov momentum 0.9, weight decay 5e-4, plain cross-entropy, retrieval on the logits
  with squared Euclidean distance. Deviations: no 100-identity validation hold-out (Open-ReID's
  ``num_val``; we train on every training identity, as with ``--combine-trainval``), and from-scratch
  ResNet-50 when the ImageNet file is not in the torch cache (recorded in metrics.json).
``torchreid``: torchreid's Market-1501 defaults (its softmax config): Adam lr 3e-4 (betas 0.9/0.99),
  weight decay 5e-4, batch 32, label-smoothed cross-entropy, x0.1 every 20 epochs, 60 epochs, resize +
  random flip, Euclidean distance on the model's eval feature (torchreid resnet50: the pooled 2048-d
  feature; Inception: its 128-d embedding), ResNet-50 at 256x128 (ImageNet weights when cached),
  Inception at its Open-ReID 144x56.
``cpu``: the ``openreid`` recipe made small enough for the embedded-dataset benchmark on a 2-core CPU:
  the same Open-ReID Inception network at half the input size (64x32; the embedded images are 128x64),
  batch 64, 16 epochs with x0.1 at epoch 13 (Open-ReID steps at 80-86% of training); ResNet-50 at 128x64
  likewise. Everything else as ``openreid``. Why this size: 3.5 vs 1.0 GFLOPs per forward pass, and the
  published size would need hours of CPU for the grid (docs/measurements.md#re-id-training). Sanity check:
  10 epochs on a 50-identity embedded set (641 images) reached Rank-1 59% / mAP 48% (chance: a few %). Cost of
  the benchmark grid: see reid_eval.bench.

Precision (``precision='auto'``): bf16 autocast where the device computes bf16 natively (CUDA GPUs with bf16,
CPUs with AMX or AVX512-BF16), else fp32; losses stay in fp32. Channels-last memory format
(``channels_last=True``) in every recipe: on CPU it made the Inception 64x32 training step faster in both
precisions (docs/measurements.md#re-id-training).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import torch

from augment.data.constants import IMAGENET_MEAN, IMAGENET_STD
from augment.runtime import bf16_is_native

__all__ = [
    "ModelRecipe",
    "Recipe",
    "RECIPES",
    "MODEL_NAMES",
    "get_recipe",
    "RandomSizedRectCrop",
    "TRAIN_TRANSFORMS",
    "build_transforms",
    "resolve_precision",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

MODEL_NAMES = ("resnet50", "inception")  # what --model accepts


@dataclass(frozen=True)
class ModelRecipe:
    """How one model trains under a recipe.

    architecture: a reid_eval.models.MODEL_SPECS key; input_size: (height, width) in pixels;
    lr: learning rate of the randomly initialised layers; base_lr_mult: multiplier for the other layers when
    ImageNet weights were loaded (1.0 from scratch); step_epochs: lr x gamma every this many epochs.
    """

    architecture: str
    input_size: tuple[int, int]
    epochs: int
    step_epochs: int
    lr: float
    base_lr_mult: float = 1.0
    new_layers: tuple[str, ...] = ()
    pretrained: Literal["auto", False] = "auto"
    model_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A training protocol: optimiser, schedule, batch, transforms, loss, retrieval distance, per-model parts."""

    name: str
    description: str
    models: dict[str, ModelRecipe]
    train_transform: str  # key of TRAIN_TRANSFORMS
    batch_size: int
    optim: Literal["sgd", "adam"]
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True
    adam_betas: tuple[float, float] = (0.9, 0.99)
    gamma: float = 0.1
    label_smooth: bool = False
    dist_metric: str = "euclidean"  # squared Euclidean (torchreid's and Open-ReID's 'euclidean')
    normalize_feature: bool = False
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = True
    batch_size_test: int = 128

    def model(self, name: str) -> ModelRecipe:
        if name not in self.models:
            raise KeyError(f"recipe {self.name!r} has no model {name!r}; it has {sorted(self.models)}")
        return self.models[name]

    def to_json(self) -> dict:
        return asdict(self)


_OPENREID_HEAD = {"num_features": 128, "dropout": 0.5, "eval_output": "logits"}

RECIPES: dict[str, Recipe] = {
    "openreid": Recipe(
        name="openreid",
        description="Open-ReID softmax protocol (PATN Table 5)",
        models={
            "resnet50": ModelRecipe(
                "openreid_resnet50",
                (256, 128),
                epochs=50,
                step_epochs=40,
                lr=0.1,
                base_lr_mult=0.1,
                new_layers=("fc", "classifier"),
                model_kwargs=_OPENREID_HEAD,
            ),
            "inception": ModelRecipe(
                "openreid_inception",
                (144, 56),
                epochs=70,
                step_epochs=60,
                lr=0.1,
                pretrained=False,
                model_kwargs=_OPENREID_HEAD,
            ),
        },
        train_transform="openreid",
        batch_size=256,
        optim="sgd",
    ),
    "torchreid": Recipe(
        name="torchreid",
        description="torchreid's Market-1501 softmax defaults",
        models={
            "resnet50": ModelRecipe("resnet50", (256, 128), epochs=60, step_epochs=20, lr=3e-4),
            "inception": ModelRecipe(
                "openreid_inception",
                (144, 56),
                epochs=60,
                step_epochs=20,
                lr=3e-4,
                pretrained=False,
                model_kwargs={"num_features": 128, "dropout": 0.5, "eval_output": "embedding"},
            ),
        },
        train_transform="random_flip",
        batch_size=32,
        optim="adam",
        nesterov=False,
        label_smooth=True,
    ),
    "cpu": Recipe(
        name="cpu",
        description="openreid protocol at half input size, 16 epochs (embedded-dataset CPU benchmark)",
        models={
            "resnet50": ModelRecipe(
                "openreid_resnet50",
                (128, 64),
                epochs=16,
                step_epochs=13,
                lr=0.1,
                base_lr_mult=0.1,
                new_layers=("fc", "classifier"),
                model_kwargs=_OPENREID_HEAD,
            ),
            "inception": ModelRecipe(
                "openreid_inception",
                (64, 32),
                epochs=16,
                step_epochs=13,
                lr=0.1,
                pretrained=False,
                model_kwargs=_OPENREID_HEAD,
            ),
        },
        train_transform="openreid",
        batch_size=64,
        optim="sgd",
    ),
}


def get_recipe(name: str, **overrides) -> Recipe:
    """RECIPES[name], with top-level fields replaced (e.g. batch_size=8)."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return replace(RECIPES[name], **overrides) if overrides else RECIPES[name]


# ----------------------------------------------------------------------------------------------- transforms
class RandomSizedRectCrop:
    """Open-ReID's RandomSizedRectCrop: crop a random rectangle of 64-100% of the area with height/width
    aspect 2-3, resize it to (height, width); after 10 failed draws, resize the whole image.

    Input and output are PIL images. Random numbers come from torch's generator (seeded by the training
    run, and per DataLoader worker by torch), not Python's ``random`` as in Open-ReID.
    """

    def __init__(
        self,
        height: int,
        width: int,
        area: tuple[float, float] = (0.64, 1.0),
        aspect: tuple[float, float] = (2.0, 3.0),
        attempts: int = 10,
    ):
        self.height, self.width, self.area, self.aspect, self.attempts = height, width, area, aspect, attempts

    def _uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand(()))

    def __call__(self, img):
        from PIL import Image

        img_w, img_h = img.size
        for _ in range(self.attempts):
            target_area = self._uniform(*self.area) * img_w * img_h
            aspect = self._uniform(*self.aspect)
            h = int(round(math.sqrt(target_area * aspect)))
            w = int(round(math.sqrt(target_area / aspect)))
            if w <= img_w and h <= img_h:
                x0 = int(torch.randint(0, img_w - w + 1, ()))
                y0 = int(torch.randint(0, img_h - h + 1, ()))
                img = img.crop((x0, y0, x0 + w, y0 + h))
                break
        return img.resize((self.width, self.height), Image.BILINEAR)

    def __repr__(self) -> str:
        return (
            f"RandomSizedRectCrop(size=({self.height}, {self.width}), area={self.area}, aspect={self.aspect}, "
            f"attempts={self.attempts})"
        )


def _openreid_train(height: int, width: int) -> list:
    import torchvision.transforms as T

    return [RandomSizedRectCrop(height, width), T.RandomHorizontalFlip()]


def _random_flip_train(height: int, width: int) -> list:
    import torchvision.transforms as T

    return [T.Resize((height, width)), T.RandomHorizontalFlip()]


# name -> (height, width) -> PIL transforms before ToTensor + ImageNet normalisation
TRAIN_TRANSFORMS: dict[str, Callable[[int, int], list]] = {
    "openreid": _openreid_train,
    "random_flip": _random_flip_train,  # torchreid's 'random_flip'
}


def build_transforms(recipe: Recipe, height: int, width: int):
    """(train, test) torchvision transforms: PIL image -> (3, height, width) float tensor, ImageNet-normalised.

    Test: resize to (height, width) (Open-ReID's RectScale and torchreid's test transform).
    """
    import torchvision.transforms as T

    if recipe.train_transform not in TRAIN_TRANSFORMS:
        raise KeyError(f"unknown train transform {recipe.train_transform!r}; known: {sorted(TRAIN_TRANSFORMS)}")
    tail = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train = T.Compose(TRAIN_TRANSFORMS[recipe.train_transform](height, width) + tail)
    test = T.Compose([T.Resize((height, width))] + tail)
    return train, test


# ------------------------------------------------------------------------------------------------ precision
def resolve_precision(choice: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype (None = fp32) for ``choice`` in auto | fp32 | bf16 on ``device``."""
    if choice not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {choice!r}")
    native = bf16_is_native(device)
    if choice == "bf16" and not native:
        raise ValueError(f"--precision bf16: {device.type} has no native bf16 here; use --precision fp32")
    return torch.bfloat16 if choice == "bf16" or (choice == "auto" and native) else None
