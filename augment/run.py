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
command resumes: rows already done (checked by hash) are skipped; a folder made from anything else
(plan, checkpoint weights, dataset bytes, precision, batch size, device type, code) is refused, or
regenerated with ``--overwrite``. Every input is checked before any work (``augment.validate``):
bad files are named errors or excluded with a count, and the output never touches the input.

Any generator, through files (``augment.exchange``, docs/exchange.md): ``--export-plan DIR`` writes the
plan's generated rows as ``DIR/plan.csv`` and ``DIR/plan.json`` and generates nothing; ``--import-generated
DIR [--method-name NAME] [--import-partial]`` checks the images an external tool wrote into DIR against
the plan and builds the same set and manifest as a run, method recorded as ``external:NAME``.

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from augment.checkpoints import (  # noqa: F401  (re-exported: the checkpoint a run uses)
    DEFAULT_RUNS,
    INTERRUPTED_EXIT,
    CheckpointChoice,
    TrainingInterrupted,
    check_checkpoint,
    choose_checkpoint,
    ensure_embedded_checkpoint,
    untrained_checkpoint,
)
from augment.data.atomic import write_atomic
from augment.data.checks import SIZE_RULES
from augment.data.fingerprint import content_fingerprint
from augment.data.market import LAYOUTS, DatasetError
from augment.execute import (
    FAILED,
    LOCAL_EXECUTOR,
    ExecOptions,
    Executor,
    build_manifest,
    done_names,
    make_payloads,
    place_real_rows,
    read_records,
    write_manifest,
    write_preview,
    write_train_annotations,
)
from augment.output import (
    DeferredDigestCache,
    OutputLayout,
    RunIdentity,
    check_plan_only,
    prepare_output,
    write_state,
)
from augment.plan import REAL, Plan, PlanSpec, make_plan, write_plan
from augment.report import RunSummary, print_report, steady_state  # noqa: F401  (re-exported)
from augment.runtime import UsageError
from augment.synth import DEFAULT_OUT as DEFAULT_DATA
from augment.synth import embedded_dataset
from augment.validate import Inputs, InputSpec, check_generator_fits, check_out_path, input_rule, resolve_inputs

EXECUTOR_NAMES = ("local", "ray")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")


# ---------------------------------------------------------------------------------------------
# typed arguments


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
    layout: str | None = None  # dataset layout (augment.data.layouts.LAYOUTS); None: detected
    size_rule: str = "refuse"  # images of another size: refuse (excluded, counted) | resize (augment.validate)
    threads: int | None = None  # CPU threads of each generator (None: the executor's default); in the identity

    def validate(self) -> None:
        if self.batch_size < 1:
            raise UsageError("--batch-size", f"must be >= 1, got {self.batch_size}")
        if self.device not in DEVICES:
            raise UsageError("--device", f"{self.device!r} is not one of {', '.join(DEVICES)}")
        if self.threads is not None and self.threads < 1:
            raise UsageError("--threads", f"must be >= 1, got {self.threads}")
        if self.precision not in PRECISIONS:
            raise UsageError("--precision", f"{self.precision!r} is not one of {', '.join(PRECISIONS)}")
        InputSpec(Path("."), layout=self.layout, size_rule=self.size_rule).validate()


@dataclass(frozen=True)
class _Generation:
    """What the generate phase did."""

    todo: int  # rows generated this run
    already: int  # rows found done (file with the recorded hash)
    seconds: float
    started_wall: float  # time.time() when it started: shards written after it belong to this run


@dataclass(frozen=True)
class RunContext:
    """What the phases after planning share."""

    opts: RunOptions
    executor: Executor
    inputs: Inputs
    plan: Plan
    layout: OutputLayout
    checkpoint: CheckpointChoice | None
    exec_opts: ExecOptions | None
    identity: RunIdentity


# ---------------------------------------------------------------------------------------------
# phases


def check_spec(spec: PlanSpec) -> None:
    """The plan spec's own checks, plus: a generating plan's method is a registered one."""
    spec.validate()
    if spec.generate:
        from generators.base import get_method

        try:
            get_method(spec.method)
        except ValueError as e:
            raise UsageError("--method", str(e)) from None


