"""Executing a plan on Ray: Ray Data ``map_batches`` over an actor pool of generators.

One dataset row is one pre-formed batch payload (``augment.execute.make_payloads``), so
the model sees exactly the batches the local executor gives it and both executors write
the same images. The pipeline:

    decode (CPU tasks) -> GenerateStage (actor pool; 1 GPU per actor when the cluster has
    GPUs) -> write (CPU tasks: JPEG encode, atomic write, shard record)

so GPU actors only run the model. Ray Data restarts crashed actors and retries their
batches; a batch's images and shard are written atomically, and the driver skips rows
already done, so an interrupted job resumes (OSS Ray Data does not resume by itself).

Without ``--address``/``RAY_ADDRESS`` a private local Ray is started
(``address="local"``) and shut down at the end; it never attaches to another Ray on the
machine by accident.
"""

from __future__ import annotations

import os
import pickle
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from augment.execute import ExecOptions, Executor
from augment.runtime import UsageError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _quiet_ray_env() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@contextmanager
def ray_session(address: str | None, *, num_cpus: int | None = None, num_gpus: int | None = None):
    """Connect to ``address`` or start a private local Ray; shut down what we started."""
    import ray

    _quiet_ray_env()
    if address and address.startswith(("http://", "https://")):  # refused whether or not Ray is running
        raise UsageError(
            "--address",
            f"{address} (or RAY_ADDRESS) is a job-submission (dashboard) address; "
            "submit with `python -m cluster.submit --address URL -- ...`, or give the cluster's "
            "GCS address (host:6379)",
        )
    if ray.is_initialized():
        yield ray
        return
    if address:
        # a submitted job already carries its working_dir runtime_env; ray.init inherits it.
        # Actor output goes to the driver so that it shows in `ray job logs`.
        ray.init(address=address, log_to_driver=True)
    else:
        # local workers import the project from its source tree even when it is not installed
        pythonpath = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        runtime_env = {"env_vars": {"PYTHONPATH": pythonpath}}
        if num_gpus is None:
            import torch

            num_gpus = torch.cuda.device_count()
        ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count(),
            num_gpus=num_gpus,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env=runtime_env,
        )
    try:
        yield ray
    finally:
        ray.shutdown()


IN_FLIGHT_BYTES_PER_ACTOR = 64 * 2**20  # object-store budget of the pipeline, per generator actor


def _decode(row: dict) -> dict:
    from augment.execute import decode_stage

    return {"payload": pickle.dumps(decode_stage(pickle.loads(row["payload"])))}


class _GenerateUDF:
    """Callable class for ``map_batches``: one generator per actor, one payload per call."""

    def __init__(self, checkpoint: str, device: str | None, precision: str | None, torch_threads: int | None):
        from augment.execute import GenerateStage

        self.stage = GenerateStage(checkpoint, device=device, precision=precision, torch_threads=torch_threads)

    def __call__(self, batch: dict) -> dict:
        out = [pickle.dumps(self.stage(pickle.loads(p))) for p in batch["payload"]]
        return {"payload": out}


def _write(row: dict, out_root: str) -> dict:
    from augment.execute import write_stage

    rec = write_stage(pickle.loads(row["payload"]), out_root)
    return {
        "batch_id": str(rec["batch_id"].iloc[0]),
        "done": int((rec["status"] == "done").sum()),
        "failed": int((rec["status"] == "failed").sum()),
    }


def actor_resources(resources: dict, actors: int | None, device: str | None) -> dict:
    """Pool size and per-actor resources from what the cluster has (never ask for absent GPUs)."""
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    use_gpu = gpus > 0 and device != "cpu"
    if device == "cuda" and gpus == 0:
        raise UsageError("--device", "cuda, but the Ray cluster has no GPU")
    n = actors or (gpus if use_gpu else 1)
    if use_gpu and n > gpus:
        raise UsageError("--actors", f"{n} > {gpus} GPUs in the cluster")
    res = {
        "num_gpus": 1 if use_gpu else 0,
        # CPU actors: leave half a CPU to the decode/write tasks (2 cores: fractional, no deadlock)
        "num_cpus": 1 if use_gpu else max(0.5, (cpus - 0.5) / n),
    }
    if resources.get("generator", 0) >= 1:  # node groups that declare it host the generators
        res["resources"] = {"generator": 1}
    res["torch_threads"] = None if use_gpu else max(1, int(cpus // n))
    res["actors"] = n
    res["device"] = "cuda" if use_gpu else "cpu"
    return res


def run_plan_on_ray(payloads: list[dict], opts: ExecOptions) -> None:
    """Decode, generate and write every payload on Ray (see the module docstring)."""
    from tqdm import tqdm

    with ray_session(opts.address) as ray:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        plan = actor_resources(ray.cluster_resources(), opts.actors, opts.device)
        # Bounded in-flight data: without a limit the streaming executor lets the (fast) decode stage
        # run ahead of the generators up to a share of the whole object store (GBs), so memory grew
        # with the plan; a few dozen decoded batches per actor keep every actor fed.
        ctx.execution_options.resource_limits = ctx.execution_options.resource_limits.copy(
            object_store_memory=IN_FLIGHT_BYTES_PER_ACTOR * max(2, plan["actors"])
        )
        print(
            f"[augment] Ray: {plan['actors']} generator actor(s) on {plan['device']}"
            f"{' (generator resource)' if 'resources' in plan else ''}; cluster {ray.cluster_resources()}"
        )
        ds = ray.data.from_items([{"payload": pickle.dumps(p)} for p in payloads], override_num_blocks=len(payloads))
        ds = ds.map(_decode, num_cpus=0.25)
        extra = {"resources": plan["resources"]} if "resources" in plan else {}
        ds = ds.map_batches(
            _GenerateUDF,
            fn_constructor_kwargs={
                "checkpoint": str(opts.checkpoint),
                "device": plan["device"],
                "precision": opts.precision,
                "torch_threads": opts.threads or plan["torch_threads"],
            },
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan["actors"]),
            num_gpus=plan["num_gpus"],
            num_cpus=plan["num_cpus"],
            **extra,
        )
        ds = ds.map(_write, fn_kwargs={"out_root": str(opts.out)}, num_cpus=0.25)
        total = sum(len(p["output_name"]) for p in payloads)
        with tqdm(total=total, unit="img", desc="generate (ray)") as bar:
            for row in ds.iter_rows():
                bar.update(row["done"] + row["failed"])


def resolve_ray_options(opts: ExecOptions) -> ExecOptions:
    """The device and CPU threads the generator actors will use (for the run identity), decided by
    :func:`actor_resources` from the cluster's resources (the machine's, for the private local Ray)."""
    import ray

    if ray.is_initialized():
        resources = ray.cluster_resources()
    elif opts.address:
        with ray_session(opts.address) as session:
            resources = session.cluster_resources()
    else:  # the private local Ray that ray_session starts: this machine's cores and GPUs
        import torch

        resources = {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}
    plan = actor_resources(resources, opts.actors, opts.device)
    device = opts.device if opts.device and plan["device"] == "cuda" else plan["device"]
    return replace(opts, device=device, threads=opts.threads or plan["torch_threads"])  # None on GPU actors


RAY_EXECUTOR = Executor("ray", run_plan_on_ray, resolve_ray_options)
