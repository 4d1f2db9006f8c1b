"""Appearance of the embedded dataset's people: palettes, garment attributes, outfits and identities.

An identity (:class:`Identity`) is a persistent appearance: body, skin, hair, garments, accessory and
gait. Identities copy garment groups from a few popular "archetype" outfits (probability
``share_prob`` per group) and draw colours from the first ``palette_size`` colours of
:data:`GARMENT_PALETTE`: the two difficulty knobs of :class:`augment.synth.config.SynthConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from augment.synth.drawing import Colour
from augment.synth.seeds import STREAM_ARCHETYPE

if TYPE_CHECKING:  # annotations only: the config validates against this module's palette
    from augment.synth.config import SynthConfig

# Garment colours, most common first (dark and neutral clothes dominate street scenes).
GARMENT_PALETTE: tuple[tuple[str, Colour], ...] = (
    ("black", (28, 28, 30)),
    ("white", (232, 232, 228)),
    ("grey", (120, 120, 124)),
    ("navy", (30, 40, 85)),
    ("denim", (60, 85, 130)),
    ("red", (185, 32, 38)),
    ("beige", (215, 195, 160)),
    ("dark-brown", (72, 50, 38)),
    ("light-grey", (182, 182, 184)),
    ("blue", (40, 90, 190)),
    ("green", (40, 120, 60)),
    ("khaki", (165, 150, 110)),
    ("yellow", (225, 195, 40)),
    ("pink", (230, 140, 170)),
    ("purple", (110, 55, 140)),
    ("orange", (230, 120, 35)),
    ("light-blue", (140, 185, 225)),
    ("maroon", (110, 25, 40)),
    ("olive", (100, 105, 45)),
    ("teal", (30, 130, 130)),
    ("brown", (135, 85, 50)),
    ("charcoal", (55, 58, 62)),
    ("light-pink", (240, 195, 205)),
    ("lime", (150, 200, 60)),
)
SKIN_TONES: tuple[Colour, ...] = (
    (245, 215, 190),
    (232, 192, 162),
    (208, 162, 128),
    (178, 128, 92),
    (142, 97, 66),
    (100, 70, 50),
)
HAIR_COLOURS: tuple[tuple[Colour, float], ...] = (  # (colour, weight)
    ((24, 21, 20), 0.45),
    ((55, 38, 28), 0.25),
    ((100, 70, 45), 0.12),
    ((200, 170, 112), 0.08),
    ((150, 148, 145), 0.06),
    ((130, 60, 35), 0.04),
)
_HAIR_WEIGHTS = np.array([w for _, w in HAIR_COLOURS]) / sum(w for _, w in HAIR_COLOURS)
SHOE_COLOURS: tuple[Colour, ...] = ((25, 25, 25), (230, 230, 230), (95, 62, 40), (110, 110, 115))

# Categorical attributes: (values, weights).
HAIR_STYLES = (("short", "medium", "long", "bun", "bald"), (0.38, 0.22, 0.22, 0.1, 0.08))
UPPER_PATTERNS = (("solid", "stripes", "two-tone", "logo"), (0.5, 0.15, 0.2, 0.15))
SLEEVES = (("long", "short"), (0.6, 0.4))
LOWER_TYPES = (("trousers", "shorts", "skirt"), (0.7, 0.15, 0.15))
ACCESSORIES = (("none", "backpack", "bag", "hat"), (0.45, 0.25, 0.15, 0.15))

# Attribute groups an identity may copy from its archetype outfit (each with probability share_prob).
SHARED_GROUPS = {
    "upper": ("upper_colour", "upper_colour2", "upper_pattern", "sleeves", "stripe_period"),
    "lower": ("lower_type", "lower_colour"),
    "shoes": ("shoe_colour",),
    "hair": ("hair_style", "hair_colour"),
    "accessory": ("accessory", "accessory_colour"),
}


@dataclass(frozen=True)
class Identity:
    """Persistent appearance of one person. Sizes are fractions of body height; colours RGB 0..255."""

    height: float  # body height multiplier (1 = average)
    build: float  # width multiplier for shoulders, hips and limbs
    skin: Colour
    hair_style: str
    hair_colour: Colour
    upper_colour: Colour
    upper_colour2: Colour  # stripes / second tone / logo
    upper_pattern: str
    sleeves: str
    stripe_period: float  # stripe period as a fraction of body height
    upper_hem: float  # height of the upper garment's lower edge (fraction of body height)
    lower_type: str
    lower_colour: Colour
    shoe_colour: Colour
    accessory: str
    accessory_colour: Colour
    bag_side: float  # -1: bag at the right hip, +1: at the left
    stride: float  # hip swing amplitude, degrees
    arm_swing: float  # shoulder swing amplitude, degrees


def _choice(rng: np.random.Generator, spec: tuple[tuple, tuple]) -> str:
    values, weights = spec
    w = np.asarray(weights, dtype=float)
    return values[int(rng.choice(len(values), p=w / w.sum()))]


def _palette_colour(rng: np.random.Generator, cfg: SynthConfig, exclude: Colour | None = None) -> Colour:
    """A garment colour from the first palette_size entries (earlier = more common), jittered per identity."""
    n = cfg.palette_size
    w = 1.0 / (1.0 + 0.25 * np.arange(n))
    base = np.array(GARMENT_PALETTE[int(rng.choice(n, p=w / w.sum()))][1], dtype=float)
    if exclude is not None and n > 1 and np.abs(base - np.asarray(exclude)).sum() < 60:
        base = np.array(GARMENT_PALETTE[int(rng.choice(n))][1], dtype=float)  # one retry for contrast
    c = np.clip(base + rng.normal(0.0, cfg.colour_jitter, 3), 0, 255)
    return tuple(round(float(v), 1) for v in c)


def _sample_outfit(rng: np.random.Generator, cfg: SynthConfig) -> dict:
    """The garment groups of SHARED_GROUPS, sampled fresh."""
    upper = _palette_colour(rng, cfg)
    pattern = _choice(rng, UPPER_PATTERNS)
    lower_type = _choice(rng, LOWER_TYPES)
    hi = int(rng.choice(len(HAIR_COLOURS), p=_HAIR_WEIGHTS))
    shoes = SHOE_COLOURS[int(rng.integers(len(SHOE_COLOURS)))] if rng.random() < 0.8 else _palette_colour(rng, cfg)
    return dict(
        upper_colour=upper,
        upper_colour2=_palette_colour(rng, cfg, exclude=upper),
        upper_pattern=pattern,
        sleeves=_choice(rng, SLEEVES),
        stripe_period=round(float(rng.uniform(0.035, 0.06)), 4),
        lower_type=lower_type,
        lower_colour=_palette_colour(rng, cfg),
        shoe_colour=shoes,
        hair_style=_choice(rng, HAIR_STYLES),
        hair_colour=HAIR_COLOURS[hi][0],
        accessory=_choice(rng, ACCESSORIES),
        accessory_colour=_palette_colour(rng, cfg),
    )


@lru_cache(maxsize=8)
def archetype_outfits(cfg: SynthConfig) -> tuple[dict, ...]:
    """The popular outfits identities copy garment groups from (fixed by seed and palette)."""
    return tuple(
        _sample_outfit(np.random.default_rng([cfg.seed, STREAM_ARCHETYPE, a]), cfg) for a in range(cfg.archetypes)
    )


def sample_identity(rng: np.random.Generator, cfg: SynthConfig) -> Identity:
    """One person's appearance: body from ``rng``; each garment group copied from an archetype with share_prob."""
    own = _sample_outfit(rng, cfg)
    archetype = archetype_outfits(cfg)[int(rng.integers(cfg.archetypes))]
    for names in SHARED_GROUPS.values():
        if rng.random() < cfg.share_prob:
            own.update({k: archetype[k] for k in names})
    return Identity(
        height=round(float(np.clip(rng.normal(1.0, 0.045), 0.9, 1.1)), 4),
        build=round(float(np.clip(rng.normal(1.0, 0.08), 0.82, 1.22)), 4),
        skin=SKIN_TONES[int(rng.integers(len(SKIN_TONES)))],
        upper_hem=round(float(rng.uniform(0.47, 0.53)), 4),
        stride=round(float(rng.uniform(14.0, 21.0)), 3),
        arm_swing=round(float(rng.uniform(12.0, 28.0)), 3),
        bag_side=float(rng.choice([-1.0, 1.0])),
        **own,
    )
