"""The recurrent cells, one module each, behind one interface (`Cell`).

The model, trainer, sampler and checkpoint only talk to cells through `get_cell(name)`.
A new cell is one new module that satisfies `Cell` and one line in CELLS.
"""

from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from lstmtext.cells import cifg, gru, lstm, mingru, minlstm, peephole, rnn, slstm
from lstmtext.errors import ConfigError


@runtime_checkable
class Cell(Protocol):
    """What every cell module declares and provides (tests/test_cells.py checks each one)."""

    NAME: str  # its name on the command line (--cell NAME)
    STATE: tuple[str, ...]  # the state carried between windows, e.g. ("h", "c")
    BLOCKS: str  # its fused gate blocks, e.g. "ifgo": common.param_shapes makes W_x, W_h, b from them
    FORGET: int | None  # the block that starts with the forget bias (common.FORGET_BIAS), or None
    EXTRA: dict[str, str]  # per-unit parameters (H,) beyond W_x, W_h, b: name -> "uniform" or "zero"
    GATES: tuple[str, ...]  # its σ gates, whose saturation `lstmtext inspect` measures; () for none
    CHRONO: tuple[int, int | None] | None  # --chrono: the blocks of its keep and write gates; None: not defined
    OPTIONS: tuple[str, ...]  # ModelConfig fields passed to forward and step as keyword options
    RECURRENT: bool  # False for a cell without W_h (minGRU, minLSTM: the gates see x_t only)
    # (p, H, layer, layers, **options) -> p: the cell's own start on top of the scheme's draws (the
    # sLSTM's), or None
    own_init: Callable[..., dict] | None

    def forward(self, p: dict, x: Any, state: dict, **options) -> tuple[Any, Any]:
        """x (T,B,D), state {name: (B,H)} -> h (T,B,H), cache."""

    def backward(self, dh: Any, cache: Any) -> tuple[Any, dict, dict]:
        """dh (T,B,H) -> dx (T,B,D), grads {local name: array}, dstate {name: (B,H)}."""

    def final_state(self, cache: Any) -> dict:
        """The state after the window, values only (TBPTT cuts the gradient)."""

    def step(self, p: dict, x: Any, state: dict, **options) -> tuple[Any, dict]:
        """One step with no cache, for generation: x (B,D) -> h (B,H), next state."""

    def quantities(self, cache: Any) -> dict:
        """{name: (T,B,H)}: states and gates, for `lstmtext inspect`."""


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
    return {name: getattr(cfg, name) for name in cell.OPTIONS}
