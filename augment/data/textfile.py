"""Reading the data layer's text files (keypoint, pair and list files): UTF-8, a BOM accepted."""

from __future__ import annotations

import os
import re
from pathlib import Path

from augment.data.errors import DatasetError


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The text of ``path`` as UTF-8; a leading BOM (Excel writes one) is dropped.

    Undecodable bytes raise :class:`DatasetError` naming the file, line and byte column.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: {what} is a folder, not a file") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DatasetError(
            f"{path}:{line}: byte 0x{data[e.start]:02x} at column {column} is not UTF-8 (save the {what} as UTF-8)"
        ) from None


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """Lines split at ``\\n``, ``\\r\\n`` or ``\\r`` (as ``open(newline="")`` iterates), without the breaks; a final
    line break adds no empty line."""
    lines = _LINE_BREAK.split(text)
    return lines[:-1] if len(lines) > 1 and lines[-1] == "" else lines
