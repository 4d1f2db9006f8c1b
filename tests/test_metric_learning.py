"""reid_eval.metric_learning: closed-form recovery on synthetic Gaussian identities, agreement with straightforward
references written here from the papers' equations (explicit pair enumeration, per-pair distance loops), and the
evaluation of an identity metric equal to the Euclidean evaluation bit for bit."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reid_eval import compat, metrics
from reid_eval import metric_learning as ml

CPU = "cpu"


# --------------------------------------------------------------------------------------------------- helpers
def spd(rng, d, scale, floor):
    a = rng.normal(size=(d, d))
    return scale * a @ a.T / d + floor * np.eye(d)


def gaussian_identities(seed, d=4, num_ids=3000, per_id=8, num_cams=6):
    """Class means mu_c ~ N(0, S_B), samples x = mu_c + e with e ~ N(0, S_W), cameras uniform and independent."""
    rng = np.random.default_rng(seed)
    s_w, s_b = spd(rng, d, 1.0, 0.3), spd(rng, d, 2.0, 0.5)
    mu = rng.multivariate_normal(np.zeros(d), s_b, num_ids)
    pids = np.repeat(np.arange(num_ids), per_id)
    cams = rng.integers(0, num_cams, len(pids))
    x = mu[pids] + rng.multivariate_normal(np.zeros(d), s_w, len(pids))
    return x, pids, cams, s_w, s_b


def small_set(seed, n=90, d=6, num_ids=12, num_cams=4, spread=1.0, noise=0.6):
    rng = np.random.default_rng(seed)
    pids = rng.integers(0, num_ids, n) + 100  # ids need not start at 0
    cams = rng.integers(0, num_cams, n)
    centres = spread * rng.normal(size=(num_ids + 100, d))
    x = centres[pids] + noise * rng.normal(size=(n, d)) + 2.0  # an offset: features are not centred
    return x, pids, cams


def explicit_distances(embed_q, embed_g, m):
    """d(x, y) = (x - y)^T M (x - y), one pair at a time."""
    out = np.zeros((len(embed_q), len(embed_g)))
    for i, q in enumerate(embed_q):
        for j, g in enumerate(embed_g):
            diff = q - g
            out[i, j] = diff @ m @ diff
    return out


def reference_preprocess(x, l2_normalize, pca_dim):
    """L2 normalisation and PCA from numpy's covariance (population): returns the map x -> embedding."""
    norm = (lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)) if l2_normalize else (lambda v: v)
    if pca_dim is None:
        return norm
    xn = norm(x)
    mean = xn.mean(0)
    values, vectors = np.linalg.eigh(np.cov(xn.T, bias=True))
    components = vectors[:, np.argsort(values)[::-1][:pca_dim]]
    return lambda v: (norm(v) - mean) @ components


def reference_kissme(x, pids, cams, dis_a, dis_b):
    """Koestinger et al. with the reference code's pairs: every cross-camera same-id pair, the given dissimilar
    pairs; M = inv(S_S) - inv(S_D); if not positive definite, eigenvalues <= 1e-10 set to 1e-6."""
    n, d = x.shape
    s_sim, num_sim = np.zeros((d, d)), 0
    for i in range(n):
        for j in range(i + 1, n):
            if pids[i] == pids[j] and cams[i] != cams[j]:
                s_sim += np.outer(x[i] - x[j], x[i] - x[j])
                num_sim += 1
    s_dis = sum(np.outer(x[a] - x[b], x[a] - x[b]) for a, b in zip(dis_a, dis_b))
    m = np.linalg.inv(s_sim / num_sim) - np.linalg.inv(s_dis / len(dis_a))
    m = (m + m.T) / 2
    try:
        np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(m)
        values[values <= 1e-10] = 1e-6
        m = vectors @ np.diag(values) @ vectors.T
    return m, num_sim


