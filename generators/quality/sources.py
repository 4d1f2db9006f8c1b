"""Where the scored images come from: a generator checkpoint run on the test pairs, or a folder of results.

Both give, per batch of pair indices, :class:`Images`: the generated, source and target images as the protocol's
metric script sees them ((B, H, W, 3) uint8 tensors on the device), the official strips when asked for (the grid
and ``--save-images``), and the images the keypoint detector reads for PCKh.

- :class:`CheckpointImages` generates with the checkpoint (eval mode, channels-last, the chosen precision) and
  sends output, source and target through the protocol's :class:`~generators.quality.protocols.ImageIO`
  (PATN's path: truncation, JPEG strips, panels cut back out);
- :class:`FolderImages` reads the matched files (:mod:`generators.quality.folder`): a strip's own panels, or a
  single generated image against the dataset's source and target taken through the protocol's loader round trip.

For PCKh on a JPEG strip, the generated panel (and, for the copy-source row, the source panel) is coded as JPEG
once more, as PATN's ``crop_market.py`` saves its crop under the strip's ``.jpg`` name before the detector reads it.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from generators.checkpoint import bundle_from_checkpoint, read_checkpoint
from generators.data import PairDataset, PairTable
from generators.inference import Transferer, uint8_to_model
from generators.quality.folder import FolderPairs, read_result
from generators.quality.protocols import ImageIO
from generators.quality.strips import jpeg_roundtrip, jpeg_roundtrip_strip, official_strip

JPEG_THREADS = min(8, os.cpu_count() or 1)
Strip = tuple[list[np.ndarray], "bytes | None"]  # panels, and the JPEG bytes when the strip was JPEG-coded


@dataclass
class Images:
    """One batch: ``generated``, ``source``, ``target`` (B,H,W,3) uint8 on the device; ``strips`` per pair
    (or empty); ``pckh``: {"generated", "copy_source"} images for the keypoint detector when they differ from
    the scored ones (JPEG strips); ``seconds``: time spent generating."""

    generated: torch.Tensor
    source: torch.Tensor
    target: torch.Tensor
    strips: list[Strip] = field(default_factory=list)
    pckh: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: float = 0.0


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def threaded(fn, items: list) -> list:
    """``[fn(x) for x in items]`` on a few threads: PIL codes JPEG with the GIL released (same bytes, same order)."""
    if len(items) < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(JPEG_THREADS, len(items))) as pool:
        return list(pool.map(fn, items))


def _recode(panels: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """crop_market.py's second JPEG coding of cropped panels: (B,H,W,3) uint8 on ``device``."""
    return torch.from_numpy(np.stack(threaded(lambda p: jpeg_roundtrip(p)[0], panels))).to(device)


