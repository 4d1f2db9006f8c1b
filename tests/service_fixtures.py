"""A generator whose outputs have real contrast, for the service's byte-identity, kill and Ray tests.

An untrained generator's output conv (N(0, 0.02) weights) gives a nearly flat grey image (values
124-133), where any two runs agree to the byte whatever they do. This one is the tiny PATN with
Kaiming-normal convs, BatchNorm statistics gathered in train mode on real images of the dataset, and
its output conv scaled up so that the Tanh uses its range: every output image spreads over more than
:data:`MIN_STD` grey levels (asserted when it is made).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from augment.data.imageio import read_rgb, sha256_file
from augment.data.keypoints import read_annotations
from augment.data.market import read_market

MIN_STD = 40.0  # grey levels, per output image
OUTPUT_GAIN = 6.0


def _kaiming(nets: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in nets.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight[:, 0].numel()
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)


def make_contrast_checkpoint(path: Path, data: Path) -> Path:
    """Save the contrast generator (module docstring) for ``data``'s images at ``path``; checks its contrast."""
    import generators.patn  # noqa: F401  (registers the method)
    from generators.base import build
    from generators.checkpoint import save
    from generators.inference import Transferer

    ds = read_market(data)
    ann = read_annotations(data / "market-annotation-train.csv", image_size=None)
    recs = [r for r in ds.train if r.name in ann][:16]
    imgs = np.stack([read_rgb(r.path) for r in recs])
    kps = np.stack([ann[r.name] for r in recs]).astype(np.int64)
    # the official decoder and no EMA copy: generate() must run the G whose weights are set here
    bundle = build("patn", "synth", ngf=8, n_blocks=1, ndf=8, upsample="convt", ema_decay=0.0, seed=0)
    _kaiming(bundle.nets, seed=1)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
    bundle.nets.train()
    with torch.no_grad():
        for _ in range(3):
            bundle.generate(x, torch.from_numpy(kps), torch.from_numpy(np.roll(kps, 1, 0)))
        last = [m for m in bundle.nets["G"].modules() if isinstance(m, nn.Conv2d)][-1]
        last.weight.mul_(OUTPUT_GAIN)
    bundle.nets.eval()
    out = Transferer(bundle, device="cpu")(imgs, kps, np.roll(kps, 1, 0))
    stds = out.reshape(len(out), -1).std(1)
    assert stds.min() > MIN_STD, f"the test generator's outputs are too flat: std {stds.min():.1f} grey levels"
    return save(path, bundle)


@pytest.fixture(scope="module")
def contrast_checkpoint(tiny_market, tmp_path_factory) -> Path:
    return make_contrast_checkpoint(tmp_path_factory.mktemp("ckpt") / "contrast.pt", tiny_market)


def train_hashes(out: Path) -> dict[str, str]:
    """name -> SHA-256 of every file of an output's training folder (temporary files left out)."""
    d = out / "bounding_box_train"
    return {p.name: sha256_file(p) for p in sorted(d.iterdir()) if not p.name.startswith(".")}
