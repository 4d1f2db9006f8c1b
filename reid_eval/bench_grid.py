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

The Deformable GAN's Table 4 (``--table deform4``, protocol ``poses`` with K = ``value``) reuses the same cells
on other sets: the controls train on the full real set T (``none``: the recipe's epochs; ``none-iters``: as many
steps as the augmented set A of its seed and K), and ``copy`` and the generators on A = T plus K generated images
per real image (``PlanSpec("poses", per_image=K)``), for the recipe's epochs (``length`` ``epochs``: 11x T's
steps at K = 10) or for T's steps (``t-steps``: each epoch draws |T| images of A with replacement). ``loss``
``siamese`` trains the Discriminative Embedding instead of the softmax IDE (``reid_eval.siamese``).

A cell's ``plan_seed`` (None: its own seed) draws its set: ``--set-seeds first`` gives every cell the first seed's
plan, so the seeds of a row share one set (built once) and differ only in their training (initialisation, batch
draws, augmentation); the Table-4 grid's default, where a set of ~19,000 generated images costs as much as two
trainings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
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
    "LENGTHS",
    "LOSSES",
    "TABLE4_METHODS",
    "Cell",
    "is_trainable",
    "metric_names",
    "poses_cells",
    "method_rows",
    "grid_cells",
]

NONE, NONE_ITERS, COPY = "none", "none-iters", "copy"
CONTROLS = (NONE, NONE_ITERS)  # the reduced set alone: no generator at all
NO_GENERATOR = "-"  # generator_data of a cell without a trained generator (controls, copy)
REGIMES = ("full", "kept", "disjoint")
EPOCHS, T_STEPS = "epochs", "t-steps"
LENGTHS = (EPOCHS, T_STEPS)  # how long a poses cell's A trains: the recipe's epochs over A, or T's steps
LOSSES = ("softmax", "siamese")  # the IDE (torchreid's softmax engine) or the Discriminative Embedding
# Table 4's re-ID methods (--reid-methods): token -> (its row in the paper, the training loss, the distance learnt on
# the trained model's features: a reid_eval.metric_learning learner)
TABLE4_METHODS: dict[str, tuple[str, str, str]] = {
    "euclidean": ("IDE + Euclidean", "softmax", "euclidean"),
    "xqda": ("IDE + XQDA", "softmax", "xqda"),
    "kissme": ("IDE + KISSME", "softmax", "kissme"),
    "embedding": ("Discriminative Embedding", "siamese", "euclidean"),
}


@cache
def is_trainable(method: str) -> bool:
    """Whether a generator method has weights to train (``copy`` has not); ValueError for an unknown method."""
    from generators.base import get_method

    return get_method(method.rstrip("*")).trainable


