"""Coupled input-forget gate LSTM, CIFG (Gers & Schmidhuber 2000; Greff et al. 2017).

"Only forget when something new is written in its place": the input gate is 1 - f.
Row vectors, gates fused along one 3H axis in the order f|g|o:

    f_t = σ(x_t W_xf + h_{t-1} W_hf + b_f)
    g_t = tanh(x_t W_xg + h_{t-1} W_hg + b_g)
    o_t = σ(x_t W_xo + h_{t-1} W_ho + b_o)
    c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

A quarter fewer parameters than the LSTM, and the cell state is a convex mix of old and new.
The window's loops are the LSTM's (cells/lstm.py); this module holds its write of c_t and that
write's derivatives.
"""

import numpy as np

from lstmtext.cells import lstm
from lstmtext.cells.common import window_step

NAME = "cifg"
STATE = ("h", "c")
BLOCKS = "fgo"  # the gate blocks along the fused 3H axis (parameters: cells/common.py)
FORGET = 0  # the block whose bias starts at FORGET_BIAS
EXTRA: dict[str, str] = {}
# --chrono (Tallec & Ollivier 2018): the H-block of b holding the keep gate f; the write gate
# is 1 - f, so it follows.
CHRONO = (0, None)
GATES = ("f", "o")  # the σ gates, whose saturation `lstmtext inspect` measures
OPTIONS: tuple[str, ...] = ()
RECURRENT = True
own_init = None


def write(a: np.ndarray, c_prev: np.ndarray, c_next: np.ndarray, tmp: np.ndarray) -> None:
    """c_t = f ⊙ c_{t-1} + (1 - f) ⊙ g = g + f ⊙ (c_{t-1} - g), from the activated gates a (3H, B)."""
    H = c_prev.shape[0]
    f, g = a[:H], a[H : 2 * H]
    np.subtract(c_prev, g, out=c_next)  # (H, B)
    c_next *= f  # (H, B)
    c_next += g  # (H, B)


def local_derivatives(k: np.ndarray, cache: lstm.Cache) -> None:
    """k (T, 3H, B) of σ'/tanh' -> ∂c_t/∂a for f and g, in place (o: lstm.backward):
    da_f = dc ⊙ (c_{t-1} - g) ⊙ σ'   da_g = dc ⊙ (1 - f) ⊙ tanh'"""
    gates, c = cache.gates, cache.c
    H = c.shape[1]
    f, g = gates[:, :H], gates[:, H : 2 * H]  # (T, H, B)
    k[:, :H] *= c[:-1] - g  # (T, H, B) f moves c toward c_{t-1}, away from g
    k[:, H : 2 * H] *= 1.0 - f  # (T, H, B)


RULE = lstm.Rule(BLOCKS, "sts", FORGET, write, local_derivatives)  # f: σ; g: tanh; o: σ


def forward(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, lstm.Cache]:
    """x (T,B,D), state {"h", "c": (B,H)} -> h (T,B,H), a view of the cache (read-only): the
    LSTM's loop with CIFG's write."""
    return lstm.forward(p, x, state, RULE)


backward = lstm.backward  # dh (T,B,H) -> dx (T,B,D), grads, dstate; the rule travels in the cache
quantities = lstm.quantities  # h, c and the gates, for `lstmtext inspect`
final_state = lstm.final_state
step = window_step(forward, final_state)
