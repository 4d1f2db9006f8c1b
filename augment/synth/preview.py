"""Preview and statistics of a rendering: the skeleton overlay, the preview grid, the printed summary."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from augment.data.keypoints import (
    ANNOTATION_FILES,
    IMAGE_SIZE,
    JOINTS,
    MISSING,
    NUM_JOINTS,
    PAIRS_FILES,
    joints_present,
)
from augment.data.market import MARKET_DIRS, read_market
from augment.synth.appearance import HAIR_COLOURS, sample_identity
from augment.synth.body import default_pose
from augment.synth.config import CONFIG_FILE, PREVIEW_FILE, SynthConfig
from augment.synth.jobs import ImageResult, RenderReport
from augment.synth.person import render_person

IMG_H, IMG_W = IMAGE_SIZE

# The lines of the skeleton overlay (COCO-18 joint pairs; not the limb list of augment.data.pose).
# Colours: the person's right side warm (red/orange), left side cool (blue/cyan), centre green.
PREVIEW_BONES = (
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
    for a, b in PREVIEW_BONES:
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
