"""Cluster definitions (launcher YAML, KubeRay), .rayignore and cluster.submit's argument handling.

No cluster is started here: the launcher config is checked with Ray's own validator, the
upload rules with Ray's own packaging code, and submission up to the point of contacting a head.
"""

from __future__ import annotations

import copy
import json
import shutil
import zipfile
from pathlib import Path

import jsonschema
import pytest
import ray
import tomllib
import yaml
from ray._private.ray_constants import get_runtime_env_default_excludes
from ray._private.runtime_env.packaging import _zip_files
from ray.autoscaler._private.util import prepare_config, validate_config

from cluster import submit
from cluster.ray_executor import actor_resources

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "cluster" / "configs"
RAY_VERSION = "2.60.0"


def load(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


def quoted_resources(value: str) -> dict:
    """KubeRay's shell-quoted rayStartParams JSON ('"{\\"generator\\":1}"') -> dict."""
    assert value.startswith('"') and value.endswith('"'), value
    return json.loads(value[1:-1].replace('\\"', '"'))


def k8s_gpu_group(spec: dict) -> dict:
    groups = spec["workerGroupSpecs"]
    assert len(groups) == 1
    return groups[0]


# ---- Ray cluster launcher ---------------------------------------------------------------------
def test_launcher_config_passes_rays_own_validation():
    raw = load("ray-cluster.yaml")
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(raw, schema)  # the file as written
    validate_config(prepare_config(copy.deepcopy(raw)))  # what `ray up` checks after filling defaults


@pytest.mark.parametrize(
    "mutate, error",
    [
        (
            lambda c: c["available_node_types"]["gpu_worker"]["resources"].update(generator=0.5),
            jsonschema.ValidationError,
        ),
        (lambda c: c["available_node_types"]["head"].update(gpus=1), jsonschema.ValidationError),
        (lambda c: c["docker"].update(shm="16g"), jsonschema.ValidationError),
        (lambda c: c.update(head_node_type="nope"), ValueError),
    ],
)
def test_ray_validation_rejects_broken_variants(mutate, error):
    """The validator has teeth: small mistakes in this file would be caught."""
    cfg = load("ray-cluster.yaml")
    mutate(cfg)
    with pytest.raises(error):
        validate_config(prepare_config(cfg))


def test_launcher_head_takes_no_work_and_gpu_workers_host_generators():
    cfg = load("ray-cluster.yaml")
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    assert list(workers) == ["gpu_worker"]
    gpu = workers["gpu_worker"]
    assert gpu["resources"] == {"CPU": 8, "GPU": 1, "generator": 1}
    assert 0 <= gpu["min_workers"] <= gpu["max_workers"] <= cfg["max_workers"]
    assert cfg["docker"]["run_options"][0] == "--shm-size=16g"
    assert cfg["docker"]["image"] == f"rayproject/ray:{RAY_VERSION}-py311-gpu"
    # the project is copied to every node and installed from that copy
    ((mount, local),) = cfg["file_mounts"].items()
    assert local == "."
    assert f"pip install --no-cache-dir -e {mount}" in cfg["setup_commands"]
    assert ".rayignore" in cfg["rsync_filter"]
    # the job API stays on the head's loopback (reached through `ray dashboard`'s tunnel)
    assert "--dashboard-host=127.0.0.1" in " ".join(cfg["head_start_ray_commands"])


# ---- KubeRay ------------------------------------------------------------------------------------
def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_raycluster_manifest():
    rc = load("raycluster.yaml")
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster"
    spec = rc["spec"]
    assert spec["rayVersion"] == RAY_VERSION
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    gpu = k8s_gpu_group(spec)
    assert quoted_resources(gpu["rayStartParams"]["resources"]) == {"generator": 1}
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    assert 0 <= gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    (worker,) = _containers(gpu)
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    for group in (head, gpu):
        # KubeRay's rayStartParams is map[string]string: a YAML number would be rejected
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
        volumes = {v["name"]: v for v in group["template"]["spec"]["volumes"]}
        for c in _containers(group):
            assert c["image"] == f"rayproject/ray:{RAY_VERSION}-py311-gpu"
            (shm,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm"]
            assert volumes[shm["name"]]["emptyDir"]["medium"] == "Memory"


def test_rayjob_manifest():
    rj = load("rayjob.yaml")
    assert rj["apiVersion"] == "ray.io/v1" and rj["kind"] == "RayJob"
    spec = rj["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] > 0
    # the entrypoint is a valid augment.run command on the Ray executor
    argv = spec["entrypoint"].split()
    assert argv[:3] == ["python", "-m", "augment.run"]
    assert submit.augment_command(argv[3:]) == argv  # parses, and --executor ray is already there
    # runtime env: a remote working_dir Ray accepts, and the project's dependencies minus Ray
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert env["working_dir"].startswith("https://") and env["working_dir"].endswith(".zip")
    assert env["pip"]["packages"] == submit.read_project_dependencies(ROOT / "pyproject.toml")
    ray.runtime_env.RuntimeEnv(**env)  # Ray's own validation of the runtime_env
    # the job's cluster is raycluster.yaml's cluster
    assert spec["rayClusterSpec"] == load("raycluster.yaml")["spec"]


def test_the_three_configs_agree():
    launcher = load("ray-cluster.yaml")
    k8s = load("raycluster.yaml")["spec"]
    gpu_type = launcher["available_node_types"]["gpu_worker"]
    gpu_group = k8s_gpu_group(k8s)
    (worker,) = _containers(gpu_group)
    # one Ray version everywhere: installed, pinned, images, KubeRay
    pinned = [
        d
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("ray[")
    ]
    assert ray.__version__ == RAY_VERSION and pinned[0].endswith(f"=={RAY_VERSION}")
    assert k8s["rayVersion"] == RAY_VERSION
    assert launcher["docker"]["image"] == worker["image"]
    # one generator resource name, and it is the one the executor requests
    requested = actor_resources({"CPU": 16, "GPU": 2, "generator": 2}, None, None)["resources"]
    assert set(requested) == {"generator"}
    assert quoted_resources(gpu_group["rayStartParams"]["resources"]) == {
        "generator": gpu_type["resources"]["generator"]
    }
    # same GPU worker shape and shared memory size
    assert int(worker["resources"]["limits"]["cpu"]) == gpu_type["resources"]["CPU"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == gpu_type["resources"]["GPU"]
    shm_gib = {v["name"]: v for v in gpu_group["template"]["spec"]["volumes"]}["dshm"]["emptyDir"]["sizeLimit"]
    assert f"--shm-size={shm_gib.removesuffix('Gi')}g" in launcher["docker"]["run_options"]


# ---- .rayignore -------------------------------------------------------------------------------
KEPT = ["pyproject.toml", "augment/run.py", "cluster/submit.py", "tests/test_x.py", "job_inputs/small.pt", ".rayignore"]
DROPPED = [
    ".venv/lib/python3.11/site.py",
    ".ci/venv/bin/python",
    "data/synth-market/bounding_box_train/a.jpg",
    "runs/generators/patn-synth/checkpoints/latest.pt",
    ".git/objects/ab/cd",
    "augment/__pycache__/run.cpython-311.pyc",
    "model.pt",
    "generators/weights.pth",
    ".hypothesis/examples/x",
    ".pytest_cache/v/x",
    "poseaug_reid.egg-info/PKG-INFO",
]


def _upload_names(root: Path, *, include_gitignore: bool, excludes: list[str]) -> set[str]:
    """The file names in the zip Ray builds for a working_dir upload."""
    out = root.parent / "pkg.zip"
    _zip_files(str(root), excludes, str(out), include_gitignore=include_gitignore)
    with zipfile.ZipFile(out) as z:
        return {n for n in z.namelist() if not n.endswith("/")}


@pytest.fixture
def fake_project(tmp_path) -> Path:
    root = tmp_path / "proj"
    for rel in KEPT + DROPPED:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    shutil.copy(ROOT / ".rayignore", root / ".rayignore")
    return root


def test_rayignore_alone_keeps_uploads_to_the_source(fake_project):
    """Without .gitignore and Ray's default excludes, .rayignore alone drops every heavy folder."""
    names = _upload_names(fake_project, include_gitignore=False, excludes=[])
    assert names == set(KEPT)


def test_upload_as_ray_does_it(fake_project):
    shutil.copy(ROOT / ".gitignore", fake_project / ".gitignore")
    names = _upload_names(fake_project, include_gitignore=True, excludes=get_runtime_env_default_excludes())
    assert names == set(KEPT) | {".gitignore"}
    assert submit.uploaded_files(fake_project) == names  # the client-side prediction cluster.submit uses


def test_real_project_upload_is_small_and_complete():
    files = submit.uploaded_files(ROOT)
    for needed in ["pyproject.toml", "augment/run.py", "cluster/ray_executor.py", "cluster/submit.py", ".rayignore"]:
        assert needed in files
    heavy = (".venv/", ".git/", "data/", "runs/", ".ci/venv/")
    assert not [f for f in files if f.startswith(heavy) or f.endswith((".pt", ".pyc"))]
    size = sum((ROOT / f).stat().st_size for f in files)
    assert size < 64 * 2**20, f"{size / 2**20:.1f} MiB would be uploaded per job"


# ---- cluster.submit: argument handling -------------------------------------------------------------
def test_parse_args_splits_at_double_dash():
    a, rest = submit.parse_args(["--address", "http://h:8265", "--no-wait", "--", "--portion", "0.5"])
    assert a.address == "http://h:8265" and a.no_wait and rest == ["--portion", "0.5"]
    with pytest.raises(submit.SubmitError, match="after `--`"):
        submit.parse_args(["--address", "http://h:8265", "--portion", "0.5"])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--portion", "0.5"], ["--portion", "0.5", "--executor", "ray"]),
        (["--ratio", "2", "--executor", "ray"], ["--ratio", "2", "--executor", "ray"]),
        (["--ratio", "2", "--executor=ray"], ["--ratio", "2", "--executor=ray"]),
        (["python", "-m", "augment.run", "--poses-per-image", "3"], ["--poses-per-image", "3", "--executor", "ray"]),
    ],
)
def test_augment_command_always_runs_the_ray_executor(args, expected):
    assert submit.augment_command(args) == ["python", "-m", "augment.run", *expected]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--portion", "0.5", "--executor", "local"], "--executor local"),
        (["--portion", "0.5", "--executor=local"], "--executor local"),
        (["--portion", "0.5", "--address", "http://h:8265"], "--address"),
        (["--portion", "1.5"], "portion"),
        (["--ratio", "1"], "--ratio: must be >= 2"),
        (["--portion", "0.5", "--method", "nope"], "--method: unknown method"),
    ],
)
def test_augment_command_rejects_before_submitting(args, message):
    with pytest.raises(submit.SubmitError, match=message):
        submit.augment_command(args)


