"""``python -m generators.evaluate``: score a generator checkpoint on the test pairs, next to a floor.

    python -m generators.evaluate --checkpoint runs/generators/patn-synth/checkpoints/latest.pt
    python -m generators.evaluate --checkpoint patn-market.pt --data /data/Market-1501 \\
        --keypoints /data/market-keypoints --out runs/eval/patn-market --save-images

For every test pair (``market-pairs-test.csv``: 12,000 on Market-1501) the generator turns the
source image into the target pose; the result is scored against the target image with the
official PATN / Deformable GAN metrics (:mod:`generators.metrics`): SSIM, mask-SSIM (target pose
mask, ``augment.data.pose.pose_mask_eval``), L1 and PSNR. The same pairs are ALWAYS also scored for the
copy-source baseline (output = the source image unchanged), so every figure has a floor: a
generator must beat handing back its input.

Pairs: all test pairs by default; ``--pairs N`` takes the first N rows of the pairs file in file
order (deterministic; the community file is itself a seeded random sample, random_state 0, of
all same-identity pairs, so its first rows are a random subset too).

Generation: eval mode, batches of ``--batch-size``, channels-last, ``--precision`` fp32 by default
(the figures are the model's; ``auto`` picks bf16 where the device computes it natively: faster,
outputs within a few grey levels), outputs rounded to uint8 as ``generators.inference`` does.

``--official-io`` reproduces the official file path between network and metrics instead: the
official test.py converts tensors with ``tensor2im`` (truncating, not rounding, to uint8; the
source and target images too, after the loader's [-1,1] normalisation), saves each pair as one
5-panel strip (source | source pose | target | target pose | generated) in JPEG (PIL defaults,
quality 75), and getMetrics_market.py cuts the panels back out of the decoded JPEGs. Here the strip
is built and JPEG-coded in memory the same way; the pose panels are this project's skeleton
drawings, not the official ``draw_pose_from_map`` ones, which changes only the one or two pixel
columns at the panel borders (JPEG chroma upsampling reaches across them).

Outputs under ``--out`` (default: ``<run>/eval/<checkpoint name>`` for a checkpoint inside a run's
``checkpoints/`` folder, else ``<checkpoint folder>/eval-<checkpoint name>``)::

    metrics.json    means (NaN pairs counted apart), settings, data and checkpoint identity, timing
    pairs.csv       per pair: file line, names, the four metrics for the generator and copy-source
    grid.png        a few pairs spread over the evaluated ones, one row each in the official strip
                    order: source | source pose | target | target pose | generated
    images/         with --save-images: every pair as the official strip ``<from>___<to>_vis.png``
                    (``.jpg``, the bytes that were scored, with --official-io); the official
                    tool/getMetrics_market.py reads this folder as it is

Not computed: IS, mask-IS, FID, LPIPS, PCKh and DS need pretrained networks (Inception, AlexNet,
OpenPose, SSD) that this project cannot download; see :data:`NOT_COMPUTED`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augment.data.atomic import atomic_path, write_atomic
from augment.data.imageio import encode_image
from augment.data.market import DatasetError
from augment.data.pose import pose_mask_eval
from augment.runtime import UsageError, bf16_is_native, resolve_device
from augment.synth import DEFAULT_OUT as DEFAULT_DATA
from augment.synth import embedded_dataset
from generators.checkpoint import CheckpointError, bundle_from_checkpoint, read_checkpoint
from generators.data import PairDataset, PairTable, load_pairs
from generators.inference import Transferer, model_to_uint8, uint8_to_model
from generators.metrics import pair_metrics, single_thread, summarise
from generators.samples import render_skeleton

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
METRICS = ("ssim", "mask_ssim", "l1", "psnr")
METRIC_LABELS = {"ssim": "SSIM", "mask_ssim": "mask-SSIM", "l1": "L1 [0,1]", "psnr": "PSNR dB"}
UNITS = {
    "ssim": "official PATN/DEF SSIM: 11x11 Gaussian (sigma 1.5), population covariance, data range of the "
    "generated image, channel mean",
    "mask_ssim": "SSIM of both images times the target pose mask (produce_ma_mask)",
    "l1": "mean |generated - target| in [0,1] units (the official l1_score, in [-1,1] units, is twice this)",
    "psnr": "10 log10(255^2 / MSE) in dB",
}
NOT_COMPUTED = {
    "IS / mask-IS": "TF Inception (2015-12-05 graph) weights; not downloadable here",
    "FID": "pytorch-fid Inception weights pt_inception-2015-12-05-6726825d.pth (torchvision's differ)",
    "LPIPS": "AlexNet + LPIPS linear-layer weights",
    "PCKh": "OpenPose COCO-18 pose estimator weights",
    "DS": "SSD300 VOC0712 detector weights",
}
OFFICIAL_JPEG_QUALITY = 75  # PIL's default, what the official Image.save used
GRID_GAP = 2


@dataclass
class EvalConfig:
    checkpoint: Path
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
        if not Path(self.checkpoint).is_file():
            raise UsageError("--checkpoint", f"{self.checkpoint} is not a file")
        if self.data is not None and not Path(self.data).is_dir():
            raise UsageError("--data", f"{self.data} is not a folder")
        if self.keypoints is not None and not Path(self.keypoints).is_dir():
            raise UsageError("--keypoints", f"{self.keypoints} is not a folder")


@dataclass
class EvalReport:
    """What :func:`evaluate` measured; ``results[name][metric]`` = {"mean", "n", "non_finite"}."""

    out: Path
    method: str
    preset: str
    iteration: int
    n_pairs: int
    n_total: int
    results: dict[str, dict[str, dict]]
    per_pair: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def table_lines(self) -> list[str]:
        label = f"{self.method}/{self.preset} it {self.iteration}"
        rows = [(label, self.results["generated"]), ("copy-source", self.results["copy_source"])]
        width = max(len(r[0]) for r in rows) + 2
        lines = [" " * width + "".join(f"{METRIC_LABELS[m]:>11}" for m in METRICS) + f"{'pairs':>8}"]
        for name, res in rows:
            cells = "".join(f"{res[m]['mean']:>11.2f}" if m == "psnr" else f"{res[m]['mean']:>11.4f}" for m in METRICS)
            lines.append(f"{name:<{width}}{cells}{res['ssim']['n']:>8}")
        for name, res in rows:
            odd = {m: res[m]["non_finite"] for m in METRICS if res[m]["non_finite"]}
            if odd:
                lines.append(
                    f"  {name}: pairs left out of the mean (NaN / inf): "
                    + ", ".join(f"{METRIC_LABELS[m]} {c}" for m, c in odd.items())
                )
        return lines


# ---------------------------------------------------------------------------------------------
# official file path (--official-io)


def official_tensor2im(images: torch.Tensor) -> torch.Tensor:
    """Official util.tensor2im on a batch: (N,3,H,W) float in [-1,1] -> uint8 (N,H,W,3), computing
    ((x + 1) / 2.0 * 255.0) in float32 and TRUNCATING to uint8 (numpy astype)."""
    x = images.detach().float().permute(0, 2, 3, 1)
    return ((x + 1) / 2.0 * 255.0).clamp_(0, 255).to(torch.uint8)


def official_loader_roundtrip(images_u8: torch.Tensor) -> torch.Tensor:
    """A dataset image as the official test strip shows it: ToTensor (x / 255), Normalize(0.5, 0.5),
    then tensor2im. uint8 (N,H,W,3) -> uint8 (N,H,W,3) (a float32 rounding can lose one grey level)."""
    x = images_u8.permute(0, 3, 1, 2).float().div(255)
    return official_tensor2im((x - 0.5) / 0.5)


def jpeg_roundtrip_strip(
    panels: Sequence[np.ndarray], quality: int = OFFICIAL_JPEG_QUALITY
) -> tuple[list[np.ndarray], bytes]:
    """Concatenate (H,W,3) uint8 panels side by side, code as JPEG with PIL (as the official
    Image.save), decode with PIL (as skimage.io.imread) and cut the panels back out.
    Returns the decoded panels and the JPEG bytes."""
    from PIL import Image  # pillow comes with matplotlib; only this option needs it

    strip = np.concatenate(panels, axis=1)
    buf = io.BytesIO()
    Image.fromarray(strip).save(buf, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    w = panels[0].shape[1]
    return [decoded[:, i * w : (i + 1) * w] for i in range(len(panels))], buf.getvalue()


# ---------------------------------------------------------------------------------------------
# strips and grid


def official_strip(
    src: np.ndarray, src_kps: np.ndarray, tgt: np.ndarray, tgt_kps: np.ndarray, gen: np.ndarray
) -> list[np.ndarray]:
    """The five panels of the official test output: source | source pose | target | target pose |
    generated, each (H,W,3) uint8 (the pose panels drawn by generators.samples.render_skeleton)."""
    size = src.shape[:2]
    return [src, render_skeleton(src_kps, size), tgt, render_skeleton(tgt_kps, size), gen]


def grid_image(rows: Sequence[Sequence[np.ndarray]], gap: int = GRID_GAP) -> np.ndarray:
    """Rows of equal-size panels -> one uint8 image with white gaps between panels and rows."""
    lines = []
    for panels in rows:
        h = panels[0].shape[0]
        spacer = np.full((h, gap, 3), 255, np.uint8)
        parts = [p for panel in panels for p in (panel, spacer)][:-1]
        lines.append(np.concatenate(parts, axis=1))
        lines.append(np.full((gap, lines[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(lines[:-1], axis=0)


# ---------------------------------------------------------------------------------------------
# evaluation


def default_out(checkpoint: Path) -> Path:
    checkpoint = Path(checkpoint)
    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent / "eval" / checkpoint.stem
    return checkpoint.parent / f"eval-{checkpoint.stem}"


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


def target_masks(table, targets: np.ndarray, device: torch.device, chunk: int = 256) -> tuple[torch.Tensor, np.ndarray]:
    """The official mask-SSIM masks (``pose_mask_eval`` of the target keypoints) of the distinct
    images in ``targets`` (image indices of the table), each computed once: masks (U,H,W) bool on
    ``device`` and ``row`` (M,) mapping an image index to its mask (-1 for images not asked for)."""
    unique = np.unique(targets)
    row = np.full(len(table.image_names), -1, np.int64)
    row[unique] = np.arange(len(unique))
    kps = torch.from_numpy(table.keypoints[unique]).to(device)
    with single_thread(device):
        masks = torch.cat([pose_mask_eval(kps[i : i + chunk], table.image_size) for i in range(0, len(unique), chunk)])
    return masks, row


def _ensure_data(cfg: EvalConfig, log: Callable[[str], None]) -> Path:
    return Path(cfg.data) if cfg.data is not None else embedded_dataset(log=log)


@dataclass
class _Scoring:
    """The generate-and-score loop's inputs and what it accumulates (per-pair arrays of length n)."""

    cfg: EvalConfig
    device: torch.device
    table: PairTable
    dataset: PairDataset
    transferer: Transferer
    masks: torch.Tensor  # (U,H,W) bool target-pose masks, see target_masks
    mask_row: np.ndarray  # image index -> row of masks
    image_dir: Path
    grid_at: dict[int, int]  # pair index -> grid row
    per_pair: dict[str, np.ndarray]
    seconds: dict[str, float] = field(default_factory=lambda: {"generate": 0.0, "metrics": 0.0})
    grid_rows: dict[int, list[np.ndarray]] = field(default_factory=dict)


