"""reid_eval.metrics against torchreid's python eval_market1501, hand-computed values, Open-ReID's definitions
(a straightforward loop written here from reid/evaluation_metrics/ranking.py) and Open-ReID's own test cases."""

import numpy as np
import pytest
import torch

from reid_eval import metrics
from reid_eval.compat import import_torchreid


@pytest.fixture(scope="module")
def torchreid_rank():
    return import_torchreid().reid.metrics.rank


def random_problem(seed, num_query=40, num_gallery=300, num_ids=20, num_cams=3, absent_id=True):
    """Tie-free float32 distances (a random permutation of 0..G-1 per row); query 0's id is absent from the gallery."""
    rng = np.random.default_rng(seed)
    distmat = rng.permuted(np.tile(np.arange(num_gallery, dtype=np.float32), (num_query, 1)), axis=1)
    g_pids = rng.integers(0, num_ids, num_gallery)
    q_pids = rng.integers(0, num_ids, num_query)
    if absent_id:
        q_pids[0] = num_ids + 7
    return distmat, q_pids, g_pids, rng.integers(0, num_cams, num_query), rng.integers(0, num_cams, num_gallery)


# ------------------------------------------------------------------------------------ torchreid agreement
@pytest.mark.parametrize("seed", range(6))
def test_matches_torchreid_eval_market1501(torchreid_rank, seed):
    distmat, q_pids, g_pids, q_cams, g_cams = random_problem(seed)
    same_id_same_cam = (q_pids[:, None] == g_pids[None, :]) & (q_cams[:, None] == g_cams[None, :])
    assert same_id_same_cam.any(axis=1).sum() > 10  # the exclusion really happens
    ref_cmc, ref_map = torchreid_rank.eval_market1501(distmat, q_pids, g_pids, q_cams, g_cams, 20)
    result = metrics.rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 20)
    assert result.cmc.dtype == np.float32 and result.cmc.shape == (20,)
    np.testing.assert_array_equal(result.cmc, ref_cmc)
    assert abs(result.mAP - ref_map) < 1e-6
    assert result.num_skipped_queries >= 1 and result.first_match_rank[0] == -1 and np.isnan(result.ap[0])
    assert result.num_valid_queries + result.num_skipped_queries == len(q_pids)
    cmc, m_ap = metrics.evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, 20)
    np.testing.assert_array_equal(cmc, ref_cmc)
    assert m_ap == result.mAP


def test_ties_follow_stable_gallery_order(torchreid_rank):
    """Integer distances tie a lot; ours must equal torchreid on the same distances with ties broken by index."""
    rng = np.random.default_rng(3)
    distmat = rng.integers(0, 12, (30, 120)).astype(np.float64)
    q_pids, g_pids = rng.integers(0, 8, 30), rng.integers(0, 8, 120)
    q_cams, g_cams = rng.integers(0, 3, 30), rng.integers(0, 3, 120)
    tie_broken = distmat + np.arange(120)[None, :] * 1e-6
    ref_cmc, ref_map = torchreid_rank.eval_market1501(tie_broken, q_pids, g_pids, q_cams, g_cams, 10)
    for backend in ("numpy", "torch"):
        result = metrics.rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 10, sort_backend=backend)
        np.testing.assert_array_equal(result.cmc, ref_cmc)
        assert abs(result.mAP - ref_map) < 1e-9


# -------------------------------------------------------------------------------------- hand computed
GALLERY_PIDS = np.array([1, 1, 2, 2, 3, 1])
GALLERY_CAMS = np.array([1, 2, 1, 2, 1, 1])
QUERY_PIDS = np.array([1, 2, 1])
QUERY_CAMS = np.array([1, 2, 3])
HAND_DISTMAT = np.array(
    [
        [0.1, 0.5, 0.2, 0.3, 0.4, 0.6],  # g0, g5 removed (id 1, cam 1); kept g2 g3 g4 g1 -> match at 3, AP 1/4
        [0.9, 0.8, 0.1, 0.05, 0.3, 0.2],  # g3 removed (id 2, cam 2); kept g2 g5 g4 g1 g0 -> match at 0, AP 1
        [0.4, 0.1, 0.2, 0.5, 0.3, 0.6],  # nothing removed; matches g1, g0, g5 at 0, 3, 5 -> AP (1 + 2/4 + 3/6) / 3
    ]
)


