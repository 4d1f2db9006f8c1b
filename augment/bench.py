"""``python -m augment.bench``: the service's images/s against the model alone, and its memory as plans grow.

For one checkpoint on one device, side by side in one run:

1. model-only images/s: the generator on pre-decoded sources, the very batches the service
   would form (no decoding, encoding or writing);
2. end-to-end images/s of ``python -m augment.run`` for each executor (decode, model, JPEG
   encode, atomic write, shard records), steady state: the executor's start-up (loading the
   generator; starting Ray) and shutdown are reported apart;
3. peak memory (RSS summed over the run's whole process tree, sampled every 0.1 s) for a plan
   and for a plan ``--scale`` times larger (K and ``scale``*K generated images per real image).

Goals: end-to-end >= 80% of model-only; peak memory within 10% when the plan grows 10x.
Throughput does not depend on the weights, so without ``--checkpoint`` a randomly
initialised ``--preset`` generator is saved to a temporary file and used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from augment.data.keypoints import find_keypoint_file, read_annotations
from augment.data.market import DatasetError, read_market
from augment.execute import decode_stage, make_payloads
from augment.plan import Plan, PlanSpec, TrainIndex, make_plan
from augment.runtime import UsageError
from augment.synth import DEFAULT_OUT as DEFAULT_DATA
from augment.synth import embedded_dataset

EXECUTOR_NAMES = ("local", "ray")


class BenchError(RuntimeError):
    """A measured run failed; the message holds its command and the end of its output."""


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (0 once it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[int, float, str]:
    """Run ``cmd``; returns (exit code, peak tree RSS in MiB, combined output)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, _ = proc.communicate()
    done.set()
    t.join()
    return proc.returncode, peak / 2**20, out


def model_only_rate(checkpoint: Path, payloads: list[dict], device: str | None, precision: str | None) -> float:
    """Images/s of the generator alone over the service's batches (sources decoded beforehand)."""
    from generators.inference import Transferer

    decoded = [decode_stage(p) for p in payloads]
    model = Transferer(checkpoint, device=device, dtype=precision)
    model(decoded[0]["src_img"], decoded[0]["source_kps"], decoded[0]["target_kps"])  # warm-up
    t0 = time.perf_counter()
    n = 0
    for p in decoded[1:]:
        model(p["src_img"], p["source_kps"], p["target_kps"])
        n += len(p["output_name"])
    return n / (time.perf_counter() - t0)


def make_checkpoint(method: str, preset: str, folder: Path) -> Path:
    from generators.base import build
    from generators.checkpoint import save

    return save(folder / f"{method}-{preset}-random.pt", build(method, preset))


def plan_payloads(data: Path, spec: PlanSpec, batch_size: int) -> tuple[Plan, list[dict]]:
    """The plan of ``spec`` on ``data`` and its batch payloads, exactly as augment.run forms them."""
    dataset = read_market(data)
    index = TrainIndex.from_dataset(dataset, read_annotations(find_keypoint_file(data, "annotation", "train")))
    plan = make_plan(index, spec)
    return plan, make_payloads(plan.generated(), dataset, batch_size)


def service_command(
    data: Path,
    checkpoint: Path,
    protocol: list[str],
    executor: str,
    out: Path,
    *,
    method: str = "patn",
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "fp32",
) -> list[str]:
    """``python -m augment.run`` for one measured run (``protocol``: e.g. ``["--poses-per-image", "1"]``)."""
    return [
        sys.executable,
        "-m",
        "augment.run",
        "--method",
        method,
        "--data",
        str(data),
        "--checkpoint",
        str(checkpoint),
        *protocol,
        "--executor",
        executor,
        "--out",
        str(out),
        "--batch-size",
        str(batch_size),
        "--device",
        device,
        "--precision",
        precision,
    ]


