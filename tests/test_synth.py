"""The embedded dataset: determinism, Market-1501 validity, keypoints, left/right, pairs, knobs, CLI."""

import ast
import hashlib
import importlib
import json
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from augment import synth
from augment.data.keypoints import (
    ANNOTATION_FILES,
    JOINT_INDEX,
    MISSING,
    PAIRS_FILES,
    build_pairs,
    joints_present,
    match_images,
    read_annotations,
    read_dataset_annotations,
    read_pairs,
)
from augment.data.market import MARKET_DIRS, ImageRecord, parse_market_name, read_market
from augment.synth import (
    GARMENT_PALETTE,
    SynthConfig,
    default_pose,
    difficulty_knobs,
    draw_person,
    make_camera,
    render_dataset,
    render_person,
    render_sample,
    sample_identity,
    sample_pose,
)

J = JOINT_INDEX


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def file_records(root: Path, split: str) -> list[ImageRecord]:
    """Every image file of a split folder, junk included (read_market skips junk)."""
    out = []
    for p in sorted((root / MARKET_DIRS[split]).iterdir()):
        mn = parse_market_name(p.name)
        out.append(ImageRecord(p.name, p, split, mn.pid, mn.camera, p.stat().st_size))
    return out


def some_identities(n: int, cfg: SynthConfig = SynthConfig()) -> list:
    return [sample_identity(np.random.default_rng([123, i]), cfg) for i in range(n)]


# ----------------------------------------------------------------------------- determinism


def test_render_twice_is_byte_identical(tiny_market, tiny_market_config, tmp_path):
    again = render_dataset(tiny_market_config, tmp_path / "again", log=None)
    a, b = all_files(tiny_market), all_files(again)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert any(k.endswith(".jpg") for k in a) and "market-annotation-test.csv" in a and "preview.png" in a


def test_worker_processes_do_not_change_output(tiny_market, tiny_market_config, tmp_path):
    two = render_dataset(tiny_market_config, tmp_path / "two", workers=2, log=None)
    assert all_files(two) == all_files(tiny_market)


def test_other_seed_gives_other_images(tiny_market, tmp_path):
    other = render_dataset(SynthConfig.tiny(seed=1), tmp_path / "seed1", preview=False, log=None)
    a, b = all_files(tiny_market), all_files(other)
    assert a["market-annotation-train.csv"] != b["market-annotation-train.csv"]
    common = [k for k in a if k.endswith(".jpg") and k in b]
    assert all(a[k] != b[k] for k in common)


def test_single_image_deterministic_from_its_seeds():
    cfg = SynthConfig()
    ident = sample_identity(np.random.default_rng([5, 1]), cfg)
    cam = make_camera(0, 3)

    def one():
        rng = np.random.default_rng([0, 4, 7, 2])
        return render_sample(cfg, cam, ident, sample_pose(rng, cfg, ident, cam, 30.0), rng)

    (img1, kp1), (img2, kp2) = one(), one()
    assert img1.shape == (128, 64, 3) and img1.dtype == np.uint8
    assert np.array_equal(img1, img2) and np.array_equal(kp1, kp2)


# ----------------------------------------------------------------------------- Market-1501 validity


def test_reader_counts(tiny_market, tiny_market_config):
    cfg = tiny_market_config
    ds = read_market(tiny_market)
    lo, hi = cfg.images_per_id
    train_ids = {r.pid for r in ds.train}
    test_ids = {r.pid for r in ds.query}
    assert len(train_ids) == cfg.train_ids and len(test_ids) == cfg.test_ids
    assert cfg.train_ids * lo <= len(ds.train) <= cfg.train_ids * hi
    test_images = [r for r in ds.gallery + ds.query if r.pid > 0]
    assert cfg.test_ids * lo <= len(test_images) <= cfg.test_ids * hi
    assert {r.pid for r in ds.gallery} == test_ids | {0}
    assert sum(r.pid == 0 for r in ds.gallery) == cfg.distractor_images
    assert ds.skipped.counts == Counter({"junk (-1) images in gallery": cfg.junk_images})
    assert {r.camera for r in ds.records()} == set(range(1, cfg.cameras + 1))
    for r in ds.records():
        assert r.path.suffix == ".jpg"
        assert r.path.read_bytes()[:2] == b"\xff\xd8"  # JPEG


def test_images_are_128x64_rgb(tiny_market):
    import cv2

    for p in list((tiny_market / "query").iterdir())[:5]:
        img = cv2.imread(str(p))
        assert img.shape == (128, 64, 3)
        assert img.std() > 10  # not blank


