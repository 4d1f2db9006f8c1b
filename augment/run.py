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

As a library: ``run_augmentation(PlanSpec(...), RunOptions(...), executor) -> RunSummary``, where the
executor is ``augment.execute.LOCAL_EXECUTOR`` (the default) or ``cluster.ray_executor.RAY_EXECUTOR``;
it raises UsageError (naming the flag), DatasetError or CheckpointError. Only :func:`main` reaches up
to the cluster layer (``--executor ray``) and turns those errors into ``error: ...`` and status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from augment.data.atomic import write_atomic
from augment.data.keypoints import find_keypoint_file, read_annotations
from augment.data.market import DatasetError, MarketDataset, read_market
from augment.execute import (
    FAILED,
    LOCAL_EXECUTOR,
    ExecOptions,
    Executor,
    OutputLayout,
    RunIdentity,
    build_manifest,
    done_names,
    make_payloads,
    place_real_rows,
    prepare_output,
    read_records,
    write_manifest,
    write_preview,
    write_train_annotations,
)
from augment.plan import REAL, Plan, PlanSpec, TrainIndex, make_plan, write_plan
from augment.runtime import UsageError
from augment.synth import DEFAULT_OUT as DEFAULT_DATA
from augment.synth import embedded_dataset

DEFAULT_RUNS = Path("runs")
EXECUTOR_NAMES = ("local", "ray")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")


# ---------------------------------------------------------------------------------------------
# typed arguments and result


