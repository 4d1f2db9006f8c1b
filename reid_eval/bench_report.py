"""The bench's outputs beside the published numbers: results, summary, the Table-5 Markdown and the plot.

``results`` is the bench's results table (:data:`RESULT_COLUMNS`: one row per finished cell and seed, percent
columns end in ``_pct``); its statistics over seeds come from ``reid_eval.bench_stats``, the published side from
``reid_eval.published``. The Table-4 grid (``--table deform4``) writes the same files, its Markdown and plot
from ``reid_eval.bench_table4``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reid_eval import published
from reid_eval.bench_stats import LEARNT_METRICS, summarize

__all__ = ["RESULT_COLUMNS", "as_rows", "row_label", "render_markdown", "plot_rank1", "write_outputs"]

RESULT_COLUMNS = [
    # the columns other tools rely on (one row per cell and seed)
    "model",
    "recipe",
    "method",
    "generator_data",
    "protocol",
    "value",
    "seed",
    "train_images",
    "generated_images",
    "iterations",
    "images_seen",
    "rank1_pct",
    "rank5_pct",
    "map_pct",
    "cuhk03_rank1_pct",
    "recovery",
    # more about the cell and how it ran
    "images_per_epoch",
    "rank10_pct",
    "column",
    "real_images",
    "train_ids",
    "epochs",
    "batch_size",
    "generator",
    "imagenet_weights",
    "train_seconds",
    "eval_seconds",
    "set_seconds",
    "seconds",
    "reused_from",
    "cell_dir",
    "set_dir",
    "set_seed",  # the seed of the set's plan (--set-seeds first: the first seed's for every cell)
    # the Table-4 grid (--table deform4): how long A trained, the loss, the distances learnt on the features
    "length",
    "loss",
    *LEARNT_METRICS,
]
NO_GENERATOR_METHODS = ("none", "none-iters", "copy")  # rows without a generator-training regime ('-')
RECOVERY_NOTE = (
    "recovery = (method - none-iters) / (full - none-iters) on Rank-1: per seed (the same seed's none-iters, and "
    "its p = 1.0 cell, else the mean p = 1.0), then mean ± std over seeds; 0 = no better than training as long on "
    "the kept images, 1 = as good as the full real set"
)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _spread(mean: float | None, std: float | None, digits: int = 1) -> str:
    """'12.3 ± 1.4', or '12.3' for one seed (no spread), '–' for nothing."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def as_rows(methods: Sequence) -> list[tuple[str, str]]:
    """(method, generator_data) rows: tuples as given; a bare method name is a control or ``copy`` ('-') or
    a generator trained on the full split ('full')."""
    out = []
    for m in methods:
        if isinstance(m, str):
            m = (m, "-" if m in NO_GENERATOR_METHODS else "full")
        out.append(tuple(m))
    return out


def row_label(method: str, regime: str, model: str) -> str:
    """'PATN, disjoint (Inception)'; no regime for the controls and copy."""
    regime_text = f", {regime}" if regime not in ("-", "") else ""
    return f"{published.method_label(method)}{regime_text} ({published.model_label(model)})"


def _columns(portions: Sequence[float], ratios: Sequence[int]) -> list:
    return [published.column_key(portion=p) for p in portions] + [published.column_key(ratio=r) for r in ratios]


def _header(columns: list) -> str:
    labels = [f"{c:.1f}" if isinstance(c, float) else c for c in columns]
    return "| method (model) | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels) + "\n"


def _by_cell(summary: pd.DataFrame) -> dict:
    """(model, method, generator_data, column) -> the summary row."""
    return {(r.model, r.method, r.generator_data, str(r.column)): r for r in summary.itertuples(index=False)}


def _main_table(summary: pd.DataFrame, models, rows, columns) -> list[str]:
    ours = _by_cell(summary)
    lines = [_header(columns)]
    for model in models:
        for method, regime in rows:
            cells = []
            for col in columns:
                r = ours.get((model, method, regime, str(col)))
                mine = _spread(r.rank1_pct_mean, r.rank1_pct_std) if r is not None else "–"
                # the published protocol only: None, and generators trained on the whole training split
                theirs = published.published_value(method, model, col) if regime in ("-", "full") else None
                cells.append(f"{mine} / {_fmt(theirs)}")
            lines.append(f"| {row_label(method, regime, model)} | " + " | ".join(cells) + " |\n")
    return lines


