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

from lstmtext.cells import compiled
from lstmtext.cells.common import (
    GateActivation,
    input_projection,
    named_blocks,
    transposed,
    window_grads,
    window_step,
)

NAME = "slstm"
STATE = ("h", "c", "n", "m")
BLOCKS = "ifzo"  # the gate blocks along the fused 4H axis (parameters: cells/common.py)
FORGET = None  # the forget biases follow the power law below, not FORGET_BIAS
EXTRA: dict[str, str] = {}
OPTIONS = ("heads",)  # ModelConfig fields this cell reads
CHRONO = None  # its forget biases have their own start (own_init)
RECURRENT = True
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


def own_init(p: dict, H: int, layer: int, layers: int, heads: int) -> dict:
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
    gates: np.ndarray  # (T, 4H, B) i = exp(ĩ − m_t) | f = exp(log σ(f̃) + m_{t−1} − m_t) | z = tanh(z̃) | o = σ(õ)
    sf: np.ndarray  # (T, H, B) σ(f̃), for d log σ(f̃) / d f̃ = 1 − σ(f̃)
    h: np.ndarray  # (T+1, B, H) h[0] the initial state (common.py: the window layout)
    c: np.ndarray  # (T+1, H, B) c[0] the initial state, likewise n and m
    n: np.ndarray
    m: np.ndarray
    W_x: np.ndarray  # (D, 4H)
    W_h: np.ndarray  # (H, 4H), masked to its heads
    heads: int


def forward(p: dict, x: np.ndarray, state: dict, heads: int = 1) -> tuple[np.ndarray, SLSTMCache]:
    """x (T,B,D), state {"h", "c", "n", "m": (B,H)} -> h (T,B,H), a view of the cache (read-only).
    Feature-major steps, h batch-major, like the LSTM (common.py)."""
    H = p["W_h"].shape[0]
    W_h = p["W_h"] * head_mask(H, heads, p["W_h"].dtype) if heads > 1 else p["W_h"]  # (H, 4H)
    if k := compiled.kernels(x.dtype, len(x)):  # numba installed: the same steps compiled (cells/compiled.py)
        return compiled.slstm_forward(k, p, x, state, W_h, heads)
    T, B, _ = x.shape
    dt = x.dtype
    xW = input_projection(x, p["W_x"], p["b"])  # (T, B, 4H), b included
    gates = np.empty((T, 4 * H, B), dtype=dt)
    sf = np.empty((T, H, B), dtype=dt)
    h = np.empty((T + 1, B, H), dtype=dt)
    c, n, m = (np.empty((T + 1, H, B), dtype=dt) for _ in range(3))
    h[0] = state["h"]
    c[0], n[0], m[0] = state["c"].T, state["n"].T, state["m"].T
    W_hT = transposed(W_h)  # (4H, H)
    act_zo = GateActivation.of("ts", H, dt)  # z: tanh; o: σ
    log_fm = np.empty((H, B), dtype=dt)  # log σ(f̃) + m_{t-1}
    e = np.empty((H, B), dtype=dt)  # e^−|f̃|
    below = np.empty((H, B), dtype=bool)  # f̃ < 0
    tmp = np.empty((H, B), dtype=dt)
    for t in range(T):
        a = gates[t]  # (4H, B), pre-activations turned into gates in place
        np.matmul(W_hT, h[t].T, out=a)  # (4H, B); h[t].T is a transposed view
        a += xW[t].T
        ai, af, az, ao = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]  # (H, B) views
        # σ(f̃) and log σ(f̃) from one e = e^−|f̃| in (0, 1], which cannot overflow: σ = 1/(1 + e) for
        # f̃ ≥ 0 and e/(1 + e) below, log σ = min(f̃, 0) − log(1 + e). Both keep their precision for
        # any f̃, and NumPy's exp and log are vectorised (logaddexp, the textbook call, is not: ten
        # times slower). The compiled kernel (cells/compiled.py) computes the same.
        np.abs(af, out=e)
        np.negative(e, out=e)
        np.exp(e, out=e)  # (H, B) e^−|f̃|
        np.add(e, 1.0, out=tmp)  # 1 + e
        np.reciprocal(tmp, out=sf[t])  # (H, B) σ(|f̃|)
        np.less(af, 0.0, out=below)
        np.multiply(sf[t], e, out=sf[t], where=below)  # (H, B) σ(f̃)
        np.log(tmp, out=tmp)  # log(1 + e)
        np.minimum(af, 0.0, out=log_fm)
        log_fm -= tmp  # log σ(f̃)
        log_fm += m[t]
        np.maximum(ai, log_fm, out=m[t + 1])
        # An empty cell (n = 0, as in a zero start) takes m from the input alone, as the official code
        # does: then i = 1 and n ≥ 1, where max() could leave n = exp(ĩ − log σ(f̃)) rounding to 0.
        np.copyto(m[t + 1], ai, where=n[t] == 0)
        ai -= m[t + 1]
        np.exp(ai, out=ai)  # i ≤ 1
        np.subtract(log_fm, m[t + 1], out=af)
        with np.errstate(over="ignore"):  # only where the line above chose ĩ for an empty cell:
            np.exp(af, out=af)  # f ≤ 1 elsewhere
        np.minimum(af, 1.0, out=af)  # there f multiplies c = n = 0, and inf · 0 must not make a nan
        act_zo.apply(a[2 * H :])  # z, o
        np.multiply(af, c[t], out=c[t + 1])  # (H, B)
        np.multiply(ai, az, out=tmp)
        c[t + 1] += tmp
        np.multiply(af, n[t], out=n[t + 1])
        n[t + 1] += ai
        np.divide(c[t + 1], n[t + 1], out=tmp)
        np.multiply(ao, tmp, out=h[t + 1].T)  # (H, B) written into the (B, H) row
    return h[1:], SLSTMCache(x, gates, sf, h, c, n, m, p["W_x"], W_h, heads)


