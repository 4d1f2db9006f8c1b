"""Market-1501 layout: file names, the dataset index, junk/distractor rules, writing, fingerprints.

A Market-1501 root holds ``bounding_box_train/``, ``bounding_box_test/`` (the gallery) and
``query/``. Pose-transfer repositories ship a renamed layout, ``train/`` and ``test/``
(``test/`` holds gallery images; there is no query split); both are read here.

File names are ``PPPP_cCsS_FFFFFF_BB.jpg``: person id (``-1`` = junk, ``0000`` = distractor),
camera, sequence, frame, bounding box. Images this project generates append a tag,
``PPPP_cCsS_FFFFFF_BB_<tag>.jpg``, so they keep id and camera and can never collide with a
real name (no real name has a tag).

Rules (Market-1501's own evaluation code and torchreid follow them):
- train: junk and distractor images are not training data; they are skipped and counted.
- gallery: junk images are skipped and counted; distractors stay (they are part of the
  gallery the query is ranked against).
- query: junk and distractor images are skipped and counted.
Non-image files (Market ships ``Thumbs.db``) are ignored and counted.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from augment.data.atomic import atomic_path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

# split name -> folder, for the two layouts this reader accepts.
MARKET_DIRS = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query"}
RENAMED_DIRS = {"train": "train", "gallery": "test"}
SPLITS = ("train", "gallery", "query")

JUNK_PID = -1
DISTRACTOR_PID = 0

_NAME_RE = re.compile(
    r"^(?P<pid>-1|\d{4})_c(?P<camera>\d)s(?P<sequence>\d)_(?P<frame>\d{6})_(?P<box>\d{2})"
    r"(?:_(?P<tag>[A-Za-z0-9-]+))?(?P<ext>\.(?:jpg|jpeg|png))$"
)


class DatasetError(ValueError):
    """Bad dataset input; the message names the file (and row, where there is one)."""


@dataclass(frozen=True, order=True)
class MarketName:
    """The fields of a Market-1501 file name. ``camera`` and ``sequence`` are 1-based as written."""

    pid: int
    camera: int
    sequence: int
    frame: int
    box: int
    tag: str = ""
    ext: str = ".jpg"

    @property
    def is_junk(self) -> bool:
        return self.pid == JUNK_PID

    @property
    def is_distractor(self) -> bool:
        return self.pid == DISTRACTOR_PID

    @property
    def is_generated(self) -> bool:
        return bool(self.tag)

    def filename(self) -> str:
        pid = "-1" if self.pid == JUNK_PID else f"{self.pid:04d}"
        tag = f"_{self.tag}" if self.tag else ""
        return f"{pid}_c{self.camera}s{self.sequence}_{self.frame:06d}_{self.box:02d}{tag}{self.ext}"

    def with_tag(self, tag: str, ext: str | None = None) -> MarketName:
        if not re.fullmatch(r"[A-Za-z0-9-]+", tag):
            raise ValueError(f"tag {tag!r} must be letters, digits and '-'")
        return MarketName(self.pid, self.camera, self.sequence, self.frame, self.box, tag, ext or self.ext)


def parse_market_name(name: str, *, where: str | os.PathLike | None = None) -> MarketName:
    """Parse ``PPPP_cCsS_FFFFFF_BB[_tag].jpg``; raise :class:`DatasetError` naming the file otherwise."""
    m = _NAME_RE.match(name)
    if m is None:
        loc = f"{where}: " if where is not None else ""
        raise DatasetError(
            f"{loc}file name {name!r} is not a Market-1501 name (expected PPPP_cCsS_FFFFFF_BB.jpg, "
            "e.g. 0002_c1s1_000451_03.jpg)"
        )
    return MarketName(
        pid=int(m["pid"]),
        camera=int(m["camera"]),
        sequence=int(m["sequence"]),
        frame=int(m["frame"]),
        box=int(m["box"]),
        tag=m["tag"] or "",
        ext=m["ext"],
    )


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class ImageRecord:
    """One image of the index. ``camera`` is 1-based as in the file name."""

    name: str
    path: Path
    split: str
    pid: int
    camera: int
    size: int  # bytes on disk, for the fingerprint

    @property
    def market_name(self) -> MarketName:
        return parse_market_name(self.name)


@dataclass
class SkipCounter:
    """Counts of everything the reader did not take, with a few example names per reason."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, reason: str, example: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(example)

    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        return [
            f"skipped {n} {reason} (e.g. {', '.join(self.examples[reason])})"
            for reason, n in sorted(self.counts.items())
        ]