def measure_service(cmd: list[str], out: Path) -> tuple[dict, float]:
    """Run the service command as a subprocess (private local Ray); returns (its summary.json, peak tree MiB).

    Raises :class:`BenchError` when it fails.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)  # a private local Ray, never someone else's
    rc, peak_mib, log = run_measured(cmd, env)
    if rc != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({rc}):\n{log[-3000:]}")
    return json.loads((out / "summary.json").read_text()), peak_mib


@dataclass(frozen=True)
class BenchOptions:
    """What ``python -m augment.bench`` measures (its flags)."""

    method: str = "patn"
    preset: str = "synth"  # preset of the random-weight generator
    checkpoint: Path | None = None  # None: a random-weight ``preset`` generator in a temporary file
    data: Path | None = None  # None: the embedded dataset
    executors: tuple[str, ...] = EXECUTOR_NAMES
    per_image: int = 1  # generated images per real image, base plan (K)
    scale: int = 10  # the larger plan has scale*K per real image
    batch_size: int = 32
    device: str = "auto"
    precision: str = "fp32"
    memory: bool = True  # also run the larger plan
    out: Path = Path("runs/bench/augment-bench.json")

    def validate(self) -> None:
        for e in self.executors:
            if e not in EXECUTOR_NAMES:
                raise UsageError("--executors", f"unknown executor {e!r} ({', '.join(EXECUTOR_NAMES)})")
        for flag, value in (
            ("--per-image", self.per_image),
            ("--scale", self.scale),
            ("--batch-size", self.batch_size),
        ):
            if value < 1:
                raise UsageError(flag, f"must be >= 1, got {value}")


def measure_executor(opts: BenchOptions, executor: str, data: Path, ckpt: Path, tmp: Path, model_rate: float) -> dict:
    """The executor's end-to-end rate and peak memory for the base plan (and the larger one)."""
    row = {}
    for k in _sizes(opts):
        out = tmp / f"{executor}-k{k}"
        cmd = service_command(
            data,
            ckpt,
            ["--poses-per-image", str(k)],
            executor,
            out,
            method=opts.method,
            batch_size=opts.batch_size,
            device=opts.device,
            precision=opts.precision,
        )
        s, peak_mib = measure_service(cmd, out)
        row[f"k{k}"] = {
            "generated": s["generated_this_run"],
            "images_per_second": s["generated_images_per_second"],
            "overhead_seconds": s["executor_overhead_seconds"],
            "peak_rss_mib": round(peak_mib, 1),
        }
        print(
            f"[bench] {executor:5s} K={k:<3d} {s['generated_this_run']:6d} images  "
            f"{s['generated_images_per_second']:7.1f} img/s  start-up+shutdown "
            f"{s['executor_overhead_seconds']:5.1f} s  peak {peak_mib:7.1f} MiB"
        )
        shutil.rmtree(out, ignore_errors=True)
    sizes = _sizes(opts)
    base = row[f"k{sizes[0]}"]
    row["end_to_end_over_model_only"] = round(base["images_per_second"] / model_rate, 3)
    if len(sizes) > 1:
        row["peak_memory_ratio_large_over_base"] = round(row[f"k{sizes[1]}"]["peak_rss_mib"] / base["peak_rss_mib"], 3)
    return row


def _sizes(opts: BenchOptions) -> list[int]:
    return [opts.per_image] + ([opts.per_image * opts.scale] if opts.memory else [])


def print_table(results: dict, sizes: list[int], model_rate: float) -> None:
    print(
        "\n| executor | model-only img/s | end-to-end img/s | end-to-end / model-only (goal >= 0.80) "
        f"| peak MiB K={sizes[0]} | peak MiB K={sizes[-1]} | memory ratio (goal <= 1.10) |"
    )
    print("|---|---|---|---|---|---|---|")
    for ex, row in results["executors"].items():
        base, big = row[f"k{sizes[0]}"], row[f"k{sizes[-1]}"]
        print(
            f"| {ex} | {model_rate:.1f} | {base['images_per_second']:.1f} | {row['end_to_end_over_model_only']:.2f} "
            f"| {base['peak_rss_mib']:.0f} | {big['peak_rss_mib']:.0f} | "
            f"{row.get('peak_memory_ratio_large_over_base', float('nan')):.3f} |"
        )


def run_bench(opts: BenchOptions) -> dict:
    """Measure (see the module docstring); writes ``opts.out`` (JSON) and returns the results."""
    opts.validate()
    data = opts.data or embedded_dataset()
    tmp = Path(tempfile.mkdtemp(prefix="augment-bench-"))
    ckpt = opts.checkpoint or make_checkpoint(opts.method, opts.preset, tmp)
    device = None if opts.device == "auto" else opts.device
    precision = None if opts.precision == "fp32" else opts.precision
    plan, payloads = plan_payloads(
        data, PlanSpec("poses", per_image=opts.per_image, method=opts.method), opts.batch_size
    )
    print(
        f"[bench] {opts.method} ({ckpt}) on {data}: base plan {len(plan.generated())} generated images, "
        f"batch {opts.batch_size}, device {opts.device}, {opts.precision}"
    )
    model_rate = model_only_rate(ckpt, payloads, device, precision)
    print(f"[bench] model-only: {model_rate:.1f} img/s")
    results = {
        "checkpoint": str(ckpt),
        "data": str(data),
        "batch_size": opts.batch_size,
        "device": opts.device,
        "precision": opts.precision,
        "model_only_images_per_second": round(model_rate, 2),
        "executors": {ex: measure_executor(opts, ex, data, ckpt, tmp, model_rate) for ex in opts.executors},
    }
    print_table(results, _sizes(opts), model_rate)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(results, indent=1))
    print(f"\n[bench] results: {opts.out}")
    return results


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m augment.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="patn")
    ap.add_argument("--preset", default="synth", help="preset of the random-weight generator (default synth)")
    ap.add_argument("--checkpoint", type=Path, help="benchmark this checkpoint instead")
    ap.add_argument("--data", type=Path, help=f"dataset (default: the embedded one, {DEFAULT_DATA})")
    ap.add_argument("--executors", default="local,ray")
    ap.add_argument("--per-image", type=int, default=1, help="generated images per real image, base plan (K)")
    ap.add_argument("--scale", type=int, default=10, help="the larger plan has scale*K per real image")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--no-memory", action="store_true", help="skip the larger plan")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/augment-bench.json"))
    return ap


def main(argv: list[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    opts = BenchOptions(
        method=a.method,
        preset=a.preset,
        checkpoint=a.checkpoint,
        data=a.data,
        executors=tuple(e for e in a.executors.split(",") if e),
        per_image=a.per_image,
        scale=a.scale,
        batch_size=a.batch_size,
        device=a.device,
        precision=a.precision,
        memory=not a.no_memory,
        out=a.out,
    )
    try:
        return run_bench(opts)
    except (UsageError, DatasetError, BenchError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
