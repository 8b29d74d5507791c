"""What every cell shares, so that a cell module holds only its recurrence (the linear-scan cells'
step-by-step scan is in cells/linear_scan.py).

A cell declares its fused gate blocks (`BLOCKS`, e.g. "ifgo"), the block that holds a forget gate
(`FORGET`, or None) and its per-unit extra parameters (`EXTRA`); from that come its parameter shapes
and initial values. Every window starts with one input projection x W_x + b for all its steps, and
ends with the same weight-gradient GEMMs and dx; only the steps in between are the cell's own.
"""

import numpy as np

# A forget-gate bias of 1 keeps the cell state flowing early in training, before the gates have
# learned anything (Gers et al. 2000; Jozefowicz et al. 2015, "An Empirical Exploration of RNNs").
FORGET_BIAS = 1.0


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """σ(x) = (1 + tanh(x/2)) / 2: the same function as 1/(1+e^-x), but it cannot overflow."""
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + e^x) = max(x, 0) + log(1 + e^−|x|), which cannot overflow. The same function as
    np.logaddexp(0, x) to a rounding of the log (an absolute error, harmless where it is added to
    or subtracted from another log), in vectorised calls: logaddexp is not, and is ten times slower."""
    out = np.abs(x)
    np.negative(out, out=out)
    np.exp(out, out=out)  # e^−|x| in (0, 1]
    out += 1.0
    np.log(out, out=out)
    out += np.maximum(x, 0.0)
    return out


def named_blocks(a: np.ndarray, names: str, feature_axis: int) -> dict[str, np.ndarray]:
    """A fused gate array, (T, G·H, B) feature-major (feature_axis 1) or (T, B, G·H) batch-major
    (feature_axis 2), as {name: (T, B, H)} views, one per letter of `names` in fused order."""
    H = a.shape[feature_axis] // len(names)
    out = {}
    for k, name in enumerate(names):
        if feature_axis == 1:
            out[name] = a[:, k * H : (k + 1) * H].transpose(0, 2, 1)  # (T, B, H)
        else:
            out[name] = a[:, :, k * H : (k + 1) * H]  # (T, B, H)
    return out


def uniform(rng: np.random.Generator, shape: tuple[int, ...], scale: float, dtype) -> np.ndarray:
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


def param_shapes(cell, D: int, H: int) -> dict[str, tuple[int, ...]]:
    """A cell's parameters from its declaration: W_x (D, G·H), W_h (H, G·H) and b (G·H,) for its G
    fused gate blocks (cell.BLOCKS), then its per-unit extras (cell.EXTRA), each (H,)."""
    GH = len(cell.BLOCKS) * H
    recurrent = {"W_h": (H, GH)} if cell.RECURRENT else {}  # minGRU's gates see x only
    return {"W_x": (D, GH), **recurrent, "b": (GH,), **{name: (H,) for name in cell.EXTRA}}


def init_params(cell, rng: np.random.Generator, D: int, H: int, scale: float, dtype) -> dict:
    """W_x and W_h uniform in ±scale, b zero but FORGET_BIAS on the forget block (cell.FORGET), then
    each extra as cell.EXTRA says ("uniform" or "zero"), drawn in that order."""
    GH = len(cell.BLOCKS) * H
    p = {"W_x": uniform(rng, (D, GH), scale, dtype)}
    if cell.RECURRENT:
        p["W_h"] = uniform(rng, (H, GH), scale, dtype)
    b = np.zeros(GH, dtype=dtype)
    if cell.FORGET is not None:
        b[cell.FORGET * H : (cell.FORGET + 1) * H] = FORGET_BIAS
    p["b"] = b
    for name, how in cell.EXTRA.items():
        p[name] = uniform(rng, (H,), scale, dtype) if how == "uniform" else np.zeros(H, dtype=dtype)
    return p


def input_projection(x: np.ndarray, W_x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x (T,B,D) -> x W_x + b (T, B, G·H): the input part of every step of the window in one GEMM;
    only h_{t-1} W_h has to wait for the loop over steps."""
    T, B, D = x.shape
    xw = x.reshape(T * B, D) @ W_x  # (TB, GH)
    xw += b
    return xw.reshape(T, B, -1)  # (T, B, GH)


