"""The embedded person re-ID dataset: walking pedestrians rendered procedurally, Market-1501 layout.

``python -m augment.synth --out data/synth-market`` writes ``bounding_box_train/``,
``bounding_box_test/`` and ``query/`` with Market-1501 names (``PPPP_cCsS_FFFFFF_BB.jpg``,
128x64 JPEG crops), the community CSVs ``market-annotation-{train,test}.csv`` and
``market-pairs-{train,test}.csv``, ``preview.png`` (identities x cameras with the ground-truth
skeletons) and ``synth-config.json`` (the config that made it). Same config and seed give
byte-identical files, whatever the number of worker processes.

What is rendered
- Identity = persistent appearance (:class:`Identity`): height and build, skin tone, hair
  (colour, style), upper garment (colour, pattern: solid, stripes, two-tone, front logo; long or
  short sleeves), lower garment (trousers, shorts, skirt) and colour, shoes, optional backpack,
  bag or hat, and a gait (stride, arm swing). Identities share garments with a few popular
  "archetype" outfits (probability ``share_prob`` per garment group) and draw colours from the
  first ``palette_size`` colours of :data:`GARMENT_PALETTE`: the two difficulty knobs.
- Pose: an articulated 3D skeleton walking (phase drives hip, knee, shoulder and elbow angles,
  pelvis and shoulder twist, bobbing with the stance foot on the ground), seen from a heading
  (0 = facing the camera, 90 = facing image right, 180 = back to the camera), projected
  orthographically by a camera tilted down a little, drawn back to front (far arm and legs,
  pelvis, torso, near arm, head) with anti-aliased filled shapes.
- Cameras (six by default): each has its own procedural scene (brick wall, building facade,
  shop front, park, underpass, campus), walking direction, tilt, colour cast, gain, gamma,
  blur, resolution and noise. Images crop the camera's scene at random; people get scale and
  position jitter, occasional truncation (partly out of frame) and occluders (pole, low
  barrier, a passer-by in front).

Keypoints: COCO-18 order (:data:`augment.data.keypoints.JOINTS`), (y, x) integers in the 128x64
image (pixel centres; ``round`` of the projected joint), -1 where missing. Right/Left are the
person's: in a front view the right shoulder is on the image's left. A joint is -1 when
1. it falls outside the image (truncation) -- rounded x not in [0, 64) or y not in [0, 128);
2. it is covered by an occluder drawn in front of the person (pole, barrier, passer-by);
3. it is a face point turned away from the camera, as OpenPose misses them (thresholds in
   :data:`FACE_VISIBILITY`, angles between the point's outward normal and the direction to the
   camera): the nose beyond ~100 degrees, an eye beyond ~84 degrees (both eyes are missing in
   back views, the far eye in side views), an ear beyond ~117 degrees (the far ear in side
   views; both ears stay in front and back views);
4. it is the elbow or wrist of an arm behind the torso (arm deeper than the torso) that
   projects inside the torso silhouette by more than the forearm's radius. Other self-occluded
   joints (far leg, far shoulder and hip in side views) are kept, as OpenPose usually still
   finds them.
Junk images (``-1``) get the keypoints of whatever body part they show (usually few).

Splits: train and test identities are disjoint; every identity is seen by 2..6 cameras with at
least two images per camera. Query holds one image per (test identity, camera); the gallery the
rest, plus ``junk_images`` junk (``-1``: background, body fragment or a tiny off-centre person)
and ``distractor_images`` distractors (``0000``: one image each of people outside the query set).
Annotation CSVs cover every image file (train; gallery including junk and distractors, and
query), as the community files do; the pair files follow :func:`augment.data.keypoints.build_pairs`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from augment.data.keypoints import (
    ANNOTATION_FILES,
    DEFAULT_TEST_PAIRS,
    IMAGE_SIZE,
    JOINT_INDEX,
    JOINTS,
    MISSING,
    NUM_JOINTS,
    PAIRS_FILES,
    Annotations,
    build_pairs,
    joints_present,
    write_annotations,
    write_pairs,
)
from augment.data.market import MARKET_DIRS, MarketName, make_market_dirs, read_market

SYNTH_VERSION = 1  # bump when rendering changes: a previous output of "the same config" must match it
DEFAULT_OUT = Path("data/synth-market")
CONFIG_FILE = "synth-config.json"
PREVIEW_FILE = "preview.png"
IMG_H, IMG_W = IMAGE_SIZE

Colour = tuple[float, float, float]  # RGB, 0..255

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

# Seed streams: every random choice comes from default_rng([seed, stream, index, sub-index]).
STREAM_CAMERA, STREAM_ARCHETYPE, STREAM_TRAIN, STREAM_TEST, STREAM_DISTRACTOR, STREAM_JUNK = 1, 2, 3, 4, 5, 6


def difficulty_knobs(difficulty: float) -> tuple[int, float]:
    """(palette_size, share_prob) for a difficulty in [0, 1]: 0 -> (24, 0.1), 0.5 -> (16, 0.45), 1 -> (8, 0.8)."""
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"--difficulty must be in [0, 1], got {difficulty}")
    return int(round(24 - 16 * difficulty)), round(0.1 + 0.7 * difficulty, 4)


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the embedded dataset. Defaults: ~300 identities, ~3,800 images."""

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


# ---------------------------------------------------------------------------------------------
# Identities


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


# ---------------------------------------------------------------------------------------------
# Skeleton: 3D points in the person frame (lat = towards the person's LEFT, up, fwd), unit = body height


@dataclass(frozen=True)
class Pose:
    """One rendered instant: walking phase, heading and where the person stands in the image."""

    phase: float  # walking phase, radians; 0 = right leg mid-swing, pi/2 = right heel strike
    heading: float  # degrees; 0 faces the camera, 90 faces image right, 180 shows the back
    height_px: float  # pixel height of the person (feet to top of head)
    cx: float  # image x of the body's vertical axis
    feet_y: float  # image y of the ground under the feet
    stride: float = 1.0  # multiplier on the identity's stride and arm swing (0 = standing)
    tilt: float = 8.0  # camera looks down by this many degrees


def default_pose(heading: float = 0.0, phase: float = 0.0, **kw) -> Pose:
    """A centred, full-size pose, handy for tests and previews."""
    base = dict(phase=phase, heading=heading, height_px=110.0, cx=IMG_W / 2 - 0.5, feet_y=123.0)
    base.update(kw)
    return Pose(**base)


# Extra points after the 18 COCO joints.
HEAD, RHEEL, RTOE, LHEEL, LTOE = 18, 19, 20, 21, 22
NUM_POINTS = 23
_J = JOINT_INDEX

# Body proportions (fractions of body height, standing, feet at 0).
SHOULDER_Y, HIP_Y = 0.815, 0.525
SHOULDER_W, HIP_W = 0.098, 0.062
UPPER_ARM, FOREARM, THIGH, SHIN = 0.165, 0.15, 0.245, 0.245
HEAD_Y, HEAD_RX, HEAD_RY, HEAD_RZ = 0.925, 0.052, 0.068, 0.062
# Torso cross-sections: (height, lateral half-width, depth half-width); shoulders to hem.
TORSO_LEVELS = np.array(
    [[0.838, 0.075, 0.05], [0.806, 0.118, 0.058], [0.72, 0.104, 0.062], [0.62, 0.09, 0.058], [0.53, 0.095, 0.06]]
)
PELVIS_LEVELS = np.array([[0.575, 0.088, 0.058], [0.51, 0.094, 0.06], [0.455, 0.08, 0.055]])
# Limb radii (start, end) before build scaling.
R_THIGH, R_SHIN, R_UPPER_ARM, R_FOREARM = (0.046, 0.034), (0.032, 0.023), (0.028, 0.023), (0.022, 0.018)


def _sagittal(angle_deg: float) -> tuple[float, float]:
    """(up, fwd) of a unit vector rotated forward from straight down by angle_deg."""
    a = math.radians(angle_deg)
    return -math.cos(a), math.sin(a)


def trunk_motion(pose: Pose) -> tuple[float, float, float]:
    """(pelvis twist, shoulder twist, forward-lean slope) of the walking trunk; twists in radians."""
    s = math.sin(pose.phase)
    return (
        math.radians(6.0 * pose.stride * s),  # right hip forward as the right leg swings forward
        -math.radians(7.0 * pose.stride * s),  # shoulders counter-rotate
        math.tan(math.radians(4.0 * min(pose.stride, 1.0))),
    )


