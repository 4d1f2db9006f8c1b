"""The network metrics of a protocol (IS, mask-IS, FID, LPIPS, mask-LPIPS, PCKh), fed batch by batch.

:class:`NetworkMetrics` loads each network once (weights from a path or the torch cache, never downloaded),
keeps what every batch adds (logits, pool3 features, distances, detected keypoints, all small), and computes the
set-level numbers at the end. A metric whose weights are absent, or that ``--skip`` leaves out, or that cannot be
computed on so few images, is recorded in :attr:`NetworkMetrics.not_computed` with the exact file, its publisher and
the flags; the other metrics still run. Each scored row ("generated", "copy_source") is kept apart, so the
copy-source floor gets every metric too.

Batches are scored on the evaluation device in float32 with TF32 off (the networks' own modules). The positions
given with a batch are the pairs' places in the evaluation order (0..n-1); ``order`` (n,) lists them in the order
the protocol's script reads its files (GFLA: sorted names), which decides the images a whole-batch rule drops.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from augment.data.imageio import read_rgb
from augment.data.market import read_market
from augment.runtime import UsageError
from generators.quality.inception import inception_features, load_inception
from generators.quality.lpips import load_lpips, lpips_distance
from generators.quality.openpose import load_body_pose
from generators.quality.pckh import pckh
from generators.quality.pose_decode import detect_keypoints
from generators.quality.protocols import EvalProtocol
from generators.quality.scores import fid_from_features, inception_score
from generators.quality.weights import MetricWeightsError

WHO = ("generated", "copy_source")
DS_REASON = (
    "not implemented: no faithful port of the SSD300 VOC0712 Caffe detector exists to prove equal "
    "(docs/metrics.md, 'DS (SSD300 detection score): not implemented')"
)


@dataclass
class WeightPaths:
    """Weight files given on the command line (None: look in the torch cache)."""

    inception: Path | None = None  # --inception-weights
    lpips_backbone: Path | None = None  # --lpips-backbone
    lpips_linear: Path | None = None  # --lpips-linear
    openpose: Path | None = None  # --openpose-weights


@dataclass
class ScoredBatch:
    """One batch of one row. ``images``: what is scored, (B,H,W,3) uint8; ``targets`` likewise; ``mask``:
    the protocol's mask (B,H,W) bool; ``target_kps`` (B,18,2) (y, x); ``pckh_images``: the images the keypoint
    detector reads (the official path re-codes the cropped JPEG panel); ``positions`` (B,) evaluation order."""

    positions: np.ndarray
    images: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    target_kps: np.ndarray
    pckh_images: torch.Tensor | None = None


def not_computed_record(metrics: Sequence[str], reason: str, error: MetricWeightsError | None = None) -> dict:
    """The metrics.json entry of metrics left out: why, and for absent weights the file(s), publisher and flags."""
    record = {"metrics": list(metrics), "reason": reason}
    if error is not None:
        spec = error.spec
        record.update(
            files=[str(p) for p in error.tried],
            file_names=list(spec.files),
            source=spec.source,
            flag=spec.path_flag,
            skip_flag=spec.skip_flag,
        )
    return record


def whole_batch_count(n: int, batch: int | None) -> int:
    """How many of ``n`` images a script that drops the last partial batch uses (all when n < batch)."""
    if batch is None or n < batch:
        return n
    return n // batch * batch


class _Part:
    """One network and the metrics it gives; subclasses implement load / update / finish."""

    keys: tuple[str, ...] = ()

    def __init__(self, protocol: EvalProtocol, wanted: tuple[str, ...], device: torch.device, n: int, rows=WHO):
        self.protocol, self.wanted, self.device, self.n, self.rows = protocol, wanted, device, n, rows

    def load(self, weights: WeightPaths) -> None:
        raise NotImplementedError

    def update(self, who: str, batch: ScoredBatch) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def finish(self, order: np.ndarray) -> tuple[dict[str, dict[str, dict]], dict[str, dict]]:
        """({who: {metric: record}}, {metric: not-computed record})."""
        raise NotImplementedError


class _InceptionScores(_Part):
    """IS and mask-IS: unbiased logits of the scored images (and of the masked ones), IS at the end."""

    keys = ("is", "mask_is")

    def load(self, weights: WeightPaths) -> None:
        self.net = load_inception("fid", weights.inception).to(self.device)
        k = self.net.fc.out_features  # float32, as the network gives them (IS is computed in float64)
        self.logits = {(who, m): np.zeros((self.n, k), np.float32) for who in self.rows for m in self.wanted}

    def _logits(self, images: torch.Tensor) -> np.ndarray:
        out = inception_features(self.net, images, self.protocol.inception_input, len(images), self.device)
        return out["logits_unbiased"].numpy()

    def update(self, who: str, batch: ScoredBatch) -> dict[str, np.ndarray]:
        if "is" in self.wanted:
            self.logits[who, "is"][batch.positions] = self._logits(batch.images)
        if "mask_is" in self.wanted:
            masked = batch.images * batch.mask.to(batch.images.device).unsqueeze(-1)  # uint8 * bool stays uint8
            self.logits[who, "mask_is"][batch.positions] = self._logits(masked)
        return {}

    def finish(self, order: np.ndarray):
        splits = self.protocol.is_splits
        if self.n < splits:
            why = f"IS needs at least {splits} images ({splits} splits); {self.n} pairs were scored"
            return {}, {k: not_computed_record([k], why) for k in self.wanted}
        results: dict[str, dict[str, dict]] = {who: {} for who in WHO}
        for (who, key), logits in self.logits.items():
            mean, std = inception_score(logits[order], splits=splits)
            results[who][key] = {"value": mean, "std": std, "n": self.n, "splits": splits}
        return results, {}


class _Frechet(_Part):
    """FID: pool3 features of the scored images against those of the protocol's real set."""

    keys = ("fid",)

    def __init__(self, protocol, wanted, device, n, rows=WHO, real_images: Sequence[Path] = ()):
        super().__init__(protocol, wanted, device, n, rows)
        self.real_images = list(real_images)

    def load(self, weights: WeightPaths) -> None:
        self.net = load_inception(self.protocol.inception, weights.inception).to(self.device)
        self.features = {who: np.zeros((self.n, 2048), np.float32) for who in self.rows}  # fitted in float64

    def _pool3(self, images) -> np.ndarray:
        out = inception_features(self.net, images, self.protocol.inception_input, len(images), self.device)
        return out["pool3"].numpy()

    def update(self, who: str, batch: ScoredBatch) -> dict[str, np.ndarray]:
        self.features[who][batch.positions] = self._pool3(batch.images)
        return {}

    def real_features(self, batch: int = 64) -> np.ndarray:
        """pool3 of the real set's images, decoded in name order, in batches of ``batch`` (same-size runs)."""
        paths = self.real_images[: whole_batch_count(len(self.real_images), self.protocol.whole_batches)]
        parts = []
        for start in range(0, len(paths), batch):
            images = [read_rgb(p) for p in paths[start : start + batch]]
            if len({im.shape for im in images}) == 1:
                parts.append(self._pool3(np.stack(images)))
            else:  # mixed sizes: one at a time (the network resizes each to 299x299 anyway)
                parts += [self._pool3(im[None]) for im in images]
        return np.concatenate(parts) if parts else np.zeros((0, 2048))

    def finish(self, order: np.ndarray):
        if len(self.real_images) < 2 or self.n < 2:
            why = f"FID needs at least 2 real and 2 generated images ({len(self.real_images)} and {self.n})"
            return {}, {"fid": not_computed_record(["fid"], why)}
        real = self.real_features()
        used = order[: whole_batch_count(self.n, self.protocol.whole_batches)]
        results = {}
        for who in self.rows:
            value = fid_from_features(self.features[who][used], real)
            results[who] = {
                "fid": {"value": value, "n": len(used), "n_real": len(real), "real_set": self.protocol.fid_real}
            }
        return results, {}


