"""augment.runtime.tune_malloc: freed tensor memory stays in the process (glibc), so repeated ops stop faulting
fresh pages in; POSE_AUG_MALLOC=default leaves the allocator alone. Each case runs in its own process (the
setting is process-wide and made once)."""

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, torch
from augment.runtime import tune_malloc
tuned = tune_malloc()
torch.manual_seed(0)
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3, padding=1))
x = torch.randn(8, 3, 128, 64)  # activations of 16 MiB: above glibc's default mmap threshold
with torch.no_grad():
    net(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    checksum = sum(float(net(x).double().sum()) for _ in range(10))
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(tuned, faults, checksum)
"""


def _probe(**env) -> tuple[bool, int, float]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    tuned, faults, checksum = out.stdout.split()
    return tuned == "True", int(faults), float(checksum)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tuned_malloc_stops_page_faults_and_changes_no_result():
    tuned, tuned_faults, tuned_sum = _probe()
    default, default_faults, default_sum = _probe(POSE_AUG_MALLOC="default")
    assert tuned and not default
    # each 16 MiB activation freed and allocated again: ~4,000 fresh pages per op with the default allocator
    assert default_faults > 20_000 and tuned_faults < default_faults / 20, (tuned_faults, default_faults)
    assert tuned_sum == default_sum  # where memory comes from is not arithmetic
