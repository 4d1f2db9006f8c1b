"""The bench's outputs beside the published numbers: the Table-5 Markdown and the Rank-1 plot.

``results`` is the bench's results table (``reid_eval.bench.RESULT_COLUMNS``: one row per finished
cell, percent columns end in ``_pct``); the published side comes from ``reid_eval.published``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reid_eval import published

__all__ = ["RESULT_COLUMNS", "render_markdown", "plot_rank1", "write_outputs"]

RESULT_COLUMNS = [
    "model",
    "recipe",
    "method",
    "protocol",
    "p",
    "ratio",
    "column",
    "seed",
    "rank1_pct",
    "rank5_pct",
    "rank10_pct",
    "mAP_pct",
    "cuhk03_rank1_pct",
    "train_images",
    "real_images",
    "generated_images",
    "train_ids",
    "epochs",
    "imagenet_weights",
    "train_seconds",
    "eval_seconds",
    "set_seconds",
    "seconds",
    "reused_from",
    "cell_dir",
    "set_dir",
]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _columns(portions: Sequence[float], ratios: Sequence[int]) -> list:
    return [published.column_key(portion=p) for p in portions] + [published.column_key(ratio=r) for r in ratios]


def _header(columns: list) -> str:
    labels = [f"{c:.1f}" if isinstance(c, float) else c for c in columns]
    return "| method (model) | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels) + "\n"


def _mean_by_cell(results: pd.DataFrame, metric: str) -> dict:
    """(model, method, column) -> (mean over seeds, number of seeds)."""
    if results.empty:
        return {}
    grouped = results.groupby(["model", "method", "column"])[metric].agg(["mean", "count"])
    return {key: (float(row["mean"]), int(row["count"])) for key, row in grouped.iterrows()}


def render_markdown(
    results: pd.DataFrame,
    models: Sequence[str],
    methods: Sequence[str],
    portions: Sequence[float],
    ratios: Sequence[int],
    recipe: str = "",
    data: str = "",
) -> str:
    """Markdown: the Table-5 layout with "ours / published" Rank-1 (%), our cells in detail, and the published
    Table 5 with its source. Ours: Market-1501 CMC Rank-1 (torchreid's), mean over seeds."""
    columns = _columns(portions, ratios)
    ours = _mean_by_cell(results, "rank1_pct")
    seeds = sorted(results["seed"].unique().tolist()) if not results.empty else []
    lines = [
        "# Re-ID Rank-1 (%) vs portion of real training data: ours / published\n\n",
        f"Ours: {data}, recipe `{recipe}`, Rank-1 = Market-1501 CMC (torchreid), mean over seeds {seeds}. "
        f'Published: {published.PATN_SOURCE}. "–": not run / not published.\n\n',
        _header(columns),
    ]
    for model in models:
        for method in methods:
            cells = []
            for col in columns:
                if isinstance(col, str) and method == "none":
                    mine = None  # the reduced-only protocol has no 2x/3x
                else:
                    mine = ours.get((model, method, str(col)), (None, 0))[0]
                theirs = published.published_value(method, model, col)
                cells.append(f"{_fmt(mine)} / {_fmt(theirs)}")
            label = f"{published.method_label(method)} ({published.model_label(model)})"
            lines.append(f"| {label} | " + " | ".join(cells) + " |\n")
    lines.append(
        "\n## Our cells\n\n| model | method | p / ratio | seeds | Rank-1 | Rank-5 | mAP | cuhk03 Rank-1 | "
        "train images (generated) | seconds |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    if not results.empty:
        detail = (
            results.groupby(["model", "method", "protocol", "column"], sort=False)
            .agg(
                seeds=("seed", "count"),
                rank1=("rank1_pct", "mean"),
                rank5=("rank5_pct", "mean"),
                mAP=("mAP_pct", "mean"),
                cuhk03=("cuhk03_rank1_pct", "mean"),
                images=("train_images", "mean"),
                generated=("generated_images", "mean"),
                seconds=("seconds", "sum"),
                reused=("reused_from", lambda s: bool((s != "").all())),
            )
            .reset_index()
        )
        for _, r in detail.iterrows():
            col = f"p={r['column']}" if r["protocol"] == "portion" else r["column"]
            secs = "reused" if r["reused"] else f"{r['seconds']:.0f}"
            lines.append(
                f"| {published.model_label(r['model'])} | {published.method_label(r['method'])} | {col} | "
                f"{r['seeds']} | {r['rank1']:.1f} | {r['rank5']:.1f} | {r['mAP']:.1f} | {r['cuhk03']:.1f} | "
                f"{r['images']:.0f} ({r['generated']:.0f}) | {secs} |\n"
            )
    lines.append(f"\n## Published: {published.PATN_SOURCE}\n\n")
    all_columns = _columns(published.PATN_PORTIONS, published.PATN_RATIOS)
    lines.append(_header(all_columns))
    for (method, model), row in published.PATN_TABLE5.items():
        label = f"{published.method_label(method)} ({published.model_label(model)})"
        lines.append(f"| {label} | " + " | ".join(_fmt(row.get(c)) for c in all_columns) + " |\n")
    return "".join(lines)


# -------------------------------------------------------------------------------------------------- plot
def plot_rank1(
    results: pd.DataFrame,
    models: Sequence[str],
    methods: Sequence[str],
    portions: Sequence[float],
    ratios: Sequence[int],
    path: str | os.PathLike,
) -> Path:
    """Rank-1 (%) vs p (and 2x/3x to the right): one colour per method, a marker per model; ours solid,
    published dashed. Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratio_x = {f"{r}x": 1.0 + 0.15 * (k + 1) for k, r in enumerate(sorted(set(ratios) | {2, 3}))}

    def x_of(col) -> float:
        return ratio_x[col] if isinstance(col, str) else float(col)

    colours = plt.get_cmap("tab10")
    markers = ["o", "s", "^", "D"]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    ours = _mean_by_cell(results, "rank1_pct")
    for mi, model in enumerate(models):
        for ci, method in enumerate(methods):
            colour, marker = colours(ci % 10), markers[mi % len(markers)]
            label = f"{published.method_label(method)} ({published.model_label(model)})"
            cols = _columns(portions, [] if method == "none" else ratios)
            pts = [(x_of(c), ours[(model, method, str(c))][0]) for c in cols if (model, method, str(c)) in ours]
            if pts:
                xs, ys = zip(*sorted(pts))
                ax.plot(xs, ys, "-", color=colour, marker=marker, label=f"{label} ours")
            row = published.PATN_TABLE5.get((method, model))
            if row:
                pub = sorted((x_of(c), v) for c, v in row.items() if not isinstance(c, str) or int(c[:-1]) in ratios)
                xs, ys = zip(*pub)
                ax.plot(
                    xs,
                    ys,
                    "--",
                    color=colour,
                    marker=marker,
                    markerfacecolor="none",
                    alpha=0.8,
                    label=f"{label} published",
                )
    ticks = [0.1 * k for k in range(1, 11)] + [ratio_x[f"{r}x"] for r in sorted(ratios)]
    ax.set_xticks(ticks, [f"{t:.1f}" for t in ticks[:10]] + [f"{r}x" for r in sorted(ratios)])
    if ratios:
        ax.axvline(1.075, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("portion p of the real training images (then augmentation ratio)")
    ax.set_ylabel("Rank-1 (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title("Re-ID Rank-1 vs training data: ours (solid) vs PATN Table 5 (dashed)")
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def write_outputs(results: pd.DataFrame, opts) -> dict:
    """results.csv, results.parquet, table.md and rank1.png under ``opts.out`` (a reid_eval.bench.BenchOptions)."""
    out = Path(opts.out)
    paths = {
        "csv": out / "results.csv",
        "parquet": out / "results.parquet",
        "table": out / "table.md",
        "plot": out / "rank1.png",
    }
    results.to_csv(paths["csv"], index=False)
    results.to_parquet(paths["parquet"], index=False)
    text = render_markdown(
        results,
        opts.models,
        opts.methods,
        opts.portions,
        opts.ratios,
        recipe=opts.recipe,
        data=str(opts.data) if opts.data else "embedded dataset (data/synth-market)",
    )
    paths["table"].write_text(text)
    plot_rank1(results, opts.models, opts.methods, opts.portions, opts.ratios, paths["plot"])
    paths["table_text"] = text
    return paths