def test_hand_computed_cmc_and_ap():
    result = metrics.rank_metrics(HAND_DISTMAT, QUERY_PIDS, GALLERY_PIDS, QUERY_CAMS, GALLERY_CAMS, 4)
    np.testing.assert_array_equal(result.first_match_rank, [3, 0, 0])
    np.testing.assert_allclose(result.ap, [0.25, 1.0, 2 / 3])
    np.testing.assert_allclose(result.cmc, [2 / 3, 2 / 3, 2 / 3, 1.0], rtol=1e-7)
    assert result.mAP == pytest.approx((0.25 + 1 + 2 / 3) / 3)
    # Open-ReID allshots: each match adds 1/num_matches at (position - matches before it):
    # q0 -> bin 3 (+1), q1 -> bin 0 (+1), q2 -> bins 0, 2, 3 (+1/3 each)
    allshots = metrics.open_reid_cmc(HAND_DISTMAT, QUERY_PIDS, GALLERY_PIDS, QUERY_CAMS, GALLERY_CAMS, topk=4)
    np.testing.assert_allclose(allshots, np.cumsum([4 / 3, 0, 1 / 3, 4 / 3]) / 3)
    market = metrics.open_reid_cmc(
        HAND_DISTMAT, QUERY_PIDS, GALLERY_PIDS, QUERY_CAMS, GALLERY_CAMS, topk=4, first_match_break=True
    )
    np.testing.assert_allclose(market, result.cmc, rtol=1e-7)


def test_sklearn_ap_scores_ties_together():
    """Open-ReID's mAP is sklearn's average_precision_score: tied distances share one threshold."""
    g_pids, g_cams = np.array([1, 2, 1, 3]), np.array([2, 2, 2, 2])
    distmat = np.array([[0.2, 0.2, 0.5, 0.1]])  # g3 .1, then g0 (match) tied with g1 at .2, then g2 (match) .5
    # sklearn: threshold .2 -> precision 1/3 (recall +1/2); threshold .5 -> 2/4 (recall +1/2)
    assert metrics.open_reid_mean_ap(distmat, [1], g_pids, [1], g_cams) == pytest.approx(0.5 / 3 + 0.5 * 0.5)
    # torchreid with ties broken by gallery index: g0 before g1 -> matches at 1 and 3 -> (1/2 + 2/4) / 2
    assert metrics.rank_metrics(distmat, [1], g_pids, [1], g_cams, 4).mAP == pytest.approx(0.5)
    swapped = distmat[:, [1, 0, 2, 3]]  # now the non-match comes first among the tied pair -> (1/3 + 2/4) / 2
    assert metrics.rank_metrics(swapped, [1], g_pids[[1, 0, 2, 3]], [1], g_cams, 4).mAP == pytest.approx(5 / 12)


def test_open_reid_mean_ap_equals_torchreid_without_ties():
    distmat, q_pids, g_pids, q_cams, g_cams = random_problem(11)
    assert metrics.open_reid_mean_ap(distmat, q_pids, g_pids, q_cams, g_cams) == pytest.approx(
        metrics.rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams).mAP, abs=1e-12
    )


