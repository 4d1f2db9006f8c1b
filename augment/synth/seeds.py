"""Seed streams of the embedded dataset, in one place so they stay distinct.

Every random choice comes from ``numpy.random.default_rng([seed, stream, index, sub-index])``, so an
image depends only on the dataset seed and its own indices (not on rendering order or worker count).
"""

STREAM_CAMERA, STREAM_ARCHETYPE, STREAM_TRAIN, STREAM_TEST, STREAM_DISTRACTOR, STREAM_JUNK = 1, 2, 3, 4, 5, 6
