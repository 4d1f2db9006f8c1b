"""``python -m cluster.capacity``: what Market-1501 augmentation jobs cost, from measured per-image costs.

    python -m cluster.capacity                       # everything (slow: it measures every method)
    python -m cluster.capacity --methods patn --skip-service --out runs/bench/capacity-patn.json

Measured on this machine (CPU):

1. the augmentation service (``python -m augment.run`` as a subprocess, steady-state images/s from
   the shard timestamps, start-up apart, peak RSS of the process tree: ``augment.bench``'s helpers)
   on the embedded dataset (``data/synth-market``, rendered if absent) with a random-weight PATN
   ``synth`` generator: the local executor and the Ray executor with 1 and 2 generator actors, plus
   the model alone on the same batches, and the service's I/O alone: its own decode and write
   stages (decode, JPEG encode, hashing, atomic write, shard records) on the same batches with the
   source images standing in for the generated ones. The I/O cost per image does not depend on the
   method; the local executor's rate is about 1 / (model + I/O) (a cross-check in the JSON);
2. the per-image inference time of every registered method's ``market`` preset (128x64, batch 32,
   the fast path of ``generators.bench``: channels-last + bf16 where the CPU computes bf16 natively),
   and its forward GFLOPs per image (``generators.base.count_flops``).

ESTIMATED (no GPU here): H100 time per image = GFLOPs / (peak x efficiency), with the H100 SXM bf16
dense peak (989 TFLOP/s) and an assumed sustained efficiency (``--gpu-efficiency``, default 30%).
Convolutional nets of these sizes (BatchNorm, 64-512 channels, 128x64 images) often sustain well
under 30% of a tensor-core peak, so the GPU figures are optimistic; they scale as 1 / efficiency
(``--gpu-efficiency 0.1`` triples them).
A GPU node also needs CPU for the service's I/O: the measured I/O seconds per image, spread over the
node's cores (``--node-cpus``, default 16), bound a node's rate whenever they exceed the GPU time.
Re-ID training per Table-5 cell (``reid_eval.recipes`` ``openreid``: ResNet-50 256x128 50 epochs,
Inception 144x56 70 epochs) is estimated the same way from 3 x forward GFLOPs per training image
(forward + backward); data loading is not counted, so these are lower bounds. Those figures come
from ``reid_eval.costs``: re-ID sits above this layer, so only :func:`main` imports it and hands
its estimate to :func:`estimate` as a function.

Workloads (Market-1501: 12,936 training images, 751 identities): a 2x set generates 12,936 images,
a 3x set 25,872, and the full Table-5 sweep per method sum_p round((1-p) x 12,936) for p = 0.1..0.9
(58,212) plus 2x and 3x (97,020 images per method), times the methods measured. Its re-ID trainings:
per method 9 portions + 2x + 3x (12,936 / 25,872 / 38,808 training images), plus the 10 "None"
cells (round(p x 12,936), p = 0.1..1.0), per re-ID model.

Timings on a busy machine are not comparable: the load average is recorded before and after each
measurement. Output: a Markdown table on stdout, the JSON report (``--out``) and the Markdown next
to it (same name, ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from augment.runtime import UsageError

MARKET_TRAIN_IMAGES = 12_936
MARKET_TRAIN_IDENTITIES = 751
PORTIONS = tuple(round(0.1 * i, 1) for i in range(1, 10))  # Table 5's reduced portions (1.0 = the full set)
H100_BF16_DENSE_TFLOPS = 989.4  # H100 SXM, bf16 dense tensor-core peak (NVIDIA data sheet)
SECONDS_PER_HOUR = 3600.0


# ---------------------------------------------------------------------------------------------
# workloads


def generated_images() -> dict[str, int]:
    """Generated images per method: 2x, 3x and the whole Table-5 sweep (portions + 2x + 3x)."""
    portions = sum(round((1 - p) * MARKET_TRAIN_IMAGES) for p in PORTIONS)
    return {
        "2x": MARKET_TRAIN_IMAGES,
        "3x": 2 * MARKET_TRAIN_IMAGES,
        "sweep": portions + MARKET_TRAIN_IMAGES + 2 * MARKET_TRAIN_IMAGES,
    }


def reid_cells(methods: int) -> list[int]:
    """Training-set sizes of the Table-5 re-ID trainings for ``methods`` generating methods."""
    per_method = [MARKET_TRAIN_IMAGES] * len(PORTIONS) + [2 * MARKET_TRAIN_IMAGES, 3 * MARKET_TRAIN_IMAGES]
    none = [round(p * MARKET_TRAIN_IMAGES) for p in (*PORTIONS, 1.0)]
    return per_method * methods + none


# ---------------------------------------------------------------------------------------------
# measurements


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def io_seconds_per_image(payloads: list[dict], out: Path) -> float:
    """CPU seconds per image of the service's own decode and write stages, no model (the source
    images are written as the "generated" ones: same size, same JPEG work)."""
    from augment.execute import OutputLayout, decode_stage, write_stage

    layout = OutputLayout(out)
    layout.train_dir.mkdir(parents=True, exist_ok=True)
    layout.shards_dir.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    n = 0
    for p in payloads:
        d = decode_stage(p)
        d["gen_img"] = d["src_img"]
        write_stage(d, out)
        n += len(p["output_name"])
    return (time.perf_counter() - t0) / n


def _service_run(spec: str, data: Path, ckpt: Path, portion: float, out: Path, batch_size: int, precision: str) -> dict:
    """One ``augment.run`` subprocess on executor ``spec`` (``local`` or ``ray:N``): its figures."""
    from augment.bench import measure_service, service_command

    executor, _, actors = spec.partition(":")
    cmd = service_command(
        data,
        ckpt,
        ["--portion", str(portion)],
        executor,
        out,
        batch_size=batch_size,
        device="cpu",
        precision=precision,
    )
    if actors:
        cmd += ["--actors", actors]
    before = load_average()
    s, peak_mib = measure_service(cmd, out)
    return {
        "executor": executor,
        "actors": int(actors) if actors else None,
        "generated": s["generated_this_run"],
        "images_per_second": s["generated_images_per_second"],
        "generate_seconds": s["generate_seconds"],
        "overhead_seconds": s["executor_overhead_seconds"],
        "total_seconds": s["total_seconds"],
        "peak_rss_mib": round(peak_mib, 1),
        "load_average": [before, load_average()],
    }


def measure_service(
    data: Path | None,
    executors: Sequence[str],
    portion: float,
    batch_size: int,
    precision: str,
    log: Callable[[str], None] = print,
) -> dict:
    """Images/s of augment.run per executor (``local``, ``ray:N``) and of the model alone."""
    from augment.bench import make_checkpoint, model_only_rate, plan_payloads
    from augment.plan import PlanSpec
    from augment.synth import embedded_dataset

    data = data or embedded_dataset()
    tmp = Path(tempfile.mkdtemp(prefix="capacity-"))
    try:
        ckpt = make_checkpoint("patn", "synth", tmp)
        plan, payloads = plan_payloads(data, PlanSpec("portion", portion=portion, method="patn"), batch_size)
        amp = None if precision == "fp32" else precision
        load0 = load_average()
        model_rate = model_only_rate(ckpt, payloads, "cpu", amp)
        io = io_seconds_per_image(payloads, tmp / "io")
        log(
            f"[capacity] service: {len(plan.generated())} generated images per run (portion {portion}), "
            f"patn synth (random weights), batch {batch_size}, {precision}; model alone {model_rate:.1f} img/s; "
            f"I/O alone {1e3 * io:.1f} ms/image (load {load0})"
        )
        runs = []
        for spec in executors:
            out = tmp / spec.replace(":", "-")
            row = _service_run(spec, data, ckpt, portion, out, batch_size, precision)
            runs.append(row)
            log(
                f"[capacity] {spec:7s} {row['images_per_second']} img/s steady, start-up+shutdown "
                f"{row['overhead_seconds']} s, generate {row['generate_seconds']} s, "
                f"peak {row['peak_rss_mib']:.0f} MiB (load {row['load_average'][0]})"
            )
            shutil.rmtree(out, ignore_errors=True)
        local = next((r for r in runs if r["executor"] == "local" and r["images_per_second"]), None)
        # the local executor is one loop: 1 / rate - model = I/O (noisy on a busy machine)
        local_io = None if local is None else 1 / local["images_per_second"] - 1 / model_rate
        return {
            "data": str(data),
            "generator": "patn synth (random weights)",
            "portion": portion,
            "batch_size": batch_size,
            "precision": precision,
            "model_only_images_per_second": round(model_rate, 2),
            "io_seconds_per_image": round(io, 5),
            "io_seconds_per_image_implied_by_local_run": None if local_io is None else round(local_io, 5),
            "runs": runs,
            "load_average": [load0, load_average()],
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_methods(
    methods: Sequence[str], batch_size: int, repeats: int, log: Callable[[str], None] = print
) -> dict[str, dict]:
    """Per registered method (market preset): GFLOPs/image and CPU images/s of the fast path."""
    import torch

    from generators.base import build, load_builtin_methods, network_methods
    from generators.bench import BenchConfig, bench_method

    load_builtin_methods()
    names = network_methods() if list(methods) == ["all"] else methods
    results: dict[str, dict] = {}
    for name in names:
        before = load_average()
        try:
            cfg = BenchConfig(
                methods=[name],
                preset="market",
                device="cpu",
                batch_sizes=(batch_size,),
                repeats=repeats,
                warmup=1,
                compile=False,
            )
            r = bench_method(build(name, "market"), cfg, torch.device("cpu"), log=lambda s: None)
        except Exception as e:  # noqa: BLE001 - one broken method must not hide the others' figures
            results[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
            log(f"[capacity] {name}: failed: {results[name]['error']}")
            continue
        fast = r.fast_path[str(batch_size)]
        results[name] = {
            "gflops_per_image": round(r.gflops_per_image, 3),
            "parameters": r.parameters,
            "nets": r.nets,
            "variant": fast["variant"],
            "images_per_second": round(fast["images_per_second"], 3),
            "seconds_per_image": round(1 / fast["images_per_second"], 4),
            "load_average": [before, load_average()],
        }
        log(
            f"[capacity] {name}/market: {r.gflops_per_image:.2f} GFLOPs/image, {fast['images_per_second']:.2f} "
            f"img/s on CPU ({fast['variant']}, batch {batch_size}; load {before})"
        )
    return results


# ---------------------------------------------------------------------------------------------
# estimates


@dataclass
class GpuModel:
    """The assumed GPU: sustained FLOP rate = peak x efficiency; a node has ``node_cpus`` cores for I/O."""

    peak_tflops: float = H100_BF16_DENSE_TFLOPS
    efficiency: float = 0.30
    node_cpus: int = 16
    gpus: int = 8  # the "on G GPUs" column

    def seconds(self, gflops: float) -> float:
        return gflops * 1e9 / (self.peak_tflops * 1e12 * self.efficiency)


def _generation_estimate(r: dict, io: float | None, work: dict[str, int], gpu: GpuModel) -> dict:
    """One method's per-image costs and hours per workload, on this CPU and on a GPU node."""
    gpu_s = gpu.seconds(r["gflops_per_image"])
    node_s = max(gpu_s, (io or 0.0) / gpu.node_cpus)  # a GPU node: model on the GPU, I/O on its cores
    cpu_s = r["seconds_per_image"] + (io or 0.0)
    return {
        "cpu_seconds_per_image": round(cpu_s, 4),
        "gpu_ms_per_image_estimated": round(1e3 * gpu_s, 4),
        "gpu_node_ms_per_image_estimated": round(1e3 * node_s, 4),
        "io_bound_on_gpu_node": bool(io and io / gpu.node_cpus > gpu_s),
        "cpu_cores_to_feed_one_gpu": None if io is None else round(io / gpu_s, 1),
        "hours": {
            w: {
                "cpu_this_machine": round(n * cpu_s / SECONDS_PER_HOUR, 3),
                "gpu_node_estimated": round(n * node_s / SECONDS_PER_HOUR, 6),
            }
            for w, n in work.items()
        },
    }


