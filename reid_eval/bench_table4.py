"""The Deformable GAN's appendix Table 4 in the bench (``--table deform4``): its grid, its Markdown table and plot.

The question (Siarohin et al., CVPR 2018, appendix): keep every real training image (the standard set T) and add
K generated images per real image, target poses of any identity, labelled with the source identity (the
augmented set A; K = 10 in the paper); does re-ID trained on A beat re-ID trained on T, for four re-ID methods:
IDE + Euclidean, IDE + XQDA, IDE + KISSME (the softmax model's features with a learnt distance:
``reid_eval.features``, ``reid_eval.metric_learning``) and the Discriminative Embedding (identification +
verification: ``reid_eval.siamese``, scored with the Euclidean distance on its features)?

Cells (``reid_eval.bench_grid``, protocol ``poses``, value K), each per seed (the plan's and the training's):

- ``none``: T for the recipe's epochs (Table 4's T column);
- a generator (``deform``, ...) once per regime: A, for each of ``--lengths``: ``t-steps`` (T's steps: each epoch
  draws |T| images of A with replacement) or ``epochs`` (the recipe's epochs over A: 11x T's steps at K = 10)
  (Table 4's A column);
- ``none-iters``: T for as many steps as A trains in the recipe's epochs (more steps alone: the control of A at
  ``epochs``);
- ``copy``: A with every generated image a copy of its source (K copies), for each of ``--lengths`` (more copies,
  no new pose).

At ``t-steps`` A and T train the same steps, batch and schedule and see as many images: the fair comparison, and
the one the default grid runs. At ``epochs`` A trains about K + 1 times longer than T, as a fixed number of epochs
does; ``none-iters`` then tells how much of A's gain is training longer. ``--reid-methods`` picks Table 4's rows:
``euclidean``, ``xqda`` and ``kissme`` are fitted and scored on every softmax cell's pooled features (the IDE);
``embedding`` adds every cell once more with ``loss`` ``siamese`` (scored with ``euclidean``).

The default grid (embedded dataset, Open-ReID Inception, recipe ``cpu``; ``python -m reid_eval.bench --table
deform4``): the Deformable GAN (Table 4's generator; its ``synth`` preset, regime ``full``: one generator for every
seed), K = 10, T and A at ``t-steps``, IDE + Euclidean / XQDA / KISSME, seeds 0, 1, 2: 6 re-ID trainings, every one
1,909 images' worth of steps per epoch (464 steps of 64 over 16 epochs), one generator training (1,800
iterations), one A set for every seed (``--set-seeds first``: 18,830 generated images, 20,739 with the real ones), and
features of 3,797 (T) or 22,627 (A) images per cell for the metric learning. The estimate in minutes and its
reasoning: docs/reid.md#table-4-the-k-poses-grid. The full grid adds ``none-iters``, ``copy``, the fixed-epoch A,
the Discriminative Embedding, ``disjoint`` and ResNet-50 (the command is there too).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reid_eval import published
from reid_eval.bench_grid import CONTROLS, EPOCHS, NO_GENERATOR, T_STEPS, TABLE4_METHODS
from reid_eval.bench_report import _fmt, _spread, data_label
from reid_eval.bench_stats import summarize

__all__ = ["LENGTH_TEXT", "a_rows", "render_table4", "plot_table4"]

LENGTH_TEXT = {
    T_STEPS: "trained for T's steps (|T| images of A drawn per epoch: the fair comparison)",
    EPOCHS: "trained for the recipe's epochs over A (about K + 1 times T's steps, as a fixed number of epochs does)",
}


def a_rows(rows: Sequence[tuple[str, str]], lengths: Sequence[str]) -> list[tuple[str, str, str]]:
    """(method, generator_data, length) of every augmented-set block: the non-control rows at each length."""
    return [(m, g, length) for m, g in rows if m not in CONTROLS for length in lengths]


def _lookup(summary: pd.DataFrame) -> dict:
    """(model, method, generator_data, length, loss) -> the summary row."""
    return {(r.model, r.method, r.generator_data, r.length, r.loss): r for r in summary.itertuples(index=False)}


def _learnt(row, learner: str, what: str) -> str:
    """Mean ± std of a learnt distance's Rank-1 or mAP (what: 'rank1' | 'map') in a summary row, or '–'."""
    if row is None:
        return "–"
    return _spread(getattr(row, f"{learner}_{what}_pct_mean", None), getattr(row, f"{learner}_{what}_pct_std", None))


