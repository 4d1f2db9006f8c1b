"""What re-ID training costs, from the models' FLOPs: the re-ID part of ``python -m cluster.capacity``.

The capacity report (``cluster.capacity``, one layer below) measures the generators and the
service; its ``main`` adds these re-ID figures (the cluster library itself never imports re-ID):

- :func:`reid_flops`: forward GFLOPs per image, input size, epochs and parameters of the re-ID
  models of a recipe (``openreid``: ResNet-50 256x128 50 epochs, Inception 144x56 70 epochs);
- :func:`training_estimate`: GPU hours per Table-5 cell and per sweep, from 3 x forward FLOPs per
  training image (forward + backward) times the recipe's epochs. Data loading is not counted, so
  these are lower bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

SECONDS_PER_HOUR = 3600.0
FWD_BWD_FLOPS = 3  # a training step costs about 3 forward passes (forward + backward)


def reid_flops(models: Sequence[str], num_classes: int, recipe: str = "openreid") -> dict[str, dict]:
    """Forward GFLOPs per image, input size, epochs and parameters of the re-ID models of ``recipe``
    with a ``num_classes``-way classifier."""
    import torch

    from generators.base import count_flops
    from reid_eval.models import build_reid_model
    from reid_eval.openreid_resnet import register
    from reid_eval.recipes import get_recipe

    register()
    out = {}
    for name in models:
        m = get_recipe(recipe).models[name]
        model, info = build_reid_model(m.architecture, num_classes, pretrained=False, **m.model_kwargs)
        flops = count_flops(model, torch.zeros(1, 3, *m.input_size))
        out[name] = {
            "recipe": recipe,
            "architecture": m.architecture,
            "input_size": list(m.input_size),
            "epochs": m.epochs,
            "parameters": info.num_params,
            "forward_gflops_per_image": round(flops.gflops_per_sample, 3),
        }
    return out


def training_estimate(
    reid: dict[str, dict],
    cells: Sequence[int],
    set_sizes: dict[str, int],
    seconds: Callable[[float], float],
) -> dict[str, dict]:
    """GPU hours of re-ID training per model (ESTIMATED).

    ``reid``: :func:`reid_flops`'s figures (``forward_gflops_per_image``, ``epochs``); ``cells``: the
    training-set sizes (images) of the sweep's trainings; ``set_sizes``: label -> images of the one-cell
    figures (e.g. ``{"1x": 12936, ...}``); ``seconds(gflops)``: the GPU's time for that much work.
    """
    training = {}
    for name, r in reid.items():
        per_image = seconds(FWD_BWD_FLOPS * r["forward_gflops_per_image"]) * r["epochs"]  # all epochs
        training[name] = {
            "gpu_hours_per_cell_estimated": {
                label: round(n * per_image / SECONDS_PER_HOUR, 3) for label, n in set_sizes.items()
            },
            "sweep_cells": len(cells),
            "sweep_training_images": sum(cells),
            "sweep_gpu_hours_estimated": round(sum(cells) * per_image / SECONDS_PER_HOUR, 2),
        }
    return training
