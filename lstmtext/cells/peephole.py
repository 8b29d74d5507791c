"""Peephole LSTM (Gers & Schmidhuber 2000): the gates also look at the cell state.

Row vectors, gates fused along one 4H axis in the order i|f|g|o, peephole weights diagonal (H,):

    i_t = σ(x_t W_xi + h_{t-1} W_hi + p_i ⊙ c_{t-1} + b_i)
    f_t = σ(x_t W_xf + h_{t-1} W_hf + p_f ⊙ c_{t-1} + b_f)
    g_t = tanh(x_t W_xg + h_{t-1} W_hg + b_g)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    o_t = σ(x_t W_xo + h_{t-1} W_ho + p_o ⊙ c_t + b_o)     (o sees the new cell state)
    h_t = o_t ⊙ tanh(c_t)

The peepholes let a gate react to what the cell holds even while the output gate hides it from h,
which helps with precise timing. With p_i = p_f = p_o = 0 this is exactly the LSTM.
"""

from dataclasses import dataclass

import numpy as np

from lstmtext.cells import compiled, lstm
from lstmtext.cells.common import GateActivation, sigmoid, window_grads, window_step

NAME = "peephole"
STATE = ("h", "c")
BLOCKS = "ifgo"  # the gate blocks along the fused 4H axis (parameters: cells/common.py)
FORGET = 1  # the block whose bias starts at FORGET_BIAS
EXTRA = {"p_i": "uniform", "p_f": "uniform", "p_o": "uniform"}  # the diagonal peephole weights
# --chrono (Tallec & Ollivier 2018): the H-blocks of b holding the keep and write gates
# (the forget and input blocks, as in the LSTM).
CHRONO = (1, 0)
GATES = ("i", "f", "o")  # the σ gates, whose saturation `lstmtext inspect` measures
OPTIONS: tuple[str, ...] = ()
RECURRENT = True
own_init = None


@dataclass
class Cache(lstm.Cache):
    peep: tuple[np.ndarray, np.ndarray, np.ndarray] = ()  # type: ignore[assignment]  # p_i, p_f, p_o (H, 1)


def forward(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, Cache]:
    """x (T,B,D), state {"h", "c": (B,H)} -> h (T,B,H), a view of the cache (read-only).

    The LSTM's loop (cells/lstm.py) with the peephole paths: i and f see c_{t-1} before they are
    activated, and o sees c_t, so o is activated after the write. With numba installed, the float
    steps run compiled (cells/compiled.py), as the LSTM's do."""
    if k := compiled.kernels(x.dtype, len(x)):
        return compiled.peephole_forward(k, p, x, state)
    w = lstm.window(p, x, state)
    H, GH = p["W_h"].shape
    act_c = GateActivation.of("sst", H, x.dtype)  # i, f, g: all but o, which waits for c_t
    p_i, p_f, p_o = peep = tuple(p[k][:, None] for k in ("p_i", "p_f", "p_o"))  # (H, 1) each
    c, h, tmp = w.c, w.h, w.tmp
    for t in range(x.shape[0]):
        a = w.gates[t]  # (GH, B)
        np.matmul(w.W_hT, h[t].T, out=a)  # (GH, B) h_{t-1} W_h
        a += w.xW[:, t]  # (GH, B) + x_t W_x + b
        np.multiply(p_i, c[t], out=tmp)  # (H, B)
        a[:H] += tmp  # (H, B) i also sees c_{t-1}
        np.multiply(p_f, c[t], out=tmp)  # (H, B)
        a[H : 2 * H] += tmp  # (H, B) f too
        act_c.apply(a[: GH - H])  # (3H, B) i, f: σ; g: tanh
        lstm.write(a, c[t], c[t + 1], tmp)  # (H, B) c_t = f ⊙ c_{t-1} + i ⊙ g
        o = a[GH - H :]  # (H, B)
        np.multiply(p_o, c[t + 1], out=tmp)  # (H, B)
        o += tmp  # (H, B) o sees the new c_t
        sigmoid(o, out=o)  # (H, B)
        np.tanh(c[t + 1], out=w.tanh_c[t])  # (H, B)
        np.multiply(o, w.tanh_c[t], out=h[t + 1].T)  # (H, B) h_t = o ⊙ tanh(c_t)
    act = GateActivation.of(lstm.RULE.kinds, H, x.dtype)  # for the backward's σ' and tanh'
    return h[1:], Cache(x, w.gates, c, w.tanh_c, h, act, p["W_x"], p["W_h"], lstm.RULE, peep)


