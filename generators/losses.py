"""Losses shared by the pose-transfer methods: perceptual L1 on VGG-19, BCE GAN, image pool.

- :class:`PerceptualL1` — mean |phi(fake) - phi(real)| with phi = VGG-19 ``features[:4]`` (conv1_1,
  ReLU, conv1_2, ReLU = relu1_2; PATN's ``perceptual_layers=3``), images mapped from [-1,1] to
  [0,1] and normalised with the ImageNet mean/std; the target's features carry no gradient.
- :func:`load_vgg19_features` — the frozen, eval-mode VGG-19 prefix with torchvision's ImageNet
  weights, read from torchvision's cache file ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``
  or an explicit path. It never downloads: a missing file raises :class:`MissingWeightsError`
  naming the file and the flags ``--vgg-weights PATH`` / ``--no-perceptual``.
- :func:`bce_gan_loss` — BCE against all-ones / all-zeros targets, computed from the
  discriminator's pre-sigmoid map in fp32 (``BCE(sigmoid(z))`` in fp16/bf16 saturates; the
  with-logits form is the same function, numerically stable, and allowed under autocast).
- :class:`ImagePool` — the pix2pix history buffer of generated samples (size 50 in PATN) with its
  own seeded, checkpointable RNG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1 file name
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NO_PERCEPTUAL_FLAG = "--no-perceptual"
VGG_WEIGHTS_FLAG = "--vgg-weights PATH"

# ----------------------------------------------------------------------------------------------
# VGG-19 prefix
# ----------------------------------------------------------------------------------------------


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights a recipe needs are not on this machine (nothing is downloaded)."""

    def __init__(self, path: Path, what: str = "VGG-19 ImageNet weights"):
        self.path = Path(path)
        super().__init__(
            f"{what} not found: {self.path}. The perceptual loss needs them and this project "
            f"never downloads weights. Either copy torchvision's {VGG19_FILE} to that path, "
            f"pass {VGG_WEIGHTS_FLAG} to point at the file, or train without the perceptual "
            f"term with {NO_PERCEPTUAL_FLAG}."
        )


