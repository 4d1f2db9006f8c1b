"""Shared losses: the one VGG-19 feature extractor (and its equality with the three wrappers it
replaced), perceptual L1, weight loading (never downloads), BCE GAN, ImagePool."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import vgg as tv_vgg

from augment.data.constants import IMAGENET_MEAN, IMAGENET_STD
from generators.base import count_flops
from generators.losses import (
    VGG19_FILE,
    VGG19_LAYERS,
    ImagePool,
    MissingWeightsError,
    PerceptualL1,
    VGGFeatures,
    bce_gan_loss,
    default_vgg19_path,
    load_vgg19_features,
    load_vgg_features,
    vgg19_prefix,
)


def torchvision_vgg19_features() -> torch.nn.Sequential:
    """torchvision's VGG-19 feature stack (configuration "E"), randomly initialised, no classifier."""
    return tv_vgg.make_layers(tv_vgg.cfgs["E"], batch_norm=False)


def write_fake_vgg19_file(path, seed=0):
    """A file shaped like torchvision's vgg19-dcbb9e9d.pth (features.* + classifier.*), random weights."""
    torch.manual_seed(seed)
    feats = torchvision_vgg19_features()
    state = {f"features.{k}": v for k, v in feats.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # present in the real file, unused here
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return feats


def test_vgg19_prefix_matches_torchvision_layout():
    ours, theirs = vgg19_prefix(4), torchvision_vgg19_features()[:4]
    assert [type(m) for m in ours] == [type(m) for m in theirs]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert list(ours.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # conv1_1, conv1_2


def test_perceptual_l1_equals_hand_computation():
    torch.manual_seed(0)
    features = vgg19_prefix(4)  # random weights: never real ones in tests
    w1, b1, w2, b2 = (
        t.detach().clone() for t in (features[0].weight, features[0].bias, features[2].weight, features[2].bias)
    )
    loss_fn = PerceptualL1(VGGFeatures(features, ("relu1_2",)))
    fake = (torch.rand(2, 3, 16, 8) * 2 - 1).requires_grad_(True)
    real = torch.rand(2, 3, 16, 8) * 2 - 1

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def relu1_2(x):
        x = ((x + 1) / 2 - mean) / std
        x = F.relu(F.conv2d(x, w1, b1, padding=1))
        return F.relu(F.conv2d(x, w2, b2, padding=1))

    expected = (relu1_2(fake) - relu1_2(real)).abs().mean()
    got = loss_fn(fake, real)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    got.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in loss_fn.parameters())  # frozen
    loss_fn.train()
    assert not loss_fn.extractor.features.training  # stays in eval mode


# ------------------------------------------------------------------------------------------------
# The three VGG wrappers the extractor replaced, copied verbatim as references
# ------------------------------------------------------------------------------------------------


def freeze(net):
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class OldPerceptualL1(torch.nn.Module):
    """generators.losses.PerceptualL1 before the shared extractor (PATN's relu1_2 term)."""

    def __init__(self, features):
        super().__init__()
        self.features = freeze(features)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalise(self, x):
        return ((x + 1) / 2 - self.mean) / self.std

    def forward(self, fake, real):
        with torch.no_grad():
            target = self.features(self.normalise(real))
        return F.l1_loss(self.features(self.normalise(fake)).float(), target.float())


OLD_VGG_CONTENT_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))


class OldVGGContentLoss(torch.nn.Module):
    """generators.spgnet.VGGContentLoss before the shared extractor (relu1_1 .. relu5_1)."""

    def __init__(self, features, weights=(0.125,) * 5):
        super().__init__()
        self.features = freeze(features)
        self.weights = tuple(float(w) for w in weights)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def pyramid(self, x):
        x = ((x + 1) / 2 - self.mean) / self.std
        out = []
        for start, stop in OLD_VGG_CONTENT_SLICES:
            x = self.features[start:stop](x)
            out.append(x)
        return out

    def forward(self, fake, real):
        with torch.no_grad():
            target = self.pyramid(real)
        return sum(w * F.l1_loss(f.float(), t.float()) for w, f, t in zip(self.weights, self.pyramid(fake), target))


