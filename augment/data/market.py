"""Market-1501 layout: the public face of the dataset index, and writing datasets in the Market layout.

A Market-1501 root holds ``bounding_box_train/``, ``bounding_box_test/`` (the gallery) and
``query/``. Pose-transfer repositories ship a renamed layout, ``train/`` and ``test/``
(``test/`` holds gallery images; there is no query split). DukeMTMC-reID, CUHK03-NP and MSMT17
are read into the same index (:mod:`augment.data.layouts`); whatever was read is written back in
the Market-1501 layout, under the same names, so any re-ID framework reads the output.

File names are ``PPPP_cCsS_FFFFFF_BB.jpg``: person id (``-1`` = junk, ``0000`` = distractor),
camera, sequence, frame, bounding box (:mod:`augment.data.names` has the other datasets' names).
Images this project generates append a tag, ``PPPP_cCsS_FFFFFF_BB_<tag>.jpg``, so they keep id and
camera and can never collide with a real name (no real name has a tag).

Rules (Market-1501's own evaluation code and torchreid follow them):
- train: junk and distractor images are not training data; they are skipped and counted.
- gallery: junk images are skipped and counted; distractors stay (they are part of the
  gallery the query is ranked against).
- query: junk and distractor images are skipped and counted.
Non-image files (Market ships ``Thumbs.db``) are ignored and counted. Upper-case extensions
(``.JPG``) are images under the same rules; the name is kept as on disk.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from augment.data.atomic import atomic_path
from augment.data.errors import DatasetError
from augment.data.index import (
    MARKET_DIRS,
    SPLITS,
    ImageRecord,
    MarketDataset,
    SkipCounter,
    fingerprint_records,
    merge_skips,
)
from augment.data.layouts import LAYOUTS, RENAMED_DIRS, detect_layout, read_dataset
from augment.data.names import (
    DISTRACTOR_PID,
    IMAGE_EXTENSIONS,
    JUNK_PID,
    ImageName,
    MarketName,
    ReidName,
    is_image_file,
    parse_image_name,
    parse_market_name,
)

__all__ = [
    "DISTRACTOR_PID",
    "IMAGE_EXTENSIONS",
    "JUNK_PID",
    "LAYOUTS",
    "MARKET_DIRS",
    "RENAMED_DIRS",
    "SPLITS",
    "DatasetError",
    "ImageName",
    "ImageRecord",
    "MarketDataset",
    "MarketName",
    "ReidName",
    "SkipCounter",
    "dataset_fingerprint",
    "detect_layout",
    "fingerprint_records",
    "is_image_file",
    "link_split",
    "make_market_dirs",
    "merge_skips",
    "parse_image_name",
    "parse_market_name",
    "place_file",
    "read_market",
    "split_dir",
    "write_market",
]


def read_market(root: str | os.PathLike, *, splits: Iterable[str] = SPLITS, layout: str | None = None) -> MarketDataset:
    """Index a dataset root: Market-1501 (either layout) or another layout of :data:`LAYOUTS`.

    ``layout`` None detects it. The training split, when asked for, must exist and hold a usable
    image; a missing gallery or query folder is an empty split listed in ``missing_splits``. A file
    name that does not parse raises :class:`DatasetError` naming the file.
    """
    return read_dataset(root, splits=splits, layout=layout)


def dataset_fingerprint(root: str | os.PathLike, *, layout: str | None = None) -> str:
    """The name-and-size fingerprint of ``root``'s index (:func:`augment.data.fingerprint.content_fingerprint`
    hashes the bytes)."""
    return read_market(root, layout=layout).fingerprint()


def split_dir(root: str | os.PathLike, split: str) -> Path:
    """Where ``split`` lives in a Market-layout root this project writes."""
    return Path(root) / MARKET_DIRS[split]


def make_market_dirs(root: str | os.PathLike) -> dict[str, Path]:
    dirs = {s: split_dir(root, s) for s in SPLITS}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def place_file(src: Path, dst: Path, mode: str = "copy") -> None:
    """Put ``src`` at ``dst`` by ``copy``, ``hardlink`` or ``symlink``; atomic (temporary name, then rename)."""
    if mode not in ("copy", "hardlink", "symlink"):
        raise ValueError(f"unknown placement mode {mode!r} (copy, hardlink, symlink)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        if mode == "hardlink":
            try:
                os.link(src, tmp)
            except OSError:  # other filesystem: fall back to a copy
                shutil.copyfile(src, tmp)
        elif mode == "symlink":
            os.symlink(os.path.abspath(src), tmp)
        else:
            shutil.copyfile(src, tmp)


def link_split(dataset: MarketDataset, split: str, dst: str | os.PathLike) -> Path | None:
    """Make ``dst`` show ``split``'s images in the Market-1501 layout without copying them; idempotent.

    Where one folder holds exactly the split (:meth:`MarketDataset.split_folder`), ``dst`` is a symlink
    to it (its junk files stay behind the link; readers skip them again); otherwise (MSMT17's list
    splits) ``dst`` is a folder of one symlink per image, named by the index. None when the split is
    empty (nothing is made).
    """
    records = dataset.split(split)
    if not records:
        return None
    dst = Path(dst)
    folder = dataset.split_folder(split)
    if folder is not None:
        if not dst.is_symlink() and not dst.exists():
            os.symlink(folder.resolve(), dst, target_is_directory=True)
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    for rec in records:
        link = dst / rec.name
        if not (link.is_symlink() and os.readlink(link) == os.path.abspath(rec.path)):
            place_file(rec.path, link, "symlink")
    return dst


def write_market(dataset: MarketDataset, out: str | os.PathLike, *, mode: str = "copy") -> Path:
    """Write ``dataset`` (its kept images) in the Market-1501 layout under ``out``, whatever layout it was
    read from; names are kept, so the copy reads back to the same records."""
    out = Path(out)
    dirs = make_market_dirs(out)
    for rec in dataset.records():
        place_file(rec.path, dirs[rec.split] / rec.name, mode)
    return out
