"""Simple (Elman) RNN cell: one layer of recurrence and a squashing nonlinearity.

    h_t = φ(x_t W_x + h_{t-1} W_h + b),   φ = tanh (default) or relu (--nonlinearity relu)

Its gradient through k steps is a product of k Jacobians W_h^T diag(φ'), which shrinks or grows
geometrically: the vanishing/exploding gradient the gated cells were made to avoid.
"""

from dataclasses import dataclass

import numpy as np

from lstmtext.cells.common import input_projection, window_grads

NAME = "rnn"
STATE = ("h",)
OPTIONS = ("nonlinearity",)  # ModelConfig fields this cell reads
NONLINEARITIES = ("tanh", "relu")
BLOCKS = "h"  # one block: the pre-activation of h itself (parameters: cells/common.py)
FORGET = None
EXTRA: dict[str, str] = {}


@dataclass
class RNNCache:
    x: np.ndarray  # (T, B, D)
    h: np.ndarray  # (T+1, H, B) hidden states, feature-major, h[0] = the initial one
    W_x: np.ndarray  # (D, H)
    W_h: np.ndarray  # (H, H)
    nonlinearity: str


def forward(p: dict, x: np.ndarray, state: dict, nonlinearity: str = "tanh") -> tuple[np.ndarray, RNNCache]:
    """x (T,B,D), state {"h": (B,H)} -> h (T,B,H). Feature-major inside, like the LSTM."""
    W_x, W_h = p["W_x"], p["W_h"]
    T, B, _ = x.shape
    H = W_h.shape[0]
    xw = input_projection(x, W_x, p["b"])  # (T, B, H)
    h = np.empty((T + 1, H, B), dtype=x.dtype)
    h[0] = state["h"].T
    h[1:] = xw.transpose(0, 2, 1)  # (T, H, B), activated in place below
    W_hT = np.ascontiguousarray(W_h.T)  # (H, H)
    rec = np.empty((H, B), dtype=x.dtype)
    for t in range(T):
        np.matmul(W_hT, h[t], out=rec)  # (H, B)
        a = h[t + 1]
        a += rec
        if nonlinearity == "tanh":
            np.tanh(a, out=a)
        else:
            np.maximum(a, 0, out=a)
    out = np.ascontiguousarray(h[1:].transpose(0, 2, 1))  # (T, B, H)
    return out, RNNCache(x, h, W_x, W_h, nonlinearity)


GATES = ()  # the σ gates, whose saturation `lstmtext inspect` measures


def quantities(cache: RNNCache) -> dict[str, np.ndarray]:
    """{name: (T, B, H)}: the hidden state (the simple RNN has no gates)."""
    return {"h": cache.h[1:].transpose(0, 2, 1)}


def final_state(cache: RNNCache) -> dict:
    return {"h": np.ascontiguousarray(cache.h[-1].T)}  # (B, H)


def backward(dh: np.ndarray, cache: RNNCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) -> dx (T,B,D), grads, dstate."""
    x, h, W_h = cache.x, cache.h, cache.W_h
    T, B, _ = x.shape
    H = W_h.shape[0]
    out = h[1:]  # (T, H, B)
    dphi = 1.0 - out * out if cache.nonlinearity == "tanh" else (out > 0).astype(x.dtype)  # φ' from the output
    da = dh.transpose(0, 2, 1).copy()  # (T, H, B) becomes the pre-activation gradient
    dh_next = np.zeros((H, B), dtype=x.dtype)
    for t in reversed(range(T)):
        da_t = da[t]  # (H, B)
        da_t += dh_next
        da_t *= dphi[t]
        np.matmul(W_h, da_t, out=dh_next)  # (H, B)
    da_bm = np.ascontiguousarray(da.transpose(0, 2, 1))  # (T, B, H)
    h_prev = np.ascontiguousarray(h[:-1].transpose(0, 2, 1))  # (T, B, H)
    grads, dx = window_grads(x, h_prev, da_bm, cache.W_x)
    return dx, grads, {"h": np.ascontiguousarray(dh_next.T)}


def step(p: dict, x: np.ndarray, state: dict, nonlinearity: str = "tanh") -> tuple[np.ndarray, dict]:
    """One step without a cache, for generation: x (B,D) -> h (B,H), next state."""
    a = x @ p["W_x"] + state["h"] @ p["W_h"] + p["b"]  # (B, H)
    h = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
    return h, {"h": h}