def input_spec(opts: RunOptions) -> InputSpec:
    data = opts.data if opts.data is not None else embedded_dataset()
    return InputSpec(Path(data), opts.keypoints, opts.layout, opts.size_rule)


def resolve_checkpoint(spec: PlanSpec, opts: RunOptions, plan: Plan, inputs: Inputs) -> CheckpointChoice | None:
    """The checkpoint when the plan generates images in this run (checked to fit the dataset), else None."""
    if not (spec.generate and not opts.plan_only and len(plan.generated()) > 0):
        return None
    choice = choose_checkpoint(
        spec.method, opts.checkpoint, inputs.data, opts.data is None, opts.train_iterations, inputs.index.fingerprint
    )
    check_generator_fits(inputs, input_rule(choice.method, choice.config), choice.path, choice.method)
    return choice


def exec_options(opts: RunOptions, layout: OutputLayout, checkpoint: CheckpointChoice | None) -> ExecOptions | None:
    if checkpoint is None:
        return None
    return ExecOptions(
        checkpoint=checkpoint.path,
        out=layout.root,
        batch_size=opts.batch_size,
        device=None if opts.device == "auto" else opts.device,
        precision=None if opts.precision == "fp32" else opts.precision,
        actors=opts.actors,
        address=opts.address or os.environ.get("RAY_ADDRESS"),
        threads=opts.threads,
    )


def make_identity(
    plan: Plan,
    inputs: Inputs,
    choice: CheckpointChoice | None,
    opts: RunOptions,
    exec_opts: ExecOptions | None,
    cache: DeferredDigestCache,
) -> RunIdentity:
    """Everything that changes an output byte (augment.output); ``exec_opts`` as the executor resolved them."""
    fingerprint = content_fingerprint(inputs.full, [inputs.annotation_file], cache=cache)
    identity = RunIdentity(plan.plan_hash(), "", "", fingerprint.digest, size_rule=opts.size_rule)
    if choice is None:
        return identity
    return replace(
        identity,
        checkpoint_hash=choice.content_hash,
        method=choice.method,
        precision=opts.precision,
        batch_size=opts.batch_size,
        device_type=exec_opts.device_type,
        cpu_threads=int(exec_opts.threads or 0) if exec_opts.device_type == "cpu" else 0,
        code_version=code_identity(),
    )


def code_identity(with_generators: bool = True) -> str:
    """The code that shapes the output bytes: a content hash of the generators' and the data layer's
    sources (networks, pose encodings, image codec, resizing), and the versions of torch, numpy and
    OpenCV (its JPEG encoder). A commit that leaves these alone keeps the identity.

    ``with_generators=False``: the data layer, numpy and OpenCV only (an import of returned images runs
    no network: ``augment.exchange``)."""
    import hashlib

    import cv2
    import numpy

    import augment.data
    import augment.execute

    packages = [augment.data]
    versions = f"numpy {numpy.__version__}; opencv {cv2.__version__}"
    if with_generators:
        import torch

        import generators

        packages.insert(0, generators)
        versions = f"torch {torch.__version__}; {versions}"
    h = hashlib.sha256()
    for package in packages:
        folder = Path(package.__file__).parent
        for path in sorted(folder.rglob("*.py")):
            h.update(f"{package.__name__}/{path.relative_to(folder).as_posix()}\n".encode())
            h.update(path.read_bytes())
    h.update(Path(augment.execute.__file__).read_bytes())  # the stages: batching, decode, encode
    return f"src {h.hexdigest()[:12]}; {versions}"


def write_plan_only(
    plan: Plan, inputs: Inputs, layout: OutputLayout, executor: Executor, overwrite: bool
) -> RunSummary:
    check_plan_only(layout, plan.plan_hash(), overwrite)
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
        skipped=inputs.skips,
        image_checks=inputs.images.as_dict(),
    )


