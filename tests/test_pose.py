"""Pose encodings against hand-computed values and transcriptions of the official code.

References: PATN / Deformable GAN `cords_to_map`, `produce_ma_mask`, `pose_masks`, `affine_transforms`
(pose_utils.py, pose_transform.py), PG2 `_getPoseMask` / `_getSparseKeypoint` (convert_market.py),
rebuilt here with scikit-image (draw.polygon, draw.disk, measure.grid_points_in_poly, dilation,
erosion, estimate_transform). Polygons: the official code ran scikit-image 0.14 (PATN pins 0.14.2),
whose `point_in_polygon` is transcribed below (`legacy_inside`); today's scikit-image (>= 0.18) also
marks pixels exactly on an edge or vertex, which the tests bound separately.
"""

import math

import numpy as np
import pytest
import torch
from generator_inputs import TEMPLATE, random_poses
from skimage.draw import disk as sk_disk
from skimage.draw import polygon as sk_polygon
from skimage.measure import grid_points_in_poly
from skimage.morphology import dilation, erosion, footprint_rectangle
from skimage.transform import estimate_transform

from augment.data import pose as P
from augment.data.keypoints import JOINT_INDEX as J
from augment.data.keypoints import JOINTS

H, W = 128, 64
SQUARE5 = footprint_rectangle((5, 5))


def only(**joints):
    """A pose with only the named joints present."""
    k = np.full((18, 2), -1, dtype=np.int32)
    for name, yx in joints.items():
        k[J[name]] = yx
    return k


def present(kp):
    return (kp != -1).all(-1)


def close(mask):
    return erosion(dilation(mask, SQUARE5), SQUARE5)


def edge_distance(verts, pts):
    """(P,) distance of points (P,2) to the nearest edge of the closed polygon verts (V,2)."""
    a, b = verts, np.roll(verts, -1, 0)
    ab = b - a
    ap = pts[:, None] - a[None]
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-300), 0, 1)
    return np.linalg.norm(ap - t[..., None] * ab, axis=-1).min(1)


# ---------------------------------------------------------------- official code, transcribed


def ref_cords_to_map(cords, img_size=(H, W), sigma=6):
    result = np.zeros(img_size + cords.shape[0:1], dtype="float32")
    for i, point in enumerate(cords):
        if point[0] == -1 or point[1] == -1:
            continue
        xx, yy = np.meshgrid(np.arange(img_size[1]), np.arange(img_size[0]))
        result[..., i] = np.exp(-((yy - point[0]) ** 2 + (xx - point[1]) ** 2) / (2 * sigma**2))
    return result.transpose(2, 0, 1)


def ref_sparse_keypoint(r, c, height, width, radius=4):
    r, c = int(r), int(c)
    out = []
    for i in range(-radius, radius + 1):
        for j in range(-radius, radius + 1):
            if 0 <= r + i < height and 0 <= c + j < width and np.sqrt(float(i**2 + j**2)) <= radius:
                out.append((r + i, c + j))
    return out


def ref_pg2_mask(kp, height=H, width=W, radius=4):
    """`_getPoseMask` (convert_market.py has `from __future__ import division`: `/` is true division)."""
    dense = np.zeros((height, width))
    for a, b in P.CONNECTIONS_1INDEXED:
        p0, p1 = kp[a - 1], kp[b - 1]
        if -1 in p0 or -1 in p1:
            continue
        (r0, c0), (r1, c1) = p0, p1
        pts = ref_sparse_keypoint(r0, c0, height, width, radius) + ref_sparse_keypoint(r1, c1, height, width, radius)
        sample_n = int(np.sqrt((r0 - r1) ** 2 + (c0 - c1) ** 2) / radius)
        if sample_n > 1:
            for i in range(1, sample_n):
                pts += ref_sparse_keypoint(
                    r0 + (r1 - r0) * i / sample_n, c0 + (c1 - c0) * i / sample_n, height, width, radius
                )
        for r, c in pts:
            dense[r, c] = 1
    return close(dense)


