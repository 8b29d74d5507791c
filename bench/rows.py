"""The rows of the speed table: one model shape each, its targets, and the token data both
frameworks see."""

from dataclasses import dataclass

import numpy as np

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # G: blocks of H along each recurrent weight's columns


@dataclass(frozen=True)
class Row:
    name: str
    task: str  # "train" (tokens/s = T·B per window) or "sample" (batch 1, sampled tokens/s)
    cell: str  # "lstm", "gru" or "rnn" (tanh)
    V: int  # vocabulary
    E: int  # embedding width
    H: int  # hidden width of every layer
    L: int  # layers
    B: int  # batch (streams)
    T: int  # window (bptt)
    ratio_target: float  # lstmtext tokens/s ÷ PyTorch tokens/s must reach this
    floor_target: float | None = None  # lstmtext tokens/s ÷ feature-major GEMM floor (train rows)

    @property
    def G(self) -> int:
        return GATES[self.cell]

    @property
    def describe(self) -> str:
        v = f"V{self.V // 1000}k" if self.V >= 1000 else f"V{self.V}"
        if self.task == "sample":
            return f"{self.cell} {self.L}×{self.H} {v} B1 sampling"
        return f"{self.cell} {self.L}×{self.H} E{self.E} {v} B{self.B} T{self.T}"


def _small(name: str, cell: str, target: float, floor: float | None) -> Row:
    return Row(name, "train", cell, V=10_000, E=200, H=200, L=2, B=20, T=20, ratio_target=target, floor_target=floor)


ROWS = {
    r.name: r
    for r in [
        _small("small", "lstm", 2.0, 0.65),
        Row("medium", "train", "lstm", V=10_000, E=650, H=650, L=2, B=20, T=35, ratio_target=1.4, floor_target=0.75),
        # The issue leaves E open for the char row; E = H keeps both layers the same shape.
        Row("char", "train", "lstm", V=100, E=512, H=512, L=2, B=50, T=100, ratio_target=1.0, floor_target=0.75),
        _small("gru", "gru", 1.8, None),
        _small("rnn", "rnn", 1.8, None),
        Row("sample-small", "sample", "lstm", V=10_000, E=200, H=200, L=2, B=1, T=1, ratio_target=6.0),
        Row("sample-medium", "sample", "lstm", V=10_000, E=650, H=650, L=2, B=1, T=1, ratio_target=6.0),
    ]
}


def token_windows(row: Row, n: int = 16, seed: int = 0) -> np.ndarray:
    """-> ids (n, T+1, B) int64, random from a fixed seed; window i is x = ids[i, :-1], y = ids[i, 1:].
    Both frameworks cycle through the same n windows with their state carried over."""
    return np.random.default_rng(seed).integers(0, row.V, size=(n, row.T + 1, row.B), dtype=np.int64)
