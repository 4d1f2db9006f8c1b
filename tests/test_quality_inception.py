"""Inception features, FID and IS against torch-fidelity, pytorch-fid and torchvision with identical random weights.

Tolerances: features and logits to 1e-4 relative to their scale (float32 through ~100 layers, summed in another
order); FID to 1e-10 relative against pytorch-fid's formula (same algorithm) and 1e-9 against torch-fidelity's
eigenvalue form; IS to 1e-9 on the same logits and 1e-5 end to end (through each side's network).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from metric_weights import random_inception_state

from generators.quality.inception import InceptionV3, inception_features, load_inception
from generators.quality.resize import resize
from generators.quality.scores import fid_from_features, frechet_distance, gaussian_stats, inception_score
from generators.quality.weights import MetricWeightsError


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(random_inception_state("fid"), path)
    return path


def images(n: int, seed: int, h: int = 40, w: int = 24) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def close(a, b, rel=1e-4):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    assert (a - b).abs().max().item() <= rel * max(1.0, b.abs().max().item())


def test_tf1_resize_matches_torch_fidelity():
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = torch.rand(2, 3, 128, 64) * 255
    ref = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    close(resize(x, (299, 299), "tf1-bilinear"), ref, rel=1e-6)


def test_features_match_torch_fidelity(fid_weights):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    ref = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased", "logits"], feature_extractor_weights_path=str(fid_weights)
    )
    x = images(3, seed=1)
    mine = inception_features(load_inception("fid", fid_weights), x, convention="tf1", batch_size=2)
    theirs = ref(x)
    for key, value in zip(("pool3", "logits_unbiased", "logits"), theirs):
        close(mine[key], value)


def test_features_match_pytorch_fid_from_the_torch_cache(fid_weights, tmp_path, monkeypatch):
    """pytorch-fid reads its weights from $TORCH_HOME/hub/checkpoints; so does load_inception without a path."""
    from pytorch_fid.inception import InceptionV3 as PytorchFidInception

    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / fid_weights.name).write_bytes(fid_weights.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ref = PytorchFidInception([3]).eval()
    x = images(2, seed=2)
    with torch.no_grad():
        theirs = ref(x.float() / 255)[0].flatten(1)
    mine = inception_features(load_inception("fid"), x, convention="pytorch-fid")
    close(mine["pool3"], theirs)


def test_torchvision_variant_matches_torchvision_inception(tmp_path):
    """GFLA's FID network: torchvision's Inception-v3 blocks up to the average pool, with its input transform."""
    import torchvision

    ref = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    state = random_inception_state("torchvision", seed=3)
    full = ref.state_dict()
    full.update(state)
    ref.load_state_dict(full)
    path = tmp_path / "inception_v3_google-0cc3c7bd.pth"
    torch.save(full, path)  # the real file holds the auxiliary classifier too
    x = images(2, seed=4)
    mine = inception_features(load_inception("torchvision", path), x, convention="gfla")
    ref.transform_input = True  # torchvision's own (x * std / 0.5 + (mean - 0.5) / 0.5), as GFLA applies it
    with torch.no_grad():
        h = F.interpolate(x.float() / 255, size=(299, 299), mode="bilinear", align_corners=False)
        h = ref._transform_input(h)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1"):
            h = getattr(ref, name)(h)
        for name in ("Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b"):
            h = getattr(ref, name)(h)
        for name in ("Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"):
            h = getattr(ref, name)(h)
        pool = h.flatten(1)
    close(mine["pool3"], pool)
    close(mine["logits"], ref.fc(pool))


def test_inception_score_matches_torch_fidelity_end_to_end(fid_weights):
    import torch_fidelity

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    a = images(8, seed=5)
    ref = torch_fidelity.calculate_metrics(
        input1=Images(a),
        cuda=False,
        isc=True,
        isc_splits=4,
        verbose=False,
        feature_extractor_weights_path=str(fid_weights),
        batch_size=8,
        save_cpu_ram=True,  # no DataLoader workers
    )
    logits = inception_features(load_inception("fid", fid_weights), a)["logits_unbiased"]
    mean, std = inception_score(logits, splits=4, shuffle_seed=2020)
    assert mean == pytest.approx(ref["inception_score_mean"], rel=1e-5)
    assert std == pytest.approx(ref["inception_score_std"], rel=1e-4, abs=1e-6)


def test_frechet_distance_matches_pytorch_fid_and_torch_fidelity():
    """Same formula as pytorch-fid (sqrtm); torch-fidelity's eigenvalue form agrees on well-conditioned
    statistics. (2048-d statistics of a handful of images are singular and only slow the test down.)"""
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 12)).astype(np.float32)
    b = (rng.normal(size=(50, 12)) @ rng.normal(size=(12, 12)) * 0.5 + 0.3).astype(np.float32)
    stats = (*gaussian_stats(torch.from_numpy(a)), *gaussian_stats(b))
    fid = frechet_distance(*stats)
    assert fid == pytest.approx(calculate_frechet_distance(*stats), rel=1e-10)
    ref = fid_statistics_to_metric({"mu": stats[0], "sigma": stats[1]}, {"mu": stats[2], "sigma": stats[3]}, False)
    assert fid == pytest.approx(ref["frechet_inception_distance"], rel=1e-9)
    assert fid_from_features(a, b) == fid
    assert frechet_distance(*stats[:2], *stats[:2]) == pytest.approx(0.0, abs=1e-8)


def test_inception_score_matches_reference_formula():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = torch.randn(53, 1008, generator=torch.Generator().manual_seed(7)) * 3
    for shuffle in (False, True):
        ref = isc_features_to_metric(logits, splits=10, shuffle=shuffle, rng_seed=2020)
        mean, std = inception_score(logits, splits=10, shuffle_seed=2020 if shuffle else None)
        assert mean == pytest.approx(ref["inception_score_mean"], rel=1e-12)
        assert std == pytest.approx(ref["inception_score_std"], rel=1e-9)
    # the TF-era code in numpy: consecutive chunks, no shuffle
    p = torch.softmax(logits.double(), 1).numpy()
    scores = []
    for i in range(10):
        part = p[i * 53 // 10 : (i + 1) * 53 // 10]
        kl = part * (np.log(part) - np.log(np.mean(part, 0, keepdims=True)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    assert inception_score(logits)[0] == pytest.approx(np.mean(scores), rel=1e-12)


def test_missing_inception_weights_name_file_source_and_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MetricWeightsError) as err:
        load_inception("fid")
    text = str(err.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in text and "weights-inception-2015-12-05-6726825d.pth" in text
    assert "pytorch-fid" in text and "--inception-weights PATH" in text and "--skip fid,is" in text
    with pytest.raises(MetricWeightsError, match="inception_v3_google-0cc3c7bd.pth"):
        load_inception("torchvision")


def test_torch_fidelity_file_name_and_foreign_files(fid_weights, tmp_path, monkeypatch):
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "weights-inception-2015-12-05-6726825d.pth").write_bytes(fid_weights.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert isinstance(load_inception("fid"), InceptionV3)
    bad = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(ValueError, match="does not hold Inception"):
        load_inception("fid", bad)
