"""Any generator, through files: export a plan's generated rows, import the images another tool made.

    python -m augment.run --portion 0.1 --method mygen --export-plan EX      # EX/plan.csv, EX/plan.json
    # the external tool writes EX/<output_name> (or EX/<output stem>.png) for every row
    python -m augment.run --portion 0.1 --method mygen --import-generated EX # the set, as augment.run writes it

:func:`export_plan` writes the generated rows of a plan (source image, source and target keypoints,
output name, label, camera, row seed) as ``plan.csv`` and ``plan.json`` for a tool that knows nothing
of this project; nothing is generated and no checkpoint is read. ``--method`` only names the rows'
output files (``<real stem>_<method>-<k>.jpg``): it need not be a method of ``generators``.

:func:`import_generated` checks the returned images against the same plan (rebuilt from the same
flags and checked against ``plan.json`` when the folder holds it): every row present, decodable, not
truncated, of the dataset's size; files no row expects are counted. Missing or bad rows refuse the
import with an :class:`ExchangeError` listing them, or with ``allow_missing`` are recorded failed. It
then runs the service's own pipeline (:func:`augment.run.execute_run`) with an executor that reads the
returned images instead of running a network: the kept real images linked, the returned ones decoded
and written by the executor's write stage (JPEG exactly as an in-process run writes a generator's
pixels), manifest, annotation CSV, preview, summary. The method is recorded as ``external:NAME``, and
the run identity holds the content hash of the returned images where a run holds its checkpoint's
weight hash, so an import resumes, reruns idempotently and refuses another folder's images like any run.

The file format, for the external tool's author: ``docs/exchange.md`` (and the ``readme`` in plan.json).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from augment.checkpoints import CheckpointChoice
from augment.data.atomic import write_atomic
from augment.data.checks import check_images
from augment.data.errors import DatasetError
from augment.data.fingerprint import content_fingerprint
from augment.data.imageio import decode_rgb, sha256_bytes, sha256_file
from augment.data.index import merge_skips
from augment.data.keypoints import JOINTS, NUM_JOINTS
from augment.data.names import TAG_RE
from augment.execute import ExecOptions, Executor, write_stage
from augment.output import DeferredDigestCache, RunIdentity
from augment.plan import GENERATED, Plan, PlanSpec, make_plan
from augment.report import RunSummary
from augment.run import RunContext, RunOptions, code_identity, execute_run, input_spec, plan_inputs
from augment.runtime import UsageError
from augment.validate import Inputs, check_out_path, resolve_inputs

PLAN_CSV, PLAN_JSON = "plan.csv", "plan.json"
EXCHANGE_FILES = (PLAN_CSV, PLAN_JSON)  # the export's own files: never counted as extra in an import
FORMAT, VERSION = "poseaug-exchange", 1
EXTERNAL = "external:"  # recorded method of an import: external:NAME
MAX_NAMED = 10  # rows named in an error
CSV_COLUMNS = [
    "output_name",
    "label",
    "camera",
    "source_name",
    "source_path",
    "target_pose_name",
    "target_pose_path",
    "source_keypoints_y",
    "source_keypoints_x",
    "target_keypoints_y",
    "target_keypoints_x",
    "seed",
]
COLUMNS = {
    "output_name": "the file to write (Market-1501 name of the removed or source image + _<method>-<k>); "
    "a .jpg name may also be returned as <output stem>.png",
    "label": "person id of the generated image (the source image's)",
    "camera": "camera id recorded for the generated image (1-based, as in the name)",
    "source_name": "the source image's file name in the dataset's training split",
    "source_path": "absolute path of the source image",
    "target_pose_name": "the real image whose pose is the target (its keypoints are the target keypoints)",
    "target_pose_path": "absolute path of that image",
    "source_keypoints_y": "JSON list of 18 integers: y (row) of each COCO-18 joint of the source, -1 when missing",
    "source_keypoints_x": "JSON list of 18 integers: x (column) of each joint of the source, -1 when missing",
    "target_keypoints_y": "JSON list of 18 integers: y of each joint of the target pose, -1 when missing",
    "target_keypoints_x": "JSON list of 18 integers: x of each joint of the target pose, -1 when missing",
    "seed": "per-row seed (0 <= seed < 2**56) for a stochastic generator that wants to be reproducible",
}
IMPORTER_CHECKS = [
    "every row's file is present: <output_name>, or <output stem>.png (not both)",
    "each file decodes (JPEG or PNG) and is not truncated (a JPEG ends with its end-of-image marker, a PNG with IEND)",
    "each image is exactly image_size (height x width)",
    "files that no row expects are counted and reported, never used (plan.csv and plan.json aside)",
    "when this plan.json is in the folder: its plan_hash and the dataset's content fingerprint equal the import's",
]
README = [
    "Generate one image per row of plan.csv (the same rows are in plan.json under 'rows').",
    "Input: the source image (source_path) and two poses, the source's and the target's: 18 COCO-18 keypoints each "
    "(joint order in 'keypoints'), given as the community JSON lists [y0, ..., y17] and [x0, ..., x17] in pixels of "
    "the image_size frame, -1 where a joint is missing.",
    "Output: an RGB image of exactly image_size showing the source's person in the target pose, written into one "
    "folder under the row's output_name; write <output stem>.png instead for lossless pixels (a returned JPEG is "
    "decoded and re-encoded once more).",
    "Then run import_command (the flags of the export plus --import-generated DIR); it checks the images "
    "(importer_checks) and builds the augmented dataset.",
    "Sources listed in dataset.sources_of_another_size (the resize rule) must be resized to image_size first; "
    "their keypoints are already in the image_size frame.",
]


class ExchangeError(DatasetError):
    """The returned images do not match the plan, or the folder holds the export of another plan or dataset.

    ``missing``: output names with no file; ``bad``: output name -> why its file cannot be used;
    ``extra``: names in the folder that no row expects.
    """

    def __init__(self, message: str, missing=(), bad=None, extra=()):
        super().__init__(message)
        self.missing, self.bad, self.extra = list(missing), dict(bad or {}), list(extra)


# ---------------------------------------------------------------------------------------------
# flags and names


def check_exchange_spec(spec: PlanSpec) -> None:
    """The plan spec's checks, and a method name fit for file names (it need not be a registered method)."""
    spec.validate()
    if not spec.generate:
        raise UsageError("--no-generate", "the reduced set alone has no generated rows to export or import")
    check_method_name(spec.method, "--method")


