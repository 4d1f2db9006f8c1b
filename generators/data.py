"""Training and evaluation pairs for the pose-transfer generators.

A dataset root in Market-1501 layout (:func:`augment.data.market.read_market`) plus the community
files (:mod:`augment.data.keypoints`): annotation CSVs (train and test, merged) and a pairs CSV
(``market-pairs-train.csv`` for training, ``market-pairs-test.csv`` for evaluation), found in
``keypoints_dir`` or the root.

Validation happens once, before any image is decoded (:func:`load_pairs`). Each pair row must
name two images of the index that have annotation rows:

- a name the index does not hold is an error naming the pairs file, its line and the name
  (the pairs file does not belong to this dataset: training on a silent subset would hide it);
- except a junk (``-1``) or distractor (``0000``) name that the Market rules drop from the
  index on purpose: that row is skipped and counted (the community pair rule never makes
  such rows, so a count here means an unusual pairs file, not lost data);
- an image without an annotation row is an error naming the pairs file, line, name and the
  annotation files looked in.

``missing="skip"`` turns both errors into counted skips (for a deliberately partial dataset).

Batches follow the generator interface (:class:`generators.base.Method`, docs/methods.md#interface):
``src_img``/``tgt_img`` float32 (B,3,H,W) RGB in [-1,1], ``src_kps``/``tgt_kps`` int64 (B,18,2) (y,x)
pixels, -1 missing, ``src_name``/``tgt_name`` lists of str.

Sampling (:class:`PairSampler`) is iteration based and resumable. The official PATN loader
draws every training item uniformly at random with replacement (``random.randint`` in
``KeyDataset.__getitem__``), 4,000 draws per "epoch"; the sampler does the same from an
explicit seed, one generator per epoch (``numpy.random.default_rng([seed, epoch])``), so its
position ``(epoch, index)`` alone reproduces every later batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from augment.data.imageio import read_rgb, sha256_file
from augment.data.keypoints import (
    IMAGE_SIZE,
    Annotations,
    find_keypoint_file,
    is_pairable_name,
    read_dataset_annotations,
    read_pairs,
)
from augment.data.market import DatasetError, MarketDataset, SkipCounter, read_market

# Official PATN: each training "epoch" is 4,000 random pairs (KeyDataset.__len__ in phase train).
OFFICIAL_EPOCH_PAIRS = 4000

# The decoded-image cache is on by default ("auto") when it holds at most this many bytes.
# Market-1501 train (12,936 images of 128x64x3 uint8) needs 318 MB, the embedded set a few MB.
CACHE_AUTO_LIMIT_BYTES = 512 * 2**20

# Which index splits a pairs file's names are looked up in, first match wins.
SPLIT_LOOKUP = {"train": ("train", "gallery", "query"), "test": ("gallery", "query", "train")}
MISSING_POLICIES = ("error", "skip")


@dataclass
class PairTable:
    """Validated pairs: P rows over M distinct images.

    ``src``/``tgt`` (P,) int64 index into ``image_names``/``image_paths``; ``keypoints``
    (M, 18, 2) int64 (y, x), -1 missing; ``lines`` (P,) line of each kept row in ``pairs_file``.
    """

    pairs_file: Path
    image_names: list[str]
    image_paths: list[Path]
    keypoints: np.ndarray
    src: np.ndarray
    tgt: np.ndarray
    lines: np.ndarray
    dataset_fingerprint: str
    pairs_sha256: str
    image_size: tuple[int, int] = IMAGE_SIZE  # (H, W) of every image
    skipped: SkipCounter = field(default_factory=SkipCounter)

    def __len__(self) -> int:
        return len(self.src)

    def pair_names(self, i: int) -> tuple[str, str]:
        return self.image_names[self.src[i]], self.image_names[self.tgt[i]]

    def summary_lines(self) -> list[str]:
        lines = [f"pairs {self.pairs_file}: {len(self)} pairs over {len(self.image_names)} images"]
        return lines + ["  " + s for s in self.skipped.lines()]


def _data_lines(path: Path) -> np.ndarray:
    """Line number (1-based) of every non-empty data row of a CSV, in the order read_pairs returns rows."""
    with open(path, newline="") as f:
        numbers = [i for i, line in enumerate(f, start=1) if line.strip()]
    return np.asarray(numbers[1:], dtype=np.int64)  # first non-empty line is the header


def load_pairs(
    root: str | os.PathLike,
    split: str = "train",
    *,
    keypoints_dir: str | os.PathLike | None = None,
    pairs_file: str | os.PathLike | None = None,
    missing: str = "error",
    dataset: MarketDataset | None = None,
    annotations: Annotations | None = None,
    image_size: tuple[int, int] | None = None,
) -> PairTable:
    """Read and validate the pairs of ``split`` ("train" or "test"); decodes no image.

    ``pairs_file`` overrides the standard ``market-pairs-{split}.csv`` (looked up in
    ``keypoints_dir``, then ``root``). ``dataset``/``annotations`` may be passed when already
    read. ``image_size`` (H, W) every image must have; None: the size of the first image
    (Market-1501: 128x64, the frame of the keypoint files). Raises :class:`DatasetError` as
    described in the module docstring.
    """
    if split not in SPLIT_LOOKUP:
        raise ValueError(f"unknown split {split!r}; splits are {tuple(SPLIT_LOOKUP)}")
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing={missing!r}; choose one of {MISSING_POLICIES}")
    root = Path(root)
    dataset = dataset if dataset is not None else read_market(root)
    annotations = annotations if annotations is not None else read_dataset_annotations(root, keypoints_dir)
    path = Path(pairs_file) if pairs_file is not None else find_keypoint_file(root, "pairs", split, keypoints_dir)
    pairs, lines = _read_pair_rows(path)
    index: dict = {}
    for s in reversed(SPLIT_LOOKUP[split]):
        index.update({r.name: r for r in dataset.split(s)})
    rows = _PairRows(path, lines, index, annotations, missing, f"{root} (splits {', '.join(SPLIT_LOOKUP[split])})")
    keep = rows.usable(pairs)

    kept = pairs[keep]
    if len(kept) == 0:
        raise DatasetError(f"{path}: no usable pairs left ({'; '.join(rows.skipped.lines())})")
    image_names = sorted(set(kept["from"]) | set(kept["to"]))
    image_paths = [index[n].path for n in image_names]
    if image_size is None:  # one decode; every later decode is checked against it
        image_size = read_rgb(image_paths[0]).shape[:2]
    position = {n: i for i, n in enumerate(image_names)}
    return PairTable(
        pairs_file=path,
        image_names=image_names,
        image_paths=image_paths,
        keypoints=annotations.get_many(image_names).astype(np.int64),
        src=np.fromiter((position[n] for n in kept["from"]), np.int64, len(kept)),
        tgt=np.fromiter((position[n] for n in kept["to"]), np.int64, len(kept)),
        lines=lines[keep],
        dataset_fingerprint=dataset.fingerprint(),
        pairs_sha256=sha256_file(path),
        image_size=(int(image_size[0]), int(image_size[1])),
        skipped=rows.skipped,
    )


def _read_pair_rows(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The pairs of ``path`` and the file line of each (DatasetError for a file without pairs)."""
    pairs = read_pairs(path)
    lines = _data_lines(path)
    if len(lines) != len(pairs):  # cannot happen for a file read_pairs accepted; guards the line numbers
        raise DatasetError(f"{path}: {len(pairs)} pairs but {len(lines)} data lines")
    if len(pairs) == 0:
        raise DatasetError(f"{path}: no pairs (header only)")
    return pairs, lines


