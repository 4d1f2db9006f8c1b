"""``python scripts/gpu_check.py [--dry-run] [--out DIR]``: the prepared GPU check, one command on a lent GPU.

Run from the repository root with ``PYTHONPATH=.`` (no install needed). It needs only what a bare GPU
machine has (torch with CUDA, torchvision, numpy, pandas, pyarrow, opencv, scipy, scikit-image, pytest);
torchreid is optional (docs/gpu-check.md lists the wheels to carry for it). Steps, in this order, each in
its own process with its own time limit, so a failure or a hang is reported and the rest still runs:

    env            torch / CUDA / GPU / packages, the registered generator methods
    bench:patn     generators.bench, PATN ``market``: eager fp32 vs the fast path at batch 1/32/256, then the
                   fast path at doubling batches until out of memory (the largest batch that fits)
    gpu_stage      augment.execute.GenerateStage alone on pre-decoded payloads (decode excluded)
    cpu_feed       CPU seconds per image of the service's decode and write stages
    tests          pytest -m cuda tests/test_cuda.py (agreement, AMP training + resume, metrics, pose)
    metrics        CMC/mAP on a Market-size matrix on the device vs the CPU
    reid_train     forward + backward + SGD step, ResNet-50 256x128 and Inception 144x56, batch 64/256
    bench:<other>  generators.bench for every other method's ``market`` preset

The whole check keeps within ``--budget`` seconds (default 540: a 10-minute command with room to spare);
a step that would start with too little time left is skipped and says so. ``--dry-run`` runs every step on
the CPU at tiny sizes (``synth`` presets, batches of 1-4, a 60 x 400 metric matrix) in well under a minute.

Output in ``--out`` (default runs/gpu-check): ``gpu_check.json`` (everything), ``gpu_check.md`` (the report)
and ``gpu_check.log`` (every step's own output).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FORMAT = "poseaug-gpu-check/1"
DEFAULT_BUDGET = {False: 540.0, True: 300.0}  # seconds for the whole check: GPU, dry run (a busy CPU)
FALLBACK_METHODS = ("deform", "patn", "pg2", "resnet", "spgnet")  # when the env step cannot list them
PYTEST_ARGS = ["-m", "pytest", "-o", "addopts=", "-v", "-rA", "-p", "no:cacheprovider", "-m", "cuda"]
TEST_FILE = "tests/test_cuda.py"


class UsageError(ValueError):
    """A bad command-line value; the message names the flag."""


@dataclass(frozen=True)
class Step:
    """One isolated, time-boxed part of the check."""

    name: str
    kind: str  # a key of gpu_check_steps.STEPS, or "pytest"
    params: dict
    timeout: float  # seconds
    about: str  # one line for the report


@dataclass
class CheckConfig:
    out: Path
    dry_run: bool = False
    device: str = "auto"
    budget: float | None = None  # None: DEFAULT_BUDGET
    only: tuple[str, ...] = ()  # step names or prefixes ("bench" = every bench step); empty: all
    timeouts: dict[str, float] = field(default_factory=dict)
    compile: bool = False

    def validate(self) -> None:
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UsageError(f"--device: {self.device!r}: use auto, cpu, cuda or cuda:N")
        if self.budget is not None and self.budget <= 0:
            raise UsageError(f"--budget: must be positive, got {self.budget}")
        if any(v <= 0 for v in self.timeouts.values()):
            raise UsageError(f"--timeout: limits must be positive, got {self.timeouts}")

    @property
    def total_budget(self) -> float:
        return self.budget if self.budget is not None else DEFAULT_BUDGET[self.dry_run]


# ---------------------------------------------------------------------------------------------
# the plan: which steps, at which sizes


def sizes(dry_run: bool, compile: bool) -> dict[str, dict]:
    """Parameters of each kind of step: full sizes for the GPU, tiny ones for the dry run."""
    if dry_run:  # ResNet-50 stays at 128x64: channels-last bf16 convolutions with a 1-pixel-wide output are
        # wrong on some CPUs (oneDNN; 64x32 inputs give NaN losses in layer4), a torch issue, not the check's
        return {
            "bench": dict(preset="synth", batch_sizes=[1, 2], iterations=2, repeats=1, warmup=1, compile=False,
                          probe_start=2, probe_cap=4, probe_seconds=20, probe_forwards=1),
            "gpu_stage": dict(method="patn", preset="synth", precisions=["fp32", "bf16"], payload_sizes=[2, 4],
                              min_calls=1, min_seconds=0.0),
            "cpu_feed": dict(images=64, batch=16),
            "metrics": dict(queries=60, gallery=400, ids=30, cams=6, repeats=1),
            "reid_train": dict(models=[["resnet50", [128, 64]], ["inception", [72, 28]]], batches=[2], warmup=1,
                               steps=1, classes=751),
        }  # fmt: skip
    return {
        "bench": dict(preset="market", batch_sizes=[1, 32, 256], repeats=3, warmup=2, compile=compile,
                      probe_start=512, probe_cap=16384, probe_seconds=45, probe_forwards=2),
        "gpu_stage": dict(method="patn", preset="market", precisions=["fp32", "bf16"], payload_sizes=[32, 256],
                          min_calls=3, min_seconds=2.0),
        "cpu_feed": dict(images=2048, batch=32),
        "metrics": dict(queries=3368, gallery=15913, ids=751, cams=6, repeats=5),
        "reid_train": dict(models=[["resnet50", [256, 128]], ["inception", [144, 56]]], batches=[64, 256],
                           warmup=3, steps=10, classes=751),
    }  # fmt: skip


# seconds per step: (GPU, dry run)
TIMEOUTS = {
    "env": (60, 30),
    "bench:patn": (150, 40),
    "bench": (90, 40),
    "gpu_stage": (90, 40),
    "cpu_feed": (60, 30),
    "tests": (240, 60),
    "metrics": (60, 30),
    "reid_train": (90, 40),
}


def plan(cfg: CheckConfig, methods: list[str], device: str) -> list[Step]:
    """The steps after ``env``, in the order they run (the issue's goal first, the other methods last)."""
    p = sizes(cfg.dry_run, cfg.compile)
    if cfg.dry_run:  # tiny work: one intra-op thread is as fast, and far faster on a busy machine
        p = {kind: {**values, "threads": 1} for kind, values in p.items()}
    first = "patn" if "patn" in methods else methods[0]

    def bench_step(method: str) -> Step:
        name = f"bench:{method}"
        lighter = {} if method == first or cfg.dry_run else {"repeats": 2, "probe_seconds": 30}
        return Step(
            name,
            "bench",
            {**p["bench"], **lighter, "method": method, "device": device},
            _timeout(cfg, name, "bench:patn" if method == first else "bench"),
            f"generators.bench {method}/{p['bench']['preset']}: eager fp32 vs fast path, then the largest batch",
        )

    about = {
        "gpu_stage": "augment.execute.GenerateStage alone on pre-decoded payloads (decode excluded)",
        "cpu_feed": "CPU s/image of augment.execute.decode_stage and write_stage",
        "metrics": "reid_eval.metrics.evaluate_rank / evaluate_all on the device vs the CPU",
        "reid_train": "re-ID training step (forward + backward + SGD), bf16 autocast",
    }
    steps = [bench_step(first)]
    for kind in ("gpu_stage", "cpu_feed"):
        steps.append(Step(kind, kind, {**p[kind], "device": device}, _timeout(cfg, kind, kind), about[kind]))
    steps.append(Step("tests", "pytest", {}, _timeout(cfg, "tests", "tests"), f"pytest -m cuda {TEST_FILE}"))
    for kind in ("metrics", "reid_train"):
        steps.append(Step(kind, kind, {**p[kind], "device": device}, _timeout(cfg, kind, kind), about[kind]))
    steps += [bench_step(m) for m in methods if m != first]
    if cfg.only:
        steps = [s for s in steps if any(s.name == o or s.name.split(":")[0] == o for o in cfg.only)]
    return steps


def _timeout(cfg: CheckConfig, name: str, key: str) -> float:
    if name in cfg.timeouts:
        return cfg.timeouts[name]
    return float(TIMEOUTS[key][cfg.dry_run])


# ---------------------------------------------------------------------------------------------
# running one step in its own process


def run_step(step: Step, limit: float, work: Path, log) -> dict:
    """Run ``step`` in a child process for at most ``limit`` seconds; returns its record for the report."""
    result_file = work / f"{step.name.replace(':', '-')}.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    # idle OpenMP threads sleep instead of spinning against the other processes on the CPUs
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["TMPDIR"] = str(work)  # the steps' temporary files (checkpoints, images) go when the check ends
    if step.kind == "pytest":
        figures = work / "test-figures.jsonl"
        env.update(POSEAUG_CUDA_TEST_FIGURES=str(figures), CUBLAS_WORKSPACE_CONFIG=":4096:8")
        argv = [sys.executable, *PYTEST_ARGS, TEST_FILE]
        output = work / "pytest.out"
    else:
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", step.kind]
        argv += ["--params", json.dumps(step.params), "--result", str(result_file)]
        output = work / f"{step.name.replace(':', '-')}.out"
    record = {"name": step.name, "about": step.about, "timeout": round(limit, 1), "params": step.params}
    t0 = time.perf_counter()
    with open(output, "w") as out:
        child = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):  # the step's whole process group (its workers too)
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            rc = None
    record["seconds"] = round(time.perf_counter() - t0, 2)
    text = output.read_text(errors="replace")
    log.write(f"\n===== {step.name} (rc {rc}, {record['seconds']} s) =====\n{text}")
    log.flush()
    if step.kind == "pytest":
        record.update(pytest_record(text, rc, work / "test-figures.jsonl"))
    else:
        record.update(child_record(result_file, rc, text))
    if rc is None:
        record["status"] = "timeout"
        record["error"] = f"killed at its time limit of {limit:.0f} s; results up to then are kept"
    return record


