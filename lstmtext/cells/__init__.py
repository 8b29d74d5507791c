"""The recurrent cells, one module each, behind one interface.

Every cell module provides:
    NAME                           its name on the command line (--cell NAME)
    STATE                          names of the state carried between windows, e.g. ("h", "c")
    BLOCKS                         its fused gate blocks, e.g. "ifgo"; FORGET the one with the forget
                                   bias (or None); EXTRA its per-unit parameters: common.param_shapes
                                   and common.init_params make W_x, W_h, b and these from them
    forward(p, x (T,B,D), state, **options) -> h (T,B,H), cache
    OPTIONS (optional)             ModelConfig fields passed to forward as keyword options
    RECURRENT (optional)           False for a cell without W_h (minGRU, minLSTM: gates see x_t only)
    init_params (optional)         (p, H, layer, layers, **options) -> p: the cell's own start (sLSTM)
    final_state(cache)             -> state after the window (values only: TBPTT cuts the gradient)
    backward(dh (T,B,H), cache)    -> dx (T,B,D), grads {local name: array}, dstate {name: (B,H)}
    step(p, x (B,D), state, **options) -> h (B,H), next state: one step with no cache, for generation
    GATES                          names of its σ gates, e.g. ("i", "f", "o"); () for none
    quantities(cache)              -> {name: (T,B,H)}: states and gates, for `lstmtext inspect`
The model, trainer, sampler and checkpoint only talk to cells through `get_cell(name)`.
A new cell is one new module and one line in CELLS.
"""

from types import ModuleType

from lstmtext.cells import cifg, gru, lstm, mingru, minlstm, peephole, rnn, slstm
from lstmtext.errors import ConfigError

CELLS: dict[str, ModuleType] = {
    lstm.NAME: lstm,
    gru.NAME: gru,
    rnn.NAME: rnn,
    peephole.NAME: peephole,
    cifg.NAME: cifg,
    mingru.NAME: mingru,
    minlstm.NAME: minlstm,
    slstm.NAME: slstm,
}


def get_cell(name: str) -> ModuleType:
    try:
        return CELLS[name]
    except KeyError:
        raise ConfigError(f"unknown cell {name!r}; choose one of: {', '.join(sorted(CELLS))}") from None


def cell_options(cell: ModuleType, cfg) -> dict:
    """The ModelConfig fields a cell asks for (e.g. the RNN's nonlinearity), as keyword options."""
    return {name: getattr(cfg, name) for name in getattr(cell, "OPTIONS", ())}
