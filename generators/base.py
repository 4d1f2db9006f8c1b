"""The interface every pose-transfer method follows, the method registry and `build`.

A method (``patn``, ``resnet``, ``pg2``, ``deform``, ``spgnet``) is a :class:`Method`
subclass registered with :func:`register_method`. It owns a ``Config`` dataclass (network
settings, loss weights and a ``train: TrainSchedule``), named presets (at least ``market``, the
faithful official recipe, and ``synth``, sized for a 2-core CPU), its networks, its inference
forward (:meth:`Method.generate`) and one training iteration (:meth:`Method.train_step`).

Everything a training step needs besides networks and optimizers travels in a
:class:`StepContext` (device, mixed-precision settings, GradScaler, the iteration counter, loss
modules such as the frozen VGG, image pools); its :meth:`StepContext.state_dict` holds all of
that which must be checkpointed. Global RNG states (torch, CUDA, numpy, python) and the data
sampler are the checkpoint writer's business, not the context's.

What every method's forward shares lives here too, so each method file holds only its own
recipe: :func:`inference_batch` (the prologue of ``generate``: inputs to the model's device, size
check), :meth:`StepContext.batch` (the prologue of ``train_step``: images to the device and
layout, keypoints too), :meth:`StepContext.layout` / :func:`like_source` (pose encodings in the
images' memory layout), :meth:`StepContext.autocast` and :meth:`StepContext.backward_step`, and
:meth:`StepContext.finish` (the tail: GradScaler update, loss terms as floats).

Also here: the iteration-based learning-rate rule shared by all methods (constant, then linear
to 0), config overrides (``"train.iterations=500"``), config (de)serialisation for
self-describing checkpoints, and the :func:`count_parameters` / :func:`count_flops` helpers used
for the preset tables.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import importlib.util
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from augment.runtime import UsageError  # noqa: F401  (re-exported: generators' flag errors)

# ----------------------------------------------------------------------------------------------
# Training schedule and learning rate
# ----------------------------------------------------------------------------------------------


@dataclass
class TrainSchedule:
    """How long and how a method trains. All counts are in iterations (optimizer steps).

    ``decay_start``: iteration from which the learning rate decays linearly to 0, reached at
    ``iterations`` (official "niter then niter_decay" epochs converted to iterations).
    """

    iterations: int = 1000
    batch_size: int = 8
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    decay_start: int = 500
    checkpoint_every: int = 500
    sample_every: int = 250
    num_workers: int = 2

    def __post_init__(self):
        if self.iterations <= 0 or self.batch_size <= 0:
            raise ValueError(
                f"TrainSchedule: iterations and batch_size must be positive, got "
                f"iterations={self.iterations}, batch_size={self.batch_size}"
            )
        if not 0 <= self.decay_start <= self.iterations:
            raise ValueError(
                f"TrainSchedule: decay_start={self.decay_start} must lie in [0, iterations={self.iterations}]"
            )


def lr_factor(iteration: int, decay_start: int, iterations: int) -> float:
    """Learning-rate multiplier at ``iteration`` (completed steps): 1 until ``decay_start``,
    then linear to 0 at ``iterations`` (and 0 beyond)."""
    if iteration < decay_start:
        return 1.0
    span = iterations - decay_start
    if span <= 0:
        return 0.0
    return max(0.0, 1.0 - (iteration - decay_start) / span)


def lr_lambda(schedule: TrainSchedule) -> Callable[[int], float]:
    """The ``LambdaLR`` rule for ``schedule`` (the scheduler is stepped once per iteration)."""
    start, total = schedule.decay_start, schedule.iterations
    return lambda it: lr_factor(it, start, total)


# ----------------------------------------------------------------------------------------------
# Inputs: the prologue every generate and train_step shares
# ----------------------------------------------------------------------------------------------


@dataclass
class PoseBatch:
    """A batch on the model's device, what every method's forward starts from.

    src_img: (B,3,H,W) float in [-1,1]; tgt_img: the same for the target, None at inference.
    src_kps, tgt_kps: (B,18,2) (y,x) pixel keypoints, -1 missing, in the dtype given.
    """

    src_img: torch.Tensor
    src_kps: torch.Tensor
    tgt_kps: torch.Tensor
    tgt_img: torch.Tensor | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the images: the size the pose encodings are drawn at."""
        return int(self.src_img.shape[-2]), int(self.src_img.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.src_img.device


def inference_batch(
    net: nn.Module, src_img: torch.Tensor, src_kps, tgt_kps, check: Callable[[torch.Tensor], None]
) -> PoseBatch:
    """Prologue of :meth:`Method.generate`: the source image and keypoints moved to ``net``'s
    device, the image size validated by ``check`` (raises ValueError)."""
    device = next(net.parameters()).device
    src_img = src_img.to(device)
    check(src_img)
    return PoseBatch(src_img, torch.as_tensor(src_kps).to(device), torch.as_tensor(tgt_kps).to(device))


def like_source(x: torch.Tensor, src_img: torch.Tensor) -> torch.Tensor:
    """``x`` (B,C,H,W) in channels-last memory when the source image is (a pose encoding built
    next to a channels-last input)."""
    if src_img.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous(memory_format=torch.channels_last)
    return x


# ----------------------------------------------------------------------------------------------
# Step context
# ----------------------------------------------------------------------------------------------


@dataclass
class StepContext:
    """What a training step needs besides networks and optimizers.

    device:    where the step runs (inputs are moved there, pose encodings built there).
    amp_dtype: autocast dtype (``torch.bfloat16`` / ``torch.float16``) or None for fp32.
    scaler:    a ``torch.amp.GradScaler`` when training in fp16, else None.
    iteration: completed iterations; the training loop owns and advances it.
    losses:    loss modules (e.g. ``{"perceptual": PerceptualL1}``), frozen, on ``device``.
    pools:     image history pools by name (e.g. ``{"D_PP": ImagePool, "D_PB": ImagePool}``).
    channels_last: convert image-like inputs to channels-last (CUDA speed).
    config:    the method's Config (loss weights the step reads).
    before_optimizer_step: called as ``f(optimizer)`` by :meth:`backward_step` between the
               backward pass and the optimizer step (None: nothing); the point where a
               multi-worker run averages the gradients the optimizer is about to apply.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp_dtype: torch.dtype | None = None
    scaler: Any = None
    iteration: int = 0
    losses: dict[str, nn.Module] = field(default_factory=dict)
    pools: dict[str, Any] = field(default_factory=dict)
    channels_last: bool = False
    config: Any = None
    before_optimizer_step: Callable[[torch.optim.Optimizer], None] | None = None

    def autocast(self):
        """Autocast region for the forwards (a no-op context in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """Move an input batch tensor to the step's device (and layout)."""
        return self.layout(x.to(self.device, non_blocking=True))

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """A 4-d tensor in the step's memory layout (channels-last when the step uses it)."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def batch(self, batch: Mapping[str, Any], check: Callable[[torch.Tensor], None]) -> PoseBatch:
        """Prologue of :meth:`Method.train_step`: source and target images moved to the device
        (and layout), the size validated by ``check`` (raises ValueError), keypoints moved too."""
        src, tgt = self.to_device(batch["src_img"]), self.to_device(batch["tgt_img"])
        check(src)
        src_kps = torch.as_tensor(batch["src_kps"]).to(self.device)
        return PoseBatch(src, src_kps, torch.as_tensor(batch["tgt_kps"]).to(self.device), tgt)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward ``loss`` and step ``optimizer`` (through the GradScaler when there is one).
        End the iteration with :meth:`finish` after its last optimizer step."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if self.before_optimizer_step is not None:
                self.before_optimizer_step(optimizer)  # on the scaled gradients, before the inf check
            self.scaler.step(optimizer)
        else:
            loss.backward()
            if self.before_optimizer_step is not None:
                self.before_optimizer_step(optimizer)
            optimizer.step()

    def end_iteration(self) -> None:
        """Per-iteration bookkeeping after all optimizer steps (GradScaler update)."""
        if self.scaler is not None:
            self.scaler.update()

    def finish(self, terms: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Tail of :meth:`Method.train_step`: :meth:`end_iteration`, then the loss terms (scalar
        tensors) as Python floats, read with one device sync."""
        self.end_iteration()
        values = torch.stack([t.detach().float() for t in terms.values()]).tolist()
        return dict(zip(terms, values))

    def state_dict(self) -> dict:
        return {
            "iteration": self.iteration,
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "pools": {name: pool.state_dict() for name, pool in self.pools.items()},
        }

    def load_state_dict(self, state: Mapping) -> None:
        self.iteration = int(state["iteration"])
        if state.get("scaler") is not None:
            if self.scaler is None:
                raise ValueError(
                    "checkpoint has GradScaler state but this run trains without fp16 "
                    "scaling; resume with the same --amp setting"
                )
            self.scaler.load_state_dict(state["scaler"])
        pools = state.get("pools", {})
        if set(self.pools) != set(pools):
            raise ValueError(f"image pools differ between checkpoint {sorted(pools)} and run {sorted(self.pools)}")
        for name, pool_state in pools.items():
            self.pools[name].load_state_dict(pool_state)


def make_grad_scaler(device: torch.device, amp_dtype: torch.dtype | None):
    """A GradScaler for fp16 autocast on CUDA; None otherwise (bf16 and fp32 need none)."""
    if amp_dtype == torch.float16 and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


# ----------------------------------------------------------------------------------------------
# Method base class and registry
# ----------------------------------------------------------------------------------------------


class Method:
    """Base class of a pose-transfer method. Subclasses set ``name``, ``Config``, ``presets``.

    Shapes: images (B,3,H,W) float in [-1,1]; keypoints (B,18,2) int (y,x), -1 where missing.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    presets: ClassVar[dict[str, Any]] = {}
    trainable: ClassVar[bool] = True  # False: nothing to train (the ``copy`` control); a checkpoint is its config
    # config fields counted in iterations (e.g. PG2's stage switch): ``--iterations N`` scales them by the same
    # fraction as the schedule's decay point, unless set explicitly
    schedule_fields: ClassVar[tuple[str, ...]] = ()

    # -- networks and inference ----------------------------------------------------------------
    def build_networks(self, cfg) -> dict[str, nn.Module]:
        raise NotImplementedError

    def generate(
        self, nets: Mapping[str, nn.Module], src_img: torch.Tensor, src_kps: torch.Tensor, tgt_kps: torch.Tensor
    ) -> torch.Tensor:
        """Inference forward: (B,3,H,W) in [-1,1]. Callers put ``nets`` in eval mode.
        Implementations start from :func:`inference_batch`."""
        raise NotImplementedError

    # -- training ------------------------------------------------------------------------------
    def make_optimizers(self, nets: Mapping[str, nn.Module], cfg) -> dict[str, torch.optim.Optimizer]:
        """Adam(lr, betas) per network (every method of this project trains with Adam)."""
        t = cfg.train
        return {name: torch.optim.Adam(net.parameters(), lr=t.lr, betas=tuple(t.betas)) for name, net in nets.items()}

    def make_schedulers(self, opts: Mapping[str, torch.optim.Optimizer], cfg) -> dict:
        """The shared iteration-based rule (constant, then linear to 0) on every optimizer."""
        return {name: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.train)) for name, opt in opts.items()}

    def make_context(
        self,
        nets: Mapping[str, nn.Module],
        cfg,
        *,
        device: torch.device | str = "cpu",
        amp_dtype: torch.dtype | None = None,
        seed: int = 0,
        vgg_weights: str | None = None,
    ) -> StepContext:
        """The step context for training ``nets``. Methods add their loss modules and pools.
        Loads required weights here, so a missing file stops the run before training starts."""
        device = torch.device(device)
        return StepContext(device=device, amp_dtype=amp_dtype, scaler=make_grad_scaler(device, amp_dtype), config=cfg)

    def train_step(self, nets, opts, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, float]:
        """One iteration on a collated ``batch`` (generators.data): every optimizer step of the
        method's recipe; returns the loss terms as floats. Implementations start from
        :meth:`StepContext.batch` and end with :meth:`StepContext.finish`."""
        raise NotImplementedError

    def required_weights(self, cfg) -> list[str]:
        """Pretrained weights the training recipe needs (e.g. ``["vgg19"]``)."""
        return []

    # -- configs -------------------------------------------------------------------------------
    def preset(self, preset: str):
        """A deep copy of a named preset config."""
        if preset not in self.presets:
            raise ValueError(
                f"method {self.name!r} has no preset {preset!r}; known presets: {', '.join(sorted(self.presets))}"
            )
        return copy.deepcopy(self.presets[preset])

    def config_from_dict(self, data: Mapping[str, Any]):
        """Rebuild a ``Config`` from ``dataclasses.asdict`` output (checkpoints)."""
        return dataclass_from_dict(self.Config, data)


METHODS: dict[str, Method] = {}

# Modules that register built-in methods when imported (imported on first registry use).
_BUILTIN_METHOD_MODULES = (
    "generators.patn",
    "generators.pg2",
    "generators.deform",
    "generators.spgnet",
    "generators.copy",
)


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: instantiate ``cls`` and register it under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in METHODS and type(METHODS[cls.name]) is not cls:
        raise ValueError(
            f"method name {cls.name!r} registered twice ({type(METHODS[cls.name]).__name__} and {cls.__name__})"
        )
    for required in ("market", "synth"):
        if required not in cls.presets:
            raise ValueError(f"method {cls.name!r} lacks the {required!r} preset")
    METHODS[cls.name] = cls()
    return cls


def load_builtin_methods() -> None:
    """Import the modules of the built-in methods that exist (they register themselves)."""
    for module in _BUILTIN_METHOD_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def network_methods() -> list[str]:
    """Sorted names of the registered methods that have networks to train (every method but controls
    such as ``copy``): what "all" means to benchmarks, precision checks and capacity estimates."""
    load_builtin_methods()
    return sorted(name for name, impl in METHODS.items() if impl.trainable)


def get_method(name: str) -> Method:
    """The registered method ``name``; an unknown name raises ValueError listing the known ones."""
    load_builtin_methods()
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS)) or '(none)'}") from None


@dataclass
class Bundle:
    """A built (or loaded) method: its networks and the config they were built from."""

    method: str
    preset: str
    config: Any
    nets: nn.ModuleDict
    impl: Method

    def generate(self, src_img, src_kps, tgt_kps) -> torch.Tensor:
        return self.impl.generate(self.nets, src_img, src_kps, tgt_kps)


def build(
    method: str, preset: str = "market", *, seed: int | None = 0, device: torch.device | str | None = None, **overrides
) -> Bundle:
    """Build ``method`` from a copy of ``preset`` with ``overrides`` applied.

    Overrides are config fields (``ngf=32``) or dotted paths given as a mapping
    (``**{"train.iterations": 100}``); string values are converted to the field's type.
    Network initialisation draws from ``torch.manual_seed(seed)`` inside a forked RNG, so the
    global RNG state is untouched and the same seed gives the same weights.
    """
    impl = get_method(method)
    cfg = apply_overrides(impl.preset(preset), overrides)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        nets = nn.ModuleDict(impl.build_networks(cfg))
    if device is not None:
        nets.to(device)
    return Bundle(method=method, preset=preset, config=cfg, nets=nets, impl=impl)


# ----------------------------------------------------------------------------------------------
# Config overrides and (de)serialisation
# ----------------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(value: Any, current: Any, path: str) -> Any:
    """Convert ``value`` (often a CLI string) to the type of the field's ``current`` value."""
    if isinstance(current, bool):
        if isinstance(value, str):
            low = value.strip().lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError(f"override {path}={value!r}: expected a boolean (true/false)")
        return bool(value)
    if isinstance(current, tuple):
        items = value.split(",") if isinstance(value, str) else list(value)
        proto = current[0] if current else ""
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, proto, path) for v in items)
    try:
        if isinstance(current, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) else int(value)
        if isinstance(current, float):
            return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"override {path}={value!r}: expected {type(current).__name__}") from None
    return value