def test_augment_command_unknown_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        submit.augment_command(["--portion", "0.5", "--bogus"])
    assert e.value.code == 2 and "--bogus" in capsys.readouterr().err


def test_resolve_address_order():
    env = {"RAY_ADDRESS": "http://a:8265", "RAY_API_SERVER_ADDRESS": "http://b:8265"}
    assert submit.resolve_address("http://flag:8265", env) == "http://flag:8265"
    assert submit.resolve_address(None, env) == "http://b:8265"
    assert submit.resolve_address(None, {"RAY_ADDRESS": "10.0.0.1:8265"}) == "http://10.0.0.1:8265"
    with pytest.raises(submit.SubmitError, match="--address"):
        submit.resolve_address(None, {})
    with pytest.raises(submit.SubmitError, match="Ray Client"):
        submit.resolve_address("ray://h:10001", {})


def test_equivalent_cli():
    cmd = submit.augment_command(["--portion", "0.1"])
    assert submit.equivalent_cli("http://h:8265", cmd, Path("/p"), "run-1", wait=False) == (
        "ray job submit --address http://h:8265 --working-dir /p --submission-id run-1 --no-wait -- "
        "python -m augment.run --portion 0.1 --executor ray"
    )


def test_check_paths(fake_project):
    notes: list[str] = []
    ok = submit.augment_command(
        ["--portion", "0.5", "--checkpoint", "job_inputs/small.pt", "--data", "/mnt/d", "--out", "/mnt/o"]
    )
    submit.check_paths(ok, fake_project, notes.append)
    assert notes == ["--data /mnt/d: read on the cluster nodes; it must exist there (shared storage)"]
    for rel, message in [
        ("runs/generators/patn-synth/checkpoints/latest.pt", "not uploaded"),
        ("model.pt", "not uploaded"),
        ("missing.pt", "no such path"),
        ("../outside.pt", "no such"),
    ]:
        with pytest.raises(submit.SubmitError, match=message):
            submit.check_paths(
                submit.augment_command(["--portion", "0.5", "--checkpoint", rel]), fake_project, notes.append
            )
    notes.clear()
    submit.check_paths(submit.augment_command(["--portion", "0.5"]), fake_project, notes.append)
    assert any("embedded dataset" in n for n in notes) and any("--out" in n for n in notes)