# ------------------------------------------------------------------------ Open-ReID reference (loop)
def reference_open_reid_cmc(
    distmat,
    q_pids,
    g_pids,
    q_cams,
    g_cams,
    topk,
    separate_camera_set,
    single_gallery_shot,
    first_match_break,
    uniforms=None,
):
    """Open-ReID's cmc written as the obvious loop; single-shot picks come from `uniforms` (repeats, Q, I):
    the floor(u * n)-th eligible sample of identity j in (camera, gallery index) order. Ties by gallery index."""
    num_q, num_g = distmat.shape
    ids = np.unique(g_pids)
    repeats = len(uniforms) if single_gallery_shot else 1
    ret, num_valid = np.zeros(topk), 0
    for i in range(num_q):
        order = np.lexsort((np.arange(num_g), distmat[i]))
        valid = (g_pids[order] != q_pids[i]) | (g_cams[order] != q_cams[i])
        if separate_camera_set:
            valid &= g_cams[order] != q_cams[i]
        matches = g_pids[order] == q_pids[i]
        if not np.any(matches & valid):
            continue
        position_of = np.empty(num_g, dtype=int)
        position_of[order] = np.arange(num_g)
        for r in range(repeats):
            if single_gallery_shot:
                sampled = np.zeros(num_g, dtype=bool)
                for j, pid in enumerate(ids):
                    eligible = [
                        g for g in np.lexsort((np.arange(num_g), g_cams)) if g_pids[g] == pid and valid[position_of[g]]
                    ]
                    if eligible:
                        sampled[position_of[eligible[int(uniforms[r, i, j] * len(eligible))]]] = True
                index = np.nonzero(matches[sampled])[0]
            else:
                index = np.nonzero(matches[valid])[0]
            delta = 1.0 / (len(index) * repeats)
            for j, k in enumerate(index):
                if k - j >= topk:
                    break
                if first_match_break:
                    ret[k - j] += 1
                    break
                ret[k - j] += delta
        num_valid += 1
    return ret.cumsum() / num_valid


