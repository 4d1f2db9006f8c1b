"""Named evaluation protocols: which metrics, which image path, which SSIM, which mask, which real set.

A protocol (:class:`EvalProtocol`, registry :data:`PROTOCOLS`) is data, not code: ``generators.evaluate`` reads
it and runs the same scoring loop for every one. Definitions and sources: docs/evaluation.md#protocols.

- ``direct`` (the default; this project's scoring since its first version): PATN's SSIM and mask-SSIM, L1 and
  PSNR on the generator's outputs rounded to uint8 and scored in memory; no file path, no network metric.
- ``patn2019`` (PATN, Zhu et al. CVPR 2019; Deformable GAN's definitions): the official file path (truncation,
  5-panel JPEG strips at quality 75, panels cut back out), SSIM, mask-SSIM, L1, PSNR, IS and mask-IS (2015 TF
  Inception), PCKh (OpenPose COCO-18 on the generated panels against the target keypoints); DS is named and
  not computed.
- ``pg2-2017`` (PG2, Ma et al. NeurIPS 2017): PG2's uint8 conversions and PNG files, PG2's SSIM (scikit-image
  defaults) and its masked variant (the *source* image's PG2 pose mask, as ``score_mask.py`` reads it), L1,
  PSNR, IS and mask-IS with the same mask.
- ``gfla2020`` (GFLA, Ren et al. CVPR 2020, the protocol later diffusion papers reuse): PNG outputs against the
  dataset's target images; FID against the whole training split (torchvision's Inception-v3, GFLA's input
  convention), LPIPS and mask-LPIPS (AlexNet, v0.1), GFLA's SSIM (51x51 uniform window) and its ``ssim_256``
  (PATN's), L1, PSNR; network metrics over whole batches of 64 only, as its script drops the last partial one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from augment.data.pose import pose_mask_eval, pose_mask_pg2
from generators.inference import model_to_uint8
from generators.metrics import PIXEL_METRICS, SSIM_DEFS, single_thread
from generators.quality.pose_decode import PoseConfig
from generators.quality.strips import (
    OFFICIAL_JPEG_QUALITY,
    official_loader_roundtrip,
    official_tensor2im,
    pg2_denorm,
    pg2_loader_roundtrip,
)


def _same(images_u8: torch.Tensor) -> torch.Tensor:
    return images_u8


@dataclass(frozen=True)
class ImageIO:
    """The path from network output to scored pixels. ``generated``: (N,3,H,W) float in [-1,1] -> (N,H,W,3)
    uint8; ``dataset``: how a source / target image (N,H,W,3) uint8 reaches the metric script; ``jpeg_strips``:
    each pair goes through the official 5-panel JPEG strip (quality ``OFFICIAL_JPEG_QUALITY``) and is scored
    from the decoded panels; ``extension``: the file type of ``--save-images`` strips."""

    name: str
    description: str
    generated: Callable[[torch.Tensor], torch.Tensor]
    dataset: Callable[[torch.Tensor], torch.Tensor] = _same
    jpeg_strips: bool = False
    extension: str = ".png"


IMAGE_IO: dict[str, ImageIO] = {
    "round": ImageIO(
        "round", "outputs rounded to uint8 and scored in memory; dataset images as decoded", model_to_uint8
    ),
    "patn-official": ImageIO(
        "patn-official",
        "tensor2im truncation of the output and of the loader-normalised source/target, 5-panel JPEG strips "
        f"(PIL, quality {OFFICIAL_JPEG_QUALITY}), panels cut back out of the decoded strips",
        official_tensor2im,
        official_loader_roundtrip,
        jpeg_strips=True,
        extension=".jpg",
    ),
    "pg2-official": ImageIO(
        "pg2-official",
        "clip((x + 1) * 127.5) truncated for the output, the loader's float32 round trip truncated for the "
        "source/target, PNG files (lossless)",
        pg2_denorm,
        pg2_loader_roundtrip,
    ),
    "gfla-official": ImageIO(
        "gfla-official",
        "tensor2im truncation of the output saved as PNG (lossless), scored against the dataset's target images",
        official_tensor2im,
    ),
}


@dataclass(frozen=True)
class MaskRule:
    """The body mask of the masked metrics: drawn from the ``of`` image's keypoints ("target" or "source")
    by ``draw``: (N,18,2) keypoints, (H, W) -> (N,H,W) bool."""

    name: str
    of: str
    description: str
    draw: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]


def _pg2_mask(kps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return pose_mask_pg2(kps, size) > 0.5


MASKS: dict[str, MaskRule] = {
    "eval-target": MaskRule(
        "eval-target",
        "target",
        "produce_ma_mask of the target keypoints (PATN / Deformable GAN / GFLA)",
        pose_mask_eval,
    ),
    "pg2-source": MaskRule(
        "pg2-source",
        "source",
        "PG2's _getPoseMask (radius 4, 23 connections, 5x5 closing) of the SOURCE keypoints, the 'mask' folder "
        "PG2's score_mask.py reads",
        _pg2_mask,
    ),
}


@dataclass(frozen=True)
class MetricInfo:
    """One reported metric: its table label, the decimals it is printed with, and which way is better."""

    key: str
    label: str
    decimals: int = 4
    higher_is_better: bool = True


METRIC_INFO: dict[str, MetricInfo] = {
    m.key: m
    for m in (
        MetricInfo("ssim", "SSIM"),
        MetricInfo("mask_ssim", "mask-SSIM"),
        MetricInfo("ssim_256", "SSIM-256"),
        MetricInfo("l1", "L1 [0,1]", higher_is_better=False),
        MetricInfo("psnr", "PSNR dB", decimals=2),
        MetricInfo("is", "IS", decimals=3),
        MetricInfo("mask_is", "mask-IS", decimals=3),
        MetricInfo("fid", "FID", decimals=2, higher_is_better=False),
        MetricInfo("lpips", "LPIPS", higher_is_better=False),
        MetricInfo("mask_lpips", "mask-LPIPS", higher_is_better=False),
        MetricInfo("pckh", "PCKh"),
        MetricInfo("ds", "DS"),
    )
}
NETWORK_METRICS = ("is", "mask_is", "fid", "lpips", "mask_lpips", "pckh", "ds")
PER_PAIR_NETWORK_METRICS = ("lpips", "mask_lpips")  # one value per pair, written to pairs.csv


@dataclass(frozen=True)
class EvalProtocol:
    """Everything that decides a published number besides the generator (docs/evaluation.md#protocols).

    ``metrics``: reported in this order (keys of :data:`METRIC_INFO`); ``io``: key of :data:`IMAGE_IO`;
    ``ssim``: key of ``generators.metrics.SSIM_DEFS`` for SSIM and mask-SSIM; ``mask``: key of :data:`MASKS`;
    ``inception`` / ``inception_input``: the Inception variant and input convention of IS and FID
    (``generators.quality.inception``); ``fid_real``: the real image set of FID ("train": every image of the
    training split, decoded, no resizing before the network's own 299x299 bilinear); ``whole_batches``: network
    metrics use only the first ``N // whole_batches * whole_batches`` images (GFLA's scripts drop the last partial
    batch; fewer images than one batch are all used); ``pose``: the keypoint search of PCKh."""

    name: str
    summary: str
    sources: tuple[str, ...]
    metrics: tuple[str, ...]
    io: str = "round"
    ssim: str = "patn"
    mask: str = "eval-target"
    inception: str = "fid"
    inception_input: str = "tf1"
    fid_real: str | None = None
    lpips_net: str = "alex"
    is_splits: int = 10
    whole_batches: int | None = None
    pose: PoseConfig = field(default_factory=PoseConfig)

    def __post_init__(self):
        unknown = [m for m in self.metrics if m not in METRIC_INFO]
        if unknown or self.io not in IMAGE_IO or self.ssim not in SSIM_DEFS or self.mask not in MASKS:
            raise ValueError(f"protocol {self.name}: unknown metric(s) {unknown} or io / ssim / mask name")

    @property
    def pixel_metrics(self) -> tuple[str, ...]:
        return tuple(m for m in self.metrics if m in PIXEL_METRICS)

    @property
    def network_metrics(self) -> tuple[str, ...]:
        return tuple(m for m in self.metrics if m in NETWORK_METRICS)

    def units(self) -> dict[str, str]:
        """What each reported number is, in words (metrics.json ``units``)."""
        d = SSIM_DEFS[self.ssim]
        window = f"{d.size}x{d.size} uniform" if d.window == "uniform" else f"Gaussian sigma {d.sigma} (11x11)"
        ssim = (
            f"SSIM ({self.ssim}): {window} window, {'sample' if d.sample_covariance else 'population'} covariance, "
            f"data range {'max - min of the generated image' if d.data_range is None else '255'}, channel mean"
        )
        mask = MASKS[self.mask]
        text = {
            "ssim": ssim,
            "mask_ssim": f"{ssim}, both images times the mask: {mask.description}",
            "ssim_256": "GFLA's ssim_256: PATN's SSIM (Gaussian sigma 1.5, population covariance, data range of "
            "the generated image)",
            "l1": "mean |generated - target| in [0,1] units (PATN's l1_score, in [-1,1] units, is twice this; "
            "PG2's is 255 times this)",
            "psnr": "10 log10(255^2 / MSE) in dB",
            "is": f"Inception score, {self.is_splits} splits in pair order, 2015 TF Inception, unbiased logits",
            "mask_is": f"IS of the generated images times the mask: {mask.description}",
            "fid": f"Frechet distance of pool3 features ({self.inception} Inception, '{self.inception_input}' "
            f"input) to the {self.fid_real} split's images",
            "lpips": f"LPIPS v0.1 {self.lpips_net}, images in [-1,1]",
            "mask_lpips": "LPIPS of both images in [-1,1] times the target mask (masked pixels become 0 = grey)",
            "pckh": "PCKh@0.5: OpenPose COCO-18 keypoints of the scored images vs the target keypoints, head box "
            "from the target's head joints",
            "ds": "SSD300 person detection score (not implemented, docs/metrics.md)",
        }
        return {m: text[m] for m in self.metrics}


PIXEL_SET = ("ssim", "mask_ssim", "l1", "psnr")
PROTOCOLS: dict[str, EvalProtocol] = {
    p.name: p
    for p in (
        EvalProtocol(
            "direct",
            "this project's default: PATN's SSIM and mask-SSIM, L1, PSNR on rounded outputs scored in memory",
            ("tengteng95/Pose-Transfer tool/getMetrics_market.py (the SSIM and mask definitions)",),
            PIXEL_SET,
        ),
        EvalProtocol(
            "patn2019",
            "PATN's official path and metrics: JPEG strips, SSIM, mask-SSIM, L1, IS, mask-IS, PCKh (DS named)",
            (
                "tengteng95/Pose-Transfer test.py, util/util.py (tensor2im), tool/getMetrics_market.py, "
                "tool/inception_score.py, tool/crop_market.py, tool/compute_coordinates.py, tool/calPCKH_market.py",
            ),
            (*PIXEL_SET, "is", "mask_is", "pckh", "ds"),
            io="patn-official",
        ),
        EvalProtocol(
            "pg2-2017",
            "PG2's files and scores: scikit-image default SSIM, its source-mask SSIM and IS, L1, PSNR",
            (
                "charliememory/Pose-Guided-Person-Image-Generation trainer.py (test), score.py, score_mask.py, "
                "utils.py (_getPoseMask), tflib/inception_score.py",
            ),
            (*PIXEL_SET, "is", "mask_is"),
            io="pg2-official",
            ssim="pg2",
            mask="pg2-source",
        ),
        EvalProtocol(
            "gfla2020",
            "GFLA's script/metrics.py: FID to the training split, LPIPS, mask-LPIPS, SSIM (51x51), SSIM-256",
            ("RenYurui/Global-Flow-Local-Attention script/metrics.py, util/util.py (tensor2im)",),
            ("fid", "lpips", "mask_lpips", "ssim", "ssim_256", "l1", "psnr"),
            io="gfla-official",
            ssim="gfla",
            inception="torchvision",
            inception_input="gfla",
            fid_real="train",
            whole_batches=64,
        ),
    )
}
DEFAULT_PROTOCOL = "direct"


def get_protocol(name: str) -> EvalProtocol:
    """The registered protocol ``name``; ValueError listing the names otherwise."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def pair_masks(
    table, images: np.ndarray, device: torch.device, rule: str = "eval-target", chunk: int = 256
) -> tuple[torch.Tensor, np.ndarray]:
    """The masks of rule ``rule`` (a key of ``MASKS``) of the distinct images in ``images`` (image indices of
    the table), each computed once: masks (U,H,W) bool on ``device`` and ``row`` (M,) mapping an image index to
    its mask (-1 for images not asked for)."""
    draw = MASKS[rule].draw
    unique = np.unique(images)
    row = np.full(len(table.image_names), -1, np.int64)
    row[unique] = np.arange(len(unique))
    kps = torch.from_numpy(table.keypoints[unique]).to(device)
    with single_thread(device):
        masks = torch.cat([draw(kps[i : i + chunk], table.image_size) for i in range(0, len(unique), chunk)])
    return masks, row


def target_masks(table, targets: np.ndarray, device: torch.device, chunk: int = 256) -> tuple[torch.Tensor, np.ndarray]:
    """The official mask-SSIM masks (``pose_mask_eval`` of the target keypoints): :func:`pair_masks`."""
    return pair_masks(table, targets, device, "eval-target", chunk)
