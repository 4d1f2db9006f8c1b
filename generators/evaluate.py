"""``python -m generators.evaluate``: score a generator, or a folder of its results, on the test pairs under a
named protocol, next to the copy-source floor.

    python -m generators.evaluate --checkpoint runs/generators/patn-synth/checkpoints/latest.pt
    python -m generators.evaluate --checkpoint patn-market.pt --data /data/Market-1501 \\
        --keypoints /data/market-keypoints --protocol patn2019 --inception-weights pt_inception-2015-12-05.pth
    python -m generators.evaluate --folder results/market_PATN/test_latest/images --protocol patn2019 \\
        --data /data/Market-1501 --keypoints /data/market-keypoints

For every test pair (``market-pairs-test.csv``: 12,000 on Market-1501) the generator turns the source image
into the target pose (``--checkpoint``), or the pair's file is read from ``--folder``; the result is scored
against the target image. The same pairs are ALWAYS also scored for the copy-source baseline (output = the
source image unchanged), so every figure has a floor: a generator must beat handing back its input.

Protocols (``--protocol``, defined in :mod:`generators.quality.protocols`, written up with their sources in
docs/evaluation.md#protocols): ``direct`` (default: this project's scoring before protocols were named, PATN's
SSIM and mask-SSIM, L1 and PSNR on outputs rounded to uint8 and scored in memory), ``patn2019`` (PATN's official
JPEG-strip path; SSIM, mask-SSIM, L1, PSNR, IS, mask-IS, PCKh; DS named, not computed), ``pg2-2017`` (PG2's
files, its SSIM and source-mask SSIM, IS, mask-IS) and ``gfla2020`` (FID against the training split, LPIPS,
mask-LPIPS, GFLA's SSIM and SSIM-256).

Network metrics read their weights from the torch cache (``$TORCH_HOME/hub/checkpoints``) or a path
(``--inception-weights``, ``--lpips-backbone``, ``--lpips-linear``, ``--openpose-weights``) and never download.
A metric whose weights are absent is reported as NOT COMPUTED, in the printed table and in metrics.json, with
the exact file, its publisher and the flags; ``--skip is,pckh`` leaves metrics out on purpose. The rest runs.

``--folder DIR`` scores released or saved results named by pair: the official strips ``<from>___<to>_vis.png``
/ ``.jpg`` (scored against their own source and target panels, as the official tool does) or one generated
image per pair ``<from>___<to>.png`` / ``.jpg`` (against the dataset's images); ``--naming`` forces one. Pairs
without a file and files that are none of the pairs are counted and reported (``folder`` in metrics.json).

Pairs: all test pairs by default; ``--pairs N`` takes the first N rows of the pairs file in file order
(deterministic; the community file is itself a seeded random sample, random_state 0, of all same-identity
pairs, so its first rows are a random subset too).

Generation: eval mode, batches of ``--batch-size``, channels-last, ``--precision`` fp32 by default (the figures
are the model's; ``auto`` picks bf16 where the device computes it natively: faster, outputs within a few grey
levels). Metrics run batched on the same device (network metrics in float32, TF32 off).

``--official-io`` keeps the ``direct`` metrics but takes PATN's official file path between network and metrics
(what ``patn2019`` always does). The pose panels of the strips are this project's skeleton drawings, not the
official ``draw_pose_from_map`` ones, which changes only the one or two pixel columns at the panel borders
(JPEG chroma upsampling reaches across them).

Outputs under ``--out`` (default: ``<run>/eval/<checkpoint name>`` for a checkpoint inside a run's
``checkpoints/`` folder, else ``<checkpoint folder>/eval-<checkpoint name>``; ``<folder>/../eval-<folder name>``
for ``--folder``)::

    metrics.json    protocol, results (NaN pairs counted apart), what was not computed and why, settings,
                    data and checkpoint / folder identity, timing
    pairs.csv       per pair: file line, names, the per-pair metrics for the generator and copy-source
    grid.png        a few pairs spread over the evaluated ones, one row each in the official strip
                    order: source | source pose | target | target pose | generated
    images/         with --save-images: every pair as the official strip ``<from>___<to>_vis.png``
                    (``.jpg``, the bytes that were scored, on PATN's path); the official
                    tool/getMetrics_market.py and ``--folder`` read this folder as it is
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from augment.data.atomic import write_atomic
from augment.data.imageio import encode_image
from augment.data.market import DatasetError
from augment.runtime import UsageError, bf16_is_native, resolve_device
from augment.synth import DEFAULT_OUT as DEFAULT_DATA
from augment.synth import embedded_dataset
from generators.checkpoint import CheckpointError
from generators.data import PairTable, load_pairs
from generators.metrics import PAIR_METRICS, SSIM_DEFS, pair_metrics, summarise
from generators.quality.folder import match_folder
from generators.quality.pose_decode import PoseConfig
from generators.quality.protocols import (  # noqa: F401  (pair_masks, target_masks re-exported)
    DEFAULT_PROTOCOL,
    IMAGE_IO,
    MASKS,
    METRIC_INFO,
    PER_PAIR_NETWORK_METRICS,
    PROTOCOLS,
    EvalProtocol,
    ImageIO,
    pair_masks,
    target_masks,
)
from generators.quality.report import (  # noqa: F401  (re-exported: compare.py and callers read them here)
    GRID_GAP,
    METRIC_LABELS,
    EvalReport,
    figure,
    grid_image,
    write_outputs,
)
from generators.quality.sources import CheckpointImages, FolderImages, Images
from generators.quality.strips import (  # noqa: F401  (re-exported: the official path's helpers)
    NAMINGS,
    OFFICIAL_JPEG_QUALITY,
    jpeg_roundtrip_strip,
    official_loader_roundtrip,
    official_strip,
    official_tensor2im,
    strip_name,
)
from generators.quality.suite import WHO, NetworkMetrics, ScoredBatch, WeightPaths, train_split_images

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
METRICS = PAIR_METRICS  # the direct protocol's metrics, all per pair
UNITS = PROTOCOLS[DEFAULT_PROTOCOL].units()
NAMING_CHOICES = ("auto", *NAMINGS)
FLOORS = ("all", "pixel")
SKIP_GROUPS = {"is": ("is", "mask_is"), "lpips": ("lpips", "mask_lpips")}  # a weight file serves both


@dataclass
class EvalConfig:
    checkpoint: Path | None = None  # a generator checkpoint, or:
    folder: Path | None = None  # a folder of results named by pair
    data: Path | None = None  # None: the embedded dataset (rendered if absent)
    keypoints: Path | None = None  # folder of the community CSVs (default: the data root)
    pairs: int | None = None  # first N pairs in file order; None: all
    batch_size: int = 32
    device: str = "auto"
    precision: str = "fp32"
    out: Path | None = None
    save_images: bool = False
    official_io: bool = False
    grid_rows: int = 8
    progress: bool = True
    protocol: str = DEFAULT_PROTOCOL
    naming: str = "auto"
    floor: str = "all"  # "pixel": the copy-source floor without network metrics (half their cost)
    skip: tuple[str, ...] = ()
    weights: WeightPaths = field(default_factory=WeightPaths)
    pose: PoseConfig | None = None  # library only: another PCKh keypoint search than the protocol's (tests)

    def validate(self) -> None:
        if self.batch_size < 1:
            raise UsageError("--batch-size", f"must be >= 1, got {self.batch_size}")
        if self.pairs is not None and self.pairs < 1:
            raise UsageError("--pairs", f"must be >= 1, got {self.pairs}")
        if self.grid_rows < 0:
            raise UsageError("--grid-rows", f"must be >= 0, got {self.grid_rows}")
        if self.precision not in PRECISIONS:
            raise UsageError("--precision", f"{self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UsageError("--device", f"{self.device!r}: use auto, cpu, cuda or cuda:N")
        self._validate_what()
        if self.data is not None and not Path(self.data).is_dir():
            raise UsageError("--data", f"{self.data} is not a folder")
        if self.keypoints is not None and not Path(self.keypoints).is_dir():
            raise UsageError("--keypoints", f"{self.keypoints} is not a folder")
        self._validate_protocol()

    def _validate_what(self) -> None:
        if (self.checkpoint is None) == (self.folder is None):
            raise UsageError("--checkpoint", "give either --checkpoint FILE or --folder DIR")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise UsageError("--checkpoint", f"{self.checkpoint} is not a file")
        if self.folder is not None and not Path(self.folder).is_dir():
            raise UsageError("--folder", f"{self.folder} is not a folder")
        if self.folder is not None and self.save_images:
            raise UsageError("--save-images", "with --folder the images are already on disk")
        if self.naming not in NAMING_CHOICES:
            raise UsageError("--naming", f"{self.naming!r} is not one of {', '.join(NAMING_CHOICES)}")

    def _validate_protocol(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise UsageError("--protocol", f"{self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.floor not in FLOORS:
            raise UsageError("--floor", f"{self.floor!r} is not one of {', '.join(FLOORS)}")
        if self.official_io and PROTOCOLS[self.protocol].io not in ("round", "patn-official"):
            raise UsageError("--official-io", f"protocol {self.protocol} defines its own image path")
        unknown = [m for m in self.skip if m not in METRIC_INFO]
        if unknown:
            raise UsageError("--skip", f"unknown metric(s) {', '.join(unknown)}; metrics: {', '.join(METRIC_INFO)}")
        for flag, path in (
            ("--inception-weights", self.weights.inception),
            ("--lpips-backbone", self.weights.lpips_backbone),
            ("--lpips-linear", self.weights.lpips_linear),
            ("--openpose-weights", self.weights.openpose),
        ):
            if path is not None and not Path(path).is_file():
                raise UsageError(flag, f"{path} is not a file")

    def skipped(self) -> tuple[str, ...]:
        """``skip`` with each weight file's partner metrics (``is`` also leaves out ``mask_is``)."""
        return tuple(dict.fromkeys(k for m in self.skip for k in SKIP_GROUPS.get(m, (m,))))