def generate(run: RunContext) -> _Generation:
    """Run every fixed batch (plan order, batch size) that holds a row not done yet; write only those rows."""
    layout = run.layout
    gen = run.plan.generated()
    names = set(gen["output_name"])
    already = done_names(layout) & names
    pending = names - already
    t_gen, t_wall = time.perf_counter(), time.time()
    if pending:
        payloads = make_payloads(
            gen,
            run.inputs.dataset,
            run.opts.batch_size,
            pending=pending,
            size=run.inputs.size,
            resize=run.opts.size_rule == "resize",
        )
        method = run.checkpoint.method if run.checkpoint else run.plan.spec.method
        print(
            f"[augment] {len(pending)} images to generate ({len(already)} already done) "
            f"with {method} on the {run.executor.name} executor"
        )
        run.executor(payloads, run.exec_opts)
    return _Generation(len(pending), len(already), time.perf_counter() - t_gen, t_wall)


def write_records(
    run: RunContext, real_records: pd.DataFrame, started_wall: float
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
    preview = write_preview(manifest, run.inputs.dataset, layout, seed=run.plan.spec.seed, size=run.inputs.size)
    return manifest, preview, steady


def summarize(
    run: RunContext,
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
        checkpoint=str(run.checkpoint.path) if run.checkpoint else None,
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
        skipped=run.inputs.skips,
        image_checks=run.inputs.images.as_dict(),
        identity=asdict(run.identity),
    )


# ---------------------------------------------------------------------------------------------
# the library function


def plan_inputs(spec: PlanSpec, opts: RunOptions, folder_name: str | None = None) -> tuple[Inputs, Plan, OutputLayout]:
    """Every input checked, the plan, and the output folder (kept away from the inputs); nothing written.

    ``folder_name``: the default output folder's name (None: the plan's name).
    """
    inputs = resolve_inputs(input_spec(opts))  # every image and keypoint row checked: nothing written yet
    plan = make_plan(inputs.index, spec)
    name = folder_name or spec.name()
    layout = OutputLayout(Path(opts.out or DEFAULT_RUNS / "augment" / inputs.data.resolve().name / name))
    check_out_path(layout.root, inputs.protected())
    return inputs, plan, layout


def execute_run(run: RunContext, cache: DeferredDigestCache, t0: float) -> RunSummary:
    """Prepare the folder, place the real rows, run the executor over the rows not done, write the records.

    The identity in ``run`` decides whether the folder is resumed, refused or (``--overwrite``) cleared.
    """
    layout, plan, inputs = run.layout, run.plan, run.inputs
    stale = prepare_output(plan, inputs.full, layout, run.identity, overwrite=run.opts.overwrite)
    cache.flush()
    # real rows: placed, idempotent; generated rows: the fixed batches holding a row not done yet
    real_rows = plan.table[plan.table["kind"] == REAL]
    real_records = place_real_rows(real_rows, inputs.dataset, layout, size=inputs.size, resized=inputs.resized)
    gen = generate(run)
    manifest, preview, steady = write_records(run, real_records, gen.started_wall)
    summary = summarize(run, manifest, preview, gen, steady, stale, t0)
    write_atomic(layout.summary_path, summary.to_json())
    write_state(layout, run.identity, "complete")
    print_report(summary)
    n_failed = int((manifest["status"] == FAILED).sum())
    if n_failed:
        print(
            f"[augment] {n_failed} rows failed (reasons in {layout.manifest_path}); re-run to retry them",
            file=sys.stderr,
        )
    return summary


def run_augmentation(spec: PlanSpec, opts: RunOptions, executor: Executor = LOCAL_EXECUTOR) -> RunSummary:
    """Plan ``spec`` on the dataset of ``opts`` and generate it with ``executor``; see the module docstring.

    Raises UsageError (naming the flag), DatasetError and CheckpointError before any work where it can;
    re-running the same call resumes (rows done, checked by hash, are skipped).
    """
    t0 = time.perf_counter()
    check_spec(spec)
    opts.validate()
    inputs, plan, layout = plan_inputs(spec, opts)
    checkpoint = resolve_checkpoint(spec, opts, plan, inputs)
    if opts.plan_only:
        return write_plan_only(plan, inputs, layout, executor, opts.overwrite)
    exec_opts = exec_options(opts, layout, checkpoint)
    exec_opts = executor.resolve(exec_opts) if exec_opts is not None else None
    cache = DeferredDigestCache(layout.digest_cache_path)
    identity = make_identity(plan, inputs, checkpoint, opts, exec_opts, cache)
    run = RunContext(opts, executor, inputs, plan, layout, checkpoint, exec_opts, identity)
    return execute_run(run, cache, t0)


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
    p.add_argument("--layout", choices=list(LAYOUTS), help="dataset layout (default: detected from its folders)")
    p.add_argument(
        "--size-rule",
        choices=list(SIZE_RULES),
        default="refuse",
        help="training images of another size: refuse (excluded and counted; default) or resize (keypoints scaled)",
    )
    p.add_argument("--checkpoint", type=Path, help="generator checkpoint (default: the embedded-dataset one)")
    p.add_argument("--out", type=Path, help="output folder (default runs/augment/<dataset>/<plan>)")
    p.add_argument("--executor", choices=sorted(EXECUTOR_NAMES), default="ray", help="ray (default) or local")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a private local Ray)")
    p.add_argument("--actors", type=int, help="Ray generator actors (default: one per GPU, else 1)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", choices=list(DEVICES), default="auto")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads of each generator (default: this process's torch threads locally, the cluster's "
        "CPUs per actor on Ray); part of the run identity: another count can change the output bytes",
    )
    p.add_argument("--seed", type=int, default=0, help="plan seed (default 0)")
    p.add_argument("--plan-only", action="store_true", help="write plan.parquet and its summary, generate nothing")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder made by another plan")
    exchange = p.add_mutually_exclusive_group()
    exchange.add_argument(
        "--export-plan",
        type=Path,
        metavar="DIR",
        help="write the plan's generated rows to DIR/plan.csv and DIR/plan.json for an external generator; "
        "generate nothing (no checkpoint needed; docs/exchange.md)",
    )
    exchange.add_argument(
        "--import-generated",
        type=Path,
        metavar="DIR",
        help="build the set from the images an external generator wrote into DIR for the exported plan",
    )
    p.add_argument("--method-name", metavar="NAME", help="with --import-generated: recorded as external:NAME")
    p.add_argument(
        "--import-partial",
        action="store_true",
        help="with --import-generated: import the rows returned, record missing or bad ones failed (default: refuse)",
    )
    p.add_argument(
        "--train-iterations",
        type=int,
        help="iterations when the default embedded-dataset checkpoint must be trained first",
    )
    return p