def parse_override(text: str) -> tuple[str, str]:
    """``"train.iterations=500"`` -> ``("train.iterations", "500")``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} is not of the form field=value (e.g. train.iterations=500)")
    return key.strip(), value.strip()


def apply_overrides(cfg, overrides: Mapping[str, Any]):
    """A copy of dataclass ``cfg`` with ``overrides`` (dotted keys reach nested dataclasses)."""
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(cfg)}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise ValueError(
                f"unknown config field {key!r} for {type(cfg).__name__}; fields: {', '.join(sorted(names))}"
            )
        current = getattr(cfg, head)
        if rest:
            if not dataclasses.is_dataclass(current):
                raise ValueError(f"config field {head!r} has no sub-fields (override {key!r})")
            nested.setdefault(head, {})[rest] = value
        elif dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            nested.setdefault(head, {}).update(value)
        elif dataclasses.is_dataclass(current) and dataclasses.is_dataclass(value):
            flat[head] = copy.deepcopy(value)
        else:
            flat[head] = _coerce(value, current, key)
    for head, sub in nested.items():
        flat[head] = apply_overrides(getattr(cfg, head), sub)
    return dataclasses.replace(cfg, **flat)


def dataclass_from_dict(cls: type, data: Mapping[str, Any]):
    """Rebuild dataclass ``cls`` from ``asdict`` output: nested dataclasses and tuples restored,
    unknown keys rejected (a checkpoint from a different code version says so clearly)."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints.get(name)
        origin = typing.get_origin(hint)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = dataclass_from_dict(hint, value)
        elif (origin is tuple or hint is tuple) and isinstance(value, (list, tuple)):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------------