def child_record(result_file: Path, rc: int | None, output: str) -> dict:
    data = json.loads(result_file.read_text()) if result_file.is_file() else {}
    record = {"result": data.get("result")}
    if rc == 0 and data.get("status") == "ok":
        record["status"] = "ok"
    else:
        record["status"] = "failed"
        record["error"] = data.get("error") or _tail(output)
    return record


OUTCOME_LINE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|XFAIL|XPASS|ERROR)\b")
SUMMARY_LINE = re.compile(r"^(FAILED|XFAIL|ERROR|SKIPPED|XPASS) (?:\[\d+\] )?(\S+?)(?::\d+)?(?: - |: )(.*)$")


def pytest_record(output: str, rc: int | None, figures: Path) -> dict:
    """Outcomes per test from ``pytest -v -rA`` (complete, or as far as it got), messages of the
    failed / xfailed / skipped ones, and the figures the tests recorded."""
    tests: dict[str, dict] = {}
    for line in output.splitlines():
        if m := OUTCOME_LINE.match(line):
            tests.setdefault(m.group(1), {"id": m.group(1)})["outcome"] = m.group(2).lower()
        elif m := SUMMARY_LINE.match(line):
            for test in tests.values():
                if test["id"] == m.group(2) or (m.group(1) == "SKIPPED" and test["id"].startswith(m.group(2))):
                    test.setdefault("message", m.group(3).strip()[:400])
    counts: dict[str, int] = {}
    for t in tests.values():
        counts[t.get("outcome", "unknown")] = counts.get(t.get("outcome", "unknown"), 0) + 1
    lines = figures.read_text().splitlines() if figures.is_file() else []
    result = {"counts": counts, "tests": list(tests.values()), "figures": [json.loads(x) for x in lines if x]}
    status = "ok" if rc == 0 and tests else "failed"
    record = {"status": status, "result": result}
    if status == "failed" and rc is not None:
        record["error"] = f"pytest exit {rc}: {counts}" if tests else _tail(output)
    return record


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# the whole check