def evaluate(cfg: EvalConfig, log: Callable[[str], None] = print) -> EvalReport:
    """Generate and score the test pairs; writes the files described in the module docstring."""
    cfg.validate()
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device)
    t_start = time.perf_counter()
    # data first (validated without decoding), then the model
    root, table, n = _load_pairs(cfg, log)
    data = read_checkpoint(cfg.checkpoint)
    bundle = bundle_from_checkpoint(data, cfg.checkpoint, device)
    transferer = Transferer(bundle, device=device, dtype=dtype, channels_last=True, batch_size=cfg.batch_size)
    out = Path(cfg.out) if cfg.out is not None else default_out(cfg.checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.save_images:
        (out / "images").mkdir(exist_ok=True)
    scoring = _start_scoring(cfg, device, table, n, transferer, out / "images")
    _score_all(scoring, n)
    results = {
        who: {m: summarise(scoring.per_pair[f"{who}_{m}"]) for m in METRICS} for who in ("generated", "copy_source")
    }
    scoring.seconds["total"] = time.perf_counter() - t_start
    info = _eval_info(cfg, data, bundle, root, table, n, device=device, dtype=dtype, scoring=scoring, results=results)
    if info["checkpoint_dataset_fingerprint"] and info["checkpoint_dataset_fingerprint"] != table.dataset_fingerprint:
        log(
            f"[eval] note: the checkpoint was trained on another dataset (fingerprint "
            f"{str(info['checkpoint_dataset_fingerprint'])[:12]}..., this one {table.dataset_fingerprint[:12]}...)"
        )
    report = EvalReport(
        out=out,
        method=bundle.method,
        preset=bundle.preset,
        iteration=info["iteration"],
        n_pairs=n,
        n_total=len(table),
        results=results,
        per_pair=scoring.per_pair,
        info=info,
    )
    _write_outputs(report, table, scoring.grid_rows)
    return report


def _load_pairs(cfg: EvalConfig, log: Callable[[str], None]) -> tuple[Path, PairTable, int]:
    """The dataset root, its test pairs (checked, nothing decoded) and how many of them to score."""
    root = _ensure_data(cfg, log)
    table = load_pairs(root, "test", keypoints_dir=cfg.keypoints)
    n_total = len(table)
    n = n_total if cfg.pairs is None else min(cfg.pairs, n_total)
    for line in table.summary_lines():
        log(f"[eval] {line}")
    if cfg.pairs is not None and cfg.pairs > n_total:
        log(f"[eval] --pairs {cfg.pairs} > {n_total} test pairs: evaluating all {n_total}")
    return root, table, n


def _start_scoring(cfg: EvalConfig, device, table: PairTable, n: int, transferer, image_dir: Path) -> _Scoring:
    # grid rows: pairs spread evenly over the evaluated ones
    shown = np.unique(np.linspace(0, n - 1, min(cfg.grid_rows, n)).round().astype(int)) if cfg.grid_rows else []
    masks, mask_row = target_masks(table, table.tgt[:n], device)
    return _Scoring(
        cfg=cfg,
        device=device,
        table=table,
        dataset=PairDataset(table=table, split="test"),
        transferer=transferer,
        masks=masks,
        mask_row=mask_row,
        image_dir=image_dir,
        grid_at={int(i): r for r, i in enumerate(shown)},
        per_pair={f"{who}_{m}": np.empty(n) for who in ("generated", "copy_source") for m in METRICS},
    )


def _score_all(scoring: _Scoring, n: int) -> None:
    """The first ``n`` pairs in batches, with a progress bar."""
    cfg = scoring.cfg
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="pair", desc="evaluate", file=sys.stderr)
    try:
        for start in range(0, n, cfg.batch_size):
            idx = np.arange(start, min(start + cfg.batch_size, n))
            _score_batch(scoring, idx)
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()


