"""What a run reports: ``summary.json`` (:class:`RunSummary`), the printed report, the steady-state rate."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

MAX_SKIP_LINES = 12


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
    # everything of the input not used: {reason: {"count", "examples"}} (dataset, keypoints, image checks)
    skipped: dict = field(default_factory=dict)
    image_checks: dict = field(default_factory=dict)  # augment.data.checks.ImageCheckReport.as_dict()
    identity: dict = field(default_factory=dict)  # the output folder's RunIdentity (augment.output)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()


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


def skip_lines(skipped: dict) -> list[str]:
    """One line per reason: count and the first examples."""
    out = [f"{v['count']} {reason} (e.g. {'; '.join(v['examples'])})" for reason, v in skipped.items()]
    return out[:MAX_SKIP_LINES] + ([f"... and {len(out) - MAX_SKIP_LINES} more reasons"] if len(out) > 12 else [])


def print_report(s: RunSummary) -> None:
    p = s.plan
    print(f"[augment] {p['plan_name']}: {p['train_images']} real train images, {p['train_identities']} identities")
    print(f"  output rows: {s.rows}")
    skipped = {k: v for k, v in p["skipped_generated"].items() if v}
    print(f"  not planned (keypoint policy): {skipped or 'none'}; images not poseable: {p['images_not_poseable']}")
    lines = skip_lines(s.skipped)
    print(f"  input not used: {'none' if not lines else ''}")
    for line in lines:
        print(f"    {line}")
    print(
        f"  generated this run: {s.generated_this_run} (already done: {s.already_done}); "
        f"{s.generated_images_per_second or '-'} img/s; total {s.total_seconds} s"
    )
    for k, v in s.paths.items():
        if v:
            print(f"  {k:9s} {v}")
    print(f"  summary   {Path(s.out) / 'summary.json'}")