@dataclass
class _PairRows:
    """Which pair rows name usable images: in the split's ``index`` and annotated. Market-rule
    drops (junk, distractors) are counted skips; other misses raise DatasetError unless
    ``missing == "skip"`` (then counted too)."""

    path: Path
    lines: np.ndarray  # file line of each row
    index: dict  # image name -> record, of the split
    annotations: Annotations
    missing: str
    dataset: str  # how errors name the dataset
    skipped: SkipCounter = field(default_factory=SkipCounter)

    def usable(self, pairs: pd.DataFrame) -> np.ndarray:
        """(N,) bool: rows whose two images are usable."""
        keep = np.ones(len(pairs), dtype=bool)
        for column in ("from", "to"):
            keep &= self._column(column, pairs[column].to_numpy())
        return keep

    def _column(self, column: str, names: np.ndarray) -> np.ndarray:
        keep = np.ones(len(names), dtype=bool)
        in_index = np.fromiter((n in self.index for n in names), bool, len(names))
        annotated = np.fromiter((n in self.annotations for n in names), bool, len(names))
        # Rows whose image the Market rules dropped (junk / distractor): counted skips.
        for i in np.flatnonzero(~in_index):
            where = f"{self.path}:{self.lines[i]}: {column} image {names[i]}"
            if not is_pairable_name(names[i]):
                self.skipped.add("pairs naming junk (-1) or distractor (0000) images", where)
            elif self.missing == "skip":
                self.skipped.add("pairs naming an image not in the dataset", where)
            else:
                n_bad = sum(1 for n in names[~in_index] if is_pairable_name(n))
                raise DatasetError(
                    f"{where} is not in the dataset {self.dataset}; "
                    f"{n_bad} {column!r} names of this file are missing. Is the pairs file for this dataset?"
                )
            keep[i] = False
        for i in np.flatnonzero(in_index & ~annotated):
            where = f"{self.path}:{self.lines[i]}: {column} image {names[i]}"
            if self.missing != "skip":
                raise DatasetError(f"{where} has no row in the annotation files ({self.annotations.source})")
            self.skipped.add("pairs naming an image without keypoints", where)
            keep[i] = False
        return keep


