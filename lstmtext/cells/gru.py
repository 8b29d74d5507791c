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

from lstmtext.cells.common import GateActivation, input_projection, named_blocks, transposed, window_grads

NAME = "gru"
STATE = ("h",)
BLOCKS = "rzn"  # the gate blocks along the fused 3H axis (parameters: cells/common.py)
FORGET = None  # z keeps the state, but with the GRU's usual zero bias
EXTRA = {"b_hn": "zero"}  # the bias inside r ⊙ (h W_hn + b_hn)


# --chrono (Tallec & Ollivier 2018): the H-block of b holding the keep gate z (h = (1-z) n + z h);
# the write gate is 1 - z, so it follows.
CHRONO = (1, None)
OPTIONS: tuple[str, ...] = ()
RECURRENT = True
own_init = None


@dataclass
class GRUCache:
    x: np.ndarray  # (T, B, D)
    gates: np.ndarray  # (T, 3H, B) activated r|z|n, feature-major
    hn: np.ndarray  # (T, H, B) h_{t-1} W_hn + b_hn, before the reset gate
    h: np.ndarray  # (T+1, B, H) hidden states, h[0] = the initial one (common.py: the window layout)
    act: GateActivation  # σ for r and z
    W_x: np.ndarray  # (D, 3H)
    W_h: np.ndarray  # (H, 3H)


def forward(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, GRUCache]:
    """x (T,B,D), state {"h": (B,H)} -> h (T,B,H), a view of the cache (read-only).
    Feature-major steps, h batch-major, like the LSTM."""
    W_x, W_h = p["W_x"], p["W_h"]
    T, B, _ = x.shape
    H = W_h.shape[0]
    dt = x.dtype
    act = GateActivation.of("ss", H, dt)  # r, z
    xw = input_projection(x, W_x, p["b"])  # (T, B, 3H)
    gates = np.ascontiguousarray(xw.transpose(0, 2, 1))  # (T, 3H, B)
    hn = np.empty((T, H, B), dtype=dt)
    h = np.empty((T + 1, B, H), dtype=dt)
    h[0] = state["h"]
    W_hT = transposed(W_h)  # (3H, H)
    b_hn = p["b_hn"][:, None]  # (H, 1)
    rec = np.empty((3 * H, B), dtype=dt)  # (3H, B)
    tmp = np.empty((H, B), dtype=dt)  # (H, B)
    for t in range(T):
        a = gates[t]  # (3H, B)
        np.matmul(W_hT, h[t].T, out=rec)  # (3H, B); h[t].T is a transposed view
        a[: 2 * H] += rec[: 2 * H]
        act.apply(a[: 2 * H])  # r, z
        np.add(rec[2 * H :], b_hn, out=hn[t])  # (H, B)
        r, z, n = a[:H], a[H : 2 * H], a[2 * H :]
        np.multiply(r, hn[t], out=tmp)
        n += tmp
        np.tanh(n, out=n)
        np.subtract(h[t].T, n, out=tmp)  # (1-z) n + z h = n + z (h - n)
        tmp *= z
        np.add(n, tmp, out=h[t + 1].T)  # (H, B) written into the (B, H) row
    return h[1:], GRUCache(x, gates, hn, h, act, W_x, W_h)


GATES = ("r", "z")  # the σ gates, whose saturation `lstmtext inspect` measures


def quantities(cache: GRUCache) -> dict[str, np.ndarray]:
    """{name: (T, B, H)}: the hidden state, the gates r, z and the candidate n."""
    return {"h": cache.h[1:], **named_blocks(cache.gates, BLOCKS, 1)}


def final_state(cache: GRUCache) -> dict:
    return {"h": cache.h[-1].copy()}  # (B, H)


def backward(dh: np.ndarray, cache: GRUCache) -> tuple[np.ndarray, dict, dict]:
    """dh (T,B,H) -> dx (T,B,D), grads, dstate."""
    x, gates, hn, h, W_h = cache.x, cache.gates, cache.hn, cache.h, cache.W_h
    T, B, _ = x.shape
    H = W_h.shape[0]
    dt = x.dtype
    r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]  # (T, H, B) each
    # The parts that do not depend on the recursion, for the whole window at once.
    k = cache.act.derivative(gates[:, : 2 * H])  # (T, 2H, B) σ' of r and z
    k[:, :H] *= hn  # da_r = da_n ⊙ hn ⊙ σ'(r)
    k[:, H:] *= h[:-1].transpose(0, 2, 1) - n  # da_z = dh ⊙ (h_{t-1} - n) ⊙ σ'(z)
    k_n = (1.0 - z) * (1.0 - n * n)  # (T, H, B) da_n = dh ⊙ (1 - z) ⊙ tanh'
    dhT = dh.transpose(0, 2, 1).copy()  # (T, H, B)
    dah = np.empty((T, 3 * H, B), dtype=dt)  # (T, 3H, B) gradient of h_{t-1} W_h (+ b_hn)
    dan = np.empty((T, H, B), dtype=dt)  # (T, H, B) gradient of the input-side n pre-activation
    dh_next = np.zeros((H, B), dtype=dt)
    tmp = np.empty((H, B), dtype=dt)
    for t in reversed(range(T)):
        dh_t = dhT[t]  # (H, B)
        dh_t += dh_next
        np.multiply(dh_t, k_n[t], out=dan[t])
        np.multiply(dan[t], k[t, :H], out=dah[t, :H])  # r
        np.multiply(dh_t, k[t, H:], out=dah[t, H : 2 * H])  # z
        np.multiply(dan[t], r[t], out=dah[t, 2 * H :])  # n, inside the reset gate
        np.matmul(W_h, dah[t], out=dh_next)  # (H, B)
        np.multiply(dh_t, z[t], out=tmp)
        dh_next += tmp
    dah_bm = np.ascontiguousarray(dah.transpose(0, 2, 1)).reshape(T * B, 3 * H)  # (TB, 3H)
    dax_bm = dah_bm.copy()  # the input side shares r and z, and has its own n
    dax_bm[:, 2 * H :] = dan.transpose(0, 2, 1).reshape(T * B, H)
    grads, dx = window_grads(x, h[:-1], dax_bm, cache.W_x, dA_h=dah_bm)
    grads["b_hn"] = dah_bm[:, 2 * H :].sum(axis=0)  # (H,)
    return dx, grads, {"h": np.ascontiguousarray(dh_next.T)}


def step(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    """One step without a cache, for generation: x (B,D) -> h (B,H), next state."""
    H = p["W_h"].shape[0]
    h_prev = state["h"]
    a = x @ p["W_x"] + p["b"]  # (B, 3H)
    ah = h_prev @ p["W_h"]  # (B, 3H)
    a[:, : 2 * H] += ah[:, : 2 * H]
    GateActivation.of("ss", H, a.dtype).apply(a[:, : 2 * H].T)
    r, z = a[:, :H], a[:, H : 2 * H]
    n = np.tanh(a[:, 2 * H :] + r * (ah[:, 2 * H :] + p["b_hn"]))  # (B, H)
    h = n + z * (h_prev - n)  # (B, H)
    return h, {"h": h}
