"""Pose-transfer generators: one file per method behind one interface (see generators/base.py).

    from generators import build, load, transfer, METHODS, get_method
    bundle = build("patn", "synth")                 # networks from a preset (+ overrides)
    bundle = load("runs/patn/checkpoints/latest.pt")  # a trained, self-describing checkpoint
    images = transfer(bundle, src_images, src_kps, tgt_kps)

``load`` and ``transfer`` import their modules on first call, so importing the package stays light.
"""

from __future__ import annotations

from generators.base import METHODS, Bundle, Method, build, get_method, load_builtin_methods

load_builtin_methods()  # register patn, resnet (and the other methods present)


def load(path, device="cpu", for_training: bool = False) -> Bundle:
    """Rebuild a Bundle from a checkpoint file (see generators.checkpoint.load)."""
    from generators.checkpoint import load as _load

    return _load(path, device=device, for_training=for_training)


def transfer(model, source_images, source_keypoints, target_keypoints, **kwargs):
    """Generate images of the sources in the target poses (see generators.inference.transfer)."""
    from generators.inference import transfer as _transfer

    return _transfer(model, source_images, source_keypoints, target_keypoints, **kwargs)


__all__ = ["METHODS", "Bundle", "Method", "build", "get_method", "load", "transfer"]