def legacy_inside(xp, yp, x, y):
    """scikit-image 0.14 `point_in_polygon(xp, yp, x, y)`, vectorised over the points x, y only."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    c = np.zeros(np.broadcast(x, y).shape, dtype=bool)
    j = len(xp) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(len(xp)):
            straddle = ((yp[i] <= y) & (y < yp[j])) | ((yp[j] <= y) & (y < yp[i]))
            c ^= straddle & (x < (xp[j] - xp[i]) * (y - yp[i]) / (yp[j] - yp[i]) + xp[i])
            j = i
    return c


def legacy_polygon(r, c, shape):
    """scikit-image 0.14 `draw.polygon(r, c, shape)` as a mask (its bounding box, its ray along +c)."""
    out = np.zeros(shape, dtype=bool)
    minr, maxr = int(max(0, r.min())), min(shape[0] - 1, int(math.ceil(r.max())))
    minc, maxc = int(max(0, c.min())), min(shape[1] - 1, int(math.ceil(c.max())))
    if maxr < minr or maxc < minc:
        return out
    rr, cc = np.mgrid[minr : maxr + 1, minc : maxc + 1]
    out[rr, cc] = legacy_inside(c, r, cc, rr)
    return out


def legacy_grid_points_in_poly(shape, verts):
    """scikit-image 0.14 `measure.grid_points_in_poly`: point_in_polygon(vx=verts[:,0], vy=verts[:,1], m, n)."""
    m, n = np.mgrid[0 : shape[0], 0 : shape[1]]
    return legacy_inside(verts[:, 0], verts[:, 1], m, n)


def ref_eval_mask(kp, img_size=(H, W), point_radius=4, modern=False):
    """`produce_ma_mask`; polygons by skimage 0.14 (default) or today's skimage (modern=True)."""
    mask = np.zeros(img_size, dtype=bool)
    for a, b in P.CONNECTIONS_1INDEXED:
        f, t = a - 1, b - 1
        if -1 in kp[f] or -1 in kp[t] or (kp[f] == kp[t]).all():  # zero length: official divides by 0
            continue
        norm_vec = kp[f] - kp[t]
        norm_vec = np.array([-norm_vec[1], norm_vec[0]])
        norm_vec = point_radius * norm_vec / np.linalg.norm(norm_vec)
        v = np.array([kp[f] + norm_vec, kp[f] - norm_vec, kp[t] - norm_vec, kp[t] + norm_vec])
        if modern:
            yy, xx = sk_polygon(v[:, 0], v[:, 1], shape=img_size)
            mask[yy, xx] = True
        else:
            mask |= legacy_polygon(v[:, 0], v[:, 1], img_size)
    for joint in kp:
        if -1 in joint:
            continue
        yy, xx = sk_disk((joint[0], joint[1]), point_radius, shape=img_size)  # == old circle()
        mask[yy, xx] = True
    return close(mask)


def named(kp):
    """`give_name_to_keypoints`: name -> (x, y)."""
    return {name: kp[i][::-1] for i, name in enumerate(JOINTS) if -1 not in kp[i]}


def ref_st(kp):
    return np.sqrt((np.sum((kp["Rhip"] - kp["Rsho"]) ** 2) + np.sum((kp["Lhip"] - kp["Lsho"]) ** 2)) / 2.0)


def ref_estimate_polygon(fr, to, st, inc_to, inc_from=0.1, p_to=0.2, p_from=0.2):
    fr = fr + (fr - to) * inc_from
    to = to + (to - fr) * inc_to
    norm_vec = fr - to
    norm_vec = np.array([-norm_vec[1], norm_vec[0]])
    norm = np.linalg.norm(norm_vec)
    if norm == 0:
        return np.array([fr + 1, fr - 1, to - 1, to + 1])
    norm_vec = norm_vec / norm
    return np.array(
        [fr + st * p_from * norm_vec, fr - st * p_from * norm_vec, to - st * p_to * norm_vec, to + st * p_to * norm_vec]
    )