def _score_batch(scoring: _Scoring, idx: np.ndarray) -> None:
    """Generate pairs ``idx`` (B,), score generated and copy-source, keep grid rows and images."""
    cfg, table, device = scoring.cfg, scoring.table, scoring.device
    s_idx, t_idx = table.src[idx], table.tgt[idx]
    src = torch.from_numpy(np.stack([scoring.dataset.image(int(k)) for k in s_idx])).to(device)
    tgt = torch.from_numpy(np.stack([scoring.dataset.image(int(k)) for k in t_idx])).to(device)
    src_kps = torch.from_numpy(table.keypoints[s_idx])
    tgt_kps = torch.from_numpy(table.keypoints[t_idx])

    t0 = time.perf_counter()
    fake = scoring.transferer(uint8_to_model(src), src_kps, tgt_kps)  # float (B,3,H,W) on device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    scoring.seconds["generate"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    if cfg.official_io:
        gen_u8 = official_tensor2im(fake).cpu().numpy()
        src_u8 = official_loader_roundtrip(src).cpu().numpy()
        tgt_u8 = official_loader_roundtrip(tgt).cpu().numpy()
    else:  # the inference module's rounding
        gen_u8, src_u8, tgt_u8 = model_to_uint8(fake), src, tgt
    strips = []
    if cfg.official_io or cfg.save_images or any(int(i) in scoring.grid_at for i in idx):
        strips = _strips(cfg, src_u8, src_kps, tgt_u8, tgt_kps, gen_u8)
        if cfg.official_io:  # score what the official tool reads back
            src_u8 = np.stack([p[0] for p, _ in strips])
            tgt_u8 = np.stack([p[2] for p, _ in strips])
            gen_u8 = np.stack([p[4] for p, _ in strips])
    mask = scoring.masks[torch.from_numpy(scoring.mask_row[t_idx]).to(scoring.masks.device)]  # (B,H,W) bool
    for who, output in (("generated", gen_u8), ("copy_source", src_u8)):
        values = pair_metrics(output, tgt_u8, mask)
        for m in METRICS:
            scoring.per_pair[f"{who}_{m}"][idx] = values[m]
    scoring.seconds["metrics"] += time.perf_counter() - t0
    _keep_strips(scoring, idx, strips)


