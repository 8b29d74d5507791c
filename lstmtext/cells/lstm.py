"""LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

Row vectors, gates fused along one 4H axis in PyTorch's order i|f|g|o:

    a_t = x_t W_x + h_{t-1} W_h + b                      (B, 4H)
    i_t = σ(a_i)   f_t = σ(a_f)   g_t = tanh(a_g)   o_t = σ(a_o)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

The forget gate decides how much of the old cell state to keep, the input gate how much of the
candidate g_t to write, and the output gate how much of the squashed cell to show as h_t.

Inside, each step works feature-major: it computes a_t^T = W_h^T h_{t-1}^T, because OpenBLAS runs
these small-batch products much faster in that orientation (see README "Speed"). The window's
arrays are time-major, so every step reads and writes one contiguous block; h is kept batch-major
(its step-t block is written through a transposed view), which makes the output and the weight
gradients plain GEMMs on contiguous memory. Everything that does not depend on the step-to-step
recursion is done for the whole window at once, outside the Python loop.
"""

from dataclasses import dataclass

import numpy as np

from lstmtext.cells.common import GateActivation, input_projection, named_blocks, window_grads

NAME = "lstm"
STATE = ("h", "c")  # what is carried from window to window
BLOCKS = "ifgo"  # the gate blocks along the fused 4H axis (parameters: cells/common.py)
FORGET = 1  # the block whose bias starts at FORGET_BIAS
EXTRA: dict[str, str] = {}  # no per-unit parameters beyond W_x, W_h, b
# --chrono (Tallec & Ollivier 2018): the H-blocks of b holding the keep (forget) and write (input) gates.
CHRONO = (1, 0)


@dataclass
class LSTMCache:
    x: np.ndarray  # (T, B, D) window input
    gates: np.ndarray  # (T, 4H, B) activated i|f|g|o, feature-major per step
    c: np.ndarray  # (T+1, H, B) cell states, c[0] = the initial one
    tanh_c: np.ndarray  # (T, H, B)
    h: np.ndarray  # (T+1, B, H) hidden states, h[0] = the initial one
    act: GateActivation  # which rows of the 4H axis are σ and which tanh
    W_x: np.ndarray  # (D, 4H)
    W_h: np.ndarray  # (H, 4H)


def forward(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, LSTMCache]:
    """Run the cell over a window. x (T,B,D), state {"h": (B,H), "c": (B,H)} -> h (T,B,H).

    The returned h is a view of the cache (no copy); treat it as read-only."""
    W_x, W_h, b = p["W_x"], p["W_h"], p["b"]
    T, B, _ = x.shape
    H = W_h.shape[0]
    dt = x.dtype
    act = GateActivation.of("ssts", H, dt)  # i, f: σ; g: tanh; o: σ
    xW = input_projection(x, W_x, b)  # (T, B, 4H), b included
    gates = np.empty((T, 4 * H, B), dtype=dt)
    c = np.empty((T + 1, H, B), dtype=dt)
    tanh_c = np.empty((T, H, B), dtype=dt)
    h = np.empty((T + 1, B, H), dtype=dt)  # batch-major, so the output below is a plain slice
    c[0], h[0] = state["c"].T, state["h"]
    W_hT = np.ascontiguousarray(W_h.T)  # (4H, H)
    ig = np.empty((H, B), dtype=dt)  # (H, B)
    for t in range(T):
        a = gates[t]  # (4H, B), filled and activated in place
        np.matmul(W_hT, h[t].T, out=a)  # (4H, B); h[t].T is a transposed view, a BLAS flag
        a += xW[t].T
        act.apply(a)
        i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]  # (H, B) each
        np.multiply(f, c[t], out=c[t + 1])  # (H, B)
        np.multiply(i, g, out=ig)
        c[t + 1] += ig
        np.tanh(c[t + 1], out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=h[t + 1].T)  # (H, B) written into the (B, H) row
    return h[1:], LSTMCache(x, gates, c, tanh_c, h, act, W_x, W_h)


