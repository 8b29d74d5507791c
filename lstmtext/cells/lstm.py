"""LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

Row vectors, gates fused along one 4H axis in PyTorch's order i|f|g|o:

    a_t = x_t W_x + h_{t-1} W_h + b                      (B, 4H)
    i_t = σ(a_i)   f_t = σ(a_f)   g_t = tanh(a_g)   o_t = σ(a_o)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

The forget gate decides how much of the old cell state to keep, the input gate how much of the
candidate g_t to write, and the output gate how much of the squashed cell to show as h_t.

The window's loops are shared with CIFG and the peephole LSTM (common.cell_state_forward and
cell_state_backward, in the state layout of every cell with a per-step product); this module holds
what is the LSTM's own: its write of c_t and its local derivatives.
"""

import numpy as np

from lstmtext.cells.common import (
    CellStateCache,
    CellStateRule,
    GateActivation,
    cell_state_backward,
    cell_state_final,
    cell_state_forward,
    cell_state_quantities,
)

NAME = "lstm"
STATE = ("h", "c")  # what is carried from window to window
BLOCKS = "ifgo"  # the gate blocks along the fused 4H axis (parameters: cells/common.py)
FORGET = 1  # the block whose bias starts at FORGET_BIAS
EXTRA: dict[str, str] = {}  # no per-unit parameters beyond W_x, W_h, b
# --chrono (Tallec & Ollivier 2018): the H-blocks of b holding the keep (forget) and write (input) gates.
CHRONO = (1, 0)
GATES = ("i", "f", "o")  # the σ gates, whose saturation `lstmtext inspect` measures


def write(a: np.ndarray, c_prev: np.ndarray, c_next: np.ndarray, tmp: np.ndarray) -> None:
    """c_t = f ⊙ c_{t-1} + i ⊙ g, from the step's activated gates a (4H, B); all (H, B)."""
    H = c_prev.shape[0]
    i, f, g = a[:H], a[H : 2 * H], a[2 * H : 3 * H]
    np.multiply(f, c_prev, out=c_next)
    np.multiply(i, g, out=tmp)
    c_next += tmp


def forward(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, CellStateCache]:
    """Run the cell over a window. x (T,B,D), state {"h": (B,H), "c": (B,H)} -> h (T,B,H).

    The returned h is a view of the cache (no copy); treat it as read-only."""
    return cell_state_forward(p, x, state, RULE)


def local_derivatives(k: np.ndarray, cache: CellStateCache) -> None:
    """k (T, 4H, B) of σ'/tanh' -> ∂c_t/∂a for i, f, g, in place (o: common.cell_state_backward):
    da_i = dc ⊙ g ⊙ σ'   da_f = dc ⊙ c_{t-1} ⊙ σ'   da_g = dc ⊙ i ⊙ tanh'"""
    gates, c = cache.gates, cache.c
    H = c.shape[1]
    k[:, :H] *= gates[:, 2 * H : 3 * H]  # g
    k[:, H : 2 * H] *= c[:-1]
    k[:, 2 * H : 3 * H] *= gates[:, :H]  # i


RULE = CellStateRule(BLOCKS, "ssts", FORGET, write, local_derivatives)  # i, f: σ; g: tanh; o: σ
backward = cell_state_backward  # dh (T,B,H) -> dx (T,B,D), grads, dstate
quantities = cell_state_quantities  # h, c and the gates, for `lstmtext inspect`
final_state = cell_state_final


def step(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    """One step without a cache, for generation: x (B,D) -> h (B,H), next state."""
    H = p["W_h"].shape[0]
    a = x @ p["W_x"] + state["h"] @ p["W_h"] + p["b"]  # (B, 4H)
    GateActivation.of(RULE.kinds, H, a.dtype).apply(a.T)
    i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    c = f * state["c"] + i * g  # (B, H)
    h = o * np.tanh(c)  # (B, H)
    return h, {"h": h, "c": c}