def run_check(cfg: CheckConfig, log_line=print) -> dict:
    """Run every step of the plan within the budget; write and return the report (see the module docstring)."""
    cfg.validate()
    cfg.out.mkdir(parents=True, exist_ok=True)
    started, deadline = time.time(), time.perf_counter() + cfg.total_budget
    report: dict = {
        "format": FORMAT,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dry_run": cfg.dry_run,
        "budget_seconds": cfg.total_budget,
        "no_gpu": False,
        "steps": [],
    }
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp, open(cfg.out / "gpu_check.log", "w") as log:
        work = Path(tmp)
        env_step = Step("env", "env", {}, _timeout(cfg, "env", "env"), "machine, torch, CUDA, packages, methods")
        env = run_step(env_step, env_step.timeout, work, log)
        report["steps"].append(env)
        write_report(report, cfg.out)
        log_line(f"[gpu-check] env: {env['status']} in {env['seconds']} s")
        info = env.get("result") or {}
        device = "cpu" if cfg.dry_run else cfg.device
        no_gpu = not cfg.dry_run and cfg.device != "cpu" and not info.get("cuda_available")
        methods = info.get("methods") or list(FALLBACK_METHODS)
        report["no_gpu"] = no_gpu
        for step in plan(cfg, methods, device):
            left = deadline - time.perf_counter()
            if no_gpu:
                record = _skipped(step, "torch sees no CUDA device (use --dry-run, or --device cpu for full sizes)")
            elif left < min(20.0, step.timeout):
                record = _skipped(step, f"budget exhausted ({max(left, 0):.0f} s of {cfg.total_budget:.0f} s left)")
            else:
                record = run_step(step, min(step.timeout, left), work, log)
            report["steps"].append(record)
            report["seconds"] = round(time.time() - started, 1)
            write_report(report, cfg.out)  # after every step: a check killed from outside keeps its results
            log_line(f"[gpu-check] {step.name}: {record['status']} in {record.get('seconds', 0)} s")
    report["seconds"] = round(time.time() - started, 1)
    write_report(report, cfg.out)
    return report


