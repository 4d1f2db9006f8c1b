"""``python -m generators.bench``: size, cost and inference speed of the generators, eager vs. fast path.

    python -m generators.bench --method patn --preset market
    python -m generators.bench --method all --preset synth --batch-sizes 1,8 --no-compile

For each method (``all``: every registered method that has the preset): parameters of the
networks the inference forward uses, GFLOPs per image (:func:`generators.base.count_flops`:
2 x conv / transposed-conv / linear MACs), and images/s of ``Method.generate`` (pose encoding
included) at each batch size for these variants:

- ``eager fp32``: the plain eval-mode forward (contiguous tensors, no autocast): the reference;
- ``channels-last <amp>``: channels-last networks and inputs under autocast, bf16 where the
  device computes it natively (CPU with AMX or AVX512-BF16; CUDA GPUs with bf16), else fp16 on
  CUDA, else fp32 (channels-last only);
- the same under ``torch.compile`` (``--no-compile`` leaves it out; a compile failure is
  reported, not fatal).

Measurement: every variant runs ``--warmup`` untimed forwards first (compilation happens
there and is timed apart). Then ``--repeats`` rounds; each round times every variant once
(``--iterations`` forwards, default enough for 32 images), in alternating order (forward, then
reversed), so drift of a shared machine hits all variants alike. Figures are medians over the
rounds (min and max kept in the JSON). CUDA work is synchronised before each clock read.

The fast path at a batch size is the fastest variant whose output agrees with eager fp32
(on the [-1,1] output, max / mean |difference| <= 1e-4 / 1e-5 for fp32 variants, <= 16 / 2 grey
levels under bf16/fp16; see :data:`LOW_PRECISION_TOLERANCE`). Agreement is measured on the
largest batch; an untrained generator outputs
|y| < 0.05, where every precision agrees, so by default the networks get spread weights
(``--weights spread``: Kaiming-normal convs and BatchNorm statistics from two train-mode
forwards, outputs over [-1,1]); ``--checkpoint`` benches a trained model instead. The output
spread is printed beside the difference.

Results go to a JSON file (``--out``, default ``runs/bench/<method>-<preset>-<device>.json``),
including the load average before and after (timings on a busy machine are not comparable).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from augment.runtime import UsageError, bf16_is_native, resolve_device
from generators.base import METHODS, Bundle, build, count_flops, count_parameters, load_builtin_methods, network_methods

# Agreement with eager fp32 on [-1,1] outputs (1 grey level = 2/255 = 0.0078): (max, mean) |diff|.
# fp32 variants differ in summation order only. Under bf16 (8 significant bits) the spread-weight
# Market PATN measured max 0.045 / mean 0.006; a wrong answer (a broken layout, a bad kernel)
# differs by the output spread itself (std ~0.45), far beyond these bounds.
FP32_TOLERANCE = (1e-4, 1e-5)
LOW_PRECISION_TOLERANCE = (16 * 2 / 255, 2 * 2 / 255)  # max 16, mean 2 grey levels
IMAGES_PER_REPEAT = 32
AMP_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


# ---------------------------------------------------------------------------------------------
# variants


@dataclass(frozen=True)
class Variant:
    """One way of running the inference forward."""

    channels_last: bool
    amp: torch.dtype | None
    compiled: bool

    @property
    def name(self) -> str:
        if not self.channels_last and self.amp is None and not self.compiled:
            return "eager fp32"
        parts = (["channels-last"] if self.channels_last else []) + [AMP_NAMES[self.amp]]
        return " ".join(parts) + (" + compile" if self.compiled else "")

    @property
    def tolerance(self) -> tuple[float, float]:
        """(max, mean) |difference| from eager fp32 allowed on [-1,1] outputs."""
        return FP32_TOLERANCE if self.amp is None else LOW_PRECISION_TOLERANCE


EAGER = Variant(channels_last=False, amp=None, compiled=False)


def native_amp(device: torch.device) -> torch.dtype | None:
    """The autocast dtype the fast path uses on ``device`` (None: fp32)."""
    if bf16_is_native(device):
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None


def variants_for(device: torch.device, compile: bool) -> list[Variant]:
    amp = native_amp(device)
    fast = [Variant(channels_last=True, amp=amp, compiled=False)]
    if compile:
        fast.append(Variant(channels_last=True, amp=amp, compiled=True))
    return [EAGER, *fast]


# ---------------------------------------------------------------------------------------------
# model preparation


class GenerateModule(nn.Module):
    """``bundle.impl.generate`` as a module (count_flops hooks see every conv it runs)."""

    def __init__(self, impl, nets: Mapping[str, nn.Module]):
        super().__init__()
        self.impl = impl
        self.nets = nn.ModuleDict(dict(nets))

    def forward(self, src_img, src_kps, tgt_kps):
        return self.impl.generate(self.nets, src_img, src_kps, tgt_kps)


def bench_inputs(n: int, size: tuple[int, int], seed: int = 0, device="cpu"):
    """n random source images (n,3,H,W) in [-1,1] and keypoints (n,18,2) (y,x), two joints missing."""
    g = torch.Generator().manual_seed(seed)
    img = torch.rand((n, 3, *size), generator=g) * 2 - 1
    kps = torch.stack(
        [torch.randint(0, size[0], (n, 18), generator=g), torch.randint(0, size[1], (n, 18), generator=g)], -1
    )
    kps[:, 16:] = -1  # ears missing, as often in Market
    return img.to(device), kps, kps.roll(1, 0)


def spread_weights(bundle: Bundle, size: tuple[int, int], seed: int = 1, batch: int = 2) -> None:
    """Kaiming-normal conv weights and BatchNorm statistics from two train-mode forwards, so that
    outputs spread over [-1,1] (an untrained generator's N(0, 0.02) init gives |y| < 0.05)."""
    g = torch.Generator().manual_seed(seed)
    device = next(bundle.nets.parameters()).device
    for m in bundle.nets.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight[:, 0].numel()
            with torch.no_grad():
                m.weight.copy_((torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5).to(device))
    img, src, tgt = bench_inputs(batch, size, seed=seed + 1, device=device)
    bundle.nets.train()
    with torch.no_grad():
        for _ in range(2):
            bundle.generate(img, src, tgt)
    bundle.nets.eval()


def nets_used_by_generate(bundle: Bundle, inputs) -> list[str]:
    """Names of the top-level networks ``generate`` calls (e.g. ["G"], not the discriminators)."""
    called: list[str] = []
    handles = [
        net.register_forward_pre_hook(lambda m, a, name=name: called.append(name)) for name, net in bundle.nets.items()
    ]
    try:
        with torch.inference_mode():
            bundle.generate(*inputs)
    finally:
        for h in handles:
            h.remove()
    return sorted(set(called))


def prepare(bundle: Bundle, used: Sequence[str], variant: Variant) -> dict[str, nn.Module]:
    """The networks for ``variant``: a copy (channels-last converts in place), compiled if asked."""
    nets = {name: copy.deepcopy(net).eval() for name, net in bundle.nets.items()}
    if variant.channels_last:
        for net in nets.values():
            net.to(memory_format=torch.channels_last)
    if variant.compiled:
        for name in used:
            nets[name] = torch.compile(nets[name], dynamic=False)
    return nets


def run_forward(impl, nets, variant: Variant, device: torch.device, img, src_kps, tgt_kps) -> torch.Tensor:
    """One inference forward of ``variant``: (B,3,H,W) float32."""
    if variant.channels_last:
        img = img.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        if variant.amp is None:
            out = impl.generate(nets, img, src_kps, tgt_kps)
        else:
            with torch.autocast(device_type=device.type, dtype=variant.amp):
                out = impl.generate(nets, img, src_kps, tgt_kps)
    return out.float()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# the benchmark


@dataclass
class BenchConfig:
    methods: list[str]
    preset: str = "market"
    device: str = "auto"
    batch_sizes: tuple[int, ...] = (1, 32)
    iterations: int | None = None  # forwards per timed repeat; None: ceil(32 / batch)
    repeats: int = 5
    warmup: int = 2
    compile: bool = True
    weights: str = "spread"  # spread | init
    checkpoint: Path | None = None
    threads: int | None = None
    seed: int = 0
    out: Path | None = None

    def validate(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise UsageError("--batch-sizes", f"need positive batch sizes, got {self.batch_sizes}")
        for flag, value, low in (
            ("--repeats", self.repeats, 1),
            ("--warmup", self.warmup, 1),
            ("--iterations", self.iterations, 1),
            ("--threads", self.threads, 1),
        ):
            if value is not None and value < low:
                raise UsageError(flag, f"must be >= {low}, got {value}")
        if self.weights not in ("spread", "init"):
            raise UsageError("--weights", f"{self.weights!r}: choose spread or init")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise UsageError("--checkpoint", f"{self.checkpoint} is not a file")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UsageError("--device", f"{self.device!r}: use auto, cpu, cuda or cuda:N")


@dataclass
class Timing:
    variant: str
    batch: int
    images_per_second: float  # median over repeats
    min: float
    max: float
    repeats: list[float]
    warmup_seconds: float
    vs_eager: float = math.nan
    max_abs_diff: float | None = None  # vs eager fp32, [-1,1] units (largest batch)
    mean_abs_diff: float | None = None
    agrees: bool | None = None
    error: str | None = None


@dataclass
class MethodResult:
    method: str
    preset: str
    device: str
    nets: list[str]
    parameters: int
    gflops_per_image: float
    image_size: tuple[int, int]
    output_std: float
    timings: list[Timing] = field(default_factory=list)
    fast_path: dict[str, dict] = field(default_factory=dict)  # batch -> {"variant", "vs_eager"}

    def table_lines(self) -> list[str]:
        lines = [
            f"{self.method}/{self.preset}: {'+'.join(self.nets)} {self.parameters:,} parameters, "
            f"{self.gflops_per_image:.2f} GFLOPs/image at {self.image_size[0]}x{self.image_size[1]}"
        ]
        width = max(len(t.variant) for t in self.timings) + 2
        lines.append(
            f"{'batch':>5}  {'variant':<{width}}{'img/s':>8} {'(min-max)':>15}{'x eager':>9}"
            f"{'max|diff|':>11}{'mean|diff|':>11}  warm-up s"
        )
        for t in self.timings:
            if t.error:
                lines.append(f"{t.batch:>5}  {t.variant:<{width}}failed: {t.error}")
                continue
            diff = (
                ("-", "-")
                if t.max_abs_diff is None
                else (f"{t.max_abs_diff:.2e}", f"{t.mean_abs_diff:.2e}" + ("" if t.agrees else " !"))
            )
            lines.append(
                f"{t.batch:>5}  {t.variant:<{width}}{t.images_per_second:>8.2f} "
                f"{f'({t.min:.2f}-{t.max:.2f})':>15}{t.vs_eager:>8.2f}x{diff[0]:>11}{diff[1]:>11}"
                f"  {t.warmup_seconds:.1f}"
            )
        for batch, fast in self.fast_path.items():
            lines.append(f"fast path at batch {batch}: {fast['variant']}, {fast['vs_eager']:.2f}x eager fp32")
        lines.append(
            f"(agreement on batch {max(int(b) for b in self.fast_path) if self.fast_path else '-'}; "
            f"eager output std {self.output_std:.3f}; '!' marks a variant beyond tolerance)"
        )
        return lines


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info(device: torch.device) -> dict:
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": platform.processor() or None,
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), info["cpu"]
            )
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


