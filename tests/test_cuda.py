"""The CUDA paths, marked ``cuda`` and skipped without a CUDA GPU.

    python -m pytest -m cuda tests/test_cuda.py                                   # on a GPU machine
    POSEAUG_CUDA_TESTS_ON_CPU=1 python -m pytest -m cuda tests/test_cuda.py       # rehearsal on a CPU

What they prove on the device (``scripts/gpu_check.py`` runs them and puts their figures in its report):

- inference of every method (``market`` preset, 128x64): channels-last fp32, fp16 and bf16 autocast agree
  with the contiguous fp32 forward within :data:`OUTPUT_TOLERANCE`;
- a few AMP training steps of every method (``synth`` preset, fp16 with a GradScaler and bf16), and a run
  stopped and resumed ends with the same weights, optimizer states, GradScaler state and log as an
  uninterrupted one (where a second uninterrupted run is itself reproducible: the control);
- CMC/mAP computed on the device equal the CPU result;
- the pose encoders (heatmaps, disks, masks, part polygons and affines) on the device equal the numpy path.

The rehearsal (``POSEAUG_CUDA_TESTS_ON_CPU=1``) runs the same code on the CPU so the tests themselves are
known to work before a GPU is lent: fp16 training and the GradScaler are CUDA-only and skip there, and the
CPU has no TF32 to turn off.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from pathlib import Path

# Deterministic cuBLAS needs a fixed workspace, set before the first cuBLAS handle exists.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from generator_inputs import random_poses  # noqa: E402
from torch import nn  # noqa: E402

import augment.data.pose as P  # noqa: E402
from augment.runtime import cpu_supports_bf16  # noqa: E402
from generators import build  # noqa: E402
from generators.base import network_methods  # noqa: E402
from generators.bench import bench_inputs, spread_weights  # noqa: E402
from generators.inference import model_to_uint8  # noqa: E402

REHEARSAL_ENV = "POSEAUG_CUDA_TESTS_ON_CPU"
FIGURES_ENV = "POSEAUG_CUDA_TEST_FIGURES"  # a JSON-lines file the tests append their measured figures to


def _test_device() -> torch.device | None:
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu") if os.environ.get(REHEARSAL_ENV) == "1" else None


DEVICE = _test_device()
ON_CUDA = DEVICE is not None and DEVICE.type == "cuda"
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE is None, reason=f"needs a CUDA GPU ({REHEARSAL_ENV}=1 rehearses on the CPU)"),
]
METHOD_NAMES = network_methods()
SIZE = (128, 64)

# Agreement with the contiguous fp32 forward (TF32 off), in grey levels of the written uint8 image:
# (mean, 99.9th percentile, max) of |difference|. Measured on the rehearsal CPU with the weights of
# `calibrated_weights` (batch 8, every method): bf16 mean 0.28-0.91, p99.9 2-4, max 3-8; fp16 mean 0.04-0.11,
# p99.9 1, max 1. The bf16 mean bound is generators.bench's (2 grey levels); the percentile bounds leave 2x;
# the max bounds only catch gross local errors (a broken border or layout path is off by the output spread,
# ~100 levels). fp32 channels-last differs in summation order only: a pixel at a rounding boundary may flip by 1.
OUTPUT_TOLERANCE = {"fp32": (0.02, 1.0, 1.0), "fp16": (0.25, 2.0, 8.0), "bf16": (2.0, 8.0, 32.0)}
AMP_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
OUTPUT_LAYER_STD = 0.5  # pre-activation spread of the calibrated output layer (images in [-1, 1])


def record(kind: str, **figures) -> None:
    """Append measured figures to the file named by $POSEAUG_CUDA_TEST_FIGURES (gpu_check's report)."""
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"kind": kind, "device": str(DEVICE), **figures}) + "\n")


