"""The dataset writer: renders a config into a Market-1501 folder with the community CSVs.

A rendering writes ``bounding_box_train/``, ``bounding_box_test/``, ``query/``, the four CSVs, the
preview and :data:`~augment.synth.config.CONFIG_FILE`, which doubles as the completeness marker:
it is written with ``complete: false`` first and ``complete: true`` last, so a rendering killed
half-way is recognised and rendered again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from pathlib import Path

import numpy as np

from augment.data.keypoints import (
    ANNOTATION_FILES,
    DEFAULT_TEST_PAIRS,
    NUM_JOINTS,
    PAIRS_FILES,
    Annotations,
    build_pairs,
    write_annotations,
    write_pairs,
)
from augment.data.market import MARKET_DIRS, make_market_dirs
from augment.synth.config import CONFIG_FILE, DEFAULT_OUT, DISJOINT_OUT, PREVIEW_FILE, SYNTH_VERSION, SynthConfig
from augment.synth.jobs import ImageResult, RenderReport, render_jobs, run_job
from augment.synth.preview import statistics_lines, write_preview

OUTPUT_NAMES = (*MARKET_DIRS.values(), *ANNOTATION_FILES.values(), *PAIRS_FILES.values(), PREVIEW_FILE, CONFIG_FILE)


def _marker(cfg: SynthConfig, complete: bool) -> dict:
    return {"format": "poseaug-synth-market", "version": SYNTH_VERSION, "complete": complete, "config": cfg.to_json()}


def previous_config(out: Path) -> SynthConfig | None:
    """The config of a previous rendering in ``out`` (None if there is none or it is unreadable)."""
    try:
        data = json.loads((out / CONFIG_FILE).read_text())
        if data.get("format") != "poseaug-synth-market" or data.get("version") != SYNTH_VERSION:
            return None
        return SynthConfig.from_json(data["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_complete(out: str | os.PathLike, cfg: SynthConfig) -> bool:
    """``out`` holds a finished rendering of exactly ``cfg`` (same code version)."""
    out = Path(out)
    try:
        data = json.loads((out / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return bool(data.get("complete")) and previous_config(out) == cfg


def _clear_outputs(out: Path) -> None:
    """Remove what a rendering writes (and nothing else) before writing again."""
    for name in OUTPUT_NAMES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def render_dataset(
    config: SynthConfig | None = None,
    out: str | os.PathLike = DEFAULT_OUT,
    *,
    overwrite: bool = False,
    workers: int = 1,
    preview: bool = True,
    log: Callable[[str], None] | None = print,
) -> Path:
    """Render the dataset of ``config`` into ``out`` (Market-1501 layout, CSVs, preview); returns ``out``.

    ``out`` must be absent, empty, or a previous rendering of the same config (it is rendered
    again, byte-identically); anything else raises FileExistsError unless ``overwrite``, which
    replaces the files a rendering writes and leaves other files alone. ``workers`` > 1 renders
    in that many processes with identical output. ``log`` receives the statistics lines
    (None: silent).
    """
    report = render_dataset_report(config, out, overwrite=overwrite, workers=workers, preview=preview)
    if log is not None:
        for line in statistics_lines(report):
            log(line)
    return report.out


def render_dataset_report(
    config: SynthConfig | None = None,
    out: str | os.PathLike = DEFAULT_OUT,
    *,
    overwrite: bool = False,
    workers: int = 1,
    preview: bool = True,
) -> RenderReport:
    """:func:`render_dataset`, returning the :class:`RenderReport` instead of printing it."""
    cfg = config or SynthConfig()
    out = Path(out)
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    check_target(out, cfg, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out)
    (out / CONFIG_FILE).write_text(json.dumps(_marker(cfg, complete=False), indent=1))
    make_market_dirs(out)

    start, cpu_start = time.perf_counter(), time.process_time()
    results = render_images(cfg, out, workers)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start

    annotations, pairs = write_keypoint_files(out, results)
    if preview:
        write_preview(out / PREVIEW_FILE, out, results)
    marker = _marker(cfg, complete=True)
    marker["images"] = len(results)
    (out / CONFIG_FILE).write_text(json.dumps(marker, indent=1))
    return RenderReport(out, len(results), seconds, cpu_seconds, workers, annotations, pairs, results)


def check_target(out: Path, cfg: SynthConfig, overwrite: bool) -> None:
    """Raise FileExistsError unless ``out`` may receive a rendering of ``cfg`` (see :func:`render_dataset`)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    if not (out.is_dir() and any(out.iterdir()) and not overwrite):
        return
    prev = previous_config(out)
    if prev is None:
        raise FileExistsError(
            f"{out}: directory is not empty and is not an augment.synth output "
            f"(no readable {CONFIG_FILE}); choose another --out or pass --overwrite"
        )
    if prev != cfg:
        diff = [
            f"{f.name}={getattr(prev, f.name)!r}->{getattr(cfg, f.name)!r}"
            for f in fields(cfg)
            if getattr(prev, f.name) != getattr(cfg, f.name)
        ]
        raise FileExistsError(
            f"{out}: holds a rendering of a different config ({', '.join(diff)}); "
            "choose another --out or pass --overwrite"
        )


