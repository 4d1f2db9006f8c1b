"""Keypoints for any re-ID dataset: ``python -m augment.annotate --data DIR [--weights PATH]``.

Runs the CMU OpenPose COCO-18 body network with PATN's multi-scale decoding (the implementation the PCKh
metric uses: :mod:`generators.quality.openpose`, :mod:`generators.quality.pose_decode`) over every indexed
image of a dataset (every split of every layout :func:`augment.data.market.read_market` reads), batched by
image size, on the GPU when present, and writes the community files into ``--out``:

- ``market-annotation-train.csv`` (the training split) and ``market-annotation-test.csv`` (gallery and
  query), rows sorted by name: ``name:[18 y]:[18 x]``, -1 where a joint is missing, one person per crop (the
  highest total score, as the official script picks it), coordinates in the image's own pixel frame;
- ``market-pairs-train.csv`` (every ordered pair of one person's images that both have the four torso
  joints) and ``market-pairs-test.csv`` (12,000 of those drawn with ``random_state=0``), the community rule
  of :func:`augment.data.keypoints.build_pairs`;
- ``annotate-report.json``: images, joints found per image, images without the four torso joints,
  failures by name, pairs, and the agreement with a community annotation CSV when one exists.

``--out`` defaults to ``runs/annotate/<dataset folder name>/``. The input dataset is never written to
unless ``--out`` names its root; a folder inside the dataset is refused, and in the root a CSV this
command did not write (the community file) is never replaced.

Resumable: the images are cut into shards of ``shard_size`` in a fixed order; each finished shard is
written atomically to ``annotate-progress/<run id>/``, the run id hashing the dataset's index, the weight
file's bytes, the search settings and the shard size. A killed run resumes at the first missing shard
and gives the same files as an uninterrupted one; a rerun of a finished run only rewrites the outputs.
An image that cannot be decoded, or is too narrow for the network, is a named failure and has no row.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from augment.annotate_report import AnnotateReport, agreement, build_report
from augment.data.atomic import TMP_MARK, write_json_atomic
from augment.data.errors import DatasetError
from augment.data.imageio import read_rgb, sha256_file
from augment.data.index import SPLITS, ImageRecord, MarketDataset
from augment.data.keypoints import (
    ANNOTATION_FILES,
    DEFAULT_TEST_PAIRS,
    NUM_JOINTS,
    PAIRS_FILES,
    Annotations,
    build_pairs,
    read_annotations,
    write_annotations,
    write_pairs,
)
from augment.data.market import LAYOUTS, read_market
from augment.runtime import UsageError, resolve_device
from generators.quality.openpose import WEIGHTS, BodyPoseNet, load_body_pose
from generators.quality.pose_decode import PoseConfig, decode, pose_maps
from generators.quality.resize import scaled_size
from generators.quality.weights import MetricWeightsError, find_weights, torch_cache_dir

DEFAULT_RUNS = Path("runs") / "annotate"
PROGRESS_DIR = "annotate-progress"
REPORT_FILE = "annotate-report.json"
WRITTEN_FILE = "written.json"  # in PROGRESS_DIR: digests of the CSVs this command wrote (the root guard)
OUTPUT_FILES = (*ANNOTATION_FILES.values(), *PAIRS_FILES.values())
TEST_SPLITS = ("gallery", "query")  # the community test CSV covers both
FORMAT_VERSION = 1  # of the shard files; part of the run id
DECODE_THREADS = 4  # image decoding ahead of the network (OpenCV releases the GIL)


class AnnotateWeightsError(MetricWeightsError):
    """The OpenPose body weights are not on this machine; the message names the files, the publisher and
    ``--weights`` (the metric's own error names the scorer's flags)."""

    def __init__(self, tried: Sequence[Path]):
        self.spec, self.tried = WEIGHTS, tuple(Path(p) for p in tried)
        where = " or ".join(str(p) for p in self.tried)
        FileNotFoundError.__init__(
            self,
            f"OpenPose COCO-18 body weights not found ({where}). Annotation needs the real network: "
            f"{' or '.join(WEIGHTS.files)}, published by {WEIGHTS.source}. This project never downloads "
            f"them: give --weights PATH, or put {WEIGHTS.files[0]} in the torch cache folder {torch_cache_dir()}.",
        )


@dataclass(frozen=True)
class AnnotateOptions:
    """What to annotate, with which network, and where the files go."""

    data: Path  # dataset root, any layout read_market reads
    weights: Path | None = None  # body_pose_model.pth / pose_estimator.h5; None: the torch cache folder
    layout: str | None = None  # None: detected
    out: Path | None = None  # None: runs/annotate/<dataset folder name>
    keypoints: Path | None = None  # community annotation CSVs to compare with; None: the dataset root
    batch_size: int = 16  # images per network pass (one image size per batch)
    device: str = "auto"
    pose: PoseConfig = field(default_factory=PoseConfig)  # PATN's search: scales 0.5, 1, 1.5, 2; boxsize 368
    shard_size: int = 128  # images per progress shard: what a kill can lose
    progress: bool = True  # a progress bar on stderr

    def validate(self) -> None:
        if self.batch_size < 1:
            raise UsageError("--batch-size", f"must be >= 1, got {self.batch_size}")
        if self.shard_size < 1:
            raise UsageError("--shard-size", f"must be >= 1, got {self.shard_size}")
        if any(not s > 0 for s in self.pose.scales):
            raise UsageError("--scales", f"every scale must be > 0, got {list(self.pose.scales)}")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise UsageError("--layout", f"{self.layout!r} is not one of {', '.join(LAYOUTS)}")


@dataclass
class ShardResult:
    """One shard's outcome: keypoint rows (name -> (18, 2) (y, x)) and failures (name -> reason)."""

    rows: dict[str, np.ndarray]
    failures: dict[str, str]

    def to_json(self) -> dict:
        rows = [[n, kp[:, 0].tolist(), kp[:, 1].tolist()] for n, kp in self.rows.items()]
        return {"format": FORMAT_VERSION, "rows": rows, "failures": sorted(self.failures.items())}

    @classmethod
    def from_json(cls, data: dict) -> ShardResult:
        rows = {n: np.stack([ys, xs], axis=1).astype(np.int64) for n, ys, xs in data["rows"]}
        return cls(rows, dict(data["failures"]))


