"""Peephole LSTM (Gers & Schmidhuber 2000): the gates also look at the cell state.

Row vectors, gates fused along one 4H axis in the order i|f|g|o, peephole weights diagonal (H,):

    i_t = σ(x_t W_xi + h_{t-1} W_hi + p_i ⊙ c_{t-1} + b_i)
    f_t = σ(x_t W_xf + h_{t-1} W_hf + p_f ⊙ c_{t-1} + b_f)
    g_t = tanh(x_t W_xg + h_{t-1} W_hg + b_g)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    o_t = σ(x_t W_xo + h_{t-1} W_ho + p_o ⊙ c_t + b_o)     (o sees the new cell state)
    h_t = o_t ⊙ tanh(c_t)

The peepholes let a gate react to what the cell holds even while the output gate hides it from h,
which helps with precise timing. With p_i = p_f = p_o = 0 this is exactly the LSTM.
"""

import numpy as np

from lstmtext.cells import lstm
from lstmtext.cells.common import (
    CellStateCache,
    cell_state_backward,
    cell_state_final,
    cell_state_forward,
    cell_state_quantities,
    window_step,
)

NAME = "peephole"
STATE = ("h", "c")
BLOCKS = "ifgo"  # the gate blocks along the fused 4H axis (parameters: cells/common.py)
FORGET = 1  # the block whose bias starts at FORGET_BIAS
EXTRA = {"p_i": "uniform", "p_f": "uniform", "p_o": "uniform"}  # the diagonal peephole weights
# --chrono (Tallec & Ollivier 2018): the H-blocks of b holding the keep and write gates
# (the forget and input blocks, as in the LSTM).
CHRONO = (1, 0)
GATES = ("i", "f", "o")  # the σ gates, whose saturation `lstmtext inspect` measures


def forward(p: dict, x: np.ndarray, state: dict) -> tuple[np.ndarray, CellStateCache]:
    """x (T,B,D), state {"h", "c": (B,H)} -> h (T,B,H), a view of the cache (read-only).
    The LSTM's write of c_t and local derivatives; the peepholes go in as columns (H, 1) beside the
    feature-major gates, and their extra paths are in common.cell_state_forward/backward."""
    peep = tuple(p[k][:, None] for k in ("p_i", "p_f", "p_o"))  # (H, 1) each
    return cell_state_forward(p, x, state, lstm.RULE, peep)


backward = cell_state_backward  # dh (T,B,H) -> dx (T,B,D), grads, dstate
quantities = cell_state_quantities  # h, c and the gates, for `lstmtext inspect`
final_state = cell_state_final


step = window_step(forward, final_state)
