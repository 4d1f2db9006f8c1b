"""The summary and the Markdown report of ``scripts/gpu_check.py`` (from its JSON report dict).

The summary answers the issue's two goals: PATN ``market`` images/s at its best batch against 8,000/s on
an H200 (about 45% of the 790 TFLOP/s bf16 measured there, at 45 GFLOPs per image), and how many CPU cores
the service's decode + write stages need to keep that rate (cores = images/s x CPU seconds per image).
"""

from __future__ import annotations

GOAL_IMAGES_PER_SECOND = 8000
PEAK_BF16_TFLOPS = 790  # dense bf16 matrix products measured on the lent H200
WHEELS = (
    "torchreid-0.2.5-py3-none-any.whl, gdown-6.5.1-py3-none-any.whl, beautifulsoup4-4.15.0-py3-none-any.whl, "
    "soupsieve-4.1.3-py3-none-any.whl (all pure Python; see docs/gpu-check.md)"
)


def _steps(report: dict) -> dict[str, dict]:
    return {s["name"]: s for s in report["steps"]}


def _result(report: dict, name: str) -> dict:
    return (_steps(report).get(name) or {}).get("result") or {}


def best_rate(bench_result: dict) -> dict | None:
    """The fastest agreeing fast-path rate of a bench step: over generators.bench's batches and the probe."""
    bench = bench_result.get("bench") or {}
    rows = [
        {"images_per_second": f["images_per_second"], "batch": int(b), "variant": f["variant"], "from": "bench"}
        for b, f in (bench.get("fast_path") or {}).items()
        if f.get("images_per_second")
    ]
    probe = bench_result.get("probe") or {}
    rows += [
        {"images_per_second": r["images_per_second"], "batch": r["batch"], "variant": probe["variant"], "from": "probe"}
        for r in probe.get("rows", [])
        if "error" not in r
    ]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["images_per_second"])
    gflops = bench.get("gflops_per_image")
    if gflops:
        best["tflops"] = round(best["images_per_second"] * gflops / 1000, 1)
        best["fraction_of_peak"] = round(best["tflops"] / PEAK_BF16_TFLOPS, 3)
    return best


def summarize(report: dict) -> dict:
    """Goal figures, cores to feed the GPU, and which steps did not run cleanly."""
    summary: dict = {
        "dry_run": report["dry_run"],
        "not_ok": {s["name"]: s["status"] for s in report["steps"] if s["status"] != "ok"},
    }
    patn = best_rate(_result(report, "bench:patn"))
    summary["patn_best"] = patn
    if patn:
        summary["goal"] = {
            "images_per_second": GOAL_IMAGES_PER_SECOND,
            "met": patn["images_per_second"] >= GOAL_IMAGES_PER_SECOND,
            "ratio": round(patn["images_per_second"] / GOAL_IMAGES_PER_SECOND, 3),
        }
    feed = _result(report, "cpu_feed")
    stage_rows = _result(report, "gpu_stage").get("rows") or []
    stage = max(stage_rows, key=lambda r: r["images_per_second"], default=None)
    if feed.get("cpu_seconds_per_image"):
        per_image = feed["cpu_seconds_per_image"]
        cores = {"decode_write_cpu_seconds_per_image": per_image, "cpus_here": feed.get("cpus")}
        if patn:
            cores["at_patn_best"] = round(patn["images_per_second"] * per_image, 3)
        if stage:
            cores["gpu_stage_best"] = {k: stage[k] for k in ("runner", "precision", "payload", "images_per_second")}
            cores["at_gpu_stage_best"] = round(stage["images_per_second"] * per_image, 3)
            # the generator process's own host work (copies, uint8 conversion, launches), beside decode + write
            cores["gpu_stage_process_cores"] = round(stage["images_per_second"] * stage["cpu_seconds_per_image"], 2)
        summary["cores_to_feed"] = cores
    return summary


# ---------------------------------------------------------------------------------------------
# Markdown


def _f(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]


