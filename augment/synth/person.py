"""Drawing one person: a :class:`Figure` (the body projected into the image) drawn back to front.

Draw order: parts behind the torso (long hair, a backpack, arms behind the torso), legs (far one
first), pelvis or skirt, torso with its garment pattern, accessories in front, the other arms,
then neck and head. Every step is a function of the image, the figure and its own arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from augment.data.keypoints import IMAGE_SIZE, JOINT_INDEX, MISSING, NUM_JOINTS
from augment.synth.appearance import Identity
from augment.synth.body import (
    FACE_VISIBILITY,
    HEAD,
    HEAD_RX,
    HEAD_RY,
    HEAD_RZ,
    HEAD_Y,
    HIP_Y,
    LHEEL,
    LTOE,
    PELVIS_LEVELS,
    R_FOREARM,
    R_SHIN,
    R_THIGH,
    R_UPPER_ARM,
    RHEEL,
    RTOE,
    SHOULDER_Y,
    TORSO_LEVELS,
    Pose,
    body_points,
    project,
    towards_camera,
    trunk_motion,
    view_basis,
)
from augment.synth.drawing import Colour, capsule, fill_ellipse, fill_poly, paint_clipped, shade

IMG_H, IMG_W = IMAGE_SIZE
DIM_FAR = 0.86  # shade of limbs on the far side of the body
HAIR_TOP_CUT = {"short": 0.62, "medium": 0.58, "long": 0.55, "bun": 0.6, "bald": 0.95}  # where the face ends


@dataclass(frozen=True)
class Figure:
    """One person projected into the image: what every drawing step reads.

    ``xy`` and ``depth`` index the skeleton points of :mod:`augment.synth.body`; image lengths are
    pixels, 3D lengths units of body height.
    """

    ident: Identity
    pose: Pose
    xy: np.ndarray  # (NUM_POINTS, 2) image (x, y) pixels
    depth: np.ndarray  # (NUM_POINTS,) camera depth (larger = farther)
    heading: float  # degrees in [0, 360)
    facing: float  # cos(heading): 1 front, -1 back
    side: float  # sin(heading): +1 facing image right
    bob: float  # vertical shift that put the stance foot on the ground
    lean: float  # forward-lean slope of the upper body
    torso: np.ndarray  # (10, 2) torso silhouette polygon, pixels
    pelvis: np.ndarray  # (6, 2) pelvis silhouette polygon, pixels
    torso_depth: float  # mean depth of shoulders and hips


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


def mean_depth(depth: np.ndarray, joints: tuple[str, ...]) -> float:
    """Mean camera depth of the named joints; ``depth`` (NUM_POINTS,) as :func:`augment.synth.body.project` gives."""
    return float(depth[[JOINT_INDEX[name] for name in joints]].mean())


def project_figure(ident: Identity, pose: Pose) -> Figure:
    """The skeleton of ``ident`` in ``pose``, projected, with the torso and pelvis silhouettes."""
    pts3 = body_points(ident, pose)
    xy, depth = project(pts3, pose)
    heading = pose.heading % 360.0
    twist_pelvis, twist_shoulder, lean = trunk_motion(pose)
    twist = (twist_pelvis, twist_shoulder)
    bob = pts3[JOINT_INDEX["Rhip"], 1] - HIP_Y
    torso_levels = TORSO_LEVELS.copy()
    torso_levels[-1, 0] = ident.upper_hem
    return Figure(
        ident=ident,
        pose=pose,
        xy=xy,
        depth=depth,
        heading=heading,
        facing=math.cos(math.radians(heading)),
        side=math.sin(math.radians(heading)),
        bob=bob,
        lean=lean,
        torso=_cross_sections(torso_levels, ident, pose, twist, np.array([bob, lean])),
        pelvis=_cross_sections(PELVIS_LEVELS, ident, pose, twist, np.array([bob, lean])),
        torso_depth=mean_depth(depth, ("Rsho", "Lsho", "Rhip", "Lhip")),
    )


# ---------------------------------------------------------------------------------------------
# Limbs


def limb(img: np.ndarray, fig: Figure, a: int, c: int, radii: tuple[float, float], colour, grow: float = 0.0) -> None:
    """A tapered capsule from skeleton point ``a`` to ``c``.

    ``radii`` (start, end) in body heights, scaled by the build; ``grow`` (a garment's thickness, body
    heights) is added after that scaling.
    """
    H, b, xy = fig.pose.height_px, fig.ident.build, fig.xy
    r0, r1 = radii
    fill_poly(img, capsule(xy[a], xy[c], (r0 * b + grow) * H, (r1 * b + grow) * H), colour)


def partial_limb(img: np.ndarray, fig: Figure, a: int, c: int, t: float, radii, colour, grow: float = 0.0) -> None:
    """The first fraction ``t`` of a :func:`limb` (short sleeves, shorts), its radius tapering as far as ``t``."""
    H, b, xy = fig.pose.height_px, fig.ident.build, fig.xy
    r0, r1 = radii
    end = xy[a] + t * (xy[c] - xy[a])
    fill_poly(img, capsule(xy[a], end, (r0 * b + grow) * H, ((r0 + t * (r1 - r0)) * b + grow) * H), colour)


def draw_leg(img: np.ndarray, fig: Figure, s: str, dim: float) -> None:
    """Leg ``s`` ("R" or "L"): trousers, or bare skin with shorts or under a skirt; then the shoe."""
    ident, H, xy = fig.ident, fig.pose.height_px, fig.xy
    hip, kne, ank = JOINT_INDEX[s + "hip"], JOINT_INDEX[s + "kne"], JOINT_INDEX[s + "ank"]
    heel, toe = (RHEEL, RTOE) if s == "R" else (LHEEL, LTOE)
    lower = shade(ident.lower_colour, dim)
    skin_c = shade(ident.skin, dim)
    if ident.lower_type == "trousers":
        limb(img, fig, hip, kne, R_THIGH, lower, 0.006)
        limb(img, fig, kne, ank, (R_SHIN[0] + 0.006, R_SHIN[1] + 0.008), lower)
    else:
        limb(img, fig, hip, kne, R_THIGH, skin_c)
        limb(img, fig, kne, ank, R_SHIN, skin_c)
        if ident.lower_type == "shorts":
            partial_limb(img, fig, hip, kne, 0.62, R_THIGH, lower, 0.008)
    fill_poly(img, capsule(xy[heel], xy[toe], 0.02 * H, 0.017 * H), shade(ident.shoe_colour, dim))


def draw_arm(img: np.ndarray, fig: Figure, s: str, dim: float) -> None:
    """Arm ``s`` ("R" or "L"): bare arm and hand, then a long or short sleeve."""
    ident, H, b, xy = fig.ident, fig.pose.height_px, fig.ident.build, fig.xy
    sho, elb, wri = JOINT_INDEX[s + "sho"], JOINT_INDEX[s + "elb"], JOINT_INDEX[s + "wri"]
    sleeve = shade(ident.upper_colour2 if ident.upper_pattern == "two-tone" else ident.upper_colour, dim)
    skin_c = shade(ident.skin, dim)
    limb(img, fig, sho, elb, R_UPPER_ARM, skin_c)
    limb(img, fig, elb, wri, R_FOREARM, skin_c)
    fill_ellipse(
        img,
        xy[wri] + 0.012 * H * (xy[wri] - xy[elb]) / (np.linalg.norm(xy[wri] - xy[elb]) + 1e-6),
        (0.02 * H * b, 0.022 * H * b),
        skin_c,
    )
    if ident.sleeves == "long":
        limb(img, fig, sho, elb, R_UPPER_ARM, sleeve, 0.005)
        partial_limb(img, fig, elb, wri, 0.85, R_FOREARM, sleeve, 0.005)
    else:
        partial_limb(img, fig, sho, elb, 0.55, R_UPPER_ARM, sleeve, 0.006)


def arm_order(fig: Figure) -> tuple[str, str, list[str]]:
    """(far arm, near arm, the arms behind the torso, far first), by mean camera depth of each arm."""
    arm_depth = {s: mean_depth(fig.depth, (s + "sho", s + "elb", s + "wri")) for s in "RL"}
    far_arm, near_arm = sorted("RL", key=lambda s: -arm_depth[s])
    behind = [s for s in (far_arm, near_arm) if arm_depth[s] > fig.torso_depth + 0.015]
    return far_arm, near_arm, behind


# ---------------------------------------------------------------------------------------------
# Accessories and hair


def draw_box(img: np.ndarray, pose: Pose, centre: np.ndarray, size: np.ndarray, colour) -> None:
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


def _spine(fig: Figure) -> np.ndarray:
    """(3,) person-frame offset of the bobbing spine."""
    return np.array([0.0, fig.bob, 0.0])


def backpack_centre(fig: Figure) -> np.ndarray:
    """(3,) person-frame centre of a backpack: behind the torso, following its lean."""
    return np.array([0.0, 0.68, -0.11]) + _spine(fig) + np.array([0, 0, 0.68 - HIP_Y]) * fig.lean


def bag_centre(fig: Figure) -> np.ndarray:
    """(3,) person-frame centre of a bag at the right or left hip."""
    return np.array([fig.ident.bag_side * 0.14 * fig.ident.build, 0.5, 0.0]) + _spine(fig)


def draw_backpack(img: np.ndarray, fig: Figure) -> None:
    size = np.array([0.082 * fig.ident.build, 0.11, 0.045])  # half-extents (lat, up, fwd), body heights
    draw_box(img, fig.pose, backpack_centre(fig), size, fig.ident.accessory_colour)


def backpack_behind(fig: Figure) -> bool:
    """The backpack is farther from the camera than the torso (drawn before it)."""
    return float(backpack_centre(fig) @ view_basis(fig.heading, fig.pose.tilt)[2]) > fig.torso_depth


def draw_long_hair(img: np.ndarray, fig: Figure) -> None:
    """Long hair hanging from the head: behind the shoulders, or over the neck from behind."""
    H, side, facing, head_xy = fig.pose.height_px, fig.side, fig.facing, fig.xy[HEAD]
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
    fill_poly(img, poly, shade(fig.ident.hair_colour, 0.92))


def draw_hat(img: np.ndarray, fig: Figure, rx: float, ry: float) -> None:
    """A cap over the head ellipse (semi-axes rx, ry pixels) with its brim towards the facing side."""
    colour, head_xy, side = fig.ident.accessory_colour, fig.xy[HEAD], fig.side
    fill_ellipse(img, head_xy - np.array([0, 0.25 * ry]), (rx * 1.08, ry * 0.8), colour, start=180, end=360)
    brim = head_xy + np.array([side * 0.55 * rx, -0.22 * ry])
    fill_ellipse(img, brim, (rx * (0.7 + 0.5 * abs(side)), 0.14 * ry), shade(colour, 0.85))


def draw_front_accessories(img: np.ndarray, fig: Figure) -> None:
    """A backpack in front of the torso (or its straps, seen from the front) and a bag with its strap."""
    ident, H, xy = fig.ident, fig.pose.height_px, fig.xy
    if ident.accessory == "backpack":
        if not backpack_behind(fig):
            draw_backpack(img, fig)
        elif fig.facing > 0.3:  # straps over the shoulders
            for s in "RL":
                sx = xy[JOINT_INDEX[s + "sho"]] * 0.7 + xy[JOINT_INDEX["neck"]] * 0.3
                fill_poly(
                    img,
                    capsule(sx, sx + np.array([0, 0.16 * H]), 0.01 * H, 0.01 * H),
                    shade(ident.accessory_colour, 0.7),
                )
    if ident.accessory == "bag":
        bag_c = bag_centre(fig)
        strap_from = xy[JOINT_INDEX["Lsho" if ident.bag_side < 0 else "Rsho"]]
        bag_xy, bag_d = project(bag_c[None], fig.pose)
        fill_poly(img, capsule(strap_from, bag_xy[0], 0.008 * H, 0.008 * H), shade(ident.accessory_colour, 0.6))
        if bag_d[0] <= fig.torso_depth + 0.05:
            draw_box(img, fig.pose, bag_c, np.array([0.025, 0.05, 0.06]), ident.accessory_colour)


# ---------------------------------------------------------------------------------------------
# Trunk and head


def draw_lower_garment(img: np.ndarray, fig: Figure) -> None:
    """Pelvis (or a skirt flaring to the knees) in the lower garment's colour."""
    ident, H, xy, pelvis = fig.ident, fig.pose.height_px, fig.xy, fig.pelvis
    lower = ident.lower_colour
    if ident.lower_type == "skirt":
        knees = (xy[JOINT_INDEX["Rkne"]] + xy[JOINT_INDEX["Lkne"]]) / 2
        hem_y = knees[1] - 0.02 * H
        flare = np.hypot(*(xy[JOINT_INDEX["Rkne"]] - xy[JOINT_INDEX["Lkne"]])) / 2 + 0.06 * H * ident.build
        top = pelvis[[0, -1]]
        skirt = np.array([top[0], [knees[0] - flare, hem_y], [knees[0] + flare, hem_y], top[1]])
        fill_poly(img, skirt, lower)
        fill_poly(img, pelvis[:2].tolist() + pelvis[-2:].tolist(), lower)
    else:
        fill_poly(img, pelvis, lower)


