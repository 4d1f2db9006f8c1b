"""generators.compare: evaluations of the same pairs side by side; mismatched ones refused."""

import json

import numpy as np
import pytest

from augment.data.atomic import write_atomic
from augment.data.imageio import encode_image, read_rgb
from generators.compare import CompareError, compare, main, split_grid
from generators.evaluate import grid_image


def fake_eval(folder, method, generated_value, pairs_sha="abc", rows=3, h=16, w=8):
    """An evaluate-like folder whose grid panels are flat colours: panel c of row r = 10*r + c (+ method)."""
    folder.mkdir(parents=True)
    strips = [
        [np.full((h, w, 3), 10 * r + c + (generated_value if c == 4 else 0), np.uint8) for c in range(5)]
        for r in range(rows)
    ]
    write_atomic(folder / "grid.png", encode_image(grid_image(strips), ".png"))
    res = {k: {"mean": v} for k, v in zip(("ssim", "mask_ssim", "l1", "psnr"), (0.3, 0.8, 0.15, 14.0))}
    metrics = {
        "method": method,
        "preset": "synth",
        "iteration": 100,
        "pairs_sha256": pairs_sha,
        "pairs_evaluated": 50,
        "pairs_total": 12000,
        "dataset_fingerprint": "f",
        "results": {"generated": res, "copy_source": {k: {"mean": 0.1} for k in res}},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_split_grid_inverts_grid_image():
    strips = [[np.full((16, 8, 3), 10 * r + c, np.uint8) for c in range(5)] for r in range(4)]
    rows = split_grid(grid_image(strips))
    assert len(rows) == 4 and all(len(r) == 5 for r in rows)
    assert all((rows[r][c] == 10 * r + c).all() for r in range(4) for c in range(5))


def test_compare_puts_each_methods_output_beside_the_shared_panels(tmp_path):
    a = fake_eval(tmp_path / "a", "patn", 100)
    b = fake_eval(tmp_path / "b", "pg2", 200)
    image, table = compare([a, b])
    body = image[image.shape[0] - (3 * 16 + 2 * 2) :]  # below the header
    rows = split_grid(body, panels=5)
    # source, target pose (strip panel 3), target (panel 2), then each method's generated panel
    assert [int(p[0, 0, 0]) for p in rows[1]] == [10, 13, 12, 14 + 100, 14 + 200]
    assert "| patn/synth it 100 | 0.3000 | 0.8000 | 0.1500 | 14.00 |" in table
    assert table.strip().splitlines()[-1].startswith("| copy-source")
    assert main([str(a), str(b), "--out", str(tmp_path / "out" / "cmp")]) == 0
    assert read_rgb(tmp_path / "out" / "cmp.png").shape == image.shape


def test_evaluations_of_other_pairs_are_refused(tmp_path, capsys):
    a = fake_eval(tmp_path / "a", "patn", 100)
    b = fake_eval(tmp_path / "b", "pg2", 200, pairs_sha="other")
    with pytest.raises(CompareError, match="pairs_sha256"):
        compare([a, b])
    assert main([str(a), str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "missing: no metrics.json" in capsys.readouterr().err


def test_evaluations_under_other_protocols_are_refused_and_set_metrics_shown(tmp_path):
    a = fake_eval(tmp_path / "a", "patn", 100)
    b = fake_eval(tmp_path / "b", "pg2", 200)
    m = json.loads((b / "metrics.json").read_text())
    m["protocol"] = "pg2-2017"
    (b / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(CompareError, match="protocol"):
        compare([a, b])  # a has no protocol field: it was scored under direct
    for folder, fid in ((a, 30.5), (b, None)):
        m = json.loads((folder / "metrics.json").read_text())
        m.update(protocol="gfla2020", metrics=["fid", "ssim"])
        if fid is not None:
            m["results"]["generated"]["fid"] = {"value": fid, "n": 50}
            m["results"]["copy_source"]["fid"] = {"value": 80.25, "n": 50}
        (folder / "metrics.json").write_text(json.dumps(m))
    _, table = compare([a, b])
    assert "| FID | SSIM |" in table and "| patn/synth it 100 | 30.50 | 0.3000 |" in table
    assert "| pg2/synth it 100 | n/c | 0.3000 |" in table and "| 80.25 | 0.1000 |" in table
