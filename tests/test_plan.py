"""Plans: protocols, keypoint policy, determinism, Parquet round trip."""

import numpy as np
import pandas as pd
import pytest

from augment.data.keypoints import JOINT_INDEX, MISSING
from augment.data.market import MarketName, parse_market_name
from augment.plan import (
    GENERATED,
    REAL,
    PlanSpec,
    TrainIndex,
    make_plan,
    read_plan,
    write_plan,
)


def make_index(counts=(5, 3, 1, 8), seed=0, drop_torso=()):
    """An index with len(counts) identities; ``drop_torso`` lists image positions lacking Rhip."""
    rng = np.random.default_rng(seed)
    names, pids, cams = [], [], []
    for i, c in enumerate(counts):
        pid = 2 + 3 * i
        for j in range(c):
            cam = 1 + (j % 6)
            names.append(MarketName(pid, cam, 1, 1000 * i + j, 1).filename())
            pids.append(pid)
            cams.append(cam)
    n = len(names)
    kps = np.stack([rng.integers(0, 128, (n, 18)), rng.integers(0, 64, (n, 18))], -1).astype(np.int32)
    for k in drop_torso:
        kps[k, JOINT_INDEX["Rhip"]] = MISSING
    return TrainIndex(tuple(names), np.array(pids), np.array(cams), kps, np.ones(n, bool), "fp")


def test_portion_protocol_rules():
    idx = make_index()
    plan = make_plan(idx, PlanSpec("portion", portion=0.4, seed=3))
    t = plan.table
    real, gen = t[t.kind == REAL], t[t.kind == GENERATED]
    # per identity: max(1, round(p n)) kept, the rest generated
    for pid, n in zip([2, 5, 8, 11], [5, 3, 1, 8]):
        assert (real.pid == pid).sum() == max(1, round(0.4 * n))
        assert (gen.pid == pid).sum() == n - max(1, round(0.4 * n))
    assert len(t) == len(idx.names)
    # generated: source is a kept image of the same identity, target pose is a removed image,
    # output name keeps pid and the removed image's camera, tagged so it is no real name
    kept = set(real.output_name)
    for row in gen.itertuples():
        assert row.source_name in kept
        assert parse_market_name(row.source_name).pid == row.pid == row.label
        assert row.target_pose_name not in kept and parse_market_name(row.target_pose_name).pid == row.pid
        mn = parse_market_name(row.output_name)
        assert mn.is_generated and mn.pid == row.pid and mn.camera == row.camera
        assert mn.camera == parse_market_name(row.target_pose_name).camera
        i = idx.names.index(row.target_pose_name)
        np.testing.assert_array_equal(row.target_kps, idx.keypoints[i].reshape(-1))
    assert not set(t.output_name) & (set(idx.names) - kept)
    assert plan.summary["generated_rows"] == len(gen) and plan.summary["kept_real"] == len(real)


def test_portion_deterministic_and_nested():
    idx = make_index()
    a = make_plan(idx, PlanSpec("portion", portion=0.3, seed=1)).table
    b = make_plan(idx, PlanSpec("portion", portion=0.3, seed=1)).table
    pd.testing.assert_frame_equal(a, b)
    c = make_plan(idx, PlanSpec("portion", portion=0.3, seed=2)).table
    assert not a.equals(c)
    small = set(a[a.kind == REAL].output_name)
    big = make_plan(idx, PlanSpec("portion", portion=0.7, seed=1)).table
    assert small <= set(big[big.kind == REAL].output_name)


def test_full_portion_and_no_generate():
    idx = make_index()
    full = make_plan(idx, PlanSpec("portion", portion=1.0)).table
    assert (full.kind == REAL).all() and len(full) == len(idx.names)
    none = make_plan(idx, PlanSpec("portion", portion=0.5, generate=False))
    assert (none.table.kind == REAL).all() and none.summary["generated_rows"] == 0
    assert none.spec.name() == "portion0.5-none-s0"


