"""Elementwise work on both cores.

NumPy's ufuncs run on one core, while its matrix products already use all of them. Most ufuncs
release the GIL, so splitting a large array into row blocks and running the same NumPy code on
each block in a thread really runs in parallel. Every row is computed by exactly the same
operations whatever the split, so the result is bit-for-bit that of the one-thread path.

How many threads: THREADS, which threads.py's tuner sets to the count it gives the BLAS (a core
another program keeps busy slows a split ufunc as much as a split GEMM), at most CAP.
LSTMTEXT_THREADS=1 turns it off (the pure single-threaded NumPy path); another value is the cap.
"""

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

# Below this many elements a thread hand-off costs more than it saves.
MIN_PARALLEL = 1 << 16


def _cap() -> int:
    env = os.environ.get("LSTMTEXT_THREADS")
    return max(1, int(env)) if env else 4  # past 4 threads the hand-offs eat the gain


def cores() -> int:
    """The cores this process may run on (its affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


CAP = _cap()
THREADS = max(1, min(CAP, cores()))
_pool: ThreadPoolExecutor | None = None


def set_threads(n: int) -> None:
    """Split elementwise work in up to n threads from now on (capped at CAP)."""
    global THREADS
    THREADS = max(1, min(CAP, n))


def row_blocks(n_rows: int, size: int, fn: Callable[[slice], None], threads: int | None = None) -> None:
    """Call fn(rows) on contiguous row slices covering range(n_rows), in parallel when it pays.

    `size` is the total number of elements, used to decide. fn must only write its own rows."""
    global _pool
    k = THREADS if threads is None else threads
    k = min(k, n_rows)
    if k <= 1 or size < MIN_PARALLEL:
        fn(slice(0, n_rows))
        return
    if _pool is None:
        # Sized for the cap, so THREADS can change later; idle workers block (no CPU), and new
        # ones start only when no idle one is free.
        _pool = ThreadPoolExecutor(max_workers=max(1, CAP - 1), thread_name_prefix="lstmtext")
    bounds = [n_rows * i // k for i in range(k + 1)]
    futures = [_pool.submit(fn, slice(bounds[i], bounds[i + 1])) for i in range(1, k)]
    fn(slice(bounds[0], bounds[1]))  # the calling thread takes the first block
    for f in futures:
        f.result()