ReidEstimate = Callable[[Sequence[int], dict[str, int], Callable[[float], float]], dict[str, dict]]


def estimate(
    service: dict | None, methods: dict[str, dict], gpu: GpuModel, reid_training: ReidEstimate | None = None
) -> dict:
    """Hours for each workload from the per-image costs (CPU measured, GPU estimated).

    ``reid_training(cells, set_sizes, seconds)``: the re-ID trainings' GPU hours per model
    (``reid_eval.costs.training_estimate`` with its models' figures, supplied by :func:`main`);
    None leaves them out.
    """
    io = (service or {}).get("io_seconds_per_image")
    work = generated_images()
    ok = {m: r for m, r in methods.items() if "error" not in r}
    generation = {name: _generation_estimate(r, io, work, gpu) for name, r in ok.items()}
    set_sizes = {label: k * MARKET_TRAIN_IMAGES for label, k in (("1x", 1), ("2x", 2), ("3x", 3))}
    training = reid_training(reid_cells(len(ok)), set_sizes, gpu.seconds) if reid_training else {}
    sweep_gen_gpu = sum(g["hours"]["sweep"]["gpu_node_estimated"] for g in generation.values())
    sweep_gen_cpu = sum(g["hours"]["sweep"]["cpu_this_machine"] for g in generation.values())
    sweep_reid_gpu = sum(t["sweep_gpu_hours_estimated"] for t in training.values())
    return {
        "workload_generated_images_per_method": work,
        "methods_in_sweep": sorted(ok),
        "generation": generation,
        "reid_training": training,
        "sweep_total": {
            "generated_images": work["sweep"] * len(ok),
            "generation_cpu_hours_this_machine": round(sweep_gen_cpu, 2),
            "generation_gpu_hours_estimated": round(sweep_gen_gpu, 5),
            "reid_gpu_hours_estimated": round(sweep_reid_gpu, 2),
            "gpu_hours_estimated": round(sweep_gen_gpu + sweep_reid_gpu, 2),
            f"hours_on_{gpu.gpus}_gpus_estimated": round((sweep_gen_gpu + sweep_reid_gpu) / gpu.gpus, 2),
        },
    }


