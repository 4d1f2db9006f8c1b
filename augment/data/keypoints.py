"""The community keypoint and pair files of pose-transfer work on Market-1501.

Annotation CSV (``market-annotation-{train,test}.csv``), ``:``-separated::

    name:keypoints_y:keypoints_x
    0002_c1s1_000451_03.jpg:[13, 24, ...]:[31, 30, ...]

18 joints in OpenPose/COCO-18 order (:data:`JOINTS`), y first, ``-1`` where missing, pixel
coordinates in the 128x64 image. Pairs CSV (``market-pairs-{train,test}.csv``): ``from,to``.

In memory, annotations are an :class:`Annotations` table: ``names`` (N,) and ``coords``
(N, 18, 2) int32 as (y, x), -1 where missing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path

import numpy as np
import pandas as pd

from augment.data.atomic import atomic_path
from augment.data.errors import DatasetError
from augment.data.index import ImageRecord, SkipCounter
from augment.data.names import parse_image_name
from augment.data.textfile import read_text, split_lines

JOINTS = (
    "nose",
    "neck",
    "Rsho",
    "Relb",
    "Rwri",
    "Lsho",
    "Lelb",
    "Lwri",
    "Rhip",
    "Rkne",
    "Rank",
    "Lhip",
    "Lkne",
    "Lank",
    "Leye",
    "Reye",
    "Lear",
    "Rear",
)
JOINT_INDEX = {n: i for i, n in enumerate(JOINTS)}
NUM_JOINTS = len(JOINTS)
MISSING = -1
IMAGE_SIZE = (128, 64)  # (H, W) of Market-1501 crops

# The four torso joints both images of a community pair must have (PATN / Deformable GAN rule).
TORSO_JOINTS = ("Rhip", "Lhip", "Lsho", "Rsho")

ANNOTATION_HEADER = ["name", "keypoints_y", "keypoints_x"]
PAIRS_HEADER = ["from", "to"]
ANNOTATION_FILES = {"train": "market-annotation-train.csv", "test": "market-annotation-test.csv"}
PAIRS_FILES = {"train": "market-pairs-train.csv", "test": "market-pairs-test.csv"}
DEFAULT_TEST_PAIRS = 12000


@dataclass
class Annotations:
    """Keypoints of N images: ``coords`` (N, 18, 2) int32 (y, x), -1 where missing."""

    names: list[str]
    coords: np.ndarray
    source: str = ""  # file it came from, for messages
    skipped: SkipCounter = field(default_factory=SkipCounter)

    def __post_init__(self):
        self.coords = np.asarray(self.coords, dtype=np.int32).reshape(-1, NUM_JOINTS, 2)
        if len(self.names) != len(self.coords):
            raise ValueError(f"{len(self.names)} names but {len(self.coords)} keypoint rows")
        self._index = {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> np.ndarray:
        return self.coords[self._index[name]]

    def get_many(self, names: Sequence[str]) -> np.ndarray:
        """(len(names), 18, 2) keypoints; raises KeyError naming the first unknown name."""
        try:
            idx = [self._index[n] for n in names]
        except KeyError as e:
            raise KeyError(f"no keypoints for {e.args[0]!r} in {self.source or 'annotations'}") from None
        return self.coords[idx]

    def subset(self, names: Iterable[str]) -> Annotations:
        names = list(names)
        return Annotations(names, self.get_many(names), self.source, self.skipped)

    def merged(self, other: Annotations) -> Annotations:
        dup = set(self.names) & set(other.names)
        if dup:
            raise DatasetError(f"{other.source}: {len(dup)} names also in {self.source} (e.g. {sorted(dup)[0]})")
        sk = SkipCounter.merged(self.skipped, other.skipped)
        return Annotations(
            self.names + other.names, np.concatenate([self.coords, other.coords]), f"{self.source}+{other.source}", sk
        )

    def skips(self) -> dict[str, dict]:
        """What the reader set missing: ``{reason: {"count": n, "examples": [...]}}`` (as ``MarketDataset.skips``)."""
        return self.skipped.as_dict()

    def present(self) -> np.ndarray:
        """(N, 18) bool: joint annotated."""
        return (self.coords != MISSING).all(-1)


def joints_present(coords: np.ndarray, joints: Sequence[str] = TORSO_JOINTS) -> np.ndarray:
    """(...,) bool: every joint named is present in (..., 18, 2) keypoints."""
    idx = [JOINT_INDEX[j] for j in joints]
    return (np.asarray(coords)[..., idx, :] != MISSING).all(axis=(-1, -2))


MAX_COORDINATE = 2**31 - 1  # coordinates are stored as int32


class _Constant(str):
    """``NaN``/``Infinity``/``-Infinity`` as JSON spells them, kept so the error can name the joint."""


def _joint_value(v, where: str) -> int:
    """One coordinate: an integer (an integral float like ``12.0`` is accepted: the community files hold
    ints, and ``12.0`` means the same pixel); booleans, non-finite, fractional and non-numbers refused."""
    if isinstance(v, _Constant):
        raise DatasetError(f"{where} is {v}, not a finite pixel coordinate")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DatasetError(f"{where} is {json.dumps(v)}, not an integer pixel coordinate")
    if isinstance(v, float):
        if not math.isfinite(v):
            raise DatasetError(f"{where} is {v}, not a finite pixel coordinate")
        if not v.is_integer():
            raise DatasetError(f"{where} is {v}, not an integer pixel coordinate")
    if abs(v) > MAX_COORDINATE:
        raise DatasetError(f"{where} is {v:.0f}, out of range")
    return int(v)


def _parse_joint_list(text: str, path, line: int, column: str) -> list[int]:
    """A JSON list of 18 integers; :class:`DatasetError` naming file, line, column and joint otherwise."""
    try:
        values = json.loads(text, parse_constant=_Constant)
    except (json.JSONDecodeError, RecursionError):
        raise DatasetError(f"{path}:{line}: {column} is not a JSON list of integers: {text[:60]!r}") from None
    if not isinstance(values, list):
        raise DatasetError(f"{path}:{line}: {column} must list {NUM_JOINTS} integers, got {text[:60]!r}")
    if len(values) != NUM_JOINTS:
        raise DatasetError(f"{path}:{line}: {column} must list {NUM_JOINTS} integers, got {len(values)} values")
    return [_joint_value(v, f"{path}:{line}: {column} joint {j} ({JOINTS[j]})") for j, v in enumerate(values)]


def _data_lines(path: Path, text: str, header: list[str], sep: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every non-empty line after the header (checked)."""
    lines = split_lines(text)
    if lines[0].split(sep) != header:
        raise DatasetError(f"{path}:1: header must be {sep.join(header)!r}, got {lines[0][:80]!r}")
    for line_no, line in enumerate(lines[1:], start=2):
        if line.strip():
            yield line_no, line