def transposed(W: np.ndarray) -> np.ndarray:
    """W.T as a C-ordered copy (the recurrent weights, feature-major, once a window).

    The copy reads W down its columns. When a row of W is a multiple of 512 bytes long (float32 G·H
    a multiple of 128: any H divisible by 32 for the LSTM) every row starts in the same few cache
    sets, they evict each other, and NumPy's copy runs 3-5 times slower (768 × 3072: 10.3 ms against
    3.4 here; 512 × 2048: 4.3 against 0.84). Copying W first into rows 64 bytes longer spreads them
    over the cache, for one fast contiguous pass more."""
    n, m = W.shape  # (H, GH)
    if (m * W.itemsize) % 512:
        return np.ascontiguousarray(W.T)  # (GH, H)
    padded = np.empty((n, m + 64 // W.itemsize), dtype=W.dtype)  # (H, GH + pad)
    padded[:, :m] = W  # (H, GH) the contiguous pass
    return np.ascontiguousarray(padded[:, :m].T)  # (GH, H)


def input_projection_fm(x: np.ndarray, W_x: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """The same, feature-major for the cells whose steps are: x (T,B,D) -> (G·H, T, B), so that a
    step's part [:, t] is a (G·H, B) block of B-long rows, added to the step's product as it lies.
    One GEMM still (W_xᵀ xᵀ: BLAS reads both transposes in place). b None leaves the bias out, for
    the compiled steps, which add it with the input part (one pass over the window fewer)."""
    T, B, D = x.shape
    xw = W_x.T @ x.reshape(T * B, D).T  # (GH, TB)
    if b is not None:
        xw += b[:, None]  # (GH, TB)
    return xw.reshape(-1, T, B)  # (GH, T, B)


def window_grads(
    x: np.ndarray, h_prev: np.ndarray | None, dA: np.ndarray, W_x: np.ndarray, dA_h: np.ndarray | None = None
) -> tuple[dict, np.ndarray]:
    """The end of every cell's backward pass, one GEMM each over the whole window.

    x (T,B,D) the window input, h_prev (T,B,H) each step's recurrent input h_{t-1}, dA (T·B, G·H)
    the loss gradient of the pre-activations x W_x + h W_h + b, one row per step and stream in x's
    order (batch-major dA.reshape(T·B, -1), or feature-major (G·H, T·B) transposed: BLAS reads
    either in place); dA_h the one of h W_h where it differs (the GRU's candidate sees h W_hn
    through its reset gate); h_prev None for a cell without W_h. -> {"W_x", "W_h", "b"}, dx (T,B,D)."""
    T, B, D = x.shape
    dAh = dA if dA_h is None else dA_h  # (TB, GH)
    grads = {"W_x": x.reshape(T * B, D).T @ dA}  # (D, GH)
    if h_prev is not None:
        grads["W_h"] = h_prev.reshape(T * B, -1).T @ dAh  # (H, GH)
    # the bias's as a product too: NumPy's sum over dA's rows took 4 times as long (0.30 against 0.07 ms
    # at the tiny row's 2,000 × 512)
    grads["b"] = np.ones(T * B, dtype=dA.dtype) @ dA  # (GH,) Σ over the window's rows
    dx = (dA @ W_x.T).reshape(T, B, D)  # (T, B, D)
    return grads, dx


def window_step(forward, final_state):
    """A cell's `step` for generation made from its window forward: x (B,D) -> h (B,H), next state,
    a window of one step. For the cells whose step has no cheaper form than their window."""

    def step(p: dict, x: np.ndarray, state: dict, **options) -> tuple[np.ndarray, dict]:
        h, cache = forward(p, x[None], state, **options)  # (1, B, H)
        return h[0].copy(), final_state(cache)

    step.__doc__ = "One step, as a window of one: x (B,D) -> h (B,H), next state."
    return step


class GateActivation:
    """σ on some H-row blocks of a fused, feature-major gate array (G·H, B) and tanh on the others.

    σ(x) = (1 + tanh(x/2)) / 2, so both are one tanh between a per-row scale and offset: four
    whole-array passes per step instead of one call per gate. `kinds` names each block: "s" for σ,
    "t" for tanh, e.g. "ssts" for the LSTM's i|f|g|o.
    """

    def __init__(self, kinds: str, H: int, dtype):
        sig = np.repeat(np.array([k == "s" for k in kinds]), H)[:, None]  # (GH, 1)
        self.scale = np.where(sig, 0.5, 1.0).astype(dtype)  # (GH, 1)
        self.offset = np.where(sig, 0.5, 0.0).astype(dtype)  # (GH, 1)
        self.is_sig = sig.astype(dtype)  # (GH, 1) 1 on σ rows, 0 on tanh rows

    _cache: dict = {}

    @classmethod
    def of(cls, kinds: str, H: int, dtype) -> "GateActivation":
        """Shared instances: the small per-row vectors are made once per shape."""
        key = (kinds, H, np.dtype(dtype).str)
        if key not in cls._cache:
            cls._cache[key] = cls(kinds, H, dtype)
        return cls._cache[key]

    def apply(self, a: np.ndarray) -> None:
        """a (GH, B) pre-activations -> activations, in place."""
        a *= self.scale
        np.tanh(a, out=a)
        a *= self.scale
        a += self.offset

    def derivative(self, s: np.ndarray) -> np.ndarray:
        """From outputs s (..., GH, B): σ' = s(1 - s) on σ rows, tanh' = 1 - s² on tanh rows,
        written once as s(m - s) + (1 - m) with m = 1 on σ rows."""
        d = self.is_sig - s  # (..., GH, B)
        d *= s
        d += 1.0 - self.is_sig
        return d