def ref_pose_masks(array2, img_size=(H, W), modern=False):
    kp2 = named(array2)
    st2 = ref_st(kp2)
    masks = [np.ones(img_size)]
    head = [n for n in P.HEAD_JOINTS if n in kp2]
    if head:
        com = np.mean([kp2[n] for n in head], axis=0, keepdims=True).astype(int)
        lo = np.maximum(com.min(0) - int(0.4 * st2), 0)
        hi = np.minimum(com.max(0) + int(0.4 * st2), img_size[::-1])
        m = np.zeros(img_size)
        m[lo[1] : hi[1], lo[0] : hi[0]] = 1
        masks.append(m)
    else:
        masks.append(np.zeros(img_size))
    for (fr, to), inc_to in zip(P.LIMBS, (0.1, 0.1, 0.5, 0.5, 0.1, 0.1, 0.5, 0.5)):
        if fr not in kp2 or to not in kp2:
            masks.append(np.zeros(img_size))
            continue
        verts = ref_estimate_polygon(kp2[fr], kp2[to], st2, inc_to)[:, ::-1]
        masks.append(grid_points_in_poly(img_size, verts) if modern else legacy_grid_points_in_poly(img_size, verts))
    return np.array(masks, dtype=np.float32)


NO_POINT = np.array([[1, 0, 1000], [0, 1, 1000], [0, 0, 1]])


def ref_affine_transforms(array1, array2):
    """`affine_transforms(source, target)` -> (10,3,3); the skimage fit is today's (same algorithm)."""
    kp1, kp2 = named(array1), named(array2)
    st1, st2 = ref_st(kp1), ref_st(kp2)
    out = []
    names = list(P.TORSO_POINTS)
    out.append(
        estimate_transform(
            "affine", src=np.array([kp2[n] for n in names]), dst=np.array([kp1[n] for n in names])
        ).params
    )
    head = [n for n in P.HEAD_JOINTS if n in kp1 and n in kp2]
    if head:
        head += ["Lsho", "Rsho"]
        out.append(
            estimate_transform(
                "affine", src=np.array([kp2[n] for n in head]), dst=np.array([kp1[n] for n in head])
            ).params
        )
    else:
        out.append(NO_POINT)
    for (fr, to), inc_to in zip(P.LIMBS, (0.1, 0.1, 0.3, 0.3, 0.1, 0.1, 0.3, 0.3)):
        if fr not in kp2 or to not in kp2:
            out.append(NO_POINT)
            continue
        poly_2 = ref_estimate_polygon(kp2[fr], kp2[to], st2, inc_to)
        if fr not in kp1 or to not in kp1:
            swap = {"R": "L", "L": "R"}[fr[0]]
            fr, to = swap + fr[1:], swap + to[1:]
            if fr not in kp1 or to not in kp1:
                out.append(NO_POINT)
                continue
        poly_1 = ref_estimate_polygon(kp1[fr], kp1[to], st1, inc_to)
        out.append(estimate_transform("affine", src=poly_2, dst=poly_1).params)
    return np.array(out)


# ---------------------------------------------------------------- heatmaps and disks


def test_heatmap_hand_values():
    k = only(nose=(50, 20))
    hm = P.heatmaps(k)
    assert hm.shape == (1, 18, H, W) and hm.dtype == np.float32
    assert hm[0, 0, 50, 20] == 1.0
    assert hm[0, 0, 53, 24] == pytest.approx(math.exp(-25 / 72), rel=1e-7)  # offset (3, 4): d^2 = 25
    assert hm[0, 0, 50, 26] == pytest.approx(math.exp(-0.5), rel=1e-7)  # one sigma away
    assert np.all(hm[0, 1:] == 0)  # missing joints: zero channels
    wide = P.heatmaps(k, sigma=12.0)
    assert wide[0, 0, 53, 24] == pytest.approx(math.exp(-25 / 288), rel=1e-7)


def test_heatmaps_equal_official_cords_to_map():
    kps = random_poses(12, seed=1, keep_torso=False)
    kps[0, 3] = (200, 5)  # outside the image: still a (clipped) Gaussian, as in the official code
    ours = P.heatmaps(kps)
    ref = np.stack([ref_cords_to_map(k) for k in kps])
    tiny = np.finfo(np.float32).tiny
    # float64 then float32, like the official maps: bit-equal, except that the official float32
    # denormals (< 1.2e-38, far from the joint) are flushed to 0 here
    np.testing.assert_array_equal(ours, np.where(ref < tiny, 0, ref))
    assert (ref[ref > 0] < tiny).any() and not (ours[ours > 0] < tiny).any()