def decode_image(path: str | os.PathLike, image_size: tuple[int, int] | None = IMAGE_SIZE) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) RGB; DatasetError naming the file if unreadable or mis-sized."""
    img = read_rgb(path)
    if image_size is not None and img.shape[:2] != tuple(image_size):
        raise DatasetError(
            f"{path}: image is {img.shape[0]}x{img.shape[1]}, expected {image_size[0]}x{image_size[1]} "
            "like the dataset's other images"
        )
    return img


def to_model_range(img_uint8: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) RGB -> float32 (..., 3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(img_uint8))
    return t.movedim(-1, -3).float().div_(127.5).sub_(1.0)


class PairDataset(Dataset):
    """Validated pairs of a dataset root; item ``i`` is pair ``i`` as a batch-format dict of one sample.

    ``cache``: keep decoded images (uint8) in memory: True, False, or "auto" (on when the
    distinct images fit in :data:`CACHE_AUTO_LIMIT_BYTES`). With DataLoader workers each worker
    fills its own copy.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        *,
        keypoints_dir: str | os.PathLike | None = None,
        pairs_file: str | os.PathLike | None = None,
        missing: str = "error",
        cache: bool | str = "auto",
        image_size: tuple[int, int] | None = None,
        table: PairTable | None = None,
    ):
        if table is None:
            if root is None:
                raise ValueError("PairDataset needs a dataset root or a PairTable")
            table = load_pairs(
                root, split, keypoints_dir=keypoints_dir, pairs_file=pairs_file, missing=missing, image_size=image_size
            )
        self.table = table
        self.split = split
        h, w = table.image_size
        cache_bytes = len(table.image_names) * h * w * 3
        if cache == "auto":
            cache = cache_bytes <= CACHE_AUTO_LIMIT_BYTES
        elif not isinstance(cache, bool):
            raise ValueError(f"cache={cache!r}; choose True, False or 'auto'")
        self.cache_enabled = cache
        # np.empty does not touch the pages: memory is committed only as images are decoded.
        self._cache = np.empty((len(table.image_names), h, w, 3), np.uint8) if cache else None
        self._cached = np.zeros(len(table.image_names), bool) if cache else None

    def __len__(self) -> int:
        return len(self.table)

    def image(self, k: int) -> np.ndarray:
        """Distinct image ``k`` as uint8 (H, W, 3) RGB."""
        if self._cache is None:
            return decode_image(self.table.image_paths[k], self.table.image_size)
        if not self._cached[k]:
            self._cache[k] = decode_image(self.table.image_paths[k], self.table.image_size)
            self._cached[k] = True
        return self._cache[k]

    def __getitem__(self, i: int) -> dict:
        s, t = int(self.table.src[i]), int(self.table.tgt[i])
        return {
            "src_img": to_model_range(self.image(s)),
            "tgt_img": to_model_range(self.image(t)),
            "src_kps": torch.from_numpy(self.table.keypoints[s]),
            "tgt_kps": torch.from_numpy(self.table.keypoints[t]),
            "src_name": self.table.image_names[s],
            "tgt_name": self.table.image_names[t],
        }

    def batch(self, indices: Sequence[int]) -> dict:
        """Pairs ``indices`` collated into one batch dict (no DataLoader)."""
        items = [self[int(i)] for i in indices]
        return collate_pairs(items)


