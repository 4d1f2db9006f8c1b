"""What a rendering of the embedded dataset is made from (:class:`SynthConfig`) and where it goes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from augment.synth.appearance import GARMENT_PALETTE
from augment.synth.scenes import SCENES

SYNTH_VERSION = 1  # bump when rendering changes: a previous output of "the same config" must match it
DEFAULT_OUT = Path("data/synth-market")
DISJOINT_OUT = Path("data/synth-market-disjoint")  # population 1: other people, same cameras
CONFIG_FILE = "synth-config.json"
PREVIEW_FILE = "preview.png"


def difficulty_knobs(difficulty: float) -> tuple[int, float]:
    """(palette_size, share_prob) for a difficulty in [0, 1]: 0 -> (24, 0.1), 0.5 -> (16, 0.45), 1 -> (8, 0.8)."""
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"--difficulty must be in [0, 1], got {difficulty}")
    return int(round(24 - 16 * difficulty)), round(0.1 + 0.7 * difficulty, 4)


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the embedded dataset. Defaults: 300 identities, about 3,800 images."""

    seed: int = 0
    train_ids: int = 150  # training identities
    test_ids: int = 150  # test identities (query + gallery)
    images_per_id: tuple[int, int] = (10, 15)  # inclusive range of images per identity (min >= 4: 2 cameras x 2)
    cameras: int = 6  # cameras 1..cameras (at most 6 scenes)
    palette_size: int = 16  # garment colours in use (first N of GARMENT_PALETTE); smaller = harder
    share_prob: float = 0.45  # probability a garment group is copied from an archetype outfit; larger = harder
    archetypes: int = 8  # popular outfits identities copy garments from
    colour_jitter: float = 10.0  # per-identity RGB std-dev around the palette colour
    junk_images: int = 30  # gallery images named -1 (background, fragments, tiny people)
    distractor_images: int = 30  # gallery images named 0000 (people outside the query set)
    person_height: tuple[float, float] = (102.0, 114.0)  # pixel height range of an average person (feet to head top)
    truncation_prob: float = 0.06  # person partly out of frame
    occluder_prob: float = 0.1  # pole, barrier or passer-by in front
    jpeg_quality: int = 92
    # 0: the standard people. N > 0: a different population (other identities: other bodies, faces,
    # clothes, walks) seen by the same cameras in the same scenes; a generator trained on one is
    # "disjoint" from a re-ID set of the other (no identity, no image in common).
    population: int = 0

    def __post_init__(self):
        # JSON round trips give lists; keep tuples so the config hashes and compares.
        object.__setattr__(self, "images_per_id", tuple(int(v) for v in self.images_per_id))
        object.__setattr__(self, "person_height", tuple(float(v) for v in self.person_height))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the CLI flag of the first bad value."""
        lo, hi = self.images_per_id
        checks = [
            (self.seed >= 0, f"--seed must be >= 0, got {self.seed}"),
            (self.train_ids >= 1, f"--train-ids must be >= 1, got {self.train_ids}"),
            (self.test_ids >= 1, f"--test-ids must be >= 1, got {self.test_ids}"),
            (self.train_ids + self.test_ids <= 9998, "--train-ids + --test-ids must be <= 9998 (4-digit ids)"),
            (4 <= lo <= hi, f"--images-per-id needs 4 <= MIN <= MAX (two cameras x two images), got {lo} {hi}"),
            (hi <= 200, f"--images-per-id MAX must be <= 200, got {hi}"),
            (2 <= self.cameras <= len(SCENES), f"--cameras must be in 2..{len(SCENES)}, got {self.cameras}"),
            (
                1 <= self.palette_size <= len(GARMENT_PALETTE),
                f"--palette-size must be in 1..{len(GARMENT_PALETTE)}, got {self.palette_size}",
            ),
            (0.0 <= self.share_prob <= 1.0, f"--share-prob must be in [0, 1], got {self.share_prob}"),
            (self.archetypes >= 1, f"--archetypes must be >= 1, got {self.archetypes}"),
            (self.colour_jitter >= 0, f"colour_jitter must be >= 0, got {self.colour_jitter}"),
            (0 <= self.junk_images <= 999, f"--junk must be in 0..999, got {self.junk_images}"),
            (0 <= self.distractor_images <= 999, f"--distractors must be in 0..999, got {self.distractor_images}"),
            (
                20 <= self.person_height[0] <= self.person_height[1] <= 140,
                f"person_height must be 20 <= lo <= hi <= 140, got {self.person_height}",
            ),
            (0 <= self.truncation_prob <= 1, f"--truncation-prob must be in [0, 1], got {self.truncation_prob}"),
            (0 <= self.occluder_prob <= 1, f"--occluder-prob must be in [0, 1], got {self.occluder_prob}"),
            (1 <= self.jpeg_quality <= 100, f"--jpeg-quality must be in 1..100, got {self.jpeg_quality}"),
            (self.population >= 0, f"--population must be >= 0, got {self.population}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def tiny(cls, seed: int = 0, **overrides) -> SynthConfig:
        """A test-sized dataset: 6 train + 6 test identities, 4-6 images each, 3 junk, 3 distractors (~70 images)."""
        base = dict(seed=seed, train_ids=6, test_ids=6, images_per_id=(4, 6), junk_images=3, distractor_images=3)
        base.update(overrides)
        return cls(**base)

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: dict) -> SynthConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
