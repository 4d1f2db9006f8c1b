"""Dataset layouts on disk, each read into the same :class:`~augment.data.index.MarketDataset` index.

=================  ===========================================================  ==========  ==================
layout             on disk                                                      names       skipped by id
=================  ===========================================================  ==========  ==================
market             ``bounding_box_train/``, ``bounding_box_test/``, ``query/``    market      junk, distractors
renamed            ``train/``, ``test/`` (pose-transfer repositories; no query)  market      junk, distractors
duke               DukeMTMC-reID: Market folders                                duke        none
cuhk03             Market folders of CUHK03-NP names (a ``detected/`` or          cuhk03      none
                   ``labeled/`` folder), or a CUHK03-NP root with one of them
cuhk03-detected    CUHK03-NP root: its ``detected/`` folder                     cuhk03      none
cuhk03-labeled     CUHK03-NP root: its ``labeled/`` folder                      cuhk03      none
msmt17             MSMT17_V1 (``train/``, ``test/``) or MSMT17_V2                msmt17      none
                   (``mask_train_v2/``, ``mask_test_v2/``) with ``list_train.txt``,
                   ``list_val.txt``, ``list_query.txt``, ``list_gallery.txt``; or
                   Market folders of MSMT17 names (what this project writes)
msmt17-trainval    as msmt17, the training split is list_train + list_val       msmt17      none
=================  ===========================================================  ==========  ==================

Detection (``layout=None``) is automatic where unambiguous: list files (or an ``MSMT17_V1``/``MSMT17_V2``
folder) mean MSMT17; ``detected/`` or ``labeled/`` mean CUHK03-NP (both present: ambiguous, pass
``cuhk03-detected`` or ``cuhk03-labeled``); Market folders are read with the name scheme most of their
file names follow (so an augmented DukeMTMC-reID set written by this project reads back as ``duke``);
``train/`` + ``test/`` holding files is the renamed Market layout.

Rules shared by every layout: the training split must exist and hold at least one usable image; a
missing gallery or query folder (or list file) is an empty split, recorded in ``missing_splits``
(the renamed layout has no query; a training-only copy has neither), and the commands that need it
(re-ID evaluation) refuse it there. Non-image files are skipped and counted; a file name that does
not follow the layout's scheme is a :class:`DatasetError` naming the file.
MSMT17: the person id of a list line must equal the one in the file name; MSMT17 names are unique
across the whole dataset (checked), since its per-identity folders are flattened; by default the
validation list is not training data (as in torchreid: published results train on list_train only)
and its images are counted as skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from augment.data.errors import DatasetError
from augment.data.index import MARKET_DIRS, SPLITS, ImageRecord, MarketDataset, SkipCounter
from augment.data.names import SCHEMES, ImageName, detect_scheme, is_image_file, parse_image_name
from augment.data.textfile import read_text, split_lines

RENAMED_DIRS = {"train": "train", "gallery": "test"}
CUHK03_VARIANTS = ("detected", "labeled")
MSMT17_VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
MSMT17_LISTS = {
    "train": "list_train.txt",
    "val": "list_val.txt",
    "query": "list_query.txt",
    "gallery": "list_gallery.txt",
}


@dataclass(frozen=True)
class Layout:
    """One registered layout: how to read it, and a line for messages and docs."""

    name: str
    description: str
    read: Callable[[Path, tuple], MarketDataset]


def skip_reason(split: str, name: ImageName) -> str | None:
    """None when the image belongs to ``split``, else why it is skipped (only Market names junk or distract)."""
    if name.is_junk:
        return f"junk (-1) images in {split}"
    if name.is_distractor and split != "gallery":
        return f"distractor (0000) images in {split}"
    return None


def _listing(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted((e for e in it if e.is_file()), key=lambda e: e.name)


def _check_train(root: Path, where: Path, train: list[ImageRecord], skipped: SkipCounter, files: int) -> None:
    """The training split is what every command works on: refuse one with no usable image, saying why."""
    if train:
        return
    if files == 0:
        why = "the folder is empty" if where.is_dir() else "the list names no image"
    else:
        why = f"all {files} files were skipped: " + "; ".join(f"{r} {n}" for r, n in sorted(skipped.counts.items()))
    raise DatasetError(f"{where}: no training images ({why}); {root} has nothing to train or augment from")


def _finish(
    root: Path,
    layout: str,
    found: dict[str, list[ImageRecord]],
    skipped: SkipCounter,
    *,
    splits: tuple[str, ...],
    missing: list[str],
    split_dirs: dict[str, Path] | None,
    train_source: Path,
) -> MarketDataset:
    """The index, once the training split (when asked for) is known to hold an image."""
    if "train" in splits:
        files = sum(n for r, n in skipped.counts.items() if r.endswith(" in train"))
        _check_train(root, train_source, found["train"], skipped, files)
    return MarketDataset(
        root, layout, found["train"], found["gallery"], found["query"], skipped, tuple(missing), split_dirs
    )


def read_folders(root: Path, dirs: dict[str, str], layout: str | None, scheme: str | None, splits) -> MarketDataset:
    """Market-style folders (one per split, images directly inside). ``scheme`` None: the names decide;
    ``layout`` None: named after the scheme."""
    listings: dict[str, list[os.DirEntry]] = {}
    missing = []
    for split in splits:
        folder = root / dirs[split] if split in dirs else None
        if folder is not None and folder.is_dir():
            listings[split] = _listing(folder)
        elif split == "train":
            raise DatasetError(f"{root}: missing the training folder {dirs['train']}/")
        else:
            missing.append(split)
    if scheme is None:
        scheme = detect_scheme(e.name for es in listings.values() for e in es if is_image_file(e.name)) or "market"
    skipped = SkipCounter()
    found: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
    for split, entries in listings.items():
        for e in entries:
            if not is_image_file(e.name):
                skipped.add(f"non-image files in {split}", e.name)
                continue
            name = parse_image_name(e.name, scheme, where=Path(e.path))
            reason = skip_reason(split, name)
            if reason is not None:
                skipped.add(reason, e.name)
                continue
            found[split].append(ImageRecord(e.name, Path(e.path), split, name.pid, name.camera, e.stat().st_size))
    split_dirs = {s: root / dirs[s] for s in listings}
    return _finish(
        root,
        layout or scheme,
        found,
        skipped,
        splits=splits,
        missing=missing,
        split_dirs=split_dirs,
        train_source=root / dirs["train"],
    )


def _has_market_dirs(root: Path) -> bool:
    return (root / MARKET_DIRS["train"]).is_dir() or (root / MARKET_DIRS["gallery"]).is_dir()


def read_market_layout(root: Path, splits) -> MarketDataset:
    if _has_market_dirs(root):
        return read_folders(root, MARKET_DIRS, "market", "market", splits)
    if (root / RENAMED_DIRS["train"]).is_dir():
        return read_folders(root, RENAMED_DIRS, "renamed", "market", splits)
    raise DatasetError(f"{root}: not a Market-1501 root: expected folders {', '.join(MARKET_DIRS.values())}")


def read_renamed(root: Path, splits) -> MarketDataset:
    return read_folders(root, RENAMED_DIRS, "renamed", "market", splits)


def _market_folders_of(scheme: str) -> Callable[[Path, tuple], MarketDataset]:
    def read(root: Path, splits) -> MarketDataset:
        if not _has_market_dirs(root):
            title = SCHEMES[scheme].title
            raise DatasetError(f"{root}: not a {title} root: expected folders {', '.join(MARKET_DIRS.values())}")
        return read_folders(root, MARKET_DIRS, scheme, scheme, splits)

    return read


def _cuhk03_variant(root: Path, variant: str | None) -> str:
    if variant is not None:
        if not (root / variant).is_dir():
            raise DatasetError(f"{root / variant}: missing CUHK03-NP folder {variant}/ (layout cuhk03-{variant})")
        return variant
    present = [v for v in CUHK03_VARIANTS if (root / v).is_dir()]
    if len(present) == 1:
        return present[0]
    if not present:
        raise DatasetError(
            f"{root}: not a CUHK03-NP root: expected detected/ or labeled/, each with {', '.join(MARKET_DIRS.values())}"
        )
    raise DatasetError(
        f"{root}: CUHK03-NP root with both detected/ and labeled/: say which one to read "
        "(layout cuhk03-detected or cuhk03-labeled)"
    )


def _read_cuhk03(variant: str | None) -> Callable[[Path, tuple], MarketDataset]:
    def read(root: Path, splits) -> MarketDataset:
        if variant is None and _has_market_dirs(root):
            return read_folders(root, MARKET_DIRS, "cuhk03", "cuhk03", splits)
        v = _cuhk03_variant(root, variant)
        if not _has_market_dirs(root / v):
            raise DatasetError(f"{root / v}: damaged CUHK03-NP copy: expected {', '.join(MARKET_DIRS.values())}")
        ds = read_folders(root / v, MARKET_DIRS, f"cuhk03-{v}", "cuhk03", splits)
        ds.root = root
        return ds

    return read


def _msmt17_base(root: Path) -> Path | None:
    """The folder holding MSMT17's list files: ``root`` itself or its one ``MSMT17_V1``/``MSMT17_V2`` child."""
    if any((root / f).is_file() for f in MSMT17_LISTS.values()):
        return root
    children = [root / v for v in MSMT17_VERSIONS if (root / v).is_dir()]
    if len(children) > 1:
        raise DatasetError(f"{root}: holds both MSMT17_V1/ and MSMT17_V2/: pass one of them as the dataset root")
    return children[0] if children else None