@pytest.mark.parametrize("size, sigma", [((128, 64), 6.0), ((64, 32), 1.5), ((256, 176), 12.0), ((32, 16), 3.3)])
def test_heatmaps_equal_the_gaussian_at_every_pixel(size, sigma):
    """The table of values per squared distance gives the very float32 numbers of a float64 exp at every pixel,
    also far from the image (squared distances past the table's cutoff) and for missing joints."""
    rng = np.random.default_rng(7)
    kps = rng.integers(0, 3 * max(size), size=(16, 18, 2))
    kps[rng.random((16, 18)) < 0.2] = -1
    rows, cols = np.arange(size[0])[:, None], np.arange(size[1])[None, :]
    d2 = (rows - kps[..., 0, None, None]) ** 2 + (cols - kps[..., 1, None, None]) ** 2
    ref = (np.exp(-d2.astype(np.float64) / (2 * sigma**2)) * (kps != -1).all(-1)[..., None, None]).astype(np.float32)
    ref[ref < np.finfo(np.float32).tiny] = 0
    ours = P.heatmaps(kps, size, sigma)
    assert (ref > 0).mean() > 0.01 and (d2 >= len(P._heatmap_table(sigma))).any()  # both regimes are exercised
    np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))


def test_joint_disk_pixel_counts():
    k = only(nose=(60, 30), Rank=(0, 0), Lank=(127, 63))
    d = P.joint_disks(k)
    assert d.dtype == np.float32 and set(np.unique(d)) == {0.0, 1.0}
    assert d[0, J["nose"]].sum() == 49  # i^2 + j^2 <= 16
    assert d[0, J["Rank"]].sum() == 17  # quarter disk in the corner: 5+4+4+3+1
    assert d[0, J["Lank"]].sum() == 17
    assert d[0, J["nose"], 56, 30] == 1 and d[0, J["nose"], 55, 30] == 0 and d[0, J["nose"], 57, 33] == 0
    assert d[0, J["neck"]].sum() == 0
    pm = P.pg2_pose_maps(k)
    np.testing.assert_array_equal(pm, d * 2 - 1)
    assert np.all(pm[0, J["neck"]] == -1)


def test_joint_disks_equal_pg2_sparse_keypoint():
    kps = random_poses(6, seed=2, keep_torso=False)
    ours = P.joint_disks(kps)
    for n, kp in enumerate(kps):
        ref = np.zeros((18, H, W), dtype=np.float32)
        for j, (r, c) in enumerate(kp):
            if r != -1 and c != -1:
                for rr, cc in ref_sparse_keypoint(r, c, H, W):
                    ref[j, rr, cc] = 1
        np.testing.assert_array_equal(ours[n], ref)


# ---------------------------------------------------------------- PG2 training mask


def test_pg2_mask_vertical_limb_by_hand():
    # Rsho-Relb only (connection [3,4]); d = 20, sampleN = 5: disks at rows 40, 44, ..., 60.
    k = only(Rsho=(40, 30), Relb=(60, 30))
    m = P.pose_mask_pg2(k)[0]
    assert m.dtype == np.float32
    expected = np.zeros((H, W), dtype=np.float32)
    for r0 in range(40, 61, 4):
        for i in range(-4, 5):
            for j in range(-4, 5):
                if i * i + j * j <= 16:
                    expected[r0 + i, 30 + j] = 1
    expected[40:61, 26:35] = 1  # the closing fills the notches between disks (cols 26 and 34)
    np.testing.assert_array_equal(m, expected)
    assert m.sum() == 229


def test_pg2_mask_needs_a_connection():
    # Joints without a present partner get no disk (unlike the pose maps).
    assert P.pose_mask_pg2(only(nose=(20, 30)))[0].sum() == 0
    assert P.pose_mask_pg2(np.full((18, 2), -1))[0].sum() == 0


def test_pg2_mask_equals_official():
    kps = random_poses(10, seed=3)
    kps[0, 2], kps[0, 3] = (127, 0), (0, 63)  # long diagonal limb, joints in the corners
    kps[1, 1] = kps[1, 2]  # coincident joints
    ours = P.pose_mask_pg2(kps)
    for n, kp in enumerate(kps):
        np.testing.assert_array_equal(ours[n], ref_pg2_mask(kp), err_msg=f"pose {n}")


# ---------------------------------------------------------------- evaluation mask (mask-SSIM)


