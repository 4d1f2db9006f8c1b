"""``python -m generators.quality_curve``: image quality against training time, from one training run.

    python -m generators.quality_curve --method patn --preset synth --minutes 5,10,15,20
    python -m generators.quality_curve --method deform --preset synth --minutes 5,10,20 --clock cpu \\
        --reid runs/reid-proxy/checkpoint.pt --out runs/curves/deform

One run trains the preset; whenever the training clock passes a mark (``--minutes``), the
generator is saved as it is then (``marks/m<minutes>.pt``), and the end of the run is a point too.
After training, every saved generator is scored on the first ``--pairs`` test pairs with
``generators.evaluate`` (SSIM, mask-SSIM, L1, PSNR, each beside the copy-source floor on the same
pairs) and, with ``--reid``, with the identity proxy (``generators.identity``: Rank-1 of the
generated images among the real test images). Evaluation runs after training, off the clock.

Length (``--iterations``): ``auto`` (default) sizes the schedule so that it ends at the last
mark: a short calibration run (``--calibrate`` iterations, not part of the curve) measures the
seconds per iteration on this machine, and the preset's iteration count becomes what fits (the
decay point keeps its fraction of the run, as ``generators.train --iterations`` does). So the last
point is the preset's recipe stretched or shrunk to the budget, and the earlier ones are
snapshots of that run (before the learning-rate decay, unless the preset keeps it constant).
``preset`` trains the preset's own length; a number trains that many iterations. The run always
completes its schedule: marks it never reaches are left out, and its end is the last point.

Clock (``--clock``): ``wall`` (default; seconds of training on this machine, what a person
waits: run it on a machine nothing else uses) or ``cpu`` (CPU seconds of the training process,
all its threads: the figure that still means something on a shared machine). Both are recorded.

Outputs under ``--out`` (default ``runs/curves/<method>-<preset>``)::

    train/        the training run (generators.train's folder)
    marks/        m<minutes>.pt at each mark reached, end.pt at the end of the schedule
    eval/         one generators.evaluate folder per point (metrics.json, pairs.csv, grid.png)
    curve.csv     one row per point: minutes (the clock's), wall and CPU seconds, iteration,
                  training GFLOPs so far, the four metrics and their copy-source floors
                  (and the identity proxy's Rank-1 / mAP with --reid)
    curve.png     SSIM, mask-SSIM and L1 (and identity Rank-1) against minutes, floors dashed
    summary.json  settings, calibration, training cost per iteration

Training cost per iteration (:func:`train_step_gflops`): the forward FLOPs of every convolution
and linear layer that one real training step runs (generator, discriminators, loss networks),
times 3 for forward plus backward, per the usual estimate.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from augment.data.atomic import atomic_path, write_atomic
from augment.data.market import DatasetError, read_market
from augment.runtime import UsageError
from augment.synth import embedded_dataset
from generators.base import Bundle, build, parse_override
from generators.checkpoint import CheckpointError, save
from generators.evaluate import METRICS, EvalConfig, evaluate
from generators.identity import IdentityConfig, evaluate_identity, reid_embedder
from generators.losses import MissingWeightsError
from generators.quality_compare import plot_comparison, read_curve
from generators.train import IterationInfo, RunConfig, train

CLOCKS = ("wall", "cpu")
ITERATION_MODES = ("auto", "preset")


# ---------------------------------------------------------------------------------------------
# cost of one training step


def _synthetic_batch(batch: int, size: tuple[int, int], seed: int = 0) -> dict:
    """A training batch of random images and plausible keypoints (a standing figure), for counting."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    img = lambda: torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    # COCO-18 standing pose in the 128x64 frame, scaled to (h, w)
    ys = [18, 30, 30, 50, 68, 30, 50, 68, 66, 90, 114, 66, 90, 114, 15, 15, 16, 16]
    xs = [32, 32, 22, 18, 16, 42, 46, 48, 26, 25, 24, 38, 39, 40, 35, 29, 38, 26]
    kps = torch.tensor([[round(y * h / 128), round(x * w / 64)] for y, x in zip(ys, xs)]).expand(batch, 18, 2)
    names = [f"x{i}" for i in range(batch)]
    return {"src_img": img(), "tgt_img": img(), "src_kps": kps.clone(), "tgt_kps": kps.clone(), **_names(names)}


def _names(names: list[str]) -> dict:
    return {"src_name": names, "tgt_name": list(names)}