class CheckpointImages:
    """A generator checkpoint's outputs on the test pairs (module docstring)."""

    kind = "checkpoint"

    def __init__(self, checkpoint: Path, table: PairTable, io: ImageIO, device: torch.device, dtype, batch_size: int):
        self.checkpoint, self.table, self.io, self.device = Path(checkpoint), table, io, device
        self.data = read_checkpoint(checkpoint)
        self.bundle = bundle_from_checkpoint(self.data, checkpoint, device)
        self.transferer = Transferer(self.bundle, device=device, dtype=dtype, channels_last=True, batch_size=batch_size)
        self.dataset = PairDataset(table=table, split="test")
        self.iteration = int(self.data.get("iteration", 0))
        self.label = f"{self.bundle.method}/{self.bundle.preset} it {self.iteration}"

    def _stack(self, image_ids: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.dataset.image(int(k)) for k in image_ids])).to(self.device)

    def batch(self, idx: np.ndarray, strips: bool, pckh: bool) -> Images:
        table, io = self.table, self.io
        src, tgt = self._stack(table.src[idx]), self._stack(table.tgt[idx])
        src_kps = torch.from_numpy(table.keypoints[table.src[idx]])
        tgt_kps = torch.from_numpy(table.keypoints[table.tgt[idx]])
        t0 = time.perf_counter()
        fake = self.transferer(uint8_to_model(src), src_kps, tgt_kps)  # float (B,3,H,W) on device
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        out = Images(io.generated(fake), io.dataset(src), io.dataset(tgt), seconds=time.perf_counter() - t0)
        if io.jpeg_strips or strips:
            arrays = [_numpy(x) for x in (out.source, src_kps, out.target, tgt_kps, out.generated)]
            out.strips = threaded(lambda j: self._strip([a[j] for a in arrays]), list(range(len(idx))))
        if io.jpeg_strips:  # score what the official tool reads back
            for name, panel in (("source", 0), ("target", 2), ("generated", 4)):
                decoded = np.stack([s[0][panel] for s in out.strips])
                setattr(out, name, torch.from_numpy(decoded).to(self.device))
            if pckh:
                out.pckh = {
                    "generated": _recode([s[0][4] for s in out.strips], self.device),
                    "copy_source": _recode([s[0][0] for s in out.strips], self.device),
                }
        return out

    def _strip(self, parts: list[np.ndarray]) -> Strip:
        panels = official_strip(*parts)
        if self.io.jpeg_strips:
            return jpeg_roundtrip_strip(panels)
        return panels, None

    def info(self) -> dict:
        """The checkpoint's identity for metrics.json."""
        return {
            "checkpoint": str(self.checkpoint),
            "method": self.bundle.method,
            "preset": self.bundle.preset,
            "iteration": self.iteration,
            "checkpoint_dataset_fingerprint": self.data.get("dataset_fingerprint"),
            "code_version": self.data.get("code_version"),
        }


class FolderImages:
    """Released or saved results read from a folder (module docstring)."""

    kind = "folder"

    def __init__(self, found: FolderPairs, table: PairTable, io: ImageIO, device: torch.device):
        self.found, self.table, self.io, self.device = found, table, io, device
        self.dataset = PairDataset(table=table, split="test")
        self.strip = found.naming == "strip"
        self.label = f"folder {found.folder.name}"

    def _dataset(self, image_ids: np.ndarray) -> torch.Tensor:
        images = torch.from_numpy(np.stack([self.dataset.image(int(k)) for k in image_ids])).to(self.device)
        return self.io.dataset(images)

    def batch(self, idx: np.ndarray, strips: bool, pckh: bool) -> Images:
        table = self.table
        t0 = time.perf_counter()
        files = [self.found.files[int(i)] for i in idx]
        read = [read_result(f, self.strip, table.image_size) for f in files]
        gen = torch.from_numpy(np.stack([r["generated"] for r in read])).to(self.device)
        if self.strip:  # the official tool scores against the strip's own panels
            src = torch.from_numpy(np.stack([r["source"] for r in read])).to(self.device)
            tgt = torch.from_numpy(np.stack([r["target"] for r in read])).to(self.device)
        else:
            src, tgt = self._dataset(table.src[idx]), self._dataset(table.tgt[idx])
        out = Images(gen, src, tgt, seconds=time.perf_counter() - t0)
        if strips:
            kps = table.keypoints
            arrays = [_numpy(x) for x in (src, kps[table.src[idx]], tgt, kps[table.tgt[idx]], gen)]
            out.strips = [(official_strip(*(a[j] for a in arrays)), None) for j in range(len(idx))]
        jpeg = [self.strip and f.suffix.lower() in (".jpg", ".jpeg") for f in files]
        if pckh and any(jpeg):  # crop_market.py saves the crop of a .jpg strip as JPEG again
            out.pckh = {
                who: torch.stack([_recode([_numpy(p)], self.device)[0] if j else p for p, j in zip(images, jpeg)])
                for who, images in (("generated", gen), ("copy_source", src))
            }
        return out

    def info(self) -> dict:
        return {
            "checkpoint": None,
            "method": "folder",
            "preset": None,
            "iteration": None,
            "checkpoint_dataset_fingerprint": None,
            "code_version": None,
            "folder": self.found.report(self.table),
        }
