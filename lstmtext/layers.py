"""The non-recurrent layers: embedding lookup, dropout, and the linear head with softmax
cross-entropy. Each is a pair of pure functions, forward -> (out, cache) and backward -> grads."""

from dataclasses import dataclass

import numpy as np

from lstmtext import parallel
from lstmtext.cells import compiled

# ---------------------------------------------------------------------------------------------
# Embedding: out[t, b] = W[ids[t, b]]


def embedding_forward(W: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W (V,E), ids (T,B) int -> out (T,B,E); the cache is just the ids."""
    return W[ids], ids  # (T, B, E)


@dataclass
class RowGrad:
    """The gradient of an embedding table: nonzero only in the rows of the ids a window used, so it
    is kept as those rows. A dense (V,E) array would be mostly zeros and cost a V×E pass to build,
    another to clip and another to apply."""

    rows: np.ndarray  # (U,) distinct ids, ascending
    values: np.ndarray  # (U, E) summed gradient of each row
    shape: tuple[int, int]  # (V, E) of the table

    def dense(self) -> np.ndarray:
        d = np.zeros(self.shape, dtype=self.values.dtype)  # (V, E)
        d[self.rows] = self.values
        return d


# sum_rows's choice without numba: a GEMM with the one-hot matrix once ids repeat this many times on
# average, and are few (the GEMM costs U·N·E where reduceat costs N·E).
RUNS_FOR_GEMM = 8
GEMM_ROWS = 256


def sum_rows(ids: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> RowGrad:
    """ids (N,) with repeats, values (N, E) -> RowGrad: each distinct id once, with the sum of its rows.
    The embedding's backward, --accumulate's windows and MPI's ranks all merge rows this way."""
    order = np.argsort(ids, kind="stable")  # (N,) equal ids next to each other
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])  # (U,) first of each run
    rows = sorted_ids[starts]  # (U,)
    # numba (cells/compiled.py): one loop along the rows, 0.3-0.5 ns a number added where reduceat took
    # 3.4-5.5. Only for C-ordered values, the layout every caller passes: another would compile a second
    # kernel.
    if (k := compiled.kernels(values.dtype)) and values.flags.c_contiguous:
        out = np.empty((rows.size, values.shape[1]), dtype=values.dtype)  # (U, E)
        k.sum_runs(order, starts, values, out)
        return RowGrad(rows, out, shape)
    if ids.size >= RUNS_FOR_GEMM * rows.size and rows.size <= GEMM_ROWS:
        # Few ids, each many times (characters): the sum is one-hot(ids)ᵀ values, one GEMM, where
        # reduceat crawls along long runs (N 5,000, E 512, U 100: 3.8 ms against 17).
        onehot = (rows[:, None] == ids[None, :]).astype(values.dtype)  # (U, N)
        return RowGrad(rows, onehot @ values, shape)  # (U,), (U, E)
    return RowGrad(rows, np.add.reduceat(values[order], starts, axis=0), shape)  # (U,), (U, E)


def embedding_backward(dout: np.ndarray, ids: np.ndarray, V: int) -> RowGrad:
    """dout (T,B,E) -> gradient of W (V,E), as rows. A word seen k times receives the sum of k rows."""
    E = dout.shape[-1]
    return sum_rows(ids.reshape(-1), dout.reshape(-1, E), (V, E))  # (N,), (N, E)


# ---------------------------------------------------------------------------------------------
# Dropout (inverted: scaled at training time, so evaluation is the identity)


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float, dtype) -> np.ndarray:
    """Mask of 0 and 1/(1-p): keeps the expected activation unchanged."""
    keep = rng.random(shape) >= p
    return keep.astype(dtype) * np.asarray(1.0 / (1.0 - p), dtype=dtype)


# dropout forward is x * mask and backward is dout * mask; no function needed for one multiply.