def default_vgg19_path() -> Path:
    """torchvision's cache file: ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def vgg19_prefix(num_layers: int = 4) -> nn.Sequential:
    """The first ``num_layers`` modules of torchvision's ``vgg19().features`` (same indices),
    randomly initialised. 4 -> conv1_1, ReLU, conv1_2, ReLU (relu1_2); 30 -> up to relu5_1."""
    layers: list[nn.Module] = []
    channels = 3
    # VGG-19 ("E") up to conv5_1 + ReLU: every layer a perceptual or content loss here uses.
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512):
        if width == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            channels = width
    if not 1 <= num_layers <= len(layers):
        raise ValueError(f"num_layers must be in 1..{len(layers)}, got {num_layers}")
    return nn.Sequential(*layers[:num_layers])


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode and no gradients for every parameter."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_vgg19_features(path: str | os.PathLike | None = None, num_layers: int = 4) -> nn.Sequential:
    """The frozen VGG-19 ``features[:num_layers]`` with ImageNet weights from ``path`` (default:
    :func:`default_vgg19_path`). Raises :class:`MissingWeightsError` when the file is absent and
    ValueError naming the file when it is not a VGG-19 state dict."""
    file = Path(path) if path is not None else default_vgg19_path()
    if not file.is_file():
        raise MissingWeightsError(file)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / truncated / not a torch file
        raise ValueError(f"cannot read VGG-19 weights from {file}: {exc}") from exc
    if not isinstance(state, Mapping):
        raise ValueError(f"{file} is not a VGG-19 state dict (got {type(state).__name__})")
    net = vgg19_prefix(num_layers)
    wanted = net.state_dict()
    sub = {}
    for key in wanted:
        full = f"features.{key}"
        if full not in state:
            raise ValueError(f"{file} is not a torchvision VGG-19 state dict: key {full!r} missing")
        if state[full].shape != wanted[key].shape:
            raise ValueError(
                f"{file}: {full} has shape {tuple(state[full].shape)}, VGG-19 needs {tuple(wanted[key].shape)}"
            )
        sub[key] = state[full]
    net.load_state_dict(sub)
    return freeze(net)


class PerceptualL1(nn.Module):
    """mean |features(norm(fake)) - features(norm(real))|; ``features`` is frozen.

    fake, real: (B,3,H,W) in [-1,1]. Returns a scalar (unweighted; recipes apply their lambda).
    """

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = freeze(features)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):  # the feature extractor always stays in eval mode
        super().train(mode)
        self.features.eval()
        return self

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2 - self.mean) / self.std

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(self.normalise(real))
        return F.l1_loss(self.features(self.normalise(fake)).float(), target.float())


# ----------------------------------------------------------------------------------------------
# GAN loss
# ----------------------------------------------------------------------------------------------


def bce_gan_loss(logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Mean BCE between sigmoid(``logits``) and an all-1 (real) / all-0 (fake) target, in fp32.

    Equals ``nn.BCELoss()(sigmoid(logits), target)`` (the official no_lsgan loss on the
    discriminator's sigmoid output) without its saturation at low precision.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float()
        target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)


# ----------------------------------------------------------------------------------------------
# Image pool
# ----------------------------------------------------------------------------------------------


class ImagePool:
    """History of generated samples shown to a discriminator (Shrivastava et al.; pix2pix).

    Official semantics, per sample of a queried batch, in order: while the pool holds fewer
    than ``size`` samples, the sample is stored and returned; afterwards, with probability 1/2
    it is returned as is, otherwise a uniformly chosen stored sample is returned and replaced
    by it. ``size == 0`` returns the batch unchanged.

    The random choices come from the pool's own ``torch.Generator`` seeded with ``seed``; its
    state and the stored samples are in :meth:`state_dict`. Stored samples are detached fp32
    tensors on the device of the last query. Only a tiny integer simulation runs per sample;
    the tensor copies are batched.
    """

    def __init__(self, size: int = 50, seed: int = 0):
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.count = 0
        self.images: torch.Tensor | None = None  # (size, ...) storage, first `count` rows valid
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.count

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, ...) -> (B, ...) mix of these and earlier samples (detached, fp32)."""
        images = images.detach().float()
        if self.size == 0:
            return images
        batch = images.shape[0]
        if self.images is None:
            self.images = images.new_empty((self.size, *images.shape[1:]))
        elif self.images.shape[1:] != images.shape[1:]:
            raise ValueError(
                f"ImagePool holds samples of shape {tuple(self.images.shape[1:])}, got {tuple(images.shape[1:])}"
            )
        if self.images.device != images.device:
            self.images = self.images.to(images.device)

        coins = torch.rand(batch, generator=self.generator).tolist()
        slots = torch.randint(self.size, (batch,), generator=self.generator).tolist()
        # Integer simulation of the official sequential loop. A slot's content is ("old", slot)
        # or ("new", j) for batch sample j; the output of sample j is one of those.
        content: list[tuple[str, int]] = [("old", k) for k in range(self.count)]
        outputs: list[tuple[str, int]] = []
        for j in range(batch):
            if len(content) < self.size:
                content.append(("new", j))
                outputs.append(("new", j))
            elif coins[j] > 0.5:
                outputs.append(content[slots[j]])
                content[slots[j]] = ("new", j)
            else:
                outputs.append(("new", j))

        result = torch.empty_like(images)
        for kind, source in (("new", images), ("old", self.images)):
            rows = [(j, src) for j, (k, src) in enumerate(outputs) if k == kind]
            if rows:
                dst, src = zip(*rows)
                result[list(dst)] = source[list(src)]
        # Gather before scatter: outputs read the storage as it was before this batch.
        changed = [(k, src) for k, (kind, src) in enumerate(content) if kind == "new"]
        if changed:
            dst, src = zip(*changed)
            self.images[list(dst)] = images[list(src)]
        self.count = len(content)
        return result

    def state_dict(self) -> dict:
        stored = None if self.images is None else self.images[: self.count].detach().cpu().clone()
        return {"size": self.size, "count": self.count, "images": stored, "rng": self.generator.get_state()}

    def load_state_dict(self, state: Mapping) -> None:
        if int(state["size"]) != self.size:
            raise ValueError(f"ImagePool size differs: checkpoint {state['size']}, run {self.size}")
        self.count = int(state["count"])
        stored = state["images"]
        if stored is None:
            self.images = None
        else:
            self.images = stored.new_empty((self.size, *stored.shape[1:]))
            self.images[: self.count] = stored
        self.generator.set_state(state["rng"])
