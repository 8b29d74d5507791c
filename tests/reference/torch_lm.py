"""The same language model in PyTorch, built from lstmtext's parameters: the reference that parity
tests and `make parity` compare against. Test/bench only: lstmtext itself never imports torch."""

import numpy as np
import torch
from torch import nn

from lstmtext.config import ModelConfig


def torch_rnn(params: dict, cfg: ModelConfig, dtype=torch.float64) -> nn.Module:
    """A torch nn.LSTM/GRU/RNN holding lstmtext's weights. Our W is torch's weight transposed; our
    single bias goes to bias_ih and bias_hh is zero, except the GRU's b_hn, which has no other place."""
    E, H, L = cfg.embed, cfg.hidden, cfg.layers
    if cfg.cell == "lstm":
        net = nn.LSTM(E, H, L, dtype=dtype)
    elif cfg.cell == "gru":
        net = nn.GRU(E, H, L, dtype=dtype)
    elif cfg.cell == "rnn":
        net = nn.RNN(E, H, L, nonlinearity=cfg.nonlinearity, dtype=dtype)
    else:
        raise ValueError(f"PyTorch has no {cfg.cell} cell")
    with torch.no_grad():
        for layer in range(L):

            def p(k, layer=layer):
                return torch.from_numpy(np.asarray(params[f"layers.{layer}.{k}"]))

            getattr(net, f"weight_ih_l{layer}").copy_(p("W_x").T)
            getattr(net, f"weight_hh_l{layer}").copy_(p("W_h").T)
            getattr(net, f"bias_ih_l{layer}").copy_(p("b"))
            bias_hh = getattr(net, f"bias_hh_l{layer}")
            bias_hh.zero_()
            if cfg.cell == "gru":
                bias_hh[2 * H :] = p("b_hn")
    return net


class TorchLM(nn.Module):
    """embedding -> recurrent layers -> linear head, as lstmtext.model, without dropout."""

    def __init__(self, params: dict, cfg: ModelConfig, dtype=torch.float32):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Parameter(torch.tensor(np.asarray(params["embed.W"]), dtype=dtype))
        self.rnn = torch_rnn(params, cfg, dtype)
        self.head_W = None if cfg.tie else nn.Parameter(torch.tensor(np.asarray(params["head.W"]), dtype=dtype))
        self.head_b = nn.Parameter(torch.tensor(np.asarray(params["head.b"]), dtype=dtype))

    def drop_duplicate_bias_grads(self) -> None:
        """torch keeps two biases (bias_ih + bias_hh) where lstmtext keeps one; call after backward.
        Training both would move the effective bias twice as fast and count its gradient twice in
        the clipping norm. Only the GRU's n-gate part of bias_hh (our b_hn) is a parameter of its own."""
        H = self.cfg.hidden
        for layer in range(self.cfg.layers):
            grad = getattr(self.rnn, f"bias_hh_l{layer}").grad
            if grad is not None:
                grad[: 2 * H if self.cfg.cell == "gru" else grad.shape[0]] = 0.0

    def init_state(self, batch: int):
        z = torch.zeros(self.cfg.layers, batch, self.cfg.hidden, dtype=self.embed.dtype)
        return (z, z.clone()) if self.cfg.cell == "lstm" else z

    def forward(self, ids: torch.Tensor, state):
        out, state = self.rnn(self.embed[ids], state)  # (T, B, H)
        W = self.embed.T if self.head_W is None else self.head_W
        return out @ W + self.head_b, state  # (T, B, V)


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