def reference_xqda(gal, prob, gal_labels, prob_labels, lam=0.001, dims=None, solver="eig"):
    """Liao et al. from the definitions: every (gallery, probe) pair enumerated; eigenvectors of
    inv(S_I) S_E (numpy's general eig) or the authors' SVD; W M W^T returned (basis-free)."""
    d = gal.shape[1]
    s_i, s_e, n_i, n_e = np.zeros((d, d)), np.zeros((d, d)), 0, 0
    for xi, li in zip(gal, gal_labels):
        for zj, lj in zip(prob, prob_labels):
            outer = np.outer(xi - zj, xi - zj)
            if li == lj:
                s_i, n_i = s_i + outer, n_i + 1
            else:
                s_e, n_e = s_e + outer, n_e + 1
    s_i = s_i / n_i + lam * np.eye(d)
    s_e = s_e / n_e
    ratio = np.linalg.solve(s_i, s_e)
    if solver == "eig":
        values, vectors = np.linalg.eig(ratio)
        values, vectors = values.real, vectors.real
    else:
        vectors, values, _ = np.linalg.svd(ratio)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    r = int((values > 1).sum())
    k = r if dims is None else min(dims, r)
    k = k if k > 0 else max(1, r)
    w = vectors[:, :k]
    m = np.linalg.inv(w.T @ s_i @ w) - np.linalg.inv(w.T @ s_e @ w)
    return w @ m @ w.T, values


def rel_err(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


# -------------------------------------------------------------------------------- closed-form recovery
@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_ideal_metric_on_gaussian_identities(seed):
    """Similar differences e_i - e_j ~ N(0, 2 S_W); dissimilar (mu_c - mu_c') + e_i - e_j ~ N(0, 2 S_W + 2 S_B).

    KISSME's ideal M* = inv(2 S_W) - inv(2 S_W + 2 S_B) (positive definite, so no clipping); XQDA's intra / extra
    covariances are the same two plus lambda I on the intra one, all generalised eigenvalues exceed 1, the whole
    space is kept and its M in input coordinates is inv(2 S_W + lambda I) - inv(2 S_W + 2 S_B).
    3000 identities x 8 samples in 4-D: within 6 % (Frobenius, relative); the error comes mostly from the finite
    number of class means (about sqrt(2 / 3000) ~ 2.6 % on S_B).
    """
    x, pids, cams, s_w, s_b = gaussian_identities(seed)
    d = x.shape[1]
    ideal_kissme = np.linalg.inv(2 * s_w) - np.linalg.inv(2 * s_w + 2 * s_b)
    ideal_xqda = np.linalg.inv(2 * s_w + 0.001 * np.eye(d)) - np.linalg.inv(2 * s_w + 2 * s_b)
    for pca_dim in (None, d):  # no PCA, and PCA to full dimension (a rotation: the same metric)
        kissme = ml.KissmeConfig(pca_dim=pca_dim, l2_normalize=False).fit(x, pids, cams, seed=seed, device=CPU)
        assert not kissme.info["psd_clipped"]
        assert rel_err(kissme.input_space_matrix().numpy(), ideal_kissme) < 0.06
    xqda = ml.XqdaConfig(l2_normalize=False).fit(x, pids, cams, seed=seed, device=CPU)
    assert xqda.info["subspace_dim"] == d
    assert rel_err(xqda.input_space_matrix().numpy(), ideal_xqda) < 0.06


# ------------------------------------------------------------------------------- against the references
@pytest.mark.parametrize("cross_camera", [True, False])
def test_similar_scatter_equals_pair_enumeration(cross_camera):
    x, pids, cams = small_set(0)
    scatter, count = ml.similar_pair_scatter(torch.from_numpy(x), pids, cams, cross_camera)
    ref, ref_count = np.zeros((x.shape[1], x.shape[1])), 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if pids[i] == pids[j] and (cams[i] != cams[j] or not cross_camera):
                ref += np.outer(x[i] - x[j], x[i] - x[j])
                ref_count += 1
    assert count == ref_count
    np.testing.assert_allclose(scatter.numpy(), ref, rtol=1e-10, atol=1e-10)


def test_dissimilar_pairs_follow_rule_and_seed():
    x, pids, cams = small_set(1)
    a, b = ml.sample_dissimilar_pairs(pids, cams, 5000, seed=3)
    assert len(a) == len(b) == 5000
    assert np.all(pids[a] != pids[b]) and np.all(cams[a] != cams[b])
    again = ml.sample_dissimilar_pairs(pids, cams, 5000, seed=3)
    np.testing.assert_array_equal(a, again[0])
    np.testing.assert_array_equal(b, again[1])
    assert not np.array_equal(a, ml.sample_dissimilar_pairs(pids, cams, 5000, seed=4)[0])
    a_any, b_any = ml.sample_dissimilar_pairs(pids, cams, 5000, seed=3, cross_camera=False)
    assert np.all(pids[a_any] != pids[b_any]) and np.any(cams[a_any] == cams[b_any])
    with pytest.raises(ml.MetricLearningError, match="no dissimilar pair"):
        ml.sample_dissimilar_pairs(pids, np.zeros_like(cams), 10, seed=0)


@pytest.mark.parametrize(
    ("seed", "spread", "l2_normalize", "pca_dim"),
    [(0, 1.0, False, None), (1, 1.0, True, 4), (2, 0.0, False, None)],  # spread 0: ids carry no signal -> clipping
)
def test_kissme_equals_reference(seed, spread, l2_normalize, pca_dim):
    x, pids, cams = small_set(seed, spread=spread)
    train, held_out = slice(0, 70), slice(70, None)
    config = ml.KissmeConfig(pca_dim=pca_dim, l2_normalize=l2_normalize)
    metric = config.fit(x[train], pids[train], cams[train], seed=seed, device=CPU)

    embed = reference_preprocess(x[train], l2_normalize, pca_dim)
    num_similar = metric.info["num_similar_pairs"]
    dis_a, dis_b = ml.sample_dissimilar_pairs(pids[train], cams[train], num_similar, seed)
    ref_m, ref_num_similar = reference_kissme(embed(x[train]), pids[train], cams[train], dis_a, dis_b)
    assert num_similar == ref_num_similar and metric.info["num_dissimilar_pairs"] == num_similar
    assert metric.info["psd_clipped"] == (spread == 0.0)
    if pca_dim is None:  # same coordinates: compare the matrices themselves
        np.testing.assert_allclose(metric.M.numpy(), ref_m, rtol=1e-8, atol=1e-8 * np.abs(ref_m).max())
    got = metric.distance(x[held_out], x[train], device=CPU).numpy()
    want = explicit_distances(embed(x[held_out]), embed(x[train]), ref_m)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8 * np.abs(want).max())


