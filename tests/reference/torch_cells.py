"""The newer cells' equations in PyTorch autograd, one step at a time: a reference for parity tests.

Nothing here is shared with lstmtext's code: the equations are written again from the papers, and
torch's own backward gives the gradients.
"""

import torch


def mingru(W_x: torch.Tensor, b: torch.Tensor, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """minGRU (Feng et al. 2024): x (T,B,D), h0 (B,H) -> h (T,B,H), h_T. W_x (D,2H) holds z|n."""
    H = h0.shape[1]
    h, out = h0, []
    for x_t in x:
        a = x_t @ W_x + b  # (B, 2H)
        z = torch.sigmoid(a[:, :H])
        v = a[:, H:]
        n = torch.where(v >= 0, v + 0.5, torch.sigmoid(v))  # g: positive, for the log-space scan
        h = (1 - z) * h + z * n
        out.append(h)
    return torch.stack(out), h


def minlstm(W_x: torch.Tensor, b: torch.Tensor, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """minLSTM (Feng et al. 2024): x (T,B,D), h0 (B,H) -> h (T,B,H), h_T. W_x (D,3H) holds f|i|n."""
    H = h0.shape[1]
    h, out = h0, []
    for x_t in x:
        a = x_t @ W_x + b  # (B, 3H)
        f, i = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H : 2 * H])
        v = a[:, 2 * H :]
        n = torch.where(v >= 0, v + 0.5, torch.sigmoid(v))
        h = f / (f + i) * h + i / (f + i) * n
        out.append(h)
    return torch.stack(out), h