@dataclass
class _Runner:
    """The prepared networks of every variant of one bundle, run on ``device``."""

    impl: Any
    nets: dict[Variant, dict[str, nn.Module]]
    device: torch.device

    def __call__(self, variant: Variant, img, src_kps, tgt_kps) -> torch.Tensor:
        return run_forward(self.impl, self.nets[variant], variant, self.device, img, src_kps, tgt_kps)


def bench_method(
    bundle: Bundle, cfg: BenchConfig, device: torch.device, log: Callable[[str], None] = print
) -> MethodResult:
    """Measure one built bundle (see the module docstring): size and cost, the timed rounds of
    every batch size, then agreement with eager fp32 and the fast path per batch size."""
    size = getattr(bundle.config, "image_size", None) or (128, 64)
    size = (int(size[0]), int(size[1]))
    bundle.nets.to(device).eval()
    if cfg.weights == "spread" and cfg.checkpoint is None:
        spread_weights(bundle, size, seed=cfg.seed + 1)
    largest = max(cfg.batch_sizes)
    inputs = {b: bench_inputs(b, size, seed=cfg.seed + b, device=device) for b in cfg.batch_sizes}
    used = nets_used_by_generate(bundle, inputs[min(cfg.batch_sizes)])
    params = sum(count_parameters(bundle.nets[n]) for n in used)
    flops = count_flops(
        GenerateModule(bundle.impl, {n: bundle.nets[n] for n in bundle.nets}),
        bench_inputs(1, size, seed=cfg.seed, device=device),
    )
    variants = variants_for(device, cfg.compile)
    log(
        f"[bench] {bundle.method}/{bundle.preset}: variants {', '.join(v.name for v in variants)}; "
        f"batch sizes {', '.join(map(str, cfg.batch_sizes))}"
    )
    run = _Runner(bundle.impl, {v: prepare(bundle, used, v) for v in variants}, device)
    reference = run(EAGER, *inputs[largest])
    result = MethodResult(
        bundle.method, bundle.preset, str(device), used, params, flops.gflops_per_sample, size, float(reference.std())
    )
    for batch in cfg.batch_sizes:
        result.timings += _time_batch(run, variants, inputs[batch], cfg, log)
    # agreement with eager fp32, once per variant, on the largest batch (already warmed up)
    _measure_agreement(run, variants, result.timings, inputs[largest], reference)
    result.fast_path = _fast_paths(result.timings, cfg.batch_sizes)
    return result