def _detail_table(summary: pd.DataFrame, results: pd.DataFrame) -> list[str]:
    lines = [
        "| model | p / ratio | method | generator data | n | Rank-1 | mAP | cuhk03 Rank-1 | recovery | steps | "
        "images seen | train images (generated) | seconds |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    ]
    for r in summary.itertuples(index=False):
        col = f"p={r.column}" if r.protocol == "portion" else r.column
        mine = results[
            (results["model"] == r.model)
            & (results["method"] == r.method)
            & (results["generator_data"] == r.generator_data)
            & (results["column"] == r.column)
        ]
        reused = bool((mine["reused_from"] != "").all())
        secs = "reused" if reused else f"{mine['seconds'].sum():.0f}"
        lines.append(
            f"| {published.model_label(r.model)} | {col} | {published.method_label(r.method)} | {r.generator_data} | "
            f"{r.n} | {_spread(r.rank1_pct_mean, r.rank1_pct_std)} | {_spread(r.map_pct_mean, r.map_pct_std)} | "
            f"{_spread(r.cuhk03_rank1_pct_mean, r.cuhk03_rank1_pct_std)} | "
            f"{_spread(r.recovery_mean, r.recovery_std, 2)} | {r.iterations:.0f} | {r.images_seen:.0f} | "
            f"{r.train_images:.0f} ({r.generated_images:.0f}) | {secs} |\n"
        )
    return lines


def render_markdown(
    results: pd.DataFrame,
    models: Sequence[str],
    methods: Sequence,
    portions: Sequence[float],
    ratios: Sequence[int],
    recipe: str = "",
    data: str = "",
    skipped: Sequence[str] = (),
) -> str:
    """Markdown: the Table-5 layout with "ours / published" Rank-1 (%) (ours: mean ± std over seeds), the
    cells with their controls, spread, recovery, steps and images seen, the skipped cells, and the published
    Table 5 with its source. ``methods``: (method, generator_data) rows (see :func:`as_rows`)."""
    summary = summarize(results)
    columns = _columns(portions, ratios)
    seeds = sorted(results["seed"].unique().tolist()) if not results.empty else []
    lines = [
        "# Re-ID Rank-1 (%) vs portion of real training data: ours / published\n\n",
        f"Ours: {data}, recipe `{recipe}`, Rank-1 = Market-1501 CMC (torchreid), mean ± std over seeds {seeds} "
        "(n per cell below; one seed: no spread). A row per method and generator-training regime (full: the "
        "whole training split, kept: the kept images only, disjoint: other identities). "
        f'Published: {published.PATN_SOURCE}, for its own protocol only. "–": not run / not published.\n\n',
        *_main_table(summary, models, as_rows(methods), columns),
        f"\n## Cells: controls, spread and recovery\n\n{RECOVERY_NOTE}. Steps and images seen: of one training "
        "(none-iters: as many as the generated set of its p and seed).\n\n",
        *_detail_table(summary, results),
    ]
    if skipped:
        lines.append("\n## Skipped cells\n\n" + "".join(f"- {s}\n" for s in skipped))
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
    methods: Sequence,
    portions: Sequence[float],
    ratios: Sequence[int],
    path: str | os.PathLike,
) -> Path:
    """Rank-1 (%) vs p (and 2x/3x to the right): one colour per (method, regime) row, a marker per model; ours
    solid with error bars (± std over seeds), published dashed. Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratio_x = {f"{r}x": 1.0 + 0.15 * (k + 1) for k, r in enumerate(sorted(set(ratios) | {2, 3}))}

    def x_of(col) -> float:
        return ratio_x[col] if isinstance(col, str) else float(col)

    colours = plt.get_cmap("tab10")
    markers = ["o", "s", "^", "D"]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    ours = _by_cell(summarize(results))
    for mi, model in enumerate(models):
        for ci, (method, regime) in enumerate(as_rows(methods)):
            colour, marker = colours(ci % 10), markers[mi % len(markers)]
            label = row_label(method, regime, model)
            cols = _columns(portions, [] if method == "none" else ratios)
            found = [(x_of(c), ours[k]) for c in cols if (k := (model, method, regime, str(c))) in ours]
            pts = sorted(
                (x, r.rank1_pct_mean, 0.0 if math.isnan(r.rank1_pct_std) else r.rank1_pct_std) for x, r in found
            )
            if pts:
                xs, ys, errs = zip(*pts)
                ax.errorbar(xs, ys, yerr=errs, fmt="-", color=colour, marker=marker, capsize=3, label=f"{label} ours")
            row = published.PATN_TABLE5.get((method, model)) if regime in ("-", "full") else None
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
    ax.set_ylabel("Rank-1 (%), mean ± std over seeds")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title("Re-ID Rank-1 vs training data: ours (solid) vs PATN Table 5 (dashed)")
    if ax.get_legend_handles_labels()[0]:  # nothing to label before the first cell finishes
        ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def data_label(opts) -> str:
    return str(opts.data) if opts.data else "embedded dataset (data/synth-market)"


def write_outputs(results: pd.DataFrame, opts, rows: Sequence | None = None, skipped: Sequence[str] = ()) -> dict:
    """results.csv, results.parquet, summary.csv, table.md and the plot (rank1.png; table4.png for
    ``--table deform4``) under ``opts.out`` (a reid_eval.bench.BenchOptions); ``rows``: the table's
    (method, generator_data) rows (default: opts.methods)."""
    out = Path(opts.out)
    table = getattr(opts, "table", "patn5")
    paths = {
        "csv": out / "results.csv",
        "parquet": out / "results.parquet",
        "summary": out / "summary.csv",
        "table": out / "table.md",
        "plot": out / ("table4.png" if table == "deform4" else "rank1.png"),
    }
    rows = list(rows) if rows is not None else as_rows(opts.methods)
    results.to_csv(paths["csv"], index=False)
    results.to_parquet(paths["parquet"], index=False)
    summarize(results).to_csv(paths["summary"], index=False)
    if table == "deform4":
        from reid_eval.bench_table4 import plot_table4, render_table4

        text = render_table4(results, opts, rows, skipped)
        plot_table4(results, opts, rows, paths["plot"])
        paths["table"].write_text(text)
        return {**paths, "table_text": text}
    text = render_markdown(
        results,
        opts.models,
        rows,
        opts.portions,
        opts.ratios,
        recipe=opts.recipe,
        data=data_label(opts),
        skipped=skipped,
    )
    paths["table"].write_text(text)
    plot_rank1(results, opts.models, rows, opts.portions, opts.ratios, paths["plot"])
    paths["table_text"] = text
    return paths