def test_splits_identities_and_cameras(tiny_market):
    ds = read_market(tiny_market)
    train_ids = {r.pid for r in ds.train}
    test_ids = {r.pid for r in ds.gallery + ds.query if r.pid > 0}
    assert not train_ids & test_ids
    cams = defaultdict(set)
    for r in ds.records():
        if r.pid > 0:
            cams[r.pid].add(r.camera)
    assert min(len(c) for c in cams.values()) >= 2


def test_query_one_per_identity_and_camera(tiny_market):
    ds = read_market(tiny_market)
    q = Counter((r.pid, r.camera) for r in ds.query)
    assert set(q.values()) == {1}
    test_pairs = {(r.pid, r.camera) for r in ds.gallery + ds.query if r.pid > 0}
    assert set(q) == test_pairs
    gallery_cams = defaultdict(set)
    for r in ds.gallery:
        gallery_cams[r.pid].add(r.camera)
    for pid, cam in q:  # every query has a cross-camera true match in the gallery
        assert gallery_cams[pid] - {cam}


def test_junk_and_distractors_in_gallery_only(tiny_market, tiny_market_config):
    names = {split: [p.name for p in (tiny_market / d).iterdir()] for split, d in MARKET_DIRS.items()}
    for split in ("train", "query"):
        assert not [n for n in names[split] if n.startswith(("-1", "0000"))]
    assert sum(n.startswith("-1_") for n in names["gallery"]) == tiny_market_config.junk_images
    assert sum(n.startswith("0000_") for n in names["gallery"]) == tiny_market_config.distractor_images


def test_annotations_cover_exactly_the_files(tiny_market):
    train = read_annotations(tiny_market / ANNOTATION_FILES["train"], strict=True)
    test = read_annotations(tiny_market / ANNOTATION_FILES["test"], strict=True)
    for ann, records in (
        (train, file_records(tiny_market, "train")),
        (test, file_records(tiny_market, "gallery") + file_records(tiny_market, "query")),
    ):
        kept, report = match_images(ann, records, strict=True)
        assert len(kept) == len(records) == len(ann) and report.total() == 0
    # Through the reader (which skips junk), every indexed image has a row.
    merged = read_dataset_annotations(tiny_market, strict=True)
    _, report = match_images(merged, list(read_market(tiny_market).records()))
    assert report.counts.get("images without an annotation row", 0) == 0


def test_keypoints_inside_image_or_missing(tiny_market):
    for split in ("train", "test"):
        ann = read_annotations(tiny_market / ANNOTATION_FILES[split], strict=True)
        c = ann.coords
        missing = c == MISSING
        assert (missing[..., 0] == missing[..., 1]).all()
        y, x = c[..., 0][~missing[..., 0]], c[..., 1][~missing[..., 1]]
        assert (y >= 0).all() and (y < 128).all() and (x >= 0).all() and (x < 64).all()
        assert ann.present().any(0).all()  # every joint type appears somewhere


def test_pairs_files_follow_the_community_rule(tiny_market):
    for split, sample in (("train", None), ("test", 12000)):
        ann = read_annotations(tiny_market / ANNOTATION_FILES[split])
        expected = build_pairs(ann, sample=sample, random_state=0)
        got = read_pairs(tiny_market / PAIRS_FILES[split])
        assert len(got) > 0
        assert got.equals(expected)
        assert not got["from"].str.startswith(("-1", "0000")).any()
        assert (got["from"].str[:4] == got["to"].str[:4]).all()


