"""sLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory"): an LSTM with an exponential
input gate and a normaliser, so that a new input can outweigh everything stored before it.

Row vectors, gates fused along one 4H axis in the order of the official code, i|f|z|o
(NX-AI/xlstm, xlstm/blocks/slstm/src/vanilla/slstm.py):

    ĩ, f̃, z̃, õ = x_t W_x + h_{t−1} W_h + b            (B, H) each
    m_t = max(ĩ, log σ(f̃) + m_{t−1})                   stabiliser: the largest log-weight so far
    i_t = exp(ĩ − m_t)    f_t = exp(log σ(f̃) + m_{t−1} − m_t)
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ tanh(z̃)                cell: a weighted sum of candidates
    n_t = f_t ⊙ n_{t−1} + i_t                          normaliser: the sum of the weights
    h_t = σ(õ) ⊙ c_t / n_t

The input gate exp(ĩ) is unbounded: one input can take almost all of the weight, which lets the
cell revise what it stored. c and n are both scaled by e^{−m}, so m only keeps the exponentials in
range: h does not depend on which m is chosen, and the backward pass treats m as a constant, as the
official backward does. The one gradient that does involve m is the initial state's: c_0 and n_0 mean
c_0 e^{m_0} and n_0 e^{m_0}, so ∂L/∂m_0 = ∂L/∂c_0 ⊙ c_0 + ∂L/∂n_0 ⊙ n_0.

With `--heads N` the recurrent matrix is block-diagonal, N heads of H/N units that mix only among
themselves (the paper's memory mixing within heads); W_h is stored whole and used through a block
mask, so its off-block entries do nothing and get no gradient.

Initialisation, as the official code's defaults (sLSTMCellConfig: recurrent_weight_init "zeros",
bias_init "powerlaw_blockdependent"): W_h starts at zero; the forget bias of unit j of each head
(j = 0 .. d−1, d = H/N) is 5 − 12 (j / (d−1))^(0.3 + 1.3 r), r = layer / (layers − 1), so the units of
a head span from remembering (+5) to forgetting (−7); the other biases start at zero.
"""

from dataclasses import dataclass

import numpy as np

from lstmtext.cells.common import input_projection, sigmoid, window_grads, window_step

NAME = "slstm"
STATE = ("h", "c", "n", "m")
BLOCKS = "ifzo"  # the gate blocks along the fused 4H axis (parameters: cells/common.py)
FORGET = None  # the forget biases follow the power law below, not FORGET_BIAS
EXTRA: dict[str, str] = {}
OPTIONS = ("heads",)  # ModelConfig fields this cell reads
GATES = ("o",)  # its one σ gate: i is an exponential and f is normalised by m


_masks: dict = {}  # (H, heads, dtype) -> mask: made once, not at every generated token


def head_mask(H: int, heads: int, dtype) -> np.ndarray:
    """(H, 4H): 1 where W_h connects units of the same head, in every gate block. Read-only."""
    key = (H, heads, np.dtype(dtype).str)
    if key not in _masks:
        d = H // heads
        same = (np.arange(H)[:, None] // d) == (np.arange(H)[None, :] // d)  # (H, H)
        _masks[key] = np.tile(same, (1, 4)).astype(dtype)
    return _masks[key]


def init_params(p: dict, H: int, layer: int, layers: int, heads: int) -> dict:
    """The official initialisation on top of the scheme's draws: W_h zero, the power-law forget bias."""
    d = H // heads
    r = layer / (layers - 1) if layers > 1 else 0.0
    f_bias = 5.0 - 12.0 * (np.arange(d) / max(d - 1, 1)) ** (0.3 + 1.3 * r)  # (d,)
    b = np.zeros_like(p["b"])
    b[H : 2 * H] = np.tile(f_bias, heads)
    return {**p, "W_h": np.zeros_like(p["W_h"]), "b": b}


@dataclass
class SLSTMCache:
    x: np.ndarray  # (T, B, D)
    i: np.ndarray  # (T, B, H) exp(ĩ − m_t)
    f: np.ndarray  # (T, B, H) exp(log σ(f̃) + m_{t−1} − m_t)
    sf: np.ndarray  # (T, B, H) σ(f̃), for d log σ(f̃) / d f̃ = 1 − σ(f̃)
    z: np.ndarray  # (T, B, H) tanh(z̃)
    o: np.ndarray  # (T, B, H) σ(õ)
    h: np.ndarray  # (T+1, B, H) h[0] the initial state, likewise c, n, m
    c: np.ndarray
    n: np.ndarray
    m: np.ndarray
    W_x: np.ndarray  # (D, 4H)
    W_h: np.ndarray  # (H, 4H)
    heads: int


def forward(p: dict, x: np.ndarray, state: dict, heads: int = 1) -> tuple[np.ndarray, SLSTMCache]:
    """x (T,B,D), state {"h", "c", "n", "m": (B,H)} -> h (T,B,H), a view of the cache (read-only)."""
    H = p["W_h"].shape[0]
    W_h = p["W_h"] * head_mask(H, heads, p["W_h"].dtype) if heads > 1 else p["W_h"]  # (H, 4H)
    T, B, _ = x.shape
    xW = input_projection(x, p["W_x"], p["b"])  # (T, B, 4H), b included
    gates = {k: np.empty((T, B, H), dtype=x.dtype) for k in ("i", "f", "sf", "z", "o")}
    h, c, n, m = (np.empty((T + 1, B, H), dtype=x.dtype) for _ in range(4))
    h[0], c[0], n[0], m[0] = state["h"], state["c"], state["n"], state["m"]
    a = np.empty((B, 4 * H), dtype=x.dtype)  # this step's pre-activations, reused
    ai, af, az, ao = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]  # (B, H) views
    log_fm = np.empty((B, H), dtype=x.dtype)  # log σ(f̃) + m_{t-1}
    tmp = np.empty((B, H), dtype=x.dtype)
    for t in range(T):
        np.matmul(h[t], W_h, out=a)  # (B, 4H)
        a += xW[t]
        np.logaddexp(0.0, -af, out=log_fm)  # -log σ(f̃), finite for any f̃
        np.subtract(m[t], log_fm, out=log_fm)
        np.maximum(ai, log_fm, out=m[t + 1])
        # An empty cell (n = 0, as in a zero start) takes m from the input alone, as the official code
        # does: then i = 1 and n ≥ 1, where max() could leave n = exp(ĩ − log σ(f̃)) rounding to 0.
        np.copyto(m[t + 1], ai, where=n[t] == 0)
        i = gates["i"][t]
        np.subtract(ai, m[t + 1], out=i)
        np.exp(i, out=i)  # ≤ 1
        f = gates["f"][t]
        np.subtract(log_fm, m[t + 1], out=f)
        with np.errstate(over="ignore"):  # only where the line above chose ĩ for an empty cell:
            np.exp(f, out=f)  # ≤ 1 elsewhere
        np.minimum(f, 1.0, out=f)  # there f multiplies c = n = 0, and inf · 0 must not make a nan
        sigmoid(af, out=gates["sf"][t])
        np.tanh(az, out=gates["z"][t])
        sigmoid(ao, out=gates["o"][t])
        np.multiply(f, c[t], out=c[t + 1])  # (B, H)
        np.multiply(i, gates["z"][t], out=tmp)
        c[t + 1] += tmp
        np.multiply(f, n[t], out=n[t + 1])
        n[t + 1] += i
        np.divide(c[t + 1], n[t + 1], out=h[t + 1])
        h[t + 1] *= gates["o"][t]
    cache = SLSTMCache(x, gates["i"], gates["f"], gates["sf"], gates["z"], gates["o"], h, c, n, m, p["W_x"], W_h, heads)
    return h[1:], cache


