"""Small device helpers shared by the metric networks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """Full-precision float32 convolutions and matmuls on CUDA (TF32 off) while metric features are
    computed: the references ran in float32, and TF32's 10-bit mantissa moves FID/IS in the 3rd digit.
    The previous settings are restored."""
    conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm


def as_nchw_uint8(images) -> torch.Tensor:
    """uint8 images as a (N, 3, H, W) uint8 tensor: accepts (N, H, W, 3) / (H, W, 3) numpy arrays or
    tensors (channels last, as image files decode) and (N, 3, H, W) tensors."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {x.dtype}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected (N, H, W, 3) or (N, 3, H, W) images, got shape {tuple(x.shape)}")
    if x.shape[1] != 3 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] != 3:
        raise ValueError(f"expected 3 colour channels, got shape {tuple(x.shape)}")
    return x.contiguous()
