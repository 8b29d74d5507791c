"""Elementwise work on both cores.

NumPy's ufuncs run on one core, while its matrix products already use all of them. Most ufuncs
release the GIL, so splitting a large array into row blocks and running the same NumPy code on
each block in a thread really runs in parallel. Every row is computed by exactly the same
operations whatever the split, so the result is bit-for-bit that of the one-thread path.

LSTMTEXT_THREADS=1 turns it off (the pure single-threaded NumPy path).
"""

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

# Below this many elements a thread hand-off costs more than it saves.
MIN_PARALLEL = 1 << 16


def _default_threads() -> int:
    env = os.environ.get("LSTMTEXT_THREADS")
    if env:
        return max(1, int(env))
    return max(1, min(4, len(os.sched_getaffinity(0))))


THREADS = _default_threads()
_pool: ThreadPoolExecutor | None = None


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
        _pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="lstmtext")
    bounds = [n_rows * i // k for i in range(k + 1)]
    futures = [_pool.submit(fn, slice(bounds[i], bounds[i + 1])) for i in range(1, k)]
    fn(slice(bounds[0], bounds[1]))  # the calling thread takes the first block
    for f in futures:
        f.result()
