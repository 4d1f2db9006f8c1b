"""The report of ``python -m augment.annotate`` and its agreement with a community annotation CSV.

Agreement (:func:`agreement`), per joint, over the images both files annotate:
- **PCKh@0.5** as PATN's ``tool/calPCKH_market.py`` counts it (:mod:`generators.quality.pckh`), the community
  file taking the target's place: the head box (w, h) spans the community row's joints 0, 1, 14-17 (an image
  with fewer than two of them is left out); a community joint agrees when this run found it with
  ``|dx| < 0.5 w`` and ``|dy| < 0.5 h``; a community joint this run missed counts as a miss. The total over
  all joints is :func:`generators.quality.pckh.pckh` itself.
- **same pixel**: the share of the community's joints found at exactly the same (y, x);
- **missed** / **extra**: joints the community file has and this run has not, and the reverse.
On Market-1501 with the official weights the estimator should reproduce the community files (PATN's
script made them); the JPEG decoder and the float arithmetic may move a few joints by a pixel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from augment.data.index import SPLITS, MarketDataset
from augment.data.keypoints import (
    ANNOTATION_FILES,
    JOINTS,
    MISSING,
    NUM_JOINTS,
    PAIRS_FILES,
    TORSO_JOINTS,
    joints_present,
)
from generators.quality.pckh import ALPHA, head_size, pckh

THRESHOLD = (
    "PCKh@0.5: |dx| < 0.5 w and |dy| < 0.5 h of the community row's head box (joints 0, 1, 14-17; rows with fewer "
    "than two left out); a community joint not found here is a miss"
)
MAX_NAMED = 5  # failures and examples named in the printed lines (the JSON names every failure)


@dataclass
class AnnotateReport:
    """What a run did: counts per split, the joints-per-image histogram, torso coverage, failures by
    name, pairs, output files, resumption, and the agreement with each community file found."""

    out: str
    dataset: str
    layout: str
    images: dict[str, int]  # indexed images per split
    annotated: int  # rows written (images minus failures)
    joints_histogram: list[int]  # [k] = images with k joints found, k = 0..18
    no_torso: int  # images without all four torso joints (they form no pairs)
    no_torso_examples: list[str]
    failures: dict[str, str]  # image name -> why it has no row
    pairs: dict[str, int]  # "train" / "test" -> pairs written
    files: list[str]
    shards: int
    resumed_shards: int  # shards read back from an earlier run
    agreement: dict[str, dict] = field(default_factory=dict)  # "train" / "test" -> :func:`agreement`

    def to_json(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        total = sum(self.images.values())
        per_split = ", ".join(f"{s} {self.images[s]}" for s in SPLITS)
        out = [f"[annotate] {total} images ({per_split}): {self.annotated} annotated, {len(self.failures)} failed"]
        hist = " ".join(f"{k}:{n}" for k, n in enumerate(self.joints_histogram))
        out.append(f"[annotate] joints found per image (joints:images): {hist}")
        share = self.no_torso / max(self.annotated, 1)
        eg = f" (e.g. {', '.join(self.no_torso_examples)})" if self.no_torso_examples else ""
        out.append(
            f"[annotate] without the four torso joints ({', '.join(TORSO_JOINTS)}): {self.no_torso} images "
            f"({share:.1%}), they form no pairs{eg}"
        )
        for name, why in list(self.failures.items())[:MAX_NAMED]:
            out.append(f"[annotate] failed: {name}: {why}")
        if len(self.failures) > MAX_NAMED:
            out.append(
                f"[annotate] ... {len(self.failures) - MAX_NAMED} more failures in {self.out}/annotate-report.json"
            )
        out.append(f"[annotate] pairs: train {self.pairs.get('train', 0)}, test {self.pairs.get('test', 0)}")
        for key, agree in self.agreement.items():
            out += agreement_lines(key, agree)
        out.append(f"[annotate] wrote {', '.join(self.files)} in {self.out}")
        return out


def build_report(
    dataset: MarketDataset,
    out: Path,
    annotations: dict,
    failures: dict[str, str],
    pairs: dict[str, int],
    agreements: dict[str, dict],
    resumed: int,
    shards: int,
) -> AnnotateReport:
    """The report of a run from its annotations ("train"/"test" -> Annotations) and failures."""
    coords = np.concatenate([a.coords for a in annotations.values()]) if annotations else np.zeros((0, 18, 2))
    names = [n for a in annotations.values() for n in a.names]
    found = (coords != MISSING).all(-1).sum(-1)  # (N,) joints found per image
    torso = joints_present(coords)
    return AnnotateReport(
        out=str(out),
        dataset=str(dataset.root),
        layout=dataset.layout,
        images={s: len(dataset.split(s)) for s in SPLITS},
        annotated=len(names),
        joints_histogram=np.bincount(found, minlength=NUM_JOINTS + 1).tolist(),
        no_torso=int((~torso).sum()),
        no_torso_examples=[n for n, ok in zip(names, torso) if not ok][:3],
        failures=dict(sorted(failures.items())),
        pairs=dict(pairs),
        files=[*ANNOTATION_FILES.values(), *PAIRS_FILES.values()],
        shards=shards,
        resumed_shards=resumed,
        agreement=agreements,
    )


def joint_agreement(predicted: np.ndarray, reference: np.ndarray, alpha: float = ALPHA) -> dict[str, np.ndarray]:
    """Per-joint counts of (N, 18, 2) (y, x) keypoints against a reference: ``hits`` and ``joints`` (PCKh,
    images with a head box only), ``same``, ``missed``, ``extra`` (every image); each (18,) int."""
    pred = np.asarray(predicted, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    box = head_size(ref)
    kept = (box != MISSING).all(axis=1)
    pred_on, ref_on = (pred != MISSING).all(axis=2), (ref != MISSING).all(axis=2)
    dy, dx = np.abs(pred[..., 0] - ref[..., 0]), np.abs(pred[..., 1] - ref[..., 1])
    hit = pred_on & ref_on & (dx < box[:, None, 0] * alpha) & (dy < box[:, None, 1] * alpha)
    valid = ref[..., 0] != MISSING  # as pckh(): the official count looks at y only
    return {
        "hits": hit[kept].sum(axis=0),
        "joints": valid[kept].sum(axis=0),
        "same": (ref_on & (pred == ref).all(axis=2)).sum(axis=0),
        "annotated": ref_on.sum(axis=0),
        "missed": (ref_on & ~pred_on).sum(axis=0),
        "extra": (pred_on & ~ref_on).sum(axis=0),
    }


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None  # None, not NaN: the report is JSON


def agreement(ours, reference) -> dict:
    """This run's Annotations against a community file's (module docstring), over the names both hold."""
    common = [n for n in reference.names if n in ours]
    pred = ours.get_many(common).reshape(-1, NUM_JOINTS, 2)
    ref = reference.get_many(common).reshape(-1, NUM_JOINTS, 2)
    counts = joint_agreement(pred, ref)
    total = pckh(pred, ref) if common else None
    joints = {
        name: {
            "pckh": _ratio(int(counts["hits"][j]), int(counts["joints"][j])),
            "joints": int(counts["joints"][j]),
            "same_pixel": _ratio(int(counts["same"][j]), int(counts["annotated"][j])),
            "missed": int(counts["missed"][j]),
            "extra": int(counts["extra"][j]),
        }
        for j, name in enumerate(JOINTS)
    }
    return {
        "reference": reference.source,
        "threshold": THRESHOLD,
        "images": len(common),
        "reference_rows": len(reference),
        "rows_here": len(ours),
        "images_with_head_box": total.images if total else 0,
        "pckh": _ratio(total.hits, total.joints) if total else None,
        "joints": joints,
    }


def _pct(v: float | None) -> str:
    return "  n/a" if v is None else f"{v:5.1%}"


def agreement_lines(key: str, agree: dict) -> list[str]:
    """The printed agreement with one community file: the total, the threshold, one line per joint."""
    out = [
        f"[annotate] agreement of the {key} file with {agree['reference']} ({agree['images']} of its "
        f"{agree['reference_rows']} rows annotated here, {agree['images_with_head_box']} with a head box): "
        f"PCKh@0.5 {_pct(agree['pckh']).strip()}",
        f"[annotate]   {THRESHOLD}",
    ]
    for name, j in agree["joints"].items():
        out.append(
            f"[annotate]   {name:5s} PCKh {_pct(j['pckh'])} of {j['joints']:6d}   same pixel {_pct(j['same_pixel'])}"
            f"   missed {j['missed']:5d}   extra {j['extra']:5d}"
        )
    return out