@dataclass
class MarketDataset:
    """The index of a Market-1501-layout root."""

    root: Path
    layout: str  # "market" or "renamed"
    train: list[ImageRecord]
    gallery: list[ImageRecord]
    query: list[ImageRecord]
    skipped: SkipCounter

    def split(self, name: str) -> list[ImageRecord]:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; splits are {SPLITS}")
        return getattr(self, name)

    def records(self) -> Iterator[ImageRecord]:
        for s in SPLITS:
            yield from self.split(s)

    def by_name(self) -> dict[str, ImageRecord]:
        return {r.name: r for r in self.records()}

    def fingerprint(self) -> str:
        return fingerprint_records(self.records())

    def summary(self) -> dict:
        out = {"root": str(self.root), "layout": self.layout}
        for s in SPLITS:
            recs = self.split(s)
            out[s] = {
                "images": len(recs),
                "identities": len({r.pid for r in recs}),
                "cameras": len({r.camera for r in recs}),
            }
        out["skipped"] = dict(self.skipped.counts)
        out["fingerprint"] = self.fingerprint()
        return out

    def summary_lines(self) -> list[str]:
        lines = [f"dataset {self.root} ({self.layout} layout)"]
        for s in SPLITS:
            recs = self.split(s)
            lines.append(
                f"  {s:8s} {len(recs):6d} images  {len({r.pid for r in recs}):5d} identities  "
                f"{len({r.camera for r in recs})} cameras"
            )
        lines += ["  " + line for line in self.skipped.lines()]
        return lines


def _keep(split: str, pid: int) -> str | None:
    """None when the image belongs to the split, else the reason it is skipped."""
    if pid == JUNK_PID:
        return f"junk (-1) images in {split}"
    if pid == DISTRACTOR_PID and split != "gallery":
        return f"distractor (0000) images in {split}"
    return None


def detect_layout(root: Path) -> tuple[str, dict[str, str]]:
    if (root / MARKET_DIRS["train"]).is_dir() or (root / MARKET_DIRS["gallery"]).is_dir():
        return "market", MARKET_DIRS
    if (root / RENAMED_DIRS["train"]).is_dir():
        return "renamed", RENAMED_DIRS
    raise DatasetError(
        f"{root}: not a Market-1501 root: expected folders "
        f"{', '.join(MARKET_DIRS.values())} (or the renamed layout train/, test/)"
    )


def read_split_dir(folder: Path, split: str, skipped: SkipCounter) -> list[ImageRecord]:
    records = []
    with os.scandir(folder) as it:
        entries = sorted((e for e in it if e.is_file()), key=lambda e: e.name)
    for e in entries:
        if not is_image_file(e.name):
            skipped.add(f"non-image files in {split}", e.name)
            continue
        mn = parse_market_name(e.name, where=folder / e.name)
        reason = _keep(split, mn.pid)
        if reason is not None:
            skipped.add(reason, e.name)
            continue
        records.append(ImageRecord(e.name, Path(e.path), split, mn.pid, mn.camera, e.stat().st_size))
    return records


def read_market(root: str | os.PathLike, *, splits: Iterable[str] = SPLITS) -> MarketDataset:
    """Index a Market-1501 root (either layout).

    Every split asked for must exist, except ``query`` in the renamed layout, which has none.
    A file name that does not parse raises :class:`DatasetError` naming the file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root does not exist (pass --data DIR)")
    layout, dirs = detect_layout(root)
    skipped = SkipCounter()
    found: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
    for split in splits:
        if split not in dirs:
            continue  # renamed layout: no query split
        folder = root / dirs[split]
        if not folder.is_dir():
            raise DatasetError(f"{folder}: missing split folder {dirs[split]}/ for the {split} split")
        found[split] = read_split_dir(folder, split, skipped)
    return MarketDataset(root, layout, found["train"], found["gallery"], found["query"], skipped)


def fingerprint_records(records: Iterable[ImageRecord]) -> str:
    """Stable hash of (split, name, size) of every indexed image: order-independent, 16 hex digits."""
    h = hashlib.sha256()
    for split, name, size in sorted((r.split, r.name, r.size) for r in records):
        h.update(f"{split}/{name}:{size}\n".encode())
    return h.hexdigest()[:16]


def dataset_fingerprint(root: str | os.PathLike) -> str:
    return read_market(root).fingerprint()


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


def write_market(dataset: MarketDataset, out: str | os.PathLike, *, mode: str = "copy") -> Path:
    """Write ``dataset`` (its kept images) in the Market-1501 layout under ``out``."""
    out = Path(out)
    dirs = make_market_dirs(out)
    for rec in dataset.records():
        place_file(rec.path, dirs[rec.split] / rec.name, mode)
    return out
