"""The OpenPose body network and its keypoint decoding against controlnet-aux's copy of Hzzone/pytorch-openpose.

controlnet-aux's package ``__init__`` pulls heavy optional dependencies, so only its ``open_pose`` body, model and
util modules are loaded (by file, under a private package name). Two of its edits to Hzzone's code are undone
here for the comparison: it resizes with INTER_AREA / LANCZOS4 where the original (and CMU's demo) uses
INTER_CUBIC, and its scale loop accumulates ``heatmap_avg += heatmap_avg + ...`` (harmless with its single
scale, 0.5, which the comparison uses). Tolerances: network outputs 1e-4 relative (float32); peak positions, ids,
people and keypoints exactly; peak and people scores 1e-4 relative (network noise) or 1e-12 on given maps.
"""

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from metric_weights import openpose_state

from generators.quality.openpose import load_body_pose
from generators.quality.pose_decode import (
    LIMBS,
    PAF_INDEX,
    PoseConfig,
    assemble_people,
    best_person,
    connect_limbs,
    decode,
    find_peaks,
    pose_maps,
)
from generators.quality.resize import scaled_size
from generators.quality.weights import MetricWeightsError


@pytest.fixture(scope="module")
def reference():
    """controlnet-aux's open_pose modules (body, util, model) without its package __init__."""
    spec = importlib.util.find_spec("controlnet_aux")
    if spec is None:
        pytest.skip("controlnet-aux is not installed (pip install --no-deps controlnet-aux)")
    name = "_reference_open_pose"
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(Path(next(iter(spec.submodule_search_locations))) / "open_pose")]
        sys.modules[name] = pkg
        importlib.import_module(f"{name}.util")  # util first: it and body import each other
    return importlib.import_module(f"{name}.body"), importlib.import_module(f"{name}.util")


def cubic_like_hzzone(monkeypatch, util):
    """Hzzone's (and CMU's) INTER_CUBIC resizes in place of controlnet-aux's."""
    resize_k = lambda x, fx, fy: cv2.resize(x, (0, 0), fx=fx, fy=fy, interpolation=cv2.INTER_CUBIC)
    resize_to = lambda x, s: cv2.resize(x, (int(s[1]), int(s[0])), interpolation=cv2.INTER_CUBIC)
    monkeypatch.setattr(util, "smart_resize_k", resize_k)
    monkeypatch.setattr(util, "smart_resize", resize_to)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random weights in body_pose_model.pth's flat layout (metric_weights.openpose_state)."""
    state = openpose_state()
    path = tmp_path_factory.mktemp("openpose") / "body_pose_model.pth"
    torch.save(state, path)
    return path


def person_image(seed: int, h: int = 64, w: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (5, 5), 2)


def test_network_matches_reference(reference, weights):
    body, _ = reference
    ref = body.Body(str(weights))
    x = torch.rand(2, 3, 40, 24) - 0.5
    with torch.no_grad():
        paf_ref, heat_ref = ref.model(x)
    hzzone = load_body_pose(weights, final_heatmap_relu=True)
    caffe = load_body_pose(weights)
    with torch.no_grad():
        paf, heat = hzzone(x)
        paf_c, heat_c = caffe(x)
    scale = max(1.0, heat_ref.abs().max().item())
    assert torch.allclose(paf, paf_ref, atol=1e-4 * scale) and torch.allclose(heat, heat_ref, atol=1e-4 * scale)
    assert torch.equal(paf_c, paf) and torch.equal(heat_c.relu(), heat) and (heat_c < 0).any()


