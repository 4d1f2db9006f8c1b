"""Published re-ID numbers shown beside ours (all in percent).

Sources (the tables and how they were read: docs/reid.md#published-numbers):

* ``PATN_TABLE5``: Zhu et al., "Progressive Pose Attention Transfer for Person Image Generation", CVPR 2019,
  Table 5. Market-1501 Rank-1 of a re-ID model trained on a reduced portion p of the real training images
  ("None": the reduced set alone; a method's row: every removed image replaced by a generated image from a
  random kept image of the same identity into the removed image's pose; "PATN*": target poses drawn from the
  kept set), and on the full set augmented 2x / 3x (one / two generated images per real image). Open-ReID
  training and testing protocol, ResNet-50 and Inception. The p = 1.0 column is the same real set in every row.
* ``DEFORM_TABLE4``: Siarohin et al., "Deformable GANs for Pose-based Human Image Generation", CVPR 2018,
  appendix Table 4. Market-1501, 10 generated images per training image (target poses of any identity),
  Rank-1 / mAP of four re-ID methods on the standard set T and the augmented set A.
* ``OPENREID_MARKET``: Open-ReID's own Market-1501 benchmark (mAP, allshots / cuhk03 / market1501 top-1).
  PATN's p = 1.0 numbers (65.3 ResNet-50, 52.7 Inception) are close to Open-ReID's cuhk03-style top-1
  (62.8 / 57.1), not its market1501 top-1 (81.4 / 75.8), so we report both CMC variants.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "PATN_SOURCE",
    "PATN_PORTIONS",
    "PATN_RATIOS",
    "PATN_TABLE5",
    "DEFORM_SOURCE",
    "DEFORM_TABLE4",
    "OPENREID_SOURCE",
    "OPENREID_MARKET",
    "METHOD_LABELS",
    "MODEL_LABELS",
    "method_label",
    "model_label",
    "published_value",
    "column_key",
]

PATN_SOURCE = (
    "Zhu et al., Progressive Pose Attention Transfer for Person Image Generation, CVPR 2019, "
    "Table 5 (Market-1501 Rank-1 %, Open-ReID protocol)"
)
DEFORM_SOURCE = (
    "Siarohin et al., Deformable GANs for Pose-based Human Image Generation, CVPR 2018, "
    "appendix Table 4 (Market-1501, 10 generated images per training image)"
)
OPENREID_SOURCE = "Open-ReID (Cysu/open-reid) Market-1501 benchmark"

PATN_PORTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
PATN_RATIOS: tuple[int, ...] = (2, 3)


def _row(portions: tuple[float, ...], ratios: tuple[float | None, float | None]) -> dict:
    row: dict = dict(zip(PATN_PORTIONS, portions, strict=True))
    row.update({f"{r}x": v for r, v in zip(PATN_RATIOS, ratios, strict=True) if v is not None})
    return row


# (method key, model key) -> {portion p: Rank-1 %, '2x': ..., '3x': ...}. Method keys are bench method tokens
# ('none', 'patn', 'patn*' = target poses from the kept set, 'vunet', 'deform'); models 'inception', 'resnet50'.
PATN_TABLE5: dict[tuple[str, str], dict] = {
    ("none", "inception"): _row((5.7, 16.6, 26.0, 33.5, 39.2, 42.2, 46.5, 49.0, 49.5, 52.7), (None, None)),
    ("patn", "inception"): _row((42.3, 43.6, 45.7, 46.7, 48.0, 48.5, 49.1, 50.7, 51.6, 52.7), (56.6, 57.1)),
    ("none", "resnet50"): _row((9.2, 27.6, 41.5, 50.3, 56.2, 58.8, 61.2, 62.7, 63.8, 65.3), (None, None)),
    ("vunet", "resnet50"): _row((49.8, 51.7, 53.7, 54.5, 56.6, 58.4, 59.4, 61.3, 62.9, 65.3), (63.9, 64.1)),
    ("deform", "resnet50"): _row((51.9, 53.9, 55.4, 56.1, 57.6, 59.4, 60.5, 62.2, 63.5, 65.3), (64.2, 64.6)),
    ("patn", "resnet50"): _row((52.6, 54.5, 56.5, 56.6, 60.3, 60.9, 62.1, 63.3, 64.8, 65.3), (65.3, 65.7)),
    ("patn*", "resnet50"): _row((53.3, 55.9, 56.0, 57.3, 58.8, 60.4, 60.7, 63.1, 64.5, 65.3), (65.1, 65.4)),
}

# re-ID method -> (T Rank-1, T mAP, A Rank-1, A mAP)
DEFORM_TABLE4: dict[str, tuple[float, float, float, float]] = {
    "IDE + Euclidean": (73.9, 48.8, 78.5, 55.9),
    "IDE + XQDA": (73.2, 50.9, 77.8, 57.9),
    "IDE + KISSME": (75.1, 51.5, 79.5, 58.1),
    "Discriminative Embedding": (78.3, 55.5, 80.6, 61.3),
}

# model -> (mAP, allshots top-1, cuhk03 top-1, market1501 top-1)
OPENREID_MARKET: dict[str, tuple[float, float, float, float]] = {
    "resnet50": (59.8, 35.5, 62.8, 81.4),
    "inception": (51.8, 26.8, 57.1, 75.8),
}

METHOD_LABELS: dict[str, str] = {
    "none": "None",
    "none-iters": "None-iters",
    "copy": "Copy",
    "patn": "PATN",
    "patn*": "PATN*",
    "vunet": "VUNet",
    "deform": "Deform",
    "pg2": "PG2",
    "spgnet": "SPGNet",
    "resnet": "ResNet-gen",
}
MODEL_LABELS: dict[str, str] = {"inception": "Inception", "resnet50": "ResNet-50"}


def method_label(method: str) -> str:
    """'patn' -> 'PATN'; unknown tokens are shown as given (a '*' suffix is kept: 'pg2*' -> 'PG2*')."""
    if method in METHOD_LABELS:
        return METHOD_LABELS[method]
    base = method.rstrip("*")
    return METHOD_LABELS.get(base, base) + method[len(base) :]


def model_label(model: str) -> str:
    return MODEL_LABELS.get(model, model)


def column_key(portion: float | None = None, ratio: int | None = None) -> float | str:
    """The PATN_TABLE5 column of a cell: the portion (rounded to 2 digits) or '2x' / '3x'."""
    if (portion is None) == (ratio is None):
        raise ValueError("give exactly one of portion and ratio")
    return round(float(portion), 2) if portion is not None else f"{int(ratio)}x"


def published_value(
    method: str, model: str, column: float | str, table: Mapping[tuple[str, str], dict] = PATN_TABLE5
) -> float | None:
    """Published Rank-1 % for (method, model, column), or None where the paper has no number."""
    row = table.get((method, model))
    if row is None:
        return None
    return row.get(column)