# ---------------------------------------------------------------------------------------------
# evaluation


def default_out(checkpoint: Path) -> Path:
    checkpoint = Path(checkpoint)
    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent / "eval" / checkpoint.stem
    return checkpoint.parent / f"eval-{checkpoint.stem}"


def default_folder_out(folder: Path) -> Path:
    folder = Path(folder).resolve()
    return folder.parent / f"eval-{folder.name}"


def resolve_precision(choice: str, device: torch.device) -> str | None:
    """The Transferer dtype for ``--precision`` (None = fp32)."""
    if choice == "fp32":
        return None
    native_bf16 = bf16_is_native(device)
    if choice == "auto":
        if native_bf16:
            return "bf16"
        return "fp16" if device.type == "cuda" else None
    if choice == "fp16" and device.type != "cuda":
        raise UsageError("--precision", "fp16 is for CUDA; on CPU use bf16 or fp32")
    if choice == "bf16" and not native_bf16:
        raise UsageError("--precision", f"bf16 asked for but {device.type} has no native bf16; use fp32")
    return choice


def _ensure_data(cfg: EvalConfig, log: Callable[[str], None]) -> Path:
    return Path(cfg.data) if cfg.data is not None else embedded_dataset(log=log)


@dataclass
class _Scoring:
    """The scoring loop's inputs and what it accumulates (per-pair arrays of length n, in evaluation order)."""

    cfg: EvalConfig
    protocol: EvalProtocol
    io: ImageIO
    device: torch.device
    table: PairTable
    source: CheckpointImages | FolderImages
    suite: NetworkMetrics
    indices: np.ndarray  # (n,) pair indices scored, pairs-file order
    masks: torch.Tensor  # (U,H,W) bool masks of the protocol's rule, see pair_masks
    mask_row: np.ndarray  # image index -> row of masks
    image_dir: Path
    grid_at: dict[int, int]  # position -> grid row
    per_pair: dict[str, np.ndarray]
    seconds: dict[str, float] = field(default_factory=lambda: {"generate": 0.0, "metrics": 0.0, "networks": 0.0})
    grid_rows: dict[int, list[np.ndarray]] = field(default_factory=dict)


