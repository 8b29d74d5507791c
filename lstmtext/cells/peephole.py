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

from lstmtext.cells.common import dsigmoid_from_out, input_projection, named_blocks, sigmoid, window_grads

NAME = "peephole"
STATE = ("h", "c")
BLOCKS = "ifgo"  # the gate blocks along the fused 4H axis (parameters: cells/common.py)
FORGET = 1  # the block whose bias starts at FORGET_BIAS
EXTRA = {"p_i": "uniform", "p_f": "uniform", "p_o": "uniform"}  # the diagonal peephole weights


# --chrono (Tallec & Ollivier 2018): the H-blocks of b holding the keep and write gates
# (the forget and input blocks, as in the LSTM).
CHRONO = (1, 0)


@dataclass
class PeepholeCache:
    x: np.ndarray  # (T, B, D)
    h0: np.ndarray  # (B, H)
    c0: np.ndarray  # (B, H)
    gates: np.ndarray  # (T, B, 4H) activated i|f|g|o
    c: np.ndarray  # (T, B, H)
    tanh_c: np.ndarray  # (T, B, H)
    h: np.ndarray  # (T, B, H)
    p: dict  # the parameters


def forward(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, PeepholeCache]:
    """x (T,B,D), state {"h", "c": (B,H)} -> h (T,B,H)."""
    W_x, W_h = p["W_x"], p["W_h"]
    T, B, _ = x.shape
    H = W_h.shape[0]
    gates = input_projection(x, W_x, p["b"])  # (T, B, 4H), activated in place below
    c = np.empty((T, B, H), dtype=x.dtype)
    tanh_c, h = np.empty_like(c), np.empty_like(c)
    h_prev, c_prev = state["h"], state["c"]
    for t in range(T):
        a = gates[t]  # (B, 4H)
        a += h_prev @ W_h
        a[:, :H] += p["p_i"] * c_prev
        a[:, H : 2 * H] += p["p_f"] * c_prev
        sigmoid(a[:, : 2 * H], out=a[:, : 2 * H])  # i, f
        np.tanh(a[:, 2 * H : 3 * H], out=a[:, 2 * H : 3 * H])  # g
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        np.multiply(f, c_prev, out=c[t])  # (B, H)
        c[t] += i * g
        o += p["p_o"] * c[t]
        sigmoid(o, out=o)
        np.tanh(c[t], out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=h[t])
        h_prev, c_prev = h[t], c[t]
    return h, PeepholeCache(x, state["h"], state["c"], gates, c, tanh_c, h, p)


GATES = ("i", "f", "o")  # the σ gates, whose saturation `lstmtext inspect` measures


def quantities(cache: PeepholeCache) -> dict[str, np.ndarray]:
    """{name: (T, B, H)}: the hidden and cell states and the gates i, f, o and candidate g."""
    return {"h": cache.h, "c": cache.c, **named_blocks(cache.gates, BLOCKS, 2)}


def final_state(cache: PeepholeCache) -> dict:
    return {"h": cache.h[-1].copy(), "c": cache.c[-1].copy()}


def backward(dh: np.ndarray, cache: PeepholeCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) -> dx (T,B,D), grads, dstate."""
    x, gates, c, tanh_c, p = cache.x, cache.gates, cache.c, cache.tanh_c, cache.p
    T, B, _ = x.shape
    H = p["W_h"].shape[0]
    da = np.empty_like(gates)  # (T, B, 4H)
    dh_next = np.zeros((B, H), dtype=x.dtype)
    dc_next = np.zeros((B, H), dtype=x.dtype)
    dp = {k: np.zeros(H, dtype=x.dtype) for k in ("p_i", "p_f", "p_o")}
    for t in reversed(range(T)):
        i, f, g, o = (gates[t, :, k * H : (k + 1) * H] for k in range(4))  # (B, H) each
        c_prev = c[t - 1] if t > 0 else cache.c0
        dh_t = dh[t] + dh_next  # (B, H)
        dao = dh_t * tanh_c[t] * dsigmoid_from_out(o)  # (B, H)
        # c_t reaches the loss through h_t and, by the peephole, through o_t.
        dc = dc_next + dh_t * o * (1.0 - tanh_c[t] ** 2) + dao * p["p_o"]  # (B, H)
        dai = dc * g * dsigmoid_from_out(i)
        daf = dc * c_prev * dsigmoid_from_out(f)
        da[t, :, :H], da[t, :, H : 2 * H] = dai, daf
        da[t, :, 2 * H : 3 * H] = dc * i * (1.0 - g * g)
        da[t, :, 3 * H :] = dao
        dp["p_o"] += (dao * c[t]).sum(axis=0)
        dp["p_i"] += (dai * c_prev).sum(axis=0)
        dp["p_f"] += (daf * c_prev).sum(axis=0)
        dc_next = dc * f + dai * p["p_i"] + daf * p["p_f"]  # (B, H)
        dh_next = da[t] @ p["W_h"].T  # (B, H)
    h_prev = np.concatenate([cache.h0[None], cache.h[:-1]])  # (T, B, H)
    grads, dx = window_grads(x, h_prev, da, p["W_x"])
    return dx, {**grads, **dp}, {"h": dh_next, "c": dc_next}


def step(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    """One step without a cache, for generation: x (B,D) -> h (B,H), next state."""
    h, cache = forward(p, x[None], state)
    return h[0], final_state(cache)
