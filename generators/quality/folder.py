"""A folder of generated images named by pair, matched against the dataset's test pairs (``evaluate --folder``).

The folder is read as it is (not recursively): every ``.png`` / ``.jpg`` / ``.jpeg`` file whose name parses
under the naming (:data:`generators.quality.strips.NAMINGS`, detected or given) and whose (from, to) is one of
the evaluated test pairs is scored; image names match with or without their ``.jpg``. What does not fit is
counted, never silently dropped: pairs without a file, image files that are not one of the evaluated pairs
(unparseable names included), and other files. Two files for one pair (``x.png`` and ``x.jpg``) are an error.

Images are decoded with PIL, as the reference scripts read them (``skimage.io.imread`` / ``imageio``). A strip
gives the generated, source and target panels (the official tool scores against the strip's own target
panel); a single generated image is scored against the dataset's images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from augment.data.imageio import truncation
from augment.data.market import DatasetError
from generators.data import PairTable
from generators.quality.strips import IMAGE_EXTENSIONS, NAMINGS, PANEL, cut_strip, detect_naming, name_key

EXAMPLES = 5  # file / pair names listed in the report for each kind of mismatch


@dataclass
class FolderPairs:
    """The match of a folder against ``indices`` (pair indices of the table, file order)."""

    folder: Path
    naming: str
    files: dict[int, Path]  # pair index -> its file
    missing: list[int] = field(default_factory=list)  # evaluated pair indices without a file
    extra: list[str] = field(default_factory=list)  # image files that are none of the evaluated pairs
    other: list[str] = field(default_factory=list)  # files that are not images

    @property
    def present(self) -> np.ndarray:
        """Pair indices with a file, in pairs-file order."""
        return np.array(sorted(self.files), dtype=np.int64)

    def report(self, table: PairTable) -> dict:
        """metrics.json's account of the folder: counts and a few examples of each mismatch."""
        return {
            "folder": str(self.folder),
            "naming": self.naming,
            "files_scored": len(self.files),
            "pairs_missing": len(self.missing),
            "pairs_missing_examples": ["___".join(table.pair_names(i)) for i in self.missing[:EXAMPLES]],
            "files_not_in_pairs": len(self.extra),
            "files_not_in_pairs_examples": self.extra[:EXAMPLES],
            "other_files": len(self.other),
        }

    def lines(self, table: PairTable) -> list[str]:
        r = self.report(table)
        out = [f"folder {self.folder}: {r['files_scored']} files scored ({self.naming} naming)"]
        if r["pairs_missing"]:
            out.append(f"  {r['pairs_missing']} pairs have no file, e.g. {', '.join(r['pairs_missing_examples'])}")
        if r["files_not_in_pairs"]:
            out.append(
                f"  {r['files_not_in_pairs']} image files are not among the evaluated pairs, e.g. "
                + ", ".join(r["files_not_in_pairs_examples"])
            )
        if r["other_files"]:
            out.append(f"  {r['other_files']} other files ignored")
        return out


def match_folder(folder: str | Path, table: PairTable, indices: np.ndarray, naming: str = "auto") -> FolderPairs:
    """Match the files of ``folder`` to the pairs ``indices`` of ``table`` (module docstring).
    Raises :class:`DatasetError` for a missing folder, an unknown naming, two files of one pair, or no match."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    images = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    naming = detect_naming(images) if naming == "auto" else naming
    if naming not in NAMINGS:
        raise DatasetError(f"{folder}: unknown naming {naming!r}; one of auto, {', '.join(NAMINGS)}")
    wanted: dict[tuple[str, str], list[int]] = {}
    for i in indices:
        src, tgt = table.pair_names(int(i))
        wanted.setdefault((name_key(src), name_key(tgt)), []).append(int(i))
    found = FolderPairs(folder, naming, {}, other=[n for n in names if n not in images])
    owner: dict[tuple[str, str], str] = {}
    for name in images:
        parsed = NAMINGS[naming].parse(name)
        key = (name_key(parsed[0]), name_key(parsed[1])) if parsed else None
        if key not in wanted:
            found.extra.append(name)
            continue
        if key in owner:
            raise DatasetError(f"{folder}: two files for the pair {key[0]} -> {key[1]}: {owner[key]} and {name}")
        owner[key] = name
        for i in wanted[key]:
            found.files[i] = folder / name
    found.missing = [int(i) for i in indices if int(i) not in found.files]
    if not found.files:
        example = NAMINGS[naming].example
        raise DatasetError(
            f"{folder}: none of its {len(images)} image files is one of the test pairs (naming {example})"
        )
    return found


def read_image_pil(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB decoded by PIL; :class:`DatasetError` naming the file when it is truncated or unreadable."""
    from PIL import Image

    data = path.read_bytes()
    why = truncation(data)
    if why:
        raise DatasetError(f"{path}: cannot decode image: {why}")
    try:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except Exception as e:  # PIL raises several types for undecodable data
        raise DatasetError(f"{path}: cannot decode image: {e}") from None


def read_result(path: Path, strip: bool, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """One result file -> {"generated"} (and "source", "target" for a strip), each (H, W, 3) uint8 of ``size``."""
    image = read_image_pil(path)
    if strip:
        try:
            panels = cut_strip(image)
        except ValueError as e:
            raise DatasetError(f"{path}: {e}") from None
        image = {k: panels[PANEL[k]] for k in ("generated", "source", "target")}
    else:
        image = {"generated": image}
    for part in image.values():
        if part.shape[:2] != tuple(size):
            raise DatasetError(
                f"{path}: images of {part.shape[0]}x{part.shape[1]}, the dataset's are {size[0]}x{size[1]}"
            )
    return image