def _a_label(method: str, regime: str, length: str, k: int) -> str:
    regime_text = f", {regime}" if regime != NO_GENERATOR else ""
    return f"A = T + {k} {published.method_label(method)}{regime_text} images per real image, {LENGTH_TEXT[length]}"


def _block(cells: dict, model: str, a_row: tuple[str, str, str], k: int) -> list[str]:
    """One Table-4 layout: the four re-ID methods x (T, A) x (Rank-1, mAP), ours / published."""
    method, regime, length = a_row
    lines = [
        f"\n### {published.model_label(model)}: {_a_label(method, regime, length, k)}\n\n",
        "| re-ID method | T Rank-1 | T mAP | A Rank-1 | A mAP |\n|---|---|---|---|---|\n",
    ]
    theirs_a = method == "deform" and regime == "full"  # the paper's A: Deformable GAN images, its generator
    for label, loss, learner in TABLE4_METHODS.values():
        t_row = cells.get((model, "none", NO_GENERATOR, EPOCHS, loss))
        a_row_ = cells.get((model, method, regime, length, loss))
        pub = published.DEFORM_TABLE4[label]
        values = [
            f"{_learnt(t_row, learner, 'rank1')} / {_fmt(pub[0])}",
            f"{_learnt(t_row, learner, 'map')} / {_fmt(pub[1])}",
            f"{_learnt(a_row_, learner, 'rank1')} / {_fmt(pub[2] if theirs_a else None)}",
            f"{_learnt(a_row_, learner, 'map')} / {_fmt(pub[3] if theirs_a else None)}",
        ]
        lines.append(f"| {label} | " + " | ".join(values) + " |\n")
    return lines


def _detail(summary: pd.DataFrame) -> list[str]:
    lines = [
        "| model | set | method | generator data | trained for | loss | n | steps | images seen | "
        "train images (generated) | own evaluation Rank-1 / mAP | Euclidean Rank-1 / mAP | XQDA Rank-1 / mAP | "
        "KISSME Rank-1 / mAP |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    ]
    for r in summary.itertuples(index=False):
        own = f"{_spread(r.rank1_pct_mean, r.rank1_pct_std)} / {_spread(r.map_pct_mean, r.map_pct_std)}"
        learnt = [f"{_learnt(r, n, 'rank1')} / {_learnt(r, n, 'map')}" for n in ("euclidean", "xqda", "kissme")]
        length = "T's steps" if r.length == T_STEPS else ("A's steps" if r.method == "none-iters" else "epochs")
        lines.append(
            f"| {published.model_label(r.model)} | {r.column} | {published.method_label(r.method)} | "
            f"{r.generator_data} | {length} | {r.loss} | {r.n} | {r.iterations:.0f} | {r.images_seen:.0f} | "
            f"{r.train_images:.0f} ({r.generated_images:.0f}) | {own} | " + " | ".join(learnt) + " |\n"
        )
    return lines


def _set_text(opts) -> str:
    seed = getattr(opts, "set_seed", None)
    if seed is None:
        return "; each seed plans its own A (target poses)"
    return f"; one generator and one A (planned with seed {seed}) for every seed: the spread is the re-ID training's"


def _published() -> list[str]:
    lines = [
        f"\n## Published: {published.DEFORM_SOURCE}\n\n",
        "| re-ID method | T Rank-1 | T mAP | A Rank-1 | A mAP |\n|---|---|---|---|---|\n",
    ]
    for label, values in published.DEFORM_TABLE4.items():
        lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in values) + " |\n")
    return lines