def write_report(report: dict, out: Path) -> None:
    """gpu_check.json and gpu_check.md in ``out``, with the summary of the steps done so far."""
    from gpu_check_report import markdown, summarize

    report["summary"] = summarize(report)
    for name, text in (
        ("gpu_check.json", json.dumps(report, indent=1, default=str) + "\n"),
        ("gpu_check.md", markdown(report)),
    ):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)


def _skipped(step: Step, reason: str) -> dict:
    return {"name": step.name, "about": step.about, "status": "skipped", "reason": reason, "seconds": 0.0}


# ---------------------------------------------------------------------------------------------
# child mode and command line


def child_main(kind: str, params: str, result_file: str) -> int:
    """Run one step in this process, saving partial results as they come and the final one at the end."""
    from gpu_check_steps import STEPS

    path = Path(result_file)

    def save(status: str, result=None, error: str | None = None) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"status": status, "result": result, "error": error}, default=str))
        os.replace(tmp, path)

    latest: dict = {}

    def emit(partial: dict) -> None:
        latest.clear()
        latest.update(partial)
        save("partial", partial)

    values = json.loads(params)
    if values.get("threads"):
        import torch

        torch.set_num_threads(values["threads"])
    try:
        result = STEPS[kind](values, emit)
    except BaseException as e:  # the step's failure goes into the report, with what it had measured
        save("failed", latest or None, "".join(traceback.format_exception(e))[-3000:])
        traceback.print_exc()
        return 1
    save("ok", result)
    return 0


def _timeouts(text: str) -> dict[str, float]:
    try:
        return {k.strip(): float(v) for k, v in (item.split("=", 1) for item in text.split(",") if item.strip())}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected step=seconds[,step=seconds]") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python scripts/gpu_check.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny sizes (well under a minute)")
    p.add_argument(
        "--out", type=Path, default=REPO / "runs" / "gpu-check", help="report folder (default runs/gpu-check)"
    )
    p.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu (full sizes on the CPU: slow)")
    p.add_argument("--budget", type=float, help="seconds for the whole check (default 540; dry run 300)")
    p.add_argument("--only", default="", help="comma-separated steps or kinds to run, e.g. bench:patn,tests")
    p.add_argument("--timeout", type=_timeouts, default={}, help="per-step limits, e.g. tests=300,bench:pg2=60")
    p.add_argument("--compile", action="store_true", help="also time torch.compile in generators.bench (slow)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--params", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))  # gpu_check_steps / gpu_check_report beside this file
    args = build_parser().parse_args(argv)
    if args.child:
        return child_main(args.child, args.params, args.result)
    cfg = CheckConfig(
        out=args.out,
        dry_run=args.dry_run,
        device=args.device,
        budget=args.budget,
        only=tuple(s.strip() for s in args.only.split(",") if s.strip()),
        timeouts=args.timeout,
        compile=args.compile,
    )
    try:
        report = run_check(cfg)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from gpu_check_report import headline

    print("\n".join(headline(report)))
    print(f"[gpu-check] wrote {cfg.out / 'gpu_check.json'} and {cfg.out / 'gpu_check.md'}")
    return 1 if report["no_gpu"] or any(s["status"] in ("failed", "timeout") for s in report["steps"]) else 0


if __name__ == "__main__":
    sys.exit(main())
