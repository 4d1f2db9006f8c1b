"""``python -m cluster.submit``: run ``python -m augment.run`` as a Ray job on a cluster.

    python -m cluster.submit --address http://HEAD:8265 -- --method patn --portion 0.1 \\
        --data /mnt/shared/Market-1501-v15.09.15 --checkpoint /mnt/shared/ckpt/patn.pt \\
        --out /mnt/shared/runs/augment/market-patn-p0.1

is the same as

    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m augment.run --method patn --portion 0.1 ... --executor ray

(the equivalent command is printed), done with ``JobSubmissionClient``: the project folder
is uploaded as the job's ``working_dir`` (Ray drops what ``.rayignore`` and ``.gitignore``
list: .venv, data/, runs/, .git, checkpoints), the job's logs are followed until it ends,
and the exit status is 0 only when the job SUCCEEDED (1 when it FAILED or was STOPPED).

Inside the job, ``augment.run`` always uses ``--executor ray`` (added when missing). Ray
sets ``RAY_ADDRESS`` in a job's driver to its own cluster's GCS address; ``augment.run``
passes it to ``cluster.ray_executor.ray_session``, whose ``ray.init(address=...)`` then
attaches to that cluster (and inherits the job's working_dir) instead of starting a new one.

Paths: the job runs in a temporary copy of the project on the head node, so ``--data``,
``--checkpoint`` and ``--out`` should be absolute paths on storage all nodes share. A
relative path must be uploaded with the project (checked here before submitting); outputs
under a relative ``--out`` would stay in the job's temporary copy (a warning says so).

Address: ``--address``, else ``RAY_API_SERVER_ADDRESS``, else ``RAY_ADDRESS`` (Ray's own
order). Token auth: Ray's client sends the token when ``RAY_AUTH_MODE=token`` and
``RAY_AUTH_TOKEN`` (or ``~/.ray/auth_token``) are set; ``--token-env VAR`` sends the token
held in environment variable VAR instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tomllib

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AUGMENT_ENTRYPOINT = ("python", "-m", "augment.run")
#: augment.run flags that take a path read by the job
INPUT_PATH_FLAGS = ("--data", "--keypoints", "--checkpoint")
TERMINAL_OK = "SUCCEEDED"


class SubmitError(ValueError):
    """A usage error, raised before anything is uploaded (``main`` prints it and exits 2)."""


@dataclass
class JobOutcome:
    submission_id: str
    status: str  # a ray.job_submission.JobStatus value, or "SUBMITTED" with wait=False
    seconds: float
    logs: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (TERMINAL_OK, "SUBMITTED")


# ---- arguments ----------------------------------------------------------------------------
def resolve_address(address: str | None, environ: dict[str, str] | None = None) -> str:
    """The job API address: the flag, else RAY_API_SERVER_ADDRESS, else RAY_ADDRESS."""
    env = os.environ if environ is None else environ
    addr = address or env.get("RAY_API_SERVER_ADDRESS") or env.get("RAY_ADDRESS")
    if not addr:
        raise SubmitError(
            "no cluster address: pass --address http://HEAD:8265 (the Ray dashboard / job API) or set RAY_ADDRESS"
        )
    if addr.startswith("ray://"):
        raise SubmitError(
            f"--address {addr}: a Ray Client address; jobs go to the dashboard URL, e.g. http://HEAD:8265"
        )
    return addr if "://" in addr else f"http://{addr}"


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    """Value of ``flag`` in ``args`` (``--flag v`` or ``--flag=v``; last one wins; "" when it
    has none), or None when absent."""
    found = None
    for i, a in enumerate(args):
        if a == flag:
            found = args[i + 1] if i + 1 < len(args) else ""
        elif a.startswith(flag + "="):
            found = a.split("=", 1)[1]
    return found


def augment_command(augment_args: Sequence[str]) -> list[str]:
    """``python -m augment.run ARGS --executor ray``, checked with augment.run's own parser.

    Unknown flags end in argparse's usage error (SystemExit 2); bad values in SubmitError.
    """
    args = list(augment_args)
    if args and args[0] == "--":
        args = args[1:]
    if args[:3] == list(AUGMENT_ENTRYPOINT):
        args = args[3:]
    executor = _flag_value(args, "--executor")
    if executor is not None and executor != "ray":
        raise SubmitError(
            f"--executor {executor}: a cluster job runs the generators on Ray actors; "
            "drop the flag (cluster.submit passes --executor ray)"
        )
    if _flag_value(args, "--address") is not None:
        raise SubmitError(
            "--address among the augment.run arguments: inside a job Ray sets RAY_ADDRESS to "
            "the job's own cluster; give the cluster to cluster.submit, before the `--`"
        )
    if executor is None:
        args += ["--executor", "ray"]
    from augment.run import build_parser, spec_from_args  # bad flags fail here, not later on the cluster

    try:
        spec_from_args(build_parser().parse_args(args))
    except ValueError as e:  # augment.run's UsageError, naming the flag
        raise SubmitError(str(e)) from None
    return [*AUGMENT_ENTRYPOINT, *args]


def uploaded_files(working_dir: Path) -> set[str]:
    """Relative paths of the files Ray uploads from ``working_dir`` (its own excludes and ignore files)."""
    from ray._private.ray_constants import get_runtime_env_default_excludes
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    root = Path(working_dir).absolute()
    files: set[str] = set()

    def collect(p: Path) -> None:
        if p.is_file():
            files.add(p.relative_to(root).as_posix())

    include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
    _dir_travel(
        root, [_get_excludes(root, get_runtime_env_default_excludes())], collect, include_gitignore=include_gitignore
    )
    return files


def check_paths(command: Sequence[str], working_dir: Path, warn: Callable[[str], None]) -> None:
    """Relative input paths must travel with the job; absolute ones must exist on the cluster."""
    args = list(command[len(AUGMENT_ENTRYPOINT) :])
    upload: set[str] | None = None
    for flag in INPUT_PATH_FLAGS:
        value = _flag_value(args, flag)
        if not value:
            continue
        if os.path.isabs(value):
            warn(f"{flag} {value}: read on the cluster nodes; it must exist there (shared storage)")
            continue
        local = (working_dir / value).resolve()
        if not local.exists():
            raise SubmitError(
                f"{flag} {value}: no such path under the working dir {working_dir}; the job would "
                "not find it (use an absolute path on shared storage)"
            )
        if upload is None:
            upload = uploaded_files(working_dir)
        rel = (
            local.relative_to(working_dir.resolve()).as_posix() if local.is_relative_to(working_dir.resolve()) else None
        )
        inside = rel is not None and (
            rel in upload if local.is_file() else any(f.startswith(rel + "/") for f in upload)
        )
        if not inside:
            raise SubmitError(
                f"{flag} {value}: not uploaded with the job (excluded by .rayignore/.gitignore or "
                "outside the working dir): put it on shared storage and pass an absolute path, or, "
                "for a small checkpoint, place it under job_inputs/"
            )
    if _flag_value(args, "--data") is None:
        warn(
            "no --data: the job renders the embedded dataset (and, without --checkpoint, trains a generator) "
            "in its temporary copy of the project"
        )
    out = _flag_value(args, "--out")
    if not out or not os.path.isabs(out):
        warn(
            "no absolute --out: outputs land in the job's temporary copy of the project on the head node "
            "(pass --out /shared/path to keep them)"
        )


def read_project_dependencies(pyproject: Path = PROJECT_ROOT / "pyproject.toml") -> list[str]:
    """The project's runtime requirements except Ray itself (the cluster image provides Ray)."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [d for d in deps if not d.replace("_", "-").lower().startswith("ray")]


