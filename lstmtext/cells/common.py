"""What every cell shares, so that a cell module holds only its recurrence.

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


def dsigmoid_from_out(s: np.ndarray) -> np.ndarray:
    """σ'(x) written with the output s = σ(x), which the forward pass already stored."""
    return s * (1.0 - s)


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
    recurrent = {"W_h": (H, GH)} if getattr(cell, "RECURRENT", True) else {}  # minGRU's gates see x only
    return {"W_x": (D, GH), **recurrent, "b": (GH,), **{name: (H,) for name in cell.EXTRA}}


def init_params(cell, rng: np.random.Generator, D: int, H: int, scale: float, dtype) -> dict:
    """W_x and W_h uniform in ±scale, b zero but FORGET_BIAS on the forget block (cell.FORGET), then
    each extra as cell.EXTRA says ("uniform" or "zero"), drawn in that order."""
    GH = len(cell.BLOCKS) * H
    p = {"W_x": uniform(rng, (D, GH), scale, dtype)}
    if getattr(cell, "RECURRENT", True):
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


def window_grads(
    x: np.ndarray, h_prev: np.ndarray | None, dA: np.ndarray, W_x: np.ndarray, dA_h: np.ndarray | None = None
) -> tuple[dict, np.ndarray]:
    """The end of every cell's backward pass, one GEMM each over the whole window.

    x (T,B,D) the window input, h_prev (T,B,H) each step's recurrent input h_{t-1}, dA (T,B,G·H) the
    loss gradient of the pre-activations x W_x + h W_h + b; dA_h the one of h W_h where it differs
    (the GRU's candidate sees h W_hn through its reset gate); h_prev None for a cell without W_h.
    -> {"W_x", "W_h", "b"}, dx (T,B,D)."""
    T, B, D = x.shape
    dA2 = dA.reshape(T * B, -1)  # (TB, GH)
    dAh = dA2 if dA_h is None else dA_h.reshape(T * B, -1)  # (TB, GH)
    grads = {"W_x": x.reshape(T * B, D).T @ dA2}  # (D, GH)
    if h_prev is not None:
        grads["W_h"] = h_prev.reshape(T * B, -1).T @ dAh  # (H, GH)
    grads["b"] = dA2.sum(axis=0)  # (GH,)
    dx = (dA2 @ W_x.T).reshape(T, B, D)  # (T, B, D)
    return grads, dx


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


# --- For the cells whose gates see x_t only (minGRU, minLSTM): h_t = a_t ⊙ h_{t-1} + b_t ---


def positive(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """g(v) = v + 1/2 (v ≥ 0), σ(v) (v < 0): continuous at 0, positive (which the log-space scan of
    Feng et al. 2024, appendix B.3, needs; σ rounds to 0 only below v ≈ −20 in float32), linear for
    large v. -> g(v), g'(v)."""
    s = sigmoid(v)
    pos = v >= 0
    return np.where(pos, v + 0.5, s), np.where(pos, v.dtype.type(1), s * (1.0 - s))


def linear_scan(a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """a, b (T,B,H), h0 (B,H) -> h (T+1,B,H) with h[0] = h0 and h_t = a_t ⊙ h_{t-1} + b_t.

    Step by step: two elementwise passes a step. The log-space parallel form (Heinsen 2023) computes
    the same with whole-window passes of log, cumsum, logaddexp.accumulate and exp, but measured
    27 to 53 times slower in NumPy (`python -m bench.scan`), so the loop stays."""
    T = a.shape[0]
    h = np.empty((T + 1, *h0.shape), dtype=a.dtype)
    h[0] = h0
    for t in range(T):
        np.multiply(a[t], h[t], out=h[t + 1])  # (B, H)
        h[t + 1] += b[t]
    return h


def linear_scan_backward(dh: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dh (T,B,H) = dLoss/dh_t from above, a (T,B,H) -> the whole dLoss/dh_t (T,B,H) (from above and
    through h_{t+1}), and dLoss/dh_0 (B,H). Then db_t is that dh_t and da_t = dh_t ⊙ h_{t-1}."""
    T = a.shape[0]
    total = np.empty_like(dh)  # (T, B, H)
    carry = np.zeros_like(dh[0])  # (B, H)
    for t in reversed(range(T)):
        np.add(dh[t], carry, out=total[t])
        np.multiply(a[t], total[t], out=carry)
    return total, carry
