"""The content fingerprint: every byte of every image and keypoint file counts; the digest cache."""

import os
import shutil
import time

from data_fixtures import make_market

from augment.data.fingerprint import DigestCache, content_fingerprint
from augment.data.market import read_market

KEYPOINT_FILES = ("market-annotation-train.csv", "market-annotation-test.csv", "market-pairs-train.csv")


def flip_byte(path, offset=-10):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_one_byte_of_one_image_or_keypoint_changes_it(tmp_path):
    root = make_market(tmp_path / "m")
    ds = read_market(root)
    files = [root / f for f in KEYPOINT_FILES]
    fp = content_fingerprint(ds, files, workers=2)
    assert fp.images == 9 and fp.files == 3 and fp.read_bytes == fp.bytes > 0
    assert content_fingerprint(ds, files[::-1]) == fp  # order of the files does not matter
    image = ds.train[1].path
    original = image.read_bytes()
    flip_byte(image)
    assert read_market(root).fingerprint() == ds.fingerprint()  # names and sizes: blind to it
    assert content_fingerprint(ds, files).digest != fp.digest
    image.write_bytes(original)
    assert content_fingerprint(ds, files).digest == fp.digest
    ann = root / "market-annotation-train.csv"
    text = ann.read_text()
    ann.write_text(text.replace("[1, 2, 3", "[1, 2, 4", 1))  # one coordinate of one row, same length
    assert content_fingerprint(ds, files).digest != fp.digest
    ann.write_text(text)
    # where the dataset lives does not matter, what it holds does
    copy = shutil.copytree(root, tmp_path / "elsewhere")
    assert content_fingerprint(read_market(copy), [copy / f for f in KEYPOINT_FILES]).digest == fp.digest


def test_digest_cache_reads_only_changed_files(tmp_path):
    root = make_market(tmp_path / "m")
    ds = read_market(root)
    cache = tmp_path / "out" / "digests.json"
    first = content_fingerprint(ds, cache=cache)
    assert cache.is_file() and first.read_bytes == first.bytes
    again = content_fingerprint(ds, cache=DigestCache(cache))
    assert again.digest == first.digest and again.read_bytes == 0
    # changed in place, same size, mtime set back (as cp -p or rsync -t leave it): ctime still moves
    image = ds.gallery[0].path
    st = image.stat()
    time.sleep(0.02)
    flip_byte(image)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = content_fingerprint(ds, cache=cache)
    assert changed.digest != first.digest and changed.read_bytes == st.st_size
    assert changed.digest == content_fingerprint(ds).digest  # the cache never changes the answer
    cache.write_text("{not json")  # a broken cache is only a cache: start afresh
    assert content_fingerprint(ds, cache=cache).digest == changed.digest