class _Perceptual(_Part):
    """LPIPS and mask-LPIPS, one value per pair (pairs.csv); the mean over the pairs the protocol uses."""

    keys = ("lpips", "mask_lpips")

    def load(self, weights: WeightPaths) -> None:
        self.net = load_lpips(self.protocol.lpips_net, weights.lpips_backbone, weights.lpips_linear).to(self.device)
        self.values = {(who, k): np.full(self.n, np.nan) for who in self.rows for k in self.wanted}

    def update(self, who: str, batch: ScoredBatch) -> dict[str, np.ndarray]:
        out = {}
        for key in self.wanted:
            mask = batch.mask if key == "mask_lpips" else None
            d = lpips_distance(self.net, batch.images, batch.targets, len(batch.images), self.device, mask=mask)
            out[key] = d.double().numpy()
            self.values[who, key][batch.positions] = out[key]
        return out

    def finish(self, order: np.ndarray):
        used = order[: whole_batch_count(self.n, self.protocol.whole_batches)]
        results: dict[str, dict[str, dict]] = {who: {} for who in WHO}
        for (who, key), values in self.values.items():
            results[who][key] = {"value": float(values[used].mean()), "n": len(used), "dropped": self.n - len(used)}
        return results, {}


class _Keypoints(_Part):
    """PCKh: OpenPose keypoints of the scored images against the target keypoints."""

    keys = ("pckh",)

    def load(self, weights: WeightPaths) -> None:
        self.net = load_body_pose(weights.openpose).to(self.device)
        self.pred = {who: np.full((self.n, 18, 2), -1, np.int64) for who in self.rows}
        self.target = np.full((self.n, 18, 2), -1, np.int64)

    def update(self, who: str, batch: ScoredBatch) -> dict[str, np.ndarray]:
        images = batch.pckh_images if batch.pckh_images is not None else batch.images
        self.pred[who][batch.positions] = detect_keypoints(self.net, images, self.protocol.pose, len(images))
        self.target[batch.positions] = batch.target_kps
        return {}

    def finish(self, order: np.ndarray):
        results = {}
        for who in self.rows:
            r = pckh(self.pred[who], self.target)
            results[who] = {
                "pckh": {"value": r.score, "hits": r.hits, "joints": r.joints, "n": r.images, "images": r.total_images}
            }
        return results, {}


