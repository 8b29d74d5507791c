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


def slstm(W_x, W_h, b, x, h0, c0, n0, m0):
    """sLSTM (Beck et al. 2024) as the official vanilla step (gate order i|f|z|o, stabiliser m),
    autograd through everything, m included: x (T,B,D), states (B,H) -> h (T,B,H), (h, c, n, m)."""
    H = h0.shape[1]
    h, c, n, m = h0, c0, n0, m0
    out = []
    for x_t in x:
        ai, af, az, ao = torch.split(x_t @ W_x + h @ W_h + b, H, dim=1)
        log_f_plus_m = m + torch.nn.functional.logsigmoid(af)
        m = torch.where(n == 0, ai, torch.maximum(ai, log_f_plus_m))  # an empty cell: m from the input
        i, f = torch.exp(ai - m), torch.clamp(torch.exp(log_f_plus_m - m), max=1.0)
        c = f * c + i * torch.tanh(az)
        n = f * n + i
        h = torch.sigmoid(ao) * c / n
        out.append(h)
    return torch.stack(out), (h, c, n, m)