def method_rows(
    methods: tuple[str, ...], regimes: tuple[str, ...], external: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """(method, generator_data) of every row of the grid: a trainable generator once per regime, the rest once
    (controls, ``copy``, and ``external`` methods: images made by another tool, imported through files)."""
    rows = []
    for m in methods:
        if m in CONTROLS or m in external or not is_trainable(m):
            rows.append((m, NO_GENERATOR))
        else:
            rows += [(m, r) for r in regimes]
    return rows


@dataclass(frozen=True)
class Cell:
    """One grid cell: a model trained on one set (protocol 'portion' with p, 'ratio', or 'poses' with K) with
    one seed; ``length`` and ``loss`` only vary in the Table-4 grid (``poses``)."""

    model: str
    method: str  # none | none-iters | copy | a generator method, optionally with '*' (target poses from the kept set)
    protocol: str  # 'portion' | 'ratio' | 'poses'
    value: float  # p, the ratio, or K
    seed: int
    generator_data: str = NO_GENERATOR  # full | kept | disjoint for a trainable generator, else '-'
    length: str = EPOCHS  # epochs | t-steps (poses: A trained for T's steps)
    loss: str = "softmax"  # softmax (IDE) | siamese (the Discriminative Embedding)
    plan_seed: int | None = None  # the seed of the set's plan; None: ``seed``

    @property
    def set_seed(self) -> int:
        return self.seed if self.plan_seed is None else self.plan_seed

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
        """PATN Table-5 column: the portion or '2x'/'3x'; Table 4's: 'T' (the controls) or 'A'."""
        if self.protocol == "poses":
            return "T" if self.is_control else "A"
        if self.protocol == "portion":
            return published.column_key(portion=self.value)
        return published.column_key(ratio=int(self.value))

    @property
    def name(self) -> str:
        """The cell's folder name, e.g. ``portion0.1-patn-on-disjoint-s0``, ``portion0.1-none-iters-s2`` or
        ``poses10-deform-on-full-t-steps-siamese-s0``."""
        method = self.base_method + ("-kept" if self.kept_poses else "")
        if self.generator_data != NO_GENERATOR:
            method += f"-on-{self.generator_data}"
        method += "".join(f"-{v}" for v, default in ((self.length, EPOCHS), (self.loss, "softmax")) if v != default)
        return f"{self.protocol}{self.value:g}-{method}-s{self.seed}"

    @property
    def generates(self) -> bool:
        """Whether the set holds generated images: not for the controls nor at p = 1."""
        return not self.is_control and (self.protocol != "portion" or self.value < 1.0)

    @property
    def needs_generator(self) -> bool:
        """Whether the set needs a trained generator (a regime's checkpoint): generating, not ``copy``."""
        return self.generates and self.generator_data != NO_GENERATOR

    def _portion(self) -> float:
        return float(f"{self.value:g}")  # as the command line spelled it (folder names use :g too)

    def plan_spec(self) -> PlanSpec:
        """The augment.run plan of this cell's training set (both controls: the reduced set; for poses, T)."""
        if self.is_control:
            portion = self._portion() if self.protocol == "portion" else 1.0  # a ratio's or poses' real set
            return PlanSpec("portion", portion=portion, generate=False, seed=self.set_seed)
        if self.protocol in ("ratio", "poses"):
            per_image = int(self.value) - (self.protocol == "ratio")
            return PlanSpec(self.protocol, per_image=per_image, method=self.base_method, seed=self.set_seed)
        target_poses = "kept" if self.kept_poses else "removed"
        return PlanSpec(
            "portion", portion=self._portion(), target_poses=target_poses, method=self.base_method, seed=self.set_seed
        )

    def partner_spec(self) -> PlanSpec | None:
        """The plan whose size sets this cell's images per epoch, or None (one pass over its own set).

        ``none-iters``: the generated set it is matched to (any method's: the rows do not depend on it); None
        where that is the reduced set itself (p = 1). A ``t-steps`` cell: the real set T."""
        if self.length == T_STEPS and not self.is_control:
            return PlanSpec("portion", portion=1.0, generate=False, seed=self.set_seed)
        if self.method != NONE_ITERS:
            return None
        if self.protocol in ("ratio", "poses"):
            per_image = int(self.value) - (self.protocol == "ratio")
            return PlanSpec(self.protocol, per_image=per_image, method=COPY, seed=self.set_seed)
        if self.value >= 1.0:
            return None
        return PlanSpec("portion", portion=self._portion(), method=COPY, seed=self.set_seed)

    @property
    def set_name(self) -> str:
        """Folder of the cell's set under the bench's sets folder: the plan's name, plus the regime whose
        generator made it (two regimes never share a folder; the controls share the reduced set's)."""
        name = self.plan_spec().name()
        return f"{name}-on-{self.generator_data}" if self.needs_generator else name

    def settings(self) -> dict:
        """The cell as recorded in cell.json (``length``, ``loss`` and ``plan_seed`` only where they differ from
        the default, so that cells finished before they existed stay finished)."""
        out = asdict(self)
        for key, default in (("length", EPOCHS), ("loss", "softmax"), ("plan_seed", None)):
            if out[key] == default:
                del out[key]
        return out


def grid_cells(
    models: tuple[str, ...],
    rows: list[tuple[str, str]],
    portions: tuple[float, ...],
    ratios: tuple[int, ...],
    seeds: tuple[int, ...],
    ceiling_seeds: tuple[int, ...],
    set_seed: int | None = None,
) -> list[Cell]:
    """Cells in run order: per seed and model, the portions x rows, then the ratios x rows (``none`` has no
    ratio cell). The p = 1.0 cells (the ceiling) run for ``ceiling_seeds`` only, the rest for ``seeds``.
    ``set_seed``: every cell's plan seed (None: each cell's own)."""
    cells = []
    for seed in sorted(set(seeds) | set(ceiling_seeds), key=lambda s: (s not in seeds, s)):
        plan = _plan_seed(seed, set_seed)
        for model in models:
            for p in portions:
                if seed in (ceiling_seeds if p >= 1.0 else seeds):
                    cells += [Cell(model, m, "portion", float(p), seed, g, plan_seed=plan) for m, g in rows]
            if seed in seeds:
                cells += [
                    Cell(model, m, "ratio", float(r), seed, g, plan_seed=plan)
                    for r in ratios
                    for m, g in rows
                    if m != NONE
                ]
    return cells


def _plan_seed(seed: int, set_seed: int | None) -> int | None:
    """A cell's ``plan_seed``: None where it is the cell's own seed (so cell.json stays as before)."""
    return None if set_seed is None or set_seed == seed else set_seed


def _losses(reid_methods: tuple[str, ...]) -> list[str]:
    return [loss for loss in LOSSES if any(TABLE4_METHODS[m][1] == loss for m in reid_methods)]


def metric_names(cell: Cell, reid_methods: tuple[str, ...]) -> tuple[str, ...]:
    """The distances learnt and scored on a Table-4 cell's features (none outside the ``poses`` grid)."""
    if cell.protocol != "poses":
        return ()
    names = [TABLE4_METHODS[m][2] for m in reid_methods if TABLE4_METHODS[m][1] == cell.loss]
    return tuple(dict.fromkeys(names))


def poses_cells(
    models: tuple[str, ...],
    rows: list[tuple[str, str]],
    poses_per_image: int,
    lengths: tuple[str, ...],
    reid_methods: tuple[str, ...],
    seeds: tuple[int, ...],
    set_seed: int | None = None,
) -> list[Cell]:
    """Table 4's cells in run order: per seed, model and loss (softmax for the IDE rows, siamese for the
    Discriminative Embedding), the rows; the controls (T) once, ``copy`` and the generators once per length.
    ``set_seed``: every cell's plan seed (None: each cell's own)."""
    cells = []
    for seed in seeds:
        plan = _plan_seed(seed, set_seed)
        for model in models:
            for loss in _losses(reid_methods):
                for m, g in rows:
                    for length in (EPOCHS,) if m in CONTROLS else lengths:
                        cell = Cell(model, m, "poses", float(poses_per_image), seed, g, length, loss, plan)
                        cells.append(cell)
    return cells
