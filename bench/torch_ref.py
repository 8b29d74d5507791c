"""The PyTorch reference of a row: nn.Embedding → nn.LSTM / nn.GRU / nn.RNN(tanh) → nn.Linear, mean
cross-entropy, clip_grad_norm_(0.25), plain SGD, the state carried and detached between windows —
the same shapes, data and thread count as lstmtext. Sampling: batch 1, one step at a time under
no_grad, softmax + torch.multinomial, the sampled id fed back."""

import re
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.rows import Row, token_windows

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class RefLM(nn.Module):
    def __init__(self, row: Row):
        super().__init__()
        self.embed = nn.Embedding(row.V, row.E)
        self.rnn = CELLS[row.torch_cell](row.E, row.H, row.L, dropout=0.0)  # nn.RNN's default is tanh
        self.head = nn.Linear(row.H, row.V)

    def forward(self, x, state):
        out, state = self.rnn(self.embed(x), state)  # x (T,B) -> out (T,B,H)
        return self.head(out), state  # (T,B,V)


def _detach(state):
    """Cut the graph at the window edge (TBPTT); nn.LSTM's state is a pair (h, c), the others' one tensor."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.detach()
    return tuple(s.detach() for s in state)


def info() -> dict:
    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return {"version": torch.__version__, "num_threads": torch.get_num_threads(), "blas": blas and blas[1]}


def make_runner(row: Row, threads: str) -> Callable[[int], float | None]:
    """threads: a count, or "default" for PyTorch's own choice. The callable has .stats() (empty)."""
    if threads != "default":
        torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    net = RefLM(row)  # float32

    if row.task == "sample":
        @torch.no_grad()
        def run_sample(k: int) -> None:
            tok, state = torch.zeros((1, 1), dtype=torch.long), None  # (T=1, B=1)
            for _ in range(k):
                logits, state = net(tok, state)  # (1,1,V)
                tok = torch.multinomial(F.softmax(logits[0], dim=-1), 1)  # (1,1)

        run_sample.stats = dict
        return run_sample

    ids = torch.from_numpy(token_windows(row))  # (n, T+1, B) — the same ids lstmtext sees
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    carry = {"state": None, "i": 0}

    def run_train(k: int) -> float:
        last = float("nan")
        for _ in range(k):
            w = ids[carry["i"] % len(ids)]  # (T+1, B)
            carry["i"] += 1
            logits, state = net(w[:-1], _detach(carry["state"]))
            carry["state"] = state
            loss = F.cross_entropy(logits.reshape(-1, row.V), w[1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 0.25)
            opt.step()
            last = loss.item()  # a training loop reads its loss every step, as train_step returns it
        return last

    run_train.stats = dict
    return run_train