PARTS: tuple[type[_Part], ...] = (_InceptionScores, _Frechet, _Perceptual, _Keypoints)
WEIGHT_FLAGS = {"is": "--inception-weights", "mask_is": "--inception-weights", "fid": "--inception-weights"}
WEIGHT_FLAGS.update(lpips="--lpips-backbone", mask_lpips="--lpips-backbone", pckh="--openpose-weights")


@dataclass
class NetworkMetrics:
    """The protocol's network metrics over ``n`` pairs; see the module docstring."""

    protocol: EvalProtocol
    n: int
    device: torch.device
    weights: WeightPaths = field(default_factory=WeightPaths)
    skip: tuple[str, ...] = ()
    real_images: Sequence[Path] = ()
    log: Callable[[str], None] = print
    rows: tuple[str, ...] = WHO  # ("generated",): the copy-source floor gets the pixel metrics only
    parts: list[_Part] = field(default_factory=list)
    not_computed: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        wanted = [m for m in self.protocol.network_metrics if m not in self.skip]
        for m in self.protocol.network_metrics:
            if m in self.skip:
                self.not_computed[m] = not_computed_record([m], f"left out with --skip {m}")
        if "ds" in wanted:
            self.not_computed["ds"] = not_computed_record(["ds"], DS_REASON)
        for cls in PARTS:
            keys = tuple(k for k in cls.keys if k in wanted)
            if keys:
                self._load(cls, keys)

    def _load(self, cls: type[_Part], keys: tuple[str, ...]) -> None:
        extra = {"real_images": self.real_images} if cls is _Frechet else {}
        part = cls(self.protocol, keys, self.device, self.n, self.rows, **extra)
        try:
            part.load(self.weights)
        except MetricWeightsError as e:
            for k in keys:
                self.not_computed[k] = not_computed_record(keys, str(e), e)
            self.log(f"[eval] {', '.join(keys)}: weights absent, reported as NOT COMPUTED")
            return
        except ValueError as e:  # a file given by path that holds another network
            raise UsageError(WEIGHT_FLAGS[keys[0]], str(e)) from None
        self.parts.append(part)

    @property
    def active(self) -> tuple[str, ...]:
        return tuple(k for part in self.parts for k in part.wanted)

    def update(self, who: str, batch: ScoredBatch) -> dict[str, np.ndarray]:
        """Feed one batch of row ``who``; returns the per-pair values it produced (LPIPS), by metric."""
        out = {}
        for part in self.parts:
            out.update(part.update(who, batch))
        return out

    def finish(self, order: np.ndarray | None = None) -> dict[str, dict[str, dict]]:
        """{who: {metric: record}} of the computed metrics; the rest lands in :attr:`not_computed`."""
        order = np.arange(self.n) if order is None else np.asarray(order)
        results: dict[str, dict[str, dict]] = {who: {} for who in WHO}
        for part in self.parts:
            got, missing = part.finish(order)
            for who, records in got.items():
                results[who].update(records)
            self.not_computed.update(missing)
        return results


def train_split_images(root: str | os.PathLike) -> list[Path]:
    """Every image of the dataset's training split, sorted by name (the FID real set of ``fid_real="train"``)."""
    return [r.path for r in sorted(read_market(root).split("train"), key=lambda r: r.name)]