def spec_from_args(a: argparse.Namespace, check: Callable[[PlanSpec], None] = check_spec) -> PlanSpec:
    """The plan spec the flags ask for, checked by ``check`` (UsageError naming the flag)."""
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
    check(spec)
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
        layout=a.layout,
        size_rule=a.size_rule,
        threads=a.threads,
    )


def main(argv: list[str] | None = None):
    """CLI entry: the run's summary (``--export-plan``: the export's); bad input prints ``error: ...`` and exits
    with status 2."""
    from generators.checkpoint import CheckpointError
    from generators.losses import MissingWeightsError

    a = build_parser().parse_args(argv)
    try:
        if a.export_plan is not None or a.import_generated is not None or a.method_name or a.import_partial:
            from augment.exchange import main_from_args  # same layer; it builds on this module's functions

            return main_from_args(a)
        spec, opts = spec_from_args(a), options_from_args(a)
        executor = LOCAL_EXECUTOR
        if a.executor == "ray":
            from cluster.ray_executor import RAY_EXECUTOR  # the cluster layer sits above; only main reaches up

            executor = RAY_EXECUTOR
        return run_augmentation(spec, opts, executor)
    except (UsageError, DatasetError, CheckpointError, MissingWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:  # the machine refused a read or write (disk full, permissions): no traceback
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        raise SystemExit(2) from None
    except TrainingInterrupted as e:
        print(f"[augment] interrupted: {e}", file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT) from None


if __name__ == "__main__":
    main()