def _warm_up(
    run: _Runner, variants: Sequence[Variant], inputs, cfg: BenchConfig, log: Callable[[str], None]
) -> tuple[list[Variant], dict[Variant, float], dict[Variant, str]]:
    """``cfg.warmup`` untimed forwards per variant: (variants that ran, their warm-up seconds,
    errors of compiled variants that failed; an eager failure raises)."""
    live: list[Variant] = []
    warm: dict[Variant, float] = {}
    errors: dict[Variant, str] = {}
    for v in variants:
        t0 = time.perf_counter()
        try:
            for _ in range(cfg.warmup):
                run(v, *inputs)
            _sync(run.device)
        except Exception as e:  # a compile failure must not hide the other figures
            if not v.compiled:
                raise
            errors[v] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}"
            log(f"[bench] {v.name} failed at batch {len(inputs[0])}: {errors[v]}")
            continue
        warm[v] = time.perf_counter() - t0
        live.append(v)
    return live, warm, errors


def _timed_rounds(
    run: _Runner, live: Sequence[Variant], inputs, iters: int, repeats: int, log: Callable[[str], None]
) -> dict[Variant, list[float]]:
    """Images/s of each variant in each of ``repeats`` rounds (alternating order, ``iters`` forwards)."""
    batch = len(inputs[0])
    samples: dict[Variant, list[float]] = {v: [] for v in live}
    for r in range(repeats):
        for v in live if r % 2 == 0 else live[::-1]:
            _sync(run.device)
            t0 = time.perf_counter()
            for _ in range(iters):
                run(v, *inputs)
            _sync(run.device)
            samples[v].append(batch * iters / (time.perf_counter() - t0))
        log(
            f"[bench] batch {batch} round {r + 1}/{repeats}: "
            + ", ".join(f"{v.name} {samples[v][-1]:.2f}" for v in live)
            + " img/s"
        )
    return samples


