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
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from augment.data.keypoints import find_keypoint_file, read_annotations
from augment.data.market import read_market
from augment.execute import decode_stage, make_payloads
from augment.plan import PlanSpec, TrainIndex, make_plan
from augment.synth import DEFAULT_OUT as DEFAULT_DATA
from augment.synth import embedded_dataset


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


def main(argv: list[str] | None = None) -> dict:
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
    a = ap.parse_args(argv)
    executors = [e for e in a.executors.split(",") if e]
    for e in executors:
        if e not in ("local", "ray"):
            raise SystemExit(f"error: --executors: unknown executor {e!r} (local, ray)")

    data = a.data or embedded_dataset()
    tmp = Path(tempfile.mkdtemp(prefix="augment-bench-"))
    ckpt = a.checkpoint or make_checkpoint(a.method, a.preset, tmp)
    device = None if a.device == "auto" else a.device
    precision = None if a.precision == "fp32" else a.precision

    # the base plan's payloads, exactly as augment.run forms them
    dataset = read_market(data)
    index = TrainIndex.from_dataset(dataset, read_annotations(find_keypoint_file(data, "annotation", "train")))
    plan = make_plan(index, PlanSpec("poses", per_image=a.per_image, method=a.method))
    payloads = make_payloads(plan.generated(), dataset, a.batch_size)
    print(
        f"[bench] {a.method} ({ckpt}) on {data}: base plan {len(plan.generated())} generated images, "
        f"batch {a.batch_size}, device {a.device}, {a.precision}"
    )
    model_rate = model_only_rate(ckpt, payloads, device, precision)
    print(f"[bench] model-only: {model_rate:.1f} img/s")

    results = {
        "checkpoint": str(ckpt),
        "data": str(data),
        "batch_size": a.batch_size,
        "device": a.device,
        "precision": a.precision,
        "model_only_images_per_second": round(model_rate, 2),
        "executors": {},
    }
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)  # a private local Ray, never someone else's
    sizes = [a.per_image] + ([] if a.no_memory else [a.per_image * a.scale])
    for ex in executors:
        row = {}
        for k in sizes:
            out = tmp / f"{ex}-k{k}"
            cmd = [
                sys.executable,
                "-m",
                "augment.run",
                "--method",
                a.method,
                "--data",
                str(data),
                "--checkpoint",
                str(ckpt),
                "--poses-per-image",
                str(k),
                "--executor",
                ex,
                "--out",
                str(out),
                "--batch-size",
                str(a.batch_size),
                "--device",
                a.device,
                "--precision",
                a.precision,
            ]
            rc, peak_mib, log = run_measured(cmd, env)
            if rc != 0:
                raise SystemExit(f"error: {' '.join(cmd)} failed ({rc}):\n{log[-3000:]}")
            s = json.loads((out / "summary.json").read_text())
            row[f"k{k}"] = {
                "generated": s["generated_this_run"],
                "images_per_second": s["generated_images_per_second"],
                "overhead_seconds": s["executor_overhead_seconds"],
                "peak_rss_mib": round(peak_mib, 1),
            }
            print(
                f"[bench] {ex:5s} K={k:<3d} {s['generated_this_run']:6d} images  "
                f"{s['generated_images_per_second']:7.1f} img/s  start-up+shutdown "
                f"{s['executor_overhead_seconds']:5.1f} s  peak {peak_mib:7.1f} MiB"
            )
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        base = row[f"k{a.per_image}"]
        row["end_to_end_over_model_only"] = round(base["images_per_second"] / model_rate, 3)
        if len(sizes) > 1:
            big = row[f"k{sizes[1]}"]
            row["peak_memory_ratio_large_over_base"] = round(big["peak_rss_mib"] / base["peak_rss_mib"], 3)
        results["executors"][ex] = row

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
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=1))
    print(f"\n[bench] results: {a.out}")
    return results


if __name__ == "__main__":
    main()
