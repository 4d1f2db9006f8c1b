"""The data layer: what everything else stands on; it imports nothing else of the project.

market     Market-1501 layout: names, splits, junk/distractor rules, skip counts, file placement
keypoints  the community keypoint and pairs CSVs (COCO-18 joints, -1 where missing)
pose       pose encodings on numpy or torch: heatmaps, disks, masks, part affines
imageio    image decode/encode, content hashes, atomic writes
constants  ImageNet mean/std (VGG losses and re-ID transforms)
"""
