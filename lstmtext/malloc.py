"""Keep the memory a training window frees, so the next window reuses it instead of faulting it in.

A window's caches and gradients are a handful of arrays of tens of MB each, freed when the window
ends and allocated again, with the same sizes, by the next one. glibc serves blocks that large with
fresh mmap'd pages and unmaps them on free, so every window pays one page fault per 4 KB page
again: ~9,500 faults per window on the char benchmark row, 10% of its step time on this
machine's VM (docs/speed.md "Speed"). Raising the mmap threshold puts those blocks in the heap, and
raising the trim threshold stops free() from handing the heap's top back to the kernel, so after
the first window there are no faults at all. The price is that the process keeps its peak heap
until it exits, which for a trainer is what it would use again a moment later anyway.

This is process-wide, so only programs call it (`lstmtext`'s entry point, the benchmark), never
the library on import. Elsewhere than glibc it does nothing.
"""

import ctypes
import ctypes.util

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap
TRIM_THRESHOLD = (1 << 31) - 1  # the largest an int holds: never give the heap's top back


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse. -> whether it took effect (False off glibc)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