def evaluate(cfg: EvalConfig, log: Callable[[str], None] = print) -> EvalReport:
    """Score the test pairs under ``cfg.protocol``; writes the files described in the module docstring."""
    cfg.validate()
    protocol = PROTOCOLS[cfg.protocol]
    io = IMAGE_IO["patn-official" if cfg.official_io else protocol.io]
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device)
    t_start = time.perf_counter()
    # data first (validated without decoding), then the model or the folder
    root, table, indices = _load_pairs(cfg, log)
    if cfg.checkpoint is not None:
        source = CheckpointImages(cfg.checkpoint, table, io, device, dtype, cfg.batch_size)
        out = Path(cfg.out) if cfg.out is not None else default_out(cfg.checkpoint)
    else:
        found = match_folder(cfg.folder, table, indices, cfg.naming)
        for line in found.lines(table):
            log(f"[eval] {line}")
        source, indices = FolderImages(found, table, io, device), found.present
        out = Path(cfg.out) if cfg.out is not None else default_folder_out(cfg.folder)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.save_images:
        (out / "images").mkdir(exist_ok=True)
    if cfg.pose is not None:
        protocol = _with_pose(protocol, cfg.pose)
    real = train_split_images(root) if protocol.fid_real == "train" and "fid" in protocol.metrics else ()
    rows = WHO if cfg.floor == "all" else ("generated",)
    suite = NetworkMetrics(protocol, len(indices), device, cfg.weights, cfg.skipped(), real, log, rows)
    scoring = _start_scoring(cfg, protocol, io, device, table, source, suite, indices, out / "images")
    _score_all(scoring)
    results, computed = _results(scoring)
    scoring.seconds["total"] = time.perf_counter() - t_start
    info = _eval_info(cfg, scoring, root, dtype=dtype, results=results, computed=computed)
    _note_other_dataset(info, table, log)
    report = EvalReport(
        out=out,
        method=info["method"],
        preset=info["preset"],
        iteration=info["iteration"],
        n_pairs=len(indices),
        n_total=len(table),
        results=results,
        per_pair=scoring.per_pair,
        info=info,
        protocol=protocol.name,
        label=source.label,
        metrics=computed,
        not_computed=suite.not_computed,
    )
    write_outputs(report, table, scoring.indices, scoring.grid_rows)
    return report


