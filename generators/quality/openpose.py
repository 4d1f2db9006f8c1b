"""The CMU OpenPose COCO-18 body network (Cao et al. 2017), the model behind the community Market-1501 keypoints.

Layout (names are the original Caffe layer names, which both published conversions keep):
- VGG-19 front: conv1_1..conv4_2 (3x3, ReLU, 2x2 max pools after conv1_2, conv2_2, conv3_4), then conv4_3_CPM
  (512->256) and conv4_4_CPM (256->128), ReLU: a (N, 128, H/8, W/8) feature map F.
- Stage 1, two branches on F: L1 (part affinity fields, 38 channels = 19 limbs x (x, y)) and L2 (confidence
  maps, 19 channels = 18 joints + background): conv5_1..5_3_CPM (3x3, 128), conv5_4_CPM (1x1, 512), conv5_5_CPM
  (1x1, 38 / 19), ReLU after all but the last.
- Stages 2-6, each on concat(L1, L2, F) (185 channels): Mconv1..5 (7x7, 128), Mconv6 (1x1, 128), Mconv7 (1x1,
  38 / 19), ReLU after all but Mconv7.
The network returns stage 6's (PAF, heatmap) at stride 8.

Weights by path (``--openpose-weights``), or either file dropped into the torch cache folder:
- ``body_pose_model.pth``: the PyTorch conversion published with Hzzone/pytorch-openpose (flat keys
  ``conv1_1.weight`` ...). That repository's own model class applies a ReLU after ``Mconv7_stage6_L2`` (its
  no-ReLU list names ``Mconv7_stage6_L1`` twice); the Caffe model has none. ``final_heatmap_relu=True``
  reproduces that implementation, the default follows the Caffe/Keras model.
- ``pose_estimator.h5``: the Keras conversion that PATN's and Deformable GAN's ``compute_coordinates.py`` load
  (needs h5py). Its max pools' padding ("valid" = floor, "same" = ceil) is read from the file's model config:
  it matters when an input side is not a multiple of 8, which PATN's unpadded multi-scale inputs are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from generators.quality.weights import WeightsSpec, find_weights, freeze, read_state_dict

PAF_CHANNELS = 38
HEATMAP_CHANNELS = 19
STAGES = 6
WEIGHTS = WeightsSpec(
    metric="PCKh (OpenPose COCO-18 body network)",
    files=("body_pose_model.pth", "pose_estimator.h5"),
    source="Hzzone/pytorch-openpose (body_pose_model.pth, converted from CMU's pose_iter_440000.caffemodel) or "
    "the Pose-Transfer / pose-gan release (pose_estimator.h5, Keras)",
    path_flag="--openpose-weights PATH",
    skip_flag="--skip pckh",
)
_FRONT = (
    ("conv1_1", 3, 64),
    ("conv1_2", 64, 64),
    "pool",
    ("conv2_1", 64, 128),
    ("conv2_2", 128, 128),
    "pool",
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv3_3", 256, 256),
    ("conv3_4", 256, 256),
    "pool",
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
    ("conv4_3_CPM", 512, 256),
    ("conv4_4_CPM", 256, 128),
)


def _branch(stage: int, branch: int, out: int) -> list[tuple[str, int, int, int]]:
    """(name, cin, cout, kernel) of one branch of one stage; the last conv has no ReLU."""
    if stage == 1:
        names = [f"conv5_{i}_CPM_L{branch}" for i in range(1, 6)]
        shapes = [(128, 128, 3), (128, 128, 3), (128, 128, 3), (128, 512, 1), (512, out, 1)]
    else:
        names = [f"Mconv{i}_stage{stage}_L{branch}" for i in range(1, 8)]
        cin = PAF_CHANNELS + HEATMAP_CHANNELS + 128
        shapes = [(cin, 128, 7)] + [(128, 128, 7)] * 4 + [(128, 128, 1), (128, out, 1)]
    return [(n, *s) for n, s in zip(names, shapes)]


class BodyPoseNet(nn.Module):
    """OpenPose COCO-18 body network. forward: (N, 3, H, W) BGR in [-0.5, 0.5] -> (paf (N, 38, h, w),
    heatmap (N, 19, h, w)), h = H / 8 (floor, or ceil per pool with ``ceil_pool``)."""

    def __init__(self, final_heatmap_relu: bool = False, ceil_pool: bool = False):
        super().__init__()
        self.final_heatmap_relu = final_heatmap_relu
        self.ceil_pool = ceil_pool
        convs: dict[str, nn.Conv2d] = {}
        for item in _FRONT:
            if item != "pool":
                name, cin, cout = item
                convs[name] = nn.Conv2d(cin, cout, 3, padding=1)
        self.branches: list[list[list[str]]] = []
        for stage in range(1, STAGES + 1):
            pair = []
            for branch, out in ((1, PAF_CHANNELS), (2, HEATMAP_CHANNELS)):
                layers = _branch(stage, branch, out)
                for name, cin, cout, k in layers:
                    convs[name] = nn.Conv2d(cin, cout, k, padding=k // 2)
                pair.append([name for name, *_ in layers])
            self.branches.append(pair)
        self.layers = nn.ModuleDict(convs)

    def front(self, x: torch.Tensor) -> torch.Tensor:
        for item in _FRONT:
            if item == "pool":
                x = F.max_pool2d(x, 2, stride=2, ceil_mode=self.ceil_pool)
            else:
                x = F.relu(self.layers[item[0]](x))
        return x

    def _run(self, names: list[str], x: torch.Tensor) -> torch.Tensor:
        for name in names[:-1]:
            x = F.relu(self.layers[name](x))
        return self.layers[names[-1]](x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.front(x)
        paf, heat = self._run(self.branches[0][0], feat), self._run(self.branches[0][1], feat)
        for l1, l2 in self.branches[1:]:
            joined = torch.cat([paf, heat, feat], 1)
            paf, heat = self._run(l1, joined), self._run(l2, joined)
        return paf, (F.relu(heat) if self.final_heatmap_relu else heat)


def _from_torch(net: BodyPoseNet, file: Path) -> dict[str, torch.Tensor]:
    state = read_state_dict(file, "OpenPose body")
    # flat keys ("conv1_1.weight"); tolerate a module prefix ("model0.conv1_1.weight")
    return {"layers." + ".".join(k.split(".")[-2:]): v for k, v in state.items()}


def _from_keras(net: BodyPoseNet, file: Path) -> dict[str, torch.Tensor]:
    try:
        import h5py
    except ImportError:
        raise ValueError(f"{file} is a Keras file and reading it needs h5py (pip install h5py)") from None
    state: dict[str, torch.Tensor] = {}
    with h5py.File(file, "r") as h5:
        config = h5.attrs.get("model_config")
        if config is not None:
            layers = json.loads(config if isinstance(config, str) else config.decode())["config"]["layers"]
            pools = [lay["config"].get("padding") for lay in layers if lay["class_name"] == "MaxPooling2D"]
            net.ceil_pool = any(p == "same" for p in pools)
        root = h5["model_weights"] if "model_weights" in h5 else h5

        def visit(path: str, obj) -> None:
            parts = path.split("/")
            if not hasattr(obj, "shape") or parts[0] not in net.layers:
                return
            value = torch.from_numpy(obj[()])
            if parts[-1].startswith("kernel"):  # (kh, kw, cin, cout) -> (cout, cin, kh, kw)
                state[f"layers.{parts[0]}.weight"] = value.permute(3, 2, 0, 1).contiguous()
            elif parts[-1].startswith("bias"):
                state[f"layers.{parts[0]}.bias"] = value

        root.visititems(visit)
    return state


def load_body_pose(
    path: str | os.PathLike | None = None, final_heatmap_relu: bool = False, ceil_pool: bool | None = None
) -> BodyPoseNet:
    """The frozen :class:`BodyPoseNet` from ``body_pose_model.pth`` (torch) or ``pose_estimator.h5`` (Keras),
    by ``path`` or from the torch cache folder. Raises
    :class:`~generators.quality.weights.MetricWeightsError` when absent, ValueError for another network's
    file. ``ceil_pool`` overrides the pooling mode (default: floor, or what the Keras config says)."""
    file = find_weights(WEIGHTS, path)
    net = BodyPoseNet(final_heatmap_relu=final_heatmap_relu)
    reader = _from_keras if file.suffix in (".h5", ".hdf5") else _from_torch
    state = reader(net, file)
    wanted = net.state_dict()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ValueError(f"{file} is not an OpenPose COCO body model: {missing[0]} missing ({len(missing)} in all)")
    for key, value in wanted.items():
        if state[key].shape != value.shape:
            raise ValueError(f"{file}: {key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}")
    net.load_state_dict({k: state[k] for k in wanted})
    if ceil_pool is not None:
        net.ceil_pool = ceil_pool
    return freeze(net)
