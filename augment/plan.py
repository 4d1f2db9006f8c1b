"""Augmentation plans: pure functions from a training-set index to a table of output images.

A plan has one row per image of the augmented training set: the real images kept, and
the images to generate (source image, target pose, label). Plans are deterministic in
(dataset, protocol, parameters, seed) and know nothing of generators, executors or Ray.

Protocols (the seed papers):

- ``portion`` (PATN Sec. 5): keep a random portion p of the real training images, at
  least one per identity; replace each removed image by a generated image from a random
  kept image of the same identity into the removed image's pose (label = identity,
  camera = the removed image's camera). ``target_poses="kept"`` ("Ours*") draws the
  target pose from the kept images instead. ``generate=False`` is the reduced set alone.
  Kept sets are nested across p for one seed (each identity's images are shuffled once and
  the first max(1, round(p * n)) kept), so the rows of a p-sweep are comparable.
- ``ratio`` (PATN Table 5, 2x/3x): all real images plus ratio-1 generated per real image,
  target poses drawn at random from the whole training set.
- ``poses`` (Deformable GAN appendix): K generated images per real image, target poses of
  any identity, label = the source's identity (``ratio`` r is ``poses`` with K = r - 1).

Keypoint policy (PATN trained only on images with all four torso joints Rhip, Lhip, Lsho,
Rsho, so its generator is undefined elsewhere): an image is *poseable* if it has an
annotation row with all four torso joints. Only poseable images serve as sources or target
poses. A generated row whose source or target pose would not be poseable is not planned,
and is counted in the plan summary by reason (``no_poseable_source`` when none of an
identity's kept images is poseable; ``target_not_poseable`` when the removed image itself
is not). Real images are kept whatever their keypoints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from augment.data.atomic import atomic_path
from augment.data.keypoints import NUM_JOINTS, Annotations, joints_present
from augment.data.market import MarketDataset, parse_market_name
from augment.runtime import UsageError

PLAN_COLUMNS = [
    "output_name",
    "pid",
    "camera",
    "kind",
    "source_name",
    "target_pose_name",
    "label",
    "method",
    "seed",
    "source_kps",
    "target_kps",
]
REAL, GENERATED = "real", "generated"
TARGET_POSES = ("removed", "kept", "all")


@dataclass(frozen=True)
class TrainIndex:
    """The training split as planning sees it: arrays over N images, in file order.

    ``keypoints`` is (N, 18, 2) int (y, x), -1 where missing (and for images without an
    annotation row); ``annotated`` (N,) says which images have a row.
    """

    names: tuple[str, ...]
    pids: np.ndarray
    cameras: np.ndarray
    keypoints: np.ndarray
    annotated: np.ndarray
    fingerprint: str

    @property
    def poseable(self) -> np.ndarray:
        """(N,) bool: has an annotation row with all four torso joints."""
        return self.annotated & joints_present(self.keypoints)

    @classmethod
    def from_dataset(cls, dataset: MarketDataset, annotations: Annotations) -> TrainIndex:
        names = tuple(r.name for r in dataset.train)
        annotated = np.array([n in annotations for n in names], dtype=bool)
        kps = np.full((len(names), NUM_JOINTS, 2), -1, dtype=np.int32)
        if annotated.any():
            kps[annotated] = annotations.get_many([n for n, a in zip(names, annotated) if a])
        return cls(
            names=names,
            pids=np.array([r.pid for r in dataset.train], dtype=np.int64),
            cameras=np.array([r.camera for r in dataset.train], dtype=np.int64),
            keypoints=kps,
            annotated=annotated,
            fingerprint=dataset.fingerprint(),
        )


@dataclass(frozen=True)
class PlanSpec:
    """Protocol and parameters of a plan (everything but the dataset)."""

    protocol: str  # key of PROTOCOLS
    portion: float | None = None
    target_poses: str = "removed"
    generate: bool = True
    per_image: int | None = None  # generated images per real image (ratio - 1, or K)
    method: str = "patn"
    seed: int = 0

    def validate(self) -> None:
        """Raises :class:`UsageError` naming the flag of the bad parameter (ValueError for an unknown protocol)."""
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; known: {sorted(PROTOCOLS)}")
        if self.seed < 0:
            raise UsageError("--seed", f"must be >= 0, got {self.seed}")
        if self.protocol == "portion":
            if self.portion is None or not (0.0 < self.portion <= 1.0):
                raise UsageError("--portion", f"must be in (0, 1], got {self.portion}")
            if self.target_poses not in ("removed", "kept"):
                raise UsageError(
                    "--target-poses", f"must be 'removed' or 'kept' for --portion, got {self.target_poses!r}"
                )
        elif self.protocol == "ratio":
            if self.per_image is None or self.per_image < 1:
                ratio = None if self.per_image is None else self.per_image + 1
                raise UsageError("--ratio", f"must be >= 2, got {ratio}")
        elif self.per_image is None or self.per_image < 1:
            raise UsageError("--poses-per-image", f"must be >= 1, got {self.per_image}")
        if self.generate and not self.method:
            raise UsageError("--method", "a generating plan needs a method")

    def name(self) -> str:
        """Short, file-system safe name, e.g. ``portion0.1-patn-s0`` (used for output folders)."""
        if self.protocol == "portion":
            what = f"portion{self.portion:g}"
            if self.target_poses == "kept":
                what += "-kept"
            if not self.generate:
                return f"{what}-none-s{self.seed}"
        elif self.protocol == "ratio":
            what = f"ratio{self.per_image + 1}"
        else:
            what = f"poses{self.per_image}"
        return f"{what}-{self.method}-s{self.seed}"


@dataclass
class Plan:
    """A plan table (one row per output image, :data:`PLAN_COLUMNS`) and its summary."""

    spec: PlanSpec
    table: pd.DataFrame
    summary: dict = field(default_factory=dict)

    def generated(self) -> pd.DataFrame:
        return self.table[self.table["kind"] == GENERATED]

    def plan_hash(self) -> str:
        """Hash of the rows and spec: two plans with equal hashes produce the same images."""
        h = hashlib.sha256(json.dumps(asdict(self.spec), sort_keys=True).encode())
        h.update(
            pd.util.hash_pandas_object(
                self.table[["output_name", "source_name", "target_pose_name", "seed"]], index=False
            ).values.tobytes()
        )
        return h.hexdigest()[:16]


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """Independent stream per (seed, keys...), so one identity's draws never shift another's.

    Keys are non-negative: per-identity streams are (1 + pid, stream), global ones (0, stream).
    """
    return np.random.default_rng([seed, *keys])


def _generated_name(base: str, method: str, k: int) -> str:
    return parse_market_name(base).with_tag(f"{method}-{k}").filename() if method else base


def reduced_portion_plan(index: TrainIndex, spec: PlanSpec) -> Plan:
    """PATN's reduced-portion protocol (see module docstring)."""
    spec.validate()
    poseable = index.poseable
    n = len(index.names)
    keep = np.zeros(n, dtype=bool)
    skipped = {"no_poseable_source": 0, "target_not_poseable": 0}
    gen_src, gen_tgt, gen_base = [], [], []
    for pid in np.unique(index.pids):
        members = np.flatnonzero(index.pids == pid)
        order = members[_rng(spec.seed, 1 + int(pid), 0).permutation(len(members))]
        k = max(1, int(round(spec.portion * len(members))))
        kept, removed = order[:k], order[k:]
        keep[kept] = True
        if not spec.generate or len(removed) == 0:
            continue
        sources = kept[poseable[kept]]
        if len(sources) == 0:
            skipped["no_poseable_source"] += len(removed)
            continue
        r = _rng(spec.seed, 1 + int(pid), 1)
        for rem in np.sort(removed):
            if spec.target_poses == "removed" and not poseable[rem]:
                skipped["target_not_poseable"] += 1
                continue
            gen_src.append(int(sources[r.integers(len(sources))]))
            gen_base.append(int(rem))
            gen_tgt.append(int(rem))
    if spec.target_poses == "kept" and gen_tgt:
        pool = np.flatnonzero(keep & poseable)
        r = _rng(spec.seed, 0, 2)
        gen_tgt = pool[r.integers(len(pool), size=len(gen_tgt))].tolist()
    real_idx = np.flatnonzero(keep)
    table = pd.concat(
        [
            _table(index, real_idx, np.full(len(real_idx), -1), real_idx, spec),
            _table(
                index,
                np.array(gen_src, dtype=np.int64),
                np.array(gen_tgt, dtype=np.int64),
                np.array(gen_base, dtype=np.int64),
                spec,
            ),
        ],
        ignore_index=True,
    )
    summary = _summary(index, spec, table, skipped)
    summary["kept_real"] = int(keep.sum())
    summary["removed_real"] = int(n - keep.sum())
    return Plan(spec, table, summary)


