"""The runtime layer: one place for devices, mixed precision, seeding and RNG state.

Every package (generators, the service, cluster, re-ID) resolves ``--device``, probes bf16 and
seeds through these functions, so the rules are the same everywhere:

- ``--device auto`` is CUDA when torch sees a CUDA device, else CPU; ``cuda`` without one is a
  :class:`UsageError` naming the flag.
- bf16 autocast is "native" on a CUDA GPU that supports it and on CPUs with AMX tiles or
  AVX512-BF16; elsewhere ``auto`` means fp32. fp16 is CUDA only.
- :func:`tune_malloc` keeps glibc from handing freed tensor memory back to the kernel after every
  op (CPU generation and training allocate and free the same large blocks thousands of times).
- :func:`seed_everything` seeds torch (CPU and every CUDA device), numpy's global generator and
  python's ``random``; :func:`rng_state` / :func:`set_rng_state` capture and restore all four
  as plain types (tensors, ints, lists), so a checkpoint holding them loads with
  ``weights_only=True``.

It sits just above the data layer and imports nothing else of the project.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")
AMP_CHOICES = ("auto", "off", "bf16", "fp16")
AMP_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
PRECISION_DTYPES = {None: None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class UsageError(ValueError):
    """A bad command-line value; the message names the flag (``--flag: what is wrong``)."""

    def __init__(self, flag: str, message: str):
        self.flag = flag
        super().__init__(f"{flag}: {message}")


# ----------------------------------------------------------------------------------------------
# memory allocator

MALLOC_ENV = "POSE_AUG_MALLOC"  # "default": leave glibc's allocator as it is
# mallopt parameters (glibc's malloc.h) and the values set: blocks up to 32 MiB (the largest threshold glibc
# accepts) come from the heap instead of their own mmap, and up to 1 GiB of free heap is kept, not trimmed
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MALLOC_SETTINGS = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 1 << 30, _M_TOP_PAD: 64 << 20}
_malloc_tuned: bool | None = None


def tune_malloc() -> bool:
    """Keep freed memory in the process (glibc ``mallopt``): True when set (now or before), False where the C
    library has no ``mallopt`` (not glibc) or ``POSE_AUG_MALLOC=default`` asks to leave it.

    Why: with glibc's defaults, a tensor of a few MiB freed by one op is returned to the kernel and the next op's
    tensor of the same size faults its pages in again, zero-filled: measured on the Deformable GAN's CPU
    generation, half the process's time was kernel time, and generation ran 2-3x slower. The cost is a resident
    size that stays at its peak. Results do not change (where memory comes from is not arithmetic).
    """
    global _malloc_tuned
    if _malloc_tuned is None:
        _malloc_tuned = False
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name) if name and os.environ.get(MALLOC_ENV, "") != "default" else None
        if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version"):
            _malloc_tuned = all(libc.mallopt(param, value) == 1 for param, value in MALLOC_SETTINGS.items())
    return _malloc_tuned


# ----------------------------------------------------------------------------------------------
# devices and precision


def resolve_device(choice: str | torch.device | None = "auto", flag: str = "--device") -> torch.device:
    """``auto``/None -> CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as given.

    Raises :class:`UsageError` (naming ``flag``) for CUDA without a CUDA device or an unknown name.
    """
    if isinstance(choice, torch.device):
        choice = str(choice)
    if choice in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except RuntimeError:
        raise UsageError(flag, f"{choice!r} is not one of {', '.join(DEVICE_CHOICES)}") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(flag, f"{choice!r} is not one of {', '.join(DEVICE_CHOICES)}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(flag, f"{choice} asked for but torch sees no CUDA device (use --device cpu or auto)")
    return device


def cpu_supports_bf16() -> bool:
    """Native bf16 arithmetic on this CPU (AVX512-BF16 or AMX tiles)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if "AMX" in capability or "BF16" in capability:
        return True
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def bf16_is_native(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (so bf16 autocast is a speed-up, not an emulation)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_supports_bf16()


def resolve_amp(choice: str, device: torch.device, flag: str = "--amp") -> torch.dtype | None:
    """The autocast dtype for a training ``--amp`` choice on ``device`` (None = fp32).

    ``auto``: bf16 where native, else fp16 on CUDA and fp32 on CPU; ``off``: fp32;
    ``bf16``/``fp16``: as asked, or a :class:`UsageError` where the device cannot.
    """
    if choice not in AMP_CHOICES:
        raise UsageError(flag, f"{choice!r} is not one of {', '.join(AMP_CHOICES)}")
    if choice == "off":
        return None
    if device.type == "cuda":
        if choice == "fp16":
            return torch.float16
        if choice == "bf16" and not torch.cuda.is_bf16_supported():
            raise UsageError(flag, "bf16 asked for but this GPU does not support it (use fp16 or off)")
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if choice == "fp16":
        raise UsageError(flag, "fp16 mixed precision is for CUDA; on CPU use bf16 or off")
    if choice == "bf16":
        if not cpu_supports_bf16():
            raise UsageError(
                flag,
                f"bf16 asked for but this CPU ({torch.backends.cpu.get_cpu_capability()}) "
                "has no native bf16 (AVX512-BF16/AMX); use --amp off",
            )
        return torch.bfloat16
    return torch.bfloat16 if cpu_supports_bf16() else None


def amp_name(dtype: torch.dtype | None) -> str:
    """``fp32`` / ``bf16`` / ``fp16`` for an autocast dtype (None = fp32)."""
    return AMP_NAMES[dtype]


@contextlib.contextmanager
def deterministic_kernels(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for the block's duration (restored afterwards)."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


# ----------------------------------------------------------------------------------------------
# seeding and RNG state (plain types only: checkpoints load with weights_only=True)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and every CUDA device), numpy's global generator and python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state(device: torch.device | None = None) -> dict:
    """The torch, CUDA (when ``device`` is CUDA, or None and CUDA is present), numpy and python RNG states."""
    np_state = np.random.get_state(legacy=False)
    py_version, py_state, py_gauss = random.getstate()
    with_cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if with_cuda else [],
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only where CUDA is in use)."""
    torch.set_rng_state(state["torch"])
    with_cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
    if with_cuda and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
