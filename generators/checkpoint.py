"""Self-describing generator checkpoints (format ``poseaug-generator/1``).

One ``torch.save`` dict holds everything needed to rebuild and resume a model from the file
alone::

    format, method, preset, config (dataclasses.asdict of the method's Config), iteration,
    dataset_fingerprint, code_version, nets (state dicts), optimizers, schedulers,
    ctx (pools, GradScaler, RNG states, data sampler position), run (the training run's
    settings and data files, informational), content_hash

Only plain types are stored (tensors, dicts, lists, tuples, str, int, float, bool, None), so
files load with ``torch.load(weights_only=True)``: loading a checkpoint never runs pickled code.
``content_hash`` is the SHA-256 of the weights (every tensor of ``nets``, in sorted key order,
with its dtype and shape), checked at load. Files are written atomically (a temporary file in
the same folder, fsync, rename), so a crash never leaves a half-written ``latest.pt``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import subprocess
import zipfile
from importlib import metadata
from pathlib import Path

import torch

from augment.data.atomic import atomic_path
from generators.base import Bundle, build, get_method

FORMAT = "poseaug-generator/1"
PACKAGE = "poseaug-reid"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file."""


# ---------------------------------------------------------------------------------------------
# code version, weight hash


_CODE_VERSION: str | None = None


def code_version() -> str:
    """Package version, plus ``+g<commit>`` (and ``.dirty``) when the package sits in a git checkout."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        try:
            version = metadata.version(PACKAGE)
        except metadata.PackageNotFoundError:
            version = "unknown"
        here = Path(__file__).resolve().parent
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
            )
            if commit.returncode == 0 and commit.stdout.strip():
                version += f"+g{commit.stdout.strip()}"
                dirty = subprocess.run(
                    ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                    cwd=here,
                    capture_output=True,
                    text=True,
                    timeout=5,
                )
                if dirty.returncode == 0 and dirty.stdout.strip():
                    version += ".dirty"
        except (OSError, subprocess.SubprocessError):
            pass  # no git, or not a checkout: the package version alone
        _CODE_VERSION = version
    return _CODE_VERSION


def weights_hash(nets_state: dict[str, dict[str, torch.Tensor]]) -> str:
    """SHA-256 over every tensor of ``{net: state_dict}``: names, dtypes, shapes and bytes, sorted by name."""
    h = hashlib.sha256()
    for net in sorted(nets_state):
        for key in sorted(nets_state[net]):
            t = nets_state[net][key].detach().to("cpu").contiguous()
            h.update(f"{net}.{key}:{t.dtype}:{tuple(t.shape)}\n".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# save


def save(
    path: str | os.PathLike,
    bundle: Bundle,
    *,
    iteration: int = 0,
    dataset_fingerprint: str | None = None,
    optimizers: dict | None = None,
    schedulers: dict | None = None,
    ctx: dict | None = None,
    run: dict | None = None,
) -> Path:
    """Write ``bundle`` (and, for training, optimizer/scheduler/context state) atomically to ``path``."""
    path = Path(path)
    nets = {
        name: {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
        for name, net in bundle.nets.items()
    }
    payload = {
        "format": FORMAT,
        "method": bundle.method,
        "preset": bundle.preset,
        "config": dataclasses.asdict(bundle.config),
        "iteration": int(iteration),
        "dataset_fingerprint": dataset_fingerprint,
        "code_version": code_version(),
        "nets": nets,
        "optimizers": {k: _to_cpu(o.state_dict()) for k, o in (optimizers or {}).items()},
        "schedulers": {k: s.state_dict() for k, s in (schedulers or {}).items()},
        "ctx": _to_cpu(ctx or {}),
        "run": run or {},
        "content_hash": weights_hash(nets),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().to("cpu")
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


# ---------------------------------------------------------------------------------------------
# load


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict, after format and hash checks (tensors on CPU)."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a checkpoint file" if path.is_dir() else "checkpoint file not found"
        raise CheckpointError(f"{path}: {what}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its directory sits at the end
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint (not a complete torch zip archive)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            raise CheckpointError(
                f"{path}: not a {FORMAT} checkpoint: it stores Python objects beyond tensors and plain types "
                "(a foreign or pickled-model file); refusing to run its code"
            ) from None
        raise CheckpointError(f"{path}: corrupt checkpoint (not a torch file: {_short(e)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, IndexError, KeyError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({_short(e)})") from None
    if not isinstance(data, dict) or "format" not in data:
        kind = f"a {type(data).__name__}" + (
            f" with keys {sorted(map(str, data))[:5]}" if isinstance(data, dict) else ""
        )
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint (no 'format' key; the file holds {kind})")
    if data["format"] != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {data['format']!r}, this code reads {FORMAT!r}")
    missing = [k for k in ("method", "preset", "config", "nets", "content_hash") if k not in data]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    actual = weights_hash(data["nets"])
    if actual != data["content_hash"]:
        raise CheckpointError(
            f"{path}: weights do not match the stored content hash (stored {data['content_hash'][:16]}..., "
            f"computed {actual[:16]}...): the file was altered or damaged"
        )
    return data


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def bundle_from_checkpoint(data: dict, path: str | os.PathLike = "<checkpoint>", device="cpu") -> Bundle:
    """Rebuild the Bundle a checkpoint dict describes and load its weights (``nets`` on ``device``)."""
    try:
        impl = get_method(data["method"])
    except ValueError as e:
        raise CheckpointError(f"{path}: {_short(e)}") from None
    try:
        config = impl.config_from_dict(data["config"])
        # Every field as an override of the stored preset: the file alone decides the networks.
        fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        bundle = build(data["method"], data["preset"], seed=None, **fields)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{path}: stored config does not fit method {data['method']!r} preset {data['preset']!r}: {_short(e)}"
        ) from None
    stored, built = set(data["nets"]), set(bundle.nets.keys())
    if stored != built:
        raise CheckpointError(f"{path}: networks {sorted(stored)} in the file, the config builds {sorted(built)}")
    for name, net in bundle.nets.items():
        try:
            net.load_state_dict(data["nets"][name], strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: weights of {name} do not match its stored config: {_short(e)}") from None
    bundle.nets.to(device)
    return bundle


def load(path: str | os.PathLike, device: str | torch.device = "cpu", for_training: bool = False) -> Bundle:
    """Rebuild the model a checkpoint describes, from the file alone.

    Returns a :class:`Bundle` with its nets on ``device``: in eval mode, or in train mode with
    ``for_training`` (the optimizer and context state for resuming come from
    :func:`read_checkpoint`). Raises :class:`CheckpointError` naming the file for a missing,
    truncated, corrupt, foreign, altered or mismatched file.
    """
    data = read_checkpoint(path)
    bundle = bundle_from_checkpoint(data, path, device)
    bundle.nets.train(for_training)
    return bundle
