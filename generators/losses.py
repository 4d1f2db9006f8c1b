"""Losses shared by the pose-transfer methods: one VGG-19 feature extractor, perceptual L1, BCE GAN,
image pool.

- :class:`VGGFeatures` — the one frozen VGG-19 feature extractor of the project: chosen layer
  outputs (:data:`VGG19_LAYERS` names, e.g. ``relu1_2`` or ``relu1_1 .. relu5_1``) of images
  given in [-1,1] or [0,1], normalised the way the weights expect (:data:`VGG_NORMALIZATIONS`:
  ``imagenet`` mean/std for torchvision's weights, ``caffe`` for Caffe-trained BGR weights).
  PATN's perceptual term (relu1_2), SPGNet's content loss (relu1_1 .. relu5_1) and Deformable
  GAN's content features (relu1_2, either normalisation) are all this class.
- :func:`load_vgg_features` / :func:`load_vgg19_features` — weights read from torchvision's cache
  file ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth`` or an explicit path. Nothing is ever
  downloaded: a missing file raises :class:`MissingWeightsError` naming the file and the flags
  ``--vgg-weights PATH`` / ``--no-perceptual``.
- :class:`PerceptualL1` — sum_i w_i mean |phi_i(fake) - phi_i(real)| over the extractor's layers;
  the target's features carry no gradient.
- :func:`bce_gan_loss` — BCE against all-ones / all-zeros targets, computed from the
  discriminator's pre-sigmoid map in fp32 (``BCE(sigmoid(z))`` in fp16/bf16 saturates; the
  with-logits form is the same function, numerically stable, and allowed under autocast).
- :func:`feature_matching_loss` — pix2pixHD's discriminator feature matching: mean over the
  discriminator's layers of the L1 between its activations on the generated and the real input
  (a perceptual-like term that needs no pretrained weights).
- :class:`ImagePool` — the pix2pix history buffer of generated samples (size 50 in PATN) with its
  own seeded, checkpointable RNG.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from augment.data.constants import IMAGENET_MEAN, IMAGENET_STD

VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1 file name
CAFFE_VGG_MEAN = (103.939, 116.779, 123.68)  # Caffe's BGR means on 0-255 pixels
NO_PERCEPTUAL_FLAG = "--no-perceptual"
VGG_WEIGHTS_FLAG = "--vgg-weights PATH"

# ----------------------------------------------------------------------------------------------
# VGG-19 prefix and weights
# ----------------------------------------------------------------------------------------------

# VGG-19 ("E") up to conv5_1 + ReLU: every layer a perceptual or content loss here uses.
_VGG19_WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)


def _vgg19_layer_names() -> tuple[str, ...]:
    names: list[str] = []
    block, conv = 1, 0
    for width in _VGG19_WIDTHS:
        if width == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            conv += 1
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
    return tuple(names)


# Names of torchvision's ``vgg19().features`` modules, by index: conv1_1, relu1_1, conv1_2, relu1_2,
# pool1, conv2_1, ..., relu5_1 (index 29).
VGG19_LAYERS = _vgg19_layer_names()


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
    for width in _VGG19_WIDTHS:
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


def random_vgg19_features(num_layers: int = 4, seed: int = 0) -> nn.Sequential:
    """A frozen VGG-19 ``features[:num_layers]`` with torchvision's random initialisation (conv
    weights Kaiming-normal, fan-out, ReLU gain; biases 0), drawn from ``seed`` without touching
    the global RNG: the "random-weights perceptual loss" baseline, which needs no file."""
    net = vgg19_prefix(num_layers)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                std = (2.0 / (m.out_channels * m.kernel_size[0] * m.kernel_size[1])) ** 0.5
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
                m.bias.zero_()
    return freeze(net)


# ----------------------------------------------------------------------------------------------
# The VGG feature extractor
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VGGNormalization:
    """What a set of VGG weights was trained on, from RGB x in [0,1]:
    ``(scale * x - mean) / std``, then RGB -> BGR when ``bgr`` (the mean is subtracted in RGB
    order first: Deformable GAN's official Keras preprocessing, kept as trained)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float] | None = None
    scale: float = 1.0
    bgr: bool = False


VGG_NORMALIZATIONS = {
    "imagenet": VGGNormalization(IMAGENET_MEAN, IMAGENET_STD),  # torchvision's weights
    "caffe": VGGNormalization(CAFFE_VGG_MEAN, scale=255.0, bgr=True),  # Caffe / Keras weights
}

# Image value ranges the extractor accepts, each mapped to [0,1].
VGG_INPUT_RANGES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "[-1,1]": lambda x: (x + 1) / 2,
    "[0,1]": lambda x: x,
}


def _choice(kind: str, value: str, known: Mapping[str, object]) -> str:
    if value not in known:
        raise ValueError(f"unknown VGG {kind} {value!r}; known: {', '.join(known)}")
    return value


