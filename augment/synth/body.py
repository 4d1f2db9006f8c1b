"""The walking body: an articulated 3D skeleton, its camera projection and face-point visibility.

Skeleton points live in the person frame (lat = towards the person's LEFT, up, fwd), unit = body
height, feet on the ground (up = 0). The first :data:`NUM_JOINTS` points are the COCO-18 joints
(:data:`augment.data.keypoints.JOINTS` order); :data:`HEAD` and the heels and toes follow.
A camera looks at the person from a heading (0 = facing the camera, 90 = facing image right,
180 = back to the camera), tilted down a little, and projects orthographically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from augment.data.keypoints import IMAGE_SIZE, JOINT_INDEX, NUM_JOINTS
from augment.synth.appearance import Identity

IMG_H, IMG_W = IMAGE_SIZE


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
HEAD, RHEEL, RTOE, LHEEL, LTOE = NUM_JOINTS, NUM_JOINTS + 1, NUM_JOINTS + 2, NUM_JOINTS + 3, NUM_JOINTS + 4
NUM_POINTS = NUM_JOINTS + 5

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


def _legs(ident: Identity, pose: Pose, twist_pelvis: float) -> dict[str, tuple[np.ndarray, ...]]:
    """Side ("R", "L") -> (hip, knee, ankle, heel, toe) person-frame points (3,) of the walking legs."""
    b = ident.build
    phi = pose.phase
    amp = pose.stride
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
    return legs


def _arms(ident: Identity, pose: Pose, twist_shoulder: float) -> dict[str, tuple[np.ndarray, ...]]:
    """Side ("R", "L") -> (shoulder, elbow, wrist) person-frame points (3,) of the swinging arms."""
    b = ident.build
    amp = pose.stride
    s = math.sin(pose.phase)
    arms = {}
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
        arms[side] = (sho, elb, wri)
    return arms


def body_points(ident: Identity, pose: Pose) -> np.ndarray:
    """(NUM_POINTS, 3) skeleton points (lat, up, fwd) in units of body height, feet on the ground (up = 0)."""
    p = np.zeros((NUM_POINTS, 3))
    twist_pelvis, twist_shoulder, lean = trunk_motion(pose)
    for side, (hip, knee, ankle, heel, toe) in _legs(ident, pose, twist_pelvis).items():
        p[JOINT_INDEX[side + "hip"]], p[JOINT_INDEX[side + "kne"]], p[JOINT_INDEX[side + "ank"]] = hip, knee, ankle
        p[RHEEL if side == "R" else LHEEL], p[RTOE if side == "R" else LTOE] = heel, toe
    for side, (sho, elb, wri) in _arms(ident, pose, twist_shoulder).items():
        p[JOINT_INDEX[side + "sho"]], p[JOINT_INDEX[side + "elb"]], p[JOINT_INDEX[side + "wri"]] = sho, elb, wri
    p[JOINT_INDEX["neck"]] = (p[JOINT_INDEX["Rsho"]] + p[JOINT_INDEX["Lsho"]]) / 2 + np.array([0.0, 0.012, 0.0])
    p[HEAD] = (0.0, HEAD_Y, 0.012)
    p[JOINT_INDEX["nose"]] = (0.0, HEAD_Y - 0.012, 0.012 + 0.8 * HEAD_RZ)
    for side, sign in (("R", -1.0), ("L", 1.0)):
        p[JOINT_INDEX[side + "eye"]] = (sign * 0.022, HEAD_Y + 0.008, 0.012 + 0.85 * HEAD_RZ)
        p[JOINT_INDEX[side + "ear"]] = (sign * 0.96 * HEAD_RX, HEAD_Y - 0.002, 0.0)
    # Forward lean of the upper body while walking.
    upper = p[:, 1] > HIP_Y
    p[upper, 2] += (p[upper, 1] - HIP_Y) * lean
    # Stance foot on the ground: the lowest heel/toe touches up = 0 (this makes the body bob).
    foot_r = 0.018
    p[:, 1] -= p[[RHEEL, RTOE, LHEEL, LTOE], 1].min() - foot_r
    return p


def view_basis(heading_deg: float, tilt_deg: float) -> np.ndarray:
    """(3, 3) matrix mapping (lat, up, fwd) to camera (x right, v up, depth away from the camera)."""
    th, t = math.radians(heading_deg), math.radians(tilt_deg)
    x = (math.cos(th), 0.0, math.sin(th))
    z = (math.sin(th), 0.0, -math.cos(th))  # front view: fwd points at the camera (depth -1)
    v = (z[0] * math.sin(t), math.cos(t), z[2] * math.sin(t))  # looking down: far points appear higher
    d = (z[0] * math.cos(t), -math.sin(t), z[2] * math.cos(t))
    return np.array([x, v, d])


def project(points: np.ndarray, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Person-frame points (..., 3) -> image (x, y) pixels (..., 2) and depth (...,) (larger = farther)."""
    cam = points @ view_basis(pose.heading, pose.tilt).T
    xy = np.stack([pose.cx + cam[..., 0] * pose.height_px, pose.feet_y - cam[..., 1] * pose.height_px], -1)
    return xy, cam[..., 2]


def towards_camera(normal: tuple[float, float, float], heading_deg: float) -> float:
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
