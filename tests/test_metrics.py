"""generators.metrics against scikit-image (the official evaluation's library) and hand values."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from augment.data.pose import pose_mask_eval
from generators import metrics
from generators.metrics import gaussian_window, l1, mask_ssim, pair_metrics, psnr, ssim, summarise

SIZE = (128, 64)


def official_ssim(generated: np.ndarray, reference: np.ndarray) -> float:
    """tool/getMetrics_market.py's call (compare_ssim(reference, generated, ...)) on today's skimage."""
    return structural_similarity(
        reference,
        generated,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1,
        data_range=generated.max() - generated.min(),
    )


def realish_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth 'scene' with a figure, and a shifted, noisier, darker copy of it: SSIM well inside (0, 1)."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (8, 4, 3), dtype=np.uint8), SIZE[::-1], interpolation=cv2.INTER_CUBIC)
    cv2.ellipse(base, (32, 64), (14, 40), 0, 0, 360, tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    other = np.roll(base, (2, 1), axis=(0, 1)).astype(np.int16)
    other = other * 0.8 + rng.normal(0, 12, other.shape)
    return base, np.clip(other, 0, 255).astype(np.uint8)


def test_gaussian_window_matches_scipy():
    from scipy.ndimage import gaussian_filter1d

    w = gaussian_window()
    assert w.shape == (11,) and abs(w.sum() - 1) < 1e-15
    impulse = np.zeros(31)
    impulse[15] = 1.0
    np.testing.assert_allclose(gaussian_filter1d(impulse, 1.5, truncate=3.5)[10:21], w, atol=1e-16)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ssim_matches_skimage_random_images(seed):
    rng = np.random.default_rng(seed)
    gen = rng.integers(0, 256, (5, *SIZE, 3), dtype=np.uint8)
    ref = rng.integers(0, 256, (5, *SIZE, 3), dtype=np.uint8)
    ref[2:] = np.clip(gen[2:].astype(int) + rng.integers(-30, 31, gen[2:].shape), 0, 255)  # correlated
    gen[4] = gen[4] // 4 + 100  # a narrow data range (100..163): C1, C2 follow the generated image
    ours = ssim(gen, ref)
    expected = np.array([official_ssim(g, r) for g, r in zip(gen, ref)])
    assert ours.shape == (5,) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
    assert expected[2:].min() > 0.3  # the correlated pairs are not trivially near 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_matches_skimage_realish_images(seed):
    gen, ref = realish_pair(seed)
    expected = official_ssim(gen, ref)
    assert 0.2 < expected < 0.95
    assert abs(ssim(gen, ref) - expected) < 1e-6  # single image in -> float out
    assert isinstance(ssim(gen, ref), float)


def test_ssim_uses_the_generated_images_range_not_the_references():
    gen, ref = realish_pair(4)
    gen = (gen // 2 + 60).astype(np.uint8)  # range ~half of the reference's
    assert gen.max() - gen.min() != ref.max() - ref.min()
    ours = ssim(gen, ref)
    assert abs(ours - official_ssim(gen, ref)) < 1e-6
    swapped = structural_similarity(
        ref,
        gen,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1,
        data_range=ref.max() - ref.min(),
    )
    assert abs(ours - swapped) > 1e-4  # the choice of range matters, and ours is the official one
    # an explicit data_range is honoured
    assert (
        abs(
            ssim(gen, ref, data_range=255)
            - structural_similarity(
                ref, gen, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1, data_range=255
            )
        )
        < 1e-6
    )


def test_ssim_identical_images_is_one_and_tensor_input_works():
    gen, _ = realish_pair(5)
    assert abs(ssim(gen, gen) - 1.0) < 1e-12
    t = torch.from_numpy(np.stack([gen, gen]))
    np.testing.assert_allclose(ssim(t, t), [1.0, 1.0], atol=1e-12)


def test_ssim_constant_images_edge_cases():
    rng = np.random.default_rng(7)
    ref = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    for value in (0, 7, 255):
        const = np.full((*SIZE, 3), value, np.uint8)  # data range 0 -> C1 = C2 = 0
        expected = official_ssim(const, ref)
        assert abs(ssim(const, ref) - expected) < 1e-6
        assert abs(expected) < 1e-6
    # skimage divides 0/0 where the reference is flat over a whole window: NaN, and so do we
    const = np.full((*SIZE, 3), 128, np.uint8)
    flat_patch = np.full((*SIZE, 3), 90, np.uint8)
    flat_patch[50:60, 20:30] = 200
    for reference in (const, flat_patch):
        with np.errstate(invalid="ignore"):
            assert np.isnan(official_ssim(const, reference))
        assert np.isnan(ssim(const, reference))
    # a constant reference with a varied generated image is ordinary
    assert abs(ssim(ref, const) - official_ssim(ref, const)) < 1e-6


def test_ssim_rejects_bad_shapes():
    a = np.zeros((2, *SIZE, 3), np.uint8)
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(a, a[:1])
    with pytest.raises(ValueError, match="smaller than the 11x11"):
        ssim(a[:, :10], a[:, :10])
    with pytest.raises(ValueError, match=r"\(H,W,C\) or \(N,H,W,C\)"):
        ssim(a[0, :, :, 0], a[0, :, :, 0])


def test_ssim_batches_larger_than_the_cpu_chunk():
    rng = np.random.default_rng(8)
    n = metrics.CPU_CHUNK * 2 + 3
    gen = rng.integers(0, 256, (n, 32, 16, 3), dtype=np.uint8)
    ref = np.clip(gen.astype(int) + rng.integers(-40, 41, gen.shape), 0, 255).astype(np.uint8)
    expected = [official_ssim(g, r) for g, r in zip(gen, ref)]
    np.testing.assert_allclose(ssim(gen, ref), expected, atol=1e-6)
    assert ssim(gen[:0], ref[:0]).shape == (0,)


def test_mask_ssim_matches_a_direct_skimage_computation():
    gen, ref = realish_pair(9)
    kps = np.full((18, 2), -1, np.int64)
    joints = {
        0: (14, 32),
        1: (30, 32),
        2: (30, 22),
        5: (30, 42),
        3: (50, 18),
        6: (50, 46),
        8: (70, 26),
        11: (70, 38),
        9: (95, 25),
        12: (95, 39),
        10: (118, 24),
        13: (118, 40),
    }
    for j, yx in joints.items():
        kps[j] = yx
    mask = pose_mask_eval(kps, SIZE)[0]
    assert 0.1 < mask.mean() < 0.6  # a real, partial body mask
    # official create_masked_image: image * mask[..., np.newaxis] (uint8 * bool stays uint8)
    gm, rm = gen * mask[..., None], ref * mask[..., None]
    assert gm.dtype == np.uint8
    expected = official_ssim(gm, rm)
    assert abs(mask_ssim(gen, ref, mask) - expected) < 1e-6
    assert abs(expected - official_ssim(gen, ref)) > 1e-3  # the mask changes the value
    # batched, one mask per pair (a (N,H,W) mask), and the combined helper agrees
    gens, refs = np.stack([gen, ref]), np.stack([ref, gen])
    masks = np.stack([mask, ~mask])
    both = mask_ssim(gens, refs, masks)
    assert abs(both[0] - expected) < 1e-6
    assert abs(both[1] - official_ssim(ref * ~mask[..., None], gen * ~mask[..., None])) < 1e-6
    np.testing.assert_allclose(pair_metrics(gens, refs, masks)["mask_ssim"], both, atol=1e-12)
    with pytest.raises(ValueError, match="mask of shape"):
        mask_ssim(gen, ref, mask[:, :10])


def test_l1_and_psnr_hand_values():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0] = 51  # |diff| 51 everywhere -> 0.2
    b[1, :2] = 255  # half the pixels differ by 255 -> 0.5
    np.testing.assert_allclose(l1(b, a), [0.2, 0.5], atol=1e-15)
    np.testing.assert_allclose(l1(a, b), [0.2, 0.5], atol=1e-15)  # symmetric
    # PSNR: MSE 51^2 -> 20 log10(255/51) = 20 log10(5); MSE 255^2/2 -> 10 log10(2)
    np.testing.assert_allclose(psnr(b, a), [20 * np.log10(5), 10 * np.log10(2)], atol=1e-12)
    assert psnr(a[0], a[0]) == np.inf


def test_pair_metrics_and_summary():
    gen, ref = realish_pair(11)
    gens, refs = np.stack([gen, ref, gen]), np.stack([ref, ref, gen])
    mask = np.ones((3, *SIZE), bool)
    m = pair_metrics(gens, refs, mask)
    assert set(m) == {"ssim", "mask_ssim", "l1", "psnr"}
    np.testing.assert_allclose(m["ssim"], ssim(gens, refs), atol=1e-12)
    np.testing.assert_allclose(m["mask_ssim"], m["ssim"], atol=1e-12)  # an all-ones mask changes nothing
    np.testing.assert_allclose(m["l1"], l1(gens, refs), atol=1e-15)
    assert m["psnr"][1] == np.inf and m["l1"][1] == 0
    s = summarise(m["psnr"])
    assert s == {"mean": pytest.approx(m["psnr"][0]), "n": 1, "non_finite": 2}
    assert summarise(np.array([np.nan]))["non_finite"] == 1