class VGGFeatures(nn.Module):
    """Frozen VGG-19 prefix behind the preprocessing its weights expect; returns chosen layer outputs.

    forward(x (B,3,H,W) RGB in ``input_range``) -> [phi_i (B,C_i,H_i,W_i)] for each name of
    ``layers`` (:data:`VGG19_LAYERS`, e.g. ``relu1_2`` (B,64,H,W)), in that order. ``features`` must
    reach the deepest requested layer (:func:`vgg19_prefix` / :func:`load_vgg19_features`); it is
    frozen and stays in eval mode.
    """

    def __init__(
        self,
        features: nn.Sequential,
        layers: Sequence[str] = ("relu1_2",),
        input_range: str = "[-1,1]",
        normalization: str = "imagenet",
    ):
        super().__init__()
        unknown = [name for name in layers if name not in VGG19_LAYERS]
        if not layers or unknown:
            raise ValueError(f"VGG layers must be names of {', '.join(VGG19_LAYERS)}; got {list(layers)}")
        self.stops = [VGG19_LAYERS.index(name) + 1 for name in layers]  # prefix length per output
        if self.stops != sorted(set(self.stops)):
            raise ValueError(f"VGG layers must be distinct and in network order, got {list(layers)}")
        if self.stops[-1] > len(features):
            raise ValueError(f"layer {layers[-1]!r} needs {self.stops[-1]} VGG modules, features has {len(features)}")
        self.features = freeze(features)
        self.layers = tuple(layers)
        self.input_range = _choice("input range", input_range, VGG_INPUT_RANGES)
        self.normalization = _choice("normalization", normalization, VGG_NORMALIZATIONS)
        norm = VGG_NORMALIZATIONS[normalization]
        self.scale, self.bgr = norm.scale, norm.bgr
        self.register_buffer("mean", torch.tensor(norm.mean).view(1, 3, 1, 1), persistent=False)
        std = None if norm.std is None else torch.tensor(norm.std).view(1, 3, 1, 1)
        self.register_buffer("std", std, persistent=False)

    def train(self, mode: bool = True):  # the feature extractor always stays in eval mode
        super().train(mode)
        self.features.eval()
        return self

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) RGB in the input range -> what the weights expect (same shape)."""
        x = VGG_INPUT_RANGES[self.input_range](x)
        if self.scale != 1.0:
            x = self.scale * x
        x = x - self.mean
        if self.std is not None:
            x = x / self.std
        return x.flip(1) if self.bgr else x

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.preprocess(x)
        out, start = [], 0
        for stop in self.stops:
            x = self.features[start:stop](x)
            out.append(x)
            start = stop
        return out


def load_vgg_features(
    path: str | os.PathLike | None = None,
    layers: Sequence[str] = ("relu1_2",),
    input_range: str = "[-1,1]",
    normalization: str = "imagenet",
) -> VGGFeatures:
    """:class:`VGGFeatures` with weights from ``path`` or torchvision's cache file (only the
    prefix up to the deepest layer is read); :class:`MissingWeightsError` when the file is absent."""
    deepest = max(VGG19_LAYERS.index(name) + 1 for name in layers) if layers else 1
    return VGGFeatures(load_vgg19_features(path, deepest), layers, input_range, normalization)


class PerceptualL1(nn.Module):
    """sum_i w_i mean|phi_i(fake) - phi_i(real)| over the layers of ``extractor`` (weights 1 by
    default); the target's features carry no gradient, the L1 is taken in fp32.

    fake, real: (B,3,H,W) in the extractor's input range. Returns a scalar (recipes apply their lambda).
    """

    def __init__(self, extractor: VGGFeatures, weights: Sequence[float] | None = None):
        super().__init__()
        self.extractor = extractor
        self.weights = tuple(float(w) for w in weights) if weights is not None else (1.0,) * len(extractor.layers)
        if len(self.weights) != len(extractor.layers):
            raise ValueError(f"{len(self.weights)} weights for {len(extractor.layers)} VGG layers")

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.extractor(real)
        pairs = zip(self.weights, self.extractor(fake), target)
        return sum(w * F.l1_loss(f.float(), t.float()) for w, f, t in pairs)


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


def feature_matching_loss(fake: Sequence[torch.Tensor], real: Sequence[torch.Tensor]) -> torch.Tensor:
    """(1/L) sum_l mean |D_l(fake) - D_l(real)| over the L matched activations (any shapes, pairwise
    equal), in fp32; the real activations are treated as constants (detached)."""
    if len(fake) != len(real) or not fake:
        raise ValueError(f"feature matching needs matching, non-empty layer lists ({len(fake)} vs {len(real)})")
    terms = [F.l1_loss(f.float(), r.detach().float()) for f, r in zip(fake, real)]
    return sum(terms) / len(terms)


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
