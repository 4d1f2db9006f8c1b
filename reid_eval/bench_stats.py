"""Statistics of a bench's results: each row's recovery, and the mean, spread and count of every cell over seeds.

Recovery (Rank-1): how much of the gap between the reduced set and the full real set a method closes,

    recovery = (method - none-iters) / (full - none-iters)

- per seed (``results.csv``, column ``recovery``): ``method`` is the row's Rank-1; ``none-iters`` the Rank-1 of
  the ``none-iters`` cell of the same model, recipe, portion and seed (same kept set, same steps and images
  seen); ``full`` the Rank-1 at p = 1.0 of the same model, recipe and seed, or, where that seed has no p = 1.0
  cell, the mean over the p = 1.0 seeds that ran (the default grid runs the ceiling with one seed). 0 means no
  better than training longer on the kept images, 1 as good as the full real set; negative is worse than
  ``none-iters``. Defined for portion cells with p < 1 only (NaN for p = 1, ratios, and where ``none-iters``,
  the ceiling or a positive gap is missing).
- in the summary: ``recovery_mean`` and ``recovery_std`` are the mean and spread of the per-seed values (paired by
  seed, so the kept set's luck, shared by a method and its ``none-iters``, cancels); ``recovery_of_means`` is
  the same formula on the cells' mean Rank-1 values, for comparison.

Spread: ``*_std`` is the sample standard deviation over seeds (ddof 1), NaN for a single seed; ``n`` counts seeds.
The Table-4 grid adds the Rank-1 and mAP of the distances learnt on each cell's features (``LEARNT``), summarised
the same way; its cells are told apart by their training length and loss too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CELL_KEYS", "METRICS", "LEARNT", "LEARNT_METRICS", "ceiling", "add_recovery", "summarize", "recovery"]

# a cell, all seeds together
CELL_KEYS = ["model", "recipe", "method", "generator_data", "protocol", "value", "length", "loss"]
METRICS = ["rank1_pct", "rank5_pct", "map_pct", "cuhk03_rank1_pct"]
LEARNT = ("euclidean", "xqda", "kissme")  # distances learnt on a Table-4 cell's pooled features
LEARNT_METRICS = [f"{name}_{m}_pct" for name in LEARNT for m in ("rank1", "map")]
COUNTS = ["train_images", "generated_images", "iterations", "images_seen"]
MIN_GAP = 1e-9  # full - none-iters must be positive for recovery to mean anything


def recovery(method: float, none_iters: float, full: float) -> float:
    """(method - none_iters) / (full - none_iters); NaN where a value is missing or the gap is not positive."""
    gap = full - none_iters
    if not np.isfinite(method) or not np.isfinite(gap) or gap <= MIN_GAP:
        return float("nan")
    return float((method - none_iters) / gap)


def _is_full(results: pd.DataFrame) -> pd.Series:
    return (results["protocol"] == "portion") & (results["value"] >= 1.0)


def ceiling(results: pd.DataFrame) -> tuple[dict, dict]:
    """Rank-1 of the full real set: ({(model, recipe, seed): value}, {(model, recipe): mean over seeds}).

    Every p = 1.0 cell of a model and seed trains on the same real set (the bench trains it once), so their
    Rank-1 values agree; their mean is taken all the same."""
    full = results[_is_full(results)]
    if full.empty:
        return {}, {}
    per_seed = full.groupby(["model", "recipe", "seed"])["rank1_pct"].mean()
    means = per_seed.groupby(level=["model", "recipe"]).mean()
    return {k: float(v) for k, v in per_seed.items()}, {k: float(v) for k, v in means.items()}


def add_recovery(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with its ``recovery`` column filled, per seed (see the module docstring)."""
    results = results.copy()
    if results.empty:
        return results
    per_seed, means = ceiling(results)
    ni = results[(results["method"] == "none-iters") & (results["protocol"] == "portion")]
    ni = ni.groupby(["model", "recipe", "value", "seed"])["rank1_pct"].mean().to_dict()
    values = []
    for r in results.itertuples(index=False):
        if r.protocol != "portion" or r.value >= 1.0:
            values.append(np.nan)
            continue
        full = per_seed.get((r.model, r.recipe, r.seed), means.get((r.model, r.recipe), np.nan))
        values.append(recovery(r.rank1_pct, ni.get((r.model, r.recipe, r.value, r.seed), np.nan), full))
    results["recovery"] = values
    return results


def _std(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (CELL_KEYS): n and the seeds; mean and std of each metric (the learnt distances' too,
    where the results have them) and of the recovery (with its own n: seeds where it is defined);
    recovery_of_means; the mean set size, steps and images seen."""
    keys = [k for k in CELL_KEYS if k in results.columns]  # results written before length and loss lack them
    metrics = METRICS + [m for m in LEARNT_METRICS if m in results.columns]
    columns = [*keys, "column", "n", "seeds"]
    columns += [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    columns += ["recovery_mean", "recovery_std", "recovery_n", "recovery_of_means", *COUNTS]
    if results.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, group in results.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key))
        row.update(column=group["column"].iloc[0], n=len(group), seeds=" ".join(map(str, sorted(group["seed"]))))
        for m in metrics:
            row[f"{m}_mean"], row[f"{m}_std"] = float(group[m].mean()), _std(group[m])
        rec = group["recovery"].dropna()
        row.update(recovery_mean=float(rec.mean()) if len(rec) else np.nan, recovery_std=_std(rec))
        row["recovery_n"] = len(rec)
        row.update({c: float(group[c].mean()) for c in COUNTS})
        rows.append(row)
    summary = pd.DataFrame(rows, columns=columns)
    summary["recovery_of_means"] = _recovery_of_means(summary, results)
    return summary


def _recovery_of_means(summary: pd.DataFrame, results: pd.DataFrame) -> list[float]:
    _, full_means = ceiling(results)
    ni = summary[(summary["method"] == "none-iters") & (summary["protocol"] == "portion")]
    ni = {(r.model, r.recipe, r.value): r.rank1_pct_mean for r in ni.itertuples(index=False)}
    out = []
    for r in summary.itertuples(index=False):
        if r.protocol != "portion" or r.value >= 1.0:
            out.append(np.nan)
            continue
        full = full_means.get((r.model, r.recipe), np.nan)
        out.append(recovery(r.rank1_pct_mean, ni.get((r.model, r.recipe, r.value), np.nan), full))
    return out