def quantities(cache: SLSTMCache) -> dict[str, np.ndarray]:
    """{name: (T, B, H)}: the hidden state, the normalised cell "cn" = c/n (c and n alone are scaled by
    e^{-m}, so only their ratio means something), the stabilised gates i and f, the candidate z and
    the output gate o."""
    return {"h": cache.h[1:], "cn": cache.c[1:] / cache.n[1:], "i": cache.i, "f": cache.f, "z": cache.z, "o": cache.o}


def final_state(cache: SLSTMCache) -> dict:
    return {k: getattr(cache, k)[-1].copy() for k in STATE}  # (B, H) each


def backward(dh: np.ndarray, cache: SLSTMCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) -> dx (T,B,D), grads, dstate. m is a constant inside the window (see the docstring)."""
    i, f, sf, z, o, h, c, n = cache.i, cache.f, cache.sf, cache.z, cache.o, cache.h, cache.c, cache.n
    T, B, H = i.shape
    dA = np.empty((T, B, 4 * H), dtype=i.dtype)  # dLoss / d pre-activations ĩ|f̃|z̃|õ
    dh_next = np.zeros((B, H), dtype=i.dtype)  # through h_t W_h into step t+1
    dc = np.zeros((B, H), dtype=i.dtype)  # dLoss / dc_t from step t+1
    dn = np.zeros((B, H), dtype=i.dtype)
    for t in reversed(range(T)):
        dh_t = dh[t] + dh_next  # (B, H)
        ratio = c[t + 1] / n[t + 1]  # (B, H) c/n
        dr = dh_t * o[t]  # (B, H) through h = o ⊙ c/n
        dA[t, :, 3 * H :] = dh_t * ratio * o[t] * (1.0 - o[t])
        dc = dc + dr / n[t + 1]
        dn = dn - dr * ratio / n[t + 1]
        d_i = dc * z[t] + dn  # (B, H) c and n both take i
        d_f = dc * c[t] + dn * n[t]
        dA[t, :, :H] = d_i * i[t]  # i = exp(ĩ − m)
        dA[t, :, H : 2 * H] = d_f * f[t] * (1.0 - sf[t])  # f = exp(log σ(f̃) + const)
        dA[t, :, 2 * H : 3 * H] = dc * i[t] * (1.0 - z[t] * z[t])
        dc, dn = dc * f[t], dn * f[t]  # what flows to c_{t-1}, n_{t-1}
        dh_next = dA[t] @ cache.W_h.T  # (B, H)
    grads, dx = window_grads(cache.x, h[:-1], dA, cache.W_x)
    if cache.heads > 1:
        grads["W_h"] *= head_mask(H, cache.heads, grads["W_h"].dtype)  # off-block weights stay zero
    dm0 = dc * c[0] + dn * n[0]  # c_0, n_0 stand for c_0 e^{m_0}, n_0 e^{m_0}
    return dx, grads, {"h": dh_next, "c": dc, "n": dn, "m": dm0}


step = window_step(forward, final_state)