def _with_pose(protocol: EvalProtocol, pose: PoseConfig) -> EvalProtocol:
    return replace(protocol, pose=pose)


def _note_other_dataset(info: dict, table: PairTable, log: Callable[[str], None]) -> None:
    theirs = info["checkpoint_dataset_fingerprint"]
    if theirs and theirs != table.dataset_fingerprint:
        log(
            f"[eval] note: the checkpoint was trained on another dataset (fingerprint "
            f"{str(theirs)[:12]}..., this one {table.dataset_fingerprint[:12]}...)"
        )


def _load_pairs(cfg: EvalConfig, log: Callable[[str], None]) -> tuple[Path, PairTable, np.ndarray]:
    """The dataset root, its test pairs (checked, nothing decoded) and the indices of the pairs to score."""
    root = _ensure_data(cfg, log)
    table = load_pairs(root, "test", keypoints_dir=cfg.keypoints)
    n_total = len(table)
    n = n_total if cfg.pairs is None else min(cfg.pairs, n_total)
    for line in table.summary_lines():
        log(f"[eval] {line}")
    if cfg.pairs is not None and cfg.pairs > n_total:
        log(f"[eval] --pairs {cfg.pairs} > {n_total} test pairs: evaluating all {n_total}")
    return root, table, np.arange(n)


def _start_scoring(cfg, protocol, io, device, table, source, suite, indices, image_dir: Path) -> _Scoring:
    n = len(indices)
    # grid rows: pairs spread evenly over the evaluated ones
    shown = np.unique(np.linspace(0, n - 1, min(cfg.grid_rows, n)).round().astype(int)) if cfg.grid_rows else []
    of = table.tgt if MASKS[protocol.mask].of == "target" else table.src
    masks, mask_row = pair_masks(table, of[indices], device, protocol.mask)
    per_pair_metrics = [
        m
        for m in protocol.metrics
        if m in protocol.pixel_metrics or (m in suite.active and m in PER_PAIR_NETWORK_METRICS)
    ]
    return _Scoring(
        cfg=cfg,
        protocol=protocol,
        io=io,
        device=device,
        table=table,
        source=source,
        suite=suite,
        indices=indices,
        masks=masks,
        mask_row=mask_row,
        image_dir=image_dir,
        grid_at={int(i): r for r, i in enumerate(shown)},
        per_pair={
            f"{who}_{m}": np.empty(n)
            for who in WHO
            for m in per_pair_metrics
            if who in suite.rows or m in protocol.pixel_metrics
        },
    )


def _score_all(scoring: _Scoring) -> None:
    """Every evaluated pair in batches, with a progress bar."""
    cfg, n = scoring.cfg, len(scoring.indices)
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="pair", desc="evaluate", file=sys.stderr)
    try:
        for start in range(0, n, cfg.batch_size):
            positions = np.arange(start, min(start + cfg.batch_size, n))
            _score_batch(scoring, positions)
            if bar is not None:
                bar.update(len(positions))
    finally:
        if bar is not None:
            bar.close()


