"""``python -m generators.compare``: several ``generators.evaluate`` results side by side.

    python -m generators.compare runs/generators/{patn,pg2,deform,spgnet}-synth/eval/latest --out docs/compare

Reads each evaluation folder (``metrics.json`` and ``grid.png``), checks that they scored the very
same test pairs under the same protocol (same pairs file hash, same number of pairs, same grid rows,
same ``--protocol``), and writes:

  compare.png   one row per grid pair: source | target pose | target | each method's output,
                with a header naming the columns
  compare.md    the metrics table (the first evaluation's metrics, in protocol order; "n/c" where an
                evaluation did not compute one), the copy-source floor (output = source image) last

Nothing is recomputed: the figures are the evaluations' own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from augment.data.atomic import write_atomic
from augment.data.imageio import encode_image, read_rgb
from generators.evaluate import GRID_GAP, METRICS, grid_image
from generators.quality.protocols import DEFAULT_PROTOCOL, METRIC_INFO
from generators.quality.report import figure

STRIP_PANELS = 5  # the official strip: source | source pose | target | target pose | generated
HEADER_H = 18


class CompareError(ValueError):
    """Evaluations that cannot be compared; the message names the folder and the field."""


def load_evaluation(folder: Path) -> dict:
    folder = Path(folder)
    for name in ("metrics.json", "grid.png"):
        if not (folder / name).is_file():
            raise CompareError(
                f"{folder}: no {name} (a generators.evaluate output folder has both; run it with --grid-rows > 0)"
            )
    m = json.loads((folder / "metrics.json").read_text())
    return {"folder": folder, "metrics": m, "grid": read_rgb(folder / "grid.png")}


def split_grid(grid: np.ndarray, panels: int = STRIP_PANELS, gap: int = GRID_GAP) -> list[list[np.ndarray]]:
    """A grid of ``panels``-wide strips (generators.evaluate.grid_image) -> rows of (H, W, 3) panels."""
    h_total, w_total = grid.shape[:2]
    w = (w_total - (panels - 1) * gap) // panels
    if w * panels + (panels - 1) * gap != w_total:
        raise CompareError(f"grid width {w_total} is not {panels} panels with {gap}-pixel gaps")
    # rows: panels of height h separated by gap; rows = (h_total + gap) / (h + gap) for the panel height h
    # read from the first white gap row
    white = (grid == 255).all(axis=(1, 2))
    h = int(np.argmax(white)) if white.any() else h_total
    n = (h_total + gap) // (h + gap)
    if n * h + (n - 1) * gap != h_total:
        raise CompareError(f"grid height {h_total} is not rows of {h} pixels with {gap}-pixel gaps")
    return [
        [grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] for c in range(panels)]
        for r in range(n)
    ]


def label_row(labels: Sequence[str], width: int, gap: int = GRID_GAP) -> np.ndarray:
    """A white header strip with one centred label per column."""
    total = len(labels) * width + (len(labels) - 1) * gap
    img = np.full((HEADER_H, total, 3), 255, np.uint8)
    for i, text in enumerate(labels):
        scale = 0.33
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        x = i * (width + gap) + max(0, (width - tw) // 2)
        cv2.putText(img, text, (x, HEADER_H - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def method_label(m: dict) -> str:
    if m.get("method") == "folder":
        return f"folder {Path(m['folder']['folder']).name}"
    return f"{m['method']}/{m['preset']} it {m['iteration']:,}"


def compare(folders: Sequence[Path]) -> tuple[np.ndarray, str]:
    """(comparison image, Markdown table) for evaluation folders of the same pairs."""
    if not folders:
        raise CompareError("no evaluation folders given")
    evals = [load_evaluation(f) for f in folders]
    ref = evals[0]["metrics"]
    for e in evals[1:]:
        m = e["metrics"]
        for key in ("pairs_sha256", "pairs_evaluated", "dataset_fingerprint", "protocol"):
            if _field(m, key) != _field(ref, key):
                raise CompareError(
                    f"{e['folder']}: {key} {_field(m, key)!r} differs from {evals[0]['folder']}'s "
                    f"{_field(ref, key)!r}: evaluate every checkpoint on the same data, --pairs and --protocol"
                )
    rows_per_eval = [split_grid(e["grid"]) for e in evals]
    n = len(rows_per_eval[0])
    if any(len(r) != n for r in rows_per_eval):
        raise CompareError("the grids have different numbers of rows: evaluate with the same --grid-rows")
    rows = [
        [rows_per_eval[0][r][0], rows_per_eval[0][r][3], rows_per_eval[0][r][2]]
        + [rows_per_eval[k][r][4] for k in range(len(evals))]
        for r in range(n)
    ]
    w = rows[0][0].shape[1]
    names = [e["metrics"]["method"] for e in evals]
    header = label_row(["source", "tgt pose", "target", *names], w)
    body = grid_image(rows)
    image = np.concatenate([header, body], axis=0)

    return image, "\n".join(metrics_table(evals))


def _field(metrics: dict, key: str):
    """A metrics.json field; evaluations from before protocols were named scored under ``direct``."""
    return metrics.get(key, DEFAULT_PROTOCOL) if key == "protocol" else metrics.get(key)


def metrics_table(evals: list[dict]) -> list[str]:
    """The Markdown table of the evaluations' generated rows and the first one's copy-source floor."""
    ref = evals[0]["metrics"]
    metrics = ref.get("metrics", METRICS)
    lines = [
        f"Test pairs: {ref['pairs_evaluated']:,} of {ref['pairs_total']:,} ({ref.get('subset', 'all')}); "
        f"dataset {ref['dataset_fingerprint']}; protocol {_field(ref, 'protocol')}.",
        "",
        "| generator | " + " | ".join(METRIC_TITLES[k] for k in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for e in evals:
        g = e["metrics"]["results"]["generated"]
        lines.append(f"| {method_label(e['metrics'])} | " + " | ".join(_fmt(k, g.get(k)) for k in metrics) + " |")
    floor = ref["results"]["copy_source"]
    lines.append("| copy-source (output = source) | " + " | ".join(_fmt(k, floor.get(k)) for k in metrics) + " |")
    return lines


METRIC_TITLES = {k: m.label for k, m in METRIC_INFO.items()}


def _fmt(metric: str, record: dict | None) -> str:
    return "n/c" if record is None else f"{figure(record):.{METRIC_INFO[metric].decimals}f}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m generators.compare",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("evals", nargs="+", type=Path, help="generators.evaluate output folders")
    p.add_argument("--out", type=Path, required=True, help="output prefix: writes OUT.png and OUT.md")
    a = p.parse_args(argv)
    try:
        image, table = compare(a.evals)
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    a.out.parent.mkdir(parents=True, exist_ok=True)
    png, md = a.out.with_suffix(".png"), a.out.with_suffix(".md")
    write_atomic(png, encode_image(image, ".png"))
    write_atomic(md, (table + "\n").encode())
    print(table)
    print(f"[compare] wrote {png} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