@dataclass
class _Inputs:
    dataset: MarketDataset
    out: Path
    weights: Path
    device: torch.device
    run_dir: Path  # this run id's shard folder
    ident: dict  # what the run id hashes
    in_dataset_root: bool  # --out is the dataset root (the root guard applies)


# ----------------------------------------------------------------------------------------------
# resolve


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def resolve_out(opts: AnnotateOptions, root: Path) -> tuple[Path, bool]:
    """(output folder, whether it is the dataset root). Never inside the dataset unless it is the root."""
    out = Path(opts.out) if opts.out is not None else DEFAULT_RUNS / root.resolve().name
    real_out, real_root = out.resolve(), root.resolve()
    if real_out != real_root and _inside(real_out, real_root):
        raise UsageError(
            "--out", f"{out} is inside the dataset {root}; give a folder outside it, or the dataset root itself"
        )
    return out, real_out == real_root


def find_body_weights(path: Path | None) -> Path:
    """The weight file (``path``, or the torch cache folder); :class:`AnnotateWeightsError` when absent."""
    try:
        return find_weights(WEIGHTS, path)
    except MetricWeightsError as e:
        raise AnnotateWeightsError(e.tried) from None


def run_id(dataset: MarketDataset, weights_digest: str, opts: AnnotateOptions) -> tuple[str, dict]:
    """16 hex digits naming the shard folder: everything the shards' content depends on."""
    ident = {
        "format": FORMAT_VERSION,
        "dataset": dataset.fingerprint(),
        "layout": dataset.layout,
        "weights": weights_digest,
        "pose": asdict(opts.pose),
        "shard_size": opts.shard_size,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16], ident


def resolve_inputs(opts: AnnotateOptions) -> _Inputs:
    """Index the dataset, place the output, resolve the device, find the weights, name the run; writes
    nothing, so every bad input is refused before any file appears."""
    opts.validate()
    dataset = read_market(opts.data, layout=opts.layout)
    out, in_root = resolve_out(opts, dataset.root)
    device = resolve_device(opts.device)
    weights = find_body_weights(opts.weights)
    rid, ident = run_id(dataset, sha256_file(weights) or "", opts)
    inputs = _Inputs(dataset, out, weights, device, out / PROGRESS_DIR / rid, ident, in_root)
    if in_root:
        check_root_outputs(inputs)
    return inputs