def _paint_stripes(layer: np.ndarray, off: np.ndarray, fig: Figure, top_y: float, hem_y: float) -> None:
    period = fig.ident.stripe_period * fig.pose.height_px
    y = top_y + 0.35 * period
    while y < hem_y:
        band = np.array([[-1, y], [layer.shape[1] + 1, y], [layer.shape[1] + 1, y + period / 2], [-1, y + period / 2]])
        fill_poly(layer, band - np.array([0, off[1]]), fig.ident.upper_colour2)
        y += period


def _paint_two_tone(layer: np.ndarray, off: np.ndarray, fig: Figure, top_y: float, hem_y: float) -> None:
    split_y = top_y + 0.45 * (hem_y - top_y)
    lower = np.array([[-1, split_y], [layer.shape[1] + 1, split_y], [layer.shape[1] + 1, hem_y + 2], [-1, hem_y + 2]])
    fill_poly(layer, lower - np.array([0, off[1]]), fig.ident.upper_colour2)


def _paint_logo(layer: np.ndarray, off: np.ndarray, fig: Figure, top_y: float, hem_y: float) -> None:
    facing = fig.facing
    if facing <= 0.2:  # the logo is on the front only
        return
    chest = np.array([[0.0, 0.72 + fig.bob, 0.062 * fig.ident.build + (0.72 - HIP_Y) * fig.lean]])
    cxy, _ = project(chest, fig.pose)
    r = 0.028 * fig.pose.height_px * (0.6 + 0.4 * facing)
    fill_ellipse(layer, cxy[0] - off, (r * abs(facing) ** 0.5, r), fig.ident.upper_colour2)