@dataclass(frozen=True)
class RunOptions:
    """Where a plan's inputs are, where its output goes and how it runs (all but the plan spec)."""

    data: Path | None = None  # Market-1501 root; None: the embedded dataset (rendered first if absent)
    keypoints: Path | None = None  # folder of the community annotation CSVs; None: data
    checkpoint: Path | None = None  # None: the embedded dataset's checkpoint (trained if absent); required with data
    out: Path | None = None  # None: runs/augment/<dataset>/<plan name>
    batch_size: int = 32
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 | fp16
    actors: int | None = None  # Ray generator actors (None: one per GPU, else 1)
    address: str | None = None  # Ray cluster address (None: RAY_ADDRESS, else a private local Ray)
    plan_only: bool = False  # write plan.parquet and its summary, generate nothing
    overwrite: bool = False  # replace an output folder made by another plan, checkpoint or dataset
    train_iterations: int | None = None  # iterations when the embedded-dataset checkpoint must be trained

    def validate(self) -> None:
        if self.batch_size < 1:
            raise UsageError("--batch-size", f"must be >= 1, got {self.batch_size}")
        if self.device not in DEVICES:
            raise UsageError("--device", f"{self.device!r} is not one of {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise UsageError("--precision", f"{self.precision!r} is not one of {', '.join(PRECISIONS)}")


@dataclass
class RunSummary:
    """What a run did; written as ``summary.json`` (field order = key order)."""

    out: str
    plan: dict  # the plan's summary (augment.plan)
    executor: str
    checkpoint: str | None
    checkpoint_hash: str
    rows: dict  # "<kind>_<status>" -> rows of the manifest
    generated_this_run: int
    already_done: int
    failed: list  # up to 20 {"output_name", "reason"}
    stale_temporary_files_removed: int
    generate_seconds: float
    executor_overhead_seconds: float  # start-up and shutdown
    generated_images_per_second: float | None  # once the executor is up (generator loaded; Ray started)
    total_seconds: float
    paths: dict

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()


@dataclass(frozen=True)
class _Inputs:
    """The resolved dataset: its root, its index and the planner's view of its training split."""

    data: Path
    dataset: MarketDataset
    index: TrainIndex


@dataclass(frozen=True)
class _Generation:
    """What the generate phase did."""

    todo: int  # rows generated this run
    already: int  # rows found done (file with the recorded hash)
    seconds: float
    started_wall: float  # time.time() when it started: shards written after it belong to this run


@dataclass(frozen=True)
class _Run:
    """What the phases after planning share."""

    opts: RunOptions
    executor: Executor
    inputs: _Inputs
    plan: Plan
    layout: OutputLayout
    checkpoint: Path | None
    identity: RunIdentity


# ---------------------------------------------------------------------------------------------
# phases


def _method(name: str):
    from generators.base import get_method

    return get_method(name)


def check_spec(spec: PlanSpec) -> None:
    """The plan spec's own checks, plus: a generating plan's method is a registered one."""
    spec.validate()
    if spec.generate:
        from generators.base import get_method

        try:
            get_method(spec.method)
        except ValueError as e:
            raise UsageError("--method", str(e)) from None


def resolve_inputs(opts: RunOptions) -> _Inputs:
    """Dataset and keypoints, all checked before any work (DatasetError names the file)."""
    data = opts.data if opts.data is not None else embedded_dataset()
    dataset = read_market(data)
    annotations = read_annotations(find_keypoint_file(data, "annotation", "train", opts.keypoints))
    return _Inputs(Path(data), dataset, TrainIndex.from_dataset(dataset, annotations))


def ensure_embedded_checkpoint(method: str, data: Path, iterations: int | None) -> Path:
    """The method's embedded-dataset checkpoint, trained first (generators.train) when absent."""
    ckpt = DEFAULT_RUNS / "generators" / f"{method}-synth" / "checkpoints" / "latest.pt"
    if ckpt.is_file():
        return ckpt
    from generators.checkpoint import CheckpointError
    from generators.train import RunConfig, train

    config = RunConfig(out=ckpt.parent.parent, method=method, data=data, preset="synth", iterations=iterations)
    argv = ["--method", method, "--data", str(data), "--preset", "synth", "--out", str(config.out)]
    argv += ["--iterations", str(iterations)] if iterations else []
    print(
        f"[augment] no {method} checkpoint for the embedded dataset at {ckpt}: training one "
        f"(python -m generators.train {' '.join(argv)})"
    )
    train(config)
    if not ckpt.is_file():
        raise CheckpointError(f"{ckpt}: training did not produce it")
    return ckpt


def untrained_checkpoint(method: str) -> Path:
    """The checkpoint of a method with nothing to train (its config alone), written once."""
    from generators.base import build
    from generators.checkpoint import save

    ckpt = DEFAULT_RUNS / "generators" / method / "checkpoints" / "latest.pt"
    if not ckpt.is_file():
        save(ckpt, build(method, "synth"), iteration=0)
    return ckpt


def check_checkpoint(path: Path, method: str, dataset_fingerprint: str) -> str:
    """Refuse, before any work, a missing, corrupt or other-method checkpoint; returns its content hash."""
    from generators.checkpoint import CheckpointError, read_checkpoint

    try:
        info = read_checkpoint(path)
    except CheckpointError as e:
        raise UsageError("--checkpoint", str(e)) from None
    if info["method"] != method:
        raise UsageError(
            "--checkpoint",
            f"{path} holds a {info['method']!r} generator but --method is {method!r}; pass --method {info['method']}",
        )
    trained_on = info.get("dataset_fingerprint")
    if trained_on and trained_on != dataset_fingerprint:
        print(f"[augment] note: {path} was trained on dataset {trained_on}, this dataset is {dataset_fingerprint}")
    return str(info["content_hash"])[:16]


def resolve_checkpoint(spec: PlanSpec, opts: RunOptions, plan: Plan, inputs: _Inputs) -> tuple[Path | None, str]:
    """(checkpoint, content hash) when the plan generates images in this run, else (None, "")."""
    if not (spec.generate and not opts.plan_only and len(plan.generated()) > 0):
        return None, ""
    if opts.checkpoint is not None:
        checkpoint = opts.checkpoint
    elif not _method(spec.method).trainable:  # e.g. the copy control: nothing to train, on any dataset
        checkpoint = untrained_checkpoint(spec.method)
    elif opts.data is None:
        checkpoint = ensure_embedded_checkpoint(spec.method, inputs.data, opts.train_iterations)
    else:
        raise UsageError(
            "--checkpoint",
            f"required with --data (train one: python -m generators.train --method {spec.method} "
            f"--data {inputs.data} --preset market --out DIR)",
        )
    return checkpoint, check_checkpoint(checkpoint, spec.method, inputs.index.fingerprint)


def write_plan_only(plan: Plan, layout: OutputLayout, executor: Executor) -> RunSummary:
    layout.root.mkdir(parents=True, exist_ok=True)
    write_plan(plan, layout.plan_path)
    print(json.dumps(plan.summary, indent=1))
    print(f"[augment] plan: {layout.plan_path} ({len(plan.table)} rows)")
    return RunSummary(
        out=str(layout.root),
        plan=plan.summary,
        executor=executor.name,
        checkpoint=None,
        checkpoint_hash="",
        rows={},
        generated_this_run=0,
        already_done=0,
        failed=[],
        stale_temporary_files_removed=0,
        generate_seconds=0.0,
        executor_overhead_seconds=0.0,
        generated_images_per_second=None,
        total_seconds=0.0,
        paths={"plan": str(layout.plan_path)},
    )


def generate(run: _Run) -> _Generation:
    """Run the generated rows not done yet (plan order, cut into batches) on the run's executor."""
    opts, layout = run.opts, run.layout
    gen = run.plan.generated()
    already = done_names(layout) & set(gen["output_name"])
    todo = gen[~gen["output_name"].isin(already)]
    payloads = make_payloads(todo, run.inputs.dataset, opts.batch_size)
    exec_opts = ExecOptions(
        checkpoint=run.checkpoint,
        out=layout.root,
        batch_size=opts.batch_size,
        device=None if opts.device == "auto" else opts.device,
        precision=None if opts.precision == "fp32" else opts.precision,
        actors=opts.actors,
        address=opts.address or os.environ.get("RAY_ADDRESS"),
    )
    t_gen, t_wall = time.perf_counter(), time.time()
    if payloads:
        print(
            f"[augment] {len(todo)} images to generate ({len(already)} already done) "
            f"with {run.plan.spec.method} on the {run.executor.name} executor"
        )
        run.executor(payloads, exec_opts)
    return _Generation(len(todo), len(already), time.perf_counter() - t_gen, t_wall)


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


def write_records(
    run: _Run, real_records: pd.DataFrame, started_wall: float
) -> tuple[pd.DataFrame, Path | None, tuple[float, int]]:
    """Manifest, train annotations and preview, rebuilt from the plan and the shards.

    Returns (manifest, preview path or None, this run's steady-state (seconds, images)).
    """
    layout = run.layout
    records = read_records(layout)
    steady = steady_state(records[records["finished_at"] >= started_wall])
    records = records[records["output_name"].isin(done_names(layout, records)) | (records["status"] == FAILED)]
    manifest = build_manifest(run.plan, pd.concat([real_records, records], ignore_index=True), run.identity)
    write_manifest(manifest, layout)
    write_train_annotations(manifest, layout)
    preview = write_preview(manifest, run.inputs.dataset, layout, seed=run.plan.spec.seed)
    return manifest, preview, steady


def summarize(
    run: _Run,
    manifest: pd.DataFrame,
    preview: Path | None,
    gen: _Generation,
    steady: tuple[float, int],
    stale: int,
    t0: float,
) -> RunSummary:
    layout, (steady_seconds, steady_images) = run.layout, steady
    status = manifest.groupby(["kind", "status"]).size()
    return RunSummary(
        out=str(layout.root),
        plan=run.plan.summary,
        executor=run.executor.name,
        checkpoint=str(run.checkpoint) if run.checkpoint else None,
        checkpoint_hash=run.identity.checkpoint_hash,
        rows={f"{k}_{s}": int(v) for (k, s), v in status.items()},
        generated_this_run=gen.todo,
        already_done=gen.already,
        failed=manifest.loc[manifest["status"] == FAILED, ["output_name", "reason"]].to_dict("records")[:20],
        stale_temporary_files_removed=stale,
        generate_seconds=round(gen.seconds, 2),
        executor_overhead_seconds=round(gen.seconds - steady_seconds, 2),
        generated_images_per_second=(
            round(steady_images / steady_seconds, 2) if steady_images > 0 and steady_seconds > 0 else None
        ),
        total_seconds=round(time.perf_counter() - t0, 2),
        paths={
            "train": str(layout.train_dir),
            "manifest": str(layout.manifest_path),
            "plan": str(layout.plan_path),
            "preview": str(preview) if preview else None,
        },
    )


def print_report(s: RunSummary) -> None:
    p = s.plan
    print(f"[augment] {p['plan_name']}: {p['train_images']} real train images, {p['train_identities']} identities")
    print(f"  output rows: {s.rows}")
    skipped = {k: v for k, v in p["skipped_generated"].items() if v}
    print(f"  not planned (keypoint policy): {skipped or 'none'}; images not poseable: {p['images_not_poseable']}")
    print(
        f"  generated this run: {s.generated_this_run} (already done: {s.already_done}); "
        f"{s.generated_images_per_second or '-'} img/s; total {s.total_seconds} s"
    )
    for k, v in s.paths.items():
        if v:
            print(f"  {k:9s} {v}")
    print(f"  summary   {Path(s.out) / 'summary.json'}")


# ---------------------------------------------------------------------------------------------
# the library function


def run_augmentation(spec: PlanSpec, opts: RunOptions, executor: Executor = LOCAL_EXECUTOR) -> RunSummary:
    """Plan ``spec`` on the dataset of ``opts`` and generate it with ``executor``; see the module docstring.

    Raises UsageError (naming the flag), DatasetError and CheckpointError before any work where it can;
    re-running the same call resumes (rows done, checked by hash, are skipped).
    """
    t0 = time.perf_counter()
    check_spec(spec)
    opts.validate()
    inputs = resolve_inputs(opts)
    plan = make_plan(inputs.index, spec)
    layout = OutputLayout(Path(opts.out or DEFAULT_RUNS / "augment" / inputs.data.resolve().name / spec.name()))
    checkpoint, checkpoint_hash = resolve_checkpoint(spec, opts, plan, inputs)
    method = spec.method if spec.generate else ""
    identity = RunIdentity(plan.plan_hash(), checkpoint_hash, method, inputs.index.fingerprint)
    if opts.plan_only:
        return write_plan_only(plan, layout, executor)
    run = _Run(opts, executor, inputs, plan, layout, checkpoint, identity)
    stale = prepare_output(plan, inputs.dataset, layout, identity, overwrite=opts.overwrite)
    # real rows: linked, idempotent; generated rows: only those not done yet
    real_records = place_real_rows(plan.table[plan.table["kind"] == REAL], inputs.dataset, layout)
    gen = generate(run)
    manifest, preview, steady = write_records(run, real_records, gen.started_wall)
    summary = summarize(run, manifest, preview, gen, steady, stale, t0)
    write_atomic(layout.summary_path, summary.to_json())
    print_report(summary)
    n_failed = int((manifest["status"] == FAILED).sum())
    if n_failed:
        print(
            f"[augment] {n_failed} rows failed (reasons in {layout.manifest_path}); re-run to retry them",
            file=sys.stderr,
        )
    return summary


# ---------------------------------------------------------------------------------------------
# command line


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
    p.add_argument("--executor", choices=sorted(EXECUTOR_NAMES), default="ray", help="ray (default) or local")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a private local Ray)")
    p.add_argument("--actors", type=int, help="Ray generator actors (default: one per GPU, else 1)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", choices=list(DEVICES), default="auto")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32")
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
    """The plan spec the flags ask for, checked (UsageError naming the flag)."""
    if a.portion is None and (a.target_poses != "removed" or a.no_generate):
        flag = "--no-generate" if a.no_generate else "--target-poses"
        raise UsageError(flag, "goes with --portion only")
    if a.portion is not None:
        spec = PlanSpec(
            "portion",
            portion=a.portion,
            target_poses=a.target_poses,
            generate=not a.no_generate,
            method=a.method,
            seed=a.seed,
        )
    elif a.ratio is not None:
        spec = PlanSpec("ratio", per_image=a.ratio - 1, method=a.method, seed=a.seed)
    else:
        spec = PlanSpec("poses", per_image=a.poses_per_image, method=a.method, seed=a.seed)
    check_spec(spec)
    return spec


def options_from_args(a: argparse.Namespace) -> RunOptions:
    return RunOptions(
        data=a.data,
        keypoints=a.keypoints,
        checkpoint=a.checkpoint,
        out=a.out,
        batch_size=a.batch_size,
        device=a.device,
        precision=a.precision,
        actors=a.actors,
        address=a.address,
        plan_only=a.plan_only,
        overwrite=a.overwrite,
        train_iterations=a.train_iterations,
    )


def main(argv: list[str] | None = None) -> RunSummary:
    """CLI entry: the run's summary; bad input prints ``error: ...`` and exits with status 2."""
    from generators.checkpoint import CheckpointError
    from generators.losses import MissingWeightsError

    a = build_parser().parse_args(argv)
    try:
        spec, opts = spec_from_args(a), options_from_args(a)
        executor = LOCAL_EXECUTOR
        if a.executor == "ray":
            from cluster.ray_executor import RAY_EXECUTOR  # the cluster layer sits above; only main reaches up

            executor = RAY_EXECUTOR
        return run_augmentation(spec, opts, executor)
    except (UsageError, DatasetError, CheckpointError, MissingWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
