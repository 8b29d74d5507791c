"""keep_freed_memory: a freed large array's pages are reused, not faulted in again (process-wide,
so each case runs in a fresh interpreter)."""

import subprocess
import sys

import pytest

PROBE = """
import resource, sys
import numpy as np
from lstmtext import malloc
if sys.argv[1] == "keep":
    assert malloc.keep_freed_memory()
for _ in range(3):
    np.ones(10_000_000, dtype=np.float32)  # 40 MB, like one window's gate cache
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    np.ones(10_000_000, dtype=np.float32)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_freed_window_memory_is_reused_without_page_faults():
    # glibc's default mmaps and unmaps each 40 MB array, so every one of the 10 faults its pages in
    # again: at least its 19 whole 2 MiB pages where transparent huge pages serve it (570 in all
    # measured with OPENBLAS_NUM_THREADS=1, 5,680 without, 2026-12-05), about 98,000 4 KiB pages without.
    assert faults("default") >= 10 * 19
    assert faults("keep") < 100