def render_images(cfg: SynthConfig, out: Path | None, workers: int) -> list[ImageResult]:
    """Run every render job (writing the images under ``out`` unless None), in ``workers`` processes."""
    jobs = [(cfg, out, job) for job in render_jobs(cfg)]
    if workers == 1:
        chunks = [run_job(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunks = list(pool.map(run_job, jobs, chunksize=4))
    return [r for chunk in chunks for r in chunk]


def ensure_dataset(out: str | os.PathLike = DEFAULT_OUT, config: SynthConfig | None = None, **kw) -> Path:
    """``out`` if it holds a finished rendering of ``config``; otherwise render it there first."""
    cfg = config or SynthConfig()
    if is_complete(out, cfg):
        return Path(out)
    return render_dataset(cfg, out, **kw)


def embedded_dataset(
    root: str | os.PathLike = DEFAULT_OUT, log: Callable[[str], None] = print, *, population: int = 0
) -> Path:
    """The embedded dataset every command defaults to, with one rule: a finished rendering at
    ``root`` of the asked ``population`` (of any other config, e.g. a smaller one for a quick look) is
    used as it is; anything else (absent, another population, or a rendering killed half-way) is
    rendered afresh there with the default config of that population."""
    root = Path(root)
    previous = previous_config(root)
    if previous is not None and previous.population == population and is_complete(root, previous):
        return root
    flag = f" --population {population} --out {root}" if population else ""
    log(f"[data] embedded dataset not found at {root}: rendering it (python -m augment.synth{flag})")
    return ensure_dataset(root, SynthConfig(population=population))


def embedded_disjoint_dataset(log: Callable[[str], None] = print) -> Path:
    """Population 1 of the embedded dataset (other people, same cameras) at ``data/synth-market-disjoint``:
    the training data of generators that must never have seen the re-ID set's identities."""
    return embedded_dataset(DISJOINT_OUT, log, population=1)


def write_keypoint_files(out: Path, results: list[ImageResult]) -> tuple[dict, dict]:
    """The four community CSVs from the rendered keypoints; returns (annotations by split, pair counts)."""
    groups = {
        "train": [r for r in results if r.split == "train"],
        "test": [r for r in results if r.split in ("gallery", "query")],
    }
    annotations, pairs = {}, {}
    for split, rows in groups.items():
        rows = sorted(rows, key=lambda r: r.name)
        coords = np.array([r.coords for r in rows], np.int32).reshape(-1, NUM_JOINTS, 2)
        ann = Annotations([r.name for r in rows], coords, source=str(out / ANNOTATION_FILES[split]))
        write_annotations(out / ANNOTATION_FILES[split], ann)
        sample = DEFAULT_TEST_PAIRS if split == "test" else None
        table = build_pairs(ann, sample=sample, random_state=0)
        write_pairs(out / PAIRS_FILES[split], table)
        annotations[split], pairs[split] = ann, len(table)
    return annotations, pairs
