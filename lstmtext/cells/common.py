"""What every cell shares, so that a cell module holds only its recurrence.

A cell declares its fused gate blocks (`BLOCKS`, e.g. "ifgo"), the block that holds a forget gate
(`FORGET`, or None) and its per-unit extra parameters (`EXTRA`); from that come its parameter shapes
and initial values. Every window starts with one input projection x W_x + b for all its steps, and
ends with the same weight-gradient GEMMs and dx; only the steps in between are the cell's own.
"""

from collections.abc import Callable
from dataclasses import dataclass

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


# --- For the cells with a cell state, h = o ⊙ tanh(c) (LSTM, CIFG, peephole) ---
#
# The one state layout inside a window, for every cell with a per-step matrix product: time-major;
# each step's gates and states feature-major, (G·H, B) and (H, B), because OpenBLAS runs these
# small-batch products much faster as W_h^T h^T (README "Speed"); h batch-major, (T+1, B, H), its
# step-t block written through a transposed view, so the output and the weight gradients are plain
# GEMMs on contiguous memory. The fused gate blocks end with the output gate o.


@dataclass(frozen=True)
class CellStateRule:
    """What a cell-state cell adds to the shared loops: its gate blocks (o last) with σ or tanh for
    each ("s"/"t"), the block of its forget gate, its write of c_t and its local derivatives."""

    blocks: str  # e.g. "ifgo"
    kinds: str  # e.g. "ssts"
    forget: int  # the block of f, through which c_t reaches c_{t+1}
    write: Callable  # (a (GH,B) activated gates, c_prev, c_next, tmp (H,B)) -> None: fills c_next
    # (k, cache) -> None: multiplies each c-writing block of k (T, GH, B), which holds its gate's σ' or
    # tanh', by what that gate multiplies in the write, so that k becomes ∂c_t/∂a there
    local_derivatives: Callable


@dataclass
class CellStateCache:
    x: np.ndarray  # (T, B, D) window input
    gates: np.ndarray  # (T, GH, B) activated gates, feature-major, o last
    c: np.ndarray  # (T+1, H, B) cell states, c[0] = the initial one
    tanh_c: np.ndarray  # (T, H, B)
    h: np.ndarray  # (T+1, B, H) hidden states, h[0] = the initial one
    act: GateActivation  # which rows of the GH axis are σ and which tanh
    W_x: np.ndarray  # (D, GH)
    W_h: np.ndarray  # (H, GH)
    peep: tuple | None  # the peephole cell's (p_i, p_f, p_o), each (H, 1); None for the others
    rule: CellStateRule


def cell_state_forward(
    p: dict, x: np.ndarray, state: dict, rule: CellStateRule, peep: tuple | None = None
) -> tuple[np.ndarray, CellStateCache]:
    """x (T,B,D), state {"h", "c": (B,H)} -> h (T,B,H) (a view of the cache: read-only), cache.

    peep: the peephole weights, (H, 1) each: i and f then see c_{t-1}, and o sees c_t, so o is
    activated after the write. The peephole paths are the LSTM's alone: with peep, blocks start "if"."""
    assert peep is None or rule.blocks[:2] == "if", rule.blocks
    W_x, W_h = p["W_x"], p["W_h"]
    T, B, _ = x.shape
    H = W_h.shape[0]
    GH = W_h.shape[1]
    dt = x.dtype
    act = GateActivation.of(rule.kinds, H, dt)
    if peep is not None:
        act_c = GateActivation.of(rule.kinds[:-1], H, dt)  # all but o, which waits for c_t
        p_i, p_f, p_o = peep  # (H, 1) each
    xW = input_projection(x, W_x, p["b"])  # (T, B, GH), b included
    gates = np.empty((T, GH, B), dtype=dt)
    c = np.empty((T + 1, H, B), dtype=dt)
    tanh_c = np.empty((T, H, B), dtype=dt)
    h = np.empty((T + 1, B, H), dtype=dt)
    c[0], h[0] = state["c"].T, state["h"]
    W_hT = np.ascontiguousarray(W_h.T)  # (GH, H)
    tmp = np.empty((H, B), dtype=dt)
    for t in range(T):
        a = gates[t]  # (GH, B), filled and activated in place
        np.matmul(W_hT, h[t].T, out=a)  # (GH, B); h[t].T is a transposed view, a BLAS flag
        a += xW[t].T
        o = a[GH - H :]  # (H, B)
        if peep is None:
            act.apply(a)
            rule.write(a, c[t], c[t + 1], tmp)
        else:
            np.multiply(p_i, c[t], out=tmp)
            a[:H] += tmp
            np.multiply(p_f, c[t], out=tmp)
            a[H : 2 * H] += tmp
            act_c.apply(a[: GH - H])
            rule.write(a, c[t], c[t + 1], tmp)
            np.multiply(p_o, c[t + 1], out=tmp)
            o += tmp
            sigmoid(o, out=o)
        np.tanh(c[t + 1], out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=h[t + 1].T)  # (H, B) written into the (B, H) row
    return h[1:], CellStateCache(x, gates, c, tanh_c, h, act, W_x, W_h, peep, rule)


