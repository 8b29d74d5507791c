"""Simple (Elman) RNN cell: one layer of recurrence and a squashing nonlinearity.

    h_t = φ(x_t W_x + h_{t-1} W_h + b),   φ = tanh (default) or relu (--nonlinearity relu)

Its gradient through k steps is a product of k Jacobians W_h^T diag(φ'), which shrinks or grows
geometrically: the vanishing/exploding gradient the gated cells were made to avoid.
"""

from dataclasses import dataclass

import numpy as np

from lstmtext.cells.common import uniform

NAME = "rnn"
STATE = ("h",)
OPTIONS = ("nonlinearity",)  # ModelConfig fields this cell reads
NONLINEARITIES = ("tanh", "relu")


def param_shapes(D: int, H: int) -> dict[str, tuple[int, ...]]:
    return {"W_x": (D, H), "W_h": (H, H), "b": (H,)}


def init_params(rng: np.random.Generator, D: int, H: int, scale: float, dtype) -> dict:
    return {"W_x": uniform(rng, (D, H), scale, dtype), "W_h": uniform(rng, (H, H), scale, dtype),
            "b": np.zeros(H, dtype=dtype)}


@dataclass
class RNNCache:
    x: np.ndarray  # (T, B, D)
    h0: np.ndarray  # (B, H)
    h: np.ndarray  # (T, B, H) outputs φ(a_t)
    W_x: np.ndarray  # (D, H)
    W_h: np.ndarray  # (H, H)
    nonlinearity: str


def forward(p: dict, x: np.ndarray, state: dict, nonlinearity: str = "tanh") -> tuple[np.ndarray, RNNCache]:
    """x (T,B,D), state {"h": (B,H)} -> h (T,B,H)."""
    W_x, W_h = p["W_x"], p["W_h"]
    T, B, D = x.shape
    H = W_h.shape[0]
    h = (x.reshape(T * B, D) @ W_x).reshape(T, B, H)  # (T, B, H) input part, then activated in place
    h += p["b"]
    h_prev = state["h"]
    for t in range(T):
        h[t] += h_prev @ W_h  # (B, H)
        if nonlinearity == "tanh":
            np.tanh(h[t], out=h[t])
        else:
            np.maximum(h[t], 0, out=h[t])
        h_prev = h[t]
    return h, RNNCache(x, state["h"], h, W_x, W_h, nonlinearity)


def final_state(cache: RNNCache) -> dict:
    return {"h": cache.h[-1].copy()}


def backward(dh: np.ndarray, cache: RNNCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) -> dx (T,B,D), grads, dstate."""
    x, h, W_h = cache.x, cache.h, cache.W_h
    T, B, D = x.shape
    H = W_h.shape[0]
    da = np.empty_like(h)  # (T, B, H) gradient of the pre-activation
    dh_next = np.zeros((B, H), dtype=x.dtype)
    for t in reversed(range(T)):
        dphi = 1.0 - h[t] * h[t] if cache.nonlinearity == "tanh" else (h[t] > 0)  # φ' from the output
        np.multiply(dh[t] + dh_next, dphi, out=da[t])  # (B, H)
        dh_next = da[t] @ W_h.T  # (B, H)
    h_prev = np.concatenate([cache.h0[None], h[:-1]])  # (T, B, H)
    da2 = da.reshape(T * B, H)
    grads = {"W_x": x.reshape(T * B, D).T @ da2, "W_h": h_prev.reshape(T * B, H).T @ da2, "b": da2.sum(axis=0)}
    dx = (da2 @ cache.W_x.T).reshape(T, B, D)  # (T, B, D)
    return dx, grads, {"h": dh_next}
