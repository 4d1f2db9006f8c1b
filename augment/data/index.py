"""The dataset index every layout is read into: image records by split, skip counts, the name fingerprint.

Whatever the layout on disk (:mod:`augment.data.layouts`), a dataset is a :class:`MarketDataset`:
three splits (``train``, ``gallery``, ``query``) of :class:`ImageRecord` s whose ``name`` is unique in
the dataset and parses (:func:`augment.data.names.parse_image_name`) to the record's person id and
camera, so the index can be written out in the Market-1501 layout under the same names.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from augment.data.names import ImageName, parse_image_name

SPLITS = ("train", "gallery", "query")
# split -> folder of the Market-1501 layout (the layout this project writes)
MARKET_DIRS = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query"}
MAX_EXAMPLES = 3


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
    def market_name(self) -> ImageName:
        return parse_image_name(self.name)


@dataclass
class SkipCounter:
    """Counts of everything a reader did not take, with a few examples per reason."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, reason: str, example: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < MAX_EXAMPLES:
            self.examples[reason].append(example)

    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        return [
            f"skipped {n} {reason} (e.g. {', '.join(self.examples[reason])})"
            for reason, n in sorted(self.counts.items())
        ]

    def as_dict(self) -> dict[str, dict]:
        """``{reason: {"count": n, "examples": [...]}}``: plain JSON, for reports and ``summary.json``."""
        return {
            r: {"count": int(n), "examples": list(self.examples.get(r, []))} for r, n in sorted(self.counts.items())
        }

    @classmethod
    def merged(cls, *counters: SkipCounter) -> SkipCounter:
        out = cls()
        for c in counters:
            out.counts.update(c.counts)
            for reason, examples in c.examples.items():
                kept = out.examples.setdefault(reason, [])
                kept.extend(examples[: MAX_EXAMPLES - len(kept)])
        return out


def merge_skips(*skips: dict[str, dict]) -> dict[str, dict]:
    """Merge several :meth:`SkipCounter.as_dict` results (dataset, annotations, matching) into one."""
    out: dict[str, dict] = {}
    for s in skips:
        for reason, v in s.items():
            entry = out.setdefault(reason, {"count": 0, "examples": []})
            entry["count"] += int(v["count"])
            entry["examples"].extend(v["examples"][: MAX_EXAMPLES - len(entry["examples"])])
    return dict(sorted(out.items()))


@dataclass
class MarketDataset:
    """The index of a dataset root, whatever its layout (``layout`` says which was read).

    ``missing_splits``: splits whose folder or list file the root lacks (read as empty; see
    :func:`augment.data.market.read_market`). ``split_dirs``: for folder layouts, the folder holding
    exactly each split's files (None for list-file layouts such as MSMT17, where no folder does).
    """

    root: Path
    layout: str
    train: list[ImageRecord]
    gallery: list[ImageRecord]
    query: list[ImageRecord]
    skipped: SkipCounter
    missing_splits: tuple[str, ...] = ()
    split_dirs: dict[str, Path] | None = None

    def split(self, name: str) -> list[ImageRecord]:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; splits are {SPLITS}")
        return getattr(self, name)

    def split_folder(self, name: str) -> Path | None:
        """The folder whose image files are exactly ``name``'s (plus the skipped ones), or None."""
        self.split(name)
        return (self.split_dirs or {}).get(name)

    def records(self) -> Iterator[ImageRecord]:
        for s in SPLITS:
            yield from self.split(s)

    def by_name(self) -> dict[str, ImageRecord]:
        return {r.name: r for r in self.records()}

    def fingerprint(self) -> str:
        return fingerprint_records(self.records())

    def skips(self) -> dict[str, dict]:
        """What the reader skipped: ``{reason: {"count": n, "examples": [...]}}``."""
        return self.skipped.as_dict()

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
        if self.missing_splits:
            out["missing_splits"] = list(self.missing_splits)
        out["fingerprint"] = self.fingerprint()
        return out

    def summary_lines(self) -> list[str]:
        lines = [f"dataset {self.root} ({self.layout} layout)"]
        for s in SPLITS:
            recs = self.split(s)
            missing = "  (no folder or list file: read as empty)" if s in self.missing_splits else ""
            lines.append(
                f"  {s:8s} {len(recs):6d} images  {len({r.pid for r in recs}):5d} identities  "
                f"{len({r.camera for r in recs})} cameras{missing}"
            )
        lines += ["  " + line for line in self.skipped.lines()]
        return lines


def fingerprint_records(records: Iterable[ImageRecord]) -> str:
    """Stable hash of (split, name, size) of every indexed image: order-independent, 16 hex digits.

    Names and sizes only (no file is read); :mod:`augment.data.fingerprint` hashes the content.
    """
    h = hashlib.sha256()
    for split, name, size in sorted((r.split, r.name, r.size) for r in records):
        h.update(f"{split}/{name}:{size}\n".encode())
    return h.hexdigest()[:16]
