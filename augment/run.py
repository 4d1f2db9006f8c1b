"""``python -m augment.run``: plan an augmented re-ID training set and generate it.

    python -m augment.run --method patn --portion 0.1                  # reduced set p=0.1, the rest generated
    python -m augment.run --method patn --portion 0.1 --target-poses kept
    python -m augment.run --portion 0.1 --no-generate                  # the reduced set alone ("None" rows)
    python -m augment.run --method patn --ratio 2                      # 2x: one generated image per real image
    python -m augment.run --method deform --poses-per-image 10         # Deformable GAN appendix protocol

With no ``--data``, the embedded dataset ``data/synth-market`` is used (rendered first if
absent), and with no ``--checkpoint`` the method's embedded-dataset checkpoint
``runs/generators/<method>-synth/checkpoints/latest.pt`` (trained first if absent: the
longest step of a first run, see the README). On real data a checkpoint must be given.

Output (``--out``, default ``runs/augment/<dataset>/<plan>``): a Market-1501-layout folder
(``bounding_box_train/`` with the kept real and the generated images, ``bounding_box_test/``
and ``query/`` linked to the real test split), ``plan.parquet``, ``manifest.parquet``,
``summary.json``, ``preview.png`` and ``market-annotation-train.csv``. Re-running the same
command resumes: rows already done (checked by hash) are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from augment.data.atomic import write_atomic
from augment.data.keypoints import find_keypoint_file, read_annotations
from augment.data.market import DatasetError, read_market
from augment.execute import (
    FAILED,
    GenerateStage,
    OutputLayout,
    RunIdentity,
    build_manifest,
    decode_stage,
    done_names,
    make_payloads,
    place_real_rows,
    prepare_output,
    read_records,
    write_manifest,
    write_preview,
    write_stage,
    write_train_annotations,
)
from augment.plan import REAL, PlanSpec, TrainIndex, make_plan, write_plan
from augment.synth import DEFAULT_OUT as DEFAULT_DATA
from augment.synth import embedded_dataset

DEFAULT_RUNS = Path("runs")


@dataclass
class ExecOptions:
    """How generated rows are executed (shared by all executors)."""

    checkpoint: Path
    out: Path
    batch_size: int = 32
    device: str | None = None  # None: CUDA when present, else CPU
    precision: str | None = None  # None (fp32), "bf16", "fp16"
    actors: int | None = None  # Ray: generator actors (default: one per GPU, or 1 on CPU)
    address: str | None = None  # Ray: cluster address; None starts a private local Ray


def run_local(payloads: list[dict], opts: ExecOptions) -> None:
    """In-process batched loop: decode, generate, write, one batch at a time."""
    from tqdm import tqdm

    stage = GenerateStage(opts.checkpoint, device=opts.device, precision=opts.precision)
    n = sum(len(p["output_name"]) for p in payloads)
    with tqdm(total=n, unit="img", desc="generate (local)") as bar:
        for p in payloads:
            write_stage(stage(decode_stage(p)), opts.out)
            bar.update(len(p["output_name"]))


def run_ray(payloads: list[dict], opts: ExecOptions) -> None:
    from cluster.ray_executor import run_plan_on_ray  # the cluster layer sits above this module

    return run_plan_on_ray(payloads, opts)


EXECUTORS: dict[str, Callable[[list[dict], ExecOptions], None]] = {"local": run_local, "ray": run_ray}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m augment.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    proto = p.add_mutually_exclusive_group(required=True)
    proto.add_argument("--portion", type=float, help="keep this portion p of the real training images (0 < p <= 1)")
    proto.add_argument("--ratio", type=int, help="2 or 3: all real images plus ratio-1 generated per real image")
    proto.add_argument("--poses-per-image", type=int, metavar="K", help="K generated images per real image")
    p.add_argument(
        "--target-poses",
        choices=["removed", "kept"],
        default="removed",
        help="with --portion: target pose of each generated image (default: the removed image's)",
    )
    p.add_argument("--no-generate", action="store_true", help="with --portion: write the reduced set alone")
    p.add_argument("--method", default="patn", help="generator method (default patn)")
    p.add_argument("--data", type=Path, help=f"Market-1501 root (default: the embedded dataset {DEFAULT_DATA})")
    p.add_argument("--keypoints", type=Path, help="folder with the community annotation CSVs (default: --data)")
    p.add_argument("--checkpoint", type=Path, help="generator checkpoint (default: the embedded-dataset one)")
    p.add_argument("--out", type=Path, help="output folder (default runs/augment/<dataset>/<plan>)")
    p.add_argument("--executor", choices=sorted(EXECUTORS), default="ray", help="ray (default) or local")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a private local Ray)")
    p.add_argument("--actors", type=int, help="Ray generator actors (default: one per GPU, else 1)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--seed", type=int, default=0, help="plan seed (default 0)")
    p.add_argument("--plan-only", action="store_true", help="write plan.parquet and its summary, generate nothing")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder made by another plan")
    p.add_argument(
        "--train-iterations",
        type=int,
        help="iterations when the default embedded-dataset checkpoint must be trained first",
    )
    return p


def spec_from_args(a: argparse.Namespace) -> PlanSpec:
    if a.seed < 0:
        raise SystemExit("error: --seed must be >= 0")
    if (a.target_poses != "removed" or a.no_generate) and a.portion is None:
        raise SystemExit("error: --target-poses and --no-generate go with --portion")
    if not a.no_generate:
        from generators.base import get_method

        try:
            get_method(a.method)
        except ValueError as e:
            raise SystemExit(f"error: --method: {e}") from None
    if a.portion is not None:
        return PlanSpec(
            "portion",
            portion=a.portion,
            target_poses=a.target_poses,
            generate=not a.no_generate,
            method=a.method,
            seed=a.seed,
        )
    if a.ratio is not None:
        if a.ratio < 2:
            raise SystemExit(f"error: --ratio must be >= 2, got {a.ratio}")
        return PlanSpec("ratio", per_image=a.ratio - 1, method=a.method, seed=a.seed)
    return PlanSpec("poses", per_image=a.poses_per_image, method=a.method, seed=a.seed)


def ensure_embedded_checkpoint(method: str, data: Path, iterations: int | None) -> Path:
    ckpt = DEFAULT_RUNS / "generators" / f"{method}-synth" / "checkpoints" / "latest.pt"
    if ckpt.is_file():
        return ckpt
    from generators.train import main as train_main

    argv = ["--method", method, "--data", str(data), "--preset", "synth", "--out", str(ckpt.parent.parent)]
    if iterations:
        argv += ["--iterations", str(iterations)]
    print(
        f"[augment] no {method} checkpoint for the embedded dataset at {ckpt}: training one "
        f"(python -m generators.train {' '.join(argv)})"
    )
    train_main(argv)
    if not ckpt.is_file():
        raise SystemExit(f"error: training did not produce {ckpt}")
    return ckpt


def steady_state(records: pd.DataFrame) -> tuple[float, int]:
    """(seconds, images) once the executor is up, from the shards' timestamps, whatever the executor:
    from the moment the first batch left the generator to the moment the last batch was written,
    and the images generated after that first batch. Start-up (generator loading, Ray's start) and
    shutdown are left out; a write stage that lags and catches up in a burst is not (the window ends
    at the last write, not the last generation)."""
    if records.empty:
        return 0.0, 0
    generated = records["generated_at"] if "generated_at" in records else records["finished_at"]
    batches = (
        records.assign(generated_at=generated)
        .groupby("batch_id")
        .agg(g=("generated_at", "min"), t=("finished_at", "max"), n=("output_name", "size"))
        .sort_values("g")
    )
    return float(batches["t"].max() - batches["g"].iloc[0]), int(batches["n"].iloc[1:].sum())


def check_checkpoint(path: Path, method: str, dataset_fingerprint: str) -> str:
    """Refuse, before any work, a missing, corrupt or other-method checkpoint; returns its content hash."""
    from generators.checkpoint import CheckpointError, read_checkpoint

    try:
        info = read_checkpoint(path)
    except CheckpointError as e:
        raise SystemExit(f"error: --checkpoint {e}") from None
    if info["method"] != method:
        raise SystemExit(
            f"error: --checkpoint {path} holds a {info['method']!r} generator but --method is "
            f"{method!r}; pass --method {info['method']}"
        )
    trained_on = info.get("dataset_fingerprint")
    if trained_on and trained_on != dataset_fingerprint:
        print(f"[augment] note: {path} was trained on dataset {trained_on}, this dataset is {dataset_fingerprint}")
    return str(info["content_hash"])[:16]


def run(argv: list[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    spec = spec_from_args(a)
    try:
        spec.validate()
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if a.batch_size < 1:
        raise SystemExit("error: --batch-size must be >= 1")
    t0 = time.perf_counter()

    # data and keypoints: all checked before any work
    data = a.data if a.data is not None else embedded_dataset()
    dataset = read_market(data)
    annotations = read_annotations(find_keypoint_file(data, "annotation", "train", a.keypoints))
    index = TrainIndex.from_dataset(dataset, annotations)
    plan = make_plan(index, spec)
    out = a.out or DEFAULT_RUNS / "augment" / Path(data).resolve().name / spec.name()

    needs_model = spec.generate and not a.plan_only and len(plan.generated()) > 0
    checkpoint, checkpoint_hash = None, ""
    if needs_model:
        if a.checkpoint is not None:
            checkpoint = a.checkpoint
        elif a.data is None:
            checkpoint = ensure_embedded_checkpoint(a.method, data, a.train_iterations)
        else:
            raise SystemExit(
                f"error: --checkpoint is required with --data (train one: python -m generators.train "
                f"--method {a.method} --data {data} --preset market --out DIR)"
            )
        checkpoint_hash = check_checkpoint(checkpoint, spec.method, index.fingerprint)
    identity = RunIdentity(plan.plan_hash(), checkpoint_hash, spec.method if spec.generate else "", index.fingerprint)
    layout = OutputLayout(Path(out))
    if a.plan_only:
        layout.root.mkdir(parents=True, exist_ok=True)
        write_plan(plan, layout.plan_path)
        print(json.dumps(plan.summary, indent=1))
        print(f"[augment] plan: {layout.plan_path} ({len(plan.table)} rows)")
        return plan.summary
    stale = prepare_output(plan, dataset, layout, identity, overwrite=a.overwrite)

    # real rows: linked, idempotent; generated rows: only those not done yet
    real = plan.table[plan.table["kind"] == REAL]
    real_records = place_real_rows(real, dataset, layout)
    gen = plan.generated()
    already = done_names(layout) & set(gen["output_name"])
    todo = gen[~gen["output_name"].isin(already)]
    payloads = make_payloads(todo, dataset, a.batch_size)
    opts = ExecOptions(
        checkpoint=checkpoint,
        out=layout.root,
        batch_size=a.batch_size,
        device=None if a.device == "auto" else a.device,
        precision=None if a.precision == "fp32" else a.precision,
        actors=a.actors,
        address=a.address or os.environ.get("RAY_ADDRESS"),
    )
    t_gen = time.perf_counter()
    t_wall = time.time()
    if payloads:
        print(
            f"[augment] {len(todo)} images to generate ({len(already)} already done) "
            f"with {a.method} on the {a.executor} executor"
        )
        EXECUTORS[a.executor](payloads, opts)
    gen_seconds = time.perf_counter() - t_gen

    # manifest, annotations, preview, summary: rebuilt from the plan and the shards
    records = read_records(layout)
    steady_seconds, steady_images = steady_state(records[records["finished_at"] >= t_wall])
    records = records[records["output_name"].isin(done_names(layout, records)) | (records["status"] == FAILED)]
    manifest = build_manifest(plan, pd.concat([real_records, records], ignore_index=True), identity)
    write_manifest(manifest, layout)
    write_train_annotations(manifest, layout)
    preview = write_preview(manifest, dataset, layout, seed=spec.seed)
    status = manifest.groupby(["kind", "status"]).size()
    summary = {
        "out": str(layout.root),
        "plan": plan.summary,
        "executor": a.executor,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_hash": identity.checkpoint_hash,
        "rows": {f"{k}_{s}": int(v) for (k, s), v in status.items()},
        "generated_this_run": len(todo),
        "already_done": len(already),
        "failed": manifest.loc[manifest["status"] == FAILED, ["output_name", "reason"]].to_dict("records")[:20],
        "stale_temporary_files_removed": stale,
        "generate_seconds": round(gen_seconds, 2),
        "executor_overhead_seconds": round(gen_seconds - steady_seconds, 2),  # start-up and shutdown
        # images/s once the executor is up (generator loaded; Ray started), decode to file
        "generated_images_per_second": (
            round(steady_images / steady_seconds, 2) if steady_images > 0 and steady_seconds > 0 else None
        ),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "paths": {
            "train": str(layout.train_dir),
            "manifest": str(layout.manifest_path),
            "plan": str(layout.plan_path),
            "preview": str(preview) if preview else None,
        },
    }
    write_atomic(layout.summary_path, json.dumps(summary, indent=1).encode())
    print_report(summary)
    n_failed = int((manifest["status"] == FAILED).sum())
    if n_failed:
        print(
            f"[augment] {n_failed} rows failed (reasons in {layout.manifest_path}); re-run to retry them",
            file=sys.stderr,
        )
    return summary


def print_report(s: dict) -> None:
    p = s["plan"]
    print(f"[augment] {p['plan_name']}: {p['train_images']} real train images, {p['train_identities']} identities")
    print(f"  output rows: {s['rows']}")
    skipped = {k: v for k, v in p["skipped_generated"].items() if v}
    print(f"  not planned (keypoint policy): {skipped or 'none'}; images not poseable: {p['images_not_poseable']}")
    print(
        f"  generated this run: {s['generated_this_run']} (already done: {s['already_done']}); "
        f"{s['generated_images_per_second'] or '-'} img/s; total {s['total_seconds']} s"
    )
    for k, v in s["paths"].items():
        if v:
            print(f"  {k:9s} {v}")
    print(f"  summary   {Path(s['out']) / 'summary.json'}")


def main(argv: list[str] | None = None) -> None:
    try:
        run(argv)
    except DatasetError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
