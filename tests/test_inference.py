"""generators.inference: the fast path (channels-last, batched, uint8 in/out, autocast) agrees with the
plain eval-mode forward within stated tolerances; kinds, shapes, errors, checkpoint paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from augment.runtime import cpu_supports_bf16
from generators.base import build
from generators.checkpoint import save
from generators.inference import Transferer, model_to_uint8, transfer

SIZE = (32, 16)
N = 7  # not a multiple of the batch sizes used below


def realistic_bundle():
    """The synth PATN with weights that use the output range: an untrained generator's output conv
    (N(0, 0.02)) gives |y| < 0.05, where every precision looks perfect. Kaiming-normal convs and
    BatchNorm statistics gathered in train mode give outputs spread over [-1, 1] instead."""
    bundle = build("patn", "synth", seed=0)
    g = torch.Generator().manual_seed(1)
    for m in bundle.nets.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight[:, 0].numel()
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
    img, src, tgt = inputs(16, seed=5)
    bundle.nets.train()
    with torch.no_grad():
        for _ in range(3):
            bundle.generate(img, src, tgt)
    bundle.nets.eval()
    return bundle


def inputs(n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (n, 3, *SIZE), generator=g).float() / 127.5 - 1  # exactly a uint8 image
    kps = torch.stack(
        [torch.randint(0, SIZE[0], (n, 18), generator=g), torch.randint(0, SIZE[1], (n, 18), generator=g)], -1
    )
    kps[:, 16:] = -1
    return img, kps, kps.roll(1, 0)


@pytest.fixture(scope="module")
def bundle():
    return realistic_bundle()


def plain_forward(bundle, img, src, tgt):
    """The reference: contiguous fp32 eval-mode forward of the whole batch, no fast path."""
    fresh = build("patn", "synth", seed=None)
    fresh.nets.load_state_dict(bundle.nets.state_dict())
    fresh.nets.eval()
    with torch.no_grad():
        return fresh.generate(img, src, tgt)


def test_fp32_fast_path_agrees_with_plain_forward(bundle):
    img, src, tgt = inputs()
    ref = plain_forward(bundle, img, src, tgt)
    assert ref.std() > 0.1 and ref.abs().max() > 0.5  # the outputs use the range (test not vacuous)
    fast = transfer(bundle, img, src, tgt, batch_size=3, channels_last=True)
    assert fast.dtype == torch.float32 and fast.shape == ref.shape and fast.is_contiguous()
    err = (fast - ref).abs().max().item()
    assert err <= 1e-5, err
    # uint8 in, uint8 out: at most one grey level from the reference (rounding at a boundary)
    src_u8 = model_to_uint8(img).numpy()
    out = transfer(bundle, src_u8, src.numpy(), tgt.numpy(), batch_size=4)
    assert out.dtype == np.uint8 and out.shape == (N, *SIZE, 3)
    diff = np.abs(out.astype(int) - model_to_uint8(ref).numpy().astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01


@pytest.mark.skipif(not cpu_supports_bf16() and not torch.cuda.is_available(), reason="no native bf16 here")
def test_bf16_within_grey_level_tolerance(bundle):
    img, src, tgt = inputs()
    ref = model_to_uint8(plain_forward(bundle, img, src, tgt)).numpy().astype(int)
    out = transfer(bundle, model_to_uint8(img).numpy(), src, tgt, dtype="bf16")
    diff = np.abs(out.astype(int) - ref)
    # measured here: mean 0.48 / max 3 grey levels (synth and market presets, 128x64); stated: mean <= 1, max <= 6
    assert diff.mean() <= 1.0 and diff.max() <= 6, (diff.mean(), diff.max())
    assert diff.max() > 0  # bf16 really ran (it is not bit-identical to fp32)


def test_batch_size_does_not_change_results(bundle):
    img, src, tgt = inputs()
    u8 = model_to_uint8(img).numpy()
    a = transfer(bundle, u8, src, tgt, batch_size=1)
    b = transfer(bundle, u8, src, tgt, batch_size=32)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_transferer_from_checkpoint_path(bundle, tmp_path):
    path = save(tmp_path / "m.pt", bundle)
    img, src, tgt = inputs()
    u8 = model_to_uint8(img).numpy()
    held = Transferer(path, device="cpu")
    assert not held.bundle.nets.training
    first = held(u8, src.numpy(), tgt.numpy())
    assert np.array_equal(first, held(u8, src.numpy(), tgt.numpy()))  # deterministic in eval mode
    assert np.array_equal(first, transfer(path, u8, src, tgt, device="cpu"))
    assert np.array_equal(first, transfer(bundle, u8, src, tgt))
    # the generator's weights stay untouched by inference
    assert all(torch.equal(v, bundle.nets.state_dict()[k]) for k, v in held.bundle.nets.state_dict().items())


def test_empty_and_bad_inputs(bundle):
    img, src, tgt = inputs(2)
    empty = transfer(bundle, np.zeros((0, *SIZE, 3), np.uint8), np.zeros((0, 18, 2), int), np.zeros((0, 18, 2), int))
    assert empty.shape == (0, *SIZE, 3) and empty.dtype == np.uint8
    with pytest.raises(ValueError, match=r"uint8 \(N,H,W,3\)"):
        transfer(bundle, np.zeros((2, *SIZE, 3), np.float32), src, tgt)
    with pytest.raises(ValueError, match=r"float \(N,3,H,W\)"):
        transfer(bundle, img.permute(0, 2, 3, 1), src, tgt)
    with pytest.raises(ValueError, match=r"target_keypoints must be \(2, 18, 2\)"):
        transfer(bundle, img, src, tgt[:1])
    with pytest.raises(ValueError, match="fp16 autocast is for CUDA"):
        transfer(bundle, img, src, tgt, dtype="fp16", device="cpu")
    with pytest.raises(ValueError, match="dtype 'int8'"):
        transfer(bundle, img, src, tgt, dtype="int8")