def is_msmt17_root(root: Path) -> bool:
    return _msmt17_base(root) is not None


def _msmt17_dirs(base: Path) -> tuple[Path, Path]:
    """(train image folder, test image folder) of an MSMT17 copy: V1's train/, test/ or V2's mask_*_v2/."""
    found = [(base / tr, base / te) for tr, te in MSMT17_VERSIONS.values() if (base / tr).is_dir()]
    if len(found) == 1:
        return found[0]
    names = " or ".join(f"{tr}/" for tr, _ in MSMT17_VERSIONS.values())
    if not found:
        raise DatasetError(f"{base}: damaged MSMT17 copy: list files but no training image folder ({names})")
    raise DatasetError(f"{base}: both {names} present: keep the one MSMT17 version the list files describe")


class _Sizes:
    """File sizes by folder, one directory scan per folder (MSMT17 has a folder per identity)."""

    def __init__(self):
        self._dirs: dict[Path, dict[str, int]] = {}

    def get(self, path: Path) -> int | None:
        listing = self._dirs.get(path.parent)
        if listing is None:
            try:
                listing = {e.name: e.stat().st_size for e in _listing(path.parent)}
            except (FileNotFoundError, NotADirectoryError):
                listing = {}
            self._dirs[path.parent] = listing
        return listing.get(path.name)


