"""The ``copy`` control generator: its output is its source image, through the same checkpoint and
inference path as every method."""

import numpy as np
import pytest

import generators
from augment.runtime import UsageError
from generators.base import get_method
from generators.checkpoint import load, save
from generators.inference import Transferer


def contrasted_images(n: int, seed: int = 0) -> np.ndarray:
    """Full-range random images: any rounding or colour change in the path would show."""
    return np.random.default_rng(seed).integers(0, 256, (n, 128, 64, 3), dtype=np.uint8)


def test_registered_untrainable_and_weightless():
    impl = get_method("copy")
    assert impl.trainable is False and get_method("patn").trainable is True
    bundle = generators.build("copy", "synth")
    assert len(list(bundle.nets.parameters())) == 0


@pytest.mark.parametrize("dtype", [None, "bf16"])
def test_output_equals_source_through_a_checkpoint(tmp_path, dtype):
    path = tmp_path / "copy.pt"
    save(path, generators.build("copy", "synth"), iteration=0)
    images = contrasted_images(6)
    kps = np.random.default_rng(1).integers(0, 64, (6, 18, 2))
    out = Transferer(path, device="cpu", dtype=dtype, batch_size=4)(images, kps, kps[::-1])
    assert out.dtype == np.uint8 and np.array_equal(out, images)
    assert load(path).method == "copy"


def test_nothing_to_train():
    impl = get_method("copy")
    bundle = generators.build("copy", "synth")
    with pytest.raises(UsageError, match="--method: copy has no networks"):
        impl.train_step(bundle.nets, {}, {}, None)
