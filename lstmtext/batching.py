"""Cutting one long token sequence into B parallel streams and TBPTT windows.

The stream layout (as in Zaremba et al. and PyTorch's word_language_model): the ids are cut into B
contiguous pieces of n = len // B tokens, placed side by side as the columns of an (n, B) array.
Row t holds the t-th token of every stream, so the window [i, i+T) is a contiguous (T, B) slice and
its targets are rows [i+1, i+T+1). The last len % B tokens (fewer than B) are dropped: the
documented tail. Within a stream nothing is dropped or repeated; the last window may be shorter.

    ids = 0 1 2 3 4 5 6 7 8 9 10, B = 2  ->  streams (n = 5):  col 0 = 0 1 2 3 4
                                                               col 1 = 5 6 7 8 9   (10 dropped)
"""

from collections.abc import Iterator

import numpy as np

from lstmtext.errors import CorpusError


def make_streams(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """ids (N,) -> streams (n, B) with n = N // B."""
    n = len(ids) // batch_size
    return np.ascontiguousarray(ids[: n * batch_size].reshape(batch_size, n).T)  # (n, B)


def num_windows(n: int, bptt: int) -> int:
    """Windows over a stream of n tokens: n - 1 predictions, bptt at a time."""
    return -(-(n - 1) // bptt)


def windows(
    streams: np.ndarray, bptt: int, start: int = 0, lengths: list[int] | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (inputs, targets), each (T, B), from window number `start` on (for resuming). lengths:
    each window's T (jittered_lengths); None: bptt each."""
    n = streams.shape[0]
    if lengths is None:
        lengths = [min(bptt, n - 1 - i) for i in range(0, n - 1, bptt)]
    i = sum(lengths[:start])
    for T in lengths[start:]:
        yield streams[i : i + T], streams[i + 1 : i + 1 + T]
        i += T


JITTER_SPREAD = 5  # AWD-LSTM's: a window's length is normal around bptt (or bptt/2) with this spread,
JITTER_SHORT = 0.05  # ... around bptt/2 one time in 20,
JITTER_MIN = 5  # ... at least 5 steps,
JITTER_MAX = 4 * JITTER_SPREAD  # ... and (here) at most bptt + 20, so that MPI's buffers know a window's size


def jittered_lengths(n: int, bptt: int, rng: np.random.Generator) -> list[int]:
    """AWD-LSTM's variable TBPTT windows over streams of n tokens: the state is cut at different
    places each epoch, so no token is always the first of its window. -> each window's T."""
    lengths, i = [], 0
    while i < n - 1:
        centre = bptt / 2 if rng.random() < JITTER_SHORT else bptt
        T = min(max(JITTER_MIN, int(rng.normal(centre, JITTER_SPREAD))), bptt + JITTER_MAX, n - 1 - i)
        lengths.append(T)
        i += T
    return lengths


def groups(windows: Iterator, k: int) -> Iterator[list]:
    """Consecutive windows k at a time (--accumulate); the last group of an epoch may be shorter."""
    group = []
    for w in windows:
        group.append(w)
        if len(group) == k:
            yield group
            group = []
    if group:
        yield group


def check_enough(num_tokens: int, batch_size: int, bptt: int, what: str) -> None:
    """One full window needs batch_size * (bptt + 1) tokens: bptt inputs and one more target per stream."""
    need = batch_size * (bptt + 1)
    if num_tokens < need:
        raise CorpusError(
            f"{what} has {num_tokens} tokens, but --batch-size {batch_size} × (--bptt {bptt} + 1) "
            f"needs at least {need}; use a smaller --batch-size or --bptt, or more text"
        )


def padded_streams(ids: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For evaluation, where every token must count exactly once: predict ids[1:] from ids[:-1]
    in B streams, padding the last stream. -> inputs (n, B), targets (n, B), mask (n, B)."""
    x, y = ids[:-1], ids[1:]
    M = len(x)
    n = -(-M // batch_size)
    pad = n * batch_size - M
    mask = np.concatenate([np.ones(M, np.float32), np.zeros(pad, np.float32)])
    x = np.concatenate([x, np.zeros(pad, ids.dtype)])
    y = np.concatenate([y, np.zeros(pad, ids.dtype)])
    return tuple(np.ascontiguousarray(a.reshape(batch_size, n).T) for a in (x, y, mask))  # (n, B) each
