"""The dataset *content* fingerprint: SHA-256 of the bytes of every indexed image and of the keypoint
and pair files, for a run identity that changes when any byte of its inputs changes.

:meth:`MarketDataset.fingerprint` covers names and sizes only (no file is read); it stays what
checkpoints and plans record. :func:`content_fingerprint` reads everything:

- Files are hashed in a thread pool (``hashlib`` releases the GIL while hashing, and the reads
  overlap), so the cost is the bytes read: on a warm page cache it is bound by SHA-256 and the
  per-file open/read/close, on a cold disk by the disk.
- Optionally a :class:`DigestCache` (a JSON file the caller keeps, e.g. beside its outputs: never in
  the dataset, which is only read) maps each file's (size, mtime, ctime, inode) to its digest, so a
  rerun reads only the files whose metadata changed. ctime is in the key because tools that keep
  a file's mtime (``cp -p``, ``rsync -t``, ``touch -d``) cannot set it back, and a write always
  moves it; a file changed in place within one clock tick with the same size is the only miss.

The digest lines are ``split/name:size:sha256`` for images and ``file/basename:size:sha256`` for the
other files, sorted, so the fingerprint does not depend on listing order or on where the keypoint
folder lives.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from augment.data.atomic import write_text_atomic
from augment.data.errors import DatasetError
from augment.data.index import MarketDataset

CHUNK = 256  # files per thread task
READ_SIZE = 1 << 20


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class DigestCache:
    """Per-file digests keyed by absolute path and (size, mtime_ns, ctime_ns, inode); see the module docstring."""

    VERSION = 1

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.entries: dict[str, list] = {}
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") == self.VERSION:
                self.entries = data["files"]
        except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
            self.entries = {}  # no cache or an unreadable one: start empty, it is only a cache

    def get(self, path: str, st: os.stat_result) -> str | None:
        entry = self.entries.get(path)
        return entry[4] if entry and entry[:4] == _stat_key(st) else None

    def put(self, path: str, st: os.stat_result, digest: str) -> None:
        self.entries[path] = [*_stat_key(st), digest]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps({"version": self.VERSION, "files": self.entries}))


@dataclass(frozen=True)
class ContentFingerprint:
    """``digest``: 16 hex digits over every file; ``read_bytes``: bytes hashed this time (the rest came
    from the cache)."""

    digest: str
    images: int
    files: int
    bytes: int
    read_bytes: int


def _digest_one(path: str, cache: DigestCache | None) -> tuple[int, str, bool]:
    """(size, sha256, read?) of one file, from the cache when its metadata is unchanged (one open, one
    fstat and the reads: the per-file system calls are most of the cost for small JPEGs)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read for the content fingerprint: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        digest = cache.get(path, st) if cache is not None else None
        if digest is not None:
            return st.st_size, digest, False
        h = hashlib.sha256()
        while chunk := os.read(fd, READ_SIZE):
            h.update(chunk)
    finally:
        os.close(fd)
    if cache is not None:
        cache.put(path, st, h.hexdigest())
    return st.st_size, h.hexdigest(), True


def content_fingerprint(
    dataset: MarketDataset,
    files: Iterable[str | os.PathLike] = (),
    *,
    workers: int | None = None,
    cache: DigestCache | str | os.PathLike | None = None,
) -> ContentFingerprint:
    """Fingerprint of the bytes of every image of ``dataset`` and of ``files`` (keypoint and pair CSVs).

    ``cache``: a :class:`DigestCache` or the path of its JSON file (saved when anything was read).
    """
    if cache is not None and not isinstance(cache, DigestCache):
        cache = DigestCache(cache)
    records = list(dataset.records())
    files = [Path(f) for f in files]
    keys = [f"{r.split}/{r.name}" for r in records] + [f"file/{f.name}" for f in files]
    paths = [os.path.abspath(r.path) for r in records] + [os.path.abspath(f) for f in files]
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        results = [x for chunk in pool.map(lambda c: [_digest_one(p, cache) for p in c], chunks) for x in chunk]
    h = hashlib.sha256()
    for line in sorted(f"{k}:{size}:{digest}\n" for k, (size, digest, _) in zip(keys, results)):
        h.update(line.encode())
    read = sum(size for size, _, was_read in results if was_read)
    if cache is not None and any(was_read for _, _, was_read in results):
        cache.save()
    return ContentFingerprint(h.hexdigest()[:16], len(records), len(files), sum(size for size, _, _ in results), read)
