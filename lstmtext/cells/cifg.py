"""Coupled input-forget gate LSTM, CIFG (Gers & Schmidhuber 2000; Greff et al. 2017).

"Only forget when something new is written in its place": the input gate is 1 - f.
Row vectors, gates fused along one 3H axis in the order f|g|o:

    f_t = σ(x_t W_xf + h_{t-1} W_hf + b_f)
    g_t = tanh(x_t W_xg + h_{t-1} W_hg + b_g)
    o_t = σ(x_t W_xo + h_{t-1} W_ho + b_o)
    c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

A quarter fewer parameters than the LSTM, and the cell state is a convex mix of old and new.
Inside, each step works feature-major, as the LSTM does (see lstm.py).
"""

from dataclasses import dataclass

import numpy as np

from lstmtext.cells.common import GateActivation, input_projection, named_blocks, window_grads

NAME = "cifg"
STATE = ("h", "c")
BLOCKS = "fgo"  # the gate blocks along the fused 3H axis (parameters: cells/common.py)
FORGET = 0  # the block whose bias starts at FORGET_BIAS
EXTRA: dict[str, str] = {}


# --chrono (Tallec & Ollivier 2018): the H-block of b holding the keep gate f; the write gate
# is 1 - f, so it follows.
CHRONO = (0, None)


@dataclass
class CIFGCache:
    x: np.ndarray  # (T, B, D)
    gates: np.ndarray  # (T, 3H, B) activated f|g|o, feature-major per step
    c: np.ndarray  # (T+1, H, B) cell states, c[0] = the initial one
    tanh_c: np.ndarray  # (T, H, B)
    h: np.ndarray  # (T+1, B, H) hidden states, h[0] = the initial one
    act: GateActivation  # which rows of the 3H axis are σ and which tanh
    W_x: np.ndarray  # (D, 3H)
    W_h: np.ndarray  # (H, 3H)


def forward(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, CIFGCache]:
    """x (T,B,D), state {"h", "c": (B,H)} -> h (T,B,H), a view of the cache (read-only)."""
    W_x, W_h = p["W_x"], p["W_h"]
    T, B, _ = x.shape
    H = W_h.shape[0]
    dt = x.dtype
    act = GateActivation.of("sts", H, dt)  # f: σ; g: tanh; o: σ
    xW = input_projection(x, W_x, p["b"])  # (T, B, 3H), b included
    gates = np.empty((T, 3 * H, B), dtype=dt)
    c = np.empty((T + 1, H, B), dtype=dt)
    tanh_c = np.empty((T, H, B), dtype=dt)
    h = np.empty((T + 1, B, H), dtype=dt)  # batch-major, so the output below is a plain slice
    c[0], h[0] = state["c"].T, state["h"]
    W_hT = np.ascontiguousarray(W_h.T)  # (3H, H)
    for t in range(T):
        a = gates[t]  # (3H, B), filled and activated in place
        np.matmul(W_hT, h[t].T, out=a)  # (3H, B)
        a += xW[t].T
        act.apply(a)
        f, g, o = a[:H], a[H : 2 * H], a[2 * H :]  # (H, B) each
        np.subtract(c[t], g, out=c[t + 1])  # f c + (1 - f) g = g + f (c - g)
        c[t + 1] *= f
        c[t + 1] += g
        np.tanh(c[t + 1], out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=h[t + 1].T)  # (H, B) written into the (B, H) row
    return h[1:], CIFGCache(x, gates, c, tanh_c, h, act, W_x, W_h)


GATES = ("f", "o")  # the σ gates, whose saturation `lstmtext inspect` measures


def quantities(cache: CIFGCache) -> dict[str, np.ndarray]:
    """{name: (T, B, H)}: the hidden and cell states, the gates f, o (the input gate is 1 - f) and candidate g."""
    return {"h": cache.h[1:], "c": cache.c[1:].transpose(0, 2, 1), **named_blocks(cache.gates, BLOCKS, 1)}


def final_state(cache: CIFGCache) -> dict:
    return {"h": cache.h[-1].copy(), "c": np.ascontiguousarray(cache.c[-1].T)}  # (B, H)


def backward(dh: np.ndarray, cache: CIFGCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) -> dx (T,B,D), grads, dstate."""
    x, gates, c, tanh_c, W_h = cache.x, cache.gates, cache.c, cache.tanh_c, cache.W_h
    T, B, _ = x.shape
    H = W_h.shape[0]
    dt = x.dtype
    f, g, o = (gates[:, k * H : (k + 1) * H] for k in range(3))  # (T, H, B) each
    # What does not depend on the recursion, for the whole window at once:
    #   da_f = dc ⊙ (c_{t-1} - g) ⊙ σ'   da_g = dc ⊙ (1 - f) ⊙ tanh'   da_o = dh ⊙ tanh(c) ⊙ σ'
    k = cache.act.derivative(gates)  # (T, 3H, B) σ' or tanh' per gate
    k[:, :H] *= c[:-1] - g  # f moves c toward c_{t-1}, away from g
    k[:, H : 2 * H] *= 1.0 - f
    k[:, 2 * H :] *= tanh_c
    k_fg = k[:, : 2 * H].reshape(T, 2, H, B)  # (T, 2, H, B)
    dc_from_h = o * (1.0 - tanh_c * tanh_c)  # (T, H, B) d c_t / d h_t through tanh
    dA = np.empty((T, B, 3 * H), dtype=dt)  # dLoss / d pre-activations, batch-major for the GEMMs
    da = np.empty((3 * H, B), dtype=dt)  # (3H, B) the same, one step, feature-major
    da_fg = da[: 2 * H].reshape(2, H, B)  # (2, H, B)
    dh_next = np.zeros((H, B), dtype=dt)  # gradient arriving from step t+1 (cut after T)
    dh_t = np.empty((H, B), dtype=dt)
    dc = np.zeros((H, B), dtype=dt)
    dc_tmp = np.empty((H, B), dtype=dt)
    for t in reversed(range(T)):
        np.add(dh[t].T, dh_next, out=dh_t)  # (H, B)
        dc *= f[t + 1] if t + 1 < T else 0.0  # dc_{t+1} f_{t+1}: what flows back through the cell
        np.multiply(dh_t, dc_from_h[t], out=dc_tmp)
        dc += dc_tmp  # (H, B)
        np.multiply(dc, k_fg[t], out=da_fg)  # f, g at once
        np.multiply(dh_t, k[t, 2 * H :], out=da[2 * H :])  # o
        np.matmul(W_h, da, out=dh_next)  # (H, B)
        dA[t] = da.T  # (B, 3H)
    dc *= f[0]  # gradient w.r.t. c_0
    grads, dx = window_grads(x, cache.h[:-1], dA, cache.W_x)  # h_{t-1} is each step's input
    return dx, grads, {"h": np.ascontiguousarray(dh_next.T), "c": np.ascontiguousarray(dc.T)}


def step(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    """One step without a cache, for generation: x (B,D) -> h (B,H), next state."""
    h, cache = forward(p, x[None], state)
    return h[0].copy(), final_state(cache)