@pytest.fixture
def exact_fp32():
    """fp32 convolutions and matmuls without TF32 (cuDNN convolutions use TF32 by default on CUDA)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# ---------------------------------------------------------------------------------------------
# inference agreement


def calibrated_weights(bundle, inputs, target_std: float = OUTPUT_LAYER_STD) -> dict[str, float]:
    """Spread weights (generators.bench), then each generator network's last convolution rescaled so its
    output has standard deviation ``target_std`` on ``inputs``; returns the scale applied per network.

    Why: an untrained generator outputs |y| < 0.05, where every precision agrees, and plain spread weights
    drive PG2's and SPGNet's output layers to std 14-18, so 57-98% of the output pixels sit saturated at
    +-1 and the rest are differences of large activations, where bf16's relative rounding becomes tens of
    grey levels (the README's random-weight outliers). Trained generators output image-like values; so do
    these (output std 0.4-0.46, < 1% saturated), while every inner layer keeps its spread-weight scale.
    """
    spread_weights(bundle, SIZE, seed=1)
    calls: list[tuple[str, nn.Module]] = []
    handles = [
        module.register_forward_hook(lambda m, a, o, name=name: calls.append((name, m)))
        for name, net in bundle.nets.items()
        for module in net.modules()
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    try:
        with torch.inference_mode():
            bundle.generate(*inputs)
    finally:
        for h in handles:
            h.remove()
    last = {name: module for name, module in calls}  # the last convolution each network ran
    scales = {}
    for name in dict.fromkeys(name for name, _ in calls):  # in call order: G1 before G2
        stds: list[float] = []
        handle = last[name].register_forward_hook(lambda m, a, o, stds=stds: stds.append(float(o.float().std())))
        try:
            with torch.inference_mode():
                bundle.generate(*inputs)
        finally:
            handle.remove()
        scales[name] = target_std / stds[0]
        with torch.no_grad():
            last[name].weight.mul_(scales[name])
            if last[name].bias is not None:
                last[name].bias.mul_(scales[name])
    return scales


def _agreement(out: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """(mean, p99.9, max) |difference| in grey levels of the uint8 images the service writes."""
    d = (model_to_uint8(out).float() - model_to_uint8(ref).float()).abs().flatten().cpu().double()
    return {"mean": float(d.mean()), "p99.9": float(torch.quantile(d, 0.999)), "max": float(d.max())}


def _device_inputs(n: int, seed: int):
    img, src, tgt = bench_inputs(n, SIZE, seed=seed)
    return img.to(DEVICE), src.to(DEVICE), tgt.to(DEVICE)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_inference_precisions_agree_with_fp32(method, exact_fp32):
    bundle = build(method, "market", seed=0, device=DEVICE)
    bundle.nets.eval()
    scales = calibrated_weights(bundle, _device_inputs(2, seed=9))
    img, src, tgt = _device_inputs(8, seed=5)
    with torch.inference_mode():
        ref = bundle.generate(img, src, tgt).float()
    bundle.nets.to(memory_format=torch.channels_last)
    img_cl = img.contiguous(memory_format=torch.channels_last)
    stats = {}
    for name, dtype in AMP_DTYPES.items():
        amp = contextlib.nullcontext() if dtype is None else torch.autocast(DEVICE.type, dtype=dtype)
        with torch.inference_mode(), amp:
            out = bundle.generate(img_cl, src, tgt).float()
        assert torch.isfinite(out).all(), f"{method} {name}: non-finite outputs"
        stats[name] = _agreement(out, ref)
    record("inference", method=method, output_std=float(ref.std()), scales=scales, agreement=stats)
    assert float(ref.std()) > 0.3, f"{method}: output std {float(ref.std()):.3f}, the comparison would be vacuous"
    beyond = {
        name: s for name, s in stats.items() if any(v > bound for v, bound in zip(s.values(), OUTPUT_TOLERANCE[name]))
    }
    assert not beyond, f"{method}: beyond {OUTPUT_TOLERANCE} (mean, p99.9, max grey levels): {stats}"


# ---------------------------------------------------------------------------------------------
# AMP training and bit-exact resume

# Short runs that reach every network: PG2's second stage and SPGNet's discriminator start early.
TRAIN_OVERRIDES = {"pg2": {"stage1_iterations": "2"}, "spgnet": {"gan_start": "1"}}
NONDETERMINISTIC = "does not have a deterministic implementation"


@pytest.fixture(scope="module")
def train_root(tmp_path_factory):
    from test_generator_data import make_tiny_root

    return make_tiny_root(tmp_path_factory.mktemp("cuda-data"), size=SIZE)


@pytest.fixture
def deterministic():
    """Deterministic kernels for the test (generators.train enables them only on CPU). warn_only: an op
    with no deterministic CUDA kernel warns instead of raising, and the test names it if the runs differ."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def _train_state(run_dir: Path) -> tuple[dict, list[tuple[str, torch.Tensor]]]:
    from generators.checkpoint import read_checkpoint

    data = read_checkpoint(run_dir / "checkpoints" / "latest.pt")
    tensors = [(f"nets.{n}.{k}", v) for n, sd in data["nets"].items() for k, v in sd.items()]
    for opt, sd in data["optimizers"].items():
        tensors += [(f"opt.{opt}.{p}.{k}", v) for p, st in sd["state"].items() for k, v in st.items()]
    return data, tensors


def _differences(ta, tb) -> dict[str, float]:
    """Largest |difference| of each tensor that is not bit-equal, by name."""
    return {n: float((x.double() - y.double()).abs().max()) for (n, x), (_, y) in zip(ta, tb) if not torch.equal(x, y)}


def _log(run_dir: Path) -> list[dict]:
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_amp_training_resumes_bit_exact(method, amp, train_root, tmp_path, deterministic):
    from generators.train import RunConfig, train

    if not ON_CUDA and amp == "fp16":
        pytest.skip("fp16 training with a GradScaler is CUDA-only")
    if not ON_CUDA and not cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16")
    run = lambda out, **kw: RunConfig(
        out=out,
        data=train_root,
        method=method,
        preset="synth",
        iterations=4,
        batch_size=4,
        checkpoint_every=2,
        sample_every=4,
        device=str(DEVICE),
        amp=amp,
        overrides=dict(TRAIN_OVERRIDES.get(method, {})),
        progress=False,
        num_samples=2,
    )

    def stop_at_2(info):
        if info.iteration == 2:
            raise KeyboardInterrupt

    quiet = lambda s: None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        straight = train(run(tmp_path / "a"), log=quiet)
        first = train(run(tmp_path / "b"), hooks=[stop_at_2], log=quiet)
        resumed = train(RunConfig(out=tmp_path / "b", resume=True, amp=amp, progress=False, num_samples=2), log=quiet)
        train(run(tmp_path / "c"), log=quiet)  # the control: is an uninterrupted run reproducible on this device?
    assert straight.iteration == 4 and straight.amp == amp
    assert first.interrupted and first.iteration == 2 and resumed.start_iteration == 2 and resumed.iteration == 4

    a, ta = _train_state(tmp_path / "a")
    b, tb = _train_state(tmp_path / "b")
    log_a, log_b = _log(tmp_path / "a"), _log(tmp_path / "b")
    not_finite = [(row["iteration"], k) for row in log_a for k, v in row.items() if not math.isfinite(v)]
    assert not not_finite, f"{method} {amp}: non-finite losses (iteration, term): {not_finite}"
    scaler = a["ctx"]["step"]["scaler"]
    if ON_CUDA and amp == "fp16":
        assert scaler is not None and math.isfinite(scaler["scale"]) and scaler["scale"] > 0
    # the bookkeeping a resume restores is exact whatever the kernels do
    assert [n for n, _ in ta] == [n for n, _ in tb]
    assert a["schedulers"] == b["schedulers"] and a["ctx"]["sampler"] == b["ctx"]["sampler"]
    assert [(r["iteration"], sorted(r)) for r in log_a] == [(r["iteration"], sorted(r)) for r in log_b]
    unequal, noise = _differences(ta, tb), _differences(ta, _train_state(tmp_path / "c")[1])
    assert not [n for n in unequal if n.endswith(".step")], f"{method} {amp}: optimizer step counts differ"
    nondeterministic = sorted(
        {str(w.message).split(" does not")[0] for w in caught if NONDETERMINISTIC in str(w.message)}
    )
    record(
        "training",
        method=method,
        amp=amp,
        tensors=len(ta),
        unequal=len(unequal),
        max_abs_diff=max(unequal.values(), default=0.0),
        control_unequal=len(noise),
        control_max_abs_diff=max(noise.values(), default=0.0),
        scaler=scaler,
        nondeterministic_ops=nondeterministic,
        warnings=sorted({str(w.message)[:120] for w in caught})[:8],
    )
    if unequal and (noise or nondeterministic):
        pytest.xfail(
            f"{method} {amp}: {len(unequal)} of {len(ta)} tensors differ after resume (largest |diff| "
            f"{max(unequal.values()):.3g}), but two uninterrupted runs differ too ({len(noise)} tensors, largest "
            f"{max(noise.values(), default=0.0):.3g}): kernels here are not reproducible run to run (ops that say "
            f"so: {'; '.join(nondeterministic) or 'none'}), so a bit-exact resume cannot be judged on this device"
        )
    worst = sorted(unequal.items(), key=lambda kv: -kv[1])[:5]
    assert not unequal, f"{method} {amp}: tensors differ after resume, a reproducible run does not: {worst}"
    assert a["content_hash"] == b["content_hash"]
    assert a["ctx"]["step"]["scaler"] == b["ctx"]["step"]["scaler"]
    assert log_a == log_b


# ---------------------------------------------------------------------------------------------
# CMC / mAP on the device


def test_rank_metrics_on_the_device_equal_the_cpu():
    from reid_eval.metrics import evaluate_all, rank_metrics
    from reid_eval.metrics_bench import market_like_problem

    distmat, q_pids, g_pids, q_cams, g_cams = market_like_problem(400, 3000, 120, 6, seed=3)
    tied = np.round(distmat, -1)  # coarse distances: many ties, broken by gallery index on every path
    for dist in (distmat, tied):
        ids = (q_pids, g_pids, q_cams, g_cams)
        cpu = evaluate_all(dist, *ids, device="cpu")
        dev = evaluate_all(torch.from_numpy(dist).to(DEVICE), *ids, sort_backend="torch")
        for key, value in cpu.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(dev[key], value, err_msg=key)
            elif key.startswith("mAP"):
                assert dev[key] == pytest.approx(value, abs=1e-12), key
            else:
                assert dev[key] == value, key
        a = rank_metrics(dist, *ids, device="cpu")
        b = rank_metrics(dist, *ids, device=DEVICE, sort_backend="torch")
        np.testing.assert_array_equal(b.first_match_rank, a.first_match_rank)
        np.testing.assert_allclose(b.ap, a.ap, rtol=0, atol=1e-12)
    record("metrics", queries=400, gallery=3000, rank1=cpu["rank1"], mAP=cpu["mAP"])


# ---------------------------------------------------------------------------------------------
# pose encoders on the device


def test_pose_encoders_on_the_device_equal_numpy():
    kps = np.concatenate([random_poses(96, seed=21), random_poses(32, seed=22, p_missing=0.4, keep_torso=False)])
    other = np.roll(kps, 1, axis=0)
    on_device = torch.from_numpy(kps).to(DEVICE)
    exact = {
        "joint_disks": P.joint_disks,
        "pg2_pose_maps": P.pg2_pose_maps,
        "pose_mask_pg2": P.pose_mask_pg2,
        "pose_mask_eval": P.pose_mask_eval,
        "part_masks": P.part_masks,
    }
    for name, fn in exact.items():
        out = fn(on_device)
        assert out.device.type == DEVICE.type, name
        np.testing.assert_array_equal(out.cpu().numpy(), fn(kps), err_msg=name)
    # float64 arithmetic rounded to float32: exp and the SVD may differ in the last bits between libraries
    np.testing.assert_allclose(P.heatmaps(on_device).cpu().numpy(), P.heatmaps(kps), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(P.torso_scale(on_device).cpu().numpy(), P.torso_scale(kps), rtol=1e-12)
    np.testing.assert_allclose(P.part_polygons(on_device).cpu().numpy(), P.part_polygons(kps), rtol=1e-12)
    affines, valid = P.part_affines(on_device, torch.from_numpy(other).to(DEVICE))
    ref_affines, ref_valid = P.part_affines(kps, other)
    np.testing.assert_array_equal(valid.cpu().numpy(), ref_valid)
    np.testing.assert_allclose(affines.cpu().numpy(), ref_affines, rtol=1e-5, atol=1e-4)
    assert ref_valid.mean() > 0.5  # most parts fit: the comparison covers real affines, not the no-point default
    record("pose", poses=len(kps), valid_parts=float(ref_valid.mean()))