# ---------------------------------------------------------------------------------------------
# report


def _h(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def markdown(report: dict) -> str:
    """The report as Markdown: machine, service runs, generation per method, re-ID training, the sweep."""
    lines = [
        f"Machine: {report['machine']}; load average {report['load_average_start']} -> "
        f"{report['load_average_end']} (timings under load are not comparable).",
        "",
    ]
    if report["service"]:
        lines += _service_lines(report["service"])
    lines += _generation_lines(report)
    if report["estimates"]["reid_training"]:
        lines += _reid_lines(report)
    lines += _sweep_lines(report)
    return "\n".join(lines)


def _service_lines(service: dict) -> list[str]:
    lines = [
        "**Augmentation service, measured here** (embedded dataset, PATN synth generator, "
        f"{service['precision']}, batch {service['batch_size']}; model alone "
        f"{service['model_only_images_per_second']} img/s; service I/O "
        f"{_ms(service['io_seconds_per_image'])} per image)",
        "",
        "| executor | actors | generated | img/s (steady) | generate (s) "
        "| start-up + shutdown (s) | peak RSS (MiB) | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in service["runs"]:
        lines.append(
            f"| {r['executor']} | {r['actors'] or '-'} | {r['generated']} | {r['images_per_second']} | "
            f"{r['generate_seconds']} | "
            f"{r['overhead_seconds']} | {r['peak_rss_mib']:.0f} | {r['load_average'][0]} |"
        )
    return lines + [""]


def _generation_lines(report: dict) -> list[str]:
    gpu, est, methods = report["gpu_model"], report["estimates"], report["methods"]
    work = est["workload_generated_images_per_method"]
    lines = [
        f"**Generation per method** (market presets, 128x64, batch 32). CPU: measured on this machine "
        f"(model + service I/O). GPU: ESTIMATED, H100 at {gpu['efficiency']:.0%} of "
        f"{gpu['peak_tflops']:.0f} TFLOP/s bf16 (optimistic for convnets this size; figures scale as "
        f"1 / efficiency); a node = 1 GPU + {gpu['node_cpus']} cores for the I/O. "
        f"Images per method: 2x {work['2x']:,}, 3x {work['3x']:,}, Table-5 sweep {work['sweep']:,}.",
        "",
        "| method | GFLOPs/img | CPU s/img | CPU h 2x / 3x / sweep | GPU ms/img (est.) | "
        "cores to feed 1 GPU | GPU-node min 2x / 3x / sweep (est.) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in methods.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | | |")
            continue
        g = est["generation"][name]
        hrs = g["hours"]
        lines.append(
            f"| {name} | {r['gflops_per_image']:.2f} | {g['cpu_seconds_per_image']:.3f} | "
            f"{_h(hrs['2x']['cpu_this_machine'])} / {_h(hrs['3x']['cpu_this_machine'])} / "
            f"{_h(hrs['sweep']['cpu_this_machine'])} | {g['gpu_ms_per_image_estimated']:.3f} | "
            f"{_h(g['cpu_cores_to_feed_one_gpu'])} | {_h(60 * hrs['2x']['gpu_node_estimated'])} / "
            f"{_h(60 * hrs['3x']['gpu_node_estimated'])} / {_h(60 * hrs['sweep']['gpu_node_estimated'])}"
            f"{' (I/O-bound)' if g['io_bound_on_gpu_node'] else ''} |"
        )
    return lines + [""]


def _reid_lines(report: dict) -> list[str]:
    est = report["estimates"]
    lines = [
        f"**Re-ID training per Table-5 cell, ESTIMATED** (openreid recipe, 3 x forward FLOPs per training "
        f"image, same GPU assumption; data loading not counted: lower bounds). Sweep = "
        f"{len(est['methods_in_sweep'])} methods x 11 cells + 10 'None' cells.",
        "",
        "| re-ID model | input | epochs | fwd GFLOPs | GPU h per cell 1x / 2x / 3x | sweep cells | sweep GPU h |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in est["reid_training"].items():
        r = report["reid_models"][name]
        c = t["gpu_hours_per_cell_estimated"]
        lines.append(
            f"| {name} | {r['input_size'][0]}x{r['input_size'][1]} | {r['epochs']} | "
            f"{r['forward_gflops_per_image']:.2f} | {_h(c['1x'])} / {_h(c['2x'])} / {_h(c['3x'])} | "
            f"{t['sweep_cells']} | {_h(t['sweep_gpu_hours_estimated'])} |"
        )
    return lines + [""]


def _sweep_lines(report: dict) -> list[str]:
    gpu, est = report["gpu_model"], report["estimates"]
    s = est["sweep_total"]
    on_g = s[f"hours_on_{gpu['gpus']}_gpus_estimated"]
    return [
        f"**Full Table-5 sweep** ({', '.join(est['methods_in_sweep'])}): {s['generated_images']:,} generated "
        f"images; generation {_h(s['generation_cpu_hours_this_machine'])} h on this CPU, "
        f"{_h(60 * s['generation_gpu_hours_estimated'])} GPU-node min (est.); re-ID training "
        f"{_h(s['reid_gpu_hours_estimated'])} GPU h (est.); total {_h(s['gpu_hours_estimated'])} GPU h, "
        f"~{_h(on_g)} h on {gpu['gpus']} GPUs (est.)."
    ]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1e3 * seconds:.1f} ms"


def machine_info() -> str:
    import platform

    import torch

    from augment.runtime import cpu_supports_bf16

    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"native bf16 {'yes' if cpu_supports_bf16() else 'no'}"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cluster.capacity",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--methods", default="all", help="comma-separated methods, or all (default: every method with a market preset)"
    )
    p.add_argument(
        "--executors",
        default="local,ray:1,ray:2",
        help="service runs: local and/or ray:N (N generator actors) (default local,ray:1,ray:2)",
    )
    p.add_argument("--data", type=Path, help="dataset for the service runs (default: the embedded one)")
    p.add_argument("--portion", type=float, default=0.7, help="service plan: keep p, generate the rest (default 0.7)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="service precision (default auto: bf16 where the CPU computes it natively)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per method (median; default 3)")
    p.add_argument("--reid-models", default="resnet50,inception", help="re-ID models of the estimate")
    p.add_argument("--gpu-peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    p.add_argument("--gpu-efficiency", type=float, default=0.30, help="assumed sustained fraction of the peak")
    p.add_argument("--node-cpus", type=int, default=16, help="CPU cores per GPU node for the service's I/O")
    p.add_argument("--gpus", type=int, default=8, help="GPUs of the 'hours on G GPUs' figure (default 8)")
    p.add_argument("--skip-service", action="store_true", help="no service runs (I/O cost then left out)")
    p.add_argument("--skip-methods", action="store_true", help="no per-method measurements")
    p.add_argument("--out", type=Path, default=Path("runs/bench/capacity.json"))
    return p


@dataclass(frozen=True)
class ReidCosts:
    """The re-ID part of the report, supplied by :func:`main` (re-ID sits above this layer)."""

    figures: Callable[[], dict[str, dict]]  # model -> reid_eval.costs.reid_flops figures
    training: Callable[..., dict[str, dict]]  # reid_eval.costs.training_estimate(figures, cells, sizes, seconds)


def check_args(a: argparse.Namespace, reid_known: Sequence[str]) -> tuple[list[str], list[str], str]:
    """(executors, re-ID models, service precision) from the flags; UsageError naming a bad one."""
    if not 0 < a.gpu_efficiency <= 1:
        raise UsageError("--gpu-efficiency", f"must be in (0, 1], got {a.gpu_efficiency}")
    if not 0 < a.portion < 1:
        raise UsageError("--portion", f"must be in (0, 1), got {a.portion}")
    for flag, value in (
        ("--batch-size", a.batch_size),
        ("--repeats", a.repeats),
        ("--node-cpus", a.node_cpus),
        ("--gpus", a.gpus),
    ):
        if value < 1:
            raise UsageError(flag, f"must be >= 1, got {value}")
    executors = [e for e in a.executors.split(",") if e]
    for e in executors:
        kind, _, n = e.partition(":")
        if kind not in ("local", "ray") or (kind == "ray" and not n.isdigit()) or (kind == "local" and n):
            raise UsageError("--executors", f"{e!r} is not local or ray:N")
    reid_models = [m for m in a.reid_models.split(",") if m]
    unknown = [m for m in reid_models if m not in reid_known]
    if unknown:
        raise UsageError("--reid-models", f"unknown {unknown}; known: {sorted(reid_known)}")
    precision = a.precision
    if precision == "auto":
        from augment.runtime import cpu_supports_bf16

        precision = "bf16" if cpu_supports_bf16() else "fp32"
    return executors, reid_models, precision


def build_report(a: argparse.Namespace, executors: list[str], precision: str, reid: ReidCosts) -> dict:
    """Measure (service, methods), estimate and render; the JSON report with its Markdown."""
    t0 = time.perf_counter()
    report: dict = {"format": "poseaug-capacity/1", "machine": machine_info(), "load_average_start": load_average()}
    report["service"] = (
        None if a.skip_service else measure_service(a.data, executors, a.portion, a.batch_size, precision)
    )
    report["methods"] = {} if a.skip_methods else measure_methods(a.methods.split(","), a.batch_size, a.repeats)
    report["reid_models"] = reid.figures()
    gpu = GpuModel(a.gpu_peak_tflops, a.gpu_efficiency, a.node_cpus, a.gpus)
    report["gpu_model"] = {
        "peak_tflops": gpu.peak_tflops,
        "efficiency": gpu.efficiency,
        "node_cpus": gpu.node_cpus,
        "gpus": gpu.gpus,
        "note": "ESTIMATED from FLOPs: no GPU was measured",
    }
    training = partial(reid.training, report["reid_models"])
    report["estimates"] = estimate(report["service"], report["methods"], gpu, training)
    report["load_average_end"] = load_average()
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["markdown"] = markdown(report)
    return report


def main(argv: Sequence[str] | None = None) -> dict:
    """CLI entry: measure, estimate, write the JSON and Markdown; bad flags exit with status 2."""
    from augment.bench import BenchError
    from augment.data.market import DatasetError
    from reid_eval import costs  # re-ID sits above the cluster layer: only main reaches up
    from reid_eval.recipes import get_recipe

    a = build_parser().parse_args(argv)
    try:
        executors, reid_models, precision = check_args(a, list(get_recipe("openreid").models))
        reid = ReidCosts(partial(costs.reid_flops, reid_models, MARKET_TRAIN_IDENTITIES), costs.training_estimate)
        report = build_report(a, executors, precision, reid)
    except (UsageError, DatasetError, BenchError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1) + "\n")
    a.out.with_suffix(".md").write_text(report["markdown"] + "\n")
    print(report["markdown"])
    print(f"\n[capacity] {report['seconds']} s; wrote {a.out} and {a.out.with_suffix('.md')}")
    return report


if __name__ == "__main__":
    main()
