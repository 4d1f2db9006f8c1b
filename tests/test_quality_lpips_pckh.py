"""LPIPS against the ``lpips`` package (random backbone, the wheel's linear layers, same backbone weights in both),
and PCKh on hand-computed cases of the official counting rule. LPIPS tolerance: 1e-5 relative (float32)."""

import numpy as np
import pytest
import torch

from generators.quality.lpips import BACKBONES, load_lpips, lpips_distance, lpips_linear_path
from generators.quality.pckh import head_size, pckh
from generators.quality.weights import MetricWeightsError


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_reference(net, tmp_path):
    import lpips

    torch.manual_seed(0)
    ref = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    # the reference's random backbone, saved in torchvision's key layout (features.<index>.*)
    backbone = {}
    for name, value in ref.net.state_dict().items():
        slice_name, index, param = name.split(".")
        backbone[f"features.{index}.{param}"] = value
    backbone["classifier.1.weight"] = torch.zeros(1)  # the real file holds the classifier too
    path = tmp_path / BACKBONES[net].weights.files[0]
    torch.save(backbone, path)
    model = load_lpips(net, backbone_path=path)
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (3, 3, 64, 32), dtype=torch.uint8, generator=g)
    b = (a.int() + torch.randint(-40, 40, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    mine = lpips_distance(model, a, b, batch_size=2)
    with torch.no_grad():
        theirs = ref(a.float() / 127.5 - 1, b.float() / 127.5 - 1).flatten()
    assert mine.shape == (3,)
    assert torch.allclose(mine, theirs, rtol=1e-5, atol=1e-7)
    assert torch.equal(lpips_distance(model, a, a), torch.zeros(3))


def test_lpips_missing_files_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MetricWeightsError) as err:
        load_lpips("alex")
    assert "alexnet-owt-7be5be79.pth" in str(err.value) and "--lpips-backbone PATH" in str(err.value)
    assert "--skip lpips" in str(err.value)
    backbone = tmp_path / "vgg.pth"
    torch.save({f"features.{k}": v for k, v in load_lpips_features_state("vgg").items()}, backbone)
    with pytest.raises(MetricWeightsError, match="linear layers"):
        load_lpips("vgg", backbone_path=backbone, linear_path=tmp_path / "nowhere.pth")
    assert lpips_linear_path("alex").is_file()  # the installed wheel ships them


def load_lpips_features_state(net):
    from generators.quality.lpips import LPIPS

    return LPIPS(net).features.state_dict()


def kps(points: dict[int, tuple[int, int]]) -> np.ndarray:
    out = -np.ones((18, 2), dtype=np.int64)
    for j, yx in points.items():
        out[j] = yx
    return out


def test_head_size_rule():
    # head joints 0 (nose) at (10, 20), 14 (right eye) at (6, 26): w = 6, h = 4
    target = kps({0: (10, 20), 14: (6, 26), 2: (30, 20)})
    assert head_size(target[None]).tolist() == [[6.0, 4.0]]
    # one head joint only: no box
    assert head_size(kps({0: (10, 20), 2: (30, 20)})[None]).tolist() == [[-1.0, -1.0]]


def test_pckh_counts_like_the_official_script():
    target = kps({0: (10, 20), 14: (6, 26), 2: (30, 20), 3: (40, 18)})  # box w 6, h 4 -> thresholds 3, 2
    pred = kps({0: (11, 22), 14: (8, 26), 2: (30, 23)})  # 0 hit; 14 dy = 2 (not < 2) miss; 2 dx = 3 miss; 3 absent
    r = pckh(pred[None], target[None])
    assert (r.hits, r.joints, r.images) == (1, 4, 1)
    # an image without a head box is left out entirely, hits and joints
    no_head = kps({2: (30, 20), 3: (40, 18)})
    r2 = pckh(np.stack([pred, no_head]), np.stack([target, no_head]))
    assert (r2.hits, r2.joints, r2.images, r2.total_images) == (1, 4, 1, 2)
    assert r2.score == pytest.approx(0.25)
    # a zero-width head box can never be hit along x
    flat = kps({0: (10, 20), 1: (20, 20)})
    assert pckh(flat[None], flat[None]).hits == 0
    with pytest.raises(ValueError):
        pckh(np.zeros((2, 18, 2)), np.zeros((1, 18, 2)))