def body_points(ident: Identity, pose: Pose) -> np.ndarray:
    """(NUM_POINTS, 3) skeleton points (lat, up, fwd) in units of body height, feet on the ground (up = 0)."""
    p = np.zeros((NUM_POINTS, 3))
    b = ident.build
    phi = pose.phase
    amp = pose.stride
    s = math.sin(phi)
    twist_pelvis, twist_shoulder, lean = trunk_motion(pose)
    legs = {}
    for side, sign, ph in (("R", -1.0, phi), ("L", 1.0, phi + math.pi)):
        hip_flex = ident.stride * amp * math.sin(ph) + 3.0 * amp  # the hip flexes forward more than back
        knee_flex = 4.0 + 55.0 * amp * max(0.0, math.cos(ph + 0.35)) ** 1.5
        hip = np.array([sign * HIP_W * b * math.cos(twist_pelvis), HIP_Y, -sign * HIP_W * b * math.sin(twist_pelvis)])
        u, f = _sagittal(hip_flex)
        knee = hip + THIGH * np.array([0.01 * sign, u, f])
        shin_angle = hip_flex - knee_flex
        u, f = _sagittal(shin_angle)
        ankle = knee + SHIN * np.array([0.0, u, f])
        # The foot points forward, perpendicular to the shin (toes up at heel strike, down at toe-off).
        foot_dir = np.array([0.0, math.sin(math.radians(shin_angle)), math.cos(math.radians(shin_angle))])
        heel = ankle + np.array([0.0, -0.028, -0.02])
        toe = heel + 0.085 * foot_dir
        legs[side] = (hip, knee, ankle, heel, toe)
    for side, (hip, knee, ankle, heel, toe) in legs.items():
        p[_J[side + "hip"]], p[_J[side + "kne"]], p[_J[side + "ank"]] = hip, knee, ankle
        p[RHEEL if side == "R" else LHEEL], p[RTOE if side == "R" else LTOE] = heel, toe
    for side, sign, arm_sign in (("R", -1.0, -1.0), ("L", 1.0, 1.0)):
        flex = arm_sign * ident.arm_swing * amp * s  # arms swing opposite to the same-side leg
        elbow_flex = 12.0 + 28.0 * max(0.0, flex / max(ident.arm_swing, 1e-6))
        sho = np.array(
            [
                sign * SHOULDER_W * b * math.cos(twist_shoulder),
                SHOULDER_Y,
                -sign * SHOULDER_W * b * math.sin(twist_shoulder),
            ]
        )
        abd = math.radians(8.0)
        u, f = _sagittal(flex)
        elb = sho + UPPER_ARM * np.array([sign * math.sin(abd), u * math.cos(abd), f * math.cos(abd)])
        u, f = _sagittal(flex + elbow_flex)
        wri = elb + FOREARM * np.array([sign * 0.6 * math.sin(abd), u, f])
        p[_J[side + "sho"]], p[_J[side + "elb"]], p[_J[side + "wri"]] = sho, elb, wri
    p[_J["neck"]] = (p[_J["Rsho"]] + p[_J["Lsho"]]) / 2 + np.array([0.0, 0.012, 0.0])
    p[HEAD] = (0.0, HEAD_Y, 0.012)
    p[_J["nose"]] = (0.0, HEAD_Y - 0.012, 0.012 + 0.8 * HEAD_RZ)
    for side, sign in (("R", -1.0), ("L", 1.0)):
        p[_J[side + "eye"]] = (sign * 0.022, HEAD_Y + 0.008, 0.012 + 0.85 * HEAD_RZ)
        p[_J[side + "ear"]] = (sign * 0.96 * HEAD_RX, HEAD_Y - 0.002, 0.0)
    # Forward lean of the upper body while walking.
    upper = p[:, 1] > HIP_Y
    p[upper, 2] += (p[upper, 1] - HIP_Y) * lean
    # Stance foot on the ground: the lowest heel/toe touches up = 0 (this makes the body bob).
    foot_r = 0.018
    p[:, 1] -= p[[RHEEL, RTOE, LHEEL, LTOE], 1].min() - foot_r
    return p


def _view_basis(heading_deg: float, tilt_deg: float) -> np.ndarray:
    """(3, 3) matrix mapping (lat, up, fwd) to camera (x right, v up, depth away from the camera)."""
    th, t = math.radians(heading_deg), math.radians(tilt_deg)
    x = (math.cos(th), 0.0, math.sin(th))
    z = (math.sin(th), 0.0, -math.cos(th))  # front view: fwd points at the camera (depth -1)
    v = (z[0] * math.sin(t), math.cos(t), z[2] * math.sin(t))  # looking down: far points appear higher
    d = (z[0] * math.cos(t), -math.sin(t), z[2] * math.cos(t))
    return np.array([x, v, d])


