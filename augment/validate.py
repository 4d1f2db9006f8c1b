"""Validate before work: one pass over every input a run uses, before anything is written.

:func:`resolve_inputs` reads, in this order, and refuses with a :class:`DatasetError` naming the file
and line (or a :class:`UsageError` naming the flag) or excludes by the policy below, with a count:

1. the dataset index (``read_market(data, layout=...)``): layouts, names, junk and distractor rules;
2. every training image, decoded once (``check_images``): readable (zero-byte, truncated and
   undecodable files are unreadable), its size against the dataset's (the most common size);
3. the training annotation CSV, every row (BOM, non-finite, boolean and fractional coordinates,
   undecodable bytes are named errors); under the ``refuse`` size rule joints outside the dataset's
   size are set missing and counted, under ``resize`` each row is in its own image's frame;
4. the matching of images and rows (images without a row, rows without an image: counted).

Exclusion policy. A training image that fails the checks (unreadable; another size under the
``refuse`` rule) is treated as absent from the dataset: it is never kept, never a source, never a
target pose, so it cannot fail its batch neighbours, produce a wrong-size output, or reach the
preview, the manifest or the summary. It is counted in the run's skips (``unreadable train images
(excluded)``, ``train images of another size (excluded)``) with the first files named. Under the
``resize`` rule an image of another size is used resized to the dataset's size, its keypoints scaled
with it (``augment.data.checks.fit_to_size``): generated rows decode it resized, a kept real image is
written resized (re-encoded), so the output has one size and its annotation file matches it.

:func:`check_generator_fits` then checks the dataset's size against the generator (divisible by its
down-sampling factor; PG2's fixed size), and :func:`check_out_path` keeps the output away from the
inputs (``--out`` may not be, contain or lie inside the dataset, its split folders or the keypoint
folder, symlinks resolved), so no flag can ever write into or delete the input.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from augment.data.checks import SIZE_RULES, ImageCheckReport, check_images, scale_keypoints
from augment.data.errors import DatasetError
from augment.data.keypoints import Annotations, find_keypoint_file, match_images, read_annotations
from augment.data.market import LAYOUTS, MarketDataset, merge_skips, read_market
from augment.plan import TrainIndex
from augment.runtime import UsageError

UNREADABLE = "unreadable train images (excluded)"
OTHER_SIZE = "train images of another size (excluded)"
MAX_EXAMPLES = 3


@dataclass(frozen=True)
class InputSpec:
    """Where the inputs are and how they are read (the part of ``RunOptions`` validation needs)."""

    data: Path
    keypoints: Path | None = None  # folder of the annotation CSVs; None: data
    layout: str | None = None  # a key of augment.data.layouts.LAYOUTS; None: detected
    size_rule: str = "refuse"  # refuse | resize (augment.data.checks)

    def validate(self) -> None:
        if self.layout is not None and self.layout not in LAYOUTS:
            raise UsageError("--layout", f"{self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.size_rule not in SIZE_RULES:
            raise UsageError("--size-rule", f"{self.size_rule!r} is not one of {', '.join(SIZE_RULES)}")


@dataclass(frozen=True)
class Inputs:
    """The validated inputs.

    ``full``: the index as read (its bytes make the content fingerprint; gallery and query are linked
    from it); ``dataset``: the same with the excluded training images removed (what every later step
    uses); ``index``: the planner's view of ``dataset``'s training split, keypoints in the dataset's
    frame; ``images``: the image check report; ``skips``: everything not used, counted.
    """

    data: Path
    full: MarketDataset
    dataset: MarketDataset
    annotation_file: Path
    keypoints_dir: Path | None
    index: TrainIndex
    images: ImageCheckReport
    skips: dict

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) every image the run uses has (after the resize rule)."""
        return self.images.size

    @property
    def resized(self) -> frozenset[str]:
        """Names of the training images used resized (the ``resize`` rule)."""
        return frozenset(Path(p).name for p in self.images.resized)

    def protected(self) -> list[Path]:
        """Folders no output may touch: the dataset root, its split folders, the keypoint folder."""
        folders = [self.data, self.annotation_file.parent]
        folders += [self.keypoints_dir] if self.keypoints_dir is not None else []
        for split in ("train", "gallery", "query"):
            folder = self.full.split_folder(split)
            if folder is not None:
                folders.append(folder)
            else:  # list-file layouts: the folders holding the split's images
                folders += sorted({r.path.parent for r in self.full.split(split)})
        return folders


def _exclusion_skips(report: ImageCheckReport) -> dict:
    out = {}
    if report.unreadable:
        out[UNREADABLE] = {
            "count": len(report.unreadable),
            "examples": [f"{s.path}: {s.error}" for s in report.unreadable[:MAX_EXAMPLES]],
        }
    excluded_size = report.other_size if report.size_rule == "refuse" else []
    if excluded_size:
        h, w = report.size
        out[OTHER_SIZE] = {
            "count": len(excluded_size),
            "examples": [f"{s.path}: {s.size[0]}x{s.size[1]}, not {h}x{w}" for s in excluded_size[:MAX_EXAMPLES]],
        }
    return out


