"""Atomic file writes: every file the project writes appears whole or not at all.

A writer fills a temporary file beside the target (``.<name>.tmp<pid>``, the pattern the
service's resume step sweeps away) and renames it over the target in one ``os.replace``;
a process killed mid-write leaves only the temporary file, never a half-written target.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

TMP_MARK = ".tmp"  # temporary names are ".<name>.tmp<pid>"; glob(".*.tmp*") finds the stale ones


def temporary_name(path: str | os.PathLike) -> Path:
    """The temporary file beside ``path`` that this process writes before renaming."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write ``path``'s content to; renamed onto ``path`` when the block
    ends normally, removed when it raises (the previous ``path``, if any, stays intact)."""
    path = Path(path)
    tmp = temporary_name(path)
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name in the same folder, then rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, data, *, indent: int = 1, default=None) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent, default=default))
