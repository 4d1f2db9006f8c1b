"""Any Market-1501-layout folder (real, reduced or augmented) as a torchreid image dataset.

The training split comes from the folder; query and gallery from the real test split (an augmented folder
written by ``augment.run`` links its ``query/`` and ``bounding_box_test/`` to the real ones, or pass
``test_root``). Files are indexed by ``augment.data.market.read_market``, so the Market-1501 rules are the
project's: train drops junk (-1) and distractors (0000), the gallery keeps distractors and drops junk, the
query drops both; generated images (``PPPP_cCsS_FFFFFF_BB_<tag>.jpg``) keep their person id and camera.

What torchreid gets (its conventions for ImageDataset):
- train: (path, label, camid, 0) with labels 0..N-1 in ascending person-id order (torchreid needs them
  contiguous; ``pid_to_label`` keeps the mapping);
- query / gallery: (path, person id, camid, 0) with the original ids (distractors keep id 0);
- camid = camera - 1 (0-based, as torchreid's Market1501).

torchreid 0.2.5 keeps datasets in a global registry that refuses duplicate names, and ImageDataManager
instantiates the registered class three times (train, query, gallery) with fixed keyword arguments. So
``register_market_dir`` reads the folder once, builds a class bound to those lists (a class factory) and
registers it under a name derived from the folder paths and the content fingerprint: registering the same
content again returns the same name, two different folders (or a folder whose content changed) get two
names, all in one process.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from augment.data.market import DISTRACTOR_PID, JUNK_PID, DatasetError, ImageRecord, fingerprint_records, read_market

__all__ = ["ReidSplits", "load_splits", "register_market_dir", "registered_names", "dataset_class"]

NAME_PREFIX = "reid_eval_"

Item = tuple[str, int, int]  # (absolute image path, person id or label, 0-based camera id)


@dataclass(frozen=True)
class ReidSplits:
    """A training folder and a test split, indexed and relabelled for torchreid.

    train_items: (path, label 0..N-1, camid); query_items / gallery_items: (path, person id, camid).
    """

    train_root: Path
    test_root: Path
    train_items: tuple[Item, ...]
    query_items: tuple[Item, ...]
    gallery_items: tuple[Item, ...]
    pid_to_label: dict[int, int]
    train_fingerprint: str  # fingerprint of the training images (names and sizes)
    test_fingerprint: str  # fingerprint of query + gallery
    generated_train_images: int  # training images with a generator tag in their name
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def num_train_pids(self) -> int:
        return len(self.pid_to_label)

    @property
    def fingerprint(self) -> str:
        """Content identity of (training set, test split): 16 hex digits."""
        return hashlib.sha256(f"{self.train_fingerprint}/{self.test_fingerprint}".encode()).hexdigest()[:16]

    @property
    def registration_name(self) -> str:
        """torchreid dataset name: unique per (train folder, test folder, content)."""
        key = f"{self.train_root.resolve()}|{self.test_root.resolve()}|{self.fingerprint}"
        return NAME_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:12]

    def summary(self) -> dict:
        def stats(items):
            return {
                "images": len(items),
                "identities": len({i[1] for i in items}),
                "cameras": len({i[2] for i in items}),
            }

        return {
            "train_root": str(self.train_root),
            "test_root": str(self.test_root),
            "train": stats(self.train_items),
            "query": stats(self.query_items),
            "gallery": stats(self.gallery_items),
            "generated_train_images": self.generated_train_images,
            "real_train_images": len(self.train_items) - self.generated_train_images,
            "train_fingerprint": self.train_fingerprint,
            "test_fingerprint": self.test_fingerprint,
            "fingerprint": self.fingerprint,
            "skipped": dict(self.skipped),
        }


def _items(records: list[ImageRecord], pid_map: dict[int, int] | None = None) -> tuple[Item, ...]:
    return tuple((str(Path(r.path).absolute()), pid_map[r.pid] if pid_map else r.pid, r.camera - 1) for r in records)


def _check_test_split(test_root: Path, query: list[ImageRecord], gallery: list[ImageRecord]) -> None:
    """At least one query must have a true match in the gallery from another camera (else no metric exists)."""
    if not query:
        raise DatasetError(f"{test_root}/query: no query images (after skipping junk and distractors)")
    if not gallery:
        raise DatasetError(f"{test_root}/bounding_box_test: no gallery images (after skipping junk)")
    cams_by_pid: dict[int, set[int]] = {}
    for r in gallery:
        cams_by_pid.setdefault(r.pid, set()).add(r.camera)
    if not any(cams_by_pid.get(q.pid, set()) - {q.camera} for q in query):
        raise DatasetError(
            f"{test_root}: no query image has a gallery image of its person id from another camera; "
            "Rank-k and mAP are undefined (is --test-data the right test split?)"
        )


def load_splits(train_root: str | os.PathLike, test_root: str | os.PathLike | None = None) -> ReidSplits:
    """Index ``train_root``'s training split and ``test_root``'s (default: ``train_root``'s) query/gallery.

    Raises DatasetError naming the folder when a split is missing or empty, or no query can be evaluated.
    """
    train_root = Path(train_root)
    test_root = Path(test_root) if test_root is not None else train_root
    train_ds = read_market(train_root, splits=("train",))
    test_ds = read_market(test_root, splits=("gallery", "query"))
    if not train_ds.train:
        skipped = dict(train_ds.skipped.counts) or "nothing skipped"
        raise DatasetError(
            f"{train_root}: no training images in bounding_box_train/ (after skipping junk and distractors; {skipped})"
        )
    _check_test_split(test_root, test_ds.query, test_ds.gallery)
    pid_to_label = {pid: label for label, pid in enumerate(sorted({r.pid for r in train_ds.train}))}
    skipped = Counter(train_ds.skipped.counts) + Counter(test_ds.skipped.counts)
    return ReidSplits(
        train_root=train_root,
        test_root=test_root,
        train_items=_items(train_ds.train, pid_to_label),
        query_items=_items(test_ds.query),
        gallery_items=_items(test_ds.gallery),
        pid_to_label=pid_to_label,
        train_fingerprint=fingerprint_records(train_ds.train),
        test_fingerprint=fingerprint_records(test_ds.query + test_ds.gallery),
        generated_train_images=sum(1 for r in train_ds.train if r.market_name.is_generated),
        skipped=dict(skipped),
    )


def dataset_class(splits: ReidSplits) -> type:
    """A torchreid ImageDataset subclass whose instances serve ``splits`` (ImageDataManager's kwargs accepted)."""
    from reid_eval.compat import import_torchreid

    image_dataset = import_torchreid().reid.data.ImageDataset

    class MarketFolderDataset(image_dataset):
        # ignored by combineall when relabelling the test split for training
        _junk_pids = [DISTRACTOR_PID, JUNK_PID]
        reid_splits = splits

        def __init__(
            self, root="", split_id=0, cuhk03_labeled=False, cuhk03_classic_split=False, market1501_500k=False, **kwargs
        ):
            # root and the dataset-specific options ImageDataManager passes to every dataset do not apply here
            del root, split_id, cuhk03_labeled, cuhk03_classic_split, market1501_500k
            super().__init__(list(splits.train_items), list(splits.query_items), list(splits.gallery_items), **kwargs)

    MarketFolderDataset.__name__ = MarketFolderDataset.__qualname__ = f"MarketFolder_{splits.registration_name}"
    return MarketFolderDataset


def _image_registry() -> dict:
    from reid_eval.compat import import_torchreid

    return getattr(import_torchreid().reid.data.datasets, "__image_datasets")  # module-level dict


def registered_names() -> list[str]:
    """Names of the datasets this module registered in this process."""
    return sorted(n for n in _image_registry() if n.startswith(NAME_PREFIX))


def register_market_dir(
    train_root: str | os.PathLike, test_root: str | os.PathLike | None = None, splits: ReidSplits | None = None
) -> tuple[str, ReidSplits]:
    """Register ``train_root`` (+ the real test split) with torchreid; returns (name for ImageDataManager's
    sources/targets, the splits). Idempotent for unchanged content; ``splits`` skips re-reading the folders."""
    from reid_eval.compat import import_torchreid

    if splits is None:
        splits = load_splits(train_root, test_root)
    name = splits.registration_name
    registry = _image_registry()
    if name in registry:
        return name, registry[name].reid_splits
    import_torchreid().reid.data.register_image_dataset(name, dataset_class(splits))
    return name, splits
