"""The rows of the speed table: one model shape each, its targets, and the token data both
frameworks see.

Three kinds besides training and sampling against PyTorch: "threads" rows time lstmtext's own
thread choice (the tuner, as the trainer runs it) against fixed counts and PyTorch, on a quiet
machine or with cores kept busy by a process the harness starts; the "eval" row times
`evaluate.score` against the training step of the same model."""

from dataclasses import dataclass, replace

import numpy as np

# G: blocks of H along W_x's columns
GATES = {"lstm": 4, "gru": 3, "rnn": 1, "peephole": 4, "cifg": 3, "mingru": 2, "minlstm": 3, "slstm": 4}
NO_W_H = {"mingru", "minlstm"}  # gates from x_t only: no recurrent GEMM at all
TORCH_CELL = {"lstm": "lstm", "gru": "gru", "rnn": "rnn"}  # for the cells PyTorch lacks, its LSTM runs beside them


@dataclass(frozen=True)
class Row:
    name: str
    # "train" (tokens/s = T·B per window), "sample" (batch 1, sampled tokens/s), "threads" (train,
    # several thread choices under the same load), "eval" (evaluate.score against train) or
    # "eval-threads" (one `lstmtext eval` per unit, its own thread choice against fixed counts)
    task: str
    cell: str  # one of GATES ("rnn" is tanh)
    V: int  # vocabulary
    E: int  # embedding width
    H: int  # hidden width of every layer
    L: int  # layers
    B: int  # batch (streams)
    T: int  # window (bptt)
    # lstmtext tokens/s ÷ PyTorch tokens/s must reach this (threads rows: lstmtext's own choice
    # ÷ PyTorch at its default threads; eval: evaluate.score tokens/s ÷ training tokens/s); None: shown only
    ratio_target: float | None
    floor_target: float | None = None  # lstmtext tokens/s ÷ feature-major GEMM floor (train rows)
    busy: int = 0  # threads rows: cores kept busy by a busy-loop process while the row runs
    # threads rows: lstmtext's own choice ÷ the better fixed count (busy) or ÷ all cores (quiet)
    share_target: float | None = None
    cutoffs: str = ""  # lstmtext's --softmax adaptive --cutoffs (empty: the full softmax)

    @property
    def G(self) -> int:
        return GATES[self.cell]

    @property
    def torch_cell(self) -> str:
        return TORCH_CELL.get(self.cell, "lstm")

    @property
    def describe(self) -> str:
        v = f"V{self.V // 1000}k" if self.V >= 1000 else f"V{self.V}"
        if self.task == "sample":
            return f"{self.cell} {self.L}×{self.H} {v} B1 sampling"
        shape = f"{self.cell} {self.L}×{self.H} E{self.E} {v} B{self.B} T{self.T}"
        if self.torch_cell != self.cell:
            shape += f" (PyTorch: {self.torch_cell})"
        if self.cutoffs:
            shape += f", adaptive softmax {self.cutoffs}, Zipf ids (PyTorch: full softmax)"
        if self.task in ("threads", "eval-threads"):
            what = f", one eval of {EVAL_THREADS_TOKENS:,} tokens" if self.task == "eval-threads" else ""
            return shape + what + (f", {self.busy} core{'s' * (self.busy > 1)} busy" if self.busy else ", quiet")
        if self.task == "eval":
            return shape + ", evaluate.score at its defaults"
        return shape


def _small(name: str, cell: str, target: float | None, floor: float | None) -> Row:
    return Row(name, "train", cell, V=10_000, E=200, H=200, L=2, B=20, T=20, ratio_target=target, floor_target=floor)


