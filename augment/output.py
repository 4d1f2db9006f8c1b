"""The output folder: its paths, its run identity, and preparing it so that every kill window closes.

``run.json`` holds the folder's :class:`RunIdentity`: everything that changes an output byte (the
plan, the checkpoint's weights, the dataset's content fingerprint, precision, batch size, device
type, generator code version, the size rule). A run into a folder of another identity is refused,
or with ``--overwrite`` the folder is cleared and made afresh, never a mix of old and new images.

Kill windows. :func:`prepare_output` writes ``run.json`` (state ``preparing``) before anything else
of the run, then lays out the folder idempotently: folders made if absent, the real test split
linked (a link left by a moved dataset remade), stale temporary files removed, the plan written
atomically. A run killed at any point of it leaves a folder that the same command recognises by its
identity and completes. Clearing (``--overwrite``) removes ``run.json`` last, so a clear that is
killed half-way is still a folder of the old identity, cleared again by the rerun.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from augment.data.atomic import TMP_MARK, write_atomic
from augment.data.fingerprint import DigestCache
from augment.data.market import MARKET_DIRS, DatasetError, MarketDataset, link_split
from augment.plan import Plan, write_plan
from augment.runtime import UsageError

STATES = ("preparing", "generating", "complete")


@dataclass(frozen=True)
class OutputLayout:
    """Paths of an augmented dataset folder (Market-1501 layout plus the run's records)."""

    root: Path

    @property
    def train_dir(self) -> Path:
        return self.root / MARKET_DIRS["train"]

    @property
    def shards_dir(self) -> Path:
        return self.root / ".shards"

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    @property
    def preview_path(self) -> Path:
        return self.root / "preview.png"

    @property
    def run_info_path(self) -> Path:
        return self.root / "run.json"

    @property
    def digest_cache_path(self) -> Path:
        """The content fingerprint's digest cache (only a cache: any run may delete it)."""
        return self.root / ".digests.json"


@dataclass(frozen=True)
class RunIdentity:
    """What an output folder was made from; a re-run into the same folder must match it field for field.

    A run that generates nothing (real rows only) leaves the generator fields empty.
    """

    plan_hash: str
    checkpoint_hash: str  # the generator weights' content hash
    method: str
    dataset_fingerprint: str  # content fingerprint: every image's and the annotation file's bytes
    precision: str = ""  # fp32 | bf16 | fp16
    batch_size: int = 0  # batches are fixed by plan order and this size
    device_type: str = ""  # cpu | cuda
    cpu_threads: int = 0  # intra-op threads of each generator on CPU (0 on CUDA): they change the sums' order
    code_version: str = ""  # generators' and data layer's sources (content hash), torch, numpy, OpenCV versions
    size_rule: str = "refuse"

    def differences(self, other: RunIdentity | None) -> list[str]:
        if other is None:
            return ["version of augment.run (no identity it can read)"]
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    @classmethod
    def from_json(cls, data: object) -> RunIdentity | None:
        """The identity in a ``run.json`` dict, or None when it is not one this version writes."""
        if not isinstance(data, dict):
            return None
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k != "state"}
        if set(values) != known:
            return None
        try:
            return cls(**values)
        except TypeError:
            return None


class DeferredDigestCache(DigestCache):
    """The content fingerprint's digest cache, kept in the output folder: saved only by :meth:`flush`
    (after the folder is prepared, so a first run finds it empty), and best effort (only a cache)."""

    def save(self) -> None:
        self.changed = True

    def flush(self) -> None:
        if getattr(self, "changed", False) and self.path.parent.is_dir():
            try:
                DigestCache.save(self)
            except OSError:
                pass  # a read-only or full disk loses the cache, never the run


def read_identity(layout: OutputLayout) -> tuple[bool, RunIdentity | None]:
    """(whether ``run.json`` exists, the identity it holds or None when unreadable)."""
    try:
        text = layout.run_info_path.read_text()
    except FileNotFoundError:
        return False, None
    except (OSError, UnicodeDecodeError):
        return True, None
    try:
        return True, RunIdentity.from_json(json.loads(text))
    except ValueError:
        return True, None


