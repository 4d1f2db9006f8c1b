"""python -m augment.annotate on the tiny embedded dataset, without the real OpenPose weights.

Random weights (scaled so the maps reach O(1), as the phase-1 OpenPose tests make them) run the real network;
its rows must equal :mod:`generators.quality` called directly (whose decoding the phase-1 tests pin to the
reference OpenPose code). Random weights find few people, so a stand-in network returning hand-made
heatmaps and PAFs drives the detections, the torso rule, the histogram and the pairs. A small search
(one scale, boxsize 64) keeps the real network cheap.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import jpeg, tree_digest

import augment.annotate as annotate_mod
from augment.annotate import (
    PROGRESS_DIR,
    REPORT_FILE,
    AnnotateOptions,
    AnnotateWeightsError,
    annotate,
    build_parser,
    main,
    options_from_args,
    resolve_out,
    work_order,
)
from augment.annotate_report import agreement, joint_agreement
from augment.data.imageio import read_rgb
from augment.data.keypoints import (
    ANNOTATION_FILES,
    DEFAULT_TEST_PAIRS,
    PAIRS_FILES,
    Annotations,
    build_pairs,
    joints_present,
    read_annotations,
    read_pairs,
)
from augment.data.market import read_market
from augment.runtime import UsageError
from generators.quality.openpose import BodyPoseNet, load_body_pose
from generators.quality.pckh import pckh
from generators.quality.pose_decode import LIMBS, PAF_INDEX, PoseConfig, decode, detect_keypoints

SMALL = PoseConfig(scales=(1.0,), boxsize=64)  # 128x64 images seen at 64x32: random weights find people
OUTPUTS = (*ANNOTATION_FILES.values(), *PAIRS_FILES.values())


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Random weights in body_pose_model.pth's layout, gains set so that peaks (and some limbs) appear."""
    torch.manual_seed(0)
    net = BodyPoseNet()
    state = {k.removeprefix("layers."): v.clone() for k, v in net.state_dict().items()}
    for name, value in state.items():
        if name.endswith(".weight"):
            value.mul_(math.sqrt(6.0))
    for name in ("Mconv7_stage6_L1", "Mconv7_stage6_L2"):
        state[f"{name}.bias"].zero_()
    net.load_state_dict({f"layers.{k}": v for k, v in state.items()})
    with torch.no_grad():
        paf, heat = net(torch.rand(1, 3, 48, 24) - 0.5)
    state["Mconv7_stage6_L1.weight"] /= paf.std()
    state["Mconv7_stage6_L2.weight"] /= heat.std() * 2
    path = tmp_path_factory.mktemp("openpose") / "body_pose_model.pth"
    torch.save(state, path)
    return path


def options(data: Path, out: Path, weights: Path, **kw) -> AnnotateOptions:
    base = dict(data=data, out=out, weights=weights, pose=SMALL, batch_size=4, shard_size=8, progress=False)
    return AnnotateOptions(**(base | kw))


