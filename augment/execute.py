"""Executing a plan: the three batch stages, fixed batches, resumability, the manifest.

The stages are plain functions of one *batch payload* (a dict of lists/arrays for up to
``batch_size`` generated rows), so the in-process executor here (:data:`LOCAL_EXECUTOR`) and the
Ray executor in ``cluster/`` run exactly the same code on exactly the same batches:

    decode_stage(payload)        CPU: read and decode the source images (resized under the resize rule)
    GenerateStage(ckpt)(payload) the model (a GPU actor under Ray), one forward per payload: source -> target pose
    write_stage(payload, out)    CPU: encode JPEG, write atomically, hash, write a shard record

Fixed batches: the generated rows are cut into batches by plan order and batch size, always the
same whatever is already done (both are in the run identity). A batch with any row still to do is
run whole, so the model sees exactly the batch of an uninterrupted run, and only its rows still to
do are written (``write`` mask): a redone image has the uninterrupted run's bytes, whatever the
batch's effect on the arithmetic.

Resumability: an image is written under a temporary name and renamed; when the images of a
batch are on disk, the batch's records are written as one shard (``.shards/*.parquet``,
atomically). A row is done when a shard says so *and* the file on disk has the recorded
hash, so a run killed at any moment loses only unfinished batches, and a re-run does only
the rows not done. ``manifest.parquet`` is rebuilt from the plan and the shards at the end
(overwritten, never appended). The output folder itself: :mod:`augment.output`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from augment.data.atomic import atomic_path, write_atomic
from augment.data.checks import fit_to_size
from augment.data.imageio import encode_image, read_rgb, sha256_bytes, sha256_file
from augment.data.keypoints import NUM_JOINTS, Annotations, write_annotations
from augment.data.market import DatasetError, MarketDataset, place_file
from augment.output import OutputLayout, RunIdentity, prepare_output  # noqa: F401  (re-exported)
from augment.plan import GENERATED, REAL, Plan

# generated_at: when the generator finished the batch; finished_at: when its files and shard were written
# (under Ray the write tasks can lag the generator and catch up in a burst: rates use both, see steady_state)
RECORD_COLUMNS = [
    "output_name",
    "status",
    "reason",
    "output_hash",
    "seconds",
    "batch_id",
    "worker",
    "generated_at",
    "finished_at",
]
DONE, FAILED = "done", "failed"


def read_records(layout: OutputLayout) -> pd.DataFrame:
    """All shard records, the latest per output name."""
    files = sorted(layout.shards_dir.glob("*.parquet"))
    if not files:
        return pd.DataFrame(columns=RECORD_COLUMNS)
    df = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    return df.sort_values("finished_at", kind="stable").drop_duplicates("output_name", keep="last")


def done_names(layout: OutputLayout, records: pd.DataFrame | None = None) -> set[str]:
    """Output names recorded done whose file on disk still has the recorded hash."""
    records = read_records(layout) if records is None else records
    done = records[records["status"] == DONE]
    return {n for n, h in zip(done["output_name"], done["output_hash"]) if sha256_file(layout.train_dir / n) == h}


def make_payloads(
    rows: pd.DataFrame,
    dataset: MarketDataset,
    batch_size: int,
    *,
    pending: Collection[str] | None = None,
    size: tuple[int, int] | None = None,
    resize: bool = False,
) -> list[dict]:
    """Cut generated rows (plan order) into batch payloads: plain lists/arrays, cheap to ship to workers.

    ``rows``: all the plan's generated rows (the batches are fixed by their order and ``batch_size``);
    ``pending``: the output names still to do (None: all); batches without one are left out, the
    others carry a ``write`` mask. ``size``: the dataset's (H, W) every source must have, ``resize``:
    sources of another size are resized to it (the resize rule) instead of failing their row.
    """
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    paths = {r.name: str(r.path) for r in dataset.train}
    missing = sorted(set(rows["source_name"]) - paths.keys())
    if missing:
        raise DatasetError(f"plan names source images not in {dataset.root} train split, e.g. {missing[0]}")
    payloads = []
    for start in range(0, len(rows), batch_size):
        chunk = rows.iloc[start : start + batch_size]
        names = chunk["output_name"].tolist()
        write = [pending is None or n in pending for n in names]
        if not any(write):
            continue
        payload = {
            "batch_id": f"{names[0]}+{len(names)}",
            "output_name": names,
            "write": write,
            "source_path": [paths[s] for s in chunk["source_name"]],
            "source_kps": np.stack(chunk["source_kps"].to_numpy()).reshape(-1, NUM_JOINTS, 2).astype(np.int64),
            "target_kps": np.stack(chunk["target_kps"].to_numpy()).reshape(-1, NUM_JOINTS, 2).astype(np.int64),
            "seed": chunk["seed"].to_numpy(np.int64),
        }
        if size is not None:
            payload["size"], payload["resize"] = tuple(size), bool(resize)
        payloads.append(payload)
    return payloads


def _fit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return fit_to_size(img, np.full((NUM_JOINTS, 2), -1), size)[0]


def decode_stage(payload: dict) -> dict:
    """Adds ``src_img`` (B, H, W, 3) uint8 and ``error`` (B,) str ('' when fine).

    An unreadable source, or one whose size differs from the payload's ``size`` (without one: from
    the batch's first readable image), becomes a zero image with an error: its row is recorded failed,
    the batch goes on. With ``resize``, a source of another size is resized to ``size`` instead.
    """
    images, errors = [], []
    for path in payload["source_path"]:
        try:
            images.append(read_rgb(path))
            errors.append("")
        except DatasetError as e:
            images.append(None)
            errors.append(str(e))
    first = next((im.shape[:2] for im in images if im is not None), (128, 64))
    size = tuple(payload.get("size") or first)
    for i, (im, path) in enumerate(zip(images, payload["source_path"])):
        if im is not None and im.shape[:2] != size:
            if payload.get("resize"):
                images[i] = _fit(im, size)
            else:
                errors[i] = f"{path}: size {im.shape[:2]} differs from the dataset's {size}"
        if errors[i]:
            images[i] = np.zeros((*size, 3), np.uint8)
    return {**payload, "src_img": np.stack(images), "error": errors}


class GenerateStage:
    """Holds a generator on its device; ``__call__(payload)`` adds ``gen_img`` (B, H, W, 3) uint8.

    Ray Data constructs one per actor (``map_batches`` with a callable class).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        device: str | None = None,
        precision: str | None = None,
        torch_threads: int | None = None,
    ):
        import torch

        from augment.runtime import tune_malloc
        from generators.inference import Transferer

        tune_malloc()  # 2-3x faster CPU generation (its docstring)
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.transferer = Transferer(checkpoint, device=device, dtype=precision)

    def __call__(self, payload: dict) -> dict:
        t0 = time.perf_counter()
        out = dict(payload)
        # the payload is the model batch (payloads are cut at --batch-size): one forward, however large
        self.transferer.batch_size = max(1, len(payload["src_img"]))
        out["gen_img"] = self.transferer(payload["src_img"], payload["source_kps"], payload["target_kps"])
        out["model_seconds"] = time.perf_counter() - t0
        out["generated_at"] = time.time()
        return out


