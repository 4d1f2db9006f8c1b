"""reid_eval: torchreid training and evaluation of re-ID models on real, reduced and augmented Market-1501 sets.

Modules (import them directly; importing the package imports nothing heavy):
  metrics          fast exact CMC / mAP (torchreid's Market metric, Open-ReID's cuhk03 / allshots CMC)
  compat           fixes for torchreid 0.2.5 on torch >= 2.6 / numpy 2, engine evaluation
  models           Open-ReID Inception, offline ImageNet weights, torchreid model registration
  openreid_resnet  Open-ReID's ResNet-50 head on torchreid's ResNet-50
  datasets         any Market-layout folder as a torchreid ImageDataset (unique registrations)
  recipes          openreid / torchreid / cpu training recipes and their transforms
  engine           torchreid's softmax engine on any device; data manager (one pass or resampled), model, optimizer
  train            ``python -m reid_eval.train``: one training run -> metrics.json (train_metrics), checkpoint, log
  siamese          the Discriminative Embedding (``--loss siamese``): verification head, pairs, identity batches
  metric_learning  Euclidean, XQDA, KISSME (after PCA) on re-ID features, batched on the device
  features         a trained run's features (pool5, the eval output) and the distances learnt on them
  bench            ``python -m reid_eval.bench``: the PATN Table-5 grid with controls, generator-training regimes
                   and seeds (``--table deform4``: the Deformable GAN's Table 4) -> results, summary, table, plot;
                   in phases:
    bench_grid       cells, methods and controls (none, none-iters, copy), the sets they train on
    bench_generators the generators a grid needs per regime (full, kept, disjoint), trained once and cached
    bench_run        what each cell needs, its set, every training on one pool of processes, finished cells
    bench_stats      recovery, mean / std / n over seeds
    bench_report     results and summary files, the Markdown table, the plot
    bench_table4     Table 4's grid, its Markdown table and plot
  published        the published numbers shown beside ours, with their sources
"""