def project(points: np.ndarray, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Person-frame points (..., 3) -> image (x, y) pixels (..., 2) and depth (...,) (larger = farther)."""
    cam = points @ _view_basis(pose.heading, pose.tilt).T
    xy = np.stack([pose.cx + cam[..., 0] * pose.height_px, pose.feet_y - cam[..., 1] * pose.height_px], -1)
    return xy, cam[..., 2]


def _towards_camera(normal: tuple[float, float, float], heading_deg: float) -> float:
    """Cosine between a person-frame direction and the direction to the camera."""
    th = math.radians(heading_deg)
    return normal[2] * math.cos(th) - normal[0] * math.sin(th)


_S30, _C30, _S20, _C20 = 0.5, math.sqrt(3) / 2, math.sin(math.radians(20)), math.cos(math.radians(20))
# Face points: (outward normal in the person frame, minimum cosine towards the camera to be detected).
FACE_VISIBILITY = {
    "nose": ((0.0, 0.0, 1.0), -0.2),
    "Reye": ((-_S30, 0.0, _C30), 0.1),
    "Leye": ((_S30, 0.0, _C30), 0.1),
    "Rear": ((-_C20, 0.0, -_S20), -0.45),
    "Lear": ((_C20, 0.0, -_S20), -0.45),
}


# ---------------------------------------------------------------------------------------------
# Drawing primitives (anti-aliased, sub-pixel: coordinates are scaled by 2**SHIFT)

SHIFT = 4
_SCALE = 1 << SHIFT
_SEMI = np.linspace(-math.pi / 2, math.pi / 2, 6)
_SEMI_COS, _SEMI_SIN = np.cos(_SEMI)[:, None], np.sin(_SEMI)[:, None]


def _fixed(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts) * _SCALE).astype(np.int32)


def fill_poly(img: np.ndarray, pts: np.ndarray, colour) -> None:
    cv2.fillPoly(img, [_fixed(pts).reshape(-1, 2)], colour, cv2.LINE_AA, SHIFT)


def capsule(p0: np.ndarray, p1: np.ndarray, r0: float, r1: float) -> np.ndarray:
    """(12, 2) outline of a tapered capsule from p0 (radius r0) to p1 (radius r1), pixels."""
    d = p1 - p0
    length = math.hypot(d[0], d[1])
    u = d / length if length > 1e-6 else np.array([0.0, 1.0])
    n = np.array([-u[1], u[0]])
    ring = _SEMI_COS * u + _SEMI_SIN * n  # from -n through u to +n
    return np.concatenate([p1 + r1 * ring, p0 - r0 * ring])


def fill_ellipse(img: np.ndarray, centre, axes, colour, angle: float = 0.0, start=0, end=360) -> None:
    c = (int(round(centre[0] * _SCALE)), int(round(centre[1] * _SCALE)))
    a = (max(1, int(round(axes[0] * _SCALE))), max(1, int(round(axes[1] * _SCALE))))
    cv2.ellipse(img, c, a, angle, start, end, colour, -1, cv2.LINE_AA, SHIFT)


def paint_clipped(img: np.ndarray, clip: np.ndarray, painter: Callable[[np.ndarray, np.ndarray], None]) -> None:
    """Run ``painter(layer, offset)`` on a copy of the clip polygon's box and blend it in inside the polygon."""
    h, w = img.shape[:2]
    x0, y0 = np.floor(clip.min(0)).astype(int) - 1
    x1, y1 = np.ceil(clip.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    roi = img[y0:y1, x0:x1]
    layer = roi.copy()
    offset = np.array([x0, y0], dtype=float)
    painter(layer, offset)
    mask = np.zeros(roi.shape[:2], np.uint8)
    fill_poly(mask, clip - offset, 255)
    a = mask[..., None].astype(np.float32) * (1.0 / 255.0)
    roi[:] = (layer * a + roi * (1.0 - a) + 0.5).astype(np.uint8)


def shade(colour: Colour, k: float) -> Colour:
    return tuple(min(255.0, c * k) for c in colour)


# ---------------------------------------------------------------------------------------------
# The person


def _cross_sections(
    levels: np.ndarray, ident: Identity, pose: Pose, twist: tuple[float, float], lean_ref: np.ndarray
) -> np.ndarray:
    """Silhouette polygon (2L, 2) of a stack of elliptic cross-sections (torso, pelvis)."""
    b = ident.build
    heights = levels[:, 0]
    # Twist interpolates from the pelvis to the shoulders; sections follow the lean of the spine.
    frac = np.clip((heights - HIP_Y) / (SHOULDER_Y - HIP_Y), 0, 1)
    rot = np.radians(pose.heading) + twist[0] + (twist[1] - twist[0]) * frac
    hw = np.sqrt((levels[:, 1] * b * np.cos(rot)) ** 2 + (levels[:, 2] * b * np.sin(rot)) ** 2)
    centres = np.stack([np.zeros_like(heights), heights, np.zeros_like(heights)], -1)
    centres[:, 1] += lean_ref[0]  # bobbing offset
    centres[:, 2] += np.maximum(heights - HIP_Y, 0) * lean_ref[1]
    xy, _ = project(centres, pose)
    hw_px = hw * pose.height_px
    left = np.stack([xy[:, 0] - hw_px, xy[:, 1]], -1)
    right = np.stack([xy[:, 0] + hw_px, xy[:, 1]], -1)
    return np.concatenate([left, right[::-1]])


def draw_person(img: np.ndarray, ident: Identity, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``ident`` in ``pose`` onto ``img`` (H, W, 3) uint8 RGB in place.

    Returns keypoints (18, 2) float (x, y) pixels and visibility (18,) bool after the face and
    self-occlusion rules (3 and 4 of the module docstring; frame and occluder rules come later).
    """
    pts3 = body_points(ident, pose)
    xy, depth = project(pts3, pose)
    H = pose.height_px
    b = ident.build
    heading = pose.heading % 360.0
    facing = math.cos(math.radians(heading))  # 1 front, -1 back
    side = math.sin(math.radians(heading))  # +1 facing image right
    twist_pelvis, twist_shoulder, lean = trunk_motion(pose)
    twist = (twist_pelvis, twist_shoulder)
    bob = pts3[_J["Rhip"], 1] - HIP_Y  # vertical shift that put the stance foot on the ground
    torso_levels = TORSO_LEVELS.copy()
    torso_levels[-1, 0] = ident.upper_hem
    torso = _cross_sections(torso_levels, ident, pose, twist, np.array([bob, lean]))
    pelvis = _cross_sections(PELVIS_LEVELS, ident, pose, twist, np.array([bob, lean]))
    torso_depth = float(depth[[_J["Rsho"], _J["Lsho"], _J["Rhip"], _J["Lhip"]]].mean())
    skin = ident.skin

    def limb(a: int, c: int, radii, colour, grow=0.0):
        r0, r1 = radii
        fill_poly(img, capsule(xy[a], xy[c], (r0 * b + grow) * H, (r1 * b + grow) * H), colour)

    def partial_limb(a: int, c: int, t: float, radii, colour, grow=0.0):
        """The first fraction t of a limb (short sleeves, shorts)."""
        r0, r1 = radii
        end = xy[a] + t * (xy[c] - xy[a])
        fill_poly(img, capsule(xy[a], end, (r0 * b + grow) * H, ((r0 + t * (r1 - r0)) * b + grow) * H), colour)

    def draw_leg(s: str, dim: float):
        hip, kne, ank = _J[s + "hip"], _J[s + "kne"], _J[s + "ank"]
        heel, toe = (RHEEL, RTOE) if s == "R" else (LHEEL, LTOE)
        lower = shade(ident.lower_colour, dim)
        skin_c = shade(skin, dim)
        if ident.lower_type == "trousers":
            limb(hip, kne, R_THIGH, lower, 0.006)
            limb(kne, ank, (R_SHIN[0] + 0.006, R_SHIN[1] + 0.008), lower)
        else:
            limb(hip, kne, R_THIGH, skin_c)
            limb(kne, ank, R_SHIN, skin_c)
            if ident.lower_type == "shorts":
                partial_limb(hip, kne, 0.62, R_THIGH, lower, 0.008)
        fill_poly(img, capsule(xy[heel], xy[toe], 0.02 * H, 0.017 * H), shade(ident.shoe_colour, dim))

    def draw_arm(s: str, dim: float):
        sho, elb, wri = _J[s + "sho"], _J[s + "elb"], _J[s + "wri"]
        sleeve = shade(ident.upper_colour2 if ident.upper_pattern == "two-tone" else ident.upper_colour, dim)
        skin_c = shade(skin, dim)
        limb(sho, elb, R_UPPER_ARM, skin_c)
        limb(elb, wri, R_FOREARM, skin_c)
        fill_ellipse(
            img,
            xy[wri] + 0.012 * H * (xy[wri] - xy[elb]) / (np.linalg.norm(xy[wri] - xy[elb]) + 1e-6),
            (0.02 * H * b, 0.022 * H * b),
            skin_c,
        )
        if ident.sleeves == "long":
            limb(sho, elb, R_UPPER_ARM, sleeve, 0.005)
            partial_limb(elb, wri, 0.85, R_FOREARM, sleeve, 0.005)
        else:
            partial_limb(sho, elb, 0.55, R_UPPER_ARM, sleeve, 0.006)

    def draw_box(centre, size, colour):
        """A box in the person frame (backpack, bag), drawn as the hull of its projected corners."""
        corners = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float) * size + centre
        cxy, _ = project(corners, pose)
        hull = cv2.convexHull(cxy.astype(np.float32)).reshape(-1, 2)
        fill_poly(img, hull, colour)
        # A darker lower band gives the box some volume.
        fill_poly(
            img,
            np.clip(hull, [-1e3, cxy[:, 1].mean() + 0.25 * (cxy[:, 1].max() - cxy[:, 1].mean())], [1e3, 1e3]),
            shade(colour, 0.8),
        )

    # Accessories in the person frame: backpack behind the torso, bag at the right or left hip.
    spine = np.array([0.0, bob, 0.0])
    backpack_c = np.array([0.0, 0.68, -0.11]) + spine + np.array([0, 0, 0.68 - HIP_Y]) * lean
    bag_side = ident.bag_side
    bag_c = np.array([bag_side * 0.14 * b, 0.5, 0.0]) + spine
    acc = ident.accessory
    backpack_depth = float(backpack_c @ _view_basis(heading, pose.tilt)[2])

    # Draw order: parts behind the torso, legs, pelvis, torso, parts in front, head.
    arm_depth = {s: float(depth[[_J[s + "sho"], _J[s + "elb"], _J[s + "wri"]]].mean()) for s in "RL"}
    leg_depth = {s: float(depth[[_J[s + "hip"], _J[s + "kne"], _J[s + "ank"]]].mean()) for s in "RL"}
    far_arm, near_arm = sorted("RL", key=lambda s: -arm_depth[s])
    behind = [s for s in (far_arm, near_arm) if arm_depth[s] > torso_depth + 0.015]
    dim_far = 0.86

    long_hair = ident.hair_style == "long"
    head_xy = xy[HEAD]

    def draw_long_hair():
        top = head_xy + np.array([-side * 0.02 * H, 0.0])
        bottom_y = head_xy[1] + 0.14 * H
        half = 0.05 * H * (0.8 + 0.2 * abs(facing))
        poly = np.array(
            [
                [top[0] - half, top[1]],
                [top[0] + half, top[1]],
                [top[0] + half * 1.08 - side * 0.015 * H, bottom_y],
                [top[0] - half * 1.08 - side * 0.015 * H, bottom_y],
            ]
        )
        fill_poly(img, poly, shade(ident.hair_colour, 0.92))

    if long_hair and facing > -0.2:
        draw_long_hair()  # hanging hair behind the shoulders
    if acc == "backpack" and backpack_depth > torso_depth:
        draw_box(backpack_c, np.array([0.082 * b, 0.11, 0.045]), ident.accessory_colour)
    for s in behind:
        draw_arm(s, dim_far)
    for s in sorted("RL", key=lambda s: -leg_depth[s]):
        draw_leg(s, dim_far if leg_depth[s] > leg_depth["R" if s == "L" else "L"] else 1.0)

    # Pelvis / skirt in the lower garment's colour.
    lower = ident.lower_colour
    if ident.lower_type == "skirt":
        knees = (xy[_J["Rkne"]] + xy[_J["Lkne"]]) / 2
        hem_y = knees[1] - 0.02 * H
        flare = np.hypot(*(xy[_J["Rkne"]] - xy[_J["Lkne"]])) / 2 + 0.06 * H * b
        top = pelvis[[0, -1]]
        skirt = np.array([top[0], [knees[0] - flare, hem_y], [knees[0] + flare, hem_y], top[1]])
        fill_poly(img, skirt, lower)
        fill_poly(img, pelvis[:2].tolist() + pelvis[-2:].tolist(), lower)
    else:
        fill_poly(img, pelvis, lower)

    # Torso with the garment pattern.
    upper = ident.upper_colour
    fill_poly(img, torso, upper)
    pattern = ident.upper_pattern
    if pattern != "solid":
        c2 = ident.upper_colour2
        top_y, hem_y = torso[:, 1].min(), torso[:, 1].max()

        def painter(layer: np.ndarray, off: np.ndarray):
            if pattern == "stripes":
                period = ident.stripe_period * H
                y = top_y + 0.35 * period
                while y < hem_y:
                    fill_poly(
                        layer,
                        np.array(
                            [
                                [-1, y],
                                [layer.shape[1] + 1, y],
                                [layer.shape[1] + 1, y + period / 2],
                                [-1, y + period / 2],
                            ]
                        )
                        - np.array([0, off[1]]),
                        c2,
                    )
                    y += period
            elif pattern == "two-tone":
                split_y = top_y + 0.45 * (hem_y - top_y)
                fill_poly(
                    layer,
                    np.array(
                        [[-1, split_y], [layer.shape[1] + 1, split_y], [layer.shape[1] + 1, hem_y + 2], [-1, hem_y + 2]]
                    )
                    - np.array([0, off[1]]),
                    c2,
                )
            elif pattern == "logo" and facing > 0.2:
                chest = np.array([[0.0, 0.72 + bob, 0.062 * b + (0.72 - HIP_Y) * lean]])
                cxy, _ = project(chest, pose)
                r = 0.028 * H * (0.6 + 0.4 * facing)
                fill_ellipse(layer, cxy[0] - off, (r * abs(facing) ** 0.5, r), c2)

        paint_clipped(img, torso, painter)

    if acc == "backpack":
        if backpack_depth <= torso_depth:
            draw_box(backpack_c, np.array([0.082 * b, 0.11, 0.045]), ident.accessory_colour)
        elif facing > 0.3:  # straps over the shoulders
            for s in "RL":
                sx = xy[_J[s + "sho"]] * 0.7 + xy[_J["neck"]] * 0.3
                fill_poly(
                    img,
                    capsule(sx, sx + np.array([0, 0.16 * H]), 0.01 * H, 0.01 * H),
                    shade(ident.accessory_colour, 0.7),
                )
    if acc == "bag":
        strap_from = xy[_J["Lsho" if bag_side < 0 else "Rsho"]]
        bag_xy, bag_d = project(bag_c[None], pose)
        fill_poly(img, capsule(strap_from, bag_xy[0], 0.008 * H, 0.008 * H), shade(ident.accessory_colour, 0.6))
        if bag_d[0] <= torso_depth + 0.05:
            draw_box(bag_c, np.array([0.025, 0.05, 0.06]), ident.accessory_colour)
    for s in (far_arm, near_arm):
        if s not in behind:
            draw_arm(s, dim_far if s == far_arm and abs(side) > 0.5 else 1.0)

    # Neck and head.
    neck_top_3d = np.array([0.0, HEAD_Y - 0.05, (HEAD_Y - 0.05 - HIP_Y) * lean]) + spine
    neck_top = project(neck_top_3d[None], pose)[0][0]
    fill_poly(img, capsule(xy[_J["neck"]], neck_top, 0.026 * H * b, 0.024 * H * b), shade(skin, 0.9))
    # The head is longer front-to-back than it is wide: its outline depends on the view.
    rx, ry = H * math.hypot(HEAD_RX * facing, HEAD_RZ * side), HEAD_RY * H
    hair = ident.hair_colour if ident.hair_style != "bald" else shade(skin, 0.82)
    fill_ellipse(img, head_xy, (rx, ry), hair)
    if facing > -0.45:
        w_face = 0.5 + 0.32 * facing
        fx = head_xy[0] + side * rx * (1.0 - w_face)
        top_cut = {"short": 0.62, "medium": 0.58, "long": 0.55, "bun": 0.6, "bald": 0.95}[ident.hair_style]
        face_h = ry * (0.9 + top_cut) / 2
        fy = head_xy[1] + ry - face_h
        fill_ellipse(img, (fx, fy), (rx * w_face, face_h), skin)
        if facing > 0.15:  # eyes as small dark marks
            for s in "RL":
                fill_ellipse(img, xy[_J[s + "eye"]], (0.6, 0.45), shade(skin, 0.45))
    if ident.hair_style == "bun":
        fill_ellipse(img, head_xy + np.array([-side * 0.8 * rx, -0.75 * ry]), (0.45 * rx, 0.4 * ry), hair)
    if long_hair and facing <= -0.2:
        draw_long_hair()  # seen from behind, the hair covers the neck
    if acc == "hat":
        fill_ellipse(
            img, head_xy - np.array([0, 0.25 * ry]), (rx * 1.08, ry * 0.8), ident.accessory_colour, start=180, end=360
        )
        brim = head_xy + np.array([side * 0.55 * rx, -0.22 * ry])
        fill_ellipse(img, brim, (rx * (0.7 + 0.5 * abs(side)), 0.14 * ry), shade(ident.accessory_colour, 0.85))

    # Keypoint visibility (rules 3 and 4).
    kp = xy[:NUM_JOINTS].copy()
    visible = np.ones(NUM_JOINTS, bool)
    for name, (normal, threshold) in FACE_VISIBILITY.items():
        if _towards_camera(normal, heading) < threshold:
            visible[_J[name]] = False
    torso_contour = torso.astype(np.float32).reshape(-1, 1, 2)
    for s in behind:
        for joint in ("elb", "wri"):
            x, y = kp[_J[s + joint]]
            # Hidden only when the limb's whole width is inside the silhouette, not along its edge.
            if cv2.pointPolygonTest(torso_contour, (float(x), float(y)), True) > R_FOREARM[0] * b * H:
                visible[_J[s + joint]] = False
    return kp, visible


def keypoints_to_int(kp_xy: np.ndarray, visible: np.ndarray, size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """(18, 2) float (x, y) + visibility -> (18, 2) int32 (y, x), -1 where hidden or outside the image."""
    h, w = size
    xy = np.round(kp_xy).astype(np.int64)
    inside = visible & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    out = np.full((NUM_JOINTS, 2), MISSING, np.int32)
    out[inside] = xy[inside][:, ::-1]
    return out


def render_person(ident: Identity, pose: Pose, background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one person (no camera effects): image (128, 64, 3) uint8 RGB and keypoints (18, 2) int32 (y, x), -1 missing.

    ``background`` (128, 64, 3) uint8 RGB is copied; by default a flat grey.
    """
    img = np.full((IMG_H, IMG_W, 3), 128, np.uint8) if background is None else background.copy()
    kp, vis = draw_person(img, ident, pose)
    return img, keypoints_to_int(kp, vis)


# ---------------------------------------------------------------------------------------------
# Cameras: scenes and image formation

BG_H, BG_W = 160, 448  # scene canvas each crop is cut from


def _noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth noise (h, w) float32 in about [0, 1] with features ~cell pixels."""
    small = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _textured(rng, h, w, colour, amount=0.12, cell=6) -> np.ndarray:
    n = _noise(rng, h, w, cell) * 0.7 + _noise(rng, h, w, max(2, cell // 3)) * 0.3
    return np.clip(np.asarray(colour, np.float32) * (1 - amount + 2 * amount * n[..., None]), 0, 255)


def _rand_colour(rng, base, spread=20.0) -> Colour:
    return tuple(float(v) for v in np.clip(np.asarray(base, float) + rng.normal(0, spread, 3), 0, 255))


def _ground(canvas: np.ndarray, rng, y0: int, colour, line_colour, tile: float, lines: bool = True) -> None:
    """Pavement from row y0 down with perspective tile lines."""
    h, w = canvas.shape[:2]
    canvas[y0:] = _textured(rng, h - y0, w, colour, 0.1, 4)
    if not lines:
        return
    vx, vy = rng.uniform(0.3, 0.7) * w, y0 - rng.uniform(60, 120)
    y, k = float(y0), 1.0
    while y < h:
        cv2.line(canvas, (0, int(y)), (w - 1, int(y)), line_colour, 1, cv2.LINE_AA)
        y += tile * 0.35 * k
        k *= 1.35
    for xb in np.arange(-w, 2 * w, tile * 1.6):
        t0 = (y0 - vy) / (h - vy)
        cv2.line(canvas, (int(vx + (xb - vx) * t0), y0), (int(xb), h - 1), line_colour, 1, cv2.LINE_AA)


def _street_furniture(canvas, rng, ground_y: int, count: int) -> None:
    """Lamp posts and bollards standing on the ground line."""
    for _ in range(count):
        x = int(rng.uniform(0, canvas.shape[1]))
        if rng.random() < 0.5:
            top = int(rng.uniform(0, ground_y * 0.4))
            c = _rand_colour(rng, (60, 62, 65), 10)
            cv2.rectangle(canvas, (x, top), (x + 2, ground_y + 4), c, -1)
            cv2.rectangle(canvas, (x - 4, top), (x + 6, top + 3), c, -1)
        else:
            c = _rand_colour(rng, (80, 80, 85), 25)
            cv2.rectangle(canvas, (x, ground_y - 10), (x + 5, ground_y + 6), c, -1)
            cv2.rectangle(canvas, (x, ground_y - 10), (x + 5, ground_y - 8), shade(c, 1.4), -1)


def scene_brick(rng) -> np.ndarray:
    c = np.zeros((BG_H, BG_W, 3), np.float32)
    gy = int(rng.uniform(92, 108))
    mortar = _rand_colour(rng, (185, 175, 160), 10)
    brick = _rand_colour(rng, (150, 75, 55), 18)
    c[:gy] = mortar
    bh, bw = 6, 15
    for r in range(0, gy // bh + 1):
        off = (r % 2) * bw // 2
        for x in range(-bw, BG_W + bw, bw):
            col = shade(brick, rng.uniform(0.78, 1.12))
            cv2.rectangle(c, (x + off + 1, r * bh + 1), (x + off + bw - 1, r * bh + bh - 1), col, -1)
    for _ in range(2):  # dark doorways and a drain pipe
        x = int(rng.uniform(0, BG_W - 40))
        cv2.rectangle(c, (x, gy - 62), (x + 30, gy), _rand_colour(rng, (45, 40, 38), 8), -1)
        cv2.rectangle(c, (x - 2, gy - 64), (x + 32, gy - 62), (90, 90, 90), -1)
    px = int(rng.uniform(0, BG_W))
    cv2.rectangle(c, (px, 0), (px + 3, gy), (70, 72, 75), -1)
    _ground(c, rng, gy, _rand_colour(rng, (150, 150, 148), 12), (110, 110, 108), 26)
    _street_furniture(c, rng, gy, 3)
    return c


def scene_facade(rng) -> np.ndarray:
    c = np.zeros((BG_H, BG_W, 3), np.float32)
    gy = int(rng.uniform(95, 110))
    c[:gy] = _textured(rng, gy, BG_W, _rand_colour(rng, (205, 195, 170), 18), 0.08, 10)
    glass = _rand_colour(rng, (60, 75, 95), 12)
    frame = _rand_colour(rng, (235, 235, 230), 8)
    for y in range(4, gy - 30, 34):
        for x in range(int(rng.uniform(0, 20)), BG_W, 42):
            cv2.rectangle(c, (x - 2, y - 2), (x + 22, y + 26), frame, -1)
            cv2.rectangle(c, (x, y), (x + 20, y + 24), shade(glass, rng.uniform(0.7, 1.5)), -1)
            cv2.line(c, (x + 10, y), (x + 10, y + 24), frame, 1)
    cv2.rectangle(c, (0, gy - 8), (BG_W, gy), shade(c[gy - 12, 5].tolist(), 0.75), -1)  # plinth
    _ground(c, rng, gy, _rand_colour(rng, (70, 70, 74), 8), (90, 90, 92), 40, lines=False)
    cv2.rectangle(c, (0, gy), (BG_W, gy + 5), (165, 165, 160), -1)  # kerb
    _street_furniture(c, rng, gy + 3, 4)
    return c


def scene_shop(rng) -> np.ndarray:
    c = np.zeros((BG_H, BG_W, 3), np.float32)
    gy = int(rng.uniform(96, 110))
    glass = np.linspace(0.6, 1.2, gy)[:, None, None] * np.asarray(_rand_colour(rng, (120, 140, 150), 15), np.float32)
    c[:gy] = np.clip(glass, 0, 255)
    for _ in range(25):  # reflections and goods behind the glass
        x, y = int(rng.uniform(0, BG_W)), int(rng.uniform(25, gy - 10))
        cv2.rectangle(
            c,
            (x, y),
            (x + int(rng.uniform(4, 18)), y + int(rng.uniform(4, 20))),
            _rand_colour(rng, (150, 130, 120), 60),
            -1,
        )
    a1, a2 = _rand_colour(rng, (190, 40, 40), 40), (235, 235, 230)
    for i, x in enumerate(range(0, BG_W, 10)):  # awning
        cv2.rectangle(c, (x, 0), (x + 10, 22), a1 if i % 2 else a2, -1)
    for x in range(0, BG_W, 10):
        cv2.ellipse(c, (x + 5, 22), (5, 3), 0, 0, 180, a1 if (x // 10) % 2 else a2, -1, cv2.LINE_AA)
    for x in range(int(rng.uniform(0, 50)), BG_W, 56):  # mullions
        cv2.rectangle(c, (x, 22), (x + 3, gy), (40, 40, 42), -1)
    cv2.rectangle(c, (0, gy - 6), (BG_W, gy), (55, 55, 58), -1)
    _ground(c, rng, gy, _rand_colour(rng, (190, 180, 165), 12), (150, 140, 128), 22)
    return c


def scene_park(rng) -> np.ndarray:
    c = np.zeros((BG_H, BG_W, 3), np.float32)
    gy = int(rng.uniform(98, 112))
    sky = np.linspace(1.0, 0.85, 40)[:, None, None] * np.asarray(_rand_colour(rng, (170, 200, 230), 10), np.float32)
    c[:40] = sky
    c[40:gy] = _textured(rng, gy - 40, BG_W, (70, 110, 60), 0.2, 5)
    for _ in range(70):  # canopy blobs
        x, y, r = int(rng.uniform(0, BG_W)), int(rng.uniform(0, 70)), int(rng.uniform(6, 20))
        cv2.circle(c, (x, y), r, _rand_colour(rng, (60, 110, 55), 22), -1, cv2.LINE_AA)
    for _ in range(6):  # trunks
        x = int(rng.uniform(0, BG_W))
        cv2.rectangle(c, (x, 50), (x + 5, gy - 10), _rand_colour(rng, (85, 62, 45), 10), -1)
    hedge = _textured(rng, 18, BG_W, _rand_colour(rng, (45, 85, 40), 10), 0.3, 3)
    c[gy - 18 : gy] = hedge
    _ground(c, rng, gy, _rand_colour(rng, (175, 160, 130), 12), (150, 135, 110), 30, lines=False)
    c[gy:] = np.clip(c[gy:] * (0.9 + 0.2 * _noise(rng, BG_H - gy, BG_W, 2)[..., None]), 0, 255)  # gravel
    return c


def scene_underpass(rng) -> np.ndarray:
    c = np.zeros((BG_H, BG_W, 3), np.float32)
    gy = int(rng.uniform(94, 108))
    c[:gy] = _textured(rng, gy, BG_W, _rand_colour(rng, (150, 150, 145), 10), 0.15, 12)
    for x in range(0, BG_W, 60):
        cv2.line(c, (x, 0), (x, gy), (110, 110, 106), 1)
    cv2.line(c, (0, gy // 2), (BG_W, gy // 2), (115, 115, 110), 1)
    for _ in range(5):  # posters
        x, y = int(rng.uniform(0, BG_W - 30)), int(rng.uniform(10, gy - 60))
        col = _rand_colour(rng, (150, 120, 110), 70)
        cv2.rectangle(c, (x, y), (x + 26, y + 38), col, -1)
        cv2.rectangle(c, (x + 3, y + 4), (x + 23, y + 18), _rand_colour(rng, (128, 128, 128), 70), -1)
        for k in range(3):
            cv2.line(c, (x + 4, y + 24 + 4 * k), (x + 20, y + 24 + 4 * k), shade(col, 0.5), 1)
    for _ in range(6):  # stains
        cv2.ellipse(
            c,
            (int(rng.uniform(0, BG_W)), int(rng.uniform(0, gy))),
            (int(rng.uniform(5, 25)), int(rng.uniform(3, 12))),
            0,
            0,
            360,
            (120, 118, 112),
            -1,
            cv2.LINE_AA,
        )
    _ground(c, rng, gy, _rand_colour(rng, (60, 60, 62), 6), (80, 80, 80), 50, lines=False)
    for x in range(0, BG_W, 24):  # zebra crossing
        cv2.fillConvexPoly(
            c,
            np.array([[x, gy + 10], [x + 12, gy + 10], [x + 16, BG_H], [x + 2, BG_H]], np.int32),
            (215, 215, 210),
            cv2.LINE_AA,
        )
    return c


def scene_campus(rng) -> np.ndarray:
    c = np.zeros((BG_H, BG_W, 3), np.float32)
    gy = int(rng.uniform(96, 110))
    c[:gy] = np.asarray(_rand_colour(rng, (190, 205, 220), 10), np.float32)
    bx = 0
    while bx < BG_W:  # distant buildings with rows of small windows
        bw_, top = int(rng.uniform(60, 140)), int(rng.uniform(5, 35))
        col = _rand_colour(rng, (150, 145, 140), 25)
        cv2.rectangle(c, (bx, top), (bx + bw_, gy), col, -1)
        for y in range(top + 5, gy - 20, 9):
            for x in range(bx + 4, bx + bw_ - 6, 8):
                cv2.rectangle(c, (x, y), (x + 4, y + 5), shade(col, 0.55), -1)
        bx += bw_ + int(rng.uniform(0, 20))
    c[gy - 22 : gy] = _textured(rng, 22, BG_W, (90, 130, 70), 0.15, 4)  # lawn strip
    tile_a, tile_b = _rand_colour(rng, (175, 120, 100), 15), _rand_colour(rng, (200, 195, 185), 10)
    _ground(c, rng, gy, tile_b, tile_a, 34)
    _street_furniture(c, rng, gy, 3)
    return c


SCENES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "brick": scene_brick,
    "facade": scene_facade,
    "shop": scene_shop,
    "park": scene_park,
    "underpass": scene_underpass,
    "campus": scene_campus,
}
# Main walking direction per camera (degrees of heading): front/back, side, diagonals.
WALK_AXES = (0.0, 90.0, 40.0, 135.0, 15.0, 65.0)


@dataclass
class Camera:
    """A camera: its scene canvas, walking direction and image formation (colour, blur, noise)."""

    index: int  # 0-based; file names use index + 1
    scene: str
    background: np.ndarray  # (BG_H, BG_W, 3) uint8 RGB
    walk_axis: float  # degrees
    tilt: float
    gain: float
    gamma: float
    cast: tuple[float, float, float]
    blur: float  # Gaussian sigma, pixels
    resolution: float  # <1: the camera's effective resolution is lower (down- then up-sampled)
    noise: float  # Gaussian std-dev, grey levels
    noise_field: np.ndarray  # (3 * IMG_H, 3 * IMG_W, 3) float32 N(0, noise^2)

    def crop(self, rng: np.random.Generator) -> np.ndarray:
        x = int(rng.integers(0, BG_W - IMG_W + 1))
        y = int(rng.integers(0, BG_H - IMG_H + 1))
        return self.background[y : y + IMG_H, x : x + IMG_W].copy()

    def lut(self, brightness: float) -> np.ndarray:
        """(1, 256, 3) uint8 tone curve: gain x brightness, colour cast, gamma."""
        x = np.arange(256, dtype=np.float64)[:, None] / 255.0
        y = np.clip(x * self.gain * brightness * np.asarray(self.cast)[None], 0, 1) ** self.gamma
        return np.round(y * 255).astype(np.uint8)[None]

    def form_image(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Resolution, blur, tone curve and sensor noise, in that order."""
        if self.resolution < 1.0:
            small = cv2.resize(
                img, (round(IMG_W * self.resolution), round(IMG_H * self.resolution)), interpolation=cv2.INTER_AREA
            )
            img = cv2.resize(small, (IMG_W, IMG_H), interpolation=cv2.INTER_LINEAR)
        sigma = self.blur * float(rng.uniform(0.8, 1.25))
        img = cv2.GaussianBlur(img, (0, 0), sigma)
        img = cv2.LUT(img, self.lut(float(rng.uniform(0.9, 1.1))))
        # Sensor noise: a random window of the camera's noise field (drawing fresh normals costs more than the rest).
        oy = int(rng.integers(0, self.noise_field.shape[0] - IMG_H + 1))
        ox = int(rng.integers(0, self.noise_field.shape[1] - IMG_W + 1))
        return cv2.add(img, self.noise_field[oy : oy + IMG_H, ox : ox + IMG_W], dtype=cv2.CV_8U)


@lru_cache(maxsize=16)
def make_camera(seed: int, index: int) -> Camera:
    """Camera ``index`` (0-based) of a dataset seed: deterministic scene and image formation."""
    rng = np.random.default_rng([seed, STREAM_CAMERA, index])
    scene = list(SCENES)[index % len(SCENES)]
    canvas = SCENES[scene](rng)
    canvas = cv2.GaussianBlur(np.clip(canvas, 0, 255).astype(np.uint8), (0, 0), 0.5)
    noise = float(rng.uniform(1.5, 5.0))
    return Camera(
        index=index,
        scene=scene,
        background=canvas,
        walk_axis=WALK_AXES[index % len(WALK_AXES)] + float(rng.normal(0, 8)),
        tilt=float(rng.uniform(4, 14)),
        gain=float(rng.uniform(0.8, 1.2)),
        gamma=float(rng.uniform(0.85, 1.2)),
        cast=tuple(float(v) for v in 1.0 + rng.uniform(-0.09, 0.09, 3)),
        blur=float(rng.uniform(0.35, 0.9)),
        resolution=float(rng.choice([1.0, 1.0, 0.8, 0.65])),
        noise=noise,
        noise_field=rng.standard_normal((3 * IMG_H, 3 * IMG_W, 3), dtype=np.float32) * np.float32(noise),
    )


# ---------------------------------------------------------------------------------------------
# Images: pose sampling, occluders, the full image


def sample_pose(
    rng: np.random.Generator,
    cfg: SynthConfig,
    ident: Identity,
    camera: Camera,
    track_heading: float,
    truncate: bool | None = None,
) -> Pose:
    """A pose on one walking track: phase, heading jitter, scale/position jitter, maybe truncation."""
    height = ident.height * float(rng.uniform(*cfg.person_height))
    cx = IMG_W / 2 - 0.5 + float(rng.uniform(-3, 3))
    feet_y = float(rng.uniform(119, 126))
    if truncate is None:
        truncate = rng.random() < cfg.truncation_prob
    if truncate:
        kind = rng.choice(3, p=[0.5, 0.4, 0.1])
        if kind == 0:  # feet cut off at the bottom
            feet_y += float(rng.uniform(10, 32))
        elif kind == 1:  # box shifted sideways
            cx += float(rng.choice([-1, 1]) * rng.uniform(12, 22))
        else:  # head cut at the top
            feet_y -= float(rng.uniform(8, 16))
    return Pose(
        phase=float(rng.uniform(0, 2 * math.pi)),
        heading=float((track_heading + rng.normal(0, 12)) % 360.0),
        height_px=height,
        cx=cx,
        feet_y=feet_y,
        stride=float(rng.uniform(0.7, 1.15)) if rng.random() > 0.05 else 0.1,  # a few stand still
        tilt=camera.tilt,
    )


def draw_occluder(img: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> str:
    """Draw a pole, a low barrier or a passer-by in front; returns its kind."""
    kind = ("pole", "barrier", "passer-by")[int(rng.choice(3, p=[0.4, 0.35, 0.25]))]
    if kind == "pole":
        x, w = float(rng.uniform(6, IMG_W - 6)), float(rng.uniform(3, 7))
        col = _rand_colour(rng, (85, 88, 92), 25)
        fill_poly(img, np.array([[x - w / 2, -1], [x + w / 2, -1], [x + w / 2, IMG_H], [x - w / 2, IMG_H]]), col)
        fill_poly(
            img,
            np.array([[x - w / 4, -1], [x - w / 4 + 1, -1], [x - w / 4 + 1, IMG_H], [x - w / 4, IMG_H]]),
            shade(col, 1.5),
        )
    elif kind == "barrier":
        y0 = float(rng.uniform(86, 112))
        x0, x1 = (-1.0, IMG_W + 1.0) if rng.random() < 0.6 else sorted(rng.uniform(-10, IMG_W + 10, 2).tolist())
        col = _rand_colour(rng, ((140, 140, 135), (50, 90, 45), (150, 40, 40))[int(rng.integers(3))], 20)
        fill_poly(img, np.array([[x0, y0], [x1, y0], [x1, IMG_H], [x0, IMG_H]]), col)
        for k in range(1, 4):
            y = y0 + k * 6.0
            fill_poly(img, np.array([[x0, y], [x1, y], [x1, y + 1], [x0, y + 1]]), shade(col, 0.7))
    else:
        other = sample_identity(rng, cfg)
        side = float(rng.choice([-1, 1]))
        pose = Pose(
            phase=float(rng.uniform(0, 2 * math.pi)),
            heading=float(rng.uniform(0, 360)),
            height_px=other.height * float(rng.uniform(110, 125)),
            cx=IMG_W / 2 + side * float(rng.uniform(27, 38)),
            feet_y=float(rng.uniform(125, 140)),
        )
        draw_person(img, other, pose)
    return kind


def render_sample(
    cfg: SynthConfig,
    camera: Camera,
    ident: Identity,
    pose: Pose,
    rng: np.random.Generator,
    occluder: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A full camera image: scene crop, person, maybe an occluder, image formation.

    Returns image (128, 64, 3) uint8 RGB and keypoints (18, 2) int32 (y, x), -1 missing (all four rules).
    """
    img = camera.crop(rng)
    kp, vis = draw_person(img, ident, pose)
    if occluder is None:
        occluder = rng.random() < cfg.occluder_prob
    if occluder:
        before = img.copy()
        draw_occluder(img, rng, cfg)
        covered = (img != before).any(-1)
        xy = np.round(kp).astype(int)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < IMG_W) & (xy[:, 1] >= 0) & (xy[:, 1] < IMG_H)
        vis[inside] &= ~covered[xy[inside, 1], xy[inside, 0]]
    return camera.form_image(img, rng), keypoints_to_int(kp, vis)


# ---------------------------------------------------------------------------------------------
# The dataset plan: identities -> cameras -> images with Market-1501 names


@dataclass(frozen=True)
class ImageResult:
    name: str
    split: str  # train, gallery or query
    pid: int
    camera: int  # 1-based
    coords: tuple  # (18, 2) (y, x) as nested tuples, -1 missing


SPLIT_STREAMS = {"train": STREAM_TRAIN, "test": STREAM_TEST}


def identity_rng(cfg: SynthConfig, stream: int, index: int, image: int = 0) -> np.random.Generator:
    """Generator for (seed, stream, identity index, image index); image 0 = the identity itself."""
    return np.random.default_rng([cfg.seed, stream, index, image])


def plan_tracks(rng: np.random.Generator, cfg: SynthConfig) -> list[dict]:
    """Cameras of one identity: 2..cameras of them, >= 2 images each, one walking track per camera."""
    lo, hi = cfg.images_per_id
    n = int(rng.integers(lo, hi + 1))
    n_cams = int(rng.integers(2, min(cfg.cameras, n // 2) + 1))
    cams = np.sort(rng.choice(cfg.cameras, n_cams, replace=False))
    counts = 2 + rng.multinomial(n - 2 * n_cams, np.full(n_cams, 1.0 / n_cams))
    tracks = []
    for cam, count in zip(cams.tolist(), counts.tolist()):
        camera_axis = WALK_AXES[cam % len(WALK_AXES)]
        heading = (camera_axis + 180.0 * int(rng.integers(2)) + float(rng.normal(0, 20))) % 360.0
        frames = int(rng.integers(0, 60000)) + np.cumsum(rng.integers(4, 60, count))
        boxes = rng.choice([1, 2, 3], count, p=[0.7, 0.2, 0.1])
        tracks.append(
            dict(
                camera=cam,
                heading=heading,
                sequence=int(rng.integers(1, 7)),
                frames=frames.tolist(),
                boxes=boxes.tolist(),
            )
        )
    return tracks


def _encode(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def render_identity(cfg: SynthConfig, role: str, index: int, pid: int, out: Path | None) -> list[ImageResult]:
    """Render (and write under ``out`` unless None) every image of identity ``index`` of ``role`` (train/test)."""
    stream = SPLIT_STREAMS[role]
    rng = identity_rng(cfg, stream, index)
    ident = sample_identity(rng, cfg)
    tracks = plan_tracks(rng, cfg)
    results = []
    j = 0
    for track in tracks:
        camera = make_camera(cfg.seed, track["camera"])
        query_at = int(rng.integers(len(track["frames"]))) if role == "test" else -1
        for k, (frame, box) in enumerate(zip(track["frames"], track["boxes"])):
            j += 1
            img_rng = identity_rng(cfg, stream, index, j)
            pose = sample_pose(img_rng, cfg, ident, camera, track["heading"])
            img, kps = render_sample(cfg, camera, ident, pose, img_rng)
            split = "train" if role == "train" else ("query" if k == query_at else "gallery")
            name = MarketName(pid, track["camera"] + 1, track["sequence"], frame, box).filename()
            results.append(_emit(out, split, name, pid, track["camera"] + 1, img, kps, cfg))
    return results


def _emit(out, split, name, pid, camera, img, kps, cfg) -> ImageResult:
    if out is not None:
        (Path(out) / MARKET_DIRS[split] / name).write_bytes(_encode(img, cfg.jpeg_quality))
    return ImageResult(name, split, pid, camera, tuple(map(tuple, kps.tolist())))


def render_extra(cfg: SynthConfig, role: str, index: int, out: Path | None) -> list[ImageResult]:
    """One gallery image: a distractor (0000, a person outside the query set) or junk (-1)."""
    stream = STREAM_DISTRACTOR if role == "distractor" else STREAM_JUNK
    rng = identity_rng(cfg, stream, index)
    ident = sample_identity(rng, cfg)
    cam = int(rng.integers(cfg.cameras))
    camera = make_camera(cfg.seed, cam)
    frame = 1000 * index + int(rng.integers(1000))  # unique per index
    pid = 0 if role == "distractor" else -1
    name = MarketName(pid, cam + 1, int(rng.integers(1, 7)), frame, int(rng.integers(1, 4))).filename()
    heading = (WALK_AXES[cam % len(WALK_AXES)] + 180.0 * int(rng.integers(2)) + float(rng.normal(0, 20))) % 360
    pose = sample_pose(rng, cfg, ident, camera, heading)
    if role == "junk":
        kind = int(rng.integers(3))
        if kind == 0:  # mostly background, a sliver of someone at the edge
            pose = replace(pose, cx=float(rng.choice([-15.0, IMG_W + 14.0])))
        elif kind == 1:  # a body fragment: the box is far too tight
            pose = replace(
                pose,
                height_px=float(rng.uniform(220, 340)),
                cx=float(rng.uniform(0, IMG_W)),
                feet_y=float(rng.uniform(150, 330)),
            )
        else:  # a tiny, off-centre person: the box is far too loose
            pose = replace(
                pose,
                height_px=float(rng.uniform(38, 60)),
                cx=float(rng.uniform(8, IMG_W - 8)),
                feet_y=float(rng.uniform(60, 126)),
            )
    img, kps = render_sample(cfg, camera, ident, pose, rng, occluder=False if role == "junk" else None)
    return [_emit(out, "gallery", name, pid, cam + 1, img, kps, cfg)]


def _jobs(cfg: SynthConfig) -> list[tuple]:
    """(kind, role, index, pid) for every rendering job, in a fixed order."""
    jobs = [("identity", "train", i, 1 + i) for i in range(cfg.train_ids)]
    jobs += [("identity", "test", i, 1 + cfg.train_ids + i) for i in range(cfg.test_ids)]
    jobs += [("extra", "distractor", i, 0) for i in range(cfg.distractor_images)]
    jobs += [("extra", "junk", i, -1) for i in range(cfg.junk_images)]
    return jobs


def _run_job(args: tuple) -> list[ImageResult]:
    cfg, out, (kind, role, index, pid) = args
    if kind == "identity":
        return render_identity(cfg, role, index, pid, out)
    return render_extra(cfg, role, index, out)


# ---------------------------------------------------------------------------------------------
# Writing the dataset

OUTPUT_NAMES = (*MARKET_DIRS.values(), *ANNOTATION_FILES.values(), *PAIRS_FILES.values(), PREVIEW_FILE, CONFIG_FILE)


def _marker(cfg: SynthConfig, complete: bool) -> dict:
    return {"format": "poseaug-synth-market", "version": SYNTH_VERSION, "complete": complete, "config": cfg.to_json()}


def previous_config(out: Path) -> SynthConfig | None:
    """The config of a previous rendering in ``out`` (None if there is none or it is unreadable)."""
    try:
        data = json.loads((out / CONFIG_FILE).read_text())
        if data.get("format") != "poseaug-synth-market" or data.get("version") != SYNTH_VERSION:
            return None
        return SynthConfig.from_json(data["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_complete(out: str | os.PathLike, cfg: SynthConfig) -> bool:
    """``out`` holds a finished rendering of exactly ``cfg`` (same code version)."""
    out = Path(out)
    try:
        data = json.loads((out / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return bool(data.get("complete")) and previous_config(out) == cfg


def _clear_outputs(out: Path) -> None:
    """Remove what a rendering writes (and nothing else) before writing again."""
    for name in OUTPUT_NAMES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


@dataclass
class RenderReport:
    """What :func:`render_dataset` did, for printing."""

    out: Path
    images: int
    seconds: float  # wall clock, rendering and writing the images
    cpu_seconds: float  # CPU time of this process over the same span (the workers' when workers == 1)
    workers: int
    annotations: dict  # split -> Annotations
    pairs: dict  # split -> number of pairs
    results: list

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def render_dataset(
    config: SynthConfig | None = None,
    out: str | os.PathLike = DEFAULT_OUT,
    *,
    overwrite: bool = False,
    workers: int = 1,
    preview: bool = True,
    log: Callable[[str], None] | None = print,
) -> Path:
    """Render the dataset of ``config`` into ``out`` (Market-1501 layout, CSVs, preview); returns ``out``.

    ``out`` must be absent, empty, or a previous rendering of the same config (it is rendered
    again, byte-identically); anything else raises FileExistsError unless ``overwrite``, which
    replaces the files a rendering writes and leaves other files alone. ``workers`` > 1 renders
    in that many processes with identical output. ``log`` receives the statistics lines
    (None: silent).
    """
    report = render_dataset_report(config, out, overwrite=overwrite, workers=workers, preview=preview)
    if log is not None:
        for line in statistics_lines(report):
            log(line)
    return report.out


def render_dataset_report(
    config: SynthConfig | None = None,
    out: str | os.PathLike = DEFAULT_OUT,
    *,
    overwrite: bool = False,
    workers: int = 1,
    preview: bool = True,
) -> RenderReport:
    """:func:`render_dataset`, returning the :class:`RenderReport` instead of printing it."""
    cfg = config or SynthConfig()
    out = Path(out)
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        prev = previous_config(out)
        if prev is None:
            raise FileExistsError(
                f"{out}: directory is not empty and is not an augment.synth output "
                f"(no readable {CONFIG_FILE}); choose another --out or pass --overwrite"
            )
        if prev != cfg:
            diff = [
                f"{f.name}={getattr(prev, f.name)!r}->{getattr(cfg, f.name)!r}"
                for f in fields(cfg)
                if getattr(prev, f.name) != getattr(cfg, f.name)
            ]
            raise FileExistsError(
                f"{out}: holds a rendering of a different config ({', '.join(diff)}); "
                "choose another --out or pass --overwrite"
            )
    out.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out)
    (out / CONFIG_FILE).write_text(json.dumps(_marker(cfg, complete=False), indent=1))
    make_market_dirs(out)

    start, cpu_start = time.perf_counter(), time.process_time()
    jobs = [(cfg, out, job) for job in _jobs(cfg)]
    if workers == 1:
        chunks = [_run_job(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunks = list(pool.map(_run_job, jobs, chunksize=4))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    results = [r for chunk in chunks for r in chunk]

    annotations, pairs = write_keypoint_files(out, results)
    if preview:
        write_preview(out / PREVIEW_FILE, out, results)
    marker = _marker(cfg, complete=True)
    marker["images"] = len(results)
    (out / CONFIG_FILE).write_text(json.dumps(marker, indent=1))
    return RenderReport(out, len(results), seconds, cpu_seconds, workers, annotations, pairs, results)


def ensure_dataset(out: str | os.PathLike = DEFAULT_OUT, config: SynthConfig | None = None, **kw) -> Path:
    """``out`` if it holds a finished rendering of ``config``; otherwise render it there first."""
    cfg = config or SynthConfig()
    if is_complete(out, cfg):
        return Path(out)
    return render_dataset(cfg, out, **kw)


def embedded_dataset(root: str | os.PathLike = DEFAULT_OUT, log: Callable[[str], None] = print) -> Path:
    """The embedded dataset every command defaults to, with one rule: a finished rendering at
    ``root`` (of any config, e.g. a smaller one for a quick look) is used as it is; anything else
    (absent, or a rendering killed half-way) is rendered afresh there with the default config."""
    root = Path(root)
    previous = previous_config(root)
    if previous is not None and is_complete(root, previous):
        return root
    log(f"[data] embedded dataset not found at {root}: rendering it (python -m augment.synth)")
    return ensure_dataset(root, SynthConfig())


def write_keypoint_files(out: Path, results: list[ImageResult]) -> tuple[dict, dict]:
    """The four community CSVs from the rendered keypoints; returns (annotations by split, pair counts)."""
    groups = {
        "train": [r for r in results if r.split == "train"],
        "test": [r for r in results if r.split in ("gallery", "query")],
    }
    annotations, pairs = {}, {}
    for split, rows in groups.items():
        rows = sorted(rows, key=lambda r: r.name)
        coords = np.array([r.coords for r in rows], np.int32).reshape(-1, NUM_JOINTS, 2)
        ann = Annotations([r.name for r in rows], coords, source=str(out / ANNOTATION_FILES[split]))
        write_annotations(out / ANNOTATION_FILES[split], ann)
        sample = DEFAULT_TEST_PAIRS if split == "test" else None
        table = build_pairs(ann, sample=sample, random_state=0)
        write_pairs(out / PAIRS_FILES[split], table)
        annotations[split], pairs[split] = ann, len(table)
    return annotations, pairs


# ---------------------------------------------------------------------------------------------
# Preview and statistics

# COCO-18 limbs; colours: the person's right side warm (red/orange), left side cool (blue/cyan), centre green.
LIMBS = (
    ("neck", "Rsho"),
    ("Rsho", "Relb"),
    ("Relb", "Rwri"),
    ("neck", "Lsho"),
    ("Lsho", "Lelb"),
    ("Lelb", "Lwri"),
    ("neck", "Rhip"),
    ("Rhip", "Rkne"),
    ("Rkne", "Rank"),
    ("neck", "Lhip"),
    ("Lhip", "Lkne"),
    ("Lkne", "Lank"),
    ("neck", "nose"),
    ("nose", "Reye"),
    ("Reye", "Rear"),
    ("nose", "Leye"),
    ("Leye", "Lear"),
)


def _side_colour(a: str, b: str) -> tuple[int, int, int]:
    """Limb (or joint, a == b) colour: right red/orange, left blue/cyan (legs the darker hue), centre green."""
    leg = any(part in a + b for part in ("hip", "kne", "ank"))
    if a.startswith("R") or b.startswith("R"):
        return (255, 60, 30) if leg else (255, 170, 0)
    if a.startswith("L") or b.startswith("L"):
        return (30, 90, 255) if leg else (0, 220, 255)
    return (40, 220, 60)


def draw_skeleton(img: np.ndarray, coords: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Overlay (18, 2) (y, x) keypoints on an RGB image (drawn at ``scale``); returns the image."""
    pts = {n: coords[i] for i, n in enumerate(JOINTS) if (coords[i] != MISSING).all()}
    t = max(1, int(round(scale * 0.75)))
    for a, b in LIMBS:
        if a in pts and b in pts:
            pa = (int(round(pts[a][1] * scale + scale / 2)), int(round(pts[a][0] * scale + scale / 2)))
            pb = (int(round(pts[b][1] * scale + scale / 2)), int(round(pts[b][0] * scale + scale / 2)))
            cv2.line(img, pa, pb, _side_colour(a, b), t, cv2.LINE_AA)
    for n, (y, x) in pts.items():
        c = (255, 255, 255) if n in ("nose", "neck") else _side_colour(n, n)
        centre = (int(round(x * scale + scale / 2)), int(round(y * scale + scale / 2)))
        cv2.circle(img, centre, t + 1, c, -1, cv2.LINE_AA)
    return img


def write_preview(path: Path, root: Path, results: list[ImageResult], rows: int = 6, scale: int = 3) -> Path:
    """Grid PNG: rows = identities (most cameras first), columns = cameras, skeleton overlaid; then a heading row."""
    by_pid: dict[int, dict[int, ImageResult]] = {}
    for r in results:
        if r.pid > 0 and r.split != "query":
            by_pid.setdefault(r.pid, {}).setdefault(r.camera, r)
    cams = sorted({r.camera for r in results})
    chosen = sorted(by_pid, key=lambda p: (-len(by_pid[p]), p))[:rows]
    ch, cw, label_w, head_h = IMG_H * scale, IMG_W * scale, 70, 24
    n_rows = len(chosen) + 1
    grid = np.full((head_h + n_rows * (ch + 4), label_w + len(cams) * (cw + 4), 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for j, cam in enumerate(cams):
        cv2.putText(
            grid, f"cam {cam}", (label_w + j * (cw + 4) + cw // 2 - 25, 17), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA
        )
    for i, pid in enumerate(chosen):
        y0 = head_h + i * (ch + 4)
        cv2.putText(grid, f"id {pid:04d}", (4, y0 + ch // 2), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for j, cam in enumerate(cams):
            r = by_pid[pid].get(cam)
            if r is None:
                continue
            data = np.fromfile(str(root / MARKET_DIRS[r.split] / r.name), np.uint8)
            img = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            big = cv2.resize(img, (cw, ch), interpolation=cv2.INTER_NEAREST)
            draw_skeleton(big, np.array(r.coords), scale)
            x0 = label_w + j * (cw + 4)
            grid[y0 : y0 + ch, x0 : x0 + cw] = big
    # Last row: one identity at headings 0, 60, ..., 300 on grey (checks left/right by eye).
    y0 = head_h + len(chosen) * (ch + 4)
    cv2.putText(grid, "heading", (4, y0 + ch // 2 - 8), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(grid, "0..300", (4, y0 + ch // 2 + 10), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    # A fixed person with a face, hair and a front logo, so front and back views are easy to tell apart.
    ident = replace(
        sample_identity(np.random.default_rng([0, 99]), SynthConfig(share_prob=0.0)),
        hair_style="short",
        hair_colour=HAIR_COLOURS[0][0],
        upper_pattern="logo",
        sleeves="short",
        lower_type="trousers",
        accessory="none",
    )
    for j in range(len(cams)):
        heading = 60.0 * j
        img, kps = render_person(ident, default_pose(heading=heading, phase=0.9))
        big = cv2.resize(img, (cw, ch), interpolation=cv2.INTER_NEAREST)
        draw_skeleton(big, kps, scale)
        x0 = label_w + j * (cw + 4)
        grid[y0 : y0 + ch, x0 : x0 + cw] = big
        cv2.putText(grid, f"{heading:.0f}", (x0 + 4, y0 + 16), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", grid[..., ::-1])
    path.write_bytes(buf.tobytes())
    return path


def statistics_lines(report: RenderReport) -> list[str]:
    """The printed summary: counts, keypoint visibility, pairs, speed, paths, and the reader's view."""
    res = report.results
    lines = [
        f"[synth] rendered {report.images} images in {report.seconds:.1f} s: "
        f"{report.images_per_second:.0f} images/s with {report.workers} worker process(es)"
    ]
    if report.workers == 1:  # CPU time is the per-core speed, whatever else shares the machine
        lines.append(
            f"[synth]   {report.images / max(report.cpu_seconds, 1e-9):.0f} images per CPU-second "
            f"({report.cpu_seconds:.1f} s CPU)"
        )
    for split in ("train", "gallery", "query"):
        rows = [r for r in res if r.split == split]
        ids = {r.pid for r in rows if r.pid > 0}
        lines.append(
            f"[synth]   {split:8s} {len(rows):6d} images  {len(ids):4d} identities  "
            f"{len({r.camera for r in rows})} cameras"
        )
    junk = sum(r.pid == -1 for r in res)
    distractors = sum(r.pid == 0 for r in res)
    lines.append(f"[synth]   gallery extras: {junk} junk (-1), {distractors} distractors (0000)")
    person = [r for r in res if r.pid != -1]
    coords = np.array([r.coords for r in person], np.int32).reshape(-1, NUM_JOINTS, 2)
    present = (coords != MISSING).all(-1).mean(0)
    lines.append(
        "[synth]   keypoints present (non-junk images): " + " ".join(f"{n}={p:.2f}" for n, p in zip(JOINTS, present))
    )
    no_torso = int((~joints_present(coords)).sum())
    lines.append(
        f"[synth]   images without all four torso joints: {no_torso} of {len(person)} "
        f"({no_torso / max(len(person), 1):.1%}); they form no pairs"
    )
    lines.append(f"[synth]   pairs: train {report.pairs['train']}, test {report.pairs['test']}")
    out = report.out
    lines.append(f"[synth]   wrote {out}/{{{','.join(MARKET_DIRS.values())}}}")
    for name in (*ANNOTATION_FILES.values(), *PAIRS_FILES.values(), PREVIEW_FILE, CONFIG_FILE):
        if (out / name).exists():
            lines.append(f"[synth]   wrote {out / name}")
    lines += ["[synth] read back: " + line for line in read_market(out).summary_lines()]
    return lines


# ---------------------------------------------------------------------------------------------
# CLI


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