def _clean_joint(y: int, x: int, where: str, image_size: tuple[int, int] | None, strict: bool, skipped) -> list[int]:
    """The frame rules of one joint: both coordinates missing or both inside the image, else set missing
    (counted) or, with ``strict``, refused."""
    if (y == MISSING) != (x == MISSING):
        if strict:
            raise DatasetError(f"{where}: only one coordinate is missing ({y}, {x})")
        skipped.add("joints with one coordinate missing (set missing)", where)
        return [MISSING, MISSING]
    h, w = image_size if image_size is not None else (MAX_COORDINATE, MAX_COORDINATE)
    if y != MISSING and not (0 <= y < h and 0 <= x < w):
        frame = f"the {h}x{w} image" if image_size is not None else "the image (negative)"
        if strict:
            raise DatasetError(f"{where}=({y},{x}): keypoint outside {frame}")
        skipped.add(f"joints outside {frame} (set missing)", f"{where}=({y},{x})")
        return [MISSING, MISSING]
    return [y, x]


def read_annotations(
    path: str | os.PathLike, *, image_size: tuple[int, int] | None = IMAGE_SIZE, strict: bool = False
) -> Annotations:
    """Read an annotation CSV (UTF-8; a BOM is accepted).

    Errors (always), each naming file and line (and column and joint): missing file, undecodable
    bytes, wrong header, a row without three fields or without a name, lists that are not 18
    integers (booleans, ``NaN``/``Infinity``, fractions and non-numbers are refused; integral floats
    such as ``12.0`` are read as integers), a duplicate name. Counted warnings (errors with
    ``strict``): a joint outside the ``image_size`` (H, W) image (None: any non-negative
    coordinate is inside) or with only one coordinate missing; that joint becomes missing.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file not found")
    skipped = SkipCounter()
    names: list[str] = []
    rows: list[list[list[int]]] = []
    seen: dict[str, int] = {}
    for line_no, line in _data_lines(path, read_text(path, "annotation file"), ANNOTATION_HEADER, ":"):
        parts = line.split(":")
        if len(parts) != 3:
            raise DatasetError(f"{path}:{line_no}: expected name:keypoints_y:keypoints_x, got {line[:80]!r}")
        name = parts[0].strip()
        if not name:
            raise DatasetError(f"{path}:{line_no}: empty image name")
        if name in seen:
            raise DatasetError(f"{path}:{line_no}: duplicate row for {name} (first at line {seen[name]})")
        seen[name] = line_no
        ys = _parse_joint_list(parts[1], path, line_no, "keypoints_y")
        xs = _parse_joint_list(parts[2], path, line_no, "keypoints_x")
        rows.append(
            [
                _clean_joint(y, x, f"{path}:{line_no} {name} {JOINTS[j]}", image_size, strict, skipped)
                for j, (y, x) in enumerate(zip(ys, xs))
            ]
        )
        names.append(name)
    coords = np.array(rows, dtype=np.int32).reshape(-1, NUM_JOINTS, 2)
    return Annotations(names, coords, str(path), skipped)


def write_annotations(path: str | os.PathLike, annotations: Annotations) -> Path:
    """Write the community annotation CSV (atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        f.write(":".join(ANNOTATION_HEADER) + "\n")
        for name, kp in zip(annotations.names, annotations.coords):
            f.write(f"{name}:{json.dumps(kp[:, 0].tolist())}:{json.dumps(kp[:, 1].tolist())}\n")
    return path


def read_pairs(path: str | os.PathLike) -> pd.DataFrame:
    """Read a pairs CSV (``from,to``; UTF-8, a BOM accepted; a leading unnamed index column is tolerated)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: pairs file not found")
    reader = csv.reader(io.StringIO(read_text(path, "pairs file"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path}:1: empty pairs file (header from,to expected)") from None
    offset = 1 if header and header[0] == "" else 0
    if header[offset:] != PAIRS_HEADER:
        raise DatasetError(f"{path}:1: header must be 'from,to', got {','.join(header)[:80]!r}")
    fr, to = [], []
    for line_no, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != 2 + offset:
            raise DatasetError(f"{path}:{line_no}: expected 2 fields from,to, got {row!r}")
        fr.append(row[offset])
        to.append(row[offset + 1])
    return pd.DataFrame({"from": fr, "to": to})


def write_pairs(path: str | os.PathLike, pairs: pd.DataFrame) -> Path:
    """Write the pairs CSV (atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        pairs[PAIRS_HEADER].to_csv(tmp, index=False)
    return path


def is_pairable_name(name: str) -> bool:
    """Community rule: junk and distractor images never enter pairs. Only Market-1501 names mark them
    (``-1``, ``0000``; MSMT17's ``0000`` is a person); a name of no known scheme is judged by that prefix."""
    try:
        parsed = parse_image_name(name)
    except DatasetError:
        return not (name.startswith("-1") or name.startswith("0000"))
    return not (parsed.is_junk or parsed.is_distractor)


def build_pairs(
    annotations: Annotations,
    *,
    sample: int | None = None,
    random_state: int = 0,
    pairable: Callable[[str], bool] = is_pairable_name,
) -> pd.DataFrame:
    """Community pair rule (Deformable GAN's ``create_pairs_dataset.py``, used by PATN).

    Images with all four torso joints and a pairable name are grouped by person id (in file
    order); every ordered permutation of two images of the same person is a pair. With
    ``sample`` (test pairs: 12,000), ``sample`` pairs are drawn without replacement with
    ``random_state``, as the community script does, so the same CSV gives the same pairs.
    """
    valid = joints_present(annotations.coords) & np.array([pairable(n) for n in annotations.names], dtype=bool)
    names = [n for n, ok in zip(annotations.names, valid) if ok]
    persons: dict[str, list[str]] = {}
    for n in names:
        persons.setdefault(n.split("_")[0], []).append(n)
    fr: list[str] = []
    to: list[str] = []
    for group in persons.values():
        for a, b in permutations(group, 2):
            fr.append(a)
            to.append(b)
    pairs = pd.DataFrame({"from": fr, "to": to})
    if sample is not None:
        pairs = pairs.sample(n=min(sample, len(pairs)), replace=False, random_state=random_state)
    return pairs.reset_index(drop=True)


def match_images(
    annotations: Annotations, records: Sequence[ImageRecord], *, strict: bool = False
) -> tuple[list[ImageRecord], SkipCounter]:
    """Pair index records with annotation rows.

    Returns the records that have a row, and a counter of images without a row and of rows
    naming no indexed image (each a counted warning naming file and row; errors with ``strict``).
    """
    report = SkipCounter()
    names = {r.name for r in records}
    for n in annotations.names:
        if n not in names:
            msg = f"{annotations.source}: row {n} names no image in the dataset"
            if strict:
                raise DatasetError(msg)
            report.add("annotation rows without an image", msg)
    kept = []
    for r in records:
        if r.name in annotations:
            kept.append(r)
        else:
            msg = f"{r.path} has no row in {annotations.source or 'the annotations'}"
            if strict:
                raise DatasetError(msg)
            report.add("images without an annotation row", msg)
    return kept, report


def find_keypoint_file(
    root: str | os.PathLike, kind: str, split: str, keypoints_dir: str | os.PathLike | None = None
) -> Path:
    """Locate ``market-{annotation,pairs}-{split}.csv`` in ``keypoints_dir`` or the dataset root."""
    fname = (ANNOTATION_FILES if kind == "annotation" else PAIRS_FILES)[split]
    for d in [keypoints_dir, root] if keypoints_dir else [root]:
        p = Path(d) / fname
        if p.is_file():
            return p
    where = f"{keypoints_dir} or {root}" if keypoints_dir else str(root)
    raise DatasetError(f"{fname} not found in {where} (pass --keypoints DIR with the community CSVs)")


def read_dataset_annotations(
    root: str | os.PathLike, keypoints_dir: str | os.PathLike | None = None, *, strict: bool = False
) -> Annotations:
    """Train and test annotation files of a dataset, merged into one table."""
    train = read_annotations(find_keypoint_file(root, "annotation", "train", keypoints_dir), strict=strict)
    test = read_annotations(find_keypoint_file(root, "annotation", "test", keypoints_dir), strict=strict)
    return train.merged(test)
