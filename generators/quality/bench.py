"""Per-image cost of each metric network, printed (never asserted): ``python -m generators.quality.bench``.

Random weights (the cost does not depend on their values), Market-sized 128x64 uint8 images, batches as the
scorers run them. Each line gives milliseconds per image (per pair for LPIPS) and the time of the 12,000-pair
Market test protocol at that rate. The keypoint decoding's share grows with the number of peaks, which random
weights keep small; real weights find one person per crop.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import torch

from augment.runtime import resolve_device
from generators.quality.inception import InceptionV3, inception_features
from generators.quality.lpips import LPIPS, lpips_distance
from generators.quality.openpose import BodyPoseNet
from generators.quality.pose_decode import PoseConfig, detect_keypoints
from generators.quality.weights import freeze

MARKET_PAIRS = 12_000


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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--images", type=int, default=8, help="images per batch and per timing (default 8)")
    p.add_argument("--repeat", type=int, default=2, help="timed runs after a warm-up; the best is kept (default 2)")
    p.add_argument("--scales", default="0.5,1,1.5,2", help="OpenPose search scales (default PATN's 0.5,1,1.5,2)")
    args = p.parse_args(argv)
    run(args.device, args.images, args.repeat, tuple(float(s) for s in args.scales.split(",")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
