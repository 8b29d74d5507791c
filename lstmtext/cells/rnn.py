"""Simple (Elman) RNN cell: one layer of recurrence and a squashing nonlinearity.

    h_t = φ(x_t W_x + h_{t-1} W_h + b),   φ = tanh (default) or relu (--nonlinearity relu)

Its gradient through k steps is a product of k Jacobians W_h^T diag(φ'), which shrinks or grows
geometrically: the vanishing/exploding gradient the gated cells were made to avoid.
"""

from dataclasses import dataclass

import numpy as np

from lstmtext.cells.common import input_projection, transposed, window_grads

NAME = "rnn"
STATE = ("h",)
OPTIONS = ("nonlinearity",)  # ModelConfig fields this cell reads
NONLINEARITIES = ("tanh", "relu")
BLOCKS = "h"  # one block: the pre-activation of h itself (parameters: cells/common.py)
FORGET = None
EXTRA: dict[str, str] = {}
CHRONO = None  # no gate to set a time scale with
RECURRENT = True
own_init = None


@dataclass
class RNNCache:
    x: np.ndarray  # (T, B, D)
    h: np.ndarray  # (T+1, B, H) hidden states, h[0] = the initial one (common.py: the window layout)
    W_x: np.ndarray  # (D, H)
    W_h: np.ndarray  # (H, H)
    nonlinearity: str


def forward(p: dict, x: np.ndarray, state: dict, nonlinearity: str = "tanh") -> tuple[np.ndarray, RNNCache]:
    """x (T,B,D), state {"h": (B,H)} -> h (T,B,H), a view of the cache (read-only).
    Feature-major steps, h batch-major, like the LSTM."""
    W_x, W_h = p["W_x"], p["W_h"]
    T, B, _ = x.shape
    H = W_h.shape[0]
    xw = input_projection(x, W_x, p["b"])  # (T, B, H)
    h = np.empty((T + 1, B, H), dtype=x.dtype)
    h[0] = state["h"]
    W_hT = transposed(W_h)  # (H, H)
    a = np.empty((H, B), dtype=x.dtype)
    for t in range(T):
        np.matmul(W_hT, h[t].T, out=a)  # (H, B)
        a += xw[t].T
        if nonlinearity == "tanh":
            np.tanh(a, out=h[t + 1].T)  # (H, B) written into the (B, H) row
        else:
            np.maximum(a, 0, out=h[t + 1].T)
    return h[1:], RNNCache(x, h, W_x, W_h, nonlinearity)


GATES = ()  # the σ gates, whose saturation `lstmtext inspect` measures


def quantities(cache: RNNCache) -> dict[str, np.ndarray]:
    """{name: (T, B, H)}: the hidden state (the simple RNN has no gates)."""
    return {"h": cache.h[1:]}


def final_state(cache: RNNCache) -> dict:
    return {"h": cache.h[-1].copy()}  # (B, H)


def backward(dh: np.ndarray, cache: RNNCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) -> dx (T,B,D), grads, dstate."""
    x, h, W_h = cache.x, cache.h, cache.W_h
    T, B, _ = x.shape
    H = W_h.shape[0]
    out = h[1:]  # (T, B, H)
    dphi = 1.0 - out * out if cache.nonlinearity == "tanh" else (out > 0).astype(x.dtype)  # φ' from the output
    dphi = dphi.transpose(0, 2, 1).copy()  # (T, H, B), read step by step
    dA = np.empty((T, B, H), dtype=x.dtype)  # dLoss / d pre-activations, batch-major for the GEMMs
    da = np.empty((H, B), dtype=x.dtype)  # the same, one step, feature-major
    dh_next = np.zeros((H, B), dtype=x.dtype)
    for t in reversed(range(T)):
        np.add(dh[t].T, dh_next, out=da)  # (H, B)
        da *= dphi[t]
        np.matmul(W_h, da, out=dh_next)  # (H, B)
        dA[t] = da.T  # (B, H)
    grads, dx = window_grads(x, h[:-1], dA.reshape(T * B, -1), cache.W_x)  # h_{t-1} is each step's input
    return dx, grads, {"h": np.ascontiguousarray(dh_next.T)}


def step(p: dict, x: np.ndarray, state: dict, nonlinearity: str = "tanh") -> tuple[np.ndarray, dict]:
    """One step without a cache, for generation: x (B,D) -> h (B,H), next state."""
    a = x @ p["W_x"] + state["h"] @ p["W_h"] + p["b"]  # (B, H)
    h = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
    return h, {"h": h}