GATES = ("i", "f", "o")  # the σ gates, whose saturation `lstmtext inspect` measures


def quantities(cache: LSTMCache) -> dict[str, np.ndarray]:
    """{name: (T, B, H)}: the hidden and cell states and the gates i, f, o and candidate g."""
    return {"h": cache.h[1:], "c": cache.c[1:].transpose(0, 2, 1), **named_blocks(cache.gates, BLOCKS, 1)}


def final_state(cache: LSTMCache) -> dict:
    return {"h": cache.h[-1].copy(), "c": np.ascontiguousarray(cache.c[-1].T)}  # (B, H)


def backward(dh: np.ndarray, cache: LSTMCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) = dLoss/dh_t from above -> dx (T,B,D), grads, dstate (w.r.t. the initial state)."""
    x, gates, c, tanh_c, W_h = cache.x, cache.gates, cache.c, cache.tanh_c, cache.W_h
    T, B, _ = x.shape
    H = W_h.shape[0]
    dt = x.dtype
    i, f, g, o = (gates[:, k * H : (k + 1) * H] for k in range(4))  # (T, H, B) each
    # Everything that does not depend on the recursion, for the whole window at once:
    #   da_i = dc ⊙ g ⊙ σ'   da_f = dc ⊙ c_{t-1} ⊙ σ'   da_g = dc ⊙ i ⊙ tanh'   da_o = dh ⊙ tanh(c) ⊙ σ'
    k = cache.act.derivative(gates)  # (T, 4H, B) σ' or tanh' per gate
    k[:, :H] *= g
    k[:, H : 2 * H] *= c[:-1]
    k[:, 2 * H : 3 * H] *= i
    k[:, 3 * H :] *= tanh_c
    k_ifg = k[:, : 3 * H].reshape(T, 3, H, B)  # (T, 3, H, B)
    dc_from_h = o * (1.0 - tanh_c * tanh_c)  # (T, H, B) d c_t / d h_t through tanh
    dA = np.empty((T, B, 4 * H), dtype=dt)  # dLoss / d pre-activations, batch-major for the GEMMs
    da = np.empty((4 * H, B), dtype=dt)  # (4H, B) the same, one step, feature-major
    da_ifg = da[: 3 * H].reshape(3, H, B)  # (3, H, B)
    dh_next = np.zeros((H, B), dtype=dt)  # gradient arriving from step t+1 (cut after T)
    dh_t = np.empty((H, B), dtype=dt)
    dc = np.zeros((H, B), dtype=dt)
    dc_tmp = np.empty((H, B), dtype=dt)
    for t in reversed(range(T)):
        np.add(dh[t].T, dh_next, out=dh_t)  # (H, B)
        dc *= f[t + 1] if t + 1 < T else 0.0  # dc_{t+1} f_{t+1}: what flows back through the cell
        np.multiply(dh_t, dc_from_h[t], out=dc_tmp)
        dc += dc_tmp  # (H, B)
        np.multiply(dc, k_ifg[t], out=da_ifg)  # i, f, g at once
        np.multiply(dh_t, k[t, 3 * H :], out=da[3 * H :])  # o
        np.matmul(W_h, da, out=dh_next)  # (H, B)
        dA[t] = da.T  # (B, 4H)
    dc *= f[0]  # gradient w.r.t. c_0
    grads, dx = window_grads(x, cache.h[:-1], dA, cache.W_x)  # h_{t-1} is each step's input
    return dx, grads, {"h": np.ascontiguousarray(dh_next.T), "c": np.ascontiguousarray(dc.T)}


def step(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    """One step without a cache, for generation: x (B,D) -> h (B,H), next state."""
    H = p["W_h"].shape[0]
    a = x @ p["W_x"] + state["h"] @ p["W_h"] + p["b"]  # (B, 4H)
    GateActivation.of("ssts", H, a.dtype).apply(a.T)
    i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    c = f * state["c"] + i * g  # (B, H)
    h = o * np.tanh(c)  # (B, H)
    return h, {"h": h, "c": c}
