"""Random weights for the metric networks, saved in the layouts of the real files (nothing is downloaded).

Activations are kept O(1) through the networks (He-scaled convolutions, BatchNorm statistics near identity,
OpenPose's last layers rescaled), so scores are finite and keypoints are found; the values mean nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from generators.quality.inception import InceptionV3
from generators.quality.lpips import LPIPS
from generators.quality.openpose import BodyPoseNet
from generators.quality.suite import WeightPaths


def random_inception_state(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in the reference key layout whose activations stay O(1) through the network
    (He-scaled convolutions, BatchNorm statistics near identity)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in InceptionV3(variant).state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(value.shape, generator=g)
        elif key.endswith(("running_mean", "bias")):
            state[key] = 0.1 * torch.randn(value.shape, generator=g)
        elif key.endswith("bn.weight"):
            state[key] = 1 + 0.1 * torch.randn(value.shape, generator=g)
        else:
            state[key] = torch.randn(value.shape, generator=g) * (2.0 / value[0].numel()) ** 0.5
    return state


def openpose_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in body_pose_model.pth's flat layout, the last convolutions scaled so that the maps
    reach O(1) and real peaks and limbs appear."""
    torch.manual_seed(seed)
    net = BodyPoseNet()
    state = {k.removeprefix("layers."): v.clone() for k, v in net.state_dict().items()}
    for name, value in state.items():
        if name.endswith(".weight"):
            value.mul_(math.sqrt(6.0))  # He-like gain: activations keep their scale through 40 layers
    for name in ("Mconv7_stage6_L1", "Mconv7_stage6_L2"):
        state[f"{name}.bias"].zero_()
    net.load_state_dict({f"layers.{k}": v for k, v in state.items()})
    x = torch.rand(1, 3, 48, 24) - 0.5
    with torch.no_grad():
        paf, heat = net(x)
    state["Mconv7_stage6_L1.weight"] /= paf.std()
    state["Mconv7_stage6_L2.weight"] /= heat.std() * 2
    return state


def write_metric_weights(folder: Path, inception_variant: str = "fid") -> WeightPaths:
    """Random weight files for every metric network under ``folder``, named as the real ones."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {"fid": "pt_inception-2015-12-05-6726825d.pth", "torchvision": "inception_v3_google-0cc3c7bd.pth"}
    inception = folder / names[inception_variant]
    torch.save(random_inception_state(inception_variant), inception)
    torch.manual_seed(1)
    alex = folder / "alexnet-owt-7be5be79.pth"
    torch.save({f"features.{k}": v for k, v in LPIPS("alex").features.state_dict().items()}, alex)
    openpose = folder / "body_pose_model.pth"
    torch.save(openpose_state(), openpose)
    return WeightPaths(inception=inception, lpips_backbone=alex, openpose=openpose)