# Upper-garment pattern -> painter(layer, offset, figure, top y, hem y) drawing it in the second colour.
TORSO_PATTERNS = {"stripes": _paint_stripes, "two-tone": _paint_two_tone, "logo": _paint_logo}


def draw_torso(img: np.ndarray, fig: Figure) -> None:
    """The torso in the upper garment's colour, its pattern clipped to the silhouette."""
    torso = fig.torso
    fill_poly(img, torso, fig.ident.upper_colour)
    painter = TORSO_PATTERNS.get(fig.ident.upper_pattern)
    if painter is not None:
        top_y, hem_y = torso[:, 1].min(), torso[:, 1].max()
        paint_clipped(img, torso, partial(painter, fig=fig, top_y=top_y, hem_y=hem_y))


def draw_head(img: np.ndarray, fig: Figure) -> tuple[float, float]:
    """Neck, head (hair colour), face and eyes, hair bun; returns the head's semi-axes (rx, ry) in pixels."""
    ident, H, b, xy = fig.ident, fig.pose.height_px, fig.ident.build, fig.xy
    facing, side, skin, head_xy = fig.facing, fig.side, ident.skin, xy[HEAD]
    neck_top_3d = np.array([0.0, HEAD_Y - 0.05, (HEAD_Y - 0.05 - HIP_Y) * fig.lean]) + _spine(fig)
    neck_top = project(neck_top_3d[None], fig.pose)[0][0]
    fill_poly(img, capsule(xy[JOINT_INDEX["neck"]], neck_top, 0.026 * H * b, 0.024 * H * b), shade(skin, 0.9))
    # The head is longer front-to-back than it is wide: its outline depends on the view.
    rx, ry = H * math.hypot(HEAD_RX * facing, HEAD_RZ * side), HEAD_RY * H
    hair: Colour = ident.hair_colour if ident.hair_style != "bald" else shade(skin, 0.82)
    fill_ellipse(img, head_xy, (rx, ry), hair)
    if facing > -0.45:
        w_face = 0.5 + 0.32 * facing
        fx = head_xy[0] + side * rx * (1.0 - w_face)
        face_h = ry * (0.9 + HAIR_TOP_CUT[ident.hair_style]) / 2
        fy = head_xy[1] + ry - face_h
        fill_ellipse(img, (fx, fy), (rx * w_face, face_h), skin)
        if facing > 0.15:  # eyes as small dark marks
            for s in "RL":
                fill_ellipse(img, xy[JOINT_INDEX[s + "eye"]], (0.6, 0.45), shade(skin, 0.45))
    if ident.hair_style == "bun":
        fill_ellipse(img, head_xy + np.array([-side * 0.8 * rx, -0.75 * ry]), (0.45 * rx, 0.4 * ry), hair)
    return rx, ry


