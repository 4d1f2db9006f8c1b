"""The data layer: what everything else stands on; it imports nothing else of the project.

    market       the public face: read any layout into the index, write the Market-1501 layout, place files
    layouts      the layouts on disk (Market-1501, renamed, DukeMTMC-reID, CUHK03-NP, MSMT17) and detection
    names        file-name schemes: person id, camera and generator tag from a name
    index        the dataset index (records by split), skip counts, the name-and-size fingerprint
    keypoints    the community keypoint and pairs CSVs (COCO-18 joints, -1 where missing)
    checks       image checks before work (readable, truncated, size, divisibility) and the size rule
    fingerprint  the content fingerprint (bytes of every image and keypoint file) and its digest cache
    pose         pose encodings on numpy or torch: heatmaps, disks, masks, part affines
    imageio      image decode/encode, truncation, content hashes
    constants    ImageNet mean/std (VGG losses and re-ID transforms)
    atomic       atomic writes (temporary name, then rename)
    textfile     UTF-8 text files (BOM accepted, undecodable bytes named by line)
    errors       DatasetError

The rules are written up in docs/data.md.
"""
