"""Batched pose transfer with a trained generator: ``transfer`` and the ``Transferer`` a worker holds.

    from generators import transfer
    fakes = transfer("runs/generators/patn-synth/checkpoints/latest.pt", src_uint8, src_kps, tgt_kps)

Inputs: source images as uint8 RGB numpy (N,H,W,3) or float tensors (N,3,H,W) in [-1,1];
keypoints (N,18,2) (y,x) pixels, -1 missing (numpy or tensors). The result has the kind of the
input: uint8 numpy (N,H,W,3) for numpy, float32 (N,3,H,W) in [-1,1] on the input's device for
tensors.

How it runs: eval mode, ``torch.inference_mode``, batches of ``batch_size``; uint8 images travel
to the device as uint8 (4x fewer bytes than float) and are scaled there; pose encodings are built
on the model's device by the method's ``generate``; networks and inputs in channels-last memory
format (faster convolutions on CUDA and with oneDNN on CPU); optional bf16/fp16 autocast.

Agreement (tests/test_inference.py checks it on every run, on a generator whose outputs spread over
[-1,1]; an untrained one outputs |y| < 0.05, where every precision looks perfect):
- fp32 channels-last vs. the plain eval-mode forward (contiguous, no autocast): max abs difference
  <= 1e-5 on the [-1,1] output (measured 1.4e-6 synth preset, 2.9e-6 market preset, 128x64: the
  convolutions sum in another order); uint8 images differ by at most 1 grey level (a value
  within that of a rounding boundary may round the other way).
- bf16 autocast vs. fp32, on uint8: mean absolute difference <= 1 grey level and max <= 6
  (measured mean 0.48 / 0.51, max 3, p99 2, synth / market presets at 128x64; bf16 keeps 8
  significant bits, so each operation rounds at 2^-9 relative).
Speed: ``generators.bench`` measures it (figures in the README and docs/measurements.md#inference).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augment.runtime import resolve_device
from generators.base import Bundle

DTYPES = {
    None: None,
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    torch.float32: None,
    torch.bfloat16: torch.bfloat16,
    torch.float16: torch.float16,
}


def uint8_to_model(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N,H,W,3) RGB -> float32 (N,3,H,W) in [-1,1] (on the tensor's device)."""
    return images.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def model_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) in [-1,1] -> uint8 (N,H,W,3): round((x+1)*127.5) after clamping to [-1,1]."""
    return images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def resolve_dtype(dtype: Any, device: torch.device) -> torch.dtype | None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose None/'fp32', 'bf16' or 'fp16'")
    amp = DTYPES[dtype]
    if amp == torch.float16 and device.type != "cuda":
        raise ValueError("fp16 autocast is for CUDA devices; on CPU use dtype='bf16' or None")
    return amp


def _model_device(bundle: Bundle) -> torch.device:
    for p in bundle.nets.parameters():
        return p.device
    return torch.device("cpu")


class Transferer:
    """A generator held on its device for repeated batched transfer (what executors and Ray actors hold).

    ``model``: a :class:`Bundle` (its nets are moved / converted in place) or a checkpoint path.
    ``device``: default: the bundle's device, or CUDA when present for a path. ``dtype``: None
    (fp32), "bf16" or "fp16" autocast.
    """

    def __init__(
        self,
        model: Bundle | str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        dtype: Any = None,
        channels_last: bool = True,
        batch_size: int = 32,
    ):
        if isinstance(model, Transferer):
            model = model.bundle
        if isinstance(model, (str, os.PathLike)):
            from generators.checkpoint import load

            self.device = resolve_device(device)
            model = load(Path(model), device=self.device)
        elif isinstance(model, Bundle):
            self.device = torch.device(device) if device is not None else _model_device(model)
        else:
            raise TypeError(f"expected a Bundle or a checkpoint path, got {type(model).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.bundle = model
        self.amp_dtype = resolve_dtype(dtype, self.device)
        self.channels_last = channels_last
        self.batch_size = batch_size
        self.bundle.nets.to(self.device)
        if channels_last:
            self.bundle.nets.to(memory_format=torch.channels_last)
        self.bundle.nets.eval()

    def _forward(self, src: torch.Tensor, src_kps: torch.Tensor, tgt_kps: torch.Tensor) -> torch.Tensor:
        """One batch on the device: src (B,3,H,W) float in [-1,1] -> (B,3,H,W) float32."""
        if self.channels_last:
            src = src.contiguous(memory_format=torch.channels_last)
        if self.amp_dtype is None:
            out = self.bundle.generate(src, src_kps, tgt_kps)
        else:
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype):
                out = self.bundle.generate(src, src_kps, tgt_kps)
        return out.float()

    def __call__(self, source_images, source_keypoints, target_keypoints):
        """Transfer N images; returns the kind given (see the module docstring)."""
        numpy_in = isinstance(source_images, np.ndarray)
        images = torch.from_numpy(np.ascontiguousarray(source_images)) if numpy_in else source_images
        if not torch.is_tensor(images):
            raise TypeError(f"source_images: expected a numpy array or a tensor, got {type(source_images).__name__}")
        src_kps = torch.as_tensor(
            np.ascontiguousarray(source_keypoints) if not torch.is_tensor(source_keypoints) else source_keypoints
        )
        tgt_kps = torch.as_tensor(
            np.ascontiguousarray(target_keypoints) if not torch.is_tensor(target_keypoints) else target_keypoints
        )
        n = _check_inputs(images, numpy_in, src_kps, tgt_kps)
        outputs = []
        self.bundle.nets.eval()
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                part = slice(start, start + self.batch_size)
                batch = images[part].to(self.device, non_blocking=True)
                batch = uint8_to_model(batch) if numpy_in else batch.float()
                out = self._forward(
                    batch, src_kps[part].to(self.device, torch.int64), tgt_kps[part].to(self.device, torch.int64)
                )
                outputs.append(model_to_uint8(out).cpu() if numpy_in else out.to(images.device))
        if not outputs:  # N == 0
            shape = (0, *images.shape[1:])
            return np.zeros(shape, np.uint8) if numpy_in else images.new_zeros(shape, dtype=torch.float32)
        result = torch.cat(outputs)
        return result.numpy() if numpy_in else result.contiguous()


def _check_inputs(images: torch.Tensor, numpy_in: bool, src_kps: torch.Tensor, tgt_kps: torch.Tensor) -> int:
    if numpy_in:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"numpy source_images must be uint8 (N,H,W,3) RGB, got {images.dtype} {tuple(images.shape)}"
            )
    elif images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(
            f"tensor source_images must be float (N,3,H,W) in [-1,1], got {images.dtype} {tuple(images.shape)}"
        )
    n = images.shape[0]
    for name, k in (("source_keypoints", src_kps), ("target_keypoints", tgt_kps)):
        if tuple(k.shape) != (n, 18, 2):
            raise ValueError(f"{name} must be ({n}, 18, 2) (y, x), got {tuple(k.shape)}")
    return n


def transfer(
    model: Bundle | Transferer | str | os.PathLike,
    source_images,
    source_keypoints,
    target_keypoints,
    *,
    batch_size: int = 32,
    dtype: Any = None,
    channels_last: bool = True,
    device: str | torch.device | None = None,
):
    """Generate ``source_images`` re-posed into ``target_keypoints``; see the module docstring.

    ``model``: a Bundle (nets moved / converted in place), a Transferer (its model, with these
    settings), or a checkpoint path (loaded for this call; hold a :class:`Transferer` to reuse it).
    """
    t = Transferer(model, device=device, dtype=dtype, channels_last=channels_last, batch_size=batch_size)
    return t(source_images, source_keypoints, target_keypoints)