def write_stage(payload: dict, out_root: str | os.PathLike) -> pd.DataFrame:
    """Encode and write the batch's rows to do (``write`` mask) atomically, then its shard; returns the records."""
    layout = OutputLayout(Path(out_root))
    n = len(payload["output_name"])
    per_image = float(payload.get("model_seconds", 0.0)) / max(n, 1)
    write = payload.get("write") or [True] * n
    rows = []
    for name, img, err, todo in zip(payload["output_name"], payload["gen_img"], payload["error"], write):
        if not todo:  # done before, with the same batch: its file already holds these bytes
            continue
        if err:
            rows.append((name, FAILED, err, "", 0.0))
            continue
        data = encode_image(img, ext=Path(name).suffix)
        write_atomic(layout.train_dir / name, data)
        rows.append((name, DONE, "", sha256_bytes(data), per_image))
    now = time.time()
    records = pd.DataFrame(rows, columns=RECORD_COLUMNS[:5])
    records["batch_id"] = payload["batch_id"]
    records["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    records["generated_at"] = float(payload.get("generated_at", now))
    records["finished_at"] = now
    shard = layout.shards_dir / f"{sha256_bytes(payload['batch_id'].encode())[:16]}-{int(now * 1e6)}.parquet"
    with atomic_path(shard) as tmp:
        pq.write_table(pa.Table.from_pandas(records, preserve_index=False), tmp)
    return records


@dataclass(frozen=True)
class ExecOptions:
    """How generated rows are executed (shared by all executors).

    ``device`` and ``threads`` change output bytes (the convolutions sum in another order on another
    device or thread count), so the run identity records them as :meth:`Executor.resolve` fixes them.
    """

    checkpoint: Path
    out: Path
    batch_size: int = 32
    device: str | None = None  # None: CUDA when present, else CPU
    precision: str | None = None  # None (fp32), "bf16", "fp16"
    actors: int | None = None  # Ray: generator actors (default: one per GPU, or 1 on CPU)
    address: str | None = None  # Ray: cluster address; None starts a private local Ray
    threads: int | None = None  # CPU intra-op threads of each generator; None: the executor's default

    @property
    def device_type(self) -> str:
        return (self.device or "cpu").split(":")[0]


@dataclass(frozen=True)
class Executor:
    """A named way to run batch payloads through decode -> generate -> write.

    ``run(payloads, opts)`` returns once every payload's images and shard are on disk; the name is
    recorded in ``summary.json``. ``resolve_options(opts)`` fixes what the executor would otherwise
    decide while running (the device, the CPU threads of a generator), so that the run identity
    records exactly what is used (None: :func:`resolve_local`).
    """

    name: str
    run: Callable[[list[dict], ExecOptions], None]
    resolve_options: Callable[[ExecOptions], ExecOptions] | None = None

    def __call__(self, payloads: list[dict], opts: ExecOptions) -> None:
        self.run(payloads, opts)

    def resolve(self, opts: ExecOptions) -> ExecOptions:
        return (self.resolve_options or resolve_local)(opts)


def resolve_local(opts: ExecOptions) -> ExecOptions:
    """The device this process would use (CUDA when present), and on CPU its current thread count."""
    import torch

    from augment.runtime import resolve_device

    device = resolve_device(opts.device)
    threads = opts.threads or (torch.get_num_threads() if device.type == "cpu" else None)
    return replace(opts, device=str(device), threads=threads)


def run_local(payloads: list[dict], opts: ExecOptions) -> None:
    """In-process batched loop: decode, generate, write, one batch at a time (with ``opts.threads``,
    restored after)."""
    import torch
    from tqdm import tqdm

    threads = torch.get_num_threads()
    try:
        stage = GenerateStage(opts.checkpoint, device=opts.device, precision=opts.precision, torch_threads=opts.threads)
        n = sum(len(p["output_name"]) for p in payloads)
        with tqdm(total=n, unit="img", desc="generate (local)") as bar:
            for p in payloads:
                write_stage(stage(decode_stage(p)), opts.out)
                bar.update(len(p["output_name"]))
    finally:
        torch.set_num_threads(threads)


LOCAL_EXECUTOR = Executor("local", run_local)


def place_real_rows(
    rows: pd.DataFrame,
    dataset: MarketDataset,
    layout: OutputLayout,
    mode: str = "hardlink",
    *,
    size: tuple[int, int] | None = None,
    resized: Collection[str] = frozenset(),
) -> pd.DataFrame:
    """Link (or copy) the kept real images into the output train folder; idempotent.

    A row is done only when its file is on disk with the expected bytes: the source's, or, for a name
    in ``resized`` (the resize rule), the source resized to ``size`` and re-encoded. A source that
    cannot be read (gone or damaged since the checks) is recorded failed with the reason, never done.
    """
    paths = {r.name: r.path for r in dataset.train}
    recs = []
    now = time.time()
    for name, src in zip(rows["output_name"], rows["source_name"]):
        try:
            want = _place_real(paths[src], layout.train_dir / name, mode, size if name in resized else None)
            recs.append((name, DONE, "", want, 0.0, "real", "", now, now))
        except DatasetError as e:
            recs.append((name, FAILED, str(e), "", 0.0, "real", "", now, now))
    return pd.DataFrame(recs, columns=RECORD_COLUMNS)


def _place_real(src: Path, dst: Path, mode: str, size: tuple[int, int] | None) -> str:
    """Put one real image at ``dst`` (resized to ``size`` when given); returns the hash it has there."""
    data = None
    if size is not None:
        data = encode_image(_fit(read_rgb(src), size), ext=dst.suffix)
        want = sha256_bytes(data)
    else:
        want = sha256_file(src)
        if want is None:
            raise DatasetError(f"{src}: source image not found")
    if sha256_file(dst) != want:
        if data is not None:
            write_atomic(dst, data)
        else:
            place_file(src, dst, mode)
    if sha256_file(dst) != want:
        raise DatasetError(f"{dst}: does not hold {src}'s bytes after placing it")
    return want


def build_manifest(plan: Plan, records: pd.DataFrame, identity: RunIdentity) -> pd.DataFrame:
    """The plan plus what execution did: status (done / failed / pending), reason, hash, timing."""
    m = plan.table.merge(records, on="output_name", how="left")
    m["status"] = m["status"].fillna("pending")
    m["reason"] = m["reason"].fillna("")
    m["output_hash"] = m["output_hash"].fillna("")
    m["seconds"] = m["seconds"].fillna(0.0)
    m["checkpoint_hash"] = np.where(m["kind"] == GENERATED, identity.checkpoint_hash, "")
    return m


def write_manifest(manifest: pd.DataFrame, layout: OutputLayout) -> Path:
    with atomic_path(layout.manifest_path) as tmp:
        pq.write_table(pa.Table.from_pandas(manifest, preserve_index=False), tmp)
    return layout.manifest_path


def write_train_annotations(manifest: pd.DataFrame, layout: OutputLayout) -> Path:
    """Keypoints of the output train images (real: their own; generated: the target pose)."""
    done = manifest[manifest["status"] == DONE]
    kps = np.where(
        (done["kind"] == REAL).to_numpy()[:, None],
        np.stack(done["source_kps"].to_numpy()) if len(done) else np.zeros((0, 2 * NUM_JOINTS)),
        np.stack(done["target_kps"].to_numpy()) if len(done) else np.zeros((0, 2 * NUM_JOINTS)),
    ).reshape(-1, NUM_JOINTS, 2)
    return write_annotations(
        layout.root / "market-annotation-train.csv", Annotations(done["output_name"].tolist(), kps)
    )


def _preview_tiles(row, paths: dict, layout: OutputLayout, size: tuple[int, int] | None) -> list | None:
    """source | target pose | generated of one row, each fitted to ``size``; None when one cannot be read."""
    try:
        tiles = [
            read_rgb(paths[row.source_name]),
            read_rgb(paths[row.target_pose_name]),
            read_rgb(layout.train_dir / row.output_name),
        ]
    except (DatasetError, KeyError):
        return None
    size = size or tiles[2].shape[:2]
    return [_fit(t, size) if t.shape[:2] != tuple(size) else t for t in tiles]


def write_preview(
    manifest: pd.DataFrame,
    dataset: MarketDataset,
    layout: OutputLayout,
    *,
    rows: int = 8,
    seed: int = 0,
    size: tuple[int, int] | None = None,
) -> Path | None:
    """PNG grid of random generated images: source | target pose (the real image) | generated.

    A row whose images cannot be read (changed since the checks) is left out of the grid; tiles of
    another size are fitted to ``size`` (default: the generated image's).
    """
    import cv2

    gen = manifest[(manifest["kind"] == GENERATED) & (manifest["status"] == DONE)]
    if gen.empty:
        return None
    pick = gen.iloc[np.sort(np.random.default_rng(seed).choice(len(gen), min(rows, len(gen)), replace=False))]
    paths = {r.name: r.path for r in dataset.train}
    tiles = []
    for r in pick.itertuples():
        row = _preview_tiles(r, paths, layout, size)
        if row is not None:
            tiles.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in row], 1))
    if not tiles:
        return None
    grid = np.concatenate(tiles, axis=0)
    header = np.full((16, grid.shape[1], 3), 255, np.uint8)
    w = grid.shape[1] // 3
    for i, label in enumerate(["source", "target pose", "generated"]):
        cv2.putText(header, label, (i * w + 3, 12), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.concatenate([header, grid], axis=0)
    write_atomic(layout.preview_path, encode_image(grid, ".png"))
    return layout.preview_path
