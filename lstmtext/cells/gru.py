"""GRU cell (Cho et al. 2014), in PyTorch's formulation: the reset gate acts after the hidden matmul.

Row vectors, gates fused along one 3H axis in PyTorch's order r|z|n:

    r_t = σ(x_t W_xr + h_{t-1} W_hr + b_r)
    z_t = σ(x_t W_xz + h_{t-1} W_hz + b_z)
    n_t = tanh(x_t W_xn + b_n + r_t ⊙ (h_{t-1} W_hn + b_hn))
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

The update gate z decides how much of the old state to keep; the reset gate r how much of it the
candidate n may see. b_hn is the one bias that cannot be merged into b (it sits inside r ⊙ (...)),
so b (3H,) holds every other bias exactly once.
"""

from dataclasses import dataclass

import numpy as np

from lstmtext.cells.common import dsigmoid_from_out, sigmoid, uniform

NAME = "gru"
STATE = ("h",)


def param_shapes(D: int, H: int) -> dict[str, tuple[int, ...]]:
    return {"W_x": (D, 3 * H), "W_h": (H, 3 * H), "b": (3 * H,), "b_hn": (H,)}


def init_params(rng: np.random.Generator, D: int, H: int, scale: float, dtype) -> dict:
    return {
        "W_x": uniform(rng, (D, 3 * H), scale, dtype),
        "W_h": uniform(rng, (H, 3 * H), scale, dtype),
        "b": np.zeros(3 * H, dtype=dtype),
        "b_hn": np.zeros(H, dtype=dtype),
    }


@dataclass
class GRUCache:
    x: np.ndarray  # (T, B, D)
    h0: np.ndarray  # (B, H)
    gates: np.ndarray  # (T, B, 3H) activated r|z|n
    hn: np.ndarray  # (T, B, H) h_{t-1} W_hn + b_hn, before the reset gate
    h: np.ndarray  # (T, B, H) outputs
    W_x: np.ndarray  # (D, 3H)
    W_h: np.ndarray  # (H, 3H)


def forward(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, GRUCache]:
    """x (T,B,D), state {"h": (B,H)} -> h (T,B,H)."""
    W_x, W_h = p["W_x"], p["W_h"]
    T, B, D = x.shape
    H = W_h.shape[0]
    gates = (x.reshape(T * B, D) @ W_x).reshape(T, B, 3 * H)  # (T, B, 3H) input part, one GEMM
    gates += p["b"]
    hn = np.empty((T, B, H), dtype=x.dtype)
    h = np.empty_like(hn)
    h_prev = state["h"]
    for t in range(T):
        a = gates[t]  # (B, 3H)
        ah = h_prev @ W_h  # (B, 3H)
        a[:, : 2 * H] += ah[:, : 2 * H]
        sigmoid(a[:, : 2 * H], out=a[:, : 2 * H])  # r, z
        np.add(ah[:, 2 * H :], p["b_hn"], out=hn[t])  # (B, H)
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        n += r * hn[t]
        np.tanh(n, out=n)
        np.multiply(z, h_prev - n, out=h[t])  # (1-z) n + z h = n + z (h - n)
        h[t] += n
        h_prev = h[t]
    return h, GRUCache(x, state["h"], gates, hn, h, W_x, W_h)


def final_state(cache: GRUCache) -> dict:
    return {"h": cache.h[-1].copy()}


def backward(dh: np.ndarray, cache: GRUCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) -> dx (T,B,D), grads, dstate."""
    x, gates, hn, W_h = cache.x, cache.gates, cache.hn, cache.W_h
    T, B, D = x.shape
    H = W_h.shape[0]
    dax = np.empty_like(gates)  # (T, B, 3H) gradient of the input-side pre-activations
    dah = np.empty_like(gates)  # (T, B, 3H) gradient of h_{t-1} W_h (+ b_hn)
    dh_next = np.zeros((B, H), dtype=x.dtype)
    for t in reversed(range(T)):
        r, z, n = gates[t, :, :H], gates[t, :, H : 2 * H], gates[t, :, 2 * H :]
        h_prev = cache.h[t - 1] if t > 0 else cache.h0
        dh_t = dh[t] + dh_next  # (B, H)
        dan = dh_t * (1.0 - z) * (1.0 - n * n)  # (B, H) through n = tanh(...)
        dax[t, :, H : 2 * H] = dah[t, :, H : 2 * H] = dh_t * (h_prev - n) * dsigmoid_from_out(z)  # dz
        dax[t, :, :H] = dah[t, :, :H] = dan * hn[t] * dsigmoid_from_out(r)  # dr
        dax[t, :, 2 * H :] = dan
        dah[t, :, 2 * H :] = dan * r
        dh_next = dh_t * z + dah[t] @ W_h.T  # (B, H)
    h_prev_all = np.concatenate([cache.h0[None], cache.h[:-1]])  # (T, B, H)
    dax2, dah2 = dax.reshape(T * B, 3 * H), dah.reshape(T * B, 3 * H)
    grads = {
        "W_x": x.reshape(T * B, D).T @ dax2,  # (D, 3H)
        "W_h": h_prev_all.reshape(T * B, H).T @ dah2,  # (H, 3H)
        "b": dax2.sum(axis=0),  # (3H,)
        "b_hn": dah2[:, 2 * H :].sum(axis=0),  # (H,)
    }
    dx = (dax2 @ cache.W_x.T).reshape(T, B, D)  # (T, B, D)
    return dx, grads, {"h": dh_next}