def _score_batch(scoring: _Scoring, positions: np.ndarray) -> None:
    """Get the images of the pairs at ``positions`` (B,), score generated and copy-source, keep strips."""
    cfg, table, protocol, suite = scoring.cfg, scoring.table, scoring.protocol, scoring.suite
    idx = scoring.indices[positions]
    strips = cfg.save_images or any(int(p) in scoring.grid_at for p in positions)
    images = scoring.source.batch(idx, strips=strips, pckh="pckh" in suite.active)
    scoring.seconds["generate"] += images.seconds

    t0 = time.perf_counter()
    of = table.tgt if MASKS[protocol.mask].of == "target" else table.src
    mask = scoring.masks[torch.from_numpy(scoring.mask_row[of[idx]]).to(scoring.masks.device)]  # (B,H,W) bool
    for who, output in (("generated", images.generated), ("copy_source", images.source)):
        values = pair_metrics(output, images.target, mask, definition=protocol.ssim, keys=protocol.pixel_metrics)
        for m, v in values.items():
            scoring.per_pair[f"{who}_{m}"][positions] = v
    scoring.seconds["metrics"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    if suite.parts:
        target_kps = table.keypoints[table.tgt[idx]]
        for who, output in (("generated", images.generated), ("copy_source", images.source)):
            if who not in suite.rows:
                continue
            batch = ScoredBatch(positions, output, images.target, mask, target_kps, images.pckh.get(who))
            for m, v in suite.update(who, batch).items():
                scoring.per_pair[f"{who}_{m}"][positions] = v
    scoring.seconds["networks"] += time.perf_counter() - t0
    _keep_strips(scoring, positions, idx, images)


def _keep_strips(scoring: _Scoring, positions: np.ndarray, idx: np.ndarray, images: Images) -> None:
    """Grid rows of the shown pairs; every strip as an image file with --save-images."""
    table = scoring.table
    for j, (p, i) in enumerate(zip(positions, idx)):
        if int(p) in scoring.grid_at:
            scoring.grid_rows[scoring.grid_at[int(p)]] = images.strips[j][0]
        if scoring.cfg.save_images:
            panels, encoded = images.strips[j]
            src, tgt = table.pair_names(int(i))
            if encoded is not None:
                write_atomic(scoring.image_dir / strip_name(src, tgt, ".jpg"), encoded)
            else:
                strip = encode_image(np.concatenate(panels, 1), ".png")
                write_atomic(scoring.image_dir / strip_name(src, tgt, ".png"), strip)


def _results(scoring: _Scoring) -> tuple[dict[str, dict[str, dict]], tuple[str, ...]]:
    """({who: {metric: record}}, the computed metrics in protocol order)."""
    protocol, table, indices = scoring.protocol, scoring.table, scoring.indices
    results = {who: {m: summarise(scoring.per_pair[f"{who}_{m}"]) for m in protocol.pixel_metrics} for who in WHO}
    order = np.arange(len(indices))
    if protocol.whole_batches:  # the script's file order decides which images a partial batch drops
        order = np.array(sorted(order, key=lambda j: table.pair_names(int(indices[j]))), dtype=np.int64)
    t0 = time.perf_counter()
    for who, records in scoring.suite.finish(order).items():
        results[who].update(records)
    scoring.seconds["networks"] += time.perf_counter() - t0  # FID's real set and square roots, IS splits
    computed = tuple(m for m in protocol.metrics if m in results["generated"])
    return results, computed


def _eval_info(cfg: EvalConfig, scoring: _Scoring, root, *, dtype, results, computed) -> dict:
    """The ``metrics.json`` record: protocol, settings, data and source identity, results, timing."""
    protocol, table, seconds, n = scoring.protocol, scoring.table, scoring.seconds, len(scoring.indices)
    if cfg.folder is not None:
        subset = f"the pairs with a file in the folder, of the first {n + len(scoring.source.found.missing)} rows"
    else:
        subset = "all pairs" if n == len(table) else f"first {n} rows of the pairs file, in file order"
    return {
        "format": "poseaug-eval/2",
        **scoring.source.info(),
        "protocol": protocol.name,
        "protocol_summary": protocol.summary,
        "protocol_sources": list(protocol.sources),
        "image_io": {"name": scoring.io.name, "description": scoring.io.description},
        "ssim_definition": asdict(SSIM_DEFS[protocol.ssim]),
        "mask": MASKS[protocol.mask].description,
        "data": str(root),
        "pairs_file": str(table.pairs_file),
        "pairs_sha256": table.pairs_sha256,
        "dataset_fingerprint": table.dataset_fingerprint,
        "pairs_total": len(table),
        "pairs_evaluated": n,
        "subset": subset,
        "pairs_skipped": table.skipped.lines(),
        "device": str(scoring.device),
        "precision": dtype or "fp32",
        "batch_size": cfg.batch_size,
        "official_io": scoring.io.name == "patn-official",
        "floor": cfg.floor,
        "metrics": list(computed),
        "results": results,
        "units": protocol.units(),
        "not_computed": scoring.suite.not_computed,
        "weights": {k: (str(v) if v is not None else None) for k, v in asdict(cfg.weights).items()},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "generated_images_per_second": round(n / seconds["generate"], 3) if seconds["generate"] > 0 else None,
    }


# ---------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m generators.evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", type=Path, help="generator checkpoint (.pt)")
    what.add_argument("--folder", type=Path, help="folder of generated images named by pair (see above)")
    p.add_argument(
        "--data",
        type=Path,
        help=f"dataset root in Market-1501 layout (default: {DEFAULT_DATA}, rendered first if absent)",
    )
    p.add_argument("--keypoints", type=Path, help="folder of the annotation/pairs CSVs (default: the data root)")
    p.add_argument(
        "--protocol",
        default=DEFAULT_PROTOCOL,
        choices=list(PROTOCOLS),
        help=f"evaluation protocol (default {DEFAULT_PROTOCOL}: {PROTOCOLS[DEFAULT_PROTOCOL].summary})",
    )
    p.add_argument("--pairs", type=int, help="evaluate the first N test pairs in file order (default: all)")
    p.add_argument("--batch-size", type=int, default=32, help="generation and metric batch size (default 32)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 | auto (default fp32)")
    p.add_argument("--out", type=Path, help="output folder (default: next to the checkpoint or folder, see above)")
    p.add_argument("--save-images", action="store_true", help="write every pair as an official 5-panel strip")
    p.add_argument(
        "--official-io",
        action="store_true",
        help="direct protocol: score through the official tensor2im truncation and JPEG strips (see above)",
    )
    p.add_argument("--naming", default="auto", help="--folder file names: auto | strip | pair (default auto)")
    p.add_argument(
        "--floor",
        default="all",
        choices=FLOORS,
        help="metrics of the copy-source floor: all (default) or pixel (no network metrics: half their cost)",
    )
    _weight_flags(p)
    p.add_argument("--grid-rows", type=int, default=8, help="pairs shown in grid.png (default 8; 0: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _weight_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--skip",
        default="",
        help="metrics to leave out, comma-separated (e.g. is,pckh; 'is' also leaves out mask_is, 'lpips' mask_lpips)",
    )
    p.add_argument(
        "--inception-weights",
        type=Path,
        help="Inception weights: pt_inception-2015-12-05-6726825d.pth (IS, mask-IS) or, for gfla2020's FID, "
        "inception_v3_google-0cc3c7bd.pth (default: the torch cache)",
    )
    p.add_argument("--lpips-backbone", type=Path, help="alexnet-owt-7be5be79.pth (default: the torch cache)")
    p.add_argument("--lpips-linear", type=Path, help="LPIPS v0.1 alex.pth (default: the installed lpips package)")
    p.add_argument("--openpose-weights", type=Path, help="body_pose_model.pth or pose_estimator.h5 (PCKh)")


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    return EvalConfig(
        checkpoint=args.checkpoint,
        folder=args.folder,
        data=args.data,
        keypoints=args.keypoints,
        pairs=args.pairs,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        out=args.out,
        save_images=args.save_images,
        official_io=args.official_io,
        grid_rows=args.grid_rows,
        progress=not args.no_progress,
        protocol=args.protocol,
        naming=args.naming,
        floor=args.floor,
        skip=tuple(s.strip() for s in args.skip.split(",") if s.strip()),
        weights=WeightPaths(args.inception_weights, args.lpips_backbone, args.lpips_linear, args.openpose_weights),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = evaluate(config_from_args(args))
    except (UsageError, DatasetError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = report.info
    speed = info["generated_images_per_second"]
    print(
        f"[eval] protocol {report.protocol}: {report.n_pairs} of {report.n_total} test pairs ({info['subset']}), "
        f"{info['device']} {info['precision']}{', official JPEG path' if info['official_io'] else ''}; "
        + (f"generation {speed} images/s" if info["checkpoint"] else f"read {speed} images/s")
    )
    for line in report.table_lines():
        print(line)
    print(
        f"[eval] wrote {report.out / 'metrics.json'}, {report.out / 'pairs.csv'}"
        + (f", {report.out / 'grid.png'}" if (report.out / "grid.png").is_file() else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
