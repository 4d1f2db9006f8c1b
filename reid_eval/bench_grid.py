"""The bench's grid: its cells, the methods and controls they stand for, and the sets they train on.

A cell is one re-ID training: a model trained on one set (protocol ``portion`` with p, or ``ratio``), with one
seed (the plan's and the training's), by one method:

- ``none``: the reduced set (the kept real images) for the recipe's epochs (the published protocol);
- ``none-iters``: the same reduced set, trained for as many SGD steps, and on as many images, as the generated
  set of the same p and seed (its *partner*: the set every generating method gives at that p and seed with the
  removed images' poses; it holds the kept images plus one generated image per planned row). Each epoch draws
  ``partner size`` images with replacement (``reid_eval.train``'s ``images_per_epoch``), so with the same epochs
  and batch both train floor(partner size / batch) x epochs steps. At p = 1.0 the partner is the real set itself
  and ``none-iters`` is ``none``; for a ratio it is the real set trained as long as the ratio set;
- ``copy``: a generator whose output is its source image (``generators.copy``): the generated set's size, labels
  and cameras without new poses;
- a generator method (``patn``, ...; ``patn*``: target poses drawn from the kept set), once per generator-training
  regime (``generator_data``): ``full`` (trained on the whole training split, removed images included: the
  published protocol), ``kept`` (trained only on the pairs among the images the plan keeps) or ``disjoint``
  (trained on other identities). Methods with nothing to train (``copy``) and the controls have no regime ("-").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from augment.plan import PlanSpec
from reid_eval import published

__all__ = [
    "NONE",
    "NONE_ITERS",
    "COPY",
    "CONTROLS",
    "NO_GENERATOR",
    "REGIMES",
    "Cell",
    "is_trainable",
    "method_rows",
    "grid_cells",
]

NONE, NONE_ITERS, COPY = "none", "none-iters", "copy"
CONTROLS = (NONE, NONE_ITERS)  # the reduced set alone: no generator at all
NO_GENERATOR = "-"  # generator_data of a cell without a trained generator (controls, copy)
REGIMES = ("full", "kept", "disjoint")


@cache
def is_trainable(method: str) -> bool:
    """Whether a generator method has weights to train (``copy`` has not); ValueError for an unknown method."""
    from generators.base import get_method

    return get_method(method.rstrip("*")).trainable


def method_rows(methods: tuple[str, ...], regimes: tuple[str, ...]) -> list[tuple[str, str]]:
    """(method, generator_data) of every row of the grid: a trainable generator once per regime, the rest once."""
    rows = []
    for m in methods:
        if m in CONTROLS or not is_trainable(m):
            rows.append((m, NO_GENERATOR))
        else:
            rows += [(m, r) for r in regimes]
    return rows


@dataclass(frozen=True)
class Cell:
    """One grid cell: a model trained on one set (protocol 'portion' with p, or 'ratio') with one seed."""

    model: str
    method: str  # none | none-iters | copy | a generator method, optionally with '*' (target poses from the kept set)
    protocol: str  # 'portion' | 'ratio'
    value: float  # p, or the ratio
    seed: int
    generator_data: str = NO_GENERATOR  # full | kept | disjoint for a trainable generator, else '-'

    @property
    def base_method(self) -> str:
        return self.method.rstrip("*")

    @property
    def kept_poses(self) -> bool:
        return self.method.endswith("*")

    @property
    def is_control(self) -> bool:
        return self.method in CONTROLS

    @property
    def column(self) -> float | str:
        """PATN Table-5 column: the portion or '2x'/'3x'."""
        if self.protocol == "portion":
            return published.column_key(portion=self.value)
        return published.column_key(ratio=int(self.value))

    @property
    def name(self) -> str:
        """The cell's folder name, e.g. ``portion0.1-patn-on-disjoint-s0`` or ``portion0.1-none-iters-s2``."""
        method = self.base_method + ("-kept" if self.kept_poses else "")
        if self.generator_data != NO_GENERATOR:
            method += f"-on-{self.generator_data}"
        return f"{self.protocol}{self.value:g}-{method}-s{self.seed}"

    @property
    def generates(self) -> bool:
        """Whether the set holds generated images: not for the controls nor at p = 1."""
        return not self.is_control and (self.protocol == "ratio" or self.value < 1.0)

    @property
    def needs_generator(self) -> bool:
        """Whether the set needs a trained generator (a regime's checkpoint): generating, not ``copy``."""
        return self.generates and self.generator_data != NO_GENERATOR

    def _portion(self) -> float:
        return float(f"{self.value:g}")  # as the command line spelled it (folder names use :g too)

    def plan_spec(self) -> PlanSpec:
        """The augment.run plan of this cell's training set (both controls: the reduced set)."""
        if self.is_control:
            portion = self._portion() if self.protocol == "portion" else 1.0  # a ratio's reduced set: the real set
            return PlanSpec("portion", portion=portion, generate=False, seed=self.seed)
        if self.protocol == "ratio":
            return PlanSpec("ratio", per_image=int(self.value) - 1, method=self.base_method, seed=self.seed)
        target_poses = "kept" if self.kept_poses else "removed"
        return PlanSpec(
            "portion", portion=self._portion(), target_poses=target_poses, method=self.base_method, seed=self.seed
        )

    def partner_spec(self) -> PlanSpec | None:
        """``none-iters``: the plan of the generated set it is matched to (any method's: the rows do not depend on
        it); None for every other cell, and where the partner is the reduced set itself (p = 1)."""
        if self.method != NONE_ITERS:
            return None
        if self.protocol == "ratio":
            return PlanSpec("ratio", per_image=int(self.value) - 1, method=COPY, seed=self.seed)
        if self.value >= 1.0:
            return None
        return PlanSpec("portion", portion=self._portion(), method=COPY, seed=self.seed)

    @property
    def set_name(self) -> str:
        """Folder of the cell's set under the bench's sets folder: the plan's name, plus the regime whose
        generator made it (two regimes never share a folder; the controls share the reduced set's)."""
        name = self.plan_spec().name()
        return f"{name}-on-{self.generator_data}" if self.needs_generator else name


def grid_cells(
    models: tuple[str, ...],
    rows: list[tuple[str, str]],
    portions: tuple[float, ...],
    ratios: tuple[int, ...],
    seeds: tuple[int, ...],
    ceiling_seeds: tuple[int, ...],
) -> list[Cell]:
    """Cells in run order: per seed and model, the portions x rows, then the ratios x rows (``none`` has no
    ratio cell). The p = 1.0 cells (the ceiling) run for ``ceiling_seeds`` only, the rest for ``seeds``."""
    cells = []
    for seed in sorted(set(seeds) | set(ceiling_seeds), key=lambda s: (s not in seeds, s)):
        for model in models:
            for p in portions:
                if seed in (ceiling_seeds if p >= 1.0 else seeds):
                    cells += [Cell(model, m, "portion", float(p), seed, g) for m, g in rows]
            if seed in seeds:
                cells += [Cell(model, m, "ratio", float(r), seed, g) for r in ratios for m, g in rows if m != NONE]
    return cells