def test_eval_mask_vertical_limb_by_hand():
    k = only(Rsho=(40, 30), Relb=(60, 30))
    m = P.pose_mask_eval(k)[0]
    assert m.dtype == np.bool_
    expected = np.zeros((H, W), dtype=bool)
    expected[40:60, 26:34] = True  # quad (40,26),(40,34),(60,34),(60,26): rows [40,60), cols [26,34)
    for r0 in (40, 60):  # disks d^2 < 16
        for i in range(-3, 4):
            for j in range(-3, 4):
                if i * i + j * j < 16:
                    expected[r0 + i, 30 + j] = True
    np.testing.assert_array_equal(m, expected)
    assert m.sum() == 205
    # Today's skimage also draws the quad's right column (c = 34) and bottom row (r = 60).
    modern = ref_eval_mask(k, modern=True)
    extra = np.zeros((H, W), dtype=bool)
    extra[40:61, 34] = extra[60, 26] = True
    np.testing.assert_array_equal(modern & ~m, extra)
    assert not (m & ~modern).any()


def test_eval_mask_single_joint_is_strict_disk():
    m = P.pose_mask_eval(only(nose=(64, 32)))[0]
    assert m.sum() == 45  # d^2 < 16; the 5x5 closing leaves this disk unchanged
    rr, cc = sk_disk((64, 32), 4, shape=(H, W))
    assert len(rr) == 45 and m[rr, cc].all()


def test_eval_mask_zero_length_limb_gives_no_nan_and_a_disk():
    k = only(Rsho=(40, 30), Relb=(40, 30))
    m = P.pose_mask_eval(k)[0]
    assert m.sum() == 45
    t = P.pose_mask_eval(torch.from_numpy(k))
    assert t.dtype == torch.bool and int(t.sum()) == 45


def test_eval_mask_equals_official_skimage_0_14():
    kps = random_poses(24, seed=4)
    kps[0, 2], kps[0, 3] = (127, 0), (0, 63)
    kps[1, 14] = kps[1, 0]  # zero-length nose-Leye
    ours = P.pose_mask_eval(kps)
    for n, kp in enumerate(kps):
        np.testing.assert_array_equal(ours[n], ref_eval_mask(kp), err_msg=f"pose {n}")


def test_eval_mask_vs_todays_skimage_differs_only_on_polygon_boundaries():
    kps = random_poses(24, seed=5)
    ours = P.pose_mask_eval(kps)
    differ, share = [], []
    for n, kp in enumerate(kps):
        modern = ref_eval_mask(kp, modern=True)
        differ.append(int((modern != ours[n]).sum()))
        share.append(differ[-1] / ours[n].sum())
    # Measured with this seed: at most 77 pixels (3.1% of that mask), grown by the closing from
    # pixels lying on quad edges (see test_polygon_fill_vs_skimage_on_random_quads).
    assert max(share) <= 0.06
    assert max(differ) > 0  # the lattice-snapped poses do hit the boundary case


def test_polygon_fill_vs_skimage_on_random_quads():
    rng = np.random.default_rng(6)
    quads = [rng.uniform(-10, 140, (4, 2)) for _ in range(30)]
    quads += [
        np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], float)  # axis-aligned, integer
        for r0, r1, c0, c1 in rng.integers(-5, 70, (10, 4))
    ]
    v = torch.tensor(np.stack(quads))
    ours = P.fill_polygons(v[..., 1], v[..., 0], n_ray=W, n_scan=H).numpy()  # draw.polygon
    ours_t = P.fill_polygons(v[..., 0], v[..., 1], n_ray=H, n_scan=W).numpy()  # grid_points_in_poly
    disagreements = 0
    for q, quad in enumerate(quads):
        np.testing.assert_array_equal(ours[q], legacy_polygon(quad[:, 0], quad[:, 1], (H, W)))
        np.testing.assert_array_equal(ours_t[q].T, legacy_grid_points_in_poly((H, W), quad))
        # Today's skimage disagrees only on pixels lying on an edge (up to rounding).
        modern = np.zeros((H, W), bool)
        rr, cc = sk_polygon(quad[:, 0], quad[:, 1], shape=(H, W))
        modern[rr, cc] = True
        differ = np.argwhere(ours[q] != modern)
        assert (edge_distance(quad, differ) < 1e-9).all()
        disagreements += len(differ)
    assert disagreements > 0  # the integer rectangles do put pixels on edges


