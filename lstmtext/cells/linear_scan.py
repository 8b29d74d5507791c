"""The recurrence of the cells whose gates see x_t only (minGRU, minLSTM; Feng et al. 2024):
h_t = a_t ⊙ h_{t-1} + b_t, with a and b computed for the whole window before the scan."""

import numpy as np

from lstmtext.cells.common import sigmoid


def positive(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """g(v) = v + 1/2 (v ≥ 0), σ(v) (v < 0): continuous at 0, positive (which the log-space scan of
    Feng et al. 2024, appendix B.3, needs; σ rounds to 0 only below v ≈ −20 in float32), linear for
    large v. -> g(v), g'(v)."""
    s = sigmoid(v)
    pos = v >= 0
    return np.where(pos, v + 0.5, s), np.where(pos, v.dtype.type(1), s * (1.0 - s))


def linear_scan(a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """a, b (T,B,H), h0 (B,H) -> h (T+1,B,H) with h[0] = h0 and h_t = a_t ⊙ h_{t-1} + b_t.

    Step by step: two elementwise passes a step. The log-space parallel form (Heinsen 2023) computes
    the same with whole-window passes of log, cumsum, logaddexp.accumulate and exp, but measured
    27 to 53 times slower in NumPy (`python -m bench.scan`), so the loop stays."""
    T = a.shape[0]
    h = np.empty((T + 1, *h0.shape), dtype=a.dtype)
    h[0] = h0
    for t in range(T):
        np.multiply(a[t], h[t], out=h[t + 1])  # (B, H)
        h[t + 1] += b[t]
    return h


def linear_scan_backward(dh: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dh (T,B,H) = dLoss/dh_t from above, a (T,B,H) -> the whole dLoss/dh_t (T,B,H) (from above and
    through h_{t+1}), and dLoss/dh_0 (B,H). Then db_t is that dh_t and da_t = dh_t ⊙ h_{t-1}."""
    T = a.shape[0]
    total = np.empty_like(dh)  # (T, B, H)
    carry = np.zeros_like(dh[0])  # (B, H)
    for t in reversed(range(T)):
        np.add(dh[t], carry, out=total[t])
        np.multiply(a[t], total[t], out=carry)
    return total, carry