def runtime_env(working_dir: Path, pip: bool = False) -> dict:
    """The job's runtime_env: the project folder as working_dir (+ its dependencies when ``pip``).

    No ``excludes``: Ray applies ``.rayignore`` / ``.gitignore`` found in the working dir itself.
    """
    env: dict = {"working_dir": str(working_dir), "env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}}
    if pip:
        env["pip"] = {"packages": read_project_dependencies(working_dir / "pyproject.toml"), "pip_check": False}
    return env


def equivalent_cli(
    address: str, command: Sequence[str], working_dir: Path, submission_id: str | None = None, wait: bool = True
) -> str:
    parts = ["ray", "job", "submit", "--address", address, "--working-dir", str(working_dir)]
    if submission_id:
        parts += ["--submission-id", submission_id]
    if not wait:
        parts.append("--no-wait")
    return shlex.join(parts + ["--", *command])


# ---- submission ---------------------------------------------------------------------------
@contextmanager
def _explicit_address():
    """Ray's client lets RAY_API_SERVER_ADDRESS / RAY_ADDRESS override the address it is given;
    hide them while the client is built so the address we resolved is the one used."""
    saved = {k: os.environ.pop(k) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def make_client(address: str, headers: dict[str, str] | None = None):
    from ray.job_submission import JobSubmissionClient

    with _explicit_address():
        return JobSubmissionClient(address, headers=headers or None)


async def _follow(client, submission_id: str, write: Callable[[str], None]) -> None:
    async for chunk in client.tail_job_logs(submission_id):
        write(chunk)


def submit_job(
    address: str,
    entrypoint: Sequence[str],
    *,
    working_dir: Path = PROJECT_ROOT,
    submission_id: str | None = None,
    wait: bool = True,
    headers: dict[str, str] | None = None,
    pip: bool = False,
    write: Callable[[str], None] | None = None,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
) -> JobOutcome:
    """Submit ``entrypoint`` (argv list) with ``working_dir`` uploaded; follow its logs when ``wait``.

    Returns the final status (``SUCCEEDED``, ``FAILED``, ``STOPPED``) or ``SUBMITTED`` when
    not waiting. ``timeout_s`` stops waiting (and the job) after that many seconds.
    """
    from ray.job_submission import JobStatus

    write = write or sys.stdout.write
    t0 = time.perf_counter()
    working_dir = Path(working_dir).resolve()
    client = make_client(address, headers)
    sid = client.submit_job(
        entrypoint=shlex.join(entrypoint), submission_id=submission_id, runtime_env=runtime_env(working_dir, pip=pip)
    )
    write(f"[submit] job {sid} submitted to {address}\n")
    if not wait:
        return JobOutcome(sid, "SUBMITTED", time.perf_counter() - t0)
    try:
        follow = _follow(client, sid, write)
        asyncio.run(asyncio.wait_for(follow, timeout_s) if timeout_s else follow)
    except asyncio.TimeoutError:
        client.stop_job(sid)
        write(f"[submit] no result after {timeout_s} s: job {sid} stopped\n")
    except RuntimeError as e:  # the log stream broke (e.g. proxy timeout): poll the status instead
        write(f"[submit] log stream closed ({e}); polling the job status\n")
    status = client.get_job_status(sid)
    while not status.is_terminal():
        if timeout_s and time.perf_counter() - t0 > timeout_s:
            client.stop_job(sid)
        time.sleep(poll_s)
        status = client.get_job_status(sid)
    logs = client.get_job_logs(sid)
    outcome = JobOutcome(
        sid, str(status.value if isinstance(status, JobStatus) else status), time.perf_counter() - t0, logs
    )
    write(f"[submit] job {sid} {outcome.status} after {outcome.seconds:.1f} s\n")
    return outcome


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cluster.submit",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="python -m cluster.submit [options] -- <augment.run arguments>",
    )
    p.add_argument("--address", help="job API URL http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS, RAY_ADDRESS)")
    p.add_argument("--no-wait", action="store_true", help="return after submitting; follow with `ray job logs -f ID`")
    p.add_argument("--submission-id", help="job id (default: generated by Ray); must be new on the cluster")
    p.add_argument(
        "--working-dir",
        type=Path,
        default=PROJECT_ROOT,
        help=f"project folder uploaded with the job (default: {PROJECT_ROOT})",
    )
    p.add_argument(
        "--pip", action="store_true", help="install pyproject.toml's dependencies in the job (for images without them)"
    )
    p.add_argument(
        "--token-env",
        metavar="VAR",
        help="send the Ray auth token held in environment variable VAR (Authorization: Bearer)",
    )
    p.add_argument("--dry-run", action="store_true", help="check the arguments and print the command; submit nothing")
    return p


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split at the first ``--``: submit options before it, augment.run arguments after it."""
    argv = list(argv)
    if "--" not in argv:
        raise SubmitError(
            "put the augment.run arguments after `--`, e.g. "
            "python -m cluster.submit --address http://HEAD:8265 -- --method patn --portion 0.1"
        )
    cut = argv.index("--")
    return build_parser().parse_args(argv[:cut]), argv[cut + 1 :]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except SubmitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(argv: Sequence[str]) -> int:
    a, augment_args = parse_args(argv)
    address = resolve_address(a.address)
    working_dir = a.working_dir.resolve()
    if not (working_dir / "augment" / "run.py").is_file():
        raise SubmitError(f"--working-dir {working_dir}: not the project folder (no augment/run.py)")
    command = augment_command(augment_args)
    check_paths(command, working_dir, warn=lambda m: print(f"[submit] note: {m}", file=sys.stderr))
    headers = None
    if a.token_env:
        token = os.environ.get(a.token_env)
        if not token:
            raise SubmitError(f"--token-env {a.token_env}: that environment variable is empty or unset")
        headers = {"Authorization": f"Bearer {token}"}
    print(f"[submit] equivalent: {equivalent_cli(address, command, working_dir, a.submission_id, not a.no_wait)}")
    if a.dry_run:
        return 0
    from ray.exceptions import AuthenticationError

    try:
        outcome = submit_job(
            address,
            command,
            working_dir=working_dir,
            submission_id=a.submission_id,
            wait=not a.no_wait,
            headers=headers,
            pip=a.pip,
        )
    except AuthenticationError as e:
        print(
            f"error: the cluster at {address} wants its auth token ({str(e).splitlines()[0]}): set "
            "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=..., or pass --token-env VAR",
            file=sys.stderr,
        )
        return 1
    except ConnectionError as e:  # Ray's client raises the builtin ConnectionError
        print(
            f"error: cannot reach the Ray job API at {address} ({e}); is the head up? (launcher cluster: "
            "`ray dashboard cluster/configs/ray-cluster.yaml` opens the tunnel)",
            file=sys.stderr,
        )
        return 1
    except RuntimeError as e:  # refused by the cluster: duplicate submission id, bad runtime_env
        reason = [ln for ln in str(e).splitlines() if ln.strip()]  # the server sends its traceback
        print(f"error: the cluster refused the job: {reason[-1] if reason else e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\n[submit] stopped following; the job keeps running (ray job stop ID to stop it)", file=sys.stderr)
        return 130
    if not a.no_wait:
        return 0 if outcome.status == TERMINAL_OK else 1
    print(f"[submit] follow: ray job logs -f {outcome.submission_id} --address {address}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