def test_cmu_convention_keypoints_match_reference(reference, weights, monkeypatch):
    body, util = reference
    cubic_like_hzzone(monkeypatch, util)
    ref = body.Body(str(weights))
    net = load_body_pose(weights, final_heatmap_relu=True)
    cfg = PoseConfig(convention="cmu", scales=(0.5,))
    rgb = np.stack([person_image(s) for s in range(3)])
    heat, paf = pose_maps(net, rgb, cfg)
    found = 0
    for i, img in enumerate(rgb):
        candidate, subset = ref(img[:, :, ::-1].copy())  # the reference reads BGR
        peaks = find_peaks(heat[i : i + 1], cfg)[0]
        mine_candidate, mine_subset = assemble_people(
            peaks, connect_limbs(peaks, paf[i].permute(1, 2, 0).numpy(), img.shape[0], cfg), cfg
        )
        candidate = candidate.reshape(-1, 4)
        np.testing.assert_array_equal(mine_candidate[:, [0, 1, 3]], candidate[:, [0, 1, 3]])  # x, y, id
        np.testing.assert_allclose(mine_candidate[:, 2], candidate[:, 2], rtol=1e-4)  # float32 network noise
        np.testing.assert_array_equal(mine_subset[:, :18], subset[:, :18])
        np.testing.assert_allclose(mine_subset[:, 18:], subset[:, 18:], rtol=1e-4)
        assert np.array_equal(best_person(mine_candidate, mine_subset), best_person(candidate, subset))
        found += len(candidate)
    assert found > 0  # the random weights do produce peaks


