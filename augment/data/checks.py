"""Image checks before work: decode every image once, in threads, and report what cannot be used.

:func:`check_images` decodes each file (OpenCV releases the GIL, so a thread pool scales with the
cores) and reports, per file, whether it is readable (a zero-byte file, a JPEG without its
end-of-image marker or a PNG without its IEND chunk is *truncated*, whatever the decoder makes of it;
anything the decoder refuses is *undecodable*) and its size (H, W). The report compares every size
with the dataset's size: the one given, else the most common decoded size.

Size rule (``size_rule``) for a readable image of another size:

- ``"refuse"`` (default): the image is excluded (counted and named; an error in strict mode).
  On Market-format data every image has the dataset's size, so another size is a defect (a file
  swapped for another copy) and the frame of its keypoint row is unknown: the community CSV holds
  128x64 coordinates whatever the file, while a pose estimator run on the file gives coordinates in
  the file's own frame. Scaling would be wrong for one and not scaling for the other; refusing
  costs one counted image and can never produce a misplaced pose.
- ``"resize"``: the image is resized to the dataset's size and its keypoints, which this rule takes
  to be in the image's own pixel frame (as a pose estimator run on it writes them), are scaled by
  the same factors (:func:`fit_to_size`). This is the rule for datasets whose crops come at their
  native sizes (DukeMTMC-reID, MSMT17 and CUHK03-NP are not one size) annotated image by image.

``divisor``: the divisibility of (H, W) a generator needs (its down-sampling factor); a dataset size
that is not divisible is reported (``size_divisible``), and is an error in strict mode.
Bad images never raise, except with ``strict=True``: then a :class:`DatasetError` lists them.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from augment.data.errors import DatasetError
from augment.data.imageio import decode_rgb

SIZE_RULES = ("refuse", "resize")
CHUNK = 256  # images per thread task: amortises the pool's per-task cost over many small files
MAX_NAMED = 20  # offending files listed by name in reports and errors


@dataclass(frozen=True)
class ImageStatus:
    """One file: its decoded size (H, W), or None and why it is unreadable."""

    path: Path
    size: tuple[int, int] | None
    error: str = ""

    @property
    def readable(self) -> bool:
        return self.size is not None


def inspect_image(path: str | os.PathLike) -> ImageStatus:
    """Read and fully decode one file (a full decode is what finds corrupt data)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        return ImageStatus(path, None, f"cannot read: {e.strerror or e}")
    try:
        img = decode_rgb(data, path)
    except DatasetError as e:
        return ImageStatus(path, None, str(e).removeprefix(f"{path}: "))
    return ImageStatus(path, (int(img.shape[0]), int(img.shape[1])))


@dataclass
class ImageCheckReport:
    """What :func:`check_images` found. ``size``: the dataset's (H, W) every image is compared to."""

    images: list[ImageStatus]
    size: tuple[int, int] | None
    divisor: int = 1
    size_rule: str = "refuse"
    problems: list[str] = field(default_factory=list)  # set by check_images: what strict mode refuses

    def by_path(self) -> dict[Path, ImageStatus]:
        return {s.path: s for s in self.images}

    @property
    def unreadable(self) -> list[ImageStatus]:
        return [s for s in self.images if not s.readable]

    @property
    def other_size(self) -> list[ImageStatus]:
        return [s for s in self.images if s.readable and s.size != self.size]

    @property
    def size_divisible(self) -> bool:
        return self.size is None or (self.size[0] % self.divisor == 0 and self.size[1] % self.divisor == 0)

    @property
    def excluded(self) -> list[Path]:
        """Files no work may use: unreadable ones, and other sizes under the ``refuse`` rule."""
        other = self.other_size if self.size_rule == "refuse" else []
        return [s.path for s in self.unreadable + other]

    @property
    def resized(self) -> list[Path]:
        """Files to resize to ``size`` (the ``resize`` rule)."""
        return [s.path for s in self.other_size] if self.size_rule == "resize" else []

    def counts(self) -> dict[str, int]:
        return {
            "images": len(self.images),
            "unreadable": len(self.unreadable),
            "other_size": len(self.other_size),
            "excluded": len(self.excluded),
            "resized": len(self.resized),
        }

    def as_dict(self) -> dict:
        """Plain JSON for reports and ``summary.json``: counts, the rule and the first offending files."""
        return {
            **self.counts(),
            "size": list(self.size) if self.size else None,
            "size_rule": self.size_rule,
            "divisor": self.divisor,
            "size_divisible": self.size_divisible,
            "unreadable_files": [{"path": str(s.path), "error": s.error} for s in self.unreadable[:MAX_NAMED]],
            "other_size_files": [{"path": str(s.path), "size": list(s.size)} for s in self.other_size[:MAX_NAMED]],
        }

    def lines(self) -> list[str]:
        c = self.counts()
        size = f"{self.size[0]}x{self.size[1]}" if self.size else "-"
        out = [
            f"images checked: {c['images']}, dataset size {size} (divisible by {self.divisor}: {self.size_divisible})"
        ]
        out += [f"  unreadable: {s.path}: {s.error}" for s in self.unreadable[:MAX_NAMED]]
        action = "excluded" if self.size_rule == "refuse" else "resized"
        out += [f"  other size ({action}): {s.path}: {s.size[0]}x{s.size[1]}" for s in self.other_size[:MAX_NAMED]]
        more = c["unreadable"] + c["other_size"] - min(c["unreadable"], MAX_NAMED) - min(c["other_size"], MAX_NAMED)
        if more > 0:
            out.append(f"  ... and {more} more")
        return out


