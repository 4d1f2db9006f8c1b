"""The embedded person re-ID dataset: walking pedestrians rendered procedurally, Market-1501 layout.

``python -m augment.synth``: the command line over :func:`augment.synth.writer.render_dataset`
(the first paragraph above is its ``--help`` description).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from augment.synth.config import DEFAULT_OUT, DISJOINT_OUT, PREVIEW_FILE, SynthConfig, difficulty_knobs
from augment.synth.writer import render_dataset


def build_parser() -> argparse.ArgumentParser:
    d = SynthConfig()
    p = argparse.ArgumentParser(
        prog="python -m augment.synth",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="dataset root to write")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--train-ids", type=int, default=d.train_ids, help="training identities")
    p.add_argument("--test-ids", type=int, default=d.test_ids, help="test identities (query + gallery)")
    p.add_argument("--images-per-id", type=int, nargs=2, metavar=("MIN", "MAX"), default=list(d.images_per_id))
    p.add_argument("--cameras", type=int, default=d.cameras)
    p.add_argument(
        "--difficulty",
        type=float,
        default=None,
        help="0..1: sets --palette-size and --share-prob together (0 -> 24/0.1, 0.5 -> 16/0.45, 1 -> 8/0.8)",
    )
    p.add_argument("--palette-size", type=int, default=None, help=f"garment colours in use (default {d.palette_size})")
    p.add_argument(
        "--share-prob",
        type=float,
        default=None,
        help=f"probability a garment group comes from an archetype outfit (default {d.share_prob})",
    )
    p.add_argument("--archetypes", type=int, default=d.archetypes)
    p.add_argument("--junk", type=int, default=d.junk_images, help="junk (-1) gallery images")
    p.add_argument("--distractors", type=int, default=d.distractor_images, help="distractor (0000) gallery images")
    p.add_argument("--truncation-prob", type=float, default=d.truncation_prob)
    p.add_argument("--occluder-prob", type=float, default=d.occluder_prob)
    p.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality)
    p.add_argument(
        "--population",
        type=int,
        default=d.population,
        help="0: the standard people; N > 0: other people, same cameras and scenes (for generators trained on "
        f"identities disjoint from the re-ID set, e.g. --population 1 --out {DISJOINT_OUT})",
    )
    p.add_argument("--workers", type=int, default=1, help="render processes (output is identical for any number)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace a different rendering, or write into a non-empty directory"
    )
    p.add_argument("--no-preview", dest="preview", action="store_false", help=f"skip {PREVIEW_FILE}")
    p.add_argument(
        "--preview",
        dest="preview",
        action="store_true",
        default=True,
        help=f"write {PREVIEW_FILE} into the dataset root (default)",
    )
    return p


def config_from_args(a: argparse.Namespace) -> SynthConfig:
    d = SynthConfig()
    palette, share = (d.palette_size, d.share_prob) if a.difficulty is None else difficulty_knobs(a.difficulty)
    return SynthConfig(
        seed=a.seed,
        train_ids=a.train_ids,
        test_ids=a.test_ids,
        images_per_id=tuple(a.images_per_id),
        cameras=a.cameras,
        palette_size=a.palette_size if a.palette_size is not None else palette,
        share_prob=a.share_prob if a.share_prob is not None else share,
        archetypes=a.archetypes,
        junk_images=a.junk,
        distractor_images=a.distractors,
        truncation_prob=a.truncation_prob,
        occluder_prob=a.occluder_prob,
        jpeg_quality=a.jpeg_quality,
        population=a.population,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        cfg = config_from_args(a)
    except ValueError as e:
        parser.error(str(e))
    try:
        render_dataset(cfg, a.out, overwrite=a.overwrite, workers=a.workers, preview=a.preview)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