def render_table4(results: pd.DataFrame, opts, rows: Sequence[tuple[str, str]], skipped: Sequence[str] = ()) -> str:
    """Markdown: per model and augmented set, Table 4's layout with ours (mean ± std over seeds) / published
    Rank-1 and mAP (%); then every cell (controls included) with steps, images seen, its own evaluation and
    each learnt distance; skipped cells; the published table. ``opts``: a reid_eval.bench.BenchOptions."""
    summary = summarize(results)
    cells = _lookup(summary)
    k = opts.poses_per_image
    seeds = sorted(results["seed"].unique().tolist()) if not results.empty else []
    lines = [
        f"# Re-ID on the real training set T and the augmented set A (K = {k}): ours / published\n\n",
        f"Ours: {data_label(opts)}, recipe `{opts.recipe}`, mean ± std over seeds {seeds} (n per cell below; one "
        f"seed: no spread){_set_text(opts)}. IDE = the softmax model; its features for Euclidean, XQDA and KISSME "
        "are the pooled backbone features (pool5; Inception 1536-d, ResNet-50 2048-d), L2-normalised; KISSME "
        "after PCA, XQDA on the features (docs/metric-learning.md). Discriminative Embedding = the identification "
        "+ verification model, Euclidean on its pooled features. Rank-1 = Market-1501 CMC (torchreid), mAP "
        f"torchreid's. Published: {published.DEFORM_SOURCE} (A: its Deformable GAN's images). "
        '"–": not run / not published.\n',
    ]
    for model in opts.models:
        for a_row in a_rows(rows, opts.lengths):
            lines += _block(cells, model, a_row, k)
    lines.append(
        "\n## Cells: controls, steps and every distance\n\nT's steps: A drawn |T| images per epoch; A's steps "
        "(none-iters): T drawn as many images per epoch as A holds. Own evaluation: the training's own (the "
        "model's eval output, squared Euclidean).\n\n"
    )
    lines += _detail(summary)
    if skipped:
        lines.append("\n## Skipped cells\n\n" + "".join(f"- {s}\n" for s in skipped))
    lines += _published()
    return "".join(lines)


def _bars(cells: dict, model: str, blocks: list) -> list[tuple[str, list, list, list, list]]:
    """(label, Rank-1 means, Rank-1 stds, mAP means, mAP stds) per bar series, one value per Table-4 row."""
    series = []
    for name, key in [("T", ("none", NO_GENERATOR, EPOCHS))] + [
        (f"A: {published.method_label(m)}{'' if g == NO_GENERATOR else ', ' + g}, {length}", (m, g, length))
        for m, g, length in blocks
    ]:
        values = [[], [], [], []]
        for _, loss, learner in TABLE4_METHODS.values():
            row = cells.get((model, *key, loss))
            for i, what in enumerate(("rank1_pct_mean", "rank1_pct_std", "map_pct_mean", "map_pct_std")):
                v = getattr(row, f"{learner}_{what}", math.nan) if row is not None else math.nan
                values[i].append(0.0 if what.endswith("std") and math.isnan(v) else v)
        series.append((name, *values))
    return series


def plot_table4(results: pd.DataFrame, opts, rows: Sequence[tuple[str, str]], path: str | os.PathLike) -> Path:
    """Grouped bars per Table-4 row, Rank-1 (left) and mAP (right), one figure row per model: ours (mean ± std
    over seeds) for T and each augmented set, the published T and A hatched. Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = _lookup(summarize(results))
    labels = [label for label, _, _ in TABLE4_METHODS.values()]
    pub = np.array([published.DEFORM_TABLE4[label] for label in labels])
    models = list(opts.models)
    fig, axes = plt.subplots(len(models), 2, figsize=(12, 4.5 * len(models)), dpi=110, squeeze=False)
    for mi, model in enumerate(models):
        series = [("published T", pub[:, 0], None, pub[:, 1], None)]
        series += _bars(cells, model, a_rows(rows, opts.lengths))
        series.insert(2, ("published A", pub[:, 2], None, pub[:, 3], None))
        width = 0.8 / len(series)
        x = np.arange(len(labels))
        for col, (title, offset) in enumerate((("Rank-1 (%)", 1), ("mAP (%)", 3))):
            ax = axes[mi][col]
            for si, s in enumerate(series):
                hatched = s[0].startswith("published")
                colour = f"C{max(0, si - 2) if si > 2 else si // 2}"  # published T like T, published A like A's first
                ax.bar(
                    x + (si - (len(series) - 1) / 2) * width,
                    s[offset],
                    width,
                    yerr=s[offset + 1],
                    capsize=2,
                    label=s[0],
                    color=colour,
                    hatch="//" if hatched else None,
                    alpha=0.4 if hatched else 0.9,
                )
            ax.set_xticks(x, labels, fontsize=8)
            ax.set_ylim(0, 100)
            ax.set_ylabel(title)
            ax.set_title(f"{published.model_label(model)}: {title}, T vs A (K = {opts.poses_per_image})", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        axes[mi][1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