def _time_batch(
    run: _Runner, variants: Sequence[Variant], inputs, cfg: BenchConfig, log: Callable[[str], None]
) -> list[Timing]:
    """Warm-up and timed rounds of every variant at one batch size: one :class:`Timing` each."""
    batch = len(inputs[0])
    iters = cfg.iterations or math.ceil(IMAGES_PER_REPEAT / batch)
    live, warm, errors = _warm_up(run, variants, inputs, cfg, log)
    samples = _timed_rounds(run, live, inputs, iters, cfg.repeats, log)
    eager_speed = statistics.median(samples[EAGER])
    timings = []
    for v in variants:
        if v in errors:
            timings.append(Timing(v.name, batch, math.nan, math.nan, math.nan, [], 0.0, error=errors[v]))
            continue
        speed, low, high = statistics.median(samples[v]), min(samples[v]), max(samples[v])
        timings.append(Timing(v.name, batch, speed, low, high, samples[v], warm[v], vs_eager=speed / eager_speed))
    return timings


def _measure_agreement(
    run: _Runner, variants: Sequence[Variant], timings: list[Timing], inputs, reference: torch.Tensor
) -> None:
    """Fill each timing's |difference| from eager fp32 (``reference``, on ``inputs``) and ``agrees``."""
    for v in variants[1:]:
        rows = [t for t in timings if t.variant == v.name and not t.error]
        if not rows:
            continue
        diff = (run(v, *inputs) - reference).abs()
        for t in rows:
            t.max_abs_diff, t.mean_abs_diff = float(diff.max()), float(diff.mean())
            t.agrees = t.max_abs_diff <= v.tolerance[0] and t.mean_abs_diff <= v.tolerance[1]


