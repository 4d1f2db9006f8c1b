"""Render jobs: every image of one identity (or one extra gallery image), named the Market-1501 way.

Splits: train and test identities are disjoint; every identity is seen by 2..6 cameras with at
least two images per camera, one walking track per camera. Query holds one image per (test
identity, camera); the gallery the rest, plus junk (``-1``) and distractor (``0000``) images.
A job depends only on the config and its own indices, so any number of worker processes gives
the same files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from augment.data.keypoints import IMAGE_SIZE
from augment.data.market import MARKET_DIRS, MarketName
from augment.synth.appearance import sample_identity
from augment.synth.body import Pose
from augment.synth.config import SynthConfig
from augment.synth.scenes import WALK_AXES, make_camera, render_sample, sample_pose
from augment.synth.seeds import STREAM_DISTRACTOR, STREAM_JUNK, STREAM_TEST, STREAM_TRAIN

IMG_W = IMAGE_SIZE[1]


@dataclass(frozen=True)
class ImageResult:
    """One rendered image: its file name, split folder, person id, camera and keypoints."""

    name: str
    split: str  # train, gallery or query
    pid: int
    camera: int  # 1-based
    coords: tuple  # (18, 2) (y, x) as nested tuples, -1 missing


@dataclass
class RenderReport:
    """What :func:`augment.synth.writer.render_dataset` did, for printing."""

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


SPLIT_STREAMS = {"train": STREAM_TRAIN, "test": STREAM_TEST}


def identity_rng(cfg: SynthConfig, stream: int, index: int, image: int = 0) -> np.random.Generator:
    """Generator for (seed, stream, identity index, image index); image 0 = the identity itself.

    Population 0 keys the generator by those four numbers; population N > 0 appends N, which gives
    independent people (every identity, junk and distractor draw differs) with the same cameras."""
    key = [cfg.seed, stream, index, image] + ([cfg.population] if cfg.population else [])
    return np.random.default_rng(key)


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


def _junk_edge(pose: Pose, rng: np.random.Generator) -> Pose:
    """Mostly background, a sliver of someone at the edge."""
    return replace(pose, cx=float(rng.choice([-15.0, IMG_W + 14.0])))


def _junk_fragment(pose: Pose, rng: np.random.Generator) -> Pose:
    """A body fragment: the box is far too tight."""
    return replace(
        pose,
        height_px=float(rng.uniform(220, 340)),
        cx=float(rng.uniform(0, IMG_W)),
        feet_y=float(rng.uniform(150, 330)),
    )


def _junk_tiny(pose: Pose, rng: np.random.Generator) -> Pose:
    """A tiny, off-centre person: the box is far too loose."""
    return replace(
        pose,
        height_px=float(rng.uniform(38, 60)),
        cx=float(rng.uniform(8, IMG_W - 8)),
        feet_y=float(rng.uniform(60, 126)),
    )


# The ways a junk (-1) image misses its person, drawn uniformly: pose -> the junk box's pose.
JUNK_BOXES = (_junk_edge, _junk_fragment, _junk_tiny)


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
        pose = JUNK_BOXES[int(rng.integers(len(JUNK_BOXES)))](pose, rng)
    img, kps = render_sample(cfg, camera, ident, pose, rng, occluder=False if role == "junk" else None)
    return [_emit(out, "gallery", name, pid, cam + 1, img, kps, cfg)]


def render_jobs(cfg: SynthConfig) -> list[tuple]:
    """(kind, role, index, pid) for every rendering job, in a fixed order."""
    jobs = [("identity", "train", i, 1 + i) for i in range(cfg.train_ids)]
    jobs += [("identity", "test", i, 1 + cfg.train_ids + i) for i in range(cfg.test_ids)]
    jobs += [("extra", "distractor", i, 0) for i in range(cfg.distractor_images)]
    jobs += [("extra", "junk", i, -1) for i in range(cfg.junk_images)]
    return jobs


def run_job(args: tuple) -> list[ImageResult]:
    """Render one job of :func:`render_jobs`; ``args`` = (config, output root or None, job)."""
    cfg, out, (kind, role, index, pid) = args
    if kind == "identity":
        return render_identity(cfg, role, index, pid, out)
    return render_extra(cfg, role, index, out)