# ---------------------------------------------------------------- Deformable GAN parts


def test_part_order():
    assert P.PART_NAMES == (
        "torso",
        "head",
        "Rhip-Rkne",
        "Lhip-Lkne",
        "Rkne-Rank",
        "Lkne-Lank",
        "Rsho-Relb",
        "Lsho-Lelb",
        "Relb-Rwri",
        "Lelb-Lwri",
    )
    mirrored = [P.PART_NAMES[2 + m] for m in P.LIMB_MIRROR]
    assert mirrored == [
        "Lhip-Lkne",
        "Rhip-Rkne",
        "Lkne-Lank",
        "Rkne-Rank",
        "Lsho-Lelb",
        "Rsho-Relb",
        "Lelb-Lwri",
        "Relb-Rwri",
    ]


def square_pose():
    """Rsho (30,20), Lsho (30,44), Rhip (70,20), Lhip (70,44): torso sides 40 px -> st = 40."""
    k = TEMPLATE.copy()
    k[J["Rsho"]], k[J["Lsho"]], k[J["Rhip"]], k[J["Lhip"]] = (30, 20), (30, 44), (70, 20), (70, 44)
    k[J["Rkne"]] = (100, 20)
    k[[J["Reye"], J["Lear"], J["Rear"]]] = -1
    k[J["nose"]], k[J["Leye"]] = (20, 32), (18, 35)
    return k.astype(np.int32)


def test_torso_scale():
    k = square_pose()
    assert P.torso_scale(k)[0] == 40.0
    k2 = k.copy()
    k2[J["Lhip"]] = (70, 54)  # Lhip-Lsho = (40, 10): sqrt((1600 + 1700) / 2)
    assert P.torso_scale(k2)[0] == pytest.approx(math.sqrt(1650))
    k2[J["Rsho"]] = -1
    assert np.isnan(P.torso_scale(k2)[0])


def test_part_masks_by_hand():
    m = P.part_masks(square_pose())[0]
    assert m.shape == (10, H, W) and m.dtype == np.float32
    assert m[0].min() == 1  # torso: the whole image
    head = np.zeros((H, W), np.float32)
    head[19 - 16 : 19 + 16, 33 - 16 : 33 + 16] = 1  # centre int(mean) = (y 19, x 33.5 -> 33), b = int(0.4*40)
    np.testing.assert_array_equal(m[1], head)
    # Rhip (70,20) -> Rkne (100,20): fr' y = 67, to' y = 100 + 0.1*33 = 103.3, x = 20 -+ 8.
    limb = np.zeros((H, W), np.float32)
    limb[67:104, 12:28] = 1
    np.testing.assert_array_equal(m[2], limb)
    k = square_pose()
    k[J["Rkne"]] = -1
    k[list(map(J.get, P.HEAD_JOINTS))] = -1
    m = P.part_masks(k)[0]
    assert m[1].sum() == 0 and m[2].sum() == 0 and m[3].sum() > 0


def test_part_polygons_geometry():
    poly = P.part_polygons(square_pose(), inc_to=P.MASK_INC_TO)[0]
    assert poly.shape == (8, 4, 2)
    np.testing.assert_allclose(poly[0], [[28, 67], [12, 67], [12, 103.3], [28, 103.3]], atol=1e-12)
    kp2 = named(square_pose())
    ref = ref_estimate_polygon(kp2["Lkne"], kp2["Lank"], 40.0, 0.3)
    np.testing.assert_array_equal(P.part_polygons(square_pose())[0, 3], ref)
    k = square_pose()
    k[J["Lank"]] = -1
    assert np.isnan(P.part_polygons(k)[0, 3]).all() and not np.isnan(P.part_polygons(k)[0, 2]).any()


