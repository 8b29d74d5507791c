"""The two ways to run minGRU/minLSTM's scan h_t = a_t ⊙ h_{t-1} + b_t in NumPy, timed side by side:
lstmtext's step-by-step loop (cells/linear_scan.py) and the log-space parallel form of Heinsen
(2023), log h = a* + logcumsumexp(log b − a*) with a* = cumsum(log a), which the minGRU paper uses on
GPUs. Both give the same h; the loop is kept because it is faster here.

    python -m bench.scan
"""

import time

import numpy as np

from lstmtext.cells.linear_scan import linear_scan


def log_space_scan(a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """a, b (T,B,H) positive, h0 (B,H) ≥ 0 -> h (T+1,B,H), whole-window passes only."""
    with np.errstate(divide="ignore"):  # log 0 = -inf is right for a zero start
        log_a = np.log(a)  # (T, B, H)
        log_b = np.log(np.concatenate([h0[None], b]))  # (T+1, B, H), h0 as the first term
    a_star = np.concatenate([np.zeros_like(h0)[None], np.cumsum(log_a, axis=0)])  # (T+1, B, H)
    return np.exp(a_star + np.logaddexp.accumulate(log_b - a_star, axis=0))  # (T+1, B, H)


def main() -> None:
    rng = np.random.default_rng(0)
    for T, B, H in [(20, 20, 200), (35, 20, 200), (100, 50, 512)]:
        for dtype in (np.float32, np.float64):
            a = rng.uniform(0.05, 0.95, (T, B, H)).astype(dtype)
            b = rng.uniform(0.01, 1.0, (T, B, H)).astype(dtype)
            h0 = rng.uniform(0.0, 1.0, (B, H)).astype(dtype)
            loop, logs = linear_scan(a, b, h0), log_space_scan(a, b, h0)
            diff = float(np.abs(loop - logs).max() / np.abs(loop).max())
            times: dict[str, list[float]] = {"loop": [], "log": []}
            for _ in range(9):  # alternate, medians
                for name, fn in (("loop", linear_scan), ("log", log_space_scan)):
                    t0 = time.perf_counter()
                    fn(a, b, h0)
                    times[name].append(time.perf_counter() - t0)
            loop_ms, log_ms = (1e3 * float(np.median(times[k])) for k in ("loop", "log"))
            print(f"T {T:3d} B {B:2d} H {H:3d} {np.dtype(dtype).name}: loop {loop_ms:7.2f} ms, "
                  f"log-space {log_ms:7.2f} ms ({log_ms / loop_ms:4.1f}x), largest relative difference {diff:.1e}")


if __name__ == "__main__":
    main()
