"""Quality switches shared by the methods' ``synth`` presets, beyond the official recipes.

Every switch is off in the ``market`` presets (their defaults are the official behaviour); the
``synth`` presets turn on the ones that measured better on the embedded dataset (each method's
docstring gives the figures).

- Weight averaging (``ema_decay`` > 0): a network ``G_ema`` holds an exponential moving average of
  G's weights (:class:`generators.blocks.WeightEMA`), updated after every G step; ``generate``
  samples from it. It is not trained (no optimizer), and it changes nothing in the training
  trajectory: the same run can be scored with and without it.
- The identity critic (``identity.weight`` > 0): a small re-ID encoder ``E``
  (:class:`IdentityEncoder`) trained online, on the generator's own training pairs and nothing
  else, to recognise people across pose and camera: for a batch of B pairs (source, target of
  the same person), E's embeddings of the sources and of the targets are matched by a symmetric
  InfoNCE loss (pair i's target must be closer to source i than to the batch's other sources;
  :func:`pair_contrastive_loss`). The generator's identity term asks the same of its output: the
  generated image i must be recognised as source i among the batch's sources (E frozen, the
  sources' embeddings constant). With ``masked`` the critic sees each image only inside the person
  mask of its own keypoints (``augment.data.pose.pose_mask_eval``; the generated image inside
  the target's), grey elsewhere: unmasked, it learned the camera's background along with the
  person, and the generator then copied the source's background (measured: identity Rank-1
  down). No pretrained weights, no labels beyond the pairing, and no
  image the generator does not train on: in the benchmark's ``kept`` and ``disjoint`` regimes the
  critic sees exactly the generator's training split.

:class:`QualityTerms` is the mixin a :class:`generators.base.Method` inherits to get both:
the extra networks, their optimizers, the network ``generate`` samples from, and the two steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from augment.data.pose import pose_mask_eval
from generators.base import PoseBatch, StepContext
from generators.blocks import WeightEMA, frozen

EMA_NET = "G_ema"
CRITIC_NET = "E"


@dataclass
class IdentityCriticConfig:
    """The identity critic (module docstring). ``weight`` 0: no critic (the official recipes)."""

    weight: float = 0.0  # lambda of the generator's identity term
    width: int = 16  # channels of the encoder's first stage (doubled per stage)
    dim: int = 128  # embedding size
    temperature: float = 0.1  # InfoNCE temperature (cosine similarities / temperature)
    lr: float = 1e-3  # the critic's Adam rate (betas 0.9, 0.999; the method's LR decay applies)
    masked: bool = True  # the critic sees only the person (pose mask of the image's own keypoints)

    def __post_init__(self):
        if self.weight < 0 or self.width < 1 or self.dim < 1 or self.temperature <= 0 or self.lr <= 0:
            raise ValueError(f"identity critic: invalid settings {self}")


def _conv(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(min(8, c_out), c_out), nn.ReLU(True)]


class IdentityEncoder(nn.Module):
    """Image (B,3,H,W) in [-1,1] -> L2-normalised embedding (B,dim).

    2x average pooling (128x64 -> 64x32, the re-ID benchmark's input size), a conv3 stem of
    ``width`` channels, three stages [conv3 s2, conv3] doubling the width (to 8 x width at 1/16
    of the input size), global average pooling, a linear map to ``dim``. GroupNorm (batch
    independent: real and generated batches are normalised alike)."""

    def __init__(self, width: int = 16, dim: int = 128):
        super().__init__()
        w = width
        layers = [nn.AvgPool2d(2), *_conv(3, w, 1)]
        for c in (w, 2 * w, 4 * w):
            layers += [*_conv(c, 2 * c, 2), *_conv(2 * c, 2 * c, 1)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(8 * w, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(self.features(x).mean(dim=(2, 3)))
        return F.normalize(z.float(), dim=1)


def critic_view(images: torch.Tensor, kps: torch.Tensor, masked: bool) -> torch.Tensor:
    """What the critic sees of images (B,3,H,W) in [-1,1]: the images, or with ``masked`` the
    person inside the pose mask of ``kps`` (B,18,2) and grey (0) elsewhere."""
    if not masked:
        return images
    mask = pose_mask_eval(kps, images.shape[-2:]).unsqueeze(1)  # (B,1,H,W) bool, on kps' device
    return images * mask.to(images.dtype)


def pair_contrastive_loss(anchors: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: anchors, positives (B,D) L2-normalised; row i of each is the other's
    positive, the remaining rows its negatives. Mean of the two cross-entropies, fp32."""
    logits = anchors.float() @ positives.float().t() / temperature
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def recognition_loss(queries: torch.Tensor, sources: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of recognising query i (B,D) as source i among all sources (B,D), fp32;
    the sources are constants."""
    logits = queries.float() @ sources.detach().float().t() / temperature
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


class QualityTerms:
    """Mixin for a Method whose config has ``ema_decay`` and ``identity`` (module docstring).
    Put it before :class:`generators.base.Method` in the bases."""

    def quality_networks(self, G: nn.Module, cfg) -> dict[str, nn.Module]:
        """The extra networks a config asks for: ``G_ema`` and / or ``E``."""
        nets: dict[str, nn.Module] = {}
        if cfg.ema_decay > 0:
            nets[EMA_NET] = WeightEMA.copy_of(G)
        if cfg.identity.weight > 0:
            nets[CRITIC_NET] = IdentityEncoder(cfg.identity.width, cfg.identity.dim)
        return nets

    def make_optimizers(self, nets, cfg) -> dict[str, torch.optim.Optimizer]:
        """The method's Adam for its own networks; the critic's own Adam; none for the average."""
        own = {k: v for k, v in nets.items() if k not in (EMA_NET, CRITIC_NET)}
        opts = super().make_optimizers(own, cfg)
        if CRITIC_NET in nets:
            opts[CRITIC_NET] = torch.optim.Adam(nets[CRITIC_NET].parameters(), lr=cfg.identity.lr, betas=(0.9, 0.999))
        return opts

    @staticmethod
    def sampler(nets) -> nn.Module:
        """The generator that makes images: the weight average when the run keeps one."""
        return nets[EMA_NET] if EMA_NET in nets else nets["G"]

    @staticmethod
    def identity_term(nets, ctx: StepContext, fake: torch.Tensor, x: PoseBatch) -> dict[str, torch.Tensor]:
        """{"ID": weighted recognition loss of ``fake`` as its source ``x.src_img``} when the
        critic is on, else {} (call inside the G step, under autocast; the critic is frozen)."""
        if CRITIC_NET not in nets:
            return {}
        E, cfg = nets[CRITIC_NET], ctx.config.identity
        with frozen(E):
            with torch.no_grad():
                anchors = E(critic_view(x.src_img, x.src_kps, cfg.masked))
            query = E(critic_view(fake, x.tgt_kps, cfg.masked))
            return {"ID": cfg.weight * recognition_loss(query, anchors, cfg.temperature)}

    @staticmethod
    def after_generator_step(nets, opts, ctx: StepContext, x: PoseBatch) -> dict:
        """The weight-average update, then the critic's step on the real pairs of ``x``; returns
        {"E": its loss} when the critic is on."""
        if EMA_NET in nets:
            WeightEMA(ctx.config.ema_decay).update(nets[EMA_NET], nets["G"], ctx.iteration)
        if CRITIC_NET not in nets:
            return {}
        E, cfg = nets[CRITIC_NET], ctx.config.identity
        src = critic_view(x.src_img, x.src_kps, cfg.masked)
        with ctx.autocast():
            z = E(torch.cat([src, critic_view(x.tgt_img, x.tgt_kps, cfg.masked)]))
        loss = pair_contrastive_loss(z[: len(src)], z[len(src) :], cfg.temperature)
        ctx.backward_step(loss, opts[CRITIC_NET])
        return {"E": loss.detach()}
