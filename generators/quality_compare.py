"""``python -m generators.quality_compare``: several quality-vs-time curves in one figure and one table.

    python -m generators.quality_compare runs/curves/patn-synth runs/curves/deform-synth \\
        runs/curves/pg2-synth runs/curves/spgnet-synth --out runs/curves/compare.png

Each argument is a folder written by ``python -m generators.quality_curve`` (its ``curve.csv`` and
``summary.json``). The figure has one panel per metric (SSIM, mask-SSIM, L1 and, where any curve has
it, the identity proxy's Rank-1) with one line per curve against its clock's minutes, and the
copy-source floor dashed (the same test pairs give every curve the same floor; each curve's own floor
is drawn when they differ). The table (markdown, printed) gives every point of every curve and marks
each curve's best point per metric. Curves measured with different clocks are refused: their minutes
do not compare.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from augment.data.atomic import atomic_path
from augment.runtime import UsageError

# metric -> (panel title, True when higher is better)
PANELS = {
    "ssim": ("SSIM", True),
    "mask_ssim": ("mask-SSIM", True),
    "l1": ("L1 [0,1] (lower is better)", False),
    "id_rank1": ("identity Rank-1 (re-ID proxy)", True),
}
FLOORS = {"ssim": "copy_ssim", "mask_ssim": "copy_mask_ssim", "l1": "copy_l1", "id_rank1": "id_rank1_copy"}


@dataclass
class Curve:
    """One quality_curve folder: its label, clock and rows (column -> float; ``point`` kept as text)."""

    label: str
    clock: str
    rows: list[dict]

    def values(self, metric: str) -> list[float]:
        return [row.get(metric, math.nan) for row in self.rows]

    def best(self, metric: str) -> int | None:
        """Index of the best point for ``metric`` (None when the curve lacks it)."""
        pairs = [(v, i) for i, v in enumerate(self.values(metric)) if not math.isnan(v)]
        if not pairs:
            return None
        return (max if PANELS[metric][1] else min)(pairs)[1]


def read_curve(folder: Path) -> Curve:
    """The curve in ``folder``; a UsageError naming the file when it is missing or malformed."""
    folder = Path(folder)
    path, summary_path = folder / "curve.csv", folder / "summary.json"
    for p in (path, summary_path):
        if not p.is_file():
            raise UsageError("curve folder", f"{p} is missing (write it with python -m generators.quality_curve)")
    config = json.loads(summary_path.read_text()).get("config", {})
    rows = []
    with open(path, newline="") as f:
        for n, raw in enumerate(csv.DictReader(f), start=2):
            try:
                rows.append({k: (v if k == "point" else float(v)) for k, v in raw.items()})
            except (TypeError, ValueError):
                raise UsageError("curve folder", f"{path} row {n}: a value is not a number: {raw}") from None
    if not rows or "minutes" not in rows[0]:
        raise UsageError("curve folder", f"{path} has no points (or no 'minutes' column)")
    label = f"{config.get('method', folder.name)} {config.get('preset', '')}".strip()
    return Curve(label, str(config.get("clock", "wall")), rows)


def present_metrics(curves: Sequence[Curve]) -> list[str]:
    """The panels' metrics that at least one curve has a value for, in panel order."""
    return [m for m in PANELS if any(not math.isnan(v) for c in curves for v in c.values(m))]


def markdown_table(curves: Sequence[Curve]) -> str:
    """Every point of every curve; each curve's best value per metric in bold."""
    metrics = present_metrics(curves)
    head = ["curve", "minutes", "iteration", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in curves:
        best = {m: c.best(m) for m in metrics}
        for i, row in enumerate(c.rows):
            cells = [c.label, f"{row['minutes']:.1f}", f"{row.get('iteration', math.nan):.0f}"]
            for m in metrics:
                text = f"{row.get(m, math.nan):.4f}"
                cells.append(f"**{text}**" if best[m] == i else text)
            lines.append("| " + " | ".join(cells) + " |")
        floor = [f"{c.rows[0].get(FLOORS[m], math.nan):.4f}" for m in metrics]
        lines.append("| " + " | ".join([f"{c.label}: copy-source", "-", "-", *floor]) + " |")
    return "\n".join(lines)


def plot_comparison(curves: Sequence[Curve], path: Path) -> None:
    """One panel per metric, one line per curve, copy-source floors dashed; PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = present_metrics(curves)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        floors = set()
        for n, c in enumerate(curves):
            colour = f"C{n}"
            ax.plot(c.values("minutes"), c.values(metric), "o-", color=colour, label=c.label)
            floor = c.rows[0].get(FLOORS[metric], math.nan)
            if not math.isnan(floor) and round(floor, 4) not in floors:
                floors.add(round(floor, 4))
                ax.axhline(floor, ls="--", color="grey" if len(floors) == 1 else colour, lw=1)
        ax.set_title(PANELS[metric][0])
        ax.set_xlabel(f"training minutes ({curves[0].clock} clock)")
        ax.grid(alpha=0.3)
    axes[0][0].plot([], [], ls="--", color="grey", label="copy-source")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def compare(folders: Sequence[Path], out: Path) -> str:
    """Read the curves, refuse mixed clocks, write the figure; returns the markdown table."""
    curves = [read_curve(f) for f in folders]
    clocks = {c.clock for c in curves}
    if len(clocks) > 1:
        raise UsageError("curve folder", f"the curves use different clocks ({', '.join(sorted(clocks))})")
    plot_comparison(curves, out)
    return markdown_table(curves)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m generators.quality_compare", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="quality_curve output folders")
    p.add_argument("--out", type=Path, default=Path("runs/curves/compare.png"), help="the figure (PNG)")
    args = p.parse_args(argv)
    try:
        table = compare(args.folders, args.out)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table)
    print(f"[compare] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