def test_xqda_covariances_equal_pair_enumeration():
    x, pids, _ = small_set(3, n=40)
    gal, prob = torch.from_numpy(x[:25]), torch.from_numpy(x[25:])
    intra, extra, n_i, n_e = ml._cross_view_covariances(gal, prob, pids[:25], pids[25:])
    d = x.shape[1]
    ref_i, ref_e, ref_ni, ref_ne = np.zeros((d, d)), np.zeros((d, d)), 0, 0
    for i in range(25):
        for j in range(25, 40):
            outer = np.outer(x[i] - x[j], x[i] - x[j])
            if pids[i] == pids[j]:
                ref_i, ref_ni = ref_i + outer, ref_ni + 1
            else:
                ref_e, ref_ne = ref_e + outer, ref_ne + 1
    assert (n_i, n_e) == (ref_ni, ref_ne)
    np.testing.assert_allclose(intra.numpy(), ref_i / ref_ni, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(extra.numpy(), ref_e / ref_ne, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(
    ("d", "n", "dims", "solver"),
    [(6, 90, None, "eig"), (6, 90, 3, "eig"), (6, 90, None, "svd"), (30, 24, None, "eig"), (30, 24, 2, "svd")],
)
def test_xqda_equals_reference(d, n, dims, solver):
    """d = 30 > n + m exercises the QR reduction; the reference works in the full space."""
    x, pids, _ = small_set(4, n=n, d=d, num_ids=6, spread=1.5)
    half = n // 2
    result = ml.xqda(
        torch.from_numpy(x[:half]), torch.from_numpy(x[half:]), pids[:half], pids[half:], dims=dims, solver=solver
    )
    ref, values = reference_xqda(x[:half], x[half:], pids[:half], pids[half:], dims=dims, solver=solver)
    assert np.min(np.abs(values - 1)) > 1e-6  # no eigenvalue on the threshold: both keep the same subspace
    assert result.W.shape[1] == min(int((values > 1).sum()), dims or d)
    got = (result.W @ result.M @ result.W.T).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-7 * np.abs(ref).max())


def test_split_views_equals_per_identity_loop():
    _, pids, cams = small_set(5, n=200, num_ids=15)
    view_a, view_b = ml.split_views(pids, cams, seed=7)
    keys = np.random.default_rng(7).random(len(pids))
    ref_a, ref_b = [], []
    for pid in np.unique(pids):  # the reference code: per identity a random order, two halves, pairs by position
        members = np.flatnonzero(pids == pid)
        members = members[np.argsort(keys[members], kind="stable")]
        half = len(members) // 2
        for a, b in zip(members[:half], members[half : 2 * half]):
            if cams[a] != cams[b]:
                ref_a.append(a)
                ref_b.append(b)
    np.testing.assert_array_equal(view_a, ref_a)
    np.testing.assert_array_equal(view_b, ref_b)
    assert np.all(pids[view_a] == pids[view_b]) and np.all(cams[view_a] != cams[view_b])


@pytest.mark.parametrize(("l2_normalize", "pca_dim"), [(True, None), (True, 5), (False, None)])
def test_xqda_fit_equals_reference(l2_normalize, pca_dim):
    x, pids, cams = small_set(6, n=160, num_ids=10, spread=1.5)
    train, held_out = slice(0, 130), slice(130, None)
    config = ml.XqdaConfig(pca_dim=pca_dim, l2_normalize=l2_normalize)
    metric = config.fit(x[train], pids[train], cams[train], seed=2, device=CPU)
    embed = reference_preprocess(x[train], l2_normalize, pca_dim)
    view_a, view_b = ml.split_views(pids[train], cams[train], seed=2)
    z = embed(x[train])
    ref_m, _ = reference_xqda(z[view_a], z[view_b], pids[train][view_a], pids[train][view_b])
    got = metric.distance(x[held_out], x[train], device=CPU).numpy()
    want = explicit_distances(embed(x[held_out]), embed(x[train]), ref_m)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-7 * np.abs(want).max())