# Size and cost
# ----------------------------------------------------------------------------------------------


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@dataclass
class FlopCount:
    """Multiply-accumulates of the conv / transposed-conv / linear layers of one forward.

    ``macs`` is for the whole batch; FLOPs = 2 x MACs. Normalisation, activations, padding,
    additions and the sigmoid gates are not counted (they are <1% of PATN's cost).
    """

    macs: int
    batch: int
    per_layer: dict[str, int]

    @property
    def gflops_per_sample(self) -> float:
        return 2 * self.macs / self.batch / 1e9


def count_flops(model: nn.Module, inputs: tuple | torch.Tensor) -> FlopCount:
    """Count MACs of ``model(*inputs)`` with forward hooks (eval mode, no grad, mode restored).

    Conv2d: output elements x (C_in / groups) x kH x kW.
    ConvTranspose2d: input elements x (C_out / groups) x kH x kW.
    Linear: output elements x in_features.
    """
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    per_layer: dict[str, int] = {}

    def hook(name):
        def record(module, args, output):
            if isinstance(module, nn.ConvTranspose2d):
                kh, kw = module.kernel_size
                macs = args[0].numel() * (module.out_channels // module.groups) * kh * kw
            elif isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                macs = output.numel() * (module.in_channels // module.groups) * kh * kw
            else:  # nn.Linear
                macs = output.numel() * module.in_features
            per_layer[name] = per_layer.get(name, 0) + macs

        return record

    handles = [
        m.register_forward_hook(hook(n))
        for n, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return FlopCount(macs=sum(per_layer.values()), batch=int(inputs[0].shape[0]), per_layer=per_layer)
