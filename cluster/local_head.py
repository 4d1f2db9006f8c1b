"""A private Ray head on 127.0.0.1 for tests and local demos, stopped without ``ray stop``.

    from cluster.local_head import LocalRayHead

    with LocalRayHead() as head:                        # starts the head (seconds)
        client = head.job_client()                      # JobSubmissionClient(head.address, headers=head.headers)
        sid = client.submit_job(entrypoint="python -c \"print('ok')\"")

``ray stop`` kills every Ray process on the machine (other users', other tests'), so this
harness never calls it. It starts the head with its own fresh ``--temp-dir`` and an
environment marker, and on exit terminates exactly the processes whose command line
holds that temp dir or whose environment holds that marker (GCS, raylet, dashboard,
agents, workers, job drivers). Every port is chosen free at random, so it runs beside
other Ray instances.

Token authentication (measured with Ray 2.60): ``ray start --head`` turns token auth on
when ``RAY_AUTH_MODE`` is unset and a token already exists (``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, which any earlier local ``ray.init()``
writes). A client that does not send that token is refused (HTTP 401). So the head
gets an explicit ``RAY_AUTH_MODE``: ``auth="disabled"`` (default; nothing to pass) or
``auth="token"`` with a fresh random token, which clients send as ``head.headers``
(``Authorization: Bearer ...``); ``head.client_env`` holds the environment variables that
make Ray's own clients (``ray job submit``, ``ray.init``) do the same.

Usage stats: the head gets ``RAY_USAGE_STATS_ENABLED=0`` and ``--disable-usage-stats``,
and its report URL points at a dead local port, so nothing leaves the machine.

Exposure (measured): the dashboard / job API listens on 127.0.0.1 only, but Ray 2.60's GCS
and raylet listen on all interfaces whatever ``--node-ip-address`` says (the node even
registers under the machine's IP). On a network you do not trust, use ``auth="token"``.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

#: environment variable carrying this harness's marker into every process the head starts
MARKER_ENV = "POSEAUG_LOCAL_RAY_HEAD"
#: where usage reports would go: port 9 (discard) on loopback, nothing listens
DEAD_REPORT_URL = "http://127.0.0.1:9/"
#: Unix sockets live under the temp dir (path limit 107 bytes), so keep it short
_TEMP_PARENT = "/tmp"
_MAX_TEMP_DIR_LEN = 40
# Pick ports below Linux's ephemeral range (32768+) and above Ray's worker ports (10002-19999).
_PORT_RANGE = (20000, 32000)
_PORT_NAMES = (
    "port",
    "dashboard_port",
    "ray_client_server_port",
    "dashboard_agent_listen_port",
    "dashboard_agent_grpc_port",
    "metrics_export_port",
    "runtime_env_agent_port",
    "node_manager_port",
    "object_manager_port",
)
AUTH_MODES = ("disabled", "token")


def _port_is_free(port: int) -> bool:
    """True when ``port`` can be bound on loopback and on all interfaces (Ray binds both)."""
    for host in ("127.0.0.1", "0.0.0.0"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_ports(n: int, rng: random.Random | None = None, avoid: set[int] = frozenset()) -> list[int]:
    """``n`` distinct free TCP ports drawn at random from ``_PORT_RANGE``."""
    rng = rng or random.SystemRandom()
    chosen: list[int] = []
    for _ in range(2000):
        p = rng.randrange(*_PORT_RANGE)
        if p not in chosen and p not in avoid and _port_is_free(p):
            chosen.append(p)
            if len(chosen) == n:
                return chosen
    raise RuntimeError(f"no {n} free ports found in {_PORT_RANGE}")


def _psutil():
    """psutil as Ray ships it (``import ray`` puts ray/thirdparty_files on sys.path)."""
    import psutil
    import ray  # noqa: F401

    return psutil


def _signal(proc, how: str) -> None:
    psutil = _psutil()
    try:
        getattr(proc, how)()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass


class LocalRayHead:
    """Context manager: ``ray start --head`` on 127.0.0.1 in a private temp dir; stops only its own processes.

    Args:
        temp_dir: Ray's ``--temp-dir`` (at most 40 characters: Ray's Unix socket paths under
            it must stay under 107 bytes); must not exist yet or be empty. Default: a fresh
            ``/tmp/rayh-XXXXXXXX``, removed on stop. Construct, then ``start()``/``stop()`` or
            use ``with``: the default temp dir exists from construction on.
        num_cpus: CPUs the head advertises (``--num-cpus``); GPUs are always 0.
        port: GCS port (``--port``); default a free random port.
        dashboard_port: dashboard / job API port; default a free random port.
        resources: extra custom resources, e.g. ``{"generator": 1}`` to stand in for a
            generator node group.
        auth: ``"disabled"`` or ``"token"`` (see the module docstring).
        object_store_memory: bytes of shared memory for the object store.
        start_timeout_s: how long to wait for ``ray start`` and the job API.
        keep_temp_dir: keep the temp dir (logs) after stopping; by default a temp dir this
            harness created is removed.
    """

    def __init__(
        self,
        temp_dir: str | Path | None = None,
        num_cpus: int = 2,
        port: int | None = None,
        dashboard_port: int | None = None,
        *,
        resources: dict[str, float] | None = None,
        auth: str = "disabled",
        object_store_memory: int = 256 * 2**20,
        start_timeout_s: float = 90.0,
        keep_temp_dir: bool = False,
    ):
        if auth not in AUTH_MODES:
            raise ValueError(f"auth must be one of {AUTH_MODES}, got {auth!r}")
        if num_cpus < 0:
            raise ValueError(f"num_cpus must be >= 0, got {num_cpus}")
        given = {"port": port, "dashboard_port": dashboard_port}
        for name, value in given.items():
            if value is not None and not _port_is_free(value):
                raise ValueError(f"{name}={value} is already in use")
        drawn = iter(free_ports(len(_PORT_NAMES), avoid={v for v in given.values() if v}))
        self.ports = {n: given.get(n) or next(drawn) for n in _PORT_NAMES}
        self._own_temp = temp_dir is None
        if temp_dir is None:
            temp_dir = tempfile.mkdtemp(prefix="rayh-", dir=_TEMP_PARENT)
        self.temp_dir = Path(temp_dir).resolve()
        if not self._own_temp:
            if self.temp_dir.exists() and any(self.temp_dir.iterdir()):
                raise ValueError(f"temp_dir {self.temp_dir} is not empty: it must be private to this head")
            # Ray adds /session_<date>_<time>_<pid>/sockets/plasma_store (~65 bytes); limit 107
            if len(str(self.temp_dir)) > _MAX_TEMP_DIR_LEN:
                raise ValueError(
                    f"temp_dir {self.temp_dir} is too long for Ray's Unix socket paths "
                    f"(keep it under {_MAX_TEMP_DIR_LEN} characters, e.g. /tmp/rayh-XXXX)"
                )
            self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.num_cpus = num_cpus
        self.resources = dict(resources or {})
        self.auth = auth
        self.token = secrets.token_hex(32) if auth == "token" else None
        self.object_store_memory = int(object_store_memory)
        self.start_timeout_s = start_timeout_s
        self.keep_temp_dir = keep_temp_dir
        self.marker = f"{os.getpid()}-{secrets.token_hex(8)}"
        self.started = False
        self.start_seconds: float | None = None

    # ---- addresses and credentials ----------------------------------------------------
    @property
    def address(self) -> str:
        """Dashboard URL for job submission (``JobSubmissionClient``, ``ray job submit --address``)."""
        return f"http://127.0.0.1:{self.ports['dashboard_port']}"

    @property
    def gcs_address(self) -> str:
        """``host:port`` of the GCS, for ``ray.init(address=...)``."""
        return f"127.0.0.1:{self.ports['port']}"

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers a job client must send (the bearer token in token mode, else none)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def client_env(self) -> dict[str, str]:
        """Environment for Ray's own clients (``ray job submit``, ``ray.init``) to talk to this head."""
        env = {"RAY_AUTH_MODE": self.auth, "RAY_USAGE_STATS_ENABLED": "0"}
        if self.token:
            env["RAY_AUTH_TOKEN"] = self.token
        return env

    def head_env(self) -> dict[str, str]:
        """Environment of ``ray start``; every Ray process of this head inherits it."""
        env = {
            k: v
            for k, v in os.environ.items()
            # a head must not be steered to another cluster or token by the caller's environment
            if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
        }
        env.update(self.client_env)
        env.update({"RAY_USAGE_STATS_REPORT_URL": DEAD_REPORT_URL, MARKER_ENV: self.marker})
        # job entrypoints say `python ...`: make that this interpreter (a venv need not be activated)
        env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")]))
        return env

    def start_command(self) -> list[str]:
        p = self.ports
        cmd = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={p['port']}",
            f"--num-cpus={self.num_cpus}",
            "--num-gpus=0",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={p['dashboard_port']}",
            "--disable-usage-stats",
            f"--temp-dir={self.temp_dir}",
            "--include-dashboard=true",
            f"--ray-client-server-port={p['ray_client_server_port']}",
            f"--dashboard-agent-listen-port={p['dashboard_agent_listen_port']}",
            f"--dashboard-agent-grpc-port={p['dashboard_agent_grpc_port']}",
            f"--metrics-export-port={p['metrics_export_port']}",
            f"--runtime-env-agent-port={p['runtime_env_agent_port']}",
            f"--node-manager-port={p['node_manager_port']}",
            f"--object-manager-port={p['object_manager_port']}",
            f"--object-store-memory={self.object_store_memory}",
        ]
        if self.resources:
            cmd.append(f"--resources={json.dumps(self.resources)}")
        return cmd

    # ---- lifecycle --------------------------------------------------------------------
    def start(self) -> LocalRayHead:
        if self.started:
            return self
        t0 = time.perf_counter()
        self.started = True  # from here on, stop() must run even if start fails half-way
        try:
            r = subprocess.run(
                self.start_command(),
                env=self.head_env(),
                cwd=self.temp_dir,
                capture_output=True,
                text=True,
                timeout=self.start_timeout_s,
            )
            if r.returncode != 0:
                raise RuntimeError(
                    f"ray start --head failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
                )
            self._wait_for_job_api(deadline=t0 + self.start_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - t0
        return self

    def _wait_for_job_api(self, deadline: float) -> None:
        """Poll ``GET /api/jobs/`` until the job API answers 200."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        req = urllib.request.Request(f"{self.address}/api/jobs/", headers=self.headers)
        last: object = None
        while time.perf_counter() < deadline:
            try:
                with opener.open(req, timeout=5) as resp:
                    if resp.status == 200:
                        return
                    last = resp.status
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                last = e
            time.sleep(0.25)
        raise TimeoutError(
            f"the job API at {self.address} did not answer within {self.start_timeout_s} s "
            f"(last: {last}); logs in {self.temp_dir}"
        )

    def processes(self) -> list:
        """psutil processes of this head: command line holds its temp dir, or environment its marker."""
        psutil = _psutil()
        pattern = re.compile(re.escape(str(self.temp_dir)) + r"(?![^/\s'\",;:=])")
        me = os.getpid()
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if proc.pid == me:
                continue
            try:
                if (
                    pattern.search(" ".join(proc.info["cmdline"] or ()))
                    or proc.environ().get(MARKER_ENV) == self.marker
                ):
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def stop(self, grace_s: float = 2.0) -> list[int]:
        """SIGTERM this head's processes, SIGKILL what is left after ``grace_s``; returns their PIDs.

        Never ``ray stop``. (Workers, dashboard and agents exit on SIGTERM promptly; gcs_server,
        raylet and the autoscaler monitor can outlive it by many seconds, so a private head is not
        worth waiting for: docs/ray.md#stopping-a-private-head.)
        """
        psutil = _psutil()
        stopped: set[int] = set()
        if self.started:
            for _ in range(5):  # a few rounds: a dying raylet may still spawn a worker
                procs = self.processes()
                if not procs:
                    break
                for p in procs:
                    _signal(p, "terminate")
                _, alive = psutil.wait_procs(procs, timeout=grace_s)
                for p in alive:
                    _signal(p, "kill")
                psutil.wait_procs(alive, timeout=5)
                stopped.update(p.pid for p in procs)
            self.started = False
        if self._own_temp and not self.keep_temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        return sorted(stopped)

    def job_client(self):
        """A ``JobSubmissionClient`` for this head (sends the token when there is one).

        Built by ``cluster.submit.make_client``: Ray's client would otherwise let a
        ``RAY_ADDRESS`` in the environment override this head's address.
        """
        from cluster.submit import make_client

        return make_client(self.address, self.headers)

    def __enter__(self) -> LocalRayHead:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"LocalRayHead(address={self.address!r}, gcs_address={self.gcs_address!r}, "
            f"temp_dir={str(self.temp_dir)!r}, auth={self.auth!r})"
        )


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """``python -m cluster.local_head``: start a head for a local demo; Ctrl-C stops it."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m cluster.local_head", description=main.__doc__)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument(
        "--generator",
        action="store_true",
        help="declare one unit of the custom 'generator' resource (like a GPU node group)",
    )
    ap.add_argument("--auth", choices=AUTH_MODES, default="disabled")
    a = ap.parse_args(argv)
    # stop cleanly on Ctrl-C and on `kill`, also when started in the background (where a
    # non-interactive shell leaves SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    with LocalRayHead(num_cpus=a.num_cpus, auth=a.auth, resources={"generator": 1} if a.generator else None) as head:
        print(f"Ray head up in {head.start_seconds:.1f} s: {head}")
        env = " ".join(f"{k}={v}" for k, v in head.client_env.items())
        print(f"submit with:  {env} python -m cluster.submit --address {head.address} -- --portion 0.5 ...")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    print("stopped")


if __name__ == "__main__":
    main()