def _list_line(list_path: Path, line_no: int, line: str, image_dir: Path) -> tuple[Path, int, ImageName]:
    """One ``path pid`` line: the image path, the person id, the parsed name (checked against each other)."""
    where = f"{list_path}:{line_no}"
    parts = line.split()
    if len(parts) != 2 or not parts[1].isdigit():
        raise DatasetError(f"{where}: expected 'relative/path.jpg person_id', got {line[:80]!r}")
    rel = Path(parts[0])
    if rel.is_absolute() or ".." in rel.parts:
        raise DatasetError(f"{where}: {parts[0]!r} must be a path inside {image_dir}")
    pid = int(parts[1])
    name = parse_image_name(rel.name, "msmt17", where=where)
    if name.pid != pid:
        raise DatasetError(f"{where}: {parts[0]} has person id {pid} in the list but {name.pid:04d} in its name")
    return image_dir / rel, pid, name


def _read_list(list_path: Path, image_dir: Path, split: str, sizes: _Sizes) -> list[ImageRecord]:
    records, missing = [], []
    for line_no, line in enumerate(split_lines(read_text(list_path, "list file")), start=1):
        if not line.strip():
            continue
        path, pid, name = _list_line(list_path, line_no, line, image_dir)
        size = sizes.get(path)
        if size is None:
            missing.append((line_no, path))
            continue
        records.append(ImageRecord(path.name, path, split, pid, name.camera, size))
    if missing:
        (line_no, path), n = missing[0], len(missing)
        raise DatasetError(f"{list_path}:{line_no}: {path} does not exist ({n} listed images missing: damaged copy?)")
    return sorted(records, key=lambda r: r.name)


def _check_unique(found: dict[str, list[ImageRecord]]) -> None:
    """Flattened per-identity folders must not give two images one name."""
    seen: dict[str, ImageRecord] = {}
    for split in SPLITS:
        for r in found[split]:
            if r.name in seen:
                raise DatasetError(f"{r.path}: same file name as {seen[r.name].path}; names must be unique")
            seen[r.name] = r


