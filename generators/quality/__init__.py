"""Image-quality metric networks of the pose-transfer papers, equal to their reference implementations.

One module per network or score (definitions, conventions and sources in ``docs/metrics.md``):

- :mod:`~generators.quality.inception` — Inception-v3 (the 2015 TF graph for FID/IS, torchvision's for GFLA's
  FID), pool3 features and unbiased logits, with each reference's resize/normalisation convention;
- :mod:`~generators.quality.scores` — FID (Frechet distance, scipy sqrtm) and IS (10 splits);
- :mod:`~generators.quality.lpips` — LPIPS v0.1, AlexNet / VGG-16;
- :mod:`~generators.quality.openpose` and :mod:`~generators.quality.pose_decode` — the CMU OpenPose COCO-18
  body network and PATN's multi-scale keypoint decoding;
- :mod:`~generators.quality.pckh` — PCKh with the official head-size rule;
- :mod:`~generators.quality.resize` — the references' resampling conventions as device matrices;
- :mod:`~generators.quality.weights` — weight files from the torch cache or a path, never downloaded;
  :class:`MetricWeightsError` names the missing file, its publisher and the flags;
- :mod:`~generators.quality.bench` — per-image CPU/GPU cost of each network and of whole protocols
  (``python -m generators.quality.bench [--protocol NAME]``).

The evaluation protocols built on them (``generators.evaluate --protocol``, docs/evaluation.md#protocols):

- :mod:`~generators.quality.protocols` — the registry: image path, SSIM definition, mask, metrics, real set;
- :mod:`~generators.quality.strips` — the official uint8 conversions, 5-panel strips, JPEG as PIL codes it, file names;
- :mod:`~generators.quality.suite` — the network metrics fed batch by batch, with NOT COMPUTED records;
- :mod:`~generators.quality.sources` and :mod:`~generators.quality.folder` — images from a checkpoint or a folder;
- :mod:`~generators.quality.report` — the result record, printed table and output files.
"""

from generators.quality.weights import MetricWeightsError, WeightsSpec

__all__ = ["MetricWeightsError", "WeightsSpec"]
