"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gate and candidate see x_t only.

Row vectors, fused along one 2H axis in the order z|n:

    z_t = σ(x_t W_xz + b_z)                  update gate: how much of the candidate to write
    n_t = g(x_t W_xn + b_n)                  candidate, g(v) = v + 1/2 for v ≥ 0 and σ(v) below
    h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ n_t

No gate looks at h_{t−1}, so there is no W_h: every matrix product of a window is one GEMM over all
its steps, and what is left is the linear scan h_t = a_t ⊙ h_{t−1} + b_t (a = 1 − z, b = z ⊙ n),
elementwise (cells/linear_scan.py, step by step: faster in NumPy than the log-space form). g keeps the
candidate positive, which the log-space form needs (Feng et al., appendix B.3); the paper uses it in
both modes. The state h is carried across windows like every cell's.
"""

from dataclasses import dataclass

import numpy as np

from lstmtext.cells.common import input_projection, sigmoid, window_grads, window_step
from lstmtext.cells.linear_scan import linear_scan, linear_scan_backward, positive

NAME = "mingru"
STATE = ("h",)
BLOCKS = "zn"  # the blocks along the fused 2H axis (parameters: cells/common.py)
FORGET = None
EXTRA: dict[str, str] = {}
RECURRENT = False  # no W_h: the gates see x_t only
CHRONO = None
OPTIONS: tuple[str, ...] = ()
own_init = None
GATES = ("z",)  # the σ gate, whose saturation `lstmtext inspect` measures


@dataclass
class MinGRUCache:
    x: np.ndarray  # (T, B, D)
    z: np.ndarray  # (T, B, H) update gate
    n: np.ndarray  # (T, B, H) candidate g(v)
    dn: np.ndarray  # (T, B, H) g'(v)
    h: np.ndarray  # (T+1, B, H) hidden states, h[0] = the initial one
    W_x: np.ndarray  # (D, 2H)


def forward(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, MinGRUCache]:
    """x (T,B,D), state {"h": (B,H)} -> h (T,B,H), a view of the cache (read-only)."""
    H = p["W_x"].shape[1] // 2
    A = input_projection(x, p["W_x"], p["b"])  # (T, B, 2H): every step's gate and candidate at once
    z = sigmoid(A[:, :, :H])  # (T, B, H)
    n, dn = positive(A[:, :, H:])  # (T, B, H) each
    h = linear_scan(1.0 - z, z * n, state["h"])  # (T+1, B, H): keep 1 - z, write z ⊙ n
    return h[1:], MinGRUCache(x, z, n, dn, h, p["W_x"])


def quantities(cache: MinGRUCache) -> dict[str, np.ndarray]:
    """{name: (T, B, H)}: the hidden state, the update gate z and the candidate n."""
    return {"h": cache.h[1:], "z": cache.z, "n": cache.n}


def final_state(cache: MinGRUCache) -> dict:
    return {"h": cache.h[-1].copy()}  # (B, H)


def backward(dh: np.ndarray, cache: MinGRUCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) -> dx (T,B,D), grads, dstate. Only the scan runs step by step."""
    z, n, h = cache.z, cache.n, cache.h
    T, B, H = z.shape
    dh_total, dh0 = linear_scan_backward(dh, 1.0 - z)  # (T, B, H), (B, H)
    dA = np.empty((T, B, 2 * H), dtype=z.dtype)  # dLoss / d pre-activations
    np.multiply(dh_total * (n - h[:-1]), z * (1.0 - z), out=dA[:, :, :H])  # z moves h toward n
    np.multiply(dh_total * z, cache.dn, out=dA[:, :, H:])
    grads, dx = window_grads(cache.x, None, dA.reshape(T * B, -1), cache.W_x)
    return dx, grads, {"h": dh0}


step = window_step(forward, final_state)
