"""The embedded person re-ID dataset: walking pedestrians rendered procedurally, Market-1501 layout.

``python -m augment.synth --out data/synth-market`` writes ``bounding_box_train/``,
``bounding_box_test/`` and ``query/`` with Market-1501 names (``PPPP_cCsS_FFFFFF_BB.jpg``,
128x64 JPEG crops), the community CSVs ``market-annotation-{train,test}.csv`` and
``market-pairs-{train,test}.csv``, ``preview.png`` (identities x cameras with the ground-truth
skeletons) and ``synth-config.json`` (the config that made it). Same config and seed give
byte-identical files, whatever the number of worker processes.

What is rendered
- Identity = persistent appearance (:class:`~augment.synth.appearance.Identity`): height and build, skin tone, hair
  (colour, style), upper garment (colour, pattern: solid, stripes, two-tone, front logo; long or
  short sleeves), lower garment (trousers, shorts, skirt) and colour, shoes, optional backpack,
  bag or hat, and a gait (stride, arm swing). Identities share garments with a few popular
  "archetype" outfits (probability ``share_prob`` per garment group) and draw colours from the
  first ``palette_size`` colours of :data:`~augment.synth.appearance.GARMENT_PALETTE`: the two difficulty knobs.
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
   :data:`~augment.synth.body.FACE_VISIBILITY`, angles between the point's outward normal and the direction to the
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

Modules (lowest first; each imports only the ones above it):
``seeds`` (the seed streams), ``drawing`` (anti-aliased primitives), ``appearance`` (palettes,
outfits, identities), ``body`` (skeleton, poses, projection, face visibility), ``person``
(``draw_person`` and its drawing steps), ``scenes`` (backgrounds, cameras, pose sampling,
occluders, the full camera image), ``config`` (:class:`SynthConfig`, file names), ``jobs`` (render
jobs and their results), ``preview`` (skeleton overlay, preview grid, statistics), ``writer``
(``render_dataset``, the completeness marker, ``ensure_dataset``, ``embedded_dataset``, keypoint
files) and ``cli`` (``python -m augment.synth``). This module re-exports the public names.
"""

from augment.synth.appearance import (
    ACCESSORIES,
    GARMENT_PALETTE,
    HAIR_COLOURS,
    HAIR_STYLES,
    LOWER_TYPES,
    SHARED_GROUPS,
    SHOE_COLOURS,
    SKIN_TONES,
    SLEEVES,
    UPPER_PATTERNS,
    Identity,
    archetype_outfits,
    sample_identity,
)
from augment.synth.body import (
    FACE_VISIBILITY,
    HEAD,
    LHEEL,
    LTOE,
    NUM_POINTS,
    RHEEL,
    RTOE,
    Pose,
    body_points,
    default_pose,
    project,
    trunk_motion,
)
from augment.synth.cli import build_parser, config_from_args, main
from augment.synth.config import (
    CONFIG_FILE,
    DEFAULT_OUT,
    DISJOINT_OUT,
    PREVIEW_FILE,
    SYNTH_VERSION,
    SynthConfig,
    difficulty_knobs,
)
from augment.synth.drawing import Colour, capsule, fill_ellipse, fill_poly, paint_clipped, shade
from augment.synth.jobs import (
    ImageResult,
    RenderReport,
    identity_rng,
    plan_tracks,
    render_extra,
    render_identity,
)
from augment.synth.person import draw_person, keypoints_to_int, render_person
from augment.synth.preview import PREVIEW_BONES, draw_skeleton, statistics_lines, write_preview
from augment.synth.scenes import (
    BG_H,
    BG_W,
    SCENES,
    WALK_AXES,
    Camera,
    draw_occluder,
    make_camera,
    render_sample,
    sample_pose,
)
from augment.synth.seeds import (
    STREAM_ARCHETYPE,
    STREAM_CAMERA,
    STREAM_DISTRACTOR,
    STREAM_JUNK,
    STREAM_TEST,
    STREAM_TRAIN,
)
from augment.synth.writer import (
    OUTPUT_NAMES,
    embedded_dataset,
    embedded_disjoint_dataset,
    ensure_dataset,
    is_complete,
    previous_config,
    render_dataset,
    render_dataset_report,
    write_keypoint_files,
)

__all__ = [
    "ACCESSORIES",
    "BG_H",
    "BG_W",
    "CONFIG_FILE",
    "DEFAULT_OUT",
    "DISJOINT_OUT",
    "FACE_VISIBILITY",
    "GARMENT_PALETTE",
    "HAIR_COLOURS",
    "HAIR_STYLES",
    "HEAD",
    "LHEEL",
    "LOWER_TYPES",
    "LTOE",
    "NUM_POINTS",
    "OUTPUT_NAMES",
    "PREVIEW_BONES",
    "PREVIEW_FILE",
    "RHEEL",
    "RTOE",
    "SCENES",
    "SHARED_GROUPS",
    "SHOE_COLOURS",
    "SKIN_TONES",
    "SLEEVES",
    "STREAM_ARCHETYPE",
    "STREAM_CAMERA",
    "STREAM_DISTRACTOR",
    "STREAM_JUNK",
    "STREAM_TEST",
    "STREAM_TRAIN",
    "SYNTH_VERSION",
    "UPPER_PATTERNS",
    "WALK_AXES",
    "Camera",
    "Colour",
    "Identity",
    "ImageResult",
    "Pose",
    "RenderReport",
    "SynthConfig",
    "archetype_outfits",
    "body_points",
    "build_parser",
    "capsule",
    "config_from_args",
    "default_pose",
    "difficulty_knobs",
    "draw_occluder",
    "draw_person",
    "draw_skeleton",
    "embedded_dataset",
    "embedded_disjoint_dataset",
    "ensure_dataset",
    "fill_ellipse",
    "fill_poly",
    "identity_rng",
    "is_complete",
    "keypoints_to_int",
    "main",
    "make_camera",
    "paint_clipped",
    "plan_tracks",
    "previous_config",
    "project",
    "render_dataset",
    "render_dataset_report",
    "render_extra",
    "render_identity",
    "render_person",
    "render_sample",
    "sample_identity",
    "sample_pose",
    "shade",
    "statistics_lines",
    "trunk_motion",
    "write_keypoint_files",
    "write_preview",
]