def _scaled_keypoints(index: TrainIndex, report: ImageCheckReport) -> TrainIndex:
    """The ``resize`` rule: keypoints of resized images moved into the dataset's frame."""
    sizes = {Path(s.path).name: s.size for s in report.other_size}
    if report.size_rule != "resize" or not sizes:
        return index
    kps = index.keypoints.copy()
    for i, name in enumerate(index.names):
        if name in sizes:
            kps[i] = scale_keypoints(kps[i], sizes[name], report.size)
    return replace(index, keypoints=kps)


def resolve_inputs(spec: InputSpec) -> Inputs:
    """Read and check every input (module docstring); raises DatasetError / UsageError before any work."""
    spec.validate()
    full = read_market(spec.data, layout=spec.layout)
    report = check_images([r.path for r in full.train], size_rule=spec.size_rule)
    excluded = {Path(p) for p in report.excluded}
    dataset = replace(full, train=[r for r in full.train if r.path not in excluded])
    if not dataset.train:
        lines = "\n  ".join(report.lines())
        raise DatasetError(f"{spec.data}: no usable training image (every one failed the image checks):\n  {lines}")
    annotation_file = find_keypoint_file(spec.data, "annotation", "train", spec.keypoints)
    frame = report.size if spec.size_rule == "refuse" else None
    annotations: Annotations = read_annotations(annotation_file, image_size=frame)
    _, matched = match_images(annotations, full.train)
    index = _scaled_keypoints(TrainIndex.from_dataset(dataset, annotations), report)
    skips = merge_skips(full.skips(), annotations.skips(), matched.as_dict(), _exclusion_skips(report))
    return Inputs(Path(spec.data), full, dataset, annotation_file, spec.keypoints, index, report, skips)


# ---------------------------------------------------------------------------------------------
# the generator's input rule


@dataclass(frozen=True)
class InputRule:
    """What a generator accepts: a fixed (H, W) or None (any size), and the divisor of H and W."""

    size: tuple[int, int] | None = None
    divisor: int = 1


# method -> its rule from the checkpoint's stored config (dataclasses.asdict of the method's Config)
INPUT_RULES: dict[str, Callable[[dict], InputRule]] = {
    "patn": lambda c: InputRule(divisor=2 ** int(c["n_downsampling"])),
    "resnet": lambda c: InputRule(divisor=2 ** int(c["n_downsampling"])),
    "deform": lambda c: InputRule(divisor=2 ** (len(c["enc_filters"]) - 1)),
    "spgnet": lambda c: InputRule(divisor=2 ** int(c["num_scales"])),
    "pg2": lambda c: InputRule(size=tuple(int(s) for s in c["image_size"])),
}


def input_rule(method: str, config: dict) -> InputRule:
    """The rule of ``method`` (a method not listed accepts any size: its own check still runs per batch)."""
    make = INPUT_RULES.get(method)
    return make(config) if make is not None else InputRule()


def check_generator_fits(inputs: Inputs, rule: InputRule, checkpoint: Path, method: str) -> None:
    """Refuse, before any work, a dataset whose image size the generator cannot take."""
    h, w = inputs.size
    if rule.size is not None and tuple(rule.size) != (h, w):
        raise UsageError(
            "--checkpoint",
            f"{checkpoint}: the {method} generator was built for {rule.size[0]}x{rule.size[1]} images, "
            f"the dataset's are {h}x{w}; use a checkpoint trained at {h}x{w}",
        )
    if h % rule.divisor or w % rule.divisor:
        raise UsageError(
            "--checkpoint",
            f"{checkpoint}: the dataset's images are {h}x{w}, not divisible by {rule.divisor} as the {method} "
            f"generator needs; resize the dataset (e.g. to {h // rule.divisor * rule.divisor}x"
            f"{w // rule.divisor * rule.divisor}) or use a generator with fewer down-samplings",
        )


# ---------------------------------------------------------------------------------------------
# the output never touches the inputs


def _within(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def check_out_path(out: Path, protected: list[Path]) -> None:
    """``--out`` may not be, contain or lie inside a protected folder (symlinks resolved)."""
    target = Path(os.path.realpath(out))
    for folder in protected:
        real = Path(os.path.realpath(folder))
        if _within(target, real) or _within(real, target):
            how = "is" if target == real else ("lies inside" if _within(target, real) else "contains")
            raise UsageError(
                "--out",
                f"{out} {how} the input {folder} (resolved: {real}); the output never writes into or deletes the "
                "input dataset or its keypoint folder: choose a folder outside them",
            )
