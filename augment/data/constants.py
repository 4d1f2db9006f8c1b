"""Constants shared across layers (generators' VGG losses and re-ID's input transforms).

``IMAGENET_MEAN`` / ``IMAGENET_STD``: the per-channel RGB statistics of ImageNet on [0,1] pixels,
the input normalisation torchvision's pretrained backbones (VGG-19, ResNet-50, Inception) expect.
"""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