def headline(report: dict) -> list[str]:
    """The few lines that answer the issue: the goal, the cores, what did not run."""
    s = report.get("summary") or {}
    env = _result(report, "env")
    gpu = (env.get("gpu") or {}).get("name") or ("the CPU" if report["dry_run"] else "no GPU")
    lines = [f"GPU check {report['started']} on {gpu} (torch {env.get('torch', '?')}), {report.get('seconds')} s"]
    if report["dry_run"]:
        lines.append("DRY RUN: every step on the CPU at tiny sizes; the figures below are not GPU figures.")
    if report.get("no_gpu"):
        lines.append("torch sees no CUDA device: no step ran.")
    patn = s.get("patn_best")
    if patn:
        goal = s["goal"]
        verdict = (
            "dry run: no goal check"
            if report["dry_run"]
            else f"goal {GOAL_IMAGES_PER_SECOND:,}/s {'met' if goal['met'] else 'NOT met'} ({goal['ratio']:.2f}x)"
        )
        lines.append(
            f"PATN {'synth' if report['dry_run'] else 'market'}: {_f(patn['images_per_second'])} images/s at batch "
            f"{patn['batch']} ({patn['variant']}; {_f(patn.get('tflops'))} TFLOP/s = "
            f"{_f(100 * (patn.get('fraction_of_peak') or 0))}% of {PEAK_BF16_TFLOPS}); {verdict}"
        )
    cores = s.get("cores_to_feed")
    if cores:
        parts = []
        if "at_patn_best" in cores:
            parts.append(f"{_f(cores['at_patn_best'])} cores at the PATN best rate")
        if "at_gpu_stage_best" in cores:
            parts.append(
                f"{_f(cores['at_gpu_stage_best'])} at the service's GPU stage rate "
                f"(+{_f(cores['gpu_stage_process_cores'], 2)} for the generator process itself)"
            )
        per_image = 1000 * cores["decode_write_cpu_seconds_per_image"]
        lines.append(f"CPU to feed it: decode + write {per_image:.2f} CPU ms/image -> " + (", ".join(parts) or "-"))
    for name, status in s.get("not_ok", {}).items():
        step = _steps(report)[name]
        why = step.get("reason") or (step.get("error") or "").strip().splitlines()[-1:] or [""]
        lines.append(f"{name}: {status.upper()}: {why if isinstance(why, str) else why[0]}"[:300])
    return lines


def markdown(report: dict) -> str:
    env = _result(report, "env")
    gpu = env.get("gpu") or {}
    title = f"# GPU check: {gpu.get('name') or 'CPU (dry run)' if report['dry_run'] else gpu.get('name', 'no GPU')}"
    lines = [title, "", *[f"- {line}" for line in headline(report)], "", "## Steps", ""]
    rows = []
    for s in report["steps"]:
        note = s.get("reason") or (s.get("error") or "").strip().splitlines()[-1:] or [""]
        rows.append(
            [
                s["name"],
                s["status"],
                s.get("seconds"),
                s.get("about", ""),
                (note if isinstance(note, str) else note[0])[:160],
            ]
        )
    lines += _table(["step", "status", "seconds", "what", "note"], rows)
    for section in (
        _bench_section,
        _stage_section,
        _feed_section,
        _tests_section,
        _metrics_section,
        _reid_section,
        _env_section,
    ):
        lines += ["", *section(report)]
    return "\n".join(lines) + "\n"


def _bench_section(report: dict) -> list[str]:
    rows, probes = [], []
    for step in report["steps"]:
        if not step["name"].startswith("bench:") or not step.get("result"):
            continue
        b = step["result"].get("bench") or {}
        by_batch: dict[int, dict] = {}
        for t in b.get("timings", []):
            by_batch.setdefault(t["batch"], {})[t["variant"]] = t
        for batch, variants in sorted(by_batch.items()):
            eager = variants.get("eager fp32", {})
            for name, t in variants.items():
                if name == "eager fp32":
                    continue
                diff = "-" if t.get("max_abs_diff") is None else f"{t['max_abs_diff']:.3f} / {t['mean_abs_diff']:.4f}"
                agrees = {True: "yes", False: "NO", None: "-"}[t.get("agrees")]
                rows.append(
                    [
                        b["method"],
                        batch,
                        eager.get("images_per_second"),
                        name,
                        t.get("images_per_second"),
                        t.get("vs_eager"),
                        diff,
                        agrees,
                    ]
                )
        probe = step["result"].get("probe") or {}
        for r in probe.get("rows", []):
            probes.append(
                [
                    b.get("method", step["name"]),
                    r["batch"],
                    r.get("images_per_second"),
                    r.get("peak_memory_gib"),
                    r.get("error", ""),
                ]
            )
        if probe:
            probes.append(
                [b.get("method", step["name"]), "largest", probe.get("largest_batch"), "-", probe.get("stopped") or ""]
            )
    out = ["## Generators: `generators.bench` (eager fp32 vs fast path)", ""]
    out += _table(
        ["method", "batch", "eager fp32 img/s", "fast variant", "img/s", "x eager", "max / mean diff", "agrees"], rows
    )
    out += ["", "Fast path at doubling batches (channels-last, native autocast):", ""]
    return out + _table(["method", "batch", "img/s", "peak GiB", "stopped by"], probes)


def _stage_section(report: dict) -> list[str]:
    r = _result(report, "gpu_stage")
    rows = [
        [x["precision"], x["payload"], x["runner"], x["images_per_second"], 1000 * x["cpu_seconds_per_image"]]
        for x in r.get("rows", [])
    ]
    out = [f"## Service GPU stage alone ({r.get('method', '-')}/{r.get('preset', '-')}, decode excluded)", ""]
    return out + _table(["precision", "payload", "runner", "img/s", "process CPU ms/img"], rows)


def _feed_section(report: dict) -> list[str]:
    r = _result(report, "cpu_feed")
    if not r:
        return ["## Service CPU stages", "", "(no result)"]
    ms = lambda key: f"{1000 * r[key]:.3f}"  # noqa: E731
    return [
        f"## Service CPU stages ({r['images']} images of the embedded dataset, batch {r['batch']}, {r['cpus']} CPUs)",
        "",
        *_table(
            ["stage", "CPU ms/img", "wall ms/img"],
            [
                ["decode_stage", ms("decode_cpu_seconds_per_image"), ms("decode_wall_seconds_per_image")],
                ["write_stage", ms("write_cpu_seconds_per_image"), ms("write_wall_seconds_per_image")],
            ],
        ),
    ]