@pytest.fixture(scope="module")
def full_run(tiny_market, weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("annotate") / "full"
    report = annotate(options(tiny_market, out, weights), log=None)
    return out, report


def test_rows_are_generators_quality_keypoints(tiny_market, weights, full_run):
    out, report = full_run
    dataset = read_market(tiny_market)
    train = read_annotations(out / ANNOTATION_FILES["train"], strict=True)  # the 128x64 frame holds
    test = read_annotations(out / ANNOTATION_FILES["test"], strict=True)
    assert train.names == sorted(r.name for r in dataset.train)
    assert test.names == sorted(r.name for s in ("gallery", "query") for r in dataset.split(s))
    # the first 16 images in work order: two shards of two batches of 4, as the run batched them
    records = work_order(dataset)[:16]
    direct = detect_keypoints(load_body_pose(weights), np.stack([read_rgb(r.path) for r in records]), SMALL, 4)
    both = train.merged(test)
    np.testing.assert_array_equal(both.get_many([r.name for r in records]), direct)
    assert (both.coords != -1).any()  # the random weights did find people
    assert report.annotated == len(both) == sum(report.images.values()) and not report.failures
    assert report.shards == 8 and report.resumed_shards == 0


def test_pairs_follow_the_community_rule(full_run):
    out, _ = full_run
    for key, sample in (("train", None), ("test", DEFAULT_TEST_PAIRS)):
        ann = read_annotations(out / ANNOTATION_FILES[key])
        expected = build_pairs(ann, sample=sample, random_state=0)
        assert read_pairs(out / PAIRS_FILES[key]).equals(expected)


def test_report_counts(full_run):
    out, report = full_run
    both = read_annotations(out / ANNOTATION_FILES["train"]).merged(read_annotations(out / ANNOTATION_FILES["test"]))
    found = both.present().sum(axis=1)
    assert report.joints_histogram == np.bincount(found, minlength=19).tolist()
    assert report.no_torso == int((~joints_present(both.coords)).sum())
    assert set(report.agreement) == {"train", "test"}  # the tiny dataset ships its ground-truth CSVs
    saved = json.loads((out / REPORT_FILE).read_text())
    assert saved["annotated"] == report.annotated and saved["agreement"]["train"]["images"] == report.images["train"]


class Interrupted(Exception):
    pass


def test_resume_after_an_interruption_equals_an_uninterrupted_run(
    tiny_market, weights, full_run, tmp_path, monkeypatch
):
    out = tmp_path / "resumed"
    calls = itertools.count(1)

    def failing_read(path):
        if next(calls) > 20:  # the 21st image read: in the third shard
            raise Interrupted
        return read_rgb(path)

    monkeypatch.setattr(annotate_mod, "read_rgb", failing_read)
    with pytest.raises(Interrupted):
        annotate(options(tiny_market, out, weights), log=None)
    shards = sorted((out / PROGRESS_DIR).glob("*/shard-*.json"))
    assert len(shards) == 2 and not any((out / name).exists() for name in OUTPUTS)

    read = []
    monkeypatch.setattr(annotate_mod, "read_rgb", lambda path: read.append(path) or read_rgb(path))
    report = annotate(options(tiny_market, out, weights), log=None)
    assert report.resumed_shards == 2 and len(read) == sum(report.images.values()) - 16
    full_out, full_report = full_run
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (full_out / name).read_bytes(), name
    assert {**report.to_json(), "out": "", "resumed_shards": 0} == {**full_report.to_json(), "out": ""}

    read.clear()  # a finished run reruns without the network: only the outputs are rewritten
    monkeypatch.setattr(annotate_mod, "load_body_pose", lambda *a, **k: pytest.fail("network loaded"))
    again = annotate(options(tiny_market, out, weights), log=None)
    assert not read and again.resumed_shards == again.shards


# ----------------------------------------------------------------------------------------------
# hand-made maps: detections


def _segment_paf(paf, xx, yy, a, b, channels) -> None:
    d = np.subtract(b, a, dtype=np.float64)
    length = np.linalg.norm(d)
    u = d / length
    t = np.clip(((xx - a[0]) * u[0] + (yy - a[1]) * u[1]) / length, 0, 1)
    near = np.hypot(xx - (a[0] + t * d[0]), yy - (a[1] + t * d[1])) <= 1.5
    paf[channels[0], near], paf[channels[1], near] = u[0], u[1]


def figure_maps(joints: dict[int, tuple[int, int]], h: int = 128, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(paf (38, H, W), heat (19, H, W)) of one person: a Gaussian blob per joint (x, y), unit PAF vectors
    within 1.5 px of every limb whose two joints exist."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    heat, paf = np.zeros((19, h, w)), np.zeros((38, h, w))
    for j, (x, y) in joints.items():
        heat[j] = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    for (ja, jb), (ca, cb) in zip(LIMBS, PAF_INDEX):
        if ja - 1 in joints and jb - 1 in joints:
            _segment_paf(paf, xx, yy, joints[ja - 1], joints[jb - 1], (ca - 19, cb - 19))
    heat[18] = np.clip(1 - heat[:18].max(axis=0), 0, 1)
    return paf, heat


# (x, y) in a 128x64 crop
PERSON = {0: (24, 12), 1: (24, 28), 2: (14, 28), 3: (12, 48), 4: (10, 66), 5: (34, 28), 6: (36, 48), 7: (38, 66)}
PERSON |= {8: (18, 68), 9: (18, 92), 10: (18, 116), 11: (30, 68), 12: (30, 92), 13: (30, 116), 14: (22, 8)}
PERSON |= {15: (26, 8), 16: (20, 10), 17: (28, 10)}
UPPER = {j: xy for j, xy in PERSON.items() if j not in (8, 9, 10, 11, 12, 13)}  # no hips: no torso
FIGURES = (PERSON, UPPER, {})


class CraftedMaps(torch.nn.Module):
    """Stands in for the body network: each image gets one of :data:`FIGURES` at the input's resolution,
    chosen by its pixels (so a batch's composition does not matter); ``chosen`` counts the choices."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))  # pose_maps asks the parameters for the device
        self.maps = [figure_maps(f) for f in FIGURES]
        self.chosen = [0, 0, 0]

    def forward(self, x):
        pafs, heats = [], []
        for img in x:
            k = int(abs(img.double().sum().item()) * 1000) % 3
            self.chosen[k] += 1
            pafs.append(torch.from_numpy(self.maps[k][0]).float())
            heats.append(torch.from_numpy(self.maps[k][1]).float())
        return torch.stack(pafs), torch.stack(heats)


def test_detections_from_hand_made_maps(tiny_market, weights, tmp_path, monkeypatch):
    """Scale 1 with boxsize = H: the resizes are identities and the network's maps are the image's."""
    net = CraftedMaps()
    monkeypatch.setattr(annotate_mod, "load_body_pose", lambda path: net)
    cfg = PoseConfig(scales=(1.0,), boxsize=128)
    report = annotate(options(tiny_market, tmp_path / "out", weights, pose=cfg), log=None)

    expected = [decode(torch.from_numpy(h[None]), torch.from_numpy(p[None]), cfg)[0] for p, h in net.maps]
    assert [tuple(expected[0][j]) for j in range(18)] == [(y, x) for x, y in PERSON.values()]
    assert (expected[1][8:14] == -1).all() and (expected[1][:8] >= 0).all() and (expected[2] == -1).all()
    both = read_annotations(tmp_path / "out" / ANNOTATION_FILES["train"]).merged(
        read_annotations(tmp_path / "out" / ANNOTATION_FILES["test"])
    )
    kinds = [next(k for k, e in enumerate(expected) if np.array_equal(row, e)) for row in both.coords]
    assert np.bincount(kinds, minlength=3).tolist() == net.chosen and min(net.chosen) > 0
    assert report.joints_histogram[18] == net.chosen[0] and report.joints_histogram[12] == net.chosen[1]
    assert report.joints_histogram[0] == net.chosen[2] and report.no_torso == net.chosen[1] + net.chosen[2]
    train_pairs = read_pairs(tmp_path / "out" / PAIRS_FILES["train"])
    assert len(train_pairs) == report.pairs["train"] > 0
    whole = set(n for n, k in zip(both.names, kinds) if k == 0)
    assert set(train_pairs["from"]) <= whole and set(train_pairs["to"]) <= whole


def test_unreadable_and_too_narrow_images_are_named_failures(tiny_market, weights, tmp_path, monkeypatch):
    data = tmp_path / "copy"
    shutil.copytree(tiny_market, data)
    train = sorted((data / "bounding_box_train").glob("*.jpg"))
    train[0].write_bytes(train[0].read_bytes()[:300])  # truncated JPEG
    train[1].write_bytes(jpeg(64, 6))  # 64x6 at the search scale: under the stride
    monkeypatch.setattr(annotate_mod, "load_body_pose", lambda path: CraftedMaps())
    report = annotate(options(data, tmp_path / "out", weights), log=None)
    assert set(report.failures) == {train[0].name, train[1].name}
    assert "truncated JPEG" in report.failures[train[0].name] and "stride" in report.failures[train[1].name]
    rows = read_annotations(tmp_path / "out" / ANNOTATION_FILES["train"])
    assert train[0].name not in rows and train[1].name not in rows and len(rows) == report.images["train"] - 2
    assert any(train[0].name in line for line in report.lines())


# ----------------------------------------------------------------------------------------------
# where the files go, and errors


def test_output_never_lands_in_the_dataset_by_default(tiny_market, weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_out(AnnotateOptions(data=tiny_market), tiny_market) == (
        Path("runs/annotate") / tiny_market.name,
        False,
    )
    before = tree_digest(tiny_market)
    with pytest.raises(UsageError, match="inside the dataset"):
        annotate(options(tiny_market, tiny_market / "bounding_box_train" / "kp", weights), log=None)
    with pytest.raises(UsageError, match="market-annotation-train.csv exists in the dataset"):
        annotate(options(tiny_market, tiny_market, weights), log=None)  # the community files stay
    assert tree_digest(tiny_market) == before


def test_out_equal_to_the_dataset_root(tiny_market, weights, tmp_path, monkeypatch):
    """Asked for explicitly, the CSVs go into a dataset that has none; a rerun may replace its own files."""
    data = tmp_path / "own"
    shutil.copytree(tiny_market, data)
    for name in OUTPUTS:
        (data / name).unlink()
    monkeypatch.setattr(annotate_mod, "load_body_pose", lambda path: CraftedMaps())
    first = annotate(options(data, data, weights), log=None)
    assert all((data / name).is_file() for name in OUTPUTS) and first.agreement == {}
    again = annotate(options(data, data, weights, shard_size=16), log=None)  # new run id: computed again
    assert again.resumed_shards == 0 and again.agreement == {}  # its own earlier files are no reference
    assert read_market(data).fingerprint() == read_market(tiny_market).fingerprint()


def test_missing_weights_name_the_file_and_the_flag(tiny_market, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(tiny_market), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "body_pose_model.pth" in err and "pose_estimator.h5" in err and "pytorch-openpose" in err
    assert "--weights PATH" in err and "--skip" not in err and "never downloads" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(AnnotateWeightsError):
        annotate(AnnotateOptions(data=tiny_market, out=tmp_path / "out", weights=tmp_path / "none.pth"), log=None)
    bad = tmp_path / "other.pth"
    torch.save({"conv1_1.weight": torch.zeros(1)}, bad)
    with pytest.raises(UsageError, match="--weights: .*not an OpenPose"):
        annotate(options(tiny_market, tmp_path / "out", bad), log=None)


def test_command_line_options(tiny_market):
    parse = lambda *args: options_from_args(build_parser().parse_args(["--data", str(tiny_market), *args]))
    opts = parse("--scales", "0.5,1", "2", "--batch-size", "8", "--layout", "market")
    assert opts.pose.scales == (0.5, 1.0, 2.0) and opts.pose.boxsize == 368 and opts.batch_size == 8
    assert parse().pose == PoseConfig()  # PATN's search by default
    with pytest.raises(UsageError, match="--scales"):
        parse("--scales", "0", "1")
    with pytest.raises(UsageError, match="--batch-size"):
        parse("--batch-size", "0").validate()


# ----------------------------------------------------------------------------------------------
# agreement


def test_agreement_is_pckh_per_joint(tiny_market):
    ref = read_annotations(tiny_market / ANNOTATION_FILES["train"])
    rng = np.random.default_rng(0)
    coords = ref.coords.copy()
    present = (coords != -1).all(-1)
    noise = rng.integers(-6, 7, size=(int(present.sum()), 2), dtype=np.int32)
    coords[present] = np.maximum(coords[present] + noise, 0)
    coords[rng.random(coords.shape[:2]) < 0.2] = -1  # some joints missed
    coords[~present & (rng.random(present.shape) < 0.3)] = 5  # some found where the file has none
    ours = Annotations(ref.names, coords)
    agree = agreement(ours, ref)
    counts = joint_agreement(coords, ref.coords)
    total = pckh(coords, ref.coords)
    assert counts["hits"].sum() == total.hits and counts["joints"].sum() == total.joints
    assert agree["pckh"] == pytest.approx(total.score) and agree["images"] == len(ref)
    assert sum(j["missed"] for j in agree["joints"].values()) == int((present & (coords == -1).all(-1)).sum())
    assert sum(j["extra"] for j in agree["joints"].values()) == int((~present & (coords == 5).all(-1)).sum())
    itself = agreement(ref, ref)
    assert itself["pckh"] == 1.0 and all(j["missed"] == j["extra"] == 0 for j in itself["joints"].values())
    assert all(j["same_pixel"] in (1.0, None) for j in itself["joints"].values())