def test_part_masks_equal_official():
    kps = random_poses(16, seed=7)
    kps[0, J["Rkne"]] = kps[0, J["Rhip"]]  # coincident ends: the official +-1 fallback quad
    ours = P.part_masks(kps)
    polys = P.part_polygons(kps, inc_to=P.MASK_INC_TO)
    differ = 0
    for n, kp in enumerate(kps):
        np.testing.assert_array_equal(ours[n], ref_pose_masks(kp), err_msg=f"pose {n}")
        # Today's grid_points_in_poly differs only on pixels lying on a limb-rectangle edge.
        modern = ref_pose_masks(kp, modern=True)
        for part, r, c in np.argwhere(ours[n] != modern):
            assert part >= 2 and edge_distance(polys[n, part - 2, :, ::-1], np.array([[r, c]]))[0] < 1e-9
            differ += 1
    assert differ > 0


def test_affines_translation_by_hand():
    t = square_pose()
    s = t + np.array([5, 3], dtype=np.int32) * (t != -1)  # source = target shifted by y+5, x+3
    aff, valid = P.part_affines(s, t)
    assert aff.shape == (1, 10, 2, 3) and aff.dtype == np.float32 and valid.dtype == np.bool_
    ok = valid[0]
    # Missing in the target: Reye etc. do not matter; Lelb-Lwri etc. present in both.
    assert ok.all()
    np.testing.assert_allclose(aff[0], np.broadcast_to([[1, 0, 3], [0, 1, 5]], (10, 2, 3)), atol=1e-4)


def test_affine_no_point_and_mirror_fallback():
    t = square_pose()
    s = random_poses(1, seed=8, p_missing=0)[0]
    # Target lacks Lkne: part 3 (Lhip-Lkne) and 5 (Lkne-Lank) get the no-point transform.
    t2 = t.copy()
    t2[J["Lkne"]] = -1
    aff, valid = P.part_affines(s, t2)
    for part in (3, 5):
        assert not valid[0, part]
        np.testing.assert_array_equal(aff[0, part], P.NO_POINT_AFFINE)
    assert valid[0, [0, 1, 2, 4]].all()
    # Source lacks Rkne: Rhip-Rkne and Rkne-Rank fall back on the source's left leg.
    s2 = s.copy()
    s2[J["Rkne"]] = -1
    aff, valid = P.part_affines(s2, t)
    assert valid[0, 2] and valid[0, 4]
    kt, ks = named(t), named(s2)
    st_t, st_s = ref_st(kt), ref_st(ks)
    for part, (fr, to, inc), (mfr, mto) in (
        (2, ("Rhip", "Rkne", 0.1), ("Lhip", "Lkne")),
        (4, ("Rkne", "Rank", 0.3), ("Lkne", "Lank")),
    ):
        ref = estimate_transform(
            "affine",
            src=ref_estimate_polygon(kt[fr], kt[to], st_t, inc),
            dst=ref_estimate_polygon(ks[mfr], ks[mto], st_s, inc),
        ).params
        np.testing.assert_allclose(aff[0, part], ref[:2], rtol=1e-5, atol=1e-4)
    # Missing on both sides of the source: no point.
    s2[J["Lkne"]] = -1
    aff, valid = P.part_affines(s2, t)
    assert not valid[0, 2] and not valid[0, 3]
    np.testing.assert_array_equal(aff[0, 2], P.NO_POINT_AFFINE)
    # No head joint shared: head is no point; torso joint missing: torso is no point.
    s3 = s.copy()
    s3[list(map(J.get, P.HEAD_JOINTS))] = -1
    s3[J["Rhip"]] = -1
    aff, valid = P.part_affines(s3, t)
    assert not valid[0, 0] and not valid[0, 1]
    np.testing.assert_array_equal(aff[0, :2], np.broadcast_to(P.NO_POINT_AFFINE, (2, 2, 3)))
    # Without a source torso scale no source rectangle exists (the official code raises KeyError).
    assert not valid[0, 2:].any()


def test_affine_singular_fit_is_no_point():
    t = square_pose()
    s = t.copy()
    # All source head points collinear with the shoulders (y = 30): the fit maps the target head
    # onto a line, det = 0.
    s[list(map(J.get, P.HEAD_JOINTS))] = -1
    s[J["nose"]], s[J["Leye"]] = (30, 30), (30, 36)
    aff, valid = P.part_affines(s, t)
    assert not valid[0, 1]
    np.testing.assert_array_equal(aff[0, 1], P.NO_POINT_AFFINE)
    assert valid[0, 0]