def pose_sampling_plan(index: TrainIndex, spec: PlanSpec) -> Plan:
    """All real images plus ``per_image`` generated per real image, target poses of any identity."""
    spec.validate()
    poseable = index.poseable
    n = len(index.names)
    pool = np.flatnonzero(poseable)
    sources = np.flatnonzero(poseable)
    skipped = {"source_not_poseable": int((~poseable).sum()) * spec.per_image}
    r = _rng(spec.seed, 0, 3)
    k = spec.per_image
    # one draw per (source, k), excluding the source itself by redrawing among the others
    draws = r.integers(len(pool) - 1, size=(len(sources), k)) if len(pool) > 1 else np.zeros((len(sources), k), int)
    src_pos = np.searchsorted(pool, sources)
    tgt = pool[draws + (draws >= src_pos[:, None])] if len(pool) > 1 else pool[draws]
    gen_src = np.repeat(sources, k)
    gen_tgt = tgt.reshape(-1)
    real_idx = np.arange(n)
    table = pd.concat(
        [
            _table(index, real_idx, np.full(n, -1), real_idx, spec),
            _table(index, gen_src, gen_tgt, gen_src, spec, per_base=k),
        ],
        ignore_index=True,
    )
    return Plan(spec, table, _summary(index, spec, table, skipped))