# ------------------------------------------------------------------------------------------ distances, PCA
def test_batched_distance_equals_explicit_formula():
    rng = np.random.default_rng(8)
    q, g = rng.normal(size=(7, 9)), rng.normal(size=(11, 9))
    a = rng.normal(size=(4, 4))
    m, projection, mean = a + a.T, rng.normal(size=(9, 4)), rng.normal(size=9)
    metric = ml.Metric(
        "test", torch.from_numpy(m), torch.from_numpy(projection), torch.from_numpy(mean), True, torch.float64
    )
    embed = lambda v: (v / np.linalg.norm(v, axis=1, keepdims=True) - mean) @ projection
    np.testing.assert_allclose(metric.embed(q).numpy(), embed(q), rtol=1e-12, atol=1e-12)
    got = metric.distance(q, g).numpy()
    np.testing.assert_allclose(got, explicit_distances(embed(q), embed(g), m), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(metric.input_space_matrix().numpy(), projection @ m @ projection.T, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("l2_normalize", [False, True])
def test_identity_metric_evaluation_equals_euclidean_exactly(dtype, l2_normalize):
    rng = np.random.default_rng(9)
    qf, gf = rng.normal(size=(40, 16)).astype(dtype), rng.normal(size=(200, 16)).astype(dtype)
    query = ml.FeatureSet(qf, rng.integers(0, 20, 40), rng.integers(0, 4, 40))
    gallery = ml.FeatureSet(gf, rng.integers(0, 20, 200), rng.integers(0, 4, 200))
    identity = ml.Metric("identity", M=torch.eye(16, dtype=torch.from_numpy(qf).dtype), l2_normalize=l2_normalize)
    euclidean = ml.fit_metric("euclidean", None, None, None, l2_normalize=l2_normalize)
    q_t, g_t = torch.from_numpy(qf), torch.from_numpy(gf)
    if l2_normalize:
        q_t, g_t = F.normalize(q_t, dim=1), F.normalize(g_t, dim=1)
    project = compat.DISTANCES["euclidean"](q_t, g_t)  # what reid_eval.train evaluates with
    assert torch.equal(identity.distance(qf, gf, device=CPU), project)
    assert torch.equal(euclidean.distance(qf, gf, device=CPU), project)
    ours, theirs = ml.evaluate_metric(identity, query, gallery), ml.evaluate_metric(euclidean, query, gallery)
    direct = metrics.evaluate_all(project, query.pids, gallery.pids, query.cams, gallery.cams)
    for result in (theirs, direct):
        assert ours.keys() == result.keys()
        for key, value in ours.items():
            np.testing.assert_array_equal(value, result[key], err_msg=key)
    cmc, m_ap = ml.evaluate_metric_rank(identity, query, gallery, max_rank=10)
    ref_cmc, ref_map = metrics.evaluate_rank(project, query.pids, gallery.pids, query.cams, gallery.cams, 10)
    np.testing.assert_array_equal(cmc, ref_cmc)
    assert m_ap == ref_map


@pytest.mark.parametrize(("n", "d"), [(200, 12), (8, 12)])  # the covariance and the N < D (SVD) paths
def test_pca_equals_numpy(n, d):
    x = np.random.default_rng(10).normal(size=(n, d)) @ np.diag(np.linspace(3, 0.5, d))
    k = min(5, n - 1)
    pca = ml.fit_pca(torch.from_numpy(x), k)
    values, vectors = np.linalg.eigh(np.cov(x.T, bias=True))
    order = np.argsort(values)[::-1][:k]
    np.testing.assert_allclose(pca.variances.numpy(), values[order], rtol=1e-9)
    comps = pca.components.numpy()
    np.testing.assert_allclose(comps.T @ comps, np.eye(k), atol=1e-10)
    np.testing.assert_allclose(comps @ comps.T, vectors[:, order] @ vectors[:, order].T, atol=1e-9)
    assert np.all(comps[np.abs(comps).argmax(0), np.arange(k)] > 0)  # sign convention
    if n > d:  # more components than dimensions: capped at D (a rotation)
        assert ml.fit_pca(torch.from_numpy(x), d + 5).components.shape == (d, d)
    else:  # more components than the rank N - 1 of the centred data
        with pytest.raises(ml.MetricLearningError, match="needs at least"):
            ml.fit_pca(torch.from_numpy(x), n)


# -------------------------------------------------------------------------------------------- interface
def test_fit_and_evaluate_and_errors():
    x, pids, cams = small_set(11, n=300, d=8, num_ids=20, spread=2.0)
    train = ml.FeatureSet(x[:200].astype(np.float32), pids[:200], cams[:200])
    query = ml.FeatureSet(x[200:230], pids[200:230], cams[200:230])
    gallery = ml.FeatureSet(x[230:], pids[230:], cams[230:])
    results = ml.fit_and_evaluate(train, query, gallery, seed=1, device=CPU, options={"kissme": {"pca_dim": 6}})
    assert set(results) == {"euclidean", "xqda", "kissme"}
    for name, result in results.items():
        assert 0.0 <= result["rank1"] <= 1.0 and 0.0 <= result["mAP"] <= 1.0, name
    assert results["kissme"]["metric_info"]["pca_dim"] == 6
    again = ml.fit_and_evaluate(train, query, gallery, seed=1, device=CPU, options={"kissme": {"pca_dim": 6}})
    assert again["kissme"]["mAP"] == results["kissme"]["mAP"] and again["xqda"]["mAP"] == results["xqda"]["mAP"]

    with pytest.raises(ValueError, match="unknown metric"):
        ml.fit_metric("lmnn", x, pids, cams)
    with pytest.raises(ValueError, match="solver"):
        ml.fit_metric("xqda", x, pids, cams, solver="qr", device=CPU)
    one_camera = np.zeros_like(cams)
    with pytest.raises(ml.MetricLearningError):
        ml.fit_metric("kissme", x, pids, one_camera, pca_dim=4, device=CPU)
    with pytest.raises(ml.MetricLearningError, match="views are empty"):
        ml.fit_metric("xqda", x, pids, one_camera, device=CPU)
    with pytest.raises(ValueError, match="pids must be 1-D"):
        ml.fit_metric("kissme", x, pids[:10], cams, device=CPU)
