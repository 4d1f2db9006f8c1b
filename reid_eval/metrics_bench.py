"""``python -m reid_eval.metrics --bench``: the fast metrics against torchreid's python evaluation on a
Market-1501-sized problem (same CMC, mAP within float rounding), timed side by side."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from reid_eval.metrics import evaluate_all, evaluate_rank, open_reid_cmc, rank_metrics


def market_like_problem(
    num_query: int = 3368,
    num_gallery: int = 15913,
    num_ids: int = 751,
    num_cams: int = 6,
    dim: int = 128,
    noise: float = 2.0,
    seed: int = 0,
):
    """Random Market-size evaluation input: features = identity centre + noise, squared Euclidean (float32).

    Returns (distmat (Q, G) float32, q_pids, g_pids, q_camids, g_camids).
    """
    rng = np.random.default_rng(seed)
    g_pids = rng.integers(0, num_ids, num_gallery)
    q_pids = rng.integers(0, num_ids, num_query)
    g_cams = rng.integers(1, num_cams + 1, num_gallery)
    q_cams = rng.integers(1, num_cams + 1, num_query)
    centres = torch.from_numpy(rng.standard_normal((num_ids, dim), dtype=np.float32))
    qf = centres[q_pids] + noise * torch.from_numpy(rng.standard_normal((num_query, dim), dtype=np.float32))
    gf = centres[g_pids] + noise * torch.from_numpy(rng.standard_normal((num_gallery, dim), dtype=np.float32))
    distmat = (qf.pow(2).sum(1, keepdim=True) + gf.pow(2).sum(1)[None, :]).addmm_(qf, gf.T, alpha=-2)
    return distmat.numpy(), q_pids, g_pids, q_cams, g_cams


def run_bench(args: argparse.Namespace) -> None:
    from reid_eval.compat import import_torchreid  # lazy: torchreid import is slow

    rank_module = import_torchreid().reid.metrics.rank
    t0 = time.perf_counter()
    distmat, q_pids, g_pids, q_cams, g_cams = market_like_problem(
        args.queries, args.gallery, args.ids, args.cams, seed=args.seed
    )
    print(
        f"problem: {args.queries} x {args.gallery} float32 distmat, {args.ids} ids, {args.cams} cameras, "
        f"seed {args.seed} (built in {time.perf_counter() - t0:.2f} s); torch threads {torch.get_num_threads()}"
    )
    sub = min(args.torchreid_queries, args.queries)
    sub_args = (distmat[:sub], q_pids[:sub], g_pids, q_cams[:sub], g_cams)

    t0 = time.perf_counter()
    ref_cmc, ref_map = rank_module.eval_market1501(*sub_args, 50)
    t_ref = time.perf_counter() - t0
    ours_sub = rank_metrics(*sub_args, 50, device="cpu")
    per_query = t_ref / sub
    print(
        f"torchreid eval_market1501 (python, use_cython=False) on first {sub} queries: {t_ref:.2f} s "
        f"= {per_query * 1e3:.2f} ms/query -> extrapolated full {args.queries} queries: "
        f"{per_query * args.queries:.1f} s"
    )
    print(
        f"agreement on those {sub} queries: max |CMC diff| = {np.abs(ours_sub.cmc - ref_cmc).max():.3g}, "
        f"|mAP diff| = {abs(ours_sub.mAP - ref_map):.3g} (any difference comes from tied float32 distances: "
        "torchreid's quicksort leaves their order unspecified, ours breaks ties by gallery index)"
    )

    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        evaluate_rank(distmat[:64], q_pids[:64], g_pids, q_cams[:64], g_cams, device=device)  # warm-up
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 50, device=device)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        print(
            f"ours evaluate_rank [{device}] full {args.queries} x {args.gallery}: best {min(times):.3f} s, "
            f"median {float(np.median(times)):.3f} s over {args.repeat} runs "
            f"(speed-up vs extrapolated torchreid python: {per_query * args.queries / min(times):.0f}x); "
            f"rank1 {result.cmc[0]:.4f} mAP {result.mAP:.4f}, skipped queries {result.num_skipped_queries}"
        )
        t0 = time.perf_counter()
        cuhk03 = open_reid_cmc(
            distmat,
            q_pids,
            g_pids,
            q_cams,
            g_cams,
            50,
            separate_camera_set=True,
            single_gallery_shot=True,
            repeats=10,
            seed=0,
            device=device,
        )
        t_cuhk03 = time.perf_counter() - t0
        t0 = time.perf_counter()
        everything = evaluate_all(distmat, q_pids, g_pids, q_cams, g_cams, device=device)
        t_all = time.perf_counter() - t0
        print(
            f"ours open_reid_cmc cuhk03 (10 repeats) [{device}]: {t_cuhk03:.3f} s, top-1 {cuhk03[0]:.4f}; "
            f"evaluate_all (market + mAP_openreid + allshots + cuhk03) [{device}]: {t_all:.3f} s"
        )
        print(
            f"  evaluate_all: rank1 {everything['rank1']:.4f} mAP {everything['mAP']:.4f} "
            f"mAP_openreid {everything['mAP_openreid']:.4f} cuhk03_rank1 {everything['cuhk03_rank1']:.4f} "
            f"allshots_rank1 {everything['allshots_rank1']:.4f}"
        )