def _table(
    index: TrainIndex, src: np.ndarray, tgt: np.ndarray, base: np.ndarray, spec: PlanSpec, per_base: int = 1
) -> pd.DataFrame:
    """Rows for real (tgt == -1) or generated images; ``base`` gives name and camera."""
    n = len(src)
    names = np.array(index.names, dtype=object)
    is_gen = tgt >= 0
    if is_gen.any():
        k = np.arange(n) % per_base if per_base > 1 else np.zeros(n, dtype=int)
        out = [_generated_name(names[b], spec.method, int(kk)) for b, kk in zip(base, k)]
    else:
        out = names[src].tolist()
    safe_tgt = np.where(is_gen, tgt, 0)
    kps_src = index.keypoints[src].reshape(n, 2 * NUM_JOINTS).astype(np.int16)
    kps_tgt = np.where(is_gen[:, None], index.keypoints[safe_tgt].reshape(n, 2 * NUM_JOINTS), -1).astype(np.int16)
    # row seed: a stable function of (plan seed, output name) so it survives re-planning
    seeds = np.array([_name_seed(spec.seed, o) for o in out], dtype=np.int64) * is_gen
    return pd.DataFrame(
        {
            "output_name": out,
            "pid": index.pids[src].astype(np.int32),
            "camera": index.cameras[base].astype(np.int16),
            "kind": np.where(is_gen, GENERATED, REAL).tolist(),
            "source_name": names[src].tolist(),
            "target_pose_name": np.where(is_gen, names[safe_tgt], "").tolist(),
            "label": index.pids[src].astype(np.int32),
            "method": np.where(is_gen, spec.method, "").tolist(),
            "seed": seeds,
            "source_kps": list(kps_src),
            "target_kps": list(kps_tgt),
        },
        columns=PLAN_COLUMNS,
    )


def _name_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:7], "little")


def _summary(index: TrainIndex, spec: PlanSpec, table: pd.DataFrame, skipped: dict) -> dict:
    kinds = table["kind"].value_counts()
    return {
        "spec": asdict(spec),
        "plan_name": spec.name(),
        "dataset_fingerprint": index.fingerprint,
        "train_images": len(index.names),
        "train_identities": int(len(np.unique(index.pids))),
        "images_without_annotation": int((~index.annotated).sum()),
        "images_not_poseable": int((~index.poseable).sum()),
        "rows": len(table),
        "real_rows": int(kinds.get(REAL, 0)),
        "generated_rows": int(kinds.get(GENERATED, 0)),
        "identities_in_plan": int(table["pid"].nunique()),
        "skipped_generated": {k: int(v) for k, v in skipped.items()},
    }


PROTOCOLS: dict[str, Callable[[TrainIndex, PlanSpec], Plan]] = {
    "portion": reduced_portion_plan,
    "ratio": pose_sampling_plan,
    "poses": pose_sampling_plan,
}


def make_plan(index: TrainIndex, spec: PlanSpec) -> Plan:
    spec.validate()
    plan = PROTOCOLS[spec.protocol](index, spec)
    dup = plan.table["output_name"].duplicated()
    if dup.any():  # a bug, never bad input: names are unique by construction
        raise AssertionError(f"plan has duplicate output names, e.g. {plan.table['output_name'][dup].iloc[0]}")
    return plan


PLAN_SCHEMA_KEY = b"poseaug.plan"


def write_plan(plan: Plan, path: str | Path) -> Path:
    """Parquet, with the spec and summary in the file's metadata; written atomically."""
    path = Path(path)
    table = pa.Table.from_pandas(plan.table, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[PLAN_SCHEMA_KEY] = json.dumps({"spec": asdict(plan.spec), "summary": plan.summary}).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_plan(path: str | Path) -> Plan:
    path = Path(path)
    table = pq.read_table(path)
    meta = (table.schema.metadata or {}).get(PLAN_SCHEMA_KEY)
    if meta is None:
        raise ValueError(f"{path}: not a plan written by augment (no {PLAN_SCHEMA_KEY.decode()} metadata)")
    info = json.loads(meta)
    df = table.to_pandas()
    return Plan(PlanSpec(**info["spec"]), df, info["summary"])