def check_method_name(name: str, flag: str) -> None:
    if not TAG_RE.fullmatch(name or ""):
        raise UsageError(flag, f"{name!r} must start with a letter and hold only letters, digits and '-'")


def spec_flags(spec: PlanSpec) -> list[str]:
    """The ``augment.run`` flags that make ``spec``."""
    if spec.protocol == "portion":
        flags = ["--portion", f"{spec.portion:g}"] + (["--target-poses", "kept"] if spec.target_poses == "kept" else [])
    elif spec.protocol == "ratio":
        flags = ["--ratio", str(spec.per_image + 1)]
    else:
        flags = ["--poses-per-image", str(spec.per_image)]
    return [*flags, "--method", spec.method, "--seed", str(spec.seed)]


def import_command(spec: PlanSpec, opts: RunOptions, inputs: Inputs, folder: Path) -> str:
    """The command that imports the images returned into ``folder`` for this export."""
    args = ["python -m augment.run", "--data", os.path.abspath(inputs.data)]
    args += ["--keypoints", os.path.abspath(opts.keypoints)] if opts.keypoints is not None else []
    args += ["--layout", opts.layout] if opts.layout else []
    args += ["--size-rule", opts.size_rule] if opts.size_rule != "refuse" else []
    return " ".join([*args, *spec_flags(spec), "--import-generated", os.path.abspath(folder)])


