"""``copy``: the control generator whose output is its source image.

A re-ID benchmark that compares a generated set with the reduced set changes three things at
once: new poses, more images, and (for a generator trained on the whole split) images the
generator has seen. ``copy`` isolates the first: run through the same plan and executor as a
real generator, it gives a set with the same size, labels, cameras and output names, every
generated slot holding a copy of its source image (re-encoded as JPEG like any output). Only the
target pose is missing, so "generator beats copy" means the new poses carry information.

It has no networks, no weights and nothing to train (``trainable = False``): a checkpoint of it
is just its method name and config, written by the service when it needs one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from augment.runtime import UsageError
from generators.base import Method, TrainSchedule, register_method


@dataclass
class CopyConfig:
    """No settings: the output is the input. ``train`` exists because every method has a schedule."""

    train: TrainSchedule = field(default_factory=lambda: TrainSchedule(iterations=1, decay_start=1))


@register_method
class Copy(Method):
    name = "copy"
    Config = CopyConfig
    presets = {"market": CopyConfig(), "synth": CopyConfig()}
    trainable = False

    def build_networks(self, cfg) -> dict[str, nn.Module]:
        return {}

    def generate(
        self, nets: Mapping[str, nn.Module], src_img: torch.Tensor, src_kps: torch.Tensor, tgt_kps: torch.Tensor
    ) -> torch.Tensor:
        """(B,3,H,W) in [-1,1] -> the same values (the keypoints are not used)."""
        if src_img.ndim != 4 or src_img.shape[1] != 3:
            raise ValueError(f"copy: expected source images (B,3,H,W), got {tuple(src_img.shape)}")
        return src_img.clone()

    def make_optimizers(self, nets, cfg) -> dict:
        return {}

    def train_step(self, nets, opts, batch, ctx) -> dict[str, float]:
        raise UsageError("--method", "copy has no networks and nothing to train (its output is the source image)")