# ---------------------------------------------------------------------------------------------
# The whole person


def keypoint_visibility(fig: Figure, behind: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (18, 2) float (x, y) pixels and visibility (18,) bool after rules 3 (face) and 4 (arms behind)."""
    kp = fig.xy[:NUM_JOINTS].copy()
    visible = np.ones(NUM_JOINTS, bool)
    for name, (normal, threshold) in FACE_VISIBILITY.items():
        if towards_camera(normal, fig.heading) < threshold:
            visible[JOINT_INDEX[name]] = False
    torso_contour = fig.torso.astype(np.float32).reshape(-1, 1, 2)
    margin = R_FOREARM[0] * fig.ident.build * fig.pose.height_px
    for s in behind:
        for joint in ("elb", "wri"):
            x, y = kp[JOINT_INDEX[s + joint]]
            # Hidden only when the limb's whole width is inside the silhouette, not along its edge.
            if cv2.pointPolygonTest(torso_contour, (float(x), float(y)), True) > margin:
                visible[JOINT_INDEX[s + joint]] = False
    return kp, visible


def draw_person(img: np.ndarray, ident: Identity, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``ident`` in ``pose`` onto ``img`` (H, W, 3) uint8 RGB in place.

    Returns keypoints (18, 2) float (x, y) pixels and visibility (18,) bool after the face and
    self-occlusion rules (3 and 4 of the package docstring; frame and occluder rules come later).
    """
    fig = project_figure(ident, pose)
    long_hair = ident.hair_style == "long"
    far_arm, near_arm, behind = arm_order(fig)
    # Behind the torso: hanging hair, a backpack, arms; then the legs, far one first and dimmed.
    if long_hair and fig.facing > -0.2:
        draw_long_hair(img, fig)
    if ident.accessory == "backpack" and backpack_behind(fig):
        draw_backpack(img, fig)
    for s in behind:
        draw_arm(img, fig, s, DIM_FAR)
    leg_depth = {s: mean_depth(fig.depth, (s + "hip", s + "kne", s + "ank")) for s in "RL"}
    for s in sorted("RL", key=lambda s: -leg_depth[s]):
        draw_leg(img, fig, s, DIM_FAR if leg_depth[s] > leg_depth["R" if s == "L" else "L"] else 1.0)
    draw_lower_garment(img, fig)
    draw_torso(img, fig)
    draw_front_accessories(img, fig)
    for s in (far_arm, near_arm):
        if s not in behind:
            draw_arm(img, fig, s, DIM_FAR if s == far_arm and abs(fig.side) > 0.5 else 1.0)
    rx, ry = draw_head(img, fig)
    if long_hair and fig.facing <= -0.2:
        draw_long_hair(img, fig)  # seen from behind, the hair covers the neck
    if ident.accessory == "hat":
        draw_hat(img, fig, rx, ry)
    return keypoint_visibility(fig, behind)


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