def prepare_run_dir(inputs: _Inputs) -> None:
    """The run's shard folder, without a killed writer's temporary files, and its ``run.json``."""
    inputs.run_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*inputs.run_dir.glob(f".*{TMP_MARK}*"), *inputs.out.glob(f".*{TMP_MARK}*")]:
        stale.unlink(missing_ok=True)
    data = {**inputs.ident, "data": str(inputs.dataset.root), "weights_file": str(inputs.weights)}
    write_json_atomic(inputs.run_dir / "run.json", data)


def load_network(weights: Path, device: torch.device) -> BodyPoseNet:
    """The frozen body network on ``device``; a file of another network is a ``--weights`` usage error."""
    try:
        net = load_body_pose(weights)
    except ValueError as e:
        raise UsageError("--weights", str(e)) from None
    return net.to(device)


# ----------------------------------------------------------------------------------------------
# the root guard: never replace a community file in the dataset


def _written(out: Path) -> set[str]:
    path = out / PROGRESS_DIR / WRITTEN_FILE
    try:
        return set(json.loads(path.read_text())["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def check_root_outputs(inputs: _Inputs) -> None:
    """With ``--out`` = the dataset root, refuse before any work when an output name exists there with
    content this command never wrote (the community file, or the user's)."""
    ours = _written(inputs.out)
    for name in OUTPUT_FILES:
        path = inputs.out / name
        if path.is_file() and sha256_file(path) not in ours:
            raise UsageError(
                "--out",
                f"{path} exists in the dataset and was not written by augment.annotate; it is never replaced: "
                "annotate into another folder (the default runs/annotate/...) or move the file away first",
            )


def _record_written(out: Path, digests: Sequence[str]) -> None:
    """Remember the digests before the files are replaced, so a kill in between never orphans ours."""
    write_json_atomic(out / PROGRESS_DIR / WRITTEN_FILE, {"sha256": sorted(_written(out) | set(digests))})


# ----------------------------------------------------------------------------------------------
# one shard


def _read(rec: ImageRecord) -> tuple[np.ndarray | None, str]:
    """(RGB image, '') or (None, why it cannot be read)."""
    try:
        return read_rgb(rec.path), ""
    except DatasetError as e:
        return None, str(e)


def too_small(shape: tuple[int, int], cfg: PoseConfig) -> str:
    """Why the network cannot see an (H, W) image at every scale ('' when it can): a side under the stride."""
    h, w = shape
    for s in cfg.scales:
        sh, sw = scaled_size((h, w), s * cfg.boxsize / h)
        if min(sh, sw) < cfg.stride:
            return f"{h}x{w} image is {sh}x{sw} at scale {s}, smaller than the network's stride {cfg.stride}"
    return ""


def image_keypoints(net: BodyPoseNet, images: np.ndarray, cfg: PoseConfig) -> np.ndarray:
    """(N, 18, 2) int (y, x), -1 missing, of (N, H, W, 3) uint8 RGB images of one size: the PCKh path."""
    return decode(*pose_maps(net, images, cfg), cfg)


def annotate_shard(
    net: BodyPoseNet, records: Sequence[ImageRecord], images: Sequence[tuple[np.ndarray | None, str]], opts
) -> ShardResult:
    """Keypoints of one shard's images, in batches of ``opts.batch_size`` images of one size (shard order
    kept within a size), so a shard's result never depends on how the run reached it."""
    failures: dict[str, str] = {}
    by_size: dict[tuple[int, int], list[tuple[str, np.ndarray]]] = {}
    for rec, (img, why) in zip(records, images):
        why = why or too_small(img.shape[:2], opts.pose)
        if why:
            failures[rec.name] = why
        else:
            by_size.setdefault(img.shape[:2], []).append((rec.name, img))
    found: dict[str, np.ndarray] = {}
    for group in by_size.values():
        for start in range(0, len(group), opts.batch_size):
            chunk = group[start : start + opts.batch_size]
            kps = image_keypoints(net, np.stack([img for _, img in chunk]), opts.pose)
            found.update((name, kp) for (name, _), kp in zip(chunk, kps))
    rows = {r.name: found[r.name] for r in records if r.name in found}
    return ShardResult(rows, failures)


# ----------------------------------------------------------------------------------------------
# all shards


def work_order(dataset: MarketDataset) -> list[ImageRecord]:
    """Every indexed image: splits in order, names sorted within each (the shards' fixed order)."""
    return sorted(dataset.records(), key=lambda r: (SPLITS.index(r.split), r.name))


def shard_path(run_dir: Path, k: int) -> Path:
    return run_dir / f"shard-{k:05d}.json"


def load_shard(path: Path, records: Sequence[ImageRecord]) -> ShardResult | None:
    """A finished shard, or None when absent or not this shard's (it is then computed again)."""
    try:
        result = ShardResult.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):  # absent, or not a shard file
        return None
    if sorted([*result.rows, *result.failures]) != sorted(r.name for r in records):
        return None
    return result


def run_shards(
    net_factory: Callable[[], BodyPoseNet], inputs: _Inputs, opts: AnnotateOptions, log
) -> tuple[list[ShardResult], int]:
    """Every shard's result (finished ones read back, the rest computed in order and written as they
    finish) and the number read back. The network is loaded only when a shard needs it."""
    records = work_order(inputs.dataset)
    shards = [records[i : i + opts.shard_size] for i in range(0, len(records), opts.shard_size)]
    results: list[ShardResult | None] = [load_shard(shard_path(inputs.run_dir, k), s) for k, s in enumerate(shards)]
    todo = [k for k, r in enumerate(results) if r is None]
    done_images = sum(len(s) for k, s in enumerate(shards) if results[k] is not None)
    if log and len(todo) < len(shards):
        log(f"[annotate] resuming: {len(shards) - len(todo)} of {len(shards)} shards done ({done_images} images)")
    if todo:
        net = net_factory()
        _compute(net, shards, todo, results, inputs, opts, done_images, len(records))
    return results, len(shards) - len(todo)  # type: ignore[return-value]


def _compute(net, shards, todo, results, inputs: _Inputs, opts: AnnotateOptions, done: int, total: int) -> None:
    """The missing shards in order, the next shard's images decoding while the network runs."""
    from tqdm import tqdm

    with (
        ThreadPoolExecutor(DECODE_THREADS) as pool,
        tqdm(total=total, initial=done, unit="img", desc="annotate", file=sys.stderr, disable=not opts.progress) as bar,
    ):

        def submit(k: int) -> list[Future]:
            return [pool.submit(_read, r) for r in shards[k]]

        pending = submit(todo[0])
        for i, k in enumerate(todo):
            futures, pending = pending, (submit(todo[i + 1]) if i + 1 < len(todo) else [])
            result = annotate_shard(net, shards[k], [f.result() for f in futures], opts)
            write_json_atomic(shard_path(inputs.run_dir, k), result.to_json(), indent=None)
            results[k] = result
            bar.update(len(shards[k]))


# ----------------------------------------------------------------------------------------------
# outputs


def split_annotations(inputs: _Inputs, results: Sequence[ShardResult]) -> dict[str, Annotations]:
    """{"train": ..., "test": ...}: the rows of each community file, sorted by name."""
    rows = {n: kp for r in results for n, kp in r.rows.items()}
    out = {}
    for key, splits in (("train", ("train",)), ("test", TEST_SPLITS)):
        names = sorted(rec.name for s in splits for rec in inputs.dataset.split(s) if rec.name in rows)
        coords = np.array([rows[n] for n in names], dtype=np.int32).reshape(-1, NUM_JOINTS, 2)
        out[key] = Annotations(names, coords, source=str(inputs.out / ANNOTATION_FILES[key]))
    return out


def write_outputs(inputs: _Inputs, annotations: dict[str, Annotations]) -> dict[str, int]:
    """The four community CSVs (atomically); returns the number of pairs per file."""
    pairs = {}
    tables = {}
    for key, ann in annotations.items():
        sample = DEFAULT_TEST_PAIRS if key == "test" else None
        tables[key] = build_pairs(ann, sample=sample, random_state=0)
        pairs[key] = len(tables[key])
    staging = inputs.run_dir / "outputs"
    staging.mkdir(exist_ok=True)
    for key, ann in annotations.items():
        write_annotations(staging / ANNOTATION_FILES[key], ann)
        write_pairs(staging / PAIRS_FILES[key], tables[key])
    if inputs.in_dataset_root:
        _record_written(inputs.out, [sha256_file(staging / name) or "" for name in OUTPUT_FILES])
    for name in OUTPUT_FILES:
        os.replace(staging / name, inputs.out / name)
    staging.rmdir()
    return pairs


def read_reference(opts: AnnotateOptions, inputs: _Inputs, log) -> dict[str, Annotations]:
    """The community annotation CSVs to compare with (read before anything is written), by file key.
    Files this command wrote into the dataset root are not a reference; a broken file is an error when
    ``--keypoints`` names its folder, else a note."""
    folder = Path(opts.keypoints) if opts.keypoints is not None else inputs.dataset.root
    ours = _written(inputs.out) if inputs.in_dataset_root and opts.keypoints is None else set()
    found = {}
    for key, name in ANNOTATION_FILES.items():
        path = folder / name
        if not path.is_file() or sha256_file(path) in ours:
            continue
        try:
            found[key] = read_annotations(path, image_size=None)
        except DatasetError:
            if opts.keypoints is not None:
                raise
            if log:
                log(f"[annotate] {path} is not a readable annotation CSV: no agreement for it")
    if opts.keypoints is not None and not found:
        raise UsageError("--keypoints", f"no {' or '.join(ANNOTATION_FILES.values())} in {folder}")
    return found


def annotate(opts: AnnotateOptions, log: Callable[[str], None] | None = print) -> AnnotateReport:
    """Annotate ``opts.data`` (module docstring); returns the report, also written as ``annotate-report.json``.

    Raises :class:`UsageError`, :class:`DatasetError` or :class:`AnnotateWeightsError` for bad input."""
    inputs = resolve_inputs(opts)
    reference = read_reference(opts, inputs, log)
    prepare_run_dir(inputs)
    if log:
        n = sum(1 for _ in inputs.dataset.records())
        log(f"[annotate] {inputs.dataset.root} ({inputs.dataset.layout} layout): {n} images; weights {inputs.weights}")
        log(f"[annotate] device {inputs.device}, scales {list(opts.pose.scales)}, output {inputs.out}")
    results, resumed = run_shards(lambda: load_network(inputs.weights, inputs.device), inputs, opts, log)
    annotations = split_annotations(inputs, results)
    pairs = write_outputs(inputs, annotations)
    failures = {n: why for r in results for n, why in r.failures.items()}
    agreements = {k: agreement(annotations[k], ref) for k, ref in reference.items()}
    report = build_report(inputs.dataset, inputs.out, annotations, failures, pairs, agreements, resumed, len(results))
    write_json_atomic(inputs.out / REPORT_FILE, report.to_json())
    if log:
        for line in report.lines():
            log(line)
    return report


# ----------------------------------------------------------------------------------------------
# command line


def _scales(values: Sequence[str]) -> tuple[float, ...]:
    """``--scales 0.5 1 1.5 2`` or ``--scales 0.5,1,1.5,2``."""
    try:
        scales = tuple(float(v) for item in values for v in item.split(",") if v)
    except ValueError:
        scales = ()
    if not scales or not all(s > 0 for s in scales):
        raise UsageError("--scales", f"expected positive numbers such as 0.5 1 1.5 2, got {' '.join(values)}")
    return scales


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m augment.annotate", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="dataset root (Market-1501, DukeMTMC-reID, MSMT17, ...)")
    p.add_argument("--weights", type=Path, help="body_pose_model.pth or pose_estimator.h5 (default: torch cache)")
    p.add_argument("--layout", choices=sorted(LAYOUTS), help="dataset layout (default: detected)")
    p.add_argument("--out", type=Path, help="output folder (default runs/annotate/<dataset folder name>)")
    p.add_argument(
        "--keypoints", type=Path, help="folder of community annotation CSVs to compare with (default: --data)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="images per network pass (default 16)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto: the GPU when present)")
    p.add_argument("--scales", nargs="+", default=["0.5", "1", "1.5", "2"], help="search scales (default PATN's)")
    p.add_argument("--shard-size", type=int, default=128, help="images per resumable progress shard (default 128)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def options_from_args(a: argparse.Namespace) -> AnnotateOptions:
    return AnnotateOptions(
        data=a.data,
        weights=a.weights,
        layout=a.layout,
        out=a.out,
        keypoints=a.keypoints,
        batch_size=a.batch_size,
        device=a.device,
        pose=PoseConfig(scales=_scales(a.scales)),
        shard_size=a.shard_size,
        progress=not a.no_progress,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: 0 when done; bad input prints ``error: ...`` and exits with status 2."""
    a = build_parser().parse_args(argv)
    try:
        annotate(options_from_args(a))
    except (UsageError, DatasetError, MetricWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return 0


if __name__ == "__main__":
    main()
