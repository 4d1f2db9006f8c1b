"""``python -m generators.identity``: does a generated person keep the source's identity? A re-ID proxy.

    python -m reid_eval.train --data data/synth-market --model inception --recipe cpu --out runs/reid-proxy
    python -m generators.identity --checkpoint runs/generators/patn-synth/checkpoints/latest.pt \\
        --reid runs/reid-proxy/checkpoint.pt --pairs 2000

SSIM and mask-SSIM say whether the image has the target's pixels; what re-ID training needs from a
generated image is that it still shows the source person. This proxy asks a re-ID model that
question directly. A re-ID network trained once on the dataset's real training split (its
identities are disjoint from the test identities) embeds, for each test pair (source, target):

- the generated image (source person in the target pose),
- the copy-source image (the source itself: identity kept, pose not),
- the real target image (the same person, really in that pose: what a perfect generator gives),

and each is used as a query against the real test images (query and gallery splits, junk left
out, distractors kept). Per pair, the gallery leaves out the target image and every image of the
source identity from the source's camera, so a match must come from another view of the person,
not from the source's background or from the answer itself; pairs whose identity has no image
left are not counted. Reported: Rank-1 and mAP (squared Euclidean distance on the network's
eval-mode output, as the re-ID evaluation uses) for the three query kinds. ``generated`` close to
``real target`` means the generator keeps identity as well as a real photo in that pose does.

Layering: this module is part of ``generators`` and must not import ``reid_eval`` (a layer
above). The library functions take the re-ID network already built (:class:`ReidEmbedder`) or a
loader and a model builder as arguments (:func:`reid_embedder`); only :func:`main` imports
``reid_eval`` to supply them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from augment.data.constants import IMAGENET_MEAN, IMAGENET_STD
from augment.data.market import DatasetError, parse_market_name, read_market
from augment.runtime import UsageError, resolve_device
from generators.data import PairDataset, PairTable, decode_image, load_pairs
from generators.inference import Transferer, model_to_uint8, uint8_to_model

QUERY_KINDS = ("generated", "copy_source", "real_target")


# ---------------------------------------------------------------------------------------------
# the re-ID network as a feature extractor


class ReidEmbedder:
    """A trained re-ID network as ``embed(uint8 (N,H,W,3) RGB) -> (N,D) float32`` features.

    Preprocessing is the re-ID test transform: PIL bilinear resize to ``input_size`` (H, W), to
    [0,1], ImageNet mean/std. The network runs in eval mode, in fp32, in batches.
    """

    def __init__(self, model: nn.Module, input_size: Sequence[int], device="cpu", batch_size: int = 128):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.batch_size = batch_size
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N,H,W,3) -> float (N,3,h,w) normalised, at the network's input size."""
        from PIL import Image

        h, w = self.input_size
        resized = np.stack([np.asarray(Image.fromarray(im).resize((w, h), Image.BILINEAR)) for im in images])
        x = torch.from_numpy(resized).permute(0, 3, 1, 2).float().div(255)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> torch.Tensor:
        out = []
        for i in range(0, len(images), self.batch_size):
            x = self.preprocess(images[i : i + self.batch_size]).to(self.device)
            out.append(self.model(x).float().cpu())
        return torch.cat(out) if out else torch.empty(0, 0)


def reid_embedder(
    path: str | Path,
    *,
    load_checkpoint: Callable[[str], dict],
    build_model: Callable[..., tuple[nn.Module, object]],
    device="cpu",
) -> ReidEmbedder:
    """A :class:`ReidEmbedder` from a ``reid_eval.train`` checkpoint (``checkpoint.pt``: its
    ``state_dict`` and ``meta`` with architecture, classes, input size and model arguments).
    ``load_checkpoint`` / ``build_model``: ``reid_eval.compat.load_checkpoint`` and
    ``reid_eval.models.build_reid_model``, passed in by the caller (see the module docstring)."""
    data = load_checkpoint(str(path))
    try:
        meta = data["meta"]
        model, _ = build_model(
            meta["architecture"], meta["num_classes"], pretrained=False, loss="softmax", **meta["model_kwargs"]
        )
        model.load_state_dict(data["state_dict"])
    except (KeyError, RuntimeError, TypeError) as e:
        raise ValueError(f"{path}: not a reid_eval.train checkpoint ({e})") from None
    return ReidEmbedder(model, meta["input_size"], device=device)