# ---------------------------------------------------------------------------------------------
# Linear head + softmax cross-entropy, fused: one (N,V) buffer holds the logits, then exp(logits -
# max), then the gradient. Nothing else V-sized is materialized, and the elementwise passes run on
# row blocks in parallel (see parallel.py).


# Elements of a (N,V) block processed together, about L2's size: 32 rows of a 10,000-word vocabulary.
# A small vocabulary takes more rows at once, or the per-call cost of NumPy dominates (V = 50: 6,400).
CACHE_FLOATS = 320_000


@dataclass
class HeadCache:
    h: np.ndarray  # (N, H) input of the head
    exp: np.ndarray  # (N, V) exp(logits - row max), unnormalized; becomes dlogits in backward
    total: np.ndarray  # (N,) row sums of exp: softmax = exp / total
    targets: np.ndarray  # (N,) int
    weight: np.ndarray  # (N,) each token's share of the loss (1/N, or mask / count)


def head_forward(
    h: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray | None = None,
) -> tuple[float, np.ndarray, HeadCache]:
    """h (N,H), W (H,V), b (V,), targets (N,) -> weighted mean loss, nll (N,), cache.

    mask (N,) of 0/1 marks the tokens that count (evaluation pads its last window); None counts
    all."""
    N = h.shape[0]
    logits = h @ W  # (N, V)
    rows = np.arange(N)
    row_max = np.empty(N, dtype=h.dtype)  # (N,)
    total = np.empty(N, dtype=h.dtype)  # (N,)

    k = compiled.kernels(h.dtype, N)

    def block(rows: slice) -> None:
        if k:  # numba installed and not turned off: the same in two passes over each row (cells/compiled.py)
            k.softmax_rows(rows.start, rows.stop, logits, b, row_max, total)
            return
        # A few rows at a time, so the five passes below find their rows still in cache.
        step = max(1, CACHE_FLOATS // logits.shape[1])
        for start in range(rows.start, rows.stop, step):
            r = slice(start, min(start + step, rows.stop))
            z = logits[r]  # (n, V) a view: everything happens in place
            z += b
            # Subtracting the row max makes exp() safe and does not change the softmax.
            np.max(z, axis=1, out=row_max[r])
            z -= row_max[r, None]
            np.exp(z, out=z)
            np.sum(z, axis=1, out=total[r])

    target_logit = logits[rows, targets] + b[targets]  # (N,) read before the in-place passes
    parallel.row_blocks(N, logits.size, block)
    nll = np.log(total) + row_max - target_logit  # (N,) = log Σ exp(z) - z[target]
    if mask is None:
        weight = np.full(N, 1.0 / N, dtype=h.dtype)  # (N,)
    else:
        weight = mask.astype(h.dtype) / max(float(mask.sum()), 1.0)  # (N,)
    loss = float(np.dot(nll.astype(np.float64), weight))
    return loss, nll, HeadCache(h, logits, total, targets, weight)


def head_backward(cache: HeadCache, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradient of the weighted mean loss -> dh (N,H), dW (H,V), db (V,).

    d loss / d logits = weight * (softmax - onehot(target)), formed in place of the exp buffer."""
    N = cache.h.shape[0]
    dlogits = cache.exp  # (N, V) reused: the cache is spent after backward
    scale = (cache.weight / cache.total)[:, None]  # (N, 1) normalizes and weights in one pass

    def block(r: slice) -> None:
        dlogits[r] *= scale[r]

    parallel.row_blocks(N, dlogits.size, block)
    dlogits[np.arange(N), cache.targets] -= cache.weight
    dh = dlogits @ W.T  # (N, H)
    # A column of ones beside h makes the bias gradient the last row of the same GEMM, instead of
    # one more pass over the (N,V) buffer.
    h1 = np.empty((N, cache.h.shape[1] + 1), dtype=cache.h.dtype)  # (N, H+1)
    h1[:, :-1], h1[:, -1] = cache.h, 1.0
    dWb = h1.T @ dlogits  # (H+1, V)
    return dh, dWb[:-1], dWb[-1]
