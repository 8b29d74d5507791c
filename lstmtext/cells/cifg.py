"""Coupled input-forget gate LSTM, CIFG (Gers & Schmidhuber 2000; Greff et al. 2017).

"Only forget when something new is written in its place": the input gate is 1 - f.
Row vectors, gates fused along one 3H axis in the order f|g|o:

    f_t = σ(x_t W_xf + h_{t-1} W_hf + b_f)
    g_t = tanh(x_t W_xg + h_{t-1} W_hg + b_g)
    o_t = σ(x_t W_xo + h_{t-1} W_ho + b_o)
    c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

A quarter fewer parameters than the LSTM, and the cell state is a convex mix of old and new.
"""

from dataclasses import dataclass

import numpy as np

from lstmtext.cells.common import dsigmoid_from_out, input_projection, named_blocks, sigmoid, window_grads

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
    h0: np.ndarray  # (B, H)
    c0: np.ndarray  # (B, H)
    gates: np.ndarray  # (T, B, 3H) activated f|g|o
    c: np.ndarray  # (T, B, H)
    tanh_c: np.ndarray  # (T, B, H)
    h: np.ndarray  # (T, B, H)
    W_x: np.ndarray  # (D, 3H)
    W_h: np.ndarray  # (H, 3H)


def forward(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, CIFGCache]:
    """x (T,B,D), state {"h", "c": (B,H)} -> h (T,B,H)."""
    W_x, W_h = p["W_x"], p["W_h"]
    T, B, D = x.shape
    H = W_h.shape[0]
    gates = input_projection(x, W_x, p["b"])  # (T, B, 3H), activated in place below
    c = np.empty((T, B, H), dtype=x.dtype)
    tanh_c, h = np.empty_like(c), np.empty_like(c)
    h_prev, c_prev = state["h"], state["c"]
    for t in range(T):
        a = gates[t]  # (B, 3H)
        a += h_prev @ W_h
        sigmoid(a[:, :H], out=a[:, :H])  # f
        np.tanh(a[:, H : 2 * H], out=a[:, H : 2 * H])  # g
        sigmoid(a[:, 2 * H :], out=a[:, 2 * H :])  # o
        f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        np.multiply(f, c_prev - g, out=c[t])  # f c + (1 - f) g = g + f (c - g)
        c[t] += g
        np.tanh(c[t], out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=h[t])
        h_prev, c_prev = h[t], c[t]
    return h, CIFGCache(x, state["h"], state["c"], gates, c, tanh_c, h, W_x, W_h)


GATES = ("f", "o")  # the σ gates, whose saturation `lstmtext inspect` measures


def quantities(cache: CIFGCache) -> dict[str, np.ndarray]:
    """{name: (T, B, H)}: the hidden and cell states, the gates f, o (the input gate is 1 - f) and candidate g."""
    return {"h": cache.h, "c": cache.c, **named_blocks(cache.gates, BLOCKS, 2)}


def final_state(cache: CIFGCache) -> dict:
    return {"h": cache.h[-1].copy(), "c": cache.c[-1].copy()}


def backward(dh: np.ndarray, cache: CIFGCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) -> dx (T,B,D), grads, dstate."""
    x, gates, c, tanh_c, W_h = cache.x, cache.gates, cache.c, cache.tanh_c, cache.W_h
    T, B, D = x.shape
    H = W_h.shape[0]
    da = np.empty_like(gates)  # (T, B, 3H)
    dh_next = np.zeros((B, H), dtype=x.dtype)
    dc_next = np.zeros((B, H), dtype=x.dtype)
    for t in reversed(range(T)):
        f, g, o = gates[t, :, :H], gates[t, :, H : 2 * H], gates[t, :, 2 * H :]
        c_prev = c[t - 1] if t > 0 else cache.c0
        dh_t = dh[t] + dh_next  # (B, H)
        dc = dc_next + dh_t * o * (1.0 - tanh_c[t] ** 2)  # (B, H)
        da[t, :, :H] = dc * (c_prev - g) * dsigmoid_from_out(f)  # f moves c toward c_prev, away from g
        da[t, :, H : 2 * H] = dc * (1.0 - f) * (1.0 - g * g)
        da[t, :, 2 * H :] = dh_t * tanh_c[t] * dsigmoid_from_out(o)
        dc_next = dc * f
        dh_next = da[t] @ W_h.T  # (B, H)
    h_prev = np.concatenate([cache.h0[None], cache.h[:-1]])  # (T, B, H)
    grads, dx = window_grads(x, h_prev, da, cache.W_x)
    return dx, grads, {"h": dh_next, "c": dc_next}


def step(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    """One step without a cache, for generation: x (B,D) -> h (B,H), next state."""
    h, cache = forward(p, x[None], state)
    return h[0], final_state(cache)
