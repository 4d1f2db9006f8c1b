"""cluster.capacity: the workload arithmetic and the estimate built from per-image costs
(the re-ID part from reid_eval.costs, which only capacity's main imports)."""

from functools import partial

import pytest

from cluster.capacity import (
    MARKET_TRAIN_IMAGES,
    GpuModel,
    estimate,
    generated_images,
    markdown,
    reid_cells,
)
from reid_eval.costs import training_estimate


def test_market_workloads():
    work = generated_images()
    assert work["2x"] == 12_936 and work["3x"] == 25_872
    # Table-5 sweep: the removed images of p = 0.1 .. 0.9, then 2x and 3x
    removed = sum(round((1 - p / 10) * 12_936) for p in range(1, 10))
    assert removed == 58_212
    assert work["sweep"] == removed + 12_936 + 25_872 == 97_020
    cells = reid_cells(2)
    assert len(cells) == 2 * 11 + 10  # per method 9 portions + 2x + 3x; 10 "None" cells
    assert cells.count(3 * MARKET_TRAIN_IMAGES) == 2 and round(0.1 * 12_936) in cells


def test_estimate_is_bound_by_io_when_the_gpu_outruns_the_node_cpus():
    gpu = GpuModel(peak_tflops=100.0, efficiency=0.5, node_cpus=4)
    assert gpu.seconds(50.0) == pytest.approx(50e9 / 50e12)  # 1 ms
    methods = {
        "slow": {"gflops_per_image": 50.0, "seconds_per_image": 0.2},
        "fast": {"gflops_per_image": 1.0, "seconds_per_image": 0.01},
        "broken": {"error": "no market preset"},
    }
    reid = {"inception": {"forward_gflops_per_image": 2.0, "epochs": 10}}
    service = {"io_seconds_per_image": 0.002}  # 0.5 ms per image on a 4-core node
    r = estimate(service, methods, gpu, partial(training_estimate, reid))
    assert r["methods_in_sweep"] == ["fast", "slow"]  # the failed measurement is left out
    slow, fast = r["generation"]["slow"], r["generation"]["fast"]
    assert not slow["io_bound_on_gpu_node"] and fast["io_bound_on_gpu_node"]
    assert fast["gpu_node_ms_per_image_estimated"] == pytest.approx(0.5)  # I/O, not the 0.02 ms model
    assert slow["cpu_cores_to_feed_one_gpu"] == pytest.approx(2.0)
    assert slow["cpu_seconds_per_image"] == pytest.approx(0.202)  # model + I/O on this machine
    assert slow["hours"]["2x"]["cpu_this_machine"] == pytest.approx(round(12_936 * 0.202 / 3600, 3))
    per_image = 3 * 2.0e9 / 50e12 * 10  # fwd + bwd, 10 epochs
    t = r["reid_training"]["inception"]
    assert t["sweep_cells"] == len(reid_cells(2))
    assert t["sweep_gpu_hours_estimated"] == pytest.approx(round(sum(reid_cells(2)) * per_image / 3600, 2))
    reid_models = {"inception": {**reid["inception"], "input_size": [144, 56]}}
    report = {
        "machine": "test",
        "load_average_start": None,
        "load_average_end": None,
        "service": None,
        "methods": methods,
        "reid_models": reid_models,
        "estimates": r,
        "gpu_model": {"peak_tflops": 100.0, "efficiency": 0.5, "node_cpus": 4, "gpus": 8},
    }
    text = markdown(report)
    assert "| slow | 50.00 | 0.202 |" in text and "(I/O-bound) |" in text
    assert "| broken | failed: no market preset |" in text
    assert "| inception | 144x56 | 10 |" in text


def test_without_reid_figures_the_estimate_has_no_reid_part():
    gpu = GpuModel(peak_tflops=100.0, efficiency=0.5, node_cpus=4)
    r = estimate(None, {"m": {"gflops_per_image": 1.0, "seconds_per_image": 0.01}}, gpu)
    assert r["reid_training"] == {} and r["sweep_total"]["reid_gpu_hours_estimated"] == 0
    t = r["generation"]["m"]
    assert t["cpu_cores_to_feed_one_gpu"] is None and not t["io_bound_on_gpu_node"]


def test_cluster_library_does_not_import_reid_eval():
    """Re-ID sits above the cluster layer: only capacity's main() imports reid_eval (function-level)."""
    import ast
    import inspect

    import cluster.capacity as capacity

    tree = ast.parse(inspect.getsource(capacity))
    for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.Module))]:
        body = fn.body if isinstance(fn, ast.Module) else []
        if isinstance(fn, ast.FunctionDef) and fn.name != "main":
            body = list(ast.walk(fn))
        for node in body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reid_eval"):
                raise AssertionError(f"{getattr(fn, 'name', 'module')} imports {node.module}")