def test_affines_equal_skimage_estimate_transform():
    src = random_poses(12, seed=9, p_missing=0.25)
    tgt = random_poses(12, seed=10, p_missing=0.25)
    aff, valid = P.part_affines(src, tgt)
    for n in range(len(src)):
        ref = ref_affine_transforms(src[n], tgt[n])
        ref_valid = ~np.all(ref == NO_POINT, axis=(-1, -2))
        np.testing.assert_array_equal(valid[n], ref_valid, err_msg=f"pair {n}")
        np.testing.assert_allclose(aff[n], ref[:, :2].astype(np.float32), rtol=1e-5, atol=2e-4, err_msg=f"pair {n}")
    assert valid[:, 1].any() and (~valid).any()


def test_affine_is_total_least_squares_not_ols():
    # Four torso points with no exact affine map between them: skimage's TLS differs from OLS.
    t = square_pose()
    s = t.copy()
    s[J["Lhip"]] = (80, 50)
    aff, _ = P.part_affines(s, t)
    pts_t = t[[J[n] for n in P.TORSO_POINTS]][:, ::-1].astype(float)
    pts_s = s[[J[n] for n in P.TORSO_POINTS]][:, ::-1].astype(float)
    ref = estimate_transform("affine", src=pts_t, dst=pts_s).params
    np.testing.assert_allclose(aff[0, 0], ref[:2], rtol=1e-5, atol=1e-4)
    ols = np.linalg.lstsq(np.c_[pts_t, np.ones(4)], pts_s, rcond=None)[0].T
    assert np.abs(ols - ref[:2]).max() > 1e-3


# ---------------------------------------------------------------- numpy / torch / batch


ALL = [
    ("heatmaps", lambda k: P.heatmaps(k)),
    ("joint_disks", lambda k: P.joint_disks(k)),
    ("pg2_pose_maps", lambda k: P.pg2_pose_maps(k)),
    ("pose_mask_pg2", lambda k: P.pose_mask_pg2(k)),
    ("pose_mask_eval", lambda k: P.pose_mask_eval(k)),
    ("torso_scale", lambda k: P.torso_scale(k)),
    ("part_polygons", lambda k: P.part_polygons(k)),
    ("part_masks", lambda k: P.part_masks(k)),
    ("part_affines", lambda k: P.part_affines(k, k[[3, 2, 1, 0]])[0]),
]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("name,fn", ALL, ids=[a for a, _ in ALL])
@pytest.mark.parametrize("device", DEVICES)
def test_numpy_torch_and_batch_agree(name, fn, device):
    kps = random_poses(4, seed=11)
    out_np = fn(kps)
    assert isinstance(out_np, np.ndarray) and out_np.shape[0] == 4
    out_t = fn(torch.from_numpy(kps).to(device))
    assert isinstance(out_t, torch.Tensor) and out_t.device.type == device
    np.testing.assert_allclose(out_t.cpu().numpy(), out_np, rtol=1e-6, atol=1e-6)
    if name != "part_affines":  # single pose in -> batch of one out
        for i in range(4):
            single = fn(kps[i])
            assert single.shape == (1,) + out_np.shape[1:]
            np.testing.assert_array_equal(single[0], out_np[i])


def test_affine_single_pair_matches_batch():
    src, tgt = random_poses(3, seed=12), random_poses(3, seed=13)
    aff, valid = P.part_affines(src, tgt)
    for i in range(3):
        a1, v1 = P.part_affines(src[i], tgt[i])
        np.testing.assert_allclose(a1[0], aff[i], rtol=1e-6, atol=1e-5)
        np.testing.assert_array_equal(v1[0], valid[i])


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match=r"\(18, 2\)"):
        P.heatmaps(np.zeros((17, 2), int))
    with pytest.raises(ValueError, match="integer"):
        P.joint_disks(np.full((18, 2), 1.5))
    with pytest.raises(ValueError, match="negative"):
        P.pose_mask_eval(np.full((18, 2), -2))
    with pytest.raises(ValueError, match="sigma"):
        P.heatmaps(TEMPLATE, sigma=0)
    with pytest.raises(ValueError, match="inc_to"):
        P.part_polygons(TEMPLATE, inc_to=(0.1, 0.2))
    with pytest.raises(ValueError, match="poses"):
        P.part_affines(random_poses(2, 0), random_poses(3, 0))