def _fast_paths(timings: list[Timing], batch_sizes: Sequence[int]) -> dict[str, dict]:
    """Per batch size, the fastest variant that agrees with eager fp32 (eager itself if none does)."""
    fast = {}
    for batch in batch_sizes:
        rows = [t for t in timings if t.batch == batch and not t.error]
        eager = next(t for t in rows if t.variant == EAGER.name)
        best = max((t for t in rows if t.agrees), key=lambda t: t.images_per_second, default=eager)
        fast[str(batch)] = dict(variant=best.variant, vs_eager=best.vs_eager, images_per_second=best.images_per_second)
    return fast


def run(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict:
    """Bench every method of ``cfg``; returns (and writes) the JSON report."""
    cfg.validate()
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    bundles: list[Bundle] = []
    if cfg.checkpoint is not None:
        from generators.checkpoint import load

        bundles.append(load(cfg.checkpoint, device=device))
    else:
        load_builtin_methods()
        names = network_methods() if cfg.methods == ["all"] else cfg.methods
        for name in names:
            if name not in METHODS:
                raise UsageError("--method", f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}, all")
            if cfg.preset not in METHODS[name].presets:
                if cfg.methods == ["all"]:
                    log(f"[bench] {name} has no preset {cfg.preset!r}: skipped")
                    continue
                raise UsageError(
                    "--preset",
                    f"method {name!r} has no preset {cfg.preset!r}; presets: "
                    f"{', '.join(sorted(METHODS[name].presets))}",
                )
            bundles.append(build(name, cfg.preset, seed=cfg.seed))
    report = {
        "format": "poseaug-bench/1",
        "machine": machine_info(device),
        "load_average_before": load_average(),
        "settings": {**asdict(cfg), "checkpoint": str(cfg.checkpoint) if cfg.checkpoint else None, "out": None},
        "tolerances_max_mean": {"fp32": FP32_TOLERANCE, "bf16/fp16": LOW_PRECISION_TOLERANCE},
        "methods": [],
    }
    results = []
    for bundle in bundles:
        results.append(bench_method(bundle, cfg, device, log))
        report["methods"].append(_json_safe(asdict(results[-1])))
    report["load_average_after"] = load_average()
    report["lines"] = header_lines(report) + [line for r in results for line in ["", *r.table_lines()]]
    out = cfg.out or Path("runs/bench") / f"{'-'.join(cfg.methods)}-{cfg.preset}-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    report["out"] = str(out)
    return report


def header_lines(report: dict) -> list[str]:
    m = report["machine"]
    where = m.get("gpu") or f"{m['cpu']} ({m['cpu_capability']})"
    return [
        f"{m['device']}: {where}, {m['threads']} threads, torch {m['torch']}; "
        f"load average {report['load_average_before']} -> {report['load_average_after']}"
    ]


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# command line


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 1,32") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m generators.bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", default="patn", help="registered method, or 'all' (default patn)")
    p.add_argument("--preset", default="market", help="config preset (default market)")
    p.add_argument("--checkpoint", type=Path, help="bench a trained checkpoint (method/preset from the file)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=(1, 32), help="comma-separated (default 1,32)")
    p.add_argument("--iterations", type=int, help="forwards per timed repeat (default: 32 images' worth)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds; the median is reported (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed forwards per variant first (default 2)")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the fast path under torch.compile (default on)",
    )
    p.add_argument("--weights", default="spread", help="spread (outputs over [-1,1]) | init (default spread)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="JSON report (default runs/bench/<method>-<preset>-<device>.json)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # every flag but --method is the BenchConfig field of the same name
    cfg = BenchConfig(methods=[args.method], **{k: v for k, v in vars(args).items() if k != "method"})
    from generators.checkpoint import CheckpointError

    try:
        report = run(cfg)
    except (UsageError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(report["lines"]))
    print(f"[bench] wrote {report['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