class OldDeformVGGFeatures(torch.nn.Module):
    """generators.deform.VGGFeatures before the shared extractor (block1_conv2, two preprocessings)."""

    def __init__(self, features, vgg_input="torchvision"):
        super().__init__()
        self.features = freeze(features)
        self.vgg_input = vgg_input
        if vgg_input == "keras":
            shift, scale = torch.tensor((103.939, 116.779, 123.68)), torch.ones(3)
        else:
            shift, scale = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)

    def preprocess(self, x):
        if self.vgg_input == "keras":
            return (255 * (x + 1) / 2 - self.shift).flip(1)
        return ((x + 1) / 2 - self.shift) / self.scale

    def forward(self, x):
        return self.features(self.preprocess(x))


def random_vgg(num_layers, seed=0):
    """Two copies of one randomly initialised VGG-19 prefix (never real weights in tests)."""
    torch.manual_seed(seed)
    net = vgg19_prefix(num_layers)
    twin = vgg19_prefix(num_layers)
    twin.load_state_dict(net.state_dict())
    return net, twin


def image_pair(seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    fake = (torch.rand(2, 3, 32, 16, generator=g) * 2 - 1).to(dtype)
    real = (torch.rand(2, 3, 32, 16, generator=g) * 2 - 1).to(dtype)
    return fake.requires_grad_(True), real


def assert_same_loss_and_gradient(old, new, dtype=torch.float32):
    """Same value and same gradient w.r.t. the fake image, to 1e-6."""
    results = []
    for loss_fn in (old, new):
        fake, real = image_pair(dtype=dtype)
        loss = loss_fn(fake, real)
        loss.backward()
        results.append((loss.detach(), fake.grad))
    (v_old, g_old), (v_new, g_new) = results
    assert torch.allclose(v_new, v_old, rtol=0, atol=1e-6), (v_new, v_old)
    assert torch.allclose(g_new.float(), g_old.float(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extractor_reproduces_patn_perceptual_l1(dtype):
    features, twin = random_vgg(4)
    new = PerceptualL1(VGGFeatures(twin, ("relu1_2",), "[-1,1]", "imagenet"))
    assert_same_loss_and_gradient(OldPerceptualL1(features), new, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extractor_reproduces_spgnet_content_loss(dtype):
    features, twin = random_vgg(30)
    weights = (0.5, 0.25, 0.125, 0.1, 0.05)
    new = PerceptualL1(VGGFeatures(twin, ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")), weights)
    assert_same_loss_and_gradient(OldVGGContentLoss(features, weights), new, dtype)
    assert [VGG19_LAYERS.index(n) + 1 for n in new.extractor.layers] == [s for _, s in OLD_VGG_CONTENT_SLICES]


@pytest.mark.parametrize(("vgg_input", "normalization"), [("torchvision", "imagenet"), ("keras", "caffe")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extractor_reproduces_deform_vgg_features(vgg_input, normalization, dtype):
    features, twin = random_vgg(4)
    old, new = OldDeformVGGFeatures(features, vgg_input), VGGFeatures(twin, ("relu1_2",), normalization=normalization)
    fake, real = image_pair(dtype=dtype)
    assert torch.equal(new.preprocess(fake), old.preprocess(fake))
    (got,) = new(real)
    assert torch.allclose(got, old(real), rtol=0, atol=1e-6)


def test_extractor_input_range_and_layer_checks():
    features, _ = random_vgg(7)
    signed = VGGFeatures(features, ("relu1_1", "relu2_1"))
    unit = VGGFeatures(features, ("relu1_1", "relu2_1"), input_range="[0,1]")
    x = torch.rand(1, 3, 8, 4)
    for a, b in zip(signed(x * 2 - 1), unit(x)):
        assert torch.allclose(a, b, atol=1e-6)
    assert [f.shape[1:] for f in unit(x)] == [(64, 8, 4), (128, 4, 2)]
    caffe = VGGFeatures(features, ("relu1_1",), input_range="[0,1]", normalization="caffe")
    rgb = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    expected = torch.tensor([255 - 123.68, 127.5 - 116.779, 0 - 103.939]).view(1, 3, 1, 1)  # mean in RGB, then BGR
    assert torch.allclose(caffe.preprocess(rgb), expected, atol=1e-4)
    with pytest.raises(ValueError, match="relu9_1"):
        VGGFeatures(features, ("relu9_1",))
    with pytest.raises(ValueError, match="network order"):
        VGGFeatures(features, ("relu2_1", "relu1_1"))
    with pytest.raises(ValueError, match="relu3_1.*needs 12"):
        VGGFeatures(features, ("relu3_1",))
    with pytest.raises(ValueError, match="normalization 'bgr'"):
        VGGFeatures(features, normalization="bgr")
    with pytest.raises(ValueError, match="input range"):
        VGGFeatures(features, input_range="0-255")
    assert VGG19_LAYERS[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1") and VGG19_LAYERS[29] == "relu5_1"


def test_load_vgg_features_reads_only_the_needed_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    feats = write_fake_vgg19_file(default_vgg19_path(), seed=3)
    vgg = load_vgg_features(layers=("relu1_1", "relu2_1"))
    assert len(vgg.features) == 7 and not vgg.features.training
    assert torch.equal(vgg.features[5].weight, feats[5].weight)
    with pytest.raises(MissingWeightsError, match="--no-perceptual"):
        load_vgg_features(tmp_path / "absent.pth")


def test_load_vgg19_features_from_cache_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache_file = tmp_path / "torch" / "hub" / "checkpoints" / VGG19_FILE
    assert default_vgg19_path() == cache_file
    feats = write_fake_vgg19_file(cache_file, seed=1)
    net = load_vgg19_features()
    assert len(net) == 4 and not net.training
    assert all(not p.requires_grad for p in net.parameters())
    assert torch.equal(net[2].weight, feats[2].weight) and torch.equal(net[0].bias, feats[0].bias)
    other = write_fake_vgg19_file(tmp_path / "elsewhere" / "weights.pth", seed=2)
    net2 = load_vgg19_features(tmp_path / "elsewhere" / "weights.pth")
    assert torch.equal(net2[0].weight, other[0].weight)


def test_missing_vgg_weights_names_file_and_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(MissingWeightsError) as err:
        load_vgg19_features()
    text = str(err.value)
    assert str(tmp_path / "empty" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in text
    assert "--vgg-weights PATH" in text and "--no-perceptual" in text
    assert isinstance(err.value, FileNotFoundError)
    assert not (tmp_path / "empty").exists()  # nothing downloaded, nothing created
    with pytest.raises(MissingWeightsError, match="given.pth"):
        load_vgg19_features(tmp_path / "given.pth")


def test_bad_vgg_files_name_the_file(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth"):
        load_vgg19_features(junk)
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match=r"foreign.pth.*features.0.weight"):
        load_vgg19_features(foreign)


def test_bce_gan_loss_equals_bce_on_sigmoid_and_is_safe_in_low_precision():
    logits = torch.randn(2, 4, 8, 4) * 3
    for real in (True, False):
        target = torch.full_like(logits, 1.0 if real else 0.0)
        expected = torch.nn.BCELoss()(torch.sigmoid(logits), target)
        assert bce_gan_loss(logits, real).item() == pytest.approx(expected.item(), rel=1e-5)
    # Saturated logits in bf16: the loss stays finite, fp32, and equal to the exact value.
    big = torch.full((4,), 40.0, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = bce_gan_loss(big, False)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(40.0, rel=1e-4)


def reference_pool(size, batches, seed):
    """The official util/image_pool.py loop, per image, with the same random draws as ImagePool."""
    g = torch.Generator().manual_seed(seed)
    stored, outputs = [], []
    for images in batches:
        coins = torch.rand(len(images), generator=g).tolist()
        slots = torch.randint(size, (len(images),), generator=g).tolist()
        out = []
        for j, image in enumerate(images):
            if len(stored) < size:
                stored.append(image.clone())
                out.append(image)
            elif coins[j] > 0.5:
                out.append(stored[slots[j]].clone())
                stored[slots[j]] = image.clone()
            else:
                out.append(image)
        outputs.append(torch.stack(out))
    return outputs


def test_image_pool_matches_the_official_loop():
    batches = [torch.randn(4, 2, 3, 3) for _ in range(12)]
    pool = ImagePool(size=5, seed=7)
    got = [pool.query(b) for b in batches]
    expected = reference_pool(5, batches, seed=7)
    for g, e in zip(got, expected):
        assert torch.equal(g, e)
    # The first `size` samples are stored and returned unchanged.
    assert torch.equal(got[0], batches[0]) and len(pool) == 5
    # Later batches mix history in: some rows are not the queried samples.
    replaced = sum(int((g != b).flatten(1).any(1).sum()) for g, b in zip(got[2:], batches[2:]))
    assert 0 < replaced < 4 * 10


def test_image_pool_half_of_queries_return_history():
    pool = ImagePool(size=50, seed=0)
    pool.query(torch.arange(50.0).view(50, 1))
    fresh = torch.arange(1000.0, 3000.0).view(2000, 1)
    out = torch.cat([pool.query(fresh[i : i + 20]) for i in range(0, 2000, 20)])
    swapped = (out != fresh).float().mean().item()
    assert 0.45 < swapped < 0.55


def test_image_pool_determinism_and_state(tmp_path):
    batches = [torch.randn(3, 1, 2, 2) for _ in range(10)]
    a, b, c = ImagePool(4, seed=1), ImagePool(4, seed=1), ImagePool(4, seed=2)
    outs_a = [a.query(x) for x in batches[:6]]
    outs_b = [b.query(x) for x in batches[:6]]
    outs_c = [c.query(x) for x in batches[:6]]
    assert all(torch.equal(x, y) for x, y in zip(outs_a, outs_b))
    assert not all(torch.equal(x, y) for x, y in zip(outs_a, outs_c))
    # Save, reload into a fresh pool (through a file), continue identically; global RNGs unused.
    torch.save(a.state_dict(), tmp_path / "pool.pt")
    restored = ImagePool(4, seed=123)
    restored.load_state_dict(torch.load(tmp_path / "pool.pt", weights_only=True))
    torch.manual_seed(0)
    random.seed(0)
    cont_a = [a.query(x) for x in batches[6:]]
    torch.manual_seed(99)
    random.seed(99)
    cont_r = [restored.query(x) for x in batches[6:]]
    assert all(torch.equal(x, y) for x, y in zip(cont_a, cont_r))
    with pytest.raises(ValueError, match="size differs"):
        ImagePool(5).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="shape"):
        a.query(torch.randn(2, 1, 3, 3))


def test_image_pool_size_zero_and_detach():
    pool = ImagePool(size=0)
    x = torch.randn(3, 2, requires_grad=True)
    out = pool.query(x)
    assert torch.equal(out, x.detach()) and not out.requires_grad and len(pool) == 0


def test_count_flops_by_hand():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),  # -> 8x4x4
        torch.nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1),  # -> 4x8x8
        torch.nn.Flatten(),
        torch.nn.Linear(256, 10),
    )
    fc = count_flops(net, torch.zeros(2, 3, 8, 8))
    conv = 8 * 4 * 4 * 3 * 9  # output elements x C_in x k x k
    convt = 8 * 4 * 4 * 4 * 9  # input elements x C_out x k x k
    linear = 10 * 256
    assert fc.macs == 2 * (conv + convt + linear)
    assert fc.gflops_per_sample == pytest.approx(2 * (conv + convt + linear) / 1e9)
    assert net.training  # mode restored