def _strips(cfg: EvalConfig, *images) -> list[tuple[list[np.ndarray], bytes | None]]:
    """Per pair of a batch, the official strip's panels (and, with --official-io, its JPEG bytes,
    the panels then being the decoded ones). ``images``: src, src_kps, tgt, tgt_kps, generated."""
    arrays = [_numpy(x) for x in images]
    strips = []
    for j in range(len(arrays[0])):
        panels = official_strip(*(a[j] for a in arrays))
        encoded = None
        if cfg.official_io:
            panels, encoded = jpeg_roundtrip_strip(panels)
        strips.append((panels, encoded))
    return strips


def _keep_strips(scoring: _Scoring, idx: np.ndarray, strips: list) -> None:
    """Grid rows of the shown pairs; every strip as an image file with --save-images."""
    table = scoring.table
    for j, i in enumerate(idx):
        if int(i) in scoring.grid_at:
            scoring.grid_rows[scoring.grid_at[int(i)]] = strips[j][0]
        if scoring.cfg.save_images:
            name = f"{table.image_names[table.src[i]]}___{table.image_names[table.tgt[i]]}_vis"
            panels, encoded = strips[j]
            if encoded is not None:
                write_atomic(scoring.image_dir / f"{name}.jpg", encoded)
            else:
                write_atomic(scoring.image_dir / f"{name}.png", encode_image(np.concatenate(panels, 1), ".png"))