def test_runtime_env_relies_on_ignore_files_and_can_install_dependencies(tmp_path):
    env = submit.runtime_env(ROOT)
    assert env["working_dir"] == str(ROOT) and "excludes" not in env and "pip" not in env
    deps = submit.runtime_env(ROOT, pip=True)["pip"]["packages"]
    assert "torch==2.15.0" in deps and not [d for d in deps if d.startswith("ray")]


def test_main_dry_run_and_errors(capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    assert (
        submit.main(["--address", "http://h:8265", "--dry-run", "--", "--ratio", "2", "--data", "/d", "--out", "/o"])
        == 0
    )
    out = capsys.readouterr().out
    assert "ray job submit --address http://h:8265 --working-dir" in out and out.rstrip().endswith(
        "python -m augment.run --ratio 2 --data /d --out /o --executor ray"
    )
    assert submit.main(["--dry-run", "--", "--ratio", "2"]) == 2
    assert "--address" in capsys.readouterr().err
    assert submit.main(["--address", "http://h:8265", "--working-dir", "/", "--", "--ratio", "2"]) == 2
    assert "not the project folder" in capsys.readouterr().err
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    assert submit.main(["--address", "http://h:8265", "--token-env", "NO_SUCH_TOKEN_VAR", "--", "--ratio", "2"]) == 2
    assert "NO_SUCH_TOKEN_VAR" in capsys.readouterr().err


def test_main_reports_an_unreachable_head(capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # port 9 (discard) on loopback: nothing listens, the connection is refused at once
    assert submit.main(["--address", "http://127.0.0.1:9", "--", "--ratio", "2", "--data", "/d", "--out", "/o"]) == 1
    assert "cannot reach the Ray job API at http://127.0.0.1:9" in capsys.readouterr().err