def train_step_gflops(bundle: Bundle, size: tuple[int, int] = (128, 64), batch: int = 2) -> float:
    """GFLOPs of one training iteration at the config's batch size: 3 x the forward MACs x 2 of
    every Conv/ConvTranspose/Linear a real ``train_step`` runs (on a copy of the networks, in fp32)."""
    impl, cfg = bundle.impl, bundle.config
    nets = copy.deepcopy(bundle.nets).train()
    ctx = impl.make_context(nets, cfg, device="cpu", seed=0)
    opts = impl.make_optimizers(nets, cfg)
    macs = [0]

    def record(module, args, output):
        if isinstance(module, nn.ConvTranspose2d):
            kh, kw = module.kernel_size
            macs[0] += args[0].numel() * (module.out_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs[0] += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            macs[0] += output.numel() * module.in_features

    modules = [*nets.modules(), *(m for loss in ctx.losses.values() for m in loss.modules())]
    handles = [
        m.register_forward_hook(record) for m in modules if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    try:
        with torch.random.fork_rng(devices=[]):
            impl.train_step(nets, opts, _synthetic_batch(batch, size), ctx)
    finally:
        for h in handles:
            h.remove()
    return 3 * 2 * macs[0] / batch * cfg.train.batch_size / 1e9


# ---------------------------------------------------------------------------------------------
# the clock and the marks


class Clock:
    """Seconds of training so far, on the wall or on the process's CPU (all threads); time
    spent saving snapshots is taken off both."""

    def __init__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.paused = {"wall": 0.0, "cpu": 0.0}

    def read(self) -> dict[str, float]:
        return {
            "wall": time.perf_counter() - self.wall0 - self.paused["wall"],
            "cpu": time.process_time() - self.cpu0 - self.paused["cpu"],
        }

    def pause_during(self, work: Callable[[], None]) -> None:
        w, c = time.perf_counter(), time.process_time()
        work()
        self.paused["wall"] += time.perf_counter() - w
        self.paused["cpu"] += time.process_time() - c


@dataclass
class Point:
    """One saved generator: where on the clock, after how much training."""

    label: str
    path: Path
    iteration: int
    wall_s: float
    cpu_s: float
    results: dict = field(default_factory=dict)  # metric -> value, "copy_<metric>" -> floor


class MarkSaver:
    """A training hook: saves the generator each time the clock passes the next mark."""

    def __init__(self, marks_s: Sequence[float], clock_name: str, folder: Path, fingerprint: str):
        self.marks = sorted(marks_s)
        self.clock_name, self.folder, self.fingerprint = clock_name, folder, fingerprint
        self.clock = Clock()
        self.points: list[Point] = []

    def save(self, label: str, info: IterationInfo) -> Point:
        now = self.clock.read()
        path = self.folder / f"{label}.pt"
        self.clock.pause_during(
            lambda: save(path, info.bundle, iteration=info.iteration, dataset_fingerprint=self.fingerprint)
        )
        point = Point(label, path, info.iteration, now["wall"], now["cpu"])
        self.points.append(point)
        return point

    def __call__(self, info: IterationInfo) -> None:
        while self.marks and self.clock.read()[self.clock_name] >= self.marks[0]:
            self.save(f"m{_minutes_label(self.marks.pop(0))}", info)


def _minutes_label(seconds: float) -> str:
    return f"{seconds / 60:g}".replace(".", "p")


# ---------------------------------------------------------------------------------------------
# the command as a library function


@dataclass
class CurveConfig:
    method: str = "patn"
    preset: str = "synth"
    minutes: tuple[float, ...] = (5.0, 10.0, 15.0, 20.0)
    clock: str = "wall"
    iterations: str = "auto"  # auto | preset | a number
    calibrate: int = 30  # iterations of the calibration run (the first third is warm-up)
    out: Path | None = None
    data: Path | None = None
    pairs: int = 2000
    seed: int = 0
    amp: str = "auto"
    threads: int | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    eval_precision: str = "fp32"

    def validate(self) -> None:
        if not self.minutes or min(self.minutes) <= 0:
            raise UsageError("--minutes", f"needs positive minutes, got {self.minutes}")
        if self.clock not in CLOCKS:
            raise UsageError("--clock", f"{self.clock!r} is not one of {', '.join(CLOCKS)}")
        if self.iterations not in ITERATION_MODES and not (self.iterations.isdigit() and int(self.iterations) > 0):
            raise UsageError("--iterations", f"auto, preset or a positive number, got {self.iterations!r}")
        if self.calibrate < 6:
            raise UsageError("--calibrate", f"needs >= 6 iterations, got {self.calibrate}")
        if self.pairs < 1:
            raise UsageError("--pairs", f"must be >= 1, got {self.pairs}")

    @property
    def folder(self) -> Path:
        return Path(self.out) if self.out is not None else Path("runs/curves") / f"{self.method}-{self.preset}"


def _run_config(cfg: CurveConfig, out: Path, iterations: int | None, hooks_every: int) -> RunConfig:
    return RunConfig(
        out=out,
        method=cfg.method,
        preset=cfg.preset,
        data=cfg.data,
        iterations=iterations,
        checkpoint_every=hooks_every,
        sample_every=hooks_every,
        amp=cfg.amp,
        seed=cfg.seed,
        overrides=dict(cfg.overrides),
        progress=False,
    )


def calibrate(cfg: CurveConfig, log: Callable[[str], None]) -> float:
    """Seconds per iteration on ``cfg.clock``, from a short throw-away run (its first third is
    warm-up and not timed)."""
    clock, stamps = Clock(), []
    warm = cfg.calibrate // 3

    def hook(info: IterationInfo) -> None:
        if info.iteration in (warm, cfg.calibrate):
            stamps.append(clock.read()[cfg.clock])

    with tempfile.TemporaryDirectory(prefix="quality-curve-") as tmp:
        run = _run_config(cfg, Path(tmp), cfg.calibrate, 10**9)
        train(run, hooks=[hook], log=lambda line: None)
    per_it = (stamps[1] - stamps[0]) / (cfg.calibrate - warm)
    log(f"[curve] calibration: {per_it:.3f} {cfg.clock} s per iteration")
    return per_it


def resolve_iterations(cfg: CurveConfig, log: Callable[[str], None]) -> tuple[int | None, float | None]:
    """(iterations for the run (None: the preset's), measured seconds per iteration or None)."""
    if cfg.iterations == "preset":
        return None, None
    if cfg.iterations != "auto":
        return int(cfg.iterations), None
    per_it = calibrate(cfg, log)
    return max(1, int(max(cfg.minutes) * 60 / per_it)), per_it


def score_points(cfg: CurveConfig, points: list[Point], identity: Callable | None, log) -> None:
    """Evaluate every point (and its identity proxy) into ``point.results``."""
    for p in points:
        report = evaluate(
            EvalConfig(
                checkpoint=p.path,
                data=cfg.data,
                pairs=cfg.pairs,
                precision=cfg.eval_precision,
                out=cfg.folder / "eval" / p.label,
                progress=False,
            ),
            log=lambda line: None,
        )
        for m in METRICS:
            p.results[m] = report.results["generated"][m]["mean"]
            p.results[f"copy_{m}"] = report.results["copy_source"][m]["mean"]
        if identity is not None:
            p.results.update(identity(p.path))
        log(f"[curve] {p.label}: it {p.iteration}, " + ", ".join(f"{k} {v:.4f}" for k, v in p.results.items()))


def run_curve(cfg: CurveConfig, identity: Callable[[Path], dict] | None = None, log=print) -> list[Point]:
    """Train once, save at the marks, score every point; writes the outputs (module docstring).
    ``identity``: checkpoint path -> {"id_rank1": ..., ...} (the caller builds it; see main)."""
    cfg.validate()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    folder = cfg.folder
    if (folder / "train" / "checkpoints" / "latest.pt").exists():
        raise UsageError("--out", f"{folder} already holds a curve run; choose another --out")
    iterations, per_it = resolve_iterations(cfg, log)
    data_root = cfg.data if cfg.data is not None else embedded_dataset(log=log)
    cfg = CurveConfig(**{**asdict(cfg), "data": Path(data_root)})
    saver = MarkSaver([60 * m for m in cfg.minutes], cfg.clock, folder / "marks", read_market(data_root).fingerprint())
    report = train(_run_config(cfg, folder / "train", iterations, 10**9), hooks=[saver], log=log)
    end = saver.clock.read()
    latest = folder / "train" / "checkpoints" / "latest.pt"
    points = [*saver.points, Point("end", latest, report.iteration, end["wall"], end["cpu"])]
    bundle = build(cfg.method, cfg.preset, **{**cfg.overrides, **_iteration_override(iterations)})
    step_gflops = train_step_gflops(bundle)
    score_points(cfg, points, identity, log)
    write_outputs(cfg, points, step_gflops, per_it, report.iteration)
    return points


def _iteration_override(iterations: int | None) -> dict:
    return {} if iterations is None else {"train.iterations": iterations, "train.decay_start": 0}


# ---------------------------------------------------------------------------------------------
# outputs


def write_outputs(cfg: CurveConfig, points: list[Point], step_gflops: float, per_it, iterations: int) -> None:
    folder = cfg.folder
    extra = sorted({k for p in points for k in p.results if k.startswith("id_")})
    columns = ["point", "minutes", "wall_s", "cpu_s", "iteration", "train_gflops"]
    columns += [*METRICS, *(f"copy_{m}" for m in METRICS), *extra]
    with atomic_path(folder / "curve.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for p in points:
            minutes = (p.cpu_s if cfg.clock == "cpu" else p.wall_s) / 60
            row = [p.label, f"{minutes:.3f}", f"{p.wall_s:.1f}", f"{p.cpu_s:.1f}", p.iteration]
            row += [f"{p.iteration * step_gflops:.0f}"]
            row += [f"{p.results.get(c, float('nan')):.5f}" for c in columns[6:]]
            writer.writerow(row)
    summary = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "iterations": iterations,
        "calibrated_seconds_per_iteration": per_it,
        "train_gflops_per_iteration": round(step_gflops, 3),
        "points": [{**asdict(p), "path": str(p.path)} for p in points],
    }
    write_atomic(folder / "summary.json", (json.dumps(summary, indent=1) + "\n").encode())
    plot_comparison([read_curve(folder)], folder / "curve.png")  # the same panels as a comparison of curves


# ---------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m generators.quality_curve",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", default="patn")
    p.add_argument("--preset", default="synth")
    p.add_argument("--minutes", default="5,10,15,20", help="marks in training minutes (default 5,10,15,20)")
    p.add_argument("--clock", default="wall", choices=CLOCKS, help="wall (default) or cpu (process CPU time)")
    p.add_argument("--iterations", default="auto", help="auto (fit the last mark; default), preset, or N")
    p.add_argument("--calibrate", type=int, default=30, help="iterations of the calibration run (default 30)")
    p.add_argument("--out", type=Path, help="output folder (default runs/curves/<method>-<preset>)")
    p.add_argument("--data", type=Path, help="dataset root (default: the embedded dataset)")
    p.add_argument("--pairs", type=int, default=2000, help="test pairs scored per point (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", default="auto", help="training precision, as generators.train (default auto)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--reid", type=Path, help="re-ID checkpoint.pt (reid_eval.train) for the identity proxy")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    return p


def config_from_args(args: argparse.Namespace) -> CurveConfig:
    try:
        minutes = tuple(float(m) for m in args.minutes.split(",") if m.strip())
    except ValueError:
        raise UsageError("--minutes", f"comma-separated numbers, got {args.minutes!r}") from None
    try:
        overrides = dict(parse_override(t) for t in args.overrides)
    except ValueError as e:
        raise UsageError("--set", str(e)) from None
    return CurveConfig(
        method=args.method,
        preset=args.preset,
        minutes=minutes,
        clock=args.clock,
        iterations=str(args.iterations),
        calibrate=args.calibrate,
        out=args.out,
        data=args.data,
        pairs=args.pairs,
        seed=args.seed,
        amp=args.amp,
        threads=args.threads,
        overrides=overrides,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        identity = None
        if args.reid is not None:  # main() may reach up to the re-ID layer for the proxy's network
            from reid_eval.compat import load_checkpoint
            from reid_eval.models import build_reid_model

            identity = identity_scorer(args.reid, cfg, load_checkpoint=load_checkpoint, build_model=build_reid_model)
        run_curve(cfg, identity)
    except (UsageError, DatasetError, CheckpointError, MissingWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[curve] wrote {cfg.folder / 'curve.csv'} and {cfg.folder / 'curve.png'}")
    return 0


def identity_scorer(reid: Path, cfg: CurveConfig, *, load_checkpoint, build_model) -> Callable[[Path], dict]:
    """checkpoint -> identity-proxy figures (``id_rank1``, ``id_mAP``, and the copy-source and
    real-target Rank-1), with the re-ID network of ``reid``; ``load_checkpoint`` / ``build_model``
    as :func:`generators.identity.reid_embedder` takes them. The gallery is embedded once."""
    if not reid.is_file():
        raise UsageError("--reid", f"{reid} is not a file")
    embed = reid_embedder(reid, load_checkpoint=load_checkpoint, build_model=build_model)
    cache: dict = {}

    def score(checkpoint: Path) -> dict:
        data = cfg.data if cfg.data is not None else embedded_dataset()
        report, cache["gallery"] = evaluate_identity(
            IdentityConfig(checkpoint, Path(data), cfg.pairs), embed, cache.get("gallery")
        )
        return {
            "id_rank1": report.rank1["generated"],
            "id_mAP": report.mAP["generated"],
            "id_rank1_copy": report.rank1["copy_source"],
            "id_rank1_real": report.rank1["real_target"],
        }

    return score


if __name__ == "__main__":
    sys.exit(main())
