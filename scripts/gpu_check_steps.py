"""The measuring steps of ``scripts/gpu_check.py``; each runs in its own process (``gpu_check.py --child``).

Every step is a function ``step(params, emit) -> dict``: ``params`` are plain JSON values chosen by
gpu_check.py (full sizes on a GPU, tiny ones for ``--dry-run``), ``emit(partial)`` saves what has been
measured so far (kept if the step is killed at its time limit), the return value is the step's result.
Only stable library APIs of the project are used: ``generators.bench`` (``BenchConfig`` / ``run``),
``generators.build`` and ``generators.checkpoint.save``, ``generators.inference.Transferer``,
``augment.execute``'s stages, ``reid_eval.metrics`` / ``metrics_bench`` / ``models`` (and
``reid_eval.openreid_resnet`` when torchreid is installed). Small adapters here cover the rest.

Shapes and units: images (B, 3, H, W) in [-1, 1] (uint8 (B, H, W, 3) for the service stages), keypoints
(B, 18, 2) int (y, x); rates in images per second, CPU costs in CPU seconds per image, memory in GiB.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

Emit = Callable[[dict], None]
# Packages the check looks for: the device image has the first group, not the second (carry wheels for it).
PACKAGES = ("torch", "torchvision", "numpy", "pandas", "pyarrow", "cv2", "scipy", "skimage", "pytest")
OPTIONAL_PACKAGES = ("torchreid", "gdown", "bs4", "soupsieve", "ray", "lpips")


# ---------------------------------------------------------------------------------------------
# shared helpers


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _peak_gib(device) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def _is_oom(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}"


def _fast_amp(device):
    """The autocast dtype of the fast path (generators.bench's rule): bf16 where native, fp16 on CUDA."""
    import torch

    from augment.runtime import bf16_is_native

    if bf16_is_native(device):
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None


def random_generator_inputs(n: int, size: tuple[int, int], seed: int, device):
    """n smooth random images (n, 3, H, W) in [-1, 1] and keypoints (n, 18, 2) (y, x), ears missing."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 4, generator=g) * 2 - 1
    img = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    kps = torch.stack(
        [torch.randint(0, size[0], (n, 18), generator=g), torch.randint(0, size[1], (n, 18), generator=g)], -1
    )
    kps[:, 16:] = -1
    return img.to(device), kps.to(device), kps.roll(1, 0).to(device)


def _timed(fn: Callable[[], object], device, min_calls: int, min_seconds: float) -> tuple[int, float, float]:
    """Calls ``fn`` at least ``min_calls`` times and for at least ``min_seconds``: (calls, wall s, CPU s)."""
    _sync(device)
    calls, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while calls < min_calls or time.perf_counter() - wall0 < min_seconds:
        fn()
        calls += 1
    _sync(device)
    return calls, time.perf_counter() - wall0, time.process_time() - cpu0


# ---------------------------------------------------------------------------------------------
# env


def env(params: dict, emit: Emit) -> dict:
    """Machine, torch/CUDA, packages present, registered generator methods, commit."""
    import torch

    from generators.base import network_methods

    info: dict = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "methods": network_methods(),
        "packages": {name: _version(name) for name in PACKAGES + OPTIONAL_PACKAGES},
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "bf16": torch.cuda.is_bf16_supported(),
        }
        info["nvidia_smi"] = _command(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm", "--format=csv"])
    info["commit"] = _command(["git", "rev-parse", "--short=12", "HEAD"])
    return info


def _version(name: str) -> str | None:
    """The installed version of a module that can be found (None: not installed)."""
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except (ImportError, ValueError):
        return None
    dist = {"cv2": "opencv-python-headless", "skimage": "scikit-image", "bs4": "beautifulsoup4"}.get(name, name)
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "present"


def _command(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


# ---------------------------------------------------------------------------------------------
# generators.bench, and the largest batch that fits


def bench(params: dict, emit: Emit) -> dict:
    """generators.bench for one method (eager fp32 vs the fast path at ``batch_sizes``), then the
    fast path at doubling batch sizes until out of memory, the cap or the probe's time limit."""
    import torch

    from augment.runtime import resolve_device
    from generators.bench import BenchConfig, run

    device = resolve_device(params["device"])
    out = Path(tempfile.mkdtemp(prefix="gpu-check-bench-")) / "bench.json"
    cfg = BenchConfig(
        methods=[params["method"]],
        preset=params["preset"],
        device=params["device"],
        batch_sizes=tuple(params["batch_sizes"]),
        iterations=params.get("iterations"),
        repeats=params["repeats"],
        warmup=params["warmup"],
        compile=params["compile"],
        threads=params.get("threads"),
        out=out,
    )
    report = run(cfg, log=lambda line: print(line, flush=True))
    result = {"machine": report["machine"], "bench": report["methods"][0], "lines": report["lines"]}
    emit(result)
    _free(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result["probe"] = probe_batches(params, device, lambda rows: emit({**result, "probe": rows}))
    return result


def probe_batches(params: dict, device, emit: Callable[[dict], None]) -> dict:
    """Fast-path images/s (channels-last, native autocast, inference mode) at batch start, 2 x start, ...
    up to ``cap``, stopping at the first failure (out of memory) or after ``seconds``."""
    import torch

    from generators import build

    bundle = build(params["method"], params["preset"], seed=0, device=device)
    bundle.nets.eval().to(memory_format=torch.channels_last)
    size = tuple(int(s) for s in (getattr(bundle.config, "image_size", None) or (128, 64)))
    amp = _fast_amp(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    probe: dict = {"variant": f"channels-last {_amp_name(amp)}", "rows": [], "stopped": None}
    deadline = time.perf_counter() + params["probe_seconds"]
    batch = params["probe_start"]
    while probe["stopped"] is None:
        if batch > params["probe_cap"]:
            probe["stopped"] = f"cap {params['probe_cap']} reached"
            break
        last = probe["rows"][-1] if probe["rows"] else {}
        # twice the batch costs about twice the last one (its warm-up picks cuDNN algorithms again)
        projected = 2 * (last.get("warmup_seconds", 0) + params["probe_forwards"] * last.get("seconds_per_forward", 0))
        if time.perf_counter() + projected > deadline:
            probe["stopped"] = f"time limit {params['probe_seconds']} s (batch {batch} would pass it)"
            break
        try:
            probe["rows"].append(_probe_one(bundle, size, batch, amp, device, params["probe_forwards"]))
        except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
            probe["rows"].append({"batch": batch, "error": "out of memory" if _is_oom(e) else _short(e)})
            probe["stopped"] = f"{'out of memory' if _is_oom(e) else 'error'} at batch {batch}"
        _free(device)
        emit(probe)
        batch *= 2
    fits = [r for r in probe["rows"] if "error" not in r]
    probe["largest_batch"] = max((r["batch"] for r in fits), default=None)
    return probe


def _probe_one(bundle, size, batch: int, amp, device, forwards: int) -> dict:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    img, src, tgt = random_generator_inputs(batch, size, seed=batch, device=device)
    img = img.contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext():
            return bundle.generate(img, src, tgt)

    t0 = time.perf_counter()
    forward()  # warm-up (cuDNN picks its algorithms for the new shape here)
    _sync(device)
    warmup = time.perf_counter() - t0
    calls, wall, _ = _timed(forward, device, min_calls=forwards, min_seconds=0.0)
    return {
        "batch": batch,
        "images_per_second": round(batch * calls / wall, 2),
        "seconds_per_forward": round(wall / calls, 4),
        "warmup_seconds": round(warmup, 2),
        "peak_memory_gib": _peak_gib(device),
    }


def _amp_name(dtype) -> str:
    from augment.runtime import amp_name

    return amp_name(dtype)


# ---------------------------------------------------------------------------------------------
# the service's GPU stage alone


def gpu_stage(params: dict, emit: Emit) -> dict:
    """augment.execute.GenerateStage on pre-decoded uint8 payloads (decode and write excluded), per
    precision and payload size; beside it a Transferer over the same model whose model batch is the
    whole payload (GenerateStage's Transferer cuts every payload into batches of its default size)."""
    from augment.execute import GenerateStage
    from augment.runtime import resolve_device
    from generators import build
    from generators.checkpoint import save
    from generators.inference import Transferer

    device = resolve_device(params["device"])
    bundle = build(params["method"], params["preset"], seed=0)
    size = tuple(int(s) for s in (getattr(bundle.config, "image_size", None) or (128, 64)))
    checkpoint = save(Path(tempfile.mkdtemp(prefix="gpu-check-stage-")) / "model.pt", bundle)
    del bundle
    rows: list[dict] = []
    for precision in params["precisions"]:
        stage = GenerateStage(str(checkpoint), device=str(device), precision=precision)
        for n in params["payload_sizes"]:
            payload = _stage_payload(n, size, seed=n)
            whole = Transferer(stage.transferer, device=device, dtype=precision, batch_size=n)
            runners = {
                f"GenerateStage (model batch {stage.transferer.batch_size})": lambda p=payload, s=stage: s(p),
                f"Transferer (model batch {n})": lambda p=payload, t=whole: t(
                    p["src_img"], p["source_kps"], p["target_kps"]
                ),
            }
            for label, fn in runners.items():
                fn()  # warm-up
                calls, wall, cpu = _timed(fn, device, params["min_calls"], params["min_seconds"])
                row = {"precision": precision, "payload": n, "runner": label, "images": n * calls}
                row.update(images_per_second=round(n * calls / wall, 2), cpu_seconds_per_image=cpu / (n * calls))
                rows.append(row)
                emit({"method": params["method"], "preset": params["preset"], "rows": rows})
        stage = whole = runners = None
        _free(device)
    return {"method": params["method"], "preset": params["preset"], "device": str(device), "rows": rows}


def _stage_payload(n: int, size: tuple[int, int], seed: int) -> dict:
    """A decoded batch payload as decode_stage leaves it: uint8 (n, H, W, 3) RGB and int64 keypoints."""
    import numpy as np

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 8, 4, 3)).astype(np.uint8)
    img = np.repeat(np.repeat(coarse, size[0] // 8, axis=1), size[1] // 4, axis=2)
    kps = np.stack([rng.integers(0, size[0], (n, 18)), rng.integers(0, size[1], (n, 18))], -1).astype(np.int64)
    kps[:, 16:] = -1
    return {
        "batch_id": f"probe+{n}",
        "src_img": np.ascontiguousarray(img),
        "source_kps": kps,
        "target_kps": kps[::-1].copy(),
    }


# ---------------------------------------------------------------------------------------------
# the service's CPU stages: decode and write, per image


def cpu_feed(params: dict, emit: Emit) -> dict:
    """CPU seconds per image of augment.execute.decode_stage (read + decode JPEG) and write_stage (encode
    JPEG, atomic write, hash, shard) on images of the embedded dataset (rendered small, here)."""
    from augment.execute import OutputLayout, decode_stage, write_stage
    from augment.synth import SynthConfig, render_dataset

    work = Path(tempfile.mkdtemp(prefix="gpu-check-feed-"))
    data = render_dataset(SynthConfig.tiny(), work / "data", preview=False, log=None)
    sources = sorted(str(p) for p in (data / "bounding_box_train").glob("*.jpg"))
    layout = OutputLayout(work / "out")
    layout.train_dir.mkdir(parents=True)
    layout.shards_dir.mkdir()
    batch, total = params["batch"], params["images"]
    costs = {"decode": [0.0, 0.0], "write": [0.0, 0.0]}  # CPU s, wall s
    done = 0
    for start in range(-batch, total, batch):  # the first batch warms up (not counted)
        names = [f"{(start + i) % 10**6:06d}_c1s1_000000_00_check.jpg" for i in range(batch)]
        payload = {
            "batch_id": f"feed{start}",
            "output_name": names,
            "source_path": [sources[(start + i) % len(sources)] for i in range(batch)],
        }
        t = (time.process_time(), time.perf_counter())
        decoded = decode_stage(payload)
        d = (time.process_time(), time.perf_counter())
        write_stage({**decoded, "gen_img": decoded["src_img"], "model_seconds": 0.0}, layout.root)
        w = (time.process_time(), time.perf_counter())
        if start >= 0:
            costs["decode"][0] += d[0] - t[0]
            costs["decode"][1] += d[1] - t[1]
            costs["write"][0] += w[0] - d[0]
            costs["write"][1] += w[1] - d[1]
            done += batch
            emit(_feed_result(costs, done, batch, sources))
    return _feed_result(costs, done, batch, sources)


def _feed_result(costs: dict, done: int, batch: int, sources: list[str]) -> dict:
    per = {
        f"{k}_{kind}_seconds_per_image": v[i] / done for k, v in costs.items() for i, kind in enumerate(("cpu", "wall"))
    }
    per["cpu_seconds_per_image"] = per["decode_cpu_seconds_per_image"] + per["write_cpu_seconds_per_image"]
    mean_bytes = sum(os.path.getsize(s) for s in sources) / len(sources)
    return {"images": done, "batch": batch, "source_jpeg_bytes": round(mean_bytes), "cpus": os.cpu_count(), **per}


# ---------------------------------------------------------------------------------------------
# CMC / mAP on a Market-size matrix


def metrics(params: dict, emit: Emit) -> dict:
    """reid_eval.metrics.evaluate_rank on the device (distances already there, and from numpy) against
    the CPU result, plus evaluate_all (every figure of the published tables) on the device."""
    import numpy as np
    import torch

    from augment.runtime import resolve_device
    from reid_eval.metrics import evaluate_all, evaluate_rank
    from reid_eval.metrics_bench import market_like_problem

    device = resolve_device(params["device"])
    q, g, ids, cams = params["queries"], params["gallery"], params["ids"], params["cams"]
    distmat, *labels = market_like_problem(q, g, ids, cams, seed=0)
    t0 = time.perf_counter()
    cmc_cpu, map_cpu = evaluate_rank(distmat, *labels, device="cpu")
    result = {"queries": q, "gallery": g, "ids": ids, "device": str(device), "cpu_seconds": time.perf_counter() - t0}
    on_device = torch.from_numpy(distmat).to(device)
    timings = {
        "evaluate_rank (distances on the device)": lambda: evaluate_rank(on_device, *labels),
        "evaluate_rank (numpy distances, copied)": lambda: evaluate_rank(distmat, *labels, device=device),
        "evaluate_all (distances on the device)": lambda: evaluate_all(on_device, *labels),
    }
    for name, fn in timings.items():
        fn()  # warm-up
        calls, wall, _ = _timed(fn, device, params["repeats"], 0.0)
        result[name] = wall / calls
        emit(result)
    cmc_dev, map_dev = evaluate_rank(on_device, *labels)
    result.update(
        rank1=float(cmc_cpu[0]),
        mAP=map_cpu,
        cmc_equal=bool(np.array_equal(cmc_dev, cmc_cpu)),
        map_abs_diff=abs(map_dev - map_cpu),
    )
    return result


# ---------------------------------------------------------------------------------------------
# re-ID training steps


def reid_train(params: dict, emit: Emit) -> dict:
    """Forward + backward + SGD step (nesterov momentum 0.9, weight decay 5e-4, the openreid recipe) of
    both re-ID models at their published input sizes, channels-last, bf16 autocast where native."""
    import torch

    from augment.runtime import resolve_device

    device = resolve_device(params["device"])
    torch.backends.cudnn.benchmark = device.type == "cuda"
    rows: list[dict] = []
    notes: list[str] = []
    for name, size in params["models"]:
        model, built_by = build_reid_network(name, params["classes"])
        if built_by.startswith("torchvision"):
            notes.append(built_by)
        model.to(device).train().to(memory_format=torch.channels_last)
        for batch in params["batches"]:
            try:
                row = _train_steps(model, tuple(size), batch, device, params)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
                row = {"error": "out of memory" if _is_oom(e) else _short(e)}
            rows.append({"model": name, "built_by": built_by, "input": list(size), "batch": batch, **row})
            emit({"rows": rows, "notes": notes})
            _free(device)
        del model
    return {"rows": rows, "notes": notes, "device": str(device)}


def build_reid_network(name: str, classes: int):
    """(model, how it was built): the project's Open-ReID builders; without torchreid, ResNet-50 is
    torchvision's ResNet-50 with Open-ReID's head (the same layers and FLOPs as reid_eval.openreid_resnet)."""
    from torch import nn

    if name == "inception":
        from reid_eval.models import OpenReIDInception

        return OpenReIDInception(classes), "reid_eval.models.OpenReIDInception"
    try:  # torchreid, and what it imports at import time (gdown, beautifulsoup4, ...)
        from reid_eval.openreid_resnet import OpenReIDResNet50
    except ImportError as e:
        missing = f"torchreid cannot be imported: {e}"
    else:
        return OpenReIDResNet50(classes), "reid_eval.openreid_resnet.OpenReIDResNet50"
    import torchvision

    model = torchvision.models.resnet50(weights=None)
    model.fc = nn.Sequential(
        nn.Linear(2048, 128), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(128, classes)
    )
    return model, f"torchvision resnet50 + Open-ReID head ({missing})"


def _train_steps(model, size: tuple[int, int], batch: int, device, params: dict) -> dict:
    import torch
    import torch.nn.functional as F

    from augment.runtime import bf16_is_native

    amp = torch.bfloat16 if bf16_is_native(device) else None
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 3, *size, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, params["classes"], (batch,), generator=g).to(device)
    losses: list[float] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        with torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())

    for _ in range(params["warmup"]):
        step()
    calls, wall, _ = _timed(step, device, params["steps"], 0.0)
    finite = all(bool(torch.isfinite(v)) for v in losses)
    return {
        "precision": _amp_name(amp),
        "images_per_second": round(batch * calls / wall, 1),
        "ms_per_step": round(1000 * wall / calls, 2),
        "peak_memory_gib": _peak_gib(device),
        "losses_finite": finite,
    }


STEPS: dict[str, Callable[[dict, Emit], dict]] = {
    "env": env,
    "bench": bench,
    "gpu_stage": gpu_stage,
    "cpu_feed": cpu_feed,
    "metrics": metrics,
    "reid_train": reid_train,
}