def test_config_file_and_preview(tiny_market, tiny_market_config):
    marker = json.loads((tiny_market / synth.CONFIG_FILE).read_text())
    assert marker["complete"] and SynthConfig.from_json(marker["config"]) == tiny_market_config
    assert synth.is_complete(tiny_market, tiny_market_config)
    assert not synth.is_complete(tiny_market, SynthConfig.tiny(seed=3))
    assert (tiny_market / synth.PREVIEW_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- keypoints and poses


@pytest.mark.parametrize("phase", [0.0, 1.3, 2.9, 4.4])
def test_left_right_front_and_back(phase):
    for ident in some_identities(8):
        _, front = render_person(ident, default_pose(heading=0.0, phase=phase))
        _, back = render_person(ident, default_pose(heading=180.0, phase=phase))
        # (y, x): x is column 1. Front view: the person's right is on the image's left.
        for r, l in (("Rsho", "Lsho"), ("Rhip", "Lhip"), ("Reye", "Leye"), ("Rear", "Lear")):
            assert front[J[r], 1] < front[J[l], 1], (r, front)
        for r, l in (("Rsho", "Lsho"), ("Rhip", "Lhip"), ("Rear", "Lear")):
            assert back[J[r], 1] > back[J[l], 1], (r, back)


def test_face_points_by_view():
    ident = some_identities(1)[0]
    kp = {h: render_person(ident, default_pose(heading=h))[1] for h in (0.0, 90.0, 180.0, 270.0)}
    present = {h: {n for n, i in J.items() if (k[i] != MISSING).all()} for h, k in kp.items()}
    face = {"nose", "Reye", "Leye", "Rear", "Lear"}
    assert face <= present[0.0]
    assert present[180.0] & face == {"Rear", "Lear"}  # back view: no nose, no eyes
    # Facing image right, the person's left side is away from the camera, and vice versa.
    assert {"nose", "Reye", "Rear"} <= present[90.0] and not {"Leye", "Lear"} & present[90.0]
    assert {"nose", "Leye", "Lear"} <= present[270.0] and not {"Reye", "Rear"} & present[270.0]
    # Side view: the nose is ahead of the ear in the walking direction.
    assert kp[90.0][J["nose"], 1] > kp[90.0][J["Rear"], 1]
    assert kp[270.0][J["nose"], 1] < kp[270.0][J["Lear"], 1]


def test_keypoints_lie_on_the_drawn_body():
    grey = np.full((128, 64, 3), 128, np.uint8)
    for k, ident in enumerate(some_identities(6)):
        img, kp = render_person(ident, default_pose(heading=45.0 * k, phase=0.7 * k), background=grey)
        for name in ("neck", "Rsho", "Lsho", "Rhip", "Lhip", "Rkne", "Lkne", "Rank", "Lank", "nose"):
            y, x = kp[J[name]]
            if y == MISSING:
                continue
            assert (img[y, x] != 128).any(), (name, k)
        body = (img != 128).any(-1)
        assert body[: kp[J["neck"], 0]].any()  # the head is drawn above the neck
        assert abs(np.nonzero(body)[1].mean() - 31.5) < 5  # centred on the pose's axis


def test_walking_moves_the_limbs():
    ident = some_identities(1)[0]
    kps = np.array([render_person(ident, default_pose(heading=90.0, phase=p))[1] for p in np.linspace(0, 6, 7)])
    assert np.ptp(kps[:, J["Rank"], 1]) > 10 and np.ptp(kps[:, J["Rwri"], 1]) > 3  # legs and arms swing
    assert np.ptp(kps[:, J["neck"], 1]) <= 3  # the trunk stays put


def test_truncation_and_occluders_remove_keypoints():
    cfg = SynthConfig()
    ident = some_identities(1)[0]
    cam = make_camera(0, 0)
    removed = 0
    for s in range(30):
        pose = sample_pose(np.random.default_rng([s]), cfg, ident, cam, 0.0, truncate=False)
        _, free = render_sample(cfg, cam, ident, pose, np.random.default_rng([s, 1]), occluder=False)
        _, occ = render_sample(cfg, cam, ident, pose, np.random.default_rng([s, 1]), occluder=True)
        free_present, occ_present = (free != MISSING).all(-1), (occ != MISSING).all(-1)
        assert not (occ_present & ~free_present).any()
        assert np.array_equal(free[occ_present], occ[occ_present])
        removed += int((free_present & ~occ_present).sum())
    assert removed > 0
    cut = [sample_pose(np.random.default_rng([s]), cfg, ident, cam, 0.0, truncate=True) for s in range(20)]
    out_of_frame = [(render_person(ident, p)[1] == MISSING).all(-1).sum() for p in cut]
    assert sum(out_of_frame) > 0


def test_most_images_have_the_torso_joints():
    cfg = SynthConfig()
    kps = []
    for i in range(60):
        rng = np.random.default_rng([9, i])
        ident = sample_identity(rng, cfg)
        cam = make_camera(0, i % 6)
        kps.append(render_sample(cfg, cam, ident, sample_pose(rng, cfg, ident, cam, 60.0 * i), rng)[1])
    assert joints_present(np.array(kps)).mean() >= 0.9


# ----------------------------------------------------------------------------- identities and knobs


def test_identity_sampling_is_seeded_and_varied():
    cfg = SynthConfig()
    a = sample_identity(np.random.default_rng([1, 2]), cfg)
    assert a == sample_identity(np.random.default_rng([1, 2]), cfg)
    many = some_identities(40, cfg)
    assert len({i.upper_colour for i in many}) > 10
    assert {i.lower_type for i in many} == {"trousers", "shorts", "skirt"}
    assert len({i.upper_pattern for i in many}) == 4


def test_share_prob_and_palette_size_control_difficulty():
    easy = some_identities(40, SynthConfig(share_prob=0.0, palette_size=24))
    shared = SynthConfig(share_prob=1.0, archetypes=2)
    hard = some_identities(40, shared)
    outfits = {(o["upper_colour"], o["lower_colour"]) for o in synth.archetype_outfits(shared)}
    assert {(i.upper_colour, i.lower_colour) for i in hard} <= outfits
    assert len({(i.upper_colour, i.lower_colour) for i in easy}) == 40
    one_colour = some_identities(20, SynthConfig(share_prob=0.0, palette_size=1, colour_jitter=0.0))
    assert {i.upper_colour for i in one_colour} == {tuple(float(v) for v in GARMENT_PALETTE[0][1])}
    assert difficulty_knobs(0.0) == (24, 0.1) and difficulty_knobs(1.0) == (8, 0.8)
    with pytest.raises(ValueError, match="--difficulty"):
        difficulty_knobs(1.5)


@pytest.mark.parametrize(
    "bad, flag",
    [
        (dict(images_per_id=(3, 5)), "--images-per-id"),
        (dict(palette_size=0), "--palette-size"),
        (dict(share_prob=1.5), "--share-prob"),
        (dict(cameras=7), "--cameras"),
    ],
)
def test_bad_config_names_the_flag(bad, flag):
    with pytest.raises(ValueError, match=flag):
        SynthConfig(**bad)


# ----------------------------------------------------------------------------- output directory and CLI


def test_refuses_foreign_or_different_directory(tmp_path):
    cfg = SynthConfig.tiny(train_ids=2, test_ids=2, junk_images=0, distractor_images=0)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an augment.synth output"):
        render_dataset(cfg, foreign, log=None)
    render_dataset(cfg, foreign, overwrite=True, preview=False, log=None)
    assert (foreign / "notes.txt").read_text() == "mine" and (foreign / "bounding_box_train").is_dir()
    with pytest.raises(FileExistsError, match="different config.*seed=0->5"):
        render_dataset(
            SynthConfig.tiny(seed=5, train_ids=2, test_ids=2, junk_images=0, distractor_images=0), foreign, log=None
        )
    before = all_files(foreign)
    render_dataset(cfg, foreign, preview=False, log=None)  # same config: rendered again, identical
    assert all_files(foreign) == before


def test_cli_prints_statistics(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = synth.main(
        [
            "--out",
            str(out),
            "--train-ids",
            "3",
            "--test-ids",
            "3",
            "--images-per-id",
            "4",
            "5",
            "--junk",
            "2",
            "--distractors",
            "1",
            "--difficulty",
            "1",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "images/s" in text and "images without all four torso joints" in text and "pairs: train" in text
    assert "read back:   query" in text and "skipped 2 junk" in text
    assert (out / "preview.png").is_file()
    cfg = SynthConfig.from_json(json.loads((out / synth.CONFIG_FILE).read_text())["config"])
    assert (cfg.palette_size, cfg.share_prob, cfg.train_ids) == (8, 0.8, 3)
    with pytest.raises(SystemExit):
        synth.main(["--out", str(tmp_path / "bad"), "--images-per-id", "2", "3"])
    assert "--images-per-id" in capsys.readouterr().err
    assert synth.main(["--out", str(out), "--seed", "4"]) == 2  # different config: refused
    assert "--overwrite" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the package

# The modules of augment.synth, lowest first: each imports only modules before it (type-only imports aside).
SYNTH_MODULES = (
    "seeds",
    "drawing",
    "appearance",
    "body",
    "person",
    "scenes",
    "config",
    "jobs",
    "preview",
    "writer",
    "cli",
)


@pytest.mark.parametrize("name", SYNTH_MODULES)
def test_package_modules_import_and_point_down(name):
    module = importlib.import_module(f"augment.synth.{name}")
    tree = ast.parse(Path(module.__file__).read_text())
    type_only = {
        id(node)
        for stmt in tree.body
        if isinstance(stmt, ast.If) and ast.unparse(stmt.test) == "TYPE_CHECKING"
        for node in ast.walk(stmt)
    }
    imported = {
        node.module.split(".")[2]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("augment.synth.")
        and id(node) not in type_only
    }
    allowed = set(SYNTH_MODULES[: SYNTH_MODULES.index(name)])
    assert imported <= allowed, f"augment.synth.{name} imports upward: {sorted(imported - allowed)}"


def test_package_reexports_its_public_names():
    assert set(synth.__all__) <= set(dir(synth))
    for name in ("embedded_dataset", "DEFAULT_OUT", "SynthConfig", "render_dataset", "main", "PREVIEW_BONES"):
        assert name in synth.__all__


# (identity overrides, heading, phase): together they reach every garment, hair, accessory and view branch
# of draw_person (patterns, sleeves, lower garments, hair styles, backpack in front / behind / straps, bag on
# either side, hat; arms behind the torso in side views).
DRAW_CASES = (
    (dict(upper_pattern="solid", sleeves="long", lower_type="trousers", hair_style="short", accessory="none"), 0, 0.0),
    (
        dict(upper_pattern="stripes", sleeves="short", lower_type="skirt", hair_style="long", accessory="backpack"),
        20,
        0.9,
    ),
    (
        dict(
            upper_pattern="two-tone",
            sleeves="long",
            lower_type="shorts",
            hair_style="bun",
            accessory="bag",
            bag_side=-1.0,
        ),
        60,
        1.7,
    ),
    (dict(upper_pattern="logo", sleeves="short", lower_type="trousers", hair_style="bald", accessory="hat"), 100, 2.5),
    (
        dict(upper_pattern="logo", sleeves="long", lower_type="skirt", hair_style="medium", accessory="backpack"),
        150,
        3.3,
    ),
    (
        dict(
            upper_pattern="stripes",
            sleeves="long",
            lower_type="shorts",
            hair_style="long",
            accessory="bag",
            bag_side=1.0,
        ),
        180,
        4.1,
    ),
    (
        dict(upper_pattern="two-tone", sleeves="short", lower_type="trousers", hair_style="short", accessory="hat"),
        230,
        4.9,
    ),
    (
        dict(upper_pattern="logo", sleeves="short", lower_type="shorts", hair_style="bun", accessory="backpack"),
        270,
        5.7,
    ),
    (
        dict(
            upper_pattern="solid",
            sleeves="short",
            lower_type="skirt",
            hair_style="long",
            accessory="bag",
            bag_side=-1.0,
        ),
        315,
        0.4,
    ),
    (
        dict(upper_pattern="logo", sleeves="long", lower_type="trousers", hair_style="long", accessory="backpack"),
        0,
        2.0,
    ),
)
# sha256 of the images, keypoints and visibilities below, computed with the code as it was BEFORE augment.synth
# was split into modules (one 1,750-line module, draw_person with closures): the split must not change a pixel.
# It depends on OpenCV's and NumPy's arithmetic: recompute it (from a known-good commit) after upgrading them.
DRAW_PERSON_SHA256 = "628ea25f1b58661c61db75d6bd2d752cecdafe7a78c9e3d1f97d3116f755205b"


def test_draw_person_output_is_unchanged_by_the_split():
    base = sample_identity(np.random.default_rng([7, 7]), SynthConfig())
    digest = hashlib.sha256()
    for overrides, heading, phase in DRAW_CASES:
        img = np.full((128, 64, 3), 128, np.uint8)
        kp, vis = draw_person(img, replace(base, **overrides), default_pose(heading=float(heading), phase=phase))
        digest.update(img.tobytes())
        digest.update(np.ascontiguousarray(kp, "<f8").tobytes())
        digest.update(vis.tobytes())
    assert digest.hexdigest() == DRAW_PERSON_SHA256


def test_population_gives_other_people_with_the_same_cameras(tmp_path):
    """Population 1 shares cameras and scenes with population 0 but no image and no identity appearance;
    population 0 is the default rendering, unchanged (the byte-identity tests above pin it)."""
    from augment.synth.scenes import make_camera

    base, other = SynthConfig.tiny(), SynthConfig.tiny(population=1)
    assert other != base and SynthConfig.from_json(base.to_json()) == base
    digests = {}
    for cfg in (base, other):
        root = synth.render_dataset(cfg, tmp_path / f"pop{cfg.population}", preview=False, log=None)
        files = sorted((root / "bounding_box_train").glob("*.jpg"))
        digests[cfg.population] = {hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
        assert len(files) > 10
    assert not digests[0] & digests[1]
    assert np.array_equal(make_camera(base.seed, 2).background, make_camera(other.seed, 2).background)
    with pytest.raises(ValueError, match="--population"):
        SynthConfig(population=-1)
