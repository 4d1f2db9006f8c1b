"""Tiny on-disk datasets for the data-layer tests: every layout, real JPEGs where decoding matters."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def jpeg(h: int = 32, w: int = 16, seed: int = 0) -> bytes:
    """A small smooth JPEG (decodes to (h, w, 3))."""
    y, x = np.mgrid[:h, :w]
    img = np.stack([(y * 7 + seed) % 256, (x * 11 + seed) % 256, (x + y + 3 * seed) % 256], -1).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def png(h: int = 32, w: int = 16, seed: int = 0) -> bytes:
    img = cv2.imdecode(np.frombuffer(jpeg(h, w, seed), np.uint8), cv2.IMREAD_COLOR)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def tree_digest(root: Path) -> str:
    """Hash of every path, file content, link target and mode under ``root``: equal before and after
    a read means the reader touched nothing."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            h.update(f"{p.relative_to(root)}|{st.st_mode}|{st.st_mtime_ns}\n".encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            elif p.is_file():
                h.update(p.read_bytes())
    return h.hexdigest()


def kp_row(name: str, ys, xs) -> str:
    return f"{name}:{json.dumps(list(ys))}:{json.dumps(list(xs))}\n"


MARKET = {
    "bounding_box_train": [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c3s3_077419_03.jpg",
        "0007_c1s1_077500_01.jpg",
        "-1_c1s1_000401_03.jpg",
        "0000_c1s1_000151_01.jpg",
    ],
    "bounding_box_test": ["0001_c1s1_001051_03.jpg", "0001_c3s1_001251_02.jpg", "0000_c2s1_000301_01.jpg"],
    "query": ["0001_c1s1_001051_00.jpg", "0001_c3s1_001251_00.jpg"],
}


def make_market(root: Path, *, size: tuple[int, int] = (32, 16), keypoints: bool = True) -> Path:
    """A Market-1501 root of real JPEGs with the community annotation and pair CSVs."""
    i = 0
    for folder, names in MARKET.items():
        for name in names:
            touch(root / folder / name, jpeg(*size, seed=i))
            i += 1
    if keypoints:
        rows = {"train": MARKET["bounding_box_train"], "test": MARKET["bounding_box_test"] + MARKET["query"]}
        for split, names in rows.items():
            text = "name:keypoints_y:keypoints_x\n" + "".join(
                kp_row(n, [1 + j for j in range(18)], [1 + j % 15 for j in range(18)]) for n in names
            )
            (root / f"market-annotation-{split}.csv").write_text(text)
        (root / "market-pairs-train.csv").write_text(
            "from,to\n0002_c1s1_000451_03.jpg,0002_c2s1_000551_01.jpg\n0007_c3s3_077419_03.jpg,0007_c1s1_077500_01.jpg\n"
        )
    return root


DUKE = {
    "bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg", "0003_c1_f0044158.jpg"],
    # 5000: an identity only the gallery has (Duke's distractors are ordinary ids): kept
    "bounding_box_test": ["0002_c1_f0044158.jpg", "0002_c7_f0121374.jpg", "5000_c3_f0100000.jpg"],
    "query": ["0002_c2_f0044160.jpg"],
}

CUHK03 = {
    "bounding_box_train": ["0001_c1_1.png", "0001_c2_6.png", "0003_c1_2.png"],
    "bounding_box_test": ["0002_c1_1.png", "0002_c2_7.png"],
    "query": ["0002_c1_3.png", "0002_c2_9.png"],
}


def make_folders(root: Path, spec: dict[str, list[str]], data: bytes = b"x") -> Path:
    for folder, names in spec.items():
        for name in names:
            touch(root / folder / name, data)
    return root


MSMT17_LISTS = {
    "train": [
        ("0000/0000_000_01_0303morning_0008_0.jpg", 0),
        ("0000/0000_001_02_0303morning_0100_1.jpg", 0),
        ("0001/0001_000_03_0303noon_0200_0.jpg", 1),
    ],
    "val": [("0001/0001_001_04_0303noon_0300_0.jpg", 1)],
    "query": [("0000/0000_000_05_0113morning_0015_0.jpg", 0)],
    "gallery": [("0000/0000_001_10_0113morning_0040_2.jpg", 0), ("0001/0001_000_15_0114afternoon_0010_0.jpg", 1)],
}
MSMT17_DIRS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}


def make_msmt17(base: Path, version: str = "MSMT17_V1", lists: dict | None = None) -> Path:
    """An MSMT17 copy at ``base`` (the folder holding the list files)."""
    lists = MSMT17_LISTS if lists is None else lists
    train_dir, test_dir = MSMT17_DIRS[version]
    for key, rows in lists.items():
        folder = base / (train_dir if key in ("train", "val") else test_dir)
        for rel, _ in rows:
            touch(folder / rel, b"img" + rel.encode())
        (base / f"list_{key}.txt").write_text("".join(f"{rel} {pid}\n" for rel, pid in rows))
    return base
