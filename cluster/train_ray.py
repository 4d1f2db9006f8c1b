"""Multi-worker generator training with Ray Train: the same loop as ``generators.train``, N processes.

    python -m generators.train --method patn --preset market --data /nfs/Market-1501 \\
        --vgg-weights /nfs/vgg19-dcbb9e9d.pth --out /nfs/runs/patn-market --workers 8

``--workers N`` (N > 1) makes ``generators.train.main`` call :func:`train_on_ray`, which runs
a ``TorchTrainer`` (``ScalingConfig(num_workers=N, use_gpu=<the cluster has GPUs>)``,
``RunConfig(storage_path=<out>/ray_train)``; Ray Train sets up the process group: gloo on CPU,
NCCL on GPU). Every worker runs ``generators.train.train`` itself (data checks, build, resume,
the method's ``train_step``, LR schedule, checkpoints): nothing of the loop is forked here. The
worker's :class:`RayTrainWorkers` (the ``parallel`` strategy argument of ``train``) changes four
things:

- Data: the sampler draws the GLOBAL batch (the schedule's ``batch_size``) exactly as one
  process would, and worker r trains on its slice ``[r*b, (r+1)*b)``, b = batch_size / N
  (:class:`ShardedBatches`): N workers see together exactly the samples one process sees in
  a step; the sampler position (checkpointed) advances by the global batch.
- Gradients: averaged over the workers before every optimizer step (:class:`GradientAverager`,
  installed as the step context's public ``before_optimizer_step`` hook), so each optimizer
  steps with the gradient of the mean loss over the global batch; the weights stay identical on
  all workers (broadcast from rank 0 at the start, as DDP does).
- Randomness: rank 0 keeps the run's seed (its RNG states are the ones checkpointed); other
  ranks reseed their global RNGs and image-pool generators from (seed, rank, start iteration),
  so their dropout masks and pool draws are their own.
- Writing: only rank 0 writes checkpoints (``generators.checkpoint.save``, the project's format:
  ``generators.load`` and ``augment.run`` read them unchanged), sample grids and
  ``train_log.jsonl`` (losses averaged over the workers, i.e. over the global batch).

Why not ``ray.train.torch.prepare_model`` (DDP): DDP synchronises gradients from hooks armed in
the wrapped module's ``forward``, one reduction per forward/backward of that module. A GAN step
here runs several backward passes over several networks with one optimizer each (G, then the
discriminators), calls other entry points of its networks (``D.logits``), reads attributes of
them (``G.pose_sigma``) and runs a discriminator frozen inside the generator's step; wrapped in
DDP those calls fail or skip the synchronisation. Instead every ``StepContext.backward_step``
(the one place a method steps an optimizer) calls ``before_optimizer_step(optimizer)`` between
backward and step, and the averager all-reduces exactly the gradients that optimizer is about to
apply with ``torch.distributed.all_reduce``: public API only, the same arithmetic as DDP (the
mean of the workers' gradients), for every method, unchanged.

BatchNorm: as with DDP, each worker normalises with the statistics of its own slice (b samples,
not the global batch), so a multi-worker run is NOT the same computation as one process with
BatchNorm in train mode (it is with instance norm or no norm: tests/test_train_ray.py compares
losses and weights). ``SyncBatchNorm`` would restore global statistics, but PyTorch implements it
for CUDA only; it is not used. Running statistics are per worker; rank 0's are checkpointed
(DDP's default ``broadcast_buffers`` also makes rank 0's the effective ones). Image pools are
per worker (each holds ``pool_size`` of its own fakes); rank 0's pools are checkpointed and a
resumed run starts every worker from them.

Fault tolerance: ``max_failures`` (Ray Train's ``FailureConfig``) restarts the worker group after
a worker dies; the new attempt resumes from ``<out>/checkpoints/latest.pt`` written by the failed
one. Stopping the driver (Ctrl-C) keeps the last periodic checkpoint; ``--resume`` continues it
(the worker count may change as long as it divides the batch).

Paths: ``--out``, ``--data`` (and ``--keypoints``, ``--vgg-weights``) are made absolute and must be
on storage every node sees (rank 0 writes ``--out``; every worker reads the data and, when
resuming, the checkpoint). Hooks (``train(..., hooks=...)``) are single-process only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from augment.runtime import UsageError
from generators.data import PairSampler
from generators.train import RunConfig, RunPaths, SingleProcess, TrainReport, resolve_run

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# the worker side: data shards, gradient averaging, per-rank randomness


class ShardedBatches(Sampler[list[int]]):
    """Worker ``rank``'s slice of each global batch of a :class:`PairSampler`.

    The wrapped sampler draws ``batch_size`` (global) indices per step exactly as in one process;
    this yields ``indices[rank*b:(rank+1)*b]``, b = batch_size / world_size. ``advance(n)`` is
    called by the loop with the n samples this worker used and moves the shared position by
    ``n * world_size``. ``state_dict`` / ``load_state_dict`` are the wrapped sampler's (the same
    on every worker), so checkpoints read the same as single-process ones.
    """

    def __init__(self, sampler: PairSampler, rank: int, world_size: int):
        if sampler.batch_size % world_size:
            raise UsageError(
                "--workers",
                f"{world_size} workers do not divide the batch of {sampler.batch_size} "
                "(each worker trains on batch / workers samples)",
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.sampler = sampler
        self.rank = rank
        self.world_size = world_size
        self.per_worker = sampler.batch_size // world_size
        self.seed = sampler.seed  # make_loader seeds its generator with it

    def __iter__(self) -> Iterator[list[int]]:
        lo = self.rank * self.per_worker
        for batch in self.sampler:
            yield batch[lo : lo + self.per_worker]

    def advance(self, samples: int) -> None:
        self.sampler.advance(samples * self.world_size)

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


class GradientAverager:
    """Average over the process group the gradients an optimizer is about to apply.

    Called as ``averager(optimizer)`` from ``StepContext.before_optimizer_step``, i.e. after the
    backward pass(es) of that optimizer's loss and before its step. It all-reduces (sum / world
    size) every gradient of the optimizer's parameters, flattened per dtype and device in
    parameter order: one ``torch.distributed.all_reduce`` per bucket, no autograd hooks. A
    parameter without a gradient (a network the loss does not reach, e.g. a frozen one) is left
    out; every worker runs the same step code, so every worker holds gradients for the same
    parameters and the collectives match. Under fp16 the (scaled) gradients are averaged before
    GradScaler unscales them, so an inf on one worker reaches all and every worker skips the same
    step.

    Why at the optimizer step and not per backward (DDP's reducer): the methods' steps run
    several backward passes over several networks, each optimizer stepping only its own; the
    optimizer step is the one point every method passes through, once per optimizer, with
    exactly the gradients that matter. Averaging is linear, so several backwards before one step
    average correctly too.
    """

    def __init__(self, world_size: int, group=None):
        self.world_size = world_size
        self.group = group
        self.syncs = 0  # all-reduce rounds done (tests, diagnostics)

    def __call__(self, optimizer: torch.optim.Optimizer) -> None:
        buckets: dict[tuple, list[torch.Tensor]] = defaultdict(list)
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    buckets[(p.grad.device, p.grad.dtype)].append(p.grad)
        for bucket in buckets.values():
            flat = torch.cat([g.reshape(-1) for g in bucket])
            dist.all_reduce(flat, group=self.group)
            flat.div_(self.world_size)
            offset = 0
            for g in bucket:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()
        self.syncs += 1


def rank_seed(seed: int, rank: int, iteration: int) -> int:
    """A seed for worker ``rank`` (> 0) of a run with ``seed``, started at ``iteration`` (63 bits)."""
    digest = hashlib.sha256(f"poseaug-train/{seed}/{rank}/{iteration}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class RayTrainWorkers(SingleProcess):
    """This worker's part in a multi-worker run (see the module docstring); needs an initialised
    ``torch.distributed`` process group (Ray Train's TorchTrainer sets it up)."""

    def __init__(self, rank: int, world_size: int):
        self.rank = rank
        self.world_size = world_size
        self.averager: GradientAverager | None = None

    def shard(self, sampler: PairSampler) -> ShardedBatches:
        return ShardedBatches(sampler, self.rank, self.world_size)

    def start(self, nets, ctx, *, seed: int, iteration: int) -> None:
        from augment.runtime import seed_everything

        with torch.no_grad():  # identical starting weights everywhere (DDP broadcasts at construction too)
            for t in [*nets.parameters(), *nets.buffers()]:
                dist.broadcast(t.data, src=0)
        self.averager = GradientAverager(self.world_size)
        ctx.before_optimizer_step = self.averager
        if self.rank > 0:
            own = rank_seed(seed, self.rank, iteration)
            seed_everything(own)
            for i, pool in enumerate(ctx.pools.values()):
                generator = getattr(pool, "generator", None)
                if isinstance(generator, torch.Generator):
                    generator.manual_seed(own + 1 + i)

    def reduce_losses(self, losses: dict[str, float]) -> dict[str, float]:
        """Mean over the workers: each worker's losses are means over its equal-size slice."""
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        values = torch.tensor(list(losses.values()), dtype=torch.float64, device=device)
        dist.all_reduce(values)
        return dict(zip(losses, (values / self.world_size).tolist()))


def progress_hook(iterations: int, every: int | None = None, write: Callable[[str], None] = print):
    """A train() hook printing one line every ``every`` iterations (a tqdm bar does not travel
    through Ray's log forwarding)."""
    every = every or max(1, iterations // 20)
    t0 = time.perf_counter()

    def hook(info) -> None:
        if info.iteration % every == 0 or info.iteration == iterations:
            losses = "  ".join(f"{k} {v:.4f}" for k, v in info.losses.items())
            write(f"[train] iteration {info.iteration}/{iterations} ({time.perf_counter() - t0:.0f} s)  {losses}")

    return hook


def resume_after_failure(run: RunConfig) -> RunConfig:
    """``run`` as a resume: what a retried attempt (Ray Train restarted the workers) runs when the
    failed attempt left a checkpoint. The model/schedule flags are dropped (the checkpoint has them)."""
    return dataclasses.replace(run, resume=True, batch_size=None, overrides={}, no_perceptual=False)


def _say(line: str) -> None:
    """Rank 0's log: straight to stdout (Ray Train's patched ``print`` would also log it, twice)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _worker(config: dict):
    """Ray Train's per-worker function: ``generators.train.train`` with this worker's part."""
    import ray.train

    from generators.train import train

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if config["use_gpu"]:
        import ray.train.torch

        torch.cuda.set_device(ray.train.torch.get_device())
    if config["torch_threads"]:
        torch.set_num_threads(config["torch_threads"])
    run: RunConfig = config["run"]
    if not run.resume and RunPaths(run.out).latest.is_file():
        # the driver checked --out held no run: this checkpoint is from a failed attempt of this run
        run = resume_after_failure(run)
    run = dataclasses.replace(run, workers=world, progress=False)
    say = _say if rank == 0 else (lambda _line: None)
    hooks = [progress_hook(config["iterations"], write=_say)] if rank == 0 else []
    report = train(run, hooks=hooks, log=say, parallel=RayTrainWorkers(rank, world))
    return report if rank == 0 else None


# ---------------------------------------------------------------------------------------------
# the driver side


@dataclasses.dataclass
class WorkerPlan:
    """Resources of the Ray Train worker group."""

    workers: int
    use_gpu: bool
    cpus_per_worker: float
    torch_threads: int | None  # CPU workers: intra-op threads each (None on GPU: torch's default)

    @property
    def resources_per_worker(self) -> dict[str, float]:
        return {"CPU": self.cpus_per_worker, **({"GPU": 1} if self.use_gpu else {})}


def plan_workers(resources: dict, workers: int, device: str = "auto") -> WorkerPlan:
    """One GPU per worker when the cluster has GPUs (and ``device`` is not cpu); never asks for
    GPUs that are absent (Ray would wait for them forever) or for more workers than fit."""
    gpus = int(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 0))
    if device == "cuda" and gpus == 0:
        raise UsageError("--device", "cuda, but the Ray cluster has no GPU")
    use_gpu = gpus > 0 and device != "cpu"
    if use_gpu:
        if workers > gpus:
            raise UsageError("--workers", f"{workers} workers need {workers} GPUs; the Ray cluster has {gpus}")
        per_worker = max(1.0, min(8.0, cpus // workers)) if cpus >= workers else 0.0
        return WorkerPlan(workers, True, per_worker, None)
    if workers > cpus:
        raise UsageError("--workers", f"{workers} CPU workers need {workers} CPUs; the Ray cluster has {cpus:g}")
    per_worker = max(1.0, float(int(cpus // workers)))
    return WorkerPlan(workers, False, per_worker, int(per_worker))


def resolve_schedule(run: RunConfig):
    """The run's TrainSchedule, resolved as ``train`` does (preset + flags, or the checkpoint);
    raises its flag errors before any worker starts."""
    return resolve_run(run, log=lambda _line: None).schedule


def absolute_paths(run: RunConfig) -> RunConfig:
    """Paths every worker can use whatever its working directory (the default dataset rendered first)."""
    from augment.synth import embedded_dataset

    data = run.data
    if data is None and not run.resume:
        data = embedded_dataset()

    def fix(p):
        return None if p is None else Path(p).expanduser().resolve()

    return dataclasses.replace(
        run, out=fix(run.out), data=fix(data), keypoints=fix(run.keypoints), vgg_weights=fix(run.vgg_weights)
    )


@contextmanager
def ray_for_training(address: str | None, workers: int):
    """Attach to ``address`` (or an already initialised Ray), else start a private local Ray with
    at least ``workers`` CPUs; shut down only what was started here."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        yield ray
        return
    if address:
        if address.startswith(("http://", "https://")):
            raise UsageError(
                "--address",
                f"{address} is a job-submission (dashboard) address; give the cluster's "
                "GCS address (host:6379), or submit this command as a Ray job",
            )
        ray.init(address=address, log_to_driver=True)
    else:
        pythonpath = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        # The dashboard (loopback only) serves the state API that Ray Train's placement-group
        # cleaner polls every second; without it that actor logs a warning each time.
        ray.init(
            address="local",
            num_cpus=max(os.cpu_count() or 1, workers),
            num_gpus=torch.cuda.device_count(),
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            log_to_driver=True,
            runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
        )
    try:
        yield ray
    finally:
        ray.shutdown()


def _unwrap(error: BaseException) -> BaseException:
    """The first worker's own exception inside Ray Train's WorkerGroupError, when there is one."""
    failures = getattr(error, "worker_failures", None) or {}
    for rank in sorted(failures):
        cause = failures[rank]
        while getattr(cause, "cause", None) is not None and cause is not cause.cause:  # RayTaskError
            cause = cause.cause
        return cause
    return error


def train_on_ray(
    run: RunConfig, *, hooks: Sequence = (), log: Callable[[str], None] = print, max_failures: int = 0
) -> TrainReport:
    """Train ``run`` with ``run.workers`` Ray Train workers; returns rank 0's :class:`TrainReport`.

    Checks the flags, the schedule (the batch must split evenly) and the resources before any
    worker starts; errors are the single-process ones (UsageError naming the flag, DatasetError,
    CheckpointError, MissingWeightsError), also when raised inside a worker.
    """
    from augment.data.market import DatasetError
    from generators.checkpoint import CheckpointError
    from generators.losses import MissingWeightsError

    run.validate()
    if hooks:
        raise UsageError("--workers", "iteration hooks run in one process; train with --workers 1 to use them")
    run = absolute_paths(run)
    schedule = resolve_schedule(run)
    if schedule.batch_size % run.workers:
        raise UsageError(
            "--workers",
            f"{run.workers} workers do not divide the batch of {schedule.batch_size} "
            "(each worker trains on batch / workers samples)",
        )
    from ray.train import FailureConfig, ScalingConfig
    from ray.train import RunConfig as RayRunConfig
    from ray.train.torch import TorchTrainer

    address = run.address or os.environ.get("RAY_ADDRESS")
    t0 = time.perf_counter()
    with ray_for_training(address, run.workers) as ray:
        plan = plan_workers(ray.cluster_resources(), run.workers, run.device)
        log(
            f"[train] Ray Train: {plan.workers} workers on {'GPU' if plan.use_gpu else 'CPU'} "
            f"({plan.resources_per_worker} each), batch {schedule.batch_size} = {plan.workers} x "
            f"{schedule.batch_size // plan.workers}; Ray state in {run.out / 'ray_train'}"
        )
        trainer = TorchTrainer(
            _worker,
            train_loop_config={
                "run": run,
                "use_gpu": plan.use_gpu,
                "torch_threads": plan.torch_threads,
                "iterations": schedule.iterations,
            },
            scaling_config=ScalingConfig(
                num_workers=plan.workers, use_gpu=plan.use_gpu, resources_per_worker=plan.resources_per_worker
            ),
            run_config=RayRunConfig(
                storage_path=str(run.out / "ray_train"),
                name=f"train-{time.strftime('%Y%m%d-%H%M%S')}",
                failure_config=FailureConfig(max_failures=max_failures),
            ),
        )
        try:
            result = trainer.fit()
        except Exception as e:  # re-raised below, as the worker's own error where known
            cause = _unwrap(e)
            if isinstance(cause, (UsageError, DatasetError, CheckpointError, MissingWeightsError)):
                raise cause from None
            raise
    report: TrainReport = result.return_value
    log(
        f"[train] Ray Train finished in {time.perf_counter() - t0:.1f} s (start-up included); "
        f"checkpoint {report.checkpoint}"
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cluster.train_ray ARGS``: ``python -m generators.train ARGS`` with ``--workers``
    defaulting to 2."""
    from generators.train import main as train_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--workers" or a.startswith("--workers=") for a in argv):
        argv += ["--workers", "2"]
    return train_main(argv)


if __name__ == "__main__":
    sys.exit(main())