def quantities(cache: SLSTMCache) -> dict[str, np.ndarray]:
    """{name: (T, B, H)}: the hidden state, the normalised cell "cn" = c/n (c and n alone are scaled by
    e^{-m}, so only their ratio means something), the stabilised gates i and f, the candidate z and
    the output gate o."""
    cn = (cache.c[1:] / cache.n[1:]).transpose(0, 2, 1)  # (T, B, H)
    return {"h": cache.h[1:], "cn": cn, **named_blocks(cache.gates, BLOCKS, 1)}


def final_state(cache: SLSTMCache) -> dict:
    return {"h": cache.h[-1].copy(), **{k: np.ascontiguousarray(getattr(cache, k)[-1].T) for k in ("c", "n", "m")}}


def backward(dh: np.ndarray, cache: SLSTMCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) -> dx (T,B,D), grads, dstate. m is a constant inside the window (see the docstring)."""
    if k := compiled.kernels(cache.x.dtype, len(cache.x)):
        return compiled.slstm_backward(k, dh, cache)
    gates, c, n = cache.gates, cache.c, cache.n
    T, GH, B = gates.shape
    H = GH // 4
    dt = gates.dtype
    i, f, z, o = (gates[:, k * H : (k + 1) * H] for k in range(4))  # (T, H, B) each
    # What does not depend on the recursion, for the whole window at once:
    inv_n = 1.0 / n[1:]  # (T, H, B)
    ratio = c[1:] * inv_n  # c/n
    k_o = ratio * o * (1.0 - o)  # da_o = dh ⊙ c/n ⊙ σ'(õ)
    k_ratio = ratio * inv_n  # c/n²: ∂(c/n)/∂n = −c/n², the minus applied at `dn -=` below
    k_f = f * (1.0 - cache.sf)  # da_f = ∂L/∂f ⊙ f ⊙ (1 − σ(f̃)): f = exp(log σ(f̃) + const)
    k_z = i * (1.0 - z * z)  # da_z = dc ⊙ i ⊙ tanh'
    dA = np.empty((T, B, GH), dtype=dt)  # dLoss / d pre-activations ĩ|f̃|z̃|õ, batch-major for the GEMMs
    da = np.empty((GH, B), dtype=dt)  # the same, one step, feature-major
    da_i, da_f, da_z, da_o = da[:H], da[H : 2 * H], da[2 * H : 3 * H], da[3 * H :]  # (H, B) views
    dh_next = np.zeros((H, B), dtype=dt)  # through h_t W_h into step t+1
    dh_t, dr, tmp = (np.empty((H, B), dtype=dt) for _ in range(3))
    dc = np.zeros((H, B), dtype=dt)  # dLoss / dc_t from step t+1
    dn = np.zeros((H, B), dtype=dt)
    for t in reversed(range(T)):
        np.add(dh[t].T, dh_next, out=dh_t)  # (H, B)
        np.multiply(dh_t, k_o[t], out=da_o)
        np.multiply(dh_t, o[t], out=dr)  # through h = o ⊙ c/n
        np.multiply(dr, inv_n[t], out=tmp)
        dc += tmp
        np.multiply(dr, k_ratio[t], out=tmp)
        dn -= tmp
        np.multiply(dc, z[t], out=da_i)  # c and n both take i
        da_i += dn
        da_i *= i[t]  # i = exp(ĩ − m)
        np.multiply(dc, c[t], out=da_f)  # c and n both take f
        np.multiply(dn, n[t], out=tmp)
        da_f += tmp
        da_f *= k_f[t]
        np.multiply(dc, k_z[t], out=da_z)
        dc *= f[t]  # what flows to c_{t-1}, n_{t-1}
        dn *= f[t]
        np.matmul(cache.W_h, da, out=dh_next)  # (H, B)
        dA[t] = da.T  # (B, 4H)
    grads, dx = window_grads(cache.x, cache.h[:-1], dA.reshape(T * B, -1), cache.W_x)
    if cache.heads > 1:
        grads["W_h"] *= head_mask(H, cache.heads, grads["W_h"].dtype)  # off-block weights stay zero
    dm0 = dc * c[0] + dn * n[0]  # c_0, n_0 stand for c_0 e^{m_0}, n_0 e^{m_0}
    dstate = {"h": dh_next, "c": dc, "n": dn, "m": dm0}
    return dx, grads, {k: np.ascontiguousarray(v.T) for k, v in dstate.items()}


step = window_step(forward, final_state)