ROWS = {
    r.name: r
    for r in [
        # Issue #32: these four LSTM rows at 90% of their GEMM floor and at least PyTorch's speed, except
        # tiny at ≥ 0.95×, which the issue set taking tiny's floor for about PyTorch's speed (in the two
        # full runs of 2026-12-07 the floor was 1.45× and 1.74× PyTorch's).
        _small("small", "lstm", 1.0, 0.90),
        Row("medium", "train", "lstm", V=10_000, E=650, H=650, L=2, B=20, T=35, ratio_target=1.0, floor_target=0.90),
        # The issue leaves E open for the char row; E = H keeps both layers the same shape.
        Row("char", "train", "lstm", V=100, E=512, H=512, L=2, B=50, T=100, ratio_target=1.0, floor_target=0.90),
        # The issue "Remembers across the gap": the memory task's model, the size learners start with.
        Row("tiny", "train", "lstm", V=50, E=64, H=128, L=1, B=20, T=100, ratio_target=0.95, floor_target=0.90),
        # What `lstmtext train TEXT` picks with no flags for a character text and a budget of an hour or
        # more (sizing.LADDER's 2 × 768, embedding 64, batch 32 × 64): the row most users train.
        Row("defaults", "train", "lstm", V=100, E=64, H=768, L=2, B=32, T=64, ratio_target=1.0, floor_target=0.90),
        _small("gru", "gru", 1.0, None),
        _small("rnn", "rnn", 1.0, None),
        # Issue #16: the cells whose gates see x_t only, beside PyTorch's LSTM of the same shape.
        _small("mingru", "mingru", None, None),
        _small("minlstm", "minlstm", None, None),
        Row("char-mingru", "train", "mingru", V=100, E=512, H=512, L=2, B=50, T=100, ratio_target=None),
        Row("char-minlstm", "train", "minlstm", V=100, E=512, H=512, L=2, B=50, T=100, ratio_target=None),
        _small("slstm", "slstm", None, None),
        Row("char-slstm", "train", "slstm", V=100, E=512, H=512, L=2, B=50, T=100, ratio_target=None),
        # Issue #16's shared cell-state loops: the peephole and CIFG LSTMs on the LSTM's fast path.
        _small("peephole", "peephole", None, None),
        _small("cifg", "cifg", None, None),
        Row("char-peephole", "train", "peephole", V=100, E=512, H=512, L=2, B=50, T=100, ratio_target=None),
        Row("char-cifg", "train", "cifg", V=100, E=512, H=512, L=2, B=50, T=100, ratio_target=None),
        # Issue #16: the small LSTM with the adaptive softmax head, on word-like (Zipf) token ids.
        replace(_small("small-adaptive", "lstm", None, None), cutoffs="2000,6000"),
        Row("sample-small", "sample", "lstm", V=10_000, E=200, H=200, L=2, B=1, T=1, ratio_target=6.0),
        Row("sample-medium", "sample", "lstm", V=10_000, E=650, H=650, L=2, B=1, T=1, ratio_target=6.0),
        # The issue "Your own text, on your own laptop": a fair share of a shared machine.
        replace(_small("small-quiet", "lstm", None, None), task="threads", share_target=0.97),
        replace(_small("small-busy", "lstm", 2.5, None), task="threads", busy=1, share_target=0.90),
        # Scoring has no backward: it must be at least twice as fast per token as training.
        replace(_small("eval-small", "lstm", 2.0, None), task="eval"),
        # `lstmtext eval` fair to a busy laptop (#29): its own thread choice within 15% of the better
        # fixed count with a core busy, and no slower than every core when quiet.
        replace(_small("eval-quiet", "lstm", None, None), task="eval-threads", share_target=0.95),
        replace(_small("eval-busy", "lstm", None, None), task="eval-threads", busy=1, share_target=1 / 1.15),
    ]
}


def zipf_probs(V: int) -> np.ndarray:
    """p(rank r) ∝ 1/r: how often words of a frequency-sorted vocabulary occur in text (the top
    2,000 of 10,000 words cover 83%, about as in Penn Treebank)."""
    p = 1.0 / np.arange(1, V + 1)
    return p / p.sum()


def token_windows(row: Row, n: int = 16, seed: int = 0) -> np.ndarray:
    """-> ids (n, T+1, B) int64, random from a fixed seed; window i is x = ids[i, :-1], y = ids[i, 1:].
    Both frameworks cycle through the same n windows with their state carried over. Uniform ids,
    but Zipf-distributed for an adaptive-softmax row, whose cost depends on which cluster each
    target falls in."""
    rng = np.random.default_rng(seed)
    if row.cutoffs:
        return rng.choice(row.V, size=(n, row.T + 1, row.B), p=zipf_probs(row.V)).astype(np.int64)
    return rng.integers(0, row.V, size=(n, row.T + 1, row.B), dtype=np.int64)


EVAL_TOKENS = 4000  # the text one evaluate.score call of the eval row scores (a unit of that row)
# An eval-threads row's unit: one `lstmtext eval` of a held-out text this long (issue #29 timed 28k
# tokens), with a tuner of its own, as the command and Model.score make.
EVAL_THREADS_TOKENS = 28_000


def eval_ids(row: Row, seed: int = 2, n: int = EVAL_TOKENS) -> np.ndarray:
    """-> ids (n,) int64, random from a fixed seed: the eval row's held-out text."""
    return np.random.default_rng(seed).integers(0, row.V, size=n, dtype=np.int64)