def _tests_section(report: dict) -> list[str]:
    r = _result(report, "tests")
    out = ["## CUDA tests (`pytest -m cuda tests/test_cuda.py`)", "", f"Outcomes: {r.get('counts', {})}", ""]
    groups: dict[tuple[str, str], list[str]] = {}
    for t in r.get("tests", []):
        if t.get("outcome") != "passed":
            key = (t.get("outcome", "?"), t.get("message", "") if t.get("outcome") == "skipped" else t["id"])
            groups.setdefault(key, []).append(t["id"])
    for (outcome, what), ids in groups.items():
        message = next((t.get("message", "") for t in r["tests"] if t["id"] == ids[0]), "")
        out.append(f"- {outcome} x{len(ids)}: {what}" if outcome == "skipped" else f"- {outcome}: {what}: {message}")
    infer = [f for f in r.get("figures", []) if f["kind"] == "inference"]
    if infer:
        rows = []
        for f in infer:
            a = f["agreement"]
            rows.append(
                [f["method"], f"{f['output_std']:.3f}"]
                + [
                    f"{a[p]['mean']:.2f} / {a[p]['p99.9']:.0f} / {a[p]['max']:.0f}" if p in a else "-"
                    for p in ("fp32", "fp16", "bf16")
                ]
            )
        out += ["", "Inference vs contiguous fp32 (grey levels: mean / p99.9 / max):", ""]
        out += _table(["method", "output std", "fp32 channels-last", "fp16", "bf16"], rows)
    train = [f for f in r.get("figures", []) if f["kind"] == "training"]
    if train:
        rows = [
            [
                f["method"],
                f["amp"],
                f["tensors"],
                f["unequal"],
                f"{f['max_abs_diff']:.3g}",
                f"{f.get('control_unequal', '-')} / {f.get('control_max_abs_diff', float('nan')):.3g}",
                "; ".join(f["nondeterministic_ops"]) or "-",
            ]
            for f in train
        ]
        out += ["", "AMP training, resumed vs uninterrupted (control: a second uninterrupted run):", ""]
        header = ["method", "amp", "tensors", "differing", "max diff", "control: differing / max diff"]
        out += _table(header + ["ops without a deterministic kernel"], rows)
    return out


def _metrics_section(report: dict) -> list[str]:
    r = _result(report, "metrics")
    if not r:
        return ["## CMC / mAP on the device", "", "(no result)"]
    rows = [[k, f"{1000 * v:.1f}"] for k, v in r.items() if k.startswith("evaluate_")]
    rows.append(["evaluate_rank on the CPU (numpy)", f"{1000 * r['cpu_seconds']:.1f}"])
    out = [f"## CMC / mAP on the device ({r['queries']:,} x {r['gallery']:,}, {r['ids']} ids, {r['device']})", ""]
    out += _table(["call", "ms"], rows)
    if "cmc_equal" in r:
        out += ["", f"CMC equal to the CPU: {r['cmc_equal']}; |mAP diff| {r['map_abs_diff']:.2e}"]
        out += [f"Rank-1 {r['rank1']:.4f}, mAP {r['mAP']:.4f} (random features: only the equality matters)"]
    return out


def _reid_section(report: dict) -> list[str]:
    r = _result(report, "reid_train")
    rows = [
        [
            x["model"],
            x.get("built_by", "-"),
            "x".join(map(str, x["input"])),
            x["batch"],
            x.get("precision", "-"),
            x.get("images_per_second"),
            x.get("ms_per_step"),
            x.get("peak_memory_gib"),
            x.get("error", ""),
        ]
        for x in r.get("rows", [])
    ]
    out = ["## Re-ID training step (forward + backward + SGD)", ""]
    out += _table(["model", "network", "input", "batch", "precision", "img/s", "ms/step", "peak GiB", "error"], rows)
    return out + [f"- {n}" for n in r.get("notes", [])]


def _env_section(report: dict) -> list[str]:
    env = _result(report, "env")
    packages = env.get("packages") or {}
    missing = sorted(k for k, v in packages.items() if v is None)
    out = ["## Environment", ""]
    for key in ("python", "torch", "cuda", "cudnn", "cudnn_allow_tf32", "cpus", "commit", "gpu", "nvidia_smi"):
        value = env.get(key)
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        if value is not None:
            out.append(f"- {key}: {value}")
    out.append(f"- packages: {', '.join(f'{k} {v}' for k, v in packages.items() if v)}")
    out.append(f"- not installed: {', '.join(missing) or 'none'}")
    if "torchreid" in missing:
        out.append(
            f"- torchreid missing: ResNet-50 timed as torchvision's with Open-ReID's head. To carry it: {WHEELS}"
        )
    return out
