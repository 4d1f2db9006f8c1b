"""Finding and reading the metric networks' weight files; never downloads anything.

Every metric network (Inception, LPIPS, OpenPose) loads its weights through :func:`find_weights`:
an explicit path when one is given, else the first candidate that exists in the standard torch cache
(``$TORCH_HOME/hub/checkpoints/``, i.e. ``torch.hub.get_dir()/checkpoints``). When none exists it raises
:class:`MetricWeightsError`, the one error type of this package for absent weights: its message names the
exact file(s), who publishes them and the flags that give a path or skip the metric, so a caller can
report the metric as "not computed" with that sentence and go on with the others.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class WeightsSpec:
    """Where one network's weights come from.

    metric: the metric(s) that need them (``"FID/IS"``); files: accepted cache file names, preferred
    first; source: who publishes them (a URL or project); path_flag / skip_flag: the command-line flags
    that give a path or leave the metric out.
    """

    metric: str
    files: tuple[str, ...]
    source: str
    path_flag: str
    skip_flag: str


class MetricWeightsError(FileNotFoundError):
    """A metric network's weights are not on this machine (nothing is downloaded)."""

    def __init__(self, spec: WeightsSpec, tried: Sequence[Path]):
        self.spec = spec
        self.tried = tuple(Path(p) for p in tried)
        where = " or ".join(str(p) for p in self.tried)
        super().__init__(
            f"{spec.metric}: weights not found ({where}). They are published by {spec.source}; this project "
            f"never downloads them. Put {spec.files[0]} in the torch cache, give {spec.path_flag}, "
            f"or leave the metric out with {spec.skip_flag}."
        )


def torch_cache_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torchvision's and torch.hub's download folder)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(spec: WeightsSpec, path: str | os.PathLike | None = None) -> Path:
    """The weight file to read: ``path`` if given (must exist), else the first of ``spec.files`` in
    :func:`torch_cache_dir`. Raises :class:`MetricWeightsError` naming every file tried."""
    if path is not None:
        candidates = [Path(path)]
    else:
        candidates = [torch_cache_dir() / name for name in spec.files]
    for file in candidates:
        if file.is_file():
            return file
    raise MetricWeightsError(spec, candidates)


def read_state_dict(file: Path, what: str) -> dict[str, torch.Tensor]:
    """A torch state dict from ``file`` (tensors only, ``weights_only``); ValueError naming the file
    when it is unreadable or not a mapping of tensors."""
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / truncated / not a torch file
        raise ValueError(f"cannot read {what} weights from {file}: {exc}") from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{file} is not a {what} state dict (got {type(state).__name__})")
    return dict(state)


def load_exact(net: nn.Module, state: Mapping[str, torch.Tensor], file: Path, what: str) -> nn.Module:
    """Load ``state`` into ``net``: every parameter and buffer must be present with its shape (BatchNorm's
    ``num_batches_tracked`` counters may be absent: inference never reads them); extra keys are an error
    too, so a file of another network fails loudly. Returns ``net`` frozen in eval mode."""
    wanted = net.state_dict()
    missing = [k for k in wanted if k not in state and not k.endswith("num_batches_tracked")]
    extra = [k for k in state if k not in wanted]
    if missing or extra:
        raise ValueError(
            f"{file} does not hold {what} weights: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(wanted[key].shape):
            raise ValueError(f"{file}: {key} has shape {tuple(value.shape)}, {what} needs {tuple(wanted[key].shape)}")
    full = dict(wanted)
    full.update(state)
    net.load_state_dict(full)
    return freeze(net)


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode, no gradients."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