def collate_pairs(items: list[dict]) -> dict:
    return {
        k: (torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k]) else [it[k] for it in items])
        for k in items[0]
    }


class PairSampler(Sampler[list[int]]):
    """Seeded, resumable, infinite stream of batches of pair indices.

    Epoch ``e`` is ``epoch_size`` draws from ``numpy.random.default_rng([seed, e])``: uniform with
    replacement (``replacement=True``, the official PATN loader) or a random subset without
    replacement. Batches are consecutive runs of ``batch_size`` draws of the concatenated epochs
    (a batch may straddle two epochs), so the position after ``n`` batches is
    ``divmod(n * batch_size, epoch_size)`` whatever happened in between.

    The consumed position (``epoch``, ``index``) moves only through :meth:`advance`, which the
    training loop calls for each batch it has used; iterating (possibly ahead, in DataLoader
    prefetch) starts from the consumed position and never changes it. ``state_dict()`` is the
    position to checkpoint; a sampler built with it (or ``load_state_dict``) yields the same
    batches an uninterrupted run would.
    """

    def __init__(
        self, num_pairs: int, seed: int, batch_size: int, *, epoch_size: int | None = None, replacement: bool = True
    ):
        if num_pairs <= 0:
            raise ValueError("PairSampler needs at least one pair")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.num_pairs = int(num_pairs)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.replacement = bool(replacement)
        self.epoch_size = int(epoch_size) if epoch_size else self.num_pairs
        if not self.replacement and self.epoch_size > self.num_pairs:
            raise ValueError(f"epoch_size {self.epoch_size} > {self.num_pairs} pairs without replacement")
        self.epoch = 0
        self.index = 0

    def epoch_order(self, epoch: int) -> np.ndarray:
        """(epoch_size,) int64 pair indices of ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.replacement:
            return rng.integers(0, self.num_pairs, self.epoch_size, dtype=np.int64)
        return rng.permutation(self.num_pairs)[: self.epoch_size].astype(np.int64)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, index = self.epoch, self.index
        order = self.epoch_order(epoch)
        batch: list[int] = []
        while True:
            take = min(self.batch_size - len(batch), self.epoch_size - index)
            batch.extend(order[index : index + take].tolist())
            index += take
            if index == self.epoch_size:
                epoch, index = epoch + 1, 0
                order = self.epoch_order(epoch)
            if len(batch) == self.batch_size:
                yield batch
                batch = []

    def advance(self, samples: int) -> None:
        """Mark ``samples`` more draws as consumed by training."""
        self.epoch, self.index = divmod(self.epoch * self.epoch_size + self.index + int(samples), self.epoch_size)

    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "num_pairs": self.num_pairs,
            "epoch_size": self.epoch_size,
            "replacement": self.replacement,
            "epoch": self.epoch,
            "index": self.index,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "num_pairs", "epoch_size", "replacement"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"sampler state was saved with {key}={state[key]!r}, this run has {getattr(self, key)!r} "
                    "(resume with the same data and seed)"
                )
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


def make_loader(
    dataset: PairDataset, sampler: PairSampler, *, num_workers: int = 0, device: torch.device | str = "cpu"
) -> DataLoader:
    """DataLoader over ``sampler``'s batches; pinned memory when training on CUDA.

    The dataset has no randomness (no augmentation, as the official ``no_flip``), so worker
    processes need no seeding and any ``num_workers`` gives the same batches. The loader gets
    its own generator: creating an iterator otherwise draws a seed from the global torch RNG,
    which would shift the dropout masks of a resumed run against an uninterrupted one.
    """
    cuda = torch.device(device).type == "cuda"
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_pairs,
        pin_memory=cuda,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(sampler.seed),
        worker_init_fn=_ignore_sigint if num_workers > 0 else None,
        prefetch_factor=2 if num_workers > 0 else None,
    )


def _ignore_sigint(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group: workers leave it to the trainer, which stops cleanly.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def fixed_pairs(table: PairTable, count: int) -> np.ndarray:
    """``count`` pair indices spread evenly over the table (deterministic; for sample grids)."""
    count = min(count, len(table))
    return np.linspace(0, len(table) - 1, count).round().astype(np.int64)