@pytest.mark.parametrize("separate", [False, True])
@pytest.mark.parametrize("single_shot", [False, True])
@pytest.mark.parametrize("first_break", [False, True])
def test_open_reid_cmc_matches_loop_definition(separate, single_shot, first_break):
    distmat, q_pids, g_pids, q_cams, g_cams = random_problem(5, num_query=12, num_gallery=60, num_ids=6)
    repeats, seed = 4, 9
    uniforms = metrics.single_shot_uniforms(seed, repeats, len(q_pids), len(np.unique(g_pids)))
    expected = reference_open_reid_cmc(
        distmat, q_pids, g_pids, q_cams, g_cams, 15, separate, single_shot, first_break, uniforms
    )
    got = metrics.open_reid_cmc(
        distmat,
        q_pids,
        g_pids,
        q_cams,
        g_cams,
        topk=15,
        separate_camera_set=separate,
        single_gallery_shot=single_shot,
        first_match_break=first_break,
        repeats=repeats,
        seed=seed,
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_open_reid_published_test_cases():
    """The expectations of Open-ReID's test/evaluation_metrics/test_cmc.py (its default ids and cameras)."""
    distmat = np.array([[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [1, 2, 3, 4, 0]])
    ret = metrics.open_reid_cmc(distmat, np.arange(5), np.arange(5), np.zeros(5), np.ones(5), topk=100)
    np.testing.assert_allclose(ret[:5], [0.6, 0.6, 0.8, 1.0, 1.0])
    ret = metrics.open_reid_cmc(
        np.tile(np.arange(4), (4, 1)), [0, 0, 1, 1], [0, 0, 1, 1], np.zeros(4), np.ones(4), topk=4
    )
    np.testing.assert_allclose(ret, [0.5, 0.5, 1, 1])
    ret = metrics.open_reid_cmc(
        np.tile(np.arange(5), (5, 1)), [0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [0] * 5, [0, 1, 1, 1, 1], topk=5
    )
    np.testing.assert_allclose(ret, [0.6, 0.6, 0.6, 1, 1])


def test_single_shot_is_seeded_and_chunk_independent():
    distmat, q_pids, g_pids, q_cams, g_cams = random_problem(2)
    kwargs = dict(topk=20, separate_camera_set=True, single_gallery_shot=True)
    a = metrics.open_reid_cmc(distmat, q_pids, g_pids, q_cams, g_cams, seed=1, **kwargs)
    b = metrics.open_reid_cmc(distmat, q_pids, g_pids, q_cams, g_cams, seed=1, max_chunk_bytes=1, **kwargs)
    c = metrics.open_reid_cmc(distmat, q_pids, g_pids, q_cams, g_cams, seed=2, **kwargs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ------------------------------------------------------------------------------- torch path, chunking
def test_torch_path_equals_numpy_path():
    distmat, q_pids, g_pids, q_cams, g_cams = random_problem(4)
    numpy_result = metrics.evaluate_all(
        distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20, topk=20, device="cpu", sort_backend="numpy"
    )
    tensor = torch.from_numpy(distmat).double()
    torch_result = metrics.evaluate_all(
        tensor,
        torch.from_numpy(q_pids),
        torch.from_numpy(g_pids),
        torch.from_numpy(q_cams),
        torch.from_numpy(g_cams),
        max_rank=20,
        topk=20,
        sort_backend="torch",
        max_chunk_bytes=20_000,
    )
    for key, value in numpy_result.items():
        np.testing.assert_allclose(torch_result[key], value, rtol=0, atol=1e-12, err_msg=key)


def test_chunking_does_not_change_results():
    distmat, q_pids, g_pids, q_cams, g_cams = random_problem(7)
    whole = metrics.rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 20)
    rows = metrics.rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 20, max_chunk_bytes=1)
    np.testing.assert_array_equal(whole.cmc, rows.cmc)
    np.testing.assert_array_equal(whole.first_match_rank, rows.first_match_rank)
    np.testing.assert_allclose(whole.ap, rows.ap, rtol=1e-14)  # float sum order may differ with chunk width


def test_evaluate_all_is_consistent():
    distmat, q_pids, g_pids, q_cams, g_cams = random_problem(8)
    out = metrics.evaluate_all(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20, topk=20, seed=3)
    ranked = metrics.rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 20)
    cuhk03 = metrics.open_reid_cmc(
        distmat, q_pids, g_pids, q_cams, g_cams, 20, separate_camera_set=True, single_gallery_shot=True, seed=3
    )
    assert out["rank1"] == ranked.cmc[0] and out["rank10"] == ranked.cmc[9] and out["mAP"] == ranked.mAP
    np.testing.assert_allclose(out["cmc_cuhk03"], cuhk03, atol=1e-12)
    assert out["cuhk03_rank5"] == pytest.approx(cuhk03[4])
    assert out["mAP_openreid"] == pytest.approx(out["mAP"], abs=1e-12)  # tie-free distances
    assert out["num_skipped_queries"] == ranked.num_skipped_queries >= 1


# ---------------------------------------------------------------------------------------- bad input
def test_bad_input_is_named():
    distmat, q_pids, g_pids, q_cams, g_cams = random_problem(0)
    with pytest.raises(ValueError, match="g_pids"):
        metrics.evaluate_rank(distmat, q_pids, g_pids[:-1], q_cams, g_cams)
    nan_distmat = distmat.copy()
    nan_distmat[5, 17] = np.nan
    with pytest.raises(ValueError, match="row 5"):
        metrics.evaluate_rank(nan_distmat, q_pids, g_pids, q_cams, g_cams, 20)
    with pytest.raises(ValueError, match="row 5"):
        metrics.open_reid_cmc(nan_distmat, q_pids, g_pids, q_cams, g_cams, single_gallery_shot=True)
    with pytest.raises(metrics.NoValidQueryError):
        metrics.evaluate_rank(distmat, q_pids + 1000, g_pids, q_cams, g_cams, 20)


def test_small_gallery_lowers_max_rank_like_torchreid():
    with pytest.warns(UserWarning, match="max_rank lowered"):
        cmc, _ = metrics.evaluate_rank(
            HAND_DISTMAT[:, :5], QUERY_PIDS, GALLERY_PIDS[:5], QUERY_CAMS, GALLERY_CAMS[:5], max_rank=50
        )
    assert cmc.shape == (5,)