def stick_figures(h: int, w: int, people: list[dict[int, tuple[int, int]]]) -> tuple[np.ndarray, np.ndarray]:
    """Hand-made full-resolution maps: a Gaussian blob (sigma 1.5) per joint, unit PAF vectors within 1.5 px
    of every limb whose two joints exist. Returns heat (H, W, 19), paf (H, W, 38); joints as (x, y)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    heat = np.zeros((h, w, 19))
    paf = np.zeros((h, w, 38))
    for joints in people:
        for j, (x, y) in joints.items():
            heat[:, :, j] = np.maximum(heat[:, :, j], np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2)))
        for (ja, jb), (ca, cb) in zip(LIMBS, PAF_INDEX):
            if ja - 1 not in joints or jb - 1 not in joints:
                continue
            (ax, ay), (bx, by) = joints[ja - 1], joints[jb - 1]
            d = np.array([bx - ax, by - ay], dtype=np.float64)
            length = np.linalg.norm(d)
            if length == 0:
                continue
            u = d / length
            t = np.clip(((xx - ax) * u[0] + (yy - ay) * u[1]) / length, 0, 1)
            near = np.hypot(xx - (ax + t * d[0]), yy - (ay + t * d[1])) <= 1.5
            paf[near, ca - 19], paf[near, cb - 19] = u[0], u[1]
    heat[:, :, 18] = np.clip(1 - heat[:, :, :18].max(axis=2), 0, 1)
    return heat, paf


PERSON = {0: (12, 6), 1: (12, 14), 2: (7, 14), 3: (6, 24), 4: (5, 33), 5: (17, 14), 6: (18, 24), 7: (19, 33)}
PERSON |= {8: (9, 34), 9: (9, 46), 10: (9, 58), 11: (15, 34), 12: (15, 46), 13: (15, 58), 14: (11, 4), 15: (13, 4)}
PERSON |= {16: (10, 5), 17: (14, 5)}


def reference_decode(reference, monkeypatch, heat: np.ndarray, paf: np.ndarray):
    """(candidate, subset) of the reference body code on given full-resolution maps: a stand-in network returns
    them and the resizes and padding become identities."""
    body, util = reference

    class Maps(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            to = lambda a: torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]
            return to(paf), to(heat)

    monkeypatch.setattr(util, "smart_resize_k", lambda x, fx, fy: x)
    monkeypatch.setattr(util, "smart_resize", lambda x, s: x)
    monkeypatch.setattr(util, "padRightDownCorner", lambda img, stride, pad: (img, [0, 0, 0, 0]))
    ref = body.Body.__new__(body.Body)
    ref.model = Maps()
    return ref(np.zeros(heat.shape[:2] + (3,), dtype=np.uint8))


def my_decode(heat: np.ndarray, paf: np.ndarray, cfg: PoseConfig = PoseConfig()):
    """(candidate, subset, keypoints) of this code on the same maps (float32 values, as the reference sees them)."""
    to = lambda a: torch.from_numpy(a.astype(np.float32).astype(np.float64)).permute(2, 0, 1)[None]
    heat_t, paf_t = to(heat), to(paf)
    peaks = find_peaks(heat_t, cfg)[0]
    connections = connect_limbs(peaks, paf_t[0].permute(1, 2, 0).numpy(), heat.shape[0], cfg)
    return (*assemble_people(peaks, connections, cfg), decode(heat_t, paf_t, cfg)[0])


def test_decoding_of_hand_made_maps_matches_reference(reference, monkeypatch):
    small = {j: (x // 2 + 30, y // 2 + 8) for j, (x, y) in PERSON.items() if j not in (4, 7, 10)}
    heat, paf = stick_figures(64, 48, [PERSON, small])
    candidate, subset = reference_decode(reference, monkeypatch, heat, paf)
    mine_candidate, mine_subset, keypoints = my_decode(heat, paf)
    np.testing.assert_allclose(mine_candidate, candidate, rtol=1e-12)
    np.testing.assert_allclose(mine_subset, subset, rtol=1e-12)
    assert len(subset) == 2  # both people, the small one without its wrists and right ankle
    assert np.array_equal(keypoints, best_person(candidate, subset))
    assert [tuple(keypoints[j]) for j in (0, 1, 13)] == [(6, 12), (14, 12), (58, 15)]  # (y, x) of the big one


def test_people_without_a_neck_are_merged_through_the_ears(reference, monkeypatch):
    """Without the neck the arms and the head start separate people; the shoulder-ear limbs (the last two)
    merge them; the legs (3 joints each) are deleted as weak."""
    neckless = {j: yx for j, yx in PERSON.items() if j != 1}
    heat, paf = stick_figures(64, 32, [neckless])
    candidate, subset = reference_decode(reference, monkeypatch, heat, paf)
    mine_candidate, mine_subset, keypoints = my_decode(heat, paf)
    np.testing.assert_allclose(mine_candidate, candidate, rtol=1e-12)
    np.testing.assert_allclose(mine_subset, subset, rtol=1e-12)
    assert len(subset) == 1 and subset[0, -1] == 11
    present = sorted(j for j in range(18) if keypoints[j, 0] >= 0)
    assert present == [0, 2, 3, 4, 5, 6, 7, 14, 15, 16, 17]


def skimage014_reference(img: np.ndarray, size, order: int) -> np.ndarray:
    """scikit-image 0.14.2's ``resize(order, preserve_range=True)``: its affine map and Catmull-Rom / bilinear
    kernels through today's ``warp`` (same Cython kernels), then 0.14's clip rule."""
    from skimage.transform import AffineTransform, warp

    rows, cols = size
    factors = np.array(img.shape[:2], dtype=float) / np.array(size, dtype=float)
    src = np.array([[1, 1], [1, rows], [cols, rows]]) - 1
    dst = np.zeros(src.shape)
    dst[:, 0] = factors[1] * (src[:, 0] + 0.5) - 0.5
    dst[:, 1] = factors[0] * (src[:, 1] + 0.5) - 0.5
    tform = AffineTransform()
    tform.estimate(src, dst)
    out = warp(img.astype(np.float64), tform, output_shape=size, order=order, mode="constant", cval=0, clip=False)
    lo, hi = img.min(), img.max()
    keep = (not lo <= 0 <= hi) & (out == 0)
    return np.where(keep, out, np.clip(out, lo, hi))


def test_skimage014_resize_matches_skimage_kernels():
    from generators.quality.resize import skimage014_resize

    rng = np.random.default_rng(3)
    img = rng.uniform(20, 255, (13, 7, 3))  # min > 0: the cval-keeping branch is live
    maps = rng.normal(size=(5, 3, 19))
    for arr, size, order in ((img, (37, 20), 3), (img, (9, 5), 3), (maps, (40, 24), 1), (maps, (3, 2), 1)):
        mine = skimage014_resize(torch.from_numpy(arr).permute(2, 0, 1)[None], size, order)[0].permute(1, 2, 0)
        np.testing.assert_allclose(mine.numpy(), skimage014_reference(arr, size, order), atol=1e-9)


def test_patn_convention_maps(weights):
    """PATN's multi-scale search: skimage-0.14 bicubic input per scale, x / 255 - 0.5, unpadded network input
    (floor pooling), maps resized bilinearly to the image, heatmaps averaged and PAFs summed."""
    net = load_body_pose(weights)
    cfg = PoseConfig(scales=(0.5, 1.0), boxsize=64)
    rgb = np.stack([person_image(7, 32, 20), person_image(8, 32, 20)])
    heat, paf = pose_maps(net, rgb, cfg)
    for i, img in enumerate(rgb):
        bgr = img[:, :, ::-1].astype(np.float64)
        heat_ref, paf_ref = 0, 0
        for s in cfg.scales:
            size = scaled_size(img.shape[:2], s * cfg.boxsize / img.shape[0])
            x = skimage014_reference(bgr, size, 3) / 255 - 0.5
            with torch.no_grad():
                p, h = net(torch.from_numpy(x).permute(2, 0, 1)[None].float())
            heat_ref = heat_ref + skimage014_reference(h[0].permute(1, 2, 0).double().numpy(), img.shape[:2], 1)
            paf_ref = paf_ref + skimage014_reference(p[0].permute(1, 2, 0).double().numpy(), img.shape[:2], 1)
        np.testing.assert_allclose(heat[i].permute(1, 2, 0).numpy(), heat_ref / 2, atol=1e-5)
        np.testing.assert_allclose(paf[i].permute(1, 2, 0).numpy(), paf_ref, atol=1e-5)
    assert scaled_size((32, 20), 0.5 * 64 / 32) == (32, 20) and scaled_size((128, 64), 0.5 * 368 / 128) == (184, 92)


def test_missing_openpose_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MetricWeightsError) as err:
        load_body_pose()
    text = str(err.value)
    assert "body_pose_model.pth" in text and "pose_estimator.h5" in text
    assert "--openpose-weights PATH" in text and "--skip pckh" in text and "pytorch-openpose" in text
    bad = tmp_path / "x.pth"
    torch.save({"conv1_1.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not an OpenPose"):
        load_body_pose(bad)


@pytest.mark.parametrize("pool_padding", ["valid", "same"])
def test_keras_h5_weights_load_like_the_torch_file(weights, tmp_path, pool_padding):
    """pose_estimator.h5 in Keras 2's ``model.save`` layout: ``model_weights/<layer>/<layer>/kernel:0`` (kh, kw,
    cin, cout) and ``bias:0``; the pools' padding read from the model config."""
    h5py = pytest.importorskip("h5py")
    import json

    state = torch.load(weights, weights_only=True)
    layers = [{"class_name": "InputLayer", "config": {"name": "input_1"}}]
    layers += [
        {"class_name": "MaxPooling2D", "config": {"name": f"pool{i}_stage1", "padding": pool_padding}}
        for i in (1, 2, 3)
    ]
    path = tmp_path / "pose_estimator.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"layers": layers}}).encode()
        group = h5.create_group("model_weights")
        for key, value in state.items():
            name, param = key.split(".")
            sub = group.require_group(name).require_group(name)
            if param == "weight":
                sub["kernel:0"] = value.permute(2, 3, 1, 0).numpy()
            else:
                sub["bias:0"] = value.numpy()
    keras = load_body_pose(path)
    assert keras.ceil_pool == (pool_padding == "same")
    torch_net = load_body_pose(weights, ceil_pool=keras.ceil_pool)
    x = torch.rand(1, 3, 44, 20) - 0.5  # 20 -> 10 -> 5 -> 2 (floor) or 3 (ceil)
    with torch.no_grad():
        a, b = keras(x), torch_net(x)
    assert a[1].shape[-1] == (3 if pool_padding == "same" else 2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_detect_keypoints_is_maps_then_decode(weights):
    net = load_body_pose(weights)
    cfg = PoseConfig(scales=(1.0,), boxsize=32)
    rgb = np.stack([person_image(s, 32, 16) for s in range(3)])
    from generators.quality.pose_decode import detect_keypoints

    out = detect_keypoints(net, rgb, cfg, batch_size=2)
    assert out.shape == (3, 18, 2) and out.dtype == np.int64
    assert np.array_equal(out, decode(*pose_maps(net, rgb, cfg), cfg))
    assert ((out == -1) | ((out >= 0) & (out < [32, 16]))).all()
