"""Cost of the metric networks and of whole protocols, printed (never asserted): ``python -m generators.quality.bench``.

Random weights (the cost does not depend on their values), Market-sized 128x64 uint8 images, batches as the
scorers run them. Without ``--protocol``, each line gives milliseconds per image (per pair for LPIPS) and the time
of the 12,000-pair Market test protocol at that rate. With ``--protocol NAME`` (:func:`protocol_cost`), every
stage of that protocol's scoring of ``--images`` pairs (image path, pixel metrics, each network for the generated
and the copy-source rows, the set-level finish) is timed here and extrapolated to 12,000 pairs, and a GPU estimate
is printed: the networks' FLOPs per pair (counted) at an assumed sustained rate (``--gpu-tflops``) plus the
host-side stages as measured here. The keypoint decoding's share grows with the number of peaks, which random
weights keep small; real weights find one person per crop.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from augment.runtime import resolve_device
from generators.metrics import pair_metrics
from generators.quality.inception import InceptionV3, inception_features
from generators.quality.lpips import LPIPS, lpips_distance
from generators.quality.openpose import BodyPoseNet
from generators.quality.pose_decode import PoseConfig, detect_keypoints
from generators.quality.protocols import IMAGE_IO, MASKS, PROTOCOLS, EvalProtocol, get_protocol
from generators.quality.scores import fid_from_features, inception_score
from generators.quality.sources import JPEG_THREADS, threaded
from generators.quality.strips import jpeg_roundtrip_strip, official_strip
from generators.quality.suite import NetworkMetrics, ScoredBatch, WeightPaths
from generators.quality.weights import freeze

MARKET_PAIRS = 12_000
MARKET_TRAIN = 12_936  # images in Market-1501's bounding_box_train: gfla2020's FID real set


def _time(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    """Best wall seconds of ``repeat`` runs after one warm-up run."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def run(
    device: str = "auto", images: int = 8, repeat: int = 2, scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0)
) -> list[tuple[str, float]]:
    """[(name, seconds per image)] for Inception, LPIPS (alex, vgg) and OpenPose keypoints; prints a table."""
    dev = resolve_device(device)
    x = torch.randint(0, 256, (images, 3, 128, 64), dtype=torch.uint8)
    y = torch.randint(0, 256, (images, 3, 128, 64), dtype=torch.uint8)
    inception = freeze(InceptionV3("fid")).to(dev)
    nets = {"alex": freeze(LPIPS("alex")).to(dev), "vgg": freeze(LPIPS("vgg")).to(dev)}
    body = freeze(BodyPoseNet()).to(dev)
    cfg = PoseConfig(scales=tuple(scales))
    jobs = [
        ("Inception pool3+logits (FID/IS)", lambda: inception_features(inception, x, batch_size=images)),
        ("LPIPS alex (per pair)", lambda: lpips_distance(nets["alex"], x, y, batch_size=images)),
        ("LPIPS vgg (per pair)", lambda: lpips_distance(nets["vgg"], x, y, batch_size=images)),
        (f"OpenPose keypoints, {len(cfg.scales)} scales (PCKh)", lambda: detect_keypoints(body, x, cfg, images)),
    ]
    results = []
    print(f"device {dev}, {torch.get_num_threads()} CPU threads, batches of {images} images 128x64")
    for name, fn in jobs:
        per_image = _time(fn, dev, repeat) / images
        results.append((name, per_image))
        total_min = per_image * MARKET_PAIRS / 60
        print(f"{name:45s} {per_image * 1e3:9.1f} ms/image   {MARKET_PAIRS} pairs: {total_min:7.1f} min")
    return results


