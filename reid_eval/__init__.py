"""reid_eval: torchreid training and evaluation of re-ID models on real, reduced and augmented Market-1501 sets.

Modules (import them directly; importing the package imports nothing heavy):
  metrics          fast exact CMC / mAP (torchreid's Market metric, Open-ReID's cuhk03 / allshots CMC)
  compat           fixes for torchreid 0.2.5 on torch >= 2.6 / numpy 2, engine evaluation
  models           Open-ReID Inception, offline ImageNet weights, torchreid model registration
  openreid_resnet  Open-ReID's ResNet-50 head on torchreid's ResNet-50
  datasets         any Market-layout folder as a torchreid ImageDataset (unique registrations)
  recipes          openreid / torchreid / cpu training recipes and their transforms
  train            ``python -m reid_eval.train``: one training run -> metrics.json, checkpoint, log
  bench            ``python -m reid_eval.bench``: the PATN Table-5 grid -> results, table, plot
  published        the published numbers shown beside ours, with their sources
"""
