"""Image decode/encode and content hashes (RGB uint8 HxWx3 everywhere in the project)."""

from __future__ import annotations

import hashlib
import os

import cv2
import numpy as np

from augment.data.market import DatasetError

JPEG_QUALITY = 95  # generated images: Market-1501 is JPEG, and torchreid's reader globs *.jpg


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB; :class:`DatasetError` naming the file if it cannot."""
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise DatasetError(f"{path}: cannot decode image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_image(rgb: np.ndarray, ext: str = ".jpg", quality: int = JPEG_QUALITY) -> bytes:
    """Encode (H, W, 3) uint8 RGB; deterministic for the same pixels and quality."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"cannot encode image as {ext}")
    return buf.tobytes()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str | None:
    """Hash of a file's bytes, or None if it does not exist."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return None