def write_state(layout: OutputLayout, identity: RunIdentity, state: str) -> None:
    """``run.json``: the identity and how far the run got (``preparing``, ``generating``, ``complete``)."""
    assert state in STATES, state
    write_atomic(layout.run_info_path, json.dumps({**asdict(identity), "state": state}, indent=1).encode())


def check_plan_only(layout: OutputLayout, plan_hash: str, overwrite: bool) -> None:
    """``--plan-only`` into a folder holding a run of another plan: refused (or cleared with ``overwrite``),
    so that a folder's ``plan.parquet`` is always the plan of its ``run.json``."""
    _check_writable(layout.root)
    exists, previous = read_identity(layout)
    if exists and (previous is None or previous.plan_hash != plan_hash):
        if not overwrite:
            raise DatasetError(
                f"{layout.root}: holds a run of another plan_hash; use another --out, or pass --overwrite to replace it"
            )
        clear_output(layout)


def _check_writable(root: Path) -> None:
    """Refuse an output folder marked read-only (no write bit), which even root honours here."""
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is not None and existing.is_dir() and not existing.stat().st_mode & 0o222:
        mode = oct(existing.stat().st_mode & 0o777)
        raise UsageError("--out", f"{existing} is read-only (mode {mode}); make it writable or choose another --out")


def _has_content(layout: OutputLayout) -> bool:
    root = layout.root
    return root.exists() and any(p != layout.digest_cache_path for p in root.iterdir())


def prepare_output(
    plan: Plan, dataset: MarketDataset, layout: OutputLayout, identity: RunIdentity, *, overwrite: bool = False
) -> int:
    """Create (or re-open) the output folder; returns the number of stale temporary files removed.

    Refuses, before any work, a folder written with another identity (or not by this service)
    unless ``overwrite``, which clears it first. ``dataset``: the index whose test split is linked.
    Raises DatasetError (another run's folder) or UsageError (``--out`` read-only or not writable).
    """
    _check_writable(layout.root)
    try:
        _open_folder(layout, identity, overwrite)
        layout.root.mkdir(parents=True, exist_ok=True)
        write_state(layout, identity, "preparing")  # first: from here on a rerun recognises the folder
        layout.train_dir.mkdir(exist_ok=True)
        layout.shards_dir.mkdir(exist_ok=True)
        for split in ("gallery", "query"):  # the real test split, linked: query and gallery are the real ones
            _link_test_split(dataset, split, layout.root / MARKET_DIRS[split])
        stale = [p for d in (layout.train_dir, layout.shards_dir, layout.root) for p in d.glob(f".*{TMP_MARK}*")]
        for p in stale:
            p.unlink()
        write_plan(plan, layout.plan_path)  # always this identity's plan (a --plan-only run may have left another)
        write_state(layout, identity, "generating")
    except PermissionError as e:
        raise UsageError("--out", f"{e.filename or layout.root}: cannot write ({e.strerror})") from None
    return len(stale)


def _open_folder(layout: OutputLayout, identity: RunIdentity, overwrite: bool) -> None:
    """Refuse or clear a folder that is not this identity's."""
    root = layout.root
    exists, previous = read_identity(layout)
    if exists:
        diff = identity.differences(previous)
        if not diff:
            return
        if not overwrite:
            raise DatasetError(
                f"{root}: holds a run of another {', '.join(diff)}; use another --out, or pass --overwrite to "
                "regenerate it"
            )
    elif _has_content(layout):
        if not overwrite:
            raise DatasetError(f"{root}: not empty and not an augmentation output; use another --out or --overwrite")
    else:
        return
    clear_output(layout)


def clear_output(layout: OutputLayout) -> None:
    """Remove everything in the folder, ``run.json`` last (a killed clear stays recognisable)."""
    for p in layout.root.iterdir():
        if p == layout.run_info_path:
            continue
        if p.is_symlink() or p.is_file():
            p.unlink()
        else:
            shutil.rmtree(p)
    layout.run_info_path.unlink(missing_ok=True)


def _link_test_split(dataset: MarketDataset, split: str, dst: Path) -> None:
    """``link_split`` after removing a folder link that points elsewhere (a moved or changed dataset)."""
    if dst.is_symlink():
        folder = dataset.split_folder(split)
        want = str(folder.resolve()) if folder is not None and dataset.split(split) else None
        if os.readlink(dst) != want:
            dst.unlink()
    link_split(dataset, split, dst)