def test_target_poses_kept():
    idx = make_index()
    plan = make_plan(idx, PlanSpec("portion", portion=0.4, target_poses="kept", seed=5))
    t = plan.table
    kept = set(t[t.kind == REAL].output_name)
    gen = t[t.kind == GENERATED]
    assert len(gen) > 0 and set(gen.target_pose_name) <= kept
    assert gen.target_pose_name.map(lambda n: parse_market_name(n).pid).ne(gen.pid).any()


def test_keypoint_policy_counts():
    # identity 8 has one image (kept), identity 2's images 0..4: make every image of identity 5 (positions 5..7)
    # unposeable, and one removed image of identity 11 unposeable
    idx = make_index(drop_torso=(5, 6, 7))
    plan = make_plan(idx, PlanSpec("portion", portion=0.4, seed=3))
    sk = plan.summary["skipped_generated"]
    assert sk["no_poseable_source"] == 3 - 1  # identity 5: 1 kept (unposeable), 2 removed, no source
    gen = plan.generated()
    assert not (gen.pid == 5).any()
    assert len(plan.table) + sum(sk.values()) == len(idx.names)
    # a removed image without torso joints cannot be a target pose
    kept = set(plan.table[plan.table.kind == REAL].output_name)
    removed_11 = [i for i, n in enumerate(idx.names) if n.startswith("0011") and n not in kept]
    idx2 = make_index(drop_torso=(removed_11[0],))
    plan2 = make_plan(idx2, PlanSpec("portion", portion=0.4, seed=3))
    assert plan2.summary["skipped_generated"]["target_not_poseable"] == 1
    assert plan2.summary["images_not_poseable"] == 1


@pytest.mark.parametrize("protocol,k", [("ratio", 1), ("ratio", 2), ("poses", 10)])
def test_pose_sampling(protocol, k):
    idx = make_index(drop_torso=(0,))
    plan = make_plan(idx, PlanSpec(protocol, per_image=k, seed=4))
    t = plan.table
    assert (t.kind == REAL).sum() == len(idx.names)
    gen = t[t.kind == GENERATED]
    poseable = [n for n, p in zip(idx.names, idx.poseable) if p]
    assert len(gen) == k * len(poseable)
    assert plan.summary["skipped_generated"]["source_not_poseable"] == k
    assert (gen.source_name != gen.target_pose_name).all()
    assert set(gen.target_pose_name) <= set(poseable)
    assert (gen.groupby("source_name").size() == k).all()
    assert (gen.label == gen.source_name.map(lambda n: parse_market_name(n).pid)).all()
    assert t.output_name.is_unique
    if k >= 2:  # targets come from any identity
        assert (gen.target_pose_name.map(lambda n: parse_market_name(n).pid) != gen.pid).any()


def test_bad_specs():
    idx = make_index()
    for spec, msg in [
        (PlanSpec("portion", portion=0.0), "--portion"),
        (PlanSpec("portion", portion=1.5), "--portion"),
        (PlanSpec("ratio", per_image=0), "--ratio: must be >= 2, got 1"),
        (PlanSpec("poses", per_image=0), "--poses-per-image: must be >= 1"),
        (PlanSpec("portion", portion=0.5, seed=-1), "--seed: must be >= 0"),
        (PlanSpec("nope"), "unknown protocol"),
        (PlanSpec("portion", portion=0.5, target_poses="all"), "--target-poses"),
    ]:
        with pytest.raises(ValueError, match=msg):
            make_plan(idx, spec)


def test_parquet_round_trip(tmp_path):
    idx = make_index()
    plan = make_plan(idx, PlanSpec("portion", portion=0.4, seed=3))
    p = write_plan(plan, tmp_path / "plan.parquet")
    back = read_plan(p)
    assert back.spec == plan.spec and back.summary == plan.summary
    assert back.plan_hash() == plan.plan_hash()
    assert back.table.output_name.tolist() == plan.table.output_name.tolist()
    np.testing.assert_array_equal(np.stack(back.table.target_kps), np.stack(plan.table.target_kps))
