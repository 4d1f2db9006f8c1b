"""scripts/gpu_check.py: the dry run end to end on the CPU (as on a bare GPU machine: ray, torchreid, gdown,
lpips hidden), time boxes, a machine without CUDA, and the report on results only a GPU run produces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu_check.py"
sys.path.insert(0, str(SCRIPT.parent))

import gpu_check  # noqa: E402
import gpu_check_report  # noqa: E402

# Not on the GPU machine's image (docs/gpu-check.md): the check must run without them.
ABSENT_ON_DEVICE = ("ray", "torchreid", "gdown", "lpips", "bs4", "soupsieve")
BLOCKER = f"""
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT_ON_DEVICE!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden: not on the GPU machine)", name=name)
sys.meta_path.insert(0, _Absent())
"""


def run_check(tmp_path: Path, *args: str, hide: bool = True) -> tuple[subprocess.CompletedProcess, dict, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER if hide else "")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]), CUDA_VISIBLE_DEVICES="")
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads((out / "gpu_check.json").read_text()) if (out / "gpu_check.json").is_file() else {}
    md = (out / "gpu_check.md").read_text() if (out / "gpu_check.md").is_file() else ""
    return done, report, md


def test_dry_run_runs_every_step_without_the_absent_packages(tmp_path):
    done, report, md = run_check(tmp_path, "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert report["format"] == "poseaug-gpu-check/1" and report["dry_run"] is True
    steps = {s["name"]: s for s in report["steps"]}
    methods = steps["env"]["result"]["methods"]
    expected = ["env", "bench:patn", "gpu_stage", "cpu_feed", "tests", "metrics", "reid_train"]
    assert list(steps) == expected + [f"bench:{m}" for m in methods if m != "patn"]
    assert {s["status"] for s in steps.values()} == {"ok"}, {n: s.get("error") for n, s in steps.items()}
    assert all(steps["env"]["result"]["packages"][name] is None for name in ABSENT_ON_DEVICE)
    for m in methods:  # eager fp32 vs the fast path at every batch, and the doubling probe
        bench = steps[f"bench:{m}"]["result"]
        variants = {t["variant"] for t in bench["bench"]["timings"]}
        assert len(variants) == 2 and "eager fp32" in variants
        assert [r["batch"] for r in bench["probe"]["rows"]] == [2, 4] and bench["probe"]["largest_batch"] == 4
    stage = steps["gpu_stage"]["result"]["rows"]
    assert {(r["precision"], r["payload"]) for r in stage} == {("fp32", 2), ("fp32", 4), ("bf16", 2), ("bf16", 4)}
    assert all(r["images_per_second"] > 0 and r["cpu_seconds_per_image"] > 0 for r in stage)
    feed = steps["cpu_feed"]["result"]
    assert feed["images"] == 64 and 0 < feed["cpu_seconds_per_image"] < 1
    tests = steps["tests"]["result"]
    assert tests["counts"] == {"skipped": len(tests["tests"])} and len(tests["tests"]) >= 17
    assert steps["metrics"]["result"]["cmc_equal"] is True
    reid = steps["reid_train"]["result"]
    assert [(r["model"], r["batch"]) for r in reid["rows"]] == [("resnet50", 2), ("inception", 2)]
    assert all(r["losses_finite"] for r in reid["rows"])
    assert "torchvision resnet50" in reid["rows"][0]["built_by"]  # torchreid hidden: the fallback
    summary = report["summary"]
    assert summary["patn_best"]["images_per_second"] > 0 and summary["cores_to_feed"]["at_patn_best"] > 0
    assert "DRY RUN" in md and "## Generators" in md and "## Re-ID training step" in md
    assert "torchreid missing" in md and "torchreid-0.2.5-py3-none-any.whl" in md
    assert (tmp_path / "report" / "gpu_check.log").stat().st_size > 0


def test_a_step_past_its_time_limit_is_killed_and_the_rest_runs(tmp_path):
    done, report, md = run_check(tmp_path, "--dry-run", "--only", "metrics,cpu_feed", "--timeout", "metrics=0.3")
    assert done.returncode == 1
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["env", "cpu_feed", "metrics"]
    assert steps["metrics"]["status"] == "timeout" and "time limit" in steps["metrics"]["error"]
    assert steps["cpu_feed"]["status"] == "ok"
    assert "metrics: TIMEOUT" in md


def test_without_cuda_nothing_runs_and_the_report_says_why(tmp_path):
    done, report, md = run_check(tmp_path, "--only", "metrics", hide=False)
    assert done.returncode == 1 and report["no_gpu"] is True
    assert [s["status"] for s in report["steps"]] == ["ok", "skipped"]
    assert "torch sees no CUDA device" in report["steps"][1]["reason"] and "no step ran" in md


def test_flag_errors():
    with pytest.raises(gpu_check.UsageError, match="--budget"):
        gpu_check.CheckConfig(out=Path("x"), budget=0).validate()
    with pytest.raises(SystemExit):
        gpu_check.build_parser().parse_args(["--timeout", "tests"])


PYTEST_OUTPUT = """\
tests/test_cuda.py::test_inference_precisions_agree_with_fp32[patn] PASSED [ 10%]
tests/test_cuda.py::test_inference_precisions_agree_with_fp32[pg2] FAILED [ 20%]
tests/test_cuda.py::test_amp_training_resumes_bit_exact[spgnet-fp16] XFAIL [ 30%]
tests/test_cuda.py::test_amp_training_resumes_bit_exact[patn-fp16]
=========================== short test summary info ============================
FAILED tests/test_cuda.py::test_inference_precisions_agree_with_fp32[pg2] - AssertionError: pg2: beyond
XFAIL tests/test_cuda.py::test_amp_training_resumes_bit_exact[spgnet-fp16] - spgnet fp16: 3 of 9 tensors differ
"""


def test_pytest_outcomes_are_parsed_from_a_partial_run(tmp_path):
    figures = tmp_path / "figures.jsonl"
    figures.write_text(json.dumps({"kind": "metrics", "rank1": 0.5}) + "\n")
    record = gpu_check.pytest_record(PYTEST_OUTPUT, 1, figures)
    tests = {t["id"].split("::")[1]: t for t in record["result"]["tests"]}
    assert record["status"] == "failed" and record["result"]["counts"] == {"passed": 1, "failed": 1, "xfail": 1}
    assert tests["test_inference_precisions_agree_with_fp32[pg2]"]["message"].startswith("AssertionError: pg2")
    assert "3 of 9 tensors differ" in tests["test_amp_training_resumes_bit_exact[spgnet-fp16]"]["message"]
    assert record["result"]["figures"] == [{"kind": "metrics", "rank1": 0.5}]


def gpu_like_report() -> dict:
    """What a GPU run can produce that the dry run does not: out-of-memory rows, failed and timed-out
    steps, failed / xfailed tests with their figures."""
    timing = lambda variant, batch, speed, **kw: {"variant": variant, "batch": batch, "images_per_second": speed, **kw}
    bench = {
        "method": "patn",
        "gflops_per_image": 45.04,
        "timings": [
            timing("eager fp32", 256, 900.0),
            timing(
                "channels-last bf16", 256, 6000.0, vs_eager=6.7, max_abs_diff=0.04, mean_abs_diff=0.005, agrees=True
            ),
        ],
        "fast_path": {"256": {"variant": "channels-last bf16", "vs_eager": 6.7, "images_per_second": 6000.0}},
    }
    probe = {
        "variant": "channels-last bf16",
        "rows": [
            {"batch": 512, "images_per_second": 8500.0, "peak_memory_gib": 20.0},
            {"batch": 1024, "error": "out of memory"},
        ],
        "stopped": "out of memory at batch 1024",
        "largest_batch": 512,
    }
    infer = {"kind": "inference", "method": "pg2", "output_std": 0.46}
    infer["agreement"] = {p: {"mean": 0.5, "p99.9": 3.0, "max": 5.0} for p in ("fp32", "fp16", "bf16")}
    train = {"kind": "training", "method": "spgnet", "amp": "fp16", "tensors": 9, "unequal": 3, "max_abs_diff": 1e-3}
    train["nondeterministic_ops"] = ["grid_sampler_2d_backward_cuda"]
    train.update(control_unequal=2, control_max_abs_diff=5e-4)
    tests = gpu_check.pytest_record(PYTEST_OUTPUT, 1, Path("/nonexistent"))["result"]
    tests["figures"] = [infer, train]
    return {
        "started": "2026-12-01T00:00:00+00:00",
        "dry_run": False,
        "no_gpu": False,
        "seconds": 500.0,
        "steps": [
            {
                "name": "env",
                "status": "ok",
                "result": {"gpu": {"name": "NVIDIA H200"}, "torch": "2.11", "packages": {}},
            },
            {"name": "bench:patn", "status": "ok", "seconds": 60.0, "result": {"bench": bench, "probe": probe}},
            {"name": "gpu_stage", "status": "failed", "seconds": 3.0, "error": "Traceback ...\nRuntimeError: boom"},
            {"name": "cpu_feed", "status": "ok", "result": {"images": 2048, "batch": 32, "cpus": 16, **FEED}},
            {"name": "tests", "status": "failed", "seconds": 100.0, "result": tests},
            {"name": "metrics", "status": "timeout", "seconds": 60.0, "error": "killed", "result": None},
            {"name": "reid_train", "status": "ok", "result": {"rows": [REID_OOM], "notes": []}},
            {"name": "bench:pg2", "status": "skipped", "reason": "budget exhausted (3 s of 540 s left)"},
        ],
    }


FEED = {
    "decode_cpu_seconds_per_image": 2e-4,
    "decode_wall_seconds_per_image": 2e-4,
    "write_cpu_seconds_per_image": 8e-4,
    "write_wall_seconds_per_image": 9e-4,
    "cpu_seconds_per_image": 1e-3,
}
REID_OOM = {"model": "resnet50", "built_by": "torchvision", "input": [256, 128], "batch": 256, "error": "out of memory"}


def test_report_of_a_gpu_run_with_failures():
    report = gpu_like_report()
    report["summary"] = summary = gpu_check_report.summarize(report)
    assert summary["patn_best"] == {
        "images_per_second": 8500.0,
        "batch": 512,
        "variant": "channels-last bf16",
        "from": "probe",
        "tflops": 382.8,
        "fraction_of_peak": 0.485,
    }
    assert summary["goal"]["met"] is True and summary["cores_to_feed"]["at_patn_best"] == 8.5
    assert summary["not_ok"] == {"gpu_stage": "failed", "tests": "failed", "metrics": "timeout", "bench:pg2": "skipped"}
    md = gpu_check_report.markdown(report)
    for text in (
        "8,500.0 images/s at batch 512",
        "goal 8,000/s met",
        "8.5 cores",
        "gpu_stage: FAILED: RuntimeError: boom",
        "bench:pg2: SKIPPED: budget exhausted",
        "| patn | 1,024 | - | - | out of memory |",
        "failed: tests/test_cuda.py::test_inference_precisions_agree_with_fp32[pg2]: AssertionError",
        "| spgnet | fp16 | 9 | 3 | 0.001 | 2 / 0.0005 | grid_sampler_2d_backward_cuda |",
        "| resnet50 | torchvision | 256x128 | 256 | - | - | - | - | out of memory |",
    ):
        assert text in md, text