# ---------------------------------------------------------------------------------------------
# retrieval


@dataclass
class Gallery:
    """The real test images: features (G,D), identities and cameras (G,), names."""

    features: torch.Tensor
    pids: np.ndarray
    cameras: np.ndarray
    names: list[str]


def real_gallery(root: Path, embed: Callable[[np.ndarray], torch.Tensor], size: tuple[int, int]) -> Gallery:
    """Every real query and gallery image of ``root`` (Market rules: junk out, distractors in)."""
    dataset = read_market(root)
    records = {r.name: r for r in [*dataset.query, *dataset.gallery]}
    names = sorted(records)
    images = np.stack([decode_image(records[n].path, size) for n in names])
    pids = np.array([records[n].pid for n in names])
    cameras = np.array([records[n].camera for n in names])
    return Gallery(embed(images), pids, cameras, names)


def rank1_and_ap(distances: torch.Tensor, matches: torch.Tensor, valid: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per query: Rank-1 hit and average precision. distances (Q,G); matches, valid (Q,G) bool
    (valid False: left out of this query's gallery). Queries with no valid match get NaN."""
    d = distances.masked_fill(~valid, float("inf"))
    order = d.argsort(dim=1)
    hits = (matches & valid).gather(1, order).float()  # (Q,G) in rank order
    n_pos = hits.sum(1)
    rank1 = hits[:, 0].clone()
    precision = hits.cumsum(1) / torch.arange(1, hits.shape[1] + 1)
    ap = (precision * hits).sum(1) / n_pos.clamp(min=1)
    none = n_pos == 0
    rank1[none], ap[none] = float("nan"), float("nan")
    return rank1.numpy(), ap.numpy()


@dataclass
class IdentityReport:
    """Rank-1 / mAP (fractions) per query kind over ``n_pairs`` pairs (``counted`` had a valid match)."""

    n_pairs: int
    counted: int
    rank1: dict[str, float]
    mAP: dict[str, float]
    per_pair: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def lines(self) -> list[str]:
        out = [f"identity proxy over {self.counted} of {self.n_pairs} pairs: Rank-1 / mAP %"]
        out += [f"  {k:<12} {100 * self.rank1[k]:6.2f} / {100 * self.mAP[k]:6.2f}" for k in QUERY_KINDS]
        return out

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "per_pair"}


def score_queries(gallery: Gallery, queries: dict[str, torch.Tensor], table: PairTable, n: int) -> IdentityReport:
    """Rank-1 and mAP of each query kind (features (n,D), row i = test pair i) against ``gallery``
    with each pair's exclusions (module docstring)."""
    index = {name: i for i, name in enumerate(gallery.names)}
    src_names = [table.image_names[k] for k in table.src[:n]]
    tgt_names = [table.image_names[k] for k in table.tgt[:n]]
    src_rec = [_name_pid_camera(s) for s in src_names]
    pids = torch.from_numpy(np.array([p for p, _ in src_rec]))
    cams = torch.from_numpy(np.array([c for _, c in src_rec]))
    g_pids, g_cams = torch.from_numpy(gallery.pids), torch.from_numpy(gallery.cameras)
    matches = pids[:, None] == g_pids[None, :]
    valid = ~(matches & (cams[:, None] == g_cams[None, :]))
    for i, t in enumerate(tgt_names):
        if t in index:
            valid[i, index[t]] = False
    per_pair, rank1, mAP = {}, {}, {}
    for kind, feats in queries.items():
        dist = torch.cdist(feats.float(), gallery.features.float()).pow(2)
        r1, ap = rank1_and_ap(dist, matches, valid)
        per_pair[f"{kind}_rank1"], per_pair[f"{kind}_ap"] = r1, ap
        rank1[kind], mAP[kind] = float(np.nanmean(r1)), float(np.nanmean(ap))
    counted = int(np.isfinite(next(iter(per_pair.values()))).sum()) if per_pair else 0
    return IdentityReport(n, counted, rank1, mAP, per_pair)


def _name_pid_camera(name: str) -> tuple[int, int]:
    parsed = parse_market_name(name)
    return parsed.pid, parsed.camera


# ---------------------------------------------------------------------------------------------
# a generator checkpoint, end to end


@dataclass
class IdentityConfig:
    checkpoint: Path
    data: Path
    pairs: int | None = 2000  # first N test pairs in file order; None: all
    batch_size: int = 32
    device: str = "auto"
    precision: str | None = None  # None (fp32) | bf16 | fp16: generation autocast


def generated_images(transferer: Transferer, dataset: PairDataset, table: PairTable, n: int) -> dict[str, np.ndarray]:
    """uint8 (n,H,W,3) images of the first ``n`` pairs: generated, copy_source (the source) and
    real_target."""
    out = {k: [] for k in QUERY_KINDS}
    for start in range(0, n, transferer.batch_size):
        idx = np.arange(start, min(start + transferer.batch_size, n))
        src = np.stack([dataset.image(int(k)) for k in table.src[idx]])
        tgt = np.stack([dataset.image(int(k)) for k in table.tgt[idx]])
        src_t = torch.from_numpy(src).to(transferer.device)
        fake = transferer(uint8_to_model(src_t), table.keypoints[table.src[idx]], table.keypoints[table.tgt[idx]])
        out["generated"].append(model_to_uint8(fake).cpu().numpy())
        out["copy_source"].append(src)
        out["real_target"].append(tgt)
    return {k: np.concatenate(v) for k, v in out.items()}


def evaluate_identity(
    cfg: IdentityConfig, embed: ReidEmbedder | Callable, gallery: Gallery | None = None
) -> tuple[IdentityReport, Gallery]:
    """Generate the first ``cfg.pairs`` test pairs with ``cfg.checkpoint`` and score them with
    ``embed``; returns the report and the gallery (reusable for further checkpoints)."""
    device = resolve_device(cfg.device)
    table = load_pairs(cfg.data, "test")
    n = len(table) if cfg.pairs is None else min(cfg.pairs, len(table))
    if gallery is None:
        gallery = real_gallery(Path(cfg.data), embed, table.image_size)
    transferer = Transferer(cfg.checkpoint, device=device, dtype=cfg.precision, batch_size=cfg.batch_size)
    images = generated_images(transferer, PairDataset(table=table, split="test"), table, n)
    queries = {kind: embed(images[kind]) for kind in QUERY_KINDS}
    return score_queries(gallery, queries, table, n), gallery


# ---------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m generators.identity", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="generator checkpoint (.pt)")
    p.add_argument("--reid", type=Path, required=True, help="re-ID checkpoint.pt from python -m reid_eval.train")
    p.add_argument("--data", type=Path, help="dataset root (default: the embedded dataset)")
    p.add_argument("--pairs", type=int, default=2000, help="first N test pairs (default 2000; 0: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="generation autocast")
    p.add_argument("--out", type=Path, help="write the report as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from augment.synth import embedded_dataset
    from reid_eval.compat import load_checkpoint  # main() may reach up (the layer rule's exception)
    from reid_eval.models import build_reid_model

    args = build_parser().parse_args(argv)
    try:
        for flag, path in (("--checkpoint", args.checkpoint), ("--reid", args.reid)):
            if not path.is_file():
                raise UsageError(flag, f"{path} is not a file")
        embed = reid_embedder(args.reid, load_checkpoint=load_checkpoint, build_model=build_reid_model)
        data = args.data if args.data is not None else embedded_dataset()
        precision = None if args.precision == "fp32" else args.precision
        cfg = IdentityConfig(args.checkpoint, Path(data), args.pairs or None, args.batch_size, args.device, precision)
        report, _ = evaluate_identity(cfg, embed)
    except (UsageError, DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    if args.out is not None:
        from augment.data.atomic import write_atomic

        write_atomic(args.out, (json.dumps(report.to_json(), indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
