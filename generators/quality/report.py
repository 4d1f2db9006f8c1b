"""What ``generators.evaluate`` reports: the result record, the printed table, metrics.json, pairs.csv, grid.png.

``EvalReport.results[who][metric]`` holds, for each row ("generated", "copy_source"), either a per-pair metric's
summary {"mean", "n", "non_finite"} (``generators.metrics.summarise``) or a set metric's record {"value", "n",
...} (:mod:`generators.quality.suite`); :func:`figure` reads the reported number of either. Metrics that were
not computed are listed apart (``not_computed``), each with its reason, and printed as NOT COMPUTED lines.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augment.data.atomic import atomic_path, write_atomic
from augment.data.imageio import encode_image
from generators.metrics import PAIR_METRICS
from generators.quality.protocols import DEFAULT_PROTOCOL, METRIC_INFO

GRID_GAP = 2
METRIC_LABELS = {k: m.label for k, m in METRIC_INFO.items()}


@dataclass
class EvalReport:
    """What :func:`evaluate` measured; ``results[who][metric]``: {"mean", "n", "non_finite"} for per-pair pixel
    metrics, {"value", "n", ...} for set metrics; ``metrics``: the computed ones in protocol order."""

    out: Path
    method: str
    preset: str | None
    iteration: int | None
    n_pairs: int
    n_total: int
    results: dict[str, dict[str, dict]]
    per_pair: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    protocol: str = DEFAULT_PROTOCOL
    label: str = ""
    metrics: tuple[str, ...] = PAIR_METRICS
    not_computed: dict[str, dict] = field(default_factory=dict)

    def table_lines(self) -> list[str]:
        label = self.label or f"{self.method}/{self.preset} it {self.iteration}"
        rows = [(label, self.results["generated"]), ("copy-source", self.results["copy_source"])]
        width = max(len(r[0]) for r in rows) + 2
        lines = [" " * width + "".join(f"{METRIC_LABELS[m]:>11}" for m in self.metrics) + f"{'pairs':>8}"]
        for name, res in rows:
            cells = "".join(
                f"{figure(res[m]):>11.{METRIC_INFO[m].decimals}f}" if m in res else f"{'n/c':>11}" for m in self.metrics
            )
            count = next((res[m]["n"] for m in self.metrics if "non_finite" in res.get(m, {})), self.n_pairs)
            lines.append(f"{name:<{width}}{cells}{count:>8}")
        for name, res in rows:
            odd = {m: res[m]["non_finite"] for m in self.metrics if res.get(m, {}).get("non_finite")}
            if odd:
                lines.append(
                    f"  {name}: pairs left out of the mean (NaN / inf): "
                    + ", ".join(f"{METRIC_LABELS[m]} {c}" for m, c in odd.items())
                )
        if any(m not in self.results["copy_source"] for m in self.metrics):
            lines.append("  copy-source: network metrics not computed (n/c) with --floor pixel")
        return lines + not_computed_lines(self.not_computed)


def figure(record: dict) -> float:
    """The reported number of a result record (a set metric's value, a per-pair metric's mean)."""
    value = record.get("value", record.get("mean"))
    return float("nan") if value is None else float(value)


def not_computed_lines(not_computed: dict[str, dict]) -> list[str]:
    """'NOT COMPUTED' lines, metrics that share a reason (one weight file) on one line."""
    by_reason: dict[str, list[str]] = {}
    for metric, record in not_computed.items():
        by_reason.setdefault(record["reason"], []).append(METRIC_LABELS[metric])
    return [f"  NOT COMPUTED {', '.join(labels)}: {reason}" for reason, labels in by_reason.items()]


# ---------------------------------------------------------------------------------------------
# grid


def grid_image(rows: Sequence[Sequence[np.ndarray]], gap: int = GRID_GAP) -> np.ndarray:
    """Rows of equal-size panels -> one uint8 image with white gaps between panels and rows."""
    lines = []
    for panels in rows:
        h = panels[0].shape[0]
        spacer = np.full((h, gap, 3), 255, np.uint8)
        parts = [p for panel in panels for p in (panel, spacer)][:-1]
        lines.append(np.concatenate(parts, axis=1))
        lines.append(np.full((gap, lines[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(lines[:-1], axis=0)


def json_safe(obj):
    if isinstance(obj, float) and not np.isfinite(obj):
        return None  # JSON has no NaN / inf; counts say how many values were left out
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_outputs(report: EvalReport, table, indices: np.ndarray, grid_rows: dict[int, list[np.ndarray]]) -> None:
    out = report.out
    write_atomic(out / "metrics.json", (json.dumps(json_safe(report.info), indent=1) + "\n").encode())
    with atomic_path(out / "pairs.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        columns = list(report.per_pair)
        writer.writerow(["pair", "line", "from", "to", *columns])
        for j, i in enumerate(indices):
            src, tgt = table.pair_names(int(i))
            values = (repr(float(report.per_pair[c][j])) for c in columns)
            writer.writerow([int(i), int(table.lines[i]), src, tgt, *values])
    if grid_rows:
        grid = grid_image([grid_rows[r] for r in sorted(grid_rows)])
        write_atomic(out / "grid.png", encode_image(grid, ".png"))
