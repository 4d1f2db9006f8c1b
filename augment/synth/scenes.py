"""Scenes and cameras: procedural backgrounds, image formation, pose sampling and occluders.

Each camera (six by default) has its own procedural scene (brick wall, building facade, shop
front, park, underpass, campus), walking direction, tilt, colour cast, gain, gamma, blur,
resolution and noise. Images crop the camera's scene at random; people get scale and position
jitter, occasional truncation (partly out of frame) and occluders (pole, low barrier, a passer-by
in front).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

from augment.data.keypoints import IMAGE_SIZE
from augment.synth.appearance import Identity, sample_identity
from augment.synth.body import Pose
from augment.synth.drawing import Colour, fill_poly, shade
from augment.synth.person import draw_person, keypoints_to_int
from augment.synth.seeds import STREAM_CAMERA

if TYPE_CHECKING:  # annotations only: the config validates against this module's scenes
    from augment.synth.config import SynthConfig

IMG_H, IMG_W = IMAGE_SIZE

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
# Pose sampling, occluders, the full image


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


def _pole(img: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> None:
    """A vertical pole over the whole image height, with a highlight."""
    x, w = float(rng.uniform(6, IMG_W - 6)), float(rng.uniform(3, 7))
    col = _rand_colour(rng, (85, 88, 92), 25)
    fill_poly(img, np.array([[x - w / 2, -1], [x + w / 2, -1], [x + w / 2, IMG_H], [x - w / 2, IMG_H]]), col)
    fill_poly(
        img,
        np.array([[x - w / 4, -1], [x - w / 4 + 1, -1], [x - w / 4 + 1, IMG_H], [x - w / 4, IMG_H]]),
        shade(col, 1.5),
    )


def _barrier(img: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> None:
    """A low barrier from the bottom edge up, across the image or part of it."""
    y0 = float(rng.uniform(86, 112))
    x0, x1 = (-1.0, IMG_W + 1.0) if rng.random() < 0.6 else sorted(rng.uniform(-10, IMG_W + 10, 2).tolist())
    col = _rand_colour(rng, ((140, 140, 135), (50, 90, 45), (150, 40, 40))[int(rng.integers(3))], 20)
    fill_poly(img, np.array([[x0, y0], [x1, y0], [x1, IMG_H], [x0, IMG_H]]), col)
    for k in range(1, 4):
        y = y0 + k * 6.0
        fill_poly(img, np.array([[x0, y], [x1, y], [x1, y + 1], [x0, y + 1]]), shade(col, 0.7))


def _passer_by(img: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> None:
    """Another person, larger (nearer the camera), to the left or right of the image centre."""
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


# Occluder kind -> (probability, drawer(img, rng, cfg)).
OCCLUDERS: dict[str, tuple[float, Callable[[np.ndarray, np.random.Generator, SynthConfig], None]]] = {
    "pole": (0.4, _pole),
    "barrier": (0.35, _barrier),
    "passer-by": (0.25, _passer_by),
}


def draw_occluder(img: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> str:
    """Draw a pole, a low barrier or a passer-by in front; returns its kind."""
    kinds = list(OCCLUDERS)
    kind = kinds[int(rng.choice(len(kinds), p=[OCCLUDERS[k][0] for k in kinds]))]
    OCCLUDERS[kind][1](img, rng, cfg)
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