# ---------------------------------------------------------------------------------------------
# export


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_plan` wrote."""

    folder: str
    plan_name: str
    plan_hash: str
    rows: int  # generated rows exported
    paths: dict
    import_command: str
    plan: dict = field(default_factory=dict)  # the plan's summary (augment.plan)


def exchange_rows(plan: Plan, inputs: Inputs) -> list[dict]:
    """The plan's generated rows as plain values (:data:`CSV_COLUMNS`; keypoints as lists of 18 ints)."""
    gen = plan.generated()
    if gen.empty:
        return []
    paths = {r.name: os.path.abspath(r.path) for r in inputs.dataset.train}
    src = np.stack(gen["source_kps"].to_numpy()).reshape(-1, NUM_JOINTS, 2).astype(int)
    tgt = np.stack(gen["target_kps"].to_numpy()).reshape(-1, NUM_JOINTS, 2).astype(int)
    rows = []
    for i, r in enumerate(gen.itertuples(index=False)):
        rows.append(
            {
                "output_name": r.output_name,
                "label": int(r.label),
                "camera": int(r.camera),
                "source_name": r.source_name,
                "source_path": paths[r.source_name],
                "target_pose_name": r.target_pose_name,
                "target_pose_path": paths[r.target_pose_name],
                "source_keypoints_y": src[i, :, 0].tolist(),
                "source_keypoints_x": src[i, :, 1].tolist(),
                "target_keypoints_y": tgt[i, :, 0].tolist(),
                "target_keypoints_x": tgt[i, :, 1].tolist(),
                "seed": int(r.seed),
            }
        )
    return rows


def plan_csv(rows: list[dict]) -> bytes:
    """``plan.csv``: a header of :data:`CSV_COLUMNS`, comma-separated, keypoint lists as quoted JSON."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([json.dumps(r[c]) if isinstance(r[c], list) else r[c] for c in CSV_COLUMNS])
    return buf.getvalue().encode("utf-8")


def plan_document(spec: PlanSpec, opts: RunOptions, inputs: Inputs, plan: Plan, fingerprint: str, folder: Path) -> dict:
    """``plan.json``: the rows, the spec, the dataset, the image size, the importer's checks, a readme."""
    h, w = inputs.size
    return {
        "format": FORMAT,
        "version": VERSION,
        "readme": README,
        "plan_name": spec.name(),
        "plan_hash": plan.plan_hash(),
        "flags": " ".join(spec_flags(spec)),
        "import_command": import_command(spec, opts, inputs, folder),
        "spec": asdict(spec),
        "plan_summary": plan.summary,
        "dataset": {
            "root": os.path.abspath(inputs.data),
            "layout": inputs.full.layout,
            "content_fingerprint": fingerprint,
            "size_rule": opts.size_rule,
            "sources_of_another_size": sorted(inputs.resized),
        },
        "image_size": {"height": h, "width": w},
        "keypoints": {
            "format": "COCO-18 joints, y and x as JSON lists of 18 integers (the community Market-1501 CSV's), "
            "pixel coordinates in the image_size frame, -1 where missing",
            "joints": list(JOINTS),
        },
        "columns": COLUMNS,
        "importer_checks": IMPORTER_CHECKS,
        "rows": exchange_rows(plan, inputs),
    }


def plan_json(doc: dict) -> bytes:
    """``doc`` as JSON: indented, one line per row (a plan of 100,000 rows stays a readable file)."""
    head = json.dumps({k: v for k, v in doc.items() if k != "rows"}, indent=1)
    rows = ",\n  ".join(json.dumps(r) for r in doc["rows"])
    return f'{head[:-2]},\n "rows": [\n  {rows}\n ]\n}}\n'.encode()


def read_export(path: Path) -> dict | None:
    """The ``plan.json`` at ``path`` (None when absent); ExchangeError when it is not one this module writes."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ExchangeError(f"{path}: not a plan.json written by --export-plan ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "plan_hash" not in doc:
        raise ExchangeError(f"{path}: not a plan.json written by --export-plan (no format {FORMAT!r})")
    return doc


def export_plan(spec: PlanSpec, opts: RunOptions, folder: str | os.PathLike) -> ExportSummary:
    """Write ``folder/plan.csv`` and ``folder/plan.json`` for the generated rows of ``spec`` on ``opts.data``.

    Every input is checked first (``augment.validate``); ``folder`` may not touch the dataset, and a
    folder holding the export of another plan is refused unless ``opts.overwrite`` (then the two files
    are replaced; images in it are left alone). Raises UsageError, DatasetError.
    """
    check_exchange_spec(spec)
    opts.validate()
    folder = Path(folder)
    inputs = resolve_inputs(input_spec(opts))
    plan = make_plan(inputs.index, spec)
    try:
        check_out_path(folder, inputs.protected())
    except UsageError as e:
        raise UsageError("--export-plan", str(e).removeprefix(f"{e.flag}: ")) from None
    previous = read_export(folder / PLAN_JSON)
    if previous is not None and previous["plan_hash"] != plan.plan_hash() and not opts.overwrite:
        raise UsageError(
            "--export-plan",
            f"{folder} holds the export of another plan ({previous.get('plan_name')}); choose another folder, "
            "or pass --overwrite to replace its plan files",
        )
    fingerprint = content_fingerprint(inputs.full, [inputs.annotation_file]).digest
    doc = plan_document(spec, opts, inputs, plan, fingerprint, folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / PLAN_CSV, plan_csv(doc["rows"]))
    write_atomic(folder / PLAN_JSON, plan_json(doc))
    summary = ExportSummary(
        folder=str(folder),
        plan_name=doc["plan_name"],
        plan_hash=doc["plan_hash"],
        rows=len(doc["rows"]),
        paths={"csv": str(folder / PLAN_CSV), "json": str(folder / PLAN_JSON)},
        import_command=doc["import_command"],
        plan=plan.summary,
    )
    print(f"[augment] exported {summary.rows} generated rows of {summary.plan_name} to {folder}")
    print(f"  {summary.paths['csv']}\n  {summary.paths['json']}\n  then: {summary.import_command}")
    return summary


# ---------------------------------------------------------------------------------------------
# the returned images


def candidates(output_name: str) -> list[str]:
    """The files that may hold a row's image: its output name, or its stem with ``.png``."""
    png = f"{Path(output_name).stem}.png"
    return [output_name] if png == output_name else [output_name, png]


@dataclass(frozen=True)
class Returned:
    """The returned images checked against the plan's generated rows.

    ``files``: output name -> (file, SHA-256 of its bytes), for the rows whose file passed every check;
    ``missing``: rows with no file; ``bad``: row -> why its file cannot be used; ``extra``: names in the
    folder that no row expects; ``content_hash``: SHA-256 over (row, file name, file hash) of ``files``
    in plan order, the import's stand-in for a checkpoint's weight hash.
    """

    folder: Path
    size: tuple[int, int]
    files: dict[str, tuple[Path, str]]
    missing: list[str]
    bad: dict[str, str]
    extra: list[str]
    content_hash: str

    def problem(self, name: str) -> str:
        """Why row ``name`` has no usable image ('' when it has one)."""
        if name in self.bad:
            return self.bad[name]
        if name in self.files:
            return ""
        return f"not returned: expected {' or '.join(str(self.folder / c) for c in candidates(name))}"

    def skips(self) -> dict:
        """The extra files, in the form of the run's other skip counts (summary.json's ``skipped``)."""
        if not self.extra:
            return {}
        return {f"files in {self.folder} not in the plan": {"count": len(self.extra), "examples": self.extra[:3]}}

    def refusal(self, plan_name: str, rows: int) -> ExchangeError:
        lines = [f"{n}: {self.problem(n)}" for n in self.missing[:MAX_NAMED]]
        lines += [f"{n}: {why}" for n, why in list(self.bad.items())[:MAX_NAMED]]
        more = len(self.missing) + len(self.bad) - len(lines)
        lines += [f"... and {more} more"] if more > 0 else []
        if self.extra:
            lines.append(f"{len(self.extra)} files not in the plan (ignored), e.g. {', '.join(self.extra[:3])}")
        text = "\n  ".join(lines)
        return ExchangeError(
            f"{self.folder}: the returned images do not match the plan {plan_name} ({rows} generated rows): "
            f"{len(self.missing)} missing, {len(self.bad)} unusable; return them, or pass --import-partial to "
            f"import the others and record these rows failed:\n  {text}",
            self.missing,
            self.bad,
            self.extra,
        )

    def batch(self, payload: dict) -> dict:
        """A batch payload (``augment.execute.make_payloads``) with ``gen_img`` read from the returned files
        and ``error`` per row: what the write stage takes from a generator."""
        images, errors = [], []
        for name, todo in zip(payload["output_name"], payload["write"]):
            img, err = None, self.problem(name) if todo else ""
            if todo and not err:
                img, err = self._read(name)
            images.append(img if img is not None else np.zeros((*self.size, 3), np.uint8))
            errors.append(err)
        return {**payload, "gen_img": np.stack(images), "error": errors, "generated_at": time.time()}

    def _read(self, name: str) -> tuple[np.ndarray | None, str]:
        path, digest = self.files[name]
        try:
            data = path.read_bytes()
            if sha256_bytes(data) != digest:
                return None, f"{path}: changed since the import's checks; run the import again"
            return decode_rgb(data, path), ""
        except OSError as e:
            return None, f"{path}: cannot read: {e.strerror or e}"
        except DatasetError as e:
            return None, str(e)


def check_returned(folder: Path, names: Sequence[str], size: tuple[int, int]) -> Returned:
    """Check the files in ``folder`` against the rows ``names`` (plan order): present, decodable, ``size``."""
    entries = {e.name for e in os.scandir(folder)}
    chosen, missing, bad, expected = {}, [], {}, set()
    for name in names:
        options = candidates(name)
        expected.update(options)
        found = [c for c in options if c in entries]
        if len(found) > 1:
            bad[name] = f"two files for one row: {folder / found[0]} and {folder / found[1]}; keep one"
        elif found:
            chosen[name] = folder / found[0]
        else:
            missing.append(name)
    status = check_images(list(chosen.values()), size=size).by_path()
    files = {}
    for name, path in chosen.items():
        s = status[path]
        if not s.readable:
            bad[name] = f"{path}: {s.error}"
        elif s.size != tuple(size):
            bad[name] = f"{path}: size {s.size[0]}x{s.size[1]}, not the dataset's {size[0]}x{size[1]}"
        else:
            files[name] = (path, sha256_file(path))
    h = hashlib.sha256()
    for name in names:
        if name in files:
            h.update(f"{name}\t{files[name][0].name}\t{files[name][1]}\n".encode())
    order = {n: i for i, n in enumerate(names)}
    bad = dict(sorted(bad.items(), key=lambda kv: order[kv[0]]))
    extra = sorted(entries - expected - set(EXCHANGE_FILES))
    return Returned(folder, tuple(size), files, missing, bad, extra, h.hexdigest())


def write_returned(returned: Returned, payloads: list[dict], opts: ExecOptions) -> None:
    """The import's executor: each batch's returned images through the executor's write stage."""
    from tqdm import tqdm

    with tqdm(total=sum(len(p["output_name"]) for p in payloads), unit="img", desc="import") as bar:
        for p in payloads:
            write_stage(returned.batch(p), opts.out)
            bar.update(len(p["output_name"]))


# ---------------------------------------------------------------------------------------------
# import


def check_export_record(folder: Path, plan: Plan, fingerprint: str) -> None:
    """When ``folder`` holds a plan.json, it must be this plan's export, made from this dataset's bytes."""
    path = folder / PLAN_JSON
    doc = read_export(path)
    if doc is None:
        return
    if doc["plan_hash"] != plan.plan_hash():
        raise ExchangeError(
            f"{path}: exported for the plan {doc.get('plan_name')} (plan_hash {doc['plan_hash']}), but these flags "
            f"make {plan.spec.name()} (plan_hash {plan.plan_hash()}); import with the export's flags: "
            f"{doc.get('flags')}"
        )
    exported = (doc.get("dataset") or {}).get("content_fingerprint")
    if exported != fingerprint:
        raise ExchangeError(
            f"{path}: exported from a dataset with content fingerprint {exported}, this one is {fingerprint}: the "
            "images, keypoints or annotation file changed since the export; export the plan again"
        )


def recorded_method(plan: Plan, method: str) -> Plan:
    """The plan with ``method`` recorded on its generated rows (the plan hash does not depend on it)."""
    table = plan.table.assign(method=np.where(plan.table["kind"] == GENERATED, method, "").tolist())
    return replace(plan, table=table)


def import_generated(
    spec: PlanSpec,
    opts: RunOptions,
    folder: str | os.PathLike,
    method_name: str | None = None,
    *,
    allow_missing: bool = False,
) -> RunSummary:
    """Build the augmented set of ``spec`` from the images an external tool returned into ``folder``.

    ``method_name``: recorded as ``external:NAME`` (default: ``spec.method``); the default output folder
    is ``runs/augment/<dataset>/<plan name with method external-NAME>``. ``allow_missing``: import the rows
    returned and record the missing or unusable ones failed, instead of refusing. Of ``opts``, the
    generator's options (checkpoint, device, precision, threads, Ray) are not used. Raises UsageError,
    DatasetError and its :class:`ExchangeError` (what is missing or bad, named) before any work.
    """
    t0 = time.perf_counter()
    check_exchange_spec(spec)
    name = method_name or spec.method
    check_method_name(name, "--method-name")
    opts.validate()
    folder = Path(folder)
    if not folder.is_dir():
        raise ExchangeError(f"{folder}: no such folder (--import-generated)")
    inputs, plan, layout = plan_inputs(spec, opts, folder_name=replace(spec, method=f"external-{name}").name())
    check_out_path(layout.root, [folder])  # --overwrite clears the output folder: never the returned images
    cache = DeferredDigestCache(layout.digest_cache_path)
    fingerprint = content_fingerprint(inputs.full, [inputs.annotation_file], cache=cache).digest
    check_export_record(folder, plan, fingerprint)
    returned = check_returned(folder, plan.generated()["output_name"].tolist(), inputs.size)
    if (returned.missing or returned.bad) and not allow_missing:
        raise returned.refusal(spec.name(), len(plan.generated()))
    method = EXTERNAL + name
    plan = recorded_method(plan, method)
    identity = RunIdentity(
        plan.plan_hash(),
        returned.content_hash[:16],
        method,
        fingerprint,
        code_version=code_identity(with_generators=False),
        size_rule=opts.size_rule,
    )
    source = CheckpointChoice(folder, identity.checkpoint_hash, method, {})  # the images stand in for weights
    exec_opts = ExecOptions(checkpoint=folder, out=layout.root, batch_size=opts.batch_size)
    executor = Executor("import", partial(write_returned, returned))
    inputs = replace(inputs, skips=merge_skips(inputs.skips, returned.skips()))
    return execute_run(RunContext(opts, executor, inputs, plan, layout, source, exec_opts, identity), cache, t0)


# ---------------------------------------------------------------------------------------------
# augment.run's command line


def main_from_args(a) -> RunSummary | ExportSummary:
    """``augment.run --export-plan DIR`` / ``--import-generated DIR``: raises UsageError and the library's
    errors; ``augment.run.main`` prints them."""
    from augment.run import options_from_args, spec_from_args

    if a.export_plan is None and a.import_generated is None:
        raise UsageError("--method-name" if a.method_name else "--import-partial", "goes with --import-generated")
    if a.export_plan is not None and (a.method_name or a.import_partial):
        raise UsageError("--method-name" if a.method_name else "--import-partial", "goes with --import-generated")
    unused = {"--checkpoint": a.checkpoint, "--plan-only": a.plan_only, "--train-iterations": a.train_iterations}
    for flag, value in unused.items():
        if value:
            raise UsageError(flag, "not used with --export-plan or --import-generated (no generator runs here)")
    spec, opts = spec_from_args(a, check=check_exchange_spec), options_from_args(a)
    if a.export_plan is not None:
        return export_plan(spec, opts, a.export_plan)
    return import_generated(spec, opts, a.import_generated, a.method_name, allow_missing=a.import_partial)