def _problems(report: ImageCheckReport) -> list[str]:
    out = [f"{s.path}: {s.error}" for s in report.unreadable]
    if report.size is not None and report.size_rule == "refuse":
        h, w = report.size
        out += [
            f"{s.path}: image is {s.size[0]}x{s.size[1]}, the dataset's images are {h}x{w}" for s in report.other_size
        ]
    if not report.size_divisible:
        h, w = report.size
        out.append(f"the dataset's images are {h}x{w}, not divisible by {report.divisor} as the generator needs")
    return out


def _most_common_size(statuses: Iterable[ImageStatus]) -> tuple[int, int] | None:
    counts = Counter(s.size for s in statuses if s.readable)
    return counts.most_common(1)[0][0] if counts else None  # ties: the size met first


def check_images(
    paths: Sequence[str | os.PathLike],
    *,
    size: tuple[int, int] | None = None,
    divisor: int = 1,
    size_rule: str = "refuse",
    strict: bool = False,
    workers: int | None = None,
) -> ImageCheckReport:
    """Decode every distinct file of ``paths`` (threads, in chunks) and report per file (module docstring).

    ``size``: the dataset's (H, W) (None: the most common decoded size). ``strict``: raise a
    :class:`DatasetError` naming the offending files (at most :data:`MAX_NAMED`) instead of returning
    a report with problems.
    """
    if size_rule not in SIZE_RULES:
        raise ValueError(f"size_rule={size_rule!r}; choose one of {SIZE_RULES}")
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    paths = list(dict.fromkeys(Path(p) for p in paths))  # a plan names an image many times: decode it once
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        statuses = [s for chunk in pool.map(lambda c: [inspect_image(p) for p in c], chunks) for s in chunk]
    size = tuple(size) if size is not None else _most_common_size(statuses)
    report = ImageCheckReport(statuses, size, divisor, size_rule)
    report.problems = _problems(report)
    if strict and report.problems:
        shown = "\n  ".join(report.problems[:MAX_NAMED])
        more = f"\n  ... and {len(report.problems) - MAX_NAMED} more" if len(report.problems) > MAX_NAMED else ""
        raise DatasetError(f"{len(report.problems)} image problems:\n  {shown}{more}")
    return report


def scale_keypoints(kps: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """(..., 18, 2) int (y, x) keypoints of a ``from_size`` (H, W) image, in the ``to_size`` image.

    Pixel centres map to pixel centres, ``(c + 0.5) * to / from - 0.5``, rounded half up and clipped
    into the image (the mapping ``cv2.resize`` uses); -1 (missing) stays -1.
    """
    kps = np.asarray(kps)
    scale = np.array([to_size[0] / from_size[0], to_size[1] / from_size[1]])
    out = np.floor((kps + 0.5) * scale - 0.5 + 0.5).astype(np.int64)
    out = np.clip(out, 0, np.array(to_size) - 1)
    missing = (kps == -1).any(-1, keepdims=True)
    return np.where(missing, -1, out).astype(kps.dtype)


def fit_to_size(img: np.ndarray, kps: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The ``resize`` rule: (H, W, 3) uint8 ``img`` resized to ``size`` (area averaging when shrinking,
    bilinear otherwise) and its (18, 2) keypoints scaled by the same factors (:func:`scale_keypoints`)."""
    h, w = img.shape[:2]
    if (h, w) == tuple(size):
        return img, kps
    shrink = size[0] <= h and size[1] <= w
    out = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out, scale_keypoints(kps, (h, w), size)