def _eval_info(cfg, data: dict, bundle, root, table, n, *, device, dtype, scoring: _Scoring, results) -> dict:
    """The ``metrics.json`` record: settings, data and checkpoint identity, results, timing."""
    seconds = scoring.seconds
    return {
        "format": "poseaug-eval/1",
        "checkpoint": str(cfg.checkpoint),
        "method": bundle.method,
        "preset": bundle.preset,
        "iteration": int(data.get("iteration", 0)),
        "checkpoint_dataset_fingerprint": data.get("dataset_fingerprint"),
        "code_version": data.get("code_version"),
        "data": str(root),
        "pairs_file": str(table.pairs_file),
        "pairs_sha256": table.pairs_sha256,
        "dataset_fingerprint": table.dataset_fingerprint,
        "pairs_total": len(table),
        "pairs_evaluated": n,
        "subset": "all pairs" if n == len(table) else f"first {n} rows of the pairs file, in file order",
        "pairs_skipped": table.skipped.lines(),
        "device": str(device),
        "precision": dtype or "fp32",
        "batch_size": cfg.batch_size,
        "official_io": cfg.official_io,
        "results": results,
        "units": UNITS,
        "not_computed": NOT_COMPUTED,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "generated_images_per_second": round(n / seconds["generate"], 3) if seconds["generate"] > 0 else None,
    }


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _json_safe(obj):
    if isinstance(obj, float) and not np.isfinite(obj):
        return None  # JSON has no NaN / inf; counts say how many values were left out
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _write_outputs(report: EvalReport, table, grid_rows: dict[int, list[np.ndarray]]) -> None:
    out = report.out
    write_atomic(out / "metrics.json", (json.dumps(_json_safe(report.info), indent=1) + "\n").encode())
    with atomic_path(out / "pairs.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        columns = list(report.per_pair)
        writer.writerow(["pair", "line", "from", "to", *columns])
        for i in range(report.n_pairs):
            src, tgt = table.pair_names(i)
            writer.writerow([i, int(table.lines[i]), src, tgt, *(repr(float(report.per_pair[c][i])) for c in columns)])
    if grid_rows:
        grid = grid_image([grid_rows[r] for r in sorted(grid_rows)])
        write_atomic(out / "grid.png", encode_image(grid, ".png"))


# ---------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m generators.evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="generator checkpoint (.pt)")
    p.add_argument(
        "--data",
        type=Path,
        help=f"dataset root in Market-1501 layout (default: {DEFAULT_DATA}, rendered first if absent)",
    )
    p.add_argument("--keypoints", type=Path, help="folder of the annotation/pairs CSVs (default: the data root)")
    p.add_argument("--pairs", type=int, help="evaluate the first N test pairs in file order (default: all)")
    p.add_argument("--batch-size", type=int, default=32, help="generation batch size (default 32)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 | auto (default fp32)")
    p.add_argument("--out", type=Path, help="output folder (default: next to the checkpoint, see above)")
    p.add_argument("--save-images", action="store_true", help="write every pair as an official 5-panel strip")
    p.add_argument(
        "--official-io",
        action="store_true",
        help="score through the official tensor2im truncation and JPEG strips (see above)",
    )
    p.add_argument("--grid-rows", type=int, default=8, help="pairs shown in grid.png (default 8; 0: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = EvalConfig(
        checkpoint=args.checkpoint,
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
    )
    try:
        report = evaluate(cfg)
    except (UsageError, DatasetError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = report.info
    print(
        f"[eval] {report.n_pairs} of {report.n_total} test pairs ({info['subset']}), {info['device']} "
        f"{info['precision']}{', official JPEG path' if info['official_io'] else ''}; "
        f"generation {info['generated_images_per_second']} images/s"
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