def cell_state_backward(dh: np.ndarray, cache: CellStateCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) = dLoss/dh_t from above -> dx (T,B,D), grads, dstate (w.r.t. the initial state),
    for the cells of cell_state_forward."""
    x, gates, c, tanh_c, W_h, peep = cache.x, cache.gates, cache.c, cache.tanh_c, cache.W_h, cache.peep
    T, B, _ = x.shape
    H, GH = W_h.shape
    dt = x.dtype
    k = cache.act.derivative(gates)  # (T, GH, B) σ' or tanh' per gate
    k[:, GH - H :] *= tanh_c  # o: ∂h_t/∂a_o = tanh(c_t) σ'(a_o)
    cache.rule.local_derivatives(k, cache)  # the others: ∂c_t/∂a
    forget = cache.rule.forget
    f = gates[:, forget * H : (forget + 1) * H]  # (T, H, B)
    o = gates[:, GH - H :]  # (T, H, B)
    k_c = k[:, : GH - H].reshape(T, -1, H, B)  # (T, G-1, H, B) the blocks that write c
    dc_from_h = o * (1.0 - tanh_c * tanh_c)  # (T, H, B) ∂h_t/∂c_t through tanh
    dA = np.empty((T, B, GH), dtype=dt)  # dLoss / d pre-activations, batch-major for the GEMMs
    # (GH, B) the same, one step, feature-major; zeros, because the peephole carry at t = T-1 reads
    # "step T's" da, which must be none
    da = np.zeros((GH, B), dtype=dt)
    da_c, da_o = da[: GH - H], da[GH - H :]  # (GH-H, B), (H, B)
    dc_blocks = da_c.reshape(-1, H, B)  # (G-1, H, B): every c-writing block sees the same dc
    dh_next = np.zeros((H, B), dtype=dt)  # gradient arriving from step t+1 (cut after T)
    dh_t = np.empty((H, B), dtype=dt)
    dc = np.zeros((H, B), dtype=dt)
    tmp = np.empty((H, B), dtype=dt)
    for t in reversed(range(T)):
        np.add(dh[t].T, dh_next, out=dh_t)  # (H, B)
        dc *= f[t + 1] if t + 1 < T else 0.0  # dc_{t+1} f_{t+1}: what flows back through the cell
        if peep is not None:  # c_t also reached step t+1's i and f (da still holds step t+1's)
            np.multiply(da[:H], peep[0], out=tmp)
            dc += tmp
            np.multiply(da[H : 2 * H], peep[1], out=tmp)
            dc += tmp
        np.multiply(dh_t, dc_from_h[t], out=tmp)
        dc += tmp  # (H, B)
        np.multiply(dh_t, k[t, GH - H :], out=da_o)  # o
        if peep is not None:  # and this step's o
            np.multiply(da_o, peep[2], out=tmp)
            dc += tmp
        np.multiply(dc, k_c[t], out=dc_blocks)  # all c-writing blocks at once
        np.matmul(W_h, da, out=dh_next)  # (H, B)
        dA[t] = da.T  # (B, GH)
    dc *= f[0]  # gradient w.r.t. c_0
    if peep is not None:  # and through step 0's i and f
        dc += da[:H] * peep[0] + da[H : 2 * H] * peep[1]
    grads, dx = window_grads(x, cache.h[:-1], dA, cache.W_x)  # h_{t-1} is each step's input
    if peep is not None:
        c_bm = c.transpose(0, 2, 1)  # (T+1, B, H)
        grads["p_i"] = np.einsum("tbh,tbh->h", dA[:, :, :H], c_bm[:-1])  # (H,)
        grads["p_f"] = np.einsum("tbh,tbh->h", dA[:, :, H : 2 * H], c_bm[:-1])
        grads["p_o"] = np.einsum("tbh,tbh->h", dA[:, :, GH - H :], c_bm[1:])
    return dx, grads, {"h": np.ascontiguousarray(dh_next.T), "c": np.ascontiguousarray(dc.T)}


def cell_state_quantities(cache: CellStateCache) -> dict[str, np.ndarray]:
    """{name: (T, B, H)}: the hidden and cell states and every gate block by its letter."""
    c = cache.c[1:].transpose(0, 2, 1)  # (T, B, H)
    return {"h": cache.h[1:], "c": c, **named_blocks(cache.gates, cache.rule.blocks, 1)}


def cell_state_final(cache: CellStateCache) -> dict:
    return {"h": cache.h[-1].copy(), "c": np.ascontiguousarray(cache.c[-1].T)}  # (B, H)
