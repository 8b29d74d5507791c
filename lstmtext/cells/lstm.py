"""LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

Row vectors, gates fused along one 4H axis in PyTorch's order i|f|g|o:

    a_t = x_t W_x + h_{t-1} W_h + b                      (B, 4H)
    i_t = σ(a_i)   f_t = σ(a_f)   g_t = tanh(a_g)   o_t = σ(a_o)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

The forget gate decides how much of the old cell state to keep, the input gate how much of the
candidate g_t to write, and the output gate how much of the squashed cell to show as h_t.
"""

from dataclasses import dataclass

import numpy as np

from lstmtext.cells.common import dsigmoid_from_out, sigmoid, uniform

NAME = "lstm"
STATE = ("h", "c")  # what is carried from window to window
GATES = 4

# A forget-gate bias of 1 keeps the cell state flowing early in training, before the gates have
# learned anything (Gers et al. 2000; Jozefowicz et al. 2015, "An Empirical Exploration of RNNs").
FORGET_BIAS = 1.0


def param_shapes(D: int, H: int) -> dict[str, tuple[int, ...]]:
    return {"W_x": (D, 4 * H), "W_h": (H, 4 * H), "b": (4 * H,)}


def init_params(rng: np.random.Generator, D: int, H: int, scale: float, dtype) -> dict:
    p = {"W_x": uniform(rng, (D, 4 * H), scale, dtype), "W_h": uniform(rng, (H, 4 * H), scale, dtype)}
    b = np.zeros(4 * H, dtype=dtype)
    b[H : 2 * H] = FORGET_BIAS
    p["b"] = b
    return p


@dataclass
class LSTMCache:
    x: np.ndarray  # (T, B, D) window input
    h0: np.ndarray  # (B, H) state the window started from
    c0: np.ndarray  # (B, H)
    gates: np.ndarray  # (T, B, 4H) activated i|f|g|o
    c: np.ndarray  # (T, B, H) cell states
    tanh_c: np.ndarray  # (T, B, H)
    h: np.ndarray  # (T, B, H) outputs
    W_x: np.ndarray  # (D, 4H)
    W_h: np.ndarray  # (H, 4H)


def forward(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, LSTMCache]:
    """Run the cell over a window. x (T,B,D), state {"h": (B,H), "c": (B,H)} -> h (T,B,H)."""
    W_x, W_h, b = p["W_x"], p["W_h"], p["b"]
    T, B, D = x.shape
    H = W_h.shape[0]
    # The input projection of the whole window is one GEMM; only h_{t-1} W_h must wait for t-1.
    gates = (x.reshape(T * B, D) @ W_x).reshape(T, B, 4 * H)  # (T, B, 4H)
    gates += b
    c = np.empty((T, B, H), dtype=x.dtype)
    tanh_c = np.empty_like(c)
    h = np.empty_like(c)
    h_prev, c_prev = state["h"], state["c"]
    for t in range(T):
        a = gates[t]  # (B, 4H), a view: activated in place
        a += h_prev @ W_h  # (B, 4H)
        sigmoid(a[:, : 2 * H], out=a[:, : 2 * H])  # i, f
        np.tanh(a[:, 2 * H : 3 * H], out=a[:, 2 * H : 3 * H])  # g
        sigmoid(a[:, 3 * H :], out=a[:, 3 * H :])  # o
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        np.multiply(f, c_prev, out=c[t])  # (B, H)
        c[t] += i * g
        np.tanh(c[t], out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=h[t])
        h_prev, c_prev = h[t], c[t]
    cache = LSTMCache(x, state["h"], state["c"], gates, c, tanh_c, h, W_x, W_h)
    return h, cache


def final_state(cache: LSTMCache) -> dict:
    return {"h": cache.h[-1].copy(), "c": cache.c[-1].copy()}


def backward(dh: np.ndarray, cache: LSTMCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) = dLoss/dh_t from above -> dx (T,B,D), grads, dstate (w.r.t. the initial state)."""
    x, gates, c, tanh_c, W_h = cache.x, cache.gates, cache.c, cache.tanh_c, cache.W_h
    T, B, D = x.shape
    H = W_h.shape[0]
    da = np.empty_like(gates)  # (T, B, 4H) dLoss/d(pre-activations)
    dh_next = np.zeros((B, H), dtype=x.dtype)  # gradient arriving from step t+1 (cut after T)
    dc_next = np.zeros((B, H), dtype=x.dtype)
    for t in reversed(range(T)):
        i, f, g, o = (gates[t, :, k * H : (k + 1) * H] for k in range(4))  # (B, H) each
        c_prev = c[t - 1] if t > 0 else cache.c0
        dh_t = dh[t] + dh_next  # (B, H)
        dc = dc_next + dh_t * o * (1.0 - tanh_c[t] ** 2)  # (B, H)
        da[t, :, :H] = dc * g * dsigmoid_from_out(i)  # di
        da[t, :, H : 2 * H] = dc * c_prev * dsigmoid_from_out(f)  # df
        da[t, :, 2 * H : 3 * H] = dc * i * (1.0 - g * g)  # dg
        da[t, :, 3 * H :] = dh_t * tanh_c[t] * dsigmoid_from_out(o)  # do
        dc_next = dc * f  # (B, H)
        dh_next = da[t] @ W_h.T  # (B, H)
    h_prev = np.concatenate([cache.h0[None], cache.h[:-1]])  # (T, B, H) input of each step
    da2 = da.reshape(T * B, 4 * H)  # (TB, 4H)
    grads = {
        "W_x": x.reshape(T * B, D).T @ da2,  # (D, 4H) one GEMM over the window
        "W_h": h_prev.reshape(T * B, H).T @ da2,  # (H, 4H)
        "b": da2.sum(axis=0),  # (4H,)
    }
    dx = (da2 @ cache.W_x.T).reshape(T, B, D)  # (T, B, D)
    return dx, grads, {"h": dh_next, "c": dc_next}