def _write_random_weights(folder: Path, protocol: EvalProtocol) -> WeightPaths:
    """Default-initialised state dicts saved in the real files' layouts (the values do not change the cost)."""
    inception = folder / "inception.pth"
    torch.save(InceptionV3(protocol.inception).state_dict(), inception)
    alex = folder / "alexnet.pth"
    torch.save({f"features.{k}": v for k, v in LPIPS(protocol.lpips_net).features.state_dict().items()}, alex)
    openpose = folder / "body_pose_model.pth"
    torch.save({k.removeprefix("layers."): v for k, v in BodyPoseNet().state_dict().items()}, openpose)
    return WeightPaths(inception=inception, lpips_backbone=alex, openpose=openpose)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _pair_stages(protocol: EvalProtocol, dev: torch.device, pairs: int, weights: WeightPaths) -> dict[str, dict]:
    """{stage: {"seconds": per pair, "gflops": per pair, "host": bool}} for the per-pair stages."""
    g = torch.Generator().manual_seed(0)
    gen, src, tgt = (torch.randint(0, 256, (pairs, 128, 64, 3), dtype=torch.uint8, generator=g) for _ in range(3))
    kps = np.tile(np.array([[20, 32], [35, 32], [35, 22], [55, 20], [75, 20], [35, 42], [55, 44], [75, 44],
                            [70, 26], [95, 26], [120, 26], [70, 38], [95, 38], [120, 38], [15, 29], [15, 35],
                            [17, 26], [17, 38]]), (pairs, 1, 1))  # fmt: skip
    mask = MASKS[protocol.mask].draw(torch.from_numpy(kps), (128, 64))
    stages: dict[str, dict] = {}
    io = IMAGE_IO[protocol.io]
    if io.jpeg_strips:

        def strips():  # as generators.quality.sources codes them: on up to JPEG_THREADS threads
            arrays = (src.numpy(), kps, tgt.numpy(), kps, gen.numpy())
            return threaded(lambda j: jpeg_roundtrip_strip(official_strip(*(a[j] for a in arrays))), list(range(pairs)))

        seconds = _timed(strips, dev)
        stages[f"image path: JPEG strips, {min(JPEG_THREADS, pairs)} threads (host)"] = {
            "seconds": seconds / pairs,
            "gflops": 0.0,
            "host": True,
        }
    gen, src, tgt, mask = gen.to(dev), src.to(dev), tgt.to(dev), mask.to(dev)

    def pixel(k: int):
        keys = protocol.pixel_metrics
        return [pair_metrics(x[:k], tgt[:k], mask[:k], definition=protocol.ssim, keys=keys) for x in (gen, src)]

    pixel(pairs)  # warm-up: the band matrices' first allocations
    stages["pixel metrics, both rows"] = _device_stage(pixel, dev, pairs)
    suite = NetworkMetrics(protocol, pairs, dev, weights, log=lambda s: None)
    rows = (("generated", gen), ("copy_source", src))
    for part in suite.parts:

        def update(k: int, part=part):
            for who, x in rows:
                part.update(who, ScoredBatch(np.arange(k), x[:k], tgt[:k], mask[:k], kps[:k]))

        name = f"{', '.join(part.wanted)}: {type(part).__name__.strip('_')}, both rows"
        stages[name] = _device_stage(update, dev, pairs)
    return stages


def _device_stage(fn: Callable[[int], object], dev: torch.device, pairs: int) -> dict:
    """Per-pair seconds of ``fn(pairs)``, and GFLOPs counted on ``fn(1)`` (the counter slows small operations)."""
    seconds = _timed(lambda: fn(pairs), dev)
    with FlopCounterMode(display=False) as flops:
        fn(1)
    return {"seconds": seconds / pairs, "gflops": flops.get_total_flops() / 1e9, "host": False}