def read_msmt17_lists(root: Path, splits, *, trainval: bool = False) -> MarketDataset:
    """MSMT17 V1/V2 from its list files (module docstring: rules)."""
    base = _msmt17_base(root)
    if base is None:
        raise DatasetError(f"{root}: not an MSMT17 root: expected {', '.join(MSMT17_LISTS.values())}")
    train_dir, test_dir = _msmt17_dirs(base)
    sizes, skipped, missing = _Sizes(), SkipCounter(), []
    found: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
    sources = {"train": ("train", train_dir), "query": ("query", test_dir), "gallery": ("gallery", test_dir)}
    for split in splits:
        key, image_dir = sources[split]
        list_path = base / MSMT17_LISTS[key]
        if not list_path.is_file():
            if split == "train":
                raise DatasetError(f"{list_path}: damaged MSMT17 copy: the training list file is missing")
            missing.append(split)
            continue
        found[split] = _read_list(list_path, image_dir, split, sizes)
    val_path = base / MSMT17_LISTS["val"]
    if "train" in splits and (trainval or val_path.is_file()):
        if not val_path.is_file():
            raise DatasetError(f"{val_path}: missing (layout msmt17-trainval trains on list_train + list_val)")
        val = _read_list(val_path, train_dir, "train", sizes)
        if trainval:
            found["train"] = sorted(found["train"] + val, key=lambda r: r.name)
        else:
            for r in val:
                skipped.add("validation images (list_val.txt) not used for training", r.name)
    _check_unique(found)
    layout = "msmt17-trainval" if trainval else "msmt17"
    return _finish(
        root,
        layout,
        found,
        skipped,
        splits=splits,
        missing=missing,
        split_dirs=None,
        train_source=base / MSMT17_LISTS["train"],
    )


def _read_msmt17(trainval: bool) -> Callable[[Path, tuple], MarketDataset]:
    def read(root: Path, splits) -> MarketDataset:
        if not trainval and not is_msmt17_root(root) and _has_market_dirs(root):
            return read_folders(root, MARKET_DIRS, "msmt17", "msmt17", splits)
        return read_msmt17_lists(root, splits, trainval=trainval)

    return read


LAYOUTS: dict[str, Layout] = {
    lay.name: lay
    for lay in (
        Layout(
            "market",
            "Market-1501 (bounding_box_train/, bounding_box_test/, query/; or train/, test/)",
            read_market_layout,
        ),
        Layout("renamed", "Market-1501 renamed by pose-transfer repositories (train/, test/)", read_renamed),
        Layout("duke", "DukeMTMC-reID (Market folders, names PPPP_cC_fFFFFFFF.jpg)", _market_folders_of("duke")),
        Layout("cuhk03", "CUHK03-NP (a detected/ or labeled/ folder, or a root with one of them)", _read_cuhk03(None)),
        Layout("cuhk03-detected", "CUHK03-NP root, its detected/ images", _read_cuhk03("detected")),
        Layout("cuhk03-labeled", "CUHK03-NP root, its labeled/ images", _read_cuhk03("labeled")),
        Layout("msmt17", "MSMT17 V1/V2 (list files; or Market folders of MSMT17 names)", _read_msmt17(False)),
        Layout("msmt17-trainval", "MSMT17 V1/V2, training split = list_train + list_val", _read_msmt17(True)),
    )
}


def detect_layout(root: Path) -> str:
    """The layout of ``root`` when its folders say it unambiguously (see the module docstring)."""
    if is_msmt17_root(root):
        return "msmt17"
    if any((root / v).is_dir() for v in CUHK03_VARIANTS) and not _has_market_dirs(root):
        return "cuhk03"
    if _has_market_dirs(root):
        return "market-folders"  # the file names decide the scheme
    train = root / RENAMED_DIRS["train"]
    if train.is_dir():
        with os.scandir(train) as it:
            if any(e.is_dir() for e in it):
                raise DatasetError(
                    f"{root}: train/ holds folders, as MSMT17 does, but {MSMT17_LISTS['train']} is missing "
                    "(damaged MSMT17 copy?)"
                )
        return "renamed"
    raise DatasetError(
        f"{root}: not a dataset root: expected folders {', '.join(MARKET_DIRS.values())} (Market-1501, "
        "DukeMTMC-reID), the renamed layout train/, test/, CUHK03-NP's detected/ or labeled/, or MSMT17's list files"
    )


def read_dataset(root: str | os.PathLike, *, splits=SPLITS, layout: str | None = None) -> MarketDataset:
    """Index ``root`` in ``layout`` (None: detected). See the module docstring for the rules."""
    root = Path(root)
    splits = tuple(splits)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise KeyError(f"unknown split {unknown[0]!r}; splits are {SPLITS}")
    if layout is not None and layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; layouts are {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root does not exist (pass --data DIR)")
    if layout is not None:
        return LAYOUTS[layout].read(root, splits)
    detected = detect_layout(root)
    if detected == "market-folders":
        return read_folders(root, MARKET_DIRS, None, None, splits)
    return LAYOUTS[detected].read(root, splits)
