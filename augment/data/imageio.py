"""Image decode/encode and content hashes (RGB uint8 HxWx3 everywhere in the project).

A file is *truncated* when it is a JPEG without its end-of-image marker or a PNG without its IEND
chunk: some decoders return an image for such a file (the missing rows grey), so the end marker is
checked before decoding, and a truncated file is refused like an undecodable one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np

from augment.data.errors import DatasetError

JPEG_QUALITY = 95  # generated images: Market-1501 is JPEG, and torchreid's reader globs *.jpg
JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TAIL = 1024  # bytes at the end searched for the end marker (some writers append padding after it)


def truncation(data: bytes) -> str:
    """Why ``data`` is a truncated JPEG or PNG ('' when it is not): its end marker is missing."""
    if data.startswith(JPEG_SOI) and JPEG_EOI not in data[-TAIL:]:
        return "truncated JPEG (no end-of-image marker)"
    if data.startswith(PNG_SIGNATURE) and b"IEND" not in data[-TAIL:]:
        return "truncated PNG (no IEND chunk)"
    return ""


def decode_rgb(data: bytes, path: str | os.PathLike) -> np.ndarray:
    """Decode image bytes to (H, W, 3) uint8 RGB; :class:`DatasetError` naming the file (``path``) and why not."""
    if not data:
        raise DatasetError(f"{path}: cannot decode image: zero bytes")
    why = truncation(data)
    if why:
        raise DatasetError(f"{path}: cannot decode image: {why}")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"{path}: cannot decode image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB; :class:`DatasetError` naming the file if it cannot."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read image: {e.strerror or e}") from None
    return decode_rgb(data, path)


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