def protocol_cost(name: str, device: str = "auto", pairs: int = 8, gpu_tflops: float = 15.0) -> dict[str, dict]:
    """Time every stage of protocol ``name`` on ``pairs`` random pairs and print the 12,000-pair figures:
    here (every stage as measured) and on a GPU (network FLOPs at ``gpu_tflops`` sustained, host stages as here)."""
    protocol, dev = get_protocol(name), resolve_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        stages = _pair_stages(protocol, dev, pairs, _write_random_weights(Path(tmp), protocol))
    fixed = _fixed_costs(protocol, dev)  # {stage: (seconds here, GFLOP or None for host work)}
    fid = next((s for k, s in stages.items() if k.startswith("fid")), None)
    if fid is not None:  # the real set: the training split's images through the same network, once
        fixed[f"FID real set: {MARKET_TRAIN:,} training images"] = (
            fid["seconds"] / 2 * MARKET_TRAIN,
            fid["gflops"] / 2 * MARKET_TRAIN,
        )
    print(f"protocol {name} on {dev}, {torch.get_num_threads()} CPU threads, {pairs} pairs of 128x64 images")
    print(f"{'stage':50s} {'ms/pair':>9s} {'GFLOP/pair':>11s} {MARKET_PAIRS:,} pairs here")
    for stage, st in stages.items():
        print(
            f"{stage:50s} {st['seconds'] * 1e3:9.1f} {st['gflops']:11.1f} {st['seconds'] * MARKET_PAIRS / 60:9.1f} min"
        )
    for stage, (seconds, _) in fixed.items():
        print(f"{stage:50s} {'':9s} {'':11s} {seconds / 60:9.1f} min")
    here = sum(st["seconds"] for st in stages.values()) * MARKET_PAIRS + sum(v[0] for v in fixed.values())
    gflops = sum(st["gflops"] for st in stages.values() if not st["host"]) * MARKET_PAIRS
    gflops += sum(v[1] for v in fixed.values() if v[1] is not None)
    host = sum(st["seconds"] for st in stages.values() if st["host"]) * MARKET_PAIRS
    host += sum(v[0] for v in fixed.values() if v[1] is None)
    device_s = gflops / (gpu_tflops * 1e3)
    print(f"total here: {here / 60:.1f} min. GPU estimate: {(device_s + host) / 60:.1f} min = networks "
          f"{gflops / 1e6:.1f} PFLOP at {gpu_tflops:g} TFLOP/s sustained fp32 ({device_s / 60:.1f} min) "
          f"+ host-side stages as measured here ({host / 60:.1f} min)")  # fmt: skip
    return {"stages": stages, "fixed": fixed, "here_s": here, "gpu_s": device_s + host}


def _fixed_costs(protocol: EvalProtocol, dev: torch.device) -> dict[str, tuple[float, float | None]]:
    """(seconds here, None: host work) of the set-level work at 12,000 pairs (measured with random inputs)."""
    out = {}
    rng = np.random.default_rng(0)
    if {"is", "mask_is"} & set(protocol.metrics):
        logits = rng.normal(size=(MARKET_PAIRS, 1008))
        n = sum(m in protocol.metrics for m in ("is", "mask_is")) * 2
        out[f"IS over 10 splits x {n} (host)"] = (n * _timed(lambda: inception_score(logits), dev), None)
    if "fid" in protocol.metrics:
        feats = rng.normal(size=(4096, 2048))
        seconds = _timed(lambda: fid_from_features(feats[:2048], feats[2048:]), dev)
        out["FID: 2 x scipy sqrtm of 2048x2048 (host)"] = (2 * seconds, None)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--images", type=int, default=8, help="images per batch and per timing (default 8)")
    p.add_argument("--repeat", type=int, default=2, help="timed runs after a warm-up; the best is kept (default 2)")
    p.add_argument("--scales", default="0.5,1,1.5,2", help="OpenPose search scales (default PATN's 0.5,1,1.5,2)")
    p.add_argument("--protocol", choices=list(PROTOCOLS), help="time a whole protocol's scoring instead (see above)")
    p.add_argument("--gpu-tflops", type=float, default=15.0, help="assumed sustained fp32 TFLOP/s (default 15)")
    args = p.parse_args(argv)
    if args.protocol:
        protocol_cost(args.protocol, args.device, args.images, args.gpu_tflops)
    else:
        run(args.device, args.images, args.repeat, tuple(float(s) for s in args.scales.split(",")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