def backward(dh: np.ndarray, cache: Cache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) -> dx (T,B,D), grads, dstate: the LSTM's backward loop, plus the paths by which
    c_t reached this step's o and step t+1's i and f."""
    if k := compiled.kernels(cache.x.dtype, len(cache.x)):
        return compiled.peephole_backward(k, dh, cache)
    T, B, _ = cache.x.shape
    H, GH = cache.W_h.shape
    dt = cache.x.dtype
    p_i, p_f, p_o = cache.peep
    d = lstm.derivatives(cache)
    k_c = d.k[:, : GH - H].reshape(T, -1, H, B)  # (T, 3, H, B) i, f, g
    dA = np.empty((T, B, GH), dtype=dt)
    # (GH, B) one step's da; zeros, because at t = T-1 the carry through step t+1's i and f reads
    # "step T's" da, which must be none
    da = np.zeros((GH, B), dtype=dt)
    da_o = da[GH - H :]  # (H, B)
    dc_blocks = da[: GH - H].reshape(-1, H, B)  # (3, H, B)
    dh_next = np.zeros((H, B), dtype=dt)
    dh_t = np.empty((H, B), dtype=dt)
    dc = np.zeros((H, B), dtype=dt)
    tmp = np.empty((H, B), dtype=dt)
    for t in reversed(range(T)):
        np.add(dh[t].T, dh_next, out=dh_t)  # (H, B)
        if t + 1 < T:
            dc *= d.f[t + 1]  # (H, B) through the cell
        np.multiply(da[:H], p_i, out=tmp)  # (H, B) c_t reached step t+1's i (da holds step t+1's) ...
        dc += tmp
        np.multiply(da[H : 2 * H], p_f, out=tmp)  # (H, B) ... and its f
        dc += tmp
        np.multiply(dh_t, d.dc_from_h[t], out=tmp)  # (H, B)
        dc += tmp  # (H, B) and through h_t = o ⊙ tanh(c_t)
        np.multiply(dh_t, d.k[t, GH - H :], out=da_o)  # (H, B) o
        np.multiply(da_o, p_o, out=tmp)  # (H, B) and this step's o
        dc += tmp
        np.multiply(dc, k_c[t], out=dc_blocks)  # (3, H, B) i, f, g
        np.matmul(cache.W_h, da, out=dh_next)  # (H, B)
        dA[t] = da.T  # (B, GH)
    dc *= d.f[0]  # (H, B) gradient w.r.t. c_0 ...
    dc += da[:H] * p_i + da[H : 2 * H] * p_f  # (H, B) ... and through step 0's i and f
    grads, dx = window_grads(cache.x, cache.h[:-1], dA.reshape(T * B, -1), cache.W_x)
    c_bm = cache.c.transpose(0, 2, 1)  # (T+1, B, H)
    grads["p_i"] = np.einsum("tbh,tbh->h", dA[:, :, :H], c_bm[:-1])  # (H,)
    grads["p_f"] = np.einsum("tbh,tbh->h", dA[:, :, H : 2 * H], c_bm[:-1])  # (H,)
    grads["p_o"] = np.einsum("tbh,tbh->h", dA[:, :, GH - H :], c_bm[1:])  # (H,)
    return dx, grads, {"h": np.ascontiguousarray(dh_next.T), "c": np.ascontiguousarray(dc.T)}


quantities = lstm.quantities  # h, c and the gates, for `lstmtext inspect`
final_state = lstm.final_state
step = window_step(forward, final_state)
