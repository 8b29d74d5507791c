"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): an LSTM whose gates see x_t only.

Row vectors, fused along one 3H axis in the order f|i|n:

    f_t = σ(x_t W_xf + b_f)                  forget gate
    i_t = σ(x_t W_xi + b_i)                  input gate
    n_t = g(x_t W_xn + b_n)                  candidate, g(v) = v + 1/2 for v ≥ 0 and σ(v) below
    f'_t = f_t / (f_t + i_t)    i'_t = i_t / (f_t + i_t)
    h_t = f'_t ⊙ h_{t−1} + i'_t ⊙ n_t

The two gates are normalised to sum to 1, so h stays a weighted mean of positive candidates and its
scale does not grow with the length of the text (the paper's "length independence"); there is no
separate cell state and no output gate. f' is computed in log space, as the paper does:
f' = σ(log f − log i) with log σ(v) = −softplus(−v), because f / (f + i) is 0/0 once both gates
round to 0 (v ≲ −20 in float32). As in the minGRU, nothing looks at h_{t−1} but the scan
h_t = a_t ⊙ h_{t−1} + b_t (a = f', b = i' ⊙ n), run step by step (cells/linear_scan.py).
"""

from dataclasses import dataclass

import numpy as np

from lstmtext.cells.common import input_projection, sigmoid, softplus, window_grads, window_step
from lstmtext.cells.linear_scan import linear_scan, linear_scan_backward, positive

NAME = "minlstm"
STATE = ("h",)
BLOCKS = "fin"  # the blocks along the fused 3H axis (parameters: cells/common.py)
FORGET = None  # the paper starts both gates alike
EXTRA: dict[str, str] = {}
RECURRENT = False  # no W_h: the gates see x_t only
CHRONO = None
OPTIONS: tuple[str, ...] = ()
own_init = None
GATES = ("f", "i")  # the σ gates, whose saturation `lstmtext inspect` measures


@dataclass
class MinLSTMCache:
    x: np.ndarray  # (T, B, D)
    f: np.ndarray  # (T, B, H) forget gate, before the normalisation
    i: np.ndarray  # (T, B, H) input gate, before the normalisation
    keep: np.ndarray  # (T, B, H) f' = f / (f + i)
    n: np.ndarray  # (T, B, H) candidate g(v)
    dn: np.ndarray  # (T, B, H) g'(v)
    h: np.ndarray  # (T+1, B, H) hidden states, h[0] = the initial one
    W_x: np.ndarray  # (D, 3H)


def forward(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, MinLSTMCache]:
    """x (T,B,D), state {"h": (B,H)} -> h (T,B,H), a view of the cache (read-only)."""
    H = p["W_x"].shape[1] // 3
    A = input_projection(x, p["W_x"], p["b"])  # (T, B, 3H): every step's gates and candidate at once
    a_f, a_i = A[:, :, :H], A[:, :, H : 2 * H]  # (T, B, H) each
    f, i = sigmoid(a_f), sigmoid(a_i)  # (T, B, H) each, for inspect
    keep = softplus(-a_i)  # (T, B, H) −log i
    keep -= softplus(-a_f)  # (T, B, H) log f − log i
    sigmoid(keep, out=keep)  # (T, B, H) f' = σ(log f − log i)
    n, dn = positive(A[:, :, 2 * H :])  # (T, B, H) each
    h = linear_scan(keep, (1.0 - keep) * n, state["h"])  # (T+1, B, H); i' = 1 - f'
    return h[1:], MinLSTMCache(x, f, i, keep, n, dn, h, p["W_x"])


def quantities(cache: MinLSTMCache) -> dict[str, np.ndarray]:
    """{name: (T, B, H)}: the hidden state, the gates f and i (before normalising) and the candidate n."""
    return {"h": cache.h[1:], "f": cache.f, "i": cache.i, "n": cache.n}


def final_state(cache: MinLSTMCache) -> dict:
    return {"h": cache.h[-1].copy()}  # (B, H)


def backward(dh: np.ndarray, cache: MinLSTMCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) -> dx (T,B,D), grads, dstate. Only the scan runs step by step."""
    f, i, keep, n, h = cache.f, cache.i, cache.keep, cache.n, cache.h
    T, B, H = f.shape
    dh_total, dh0 = linear_scan_backward(dh, keep)  # (T, B, H), (B, H)
    # h = n + f' (h_{t-1} - n) and f' = σ(u), u = softplus(-a_i) - softplus(-a_f): ∂u/∂a_f = 1 - f,
    # ∂u/∂a_i = -(1 - i).
    du = dh_total * (h[:-1] - n) * keep * (1.0 - keep)  # (T, B, H)
    dA = np.empty((T, B, 3 * H), dtype=f.dtype)  # dLoss / d pre-activations
    np.multiply(du, 1.0 - f, out=dA[:, :, :H])
    np.multiply(-du, 1.0 - i, out=dA[:, :, H : 2 * H])
    np.multiply(dh_total * (1.0 - keep), cache.dn, out=dA[:, :, 2 * H :])
    grads, dx = window_grads(cache.x, None, dA.reshape(T * B, -1), cache.W_x)
    return dx, grads, {"h": dh0}


step = window_step(forward, final_state)
