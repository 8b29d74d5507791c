"""The GEMM floor of a training row: the tokens/s a step would reach if everything but its matrix
multiplications were free, each GEMM shape timed on its own with NumPy (float32).

    python -m bench.gemm_floor ROW [--threads N] [--seconds S]     # prints JSON

Per layer (D = E for the first, H above; G = 4 LSTM, 3 GRU, 1 RNN, 2 minGRU, 3 minLSTM), with (M×K @ K×N)
× calls per step (minGRU and minLSTM have no W_h: no recurrent lines and no dW_h):
  input projection of the window   T·B×D @ D×G·H         × 1
  recurrent forward, one per step  B×H @ H×G·H           × T   (feature-major: G·H×H @ H×B)
  recurrent backward, one per step B×G·H @ G·H×H         × T   (feature-major: H×G·H @ G·H×B)
  weight gradients                 D×T·B @ T·B×G·H and H×T·B @ T·B×G·H   × 1 each
  input gradient                   T·B×G·H @ G·H×D       × 1
and the head: forward T·B×H @ H×V, backward T·B×V @ V×H and H×T·B @ T·B×V.
Floor tokens/s = T·B ÷ (sum of those times). Batch-major times the shapes as written; feature-major
transposes the per-step recurrent GEMMs, which OpenBLAS runs much faster at small batch.
"""

import argparse
import json
import time
from dataclasses import asdict, dataclass

import numpy as np

from bench.rows import NO_W_H, ROWS, Row, zipf_probs
from lstmtext import adaptive

ORIENTATIONS = ("batch_major", "feature_major")


@dataclass(frozen=True)
class Gemm:
    what: str
    M: int
    K: int
    N: int
    calls: int  # per training step (one window)

    @property
    def key(self) -> str:
        return f"{self.M}x{self.K}x{self.N}"


def step_gemms(row: Row, orientation: str) -> list[Gemm]:
    T, B, H, G, V = row.T, row.B, row.H, row.G, row.V
    TB, GH = T * B, G * H
    out = []
    for layer in range(row.L):
        D = row.E if layer == 0 else H
        if orientation == "feature_major":
            fwd = Gemm(f"{layer}: recurrent fwd W_hᵀ·hᵀ", GH, H, B, T)
            bwd = Gemm(f"{layer}: recurrent bwd W_h·dzᵀ", H, GH, B, T)
        else:
            fwd = Gemm(f"{layer}: recurrent fwd h·W_h", B, H, GH, T)
            bwd = Gemm(f"{layer}: recurrent bwd dz·W_hᵀ", B, GH, H, T)
        recurrent = [] if row.cell in NO_W_H else [fwd, bwd, Gemm(f"{layer}: dW_h = Hᵀ·dZ", H, TB, GH, 1)]
        out += [
            Gemm(f"{layer}: input projection X·W_x", TB, D, GH, 1), *recurrent,
            Gemm(f"{layer}: dW_x = Xᵀ·dZ", D, TB, GH, 1),
            Gemm(f"{layer}: dX = dZ·W_xᵀ", TB, GH, D, 1),
        ]
    if row.cutoffs:
        return out + adaptive_head_gemms(row)
    return out + [
        Gemm("head fwd H·W", TB, H, V, 1),
        Gemm("head bwd dlogits·Wᵀ", TB, V, H, 1),
        Gemm("head dW = Hᵀ·dlogits", H, TB, V, 1),
    ]


def adaptive_head_gemms(row: Row) -> list[Gemm]:
    """The adaptive head's GEMMs (lstmtext/adaptive.py): the head over every row, and each cluster's
    two-layer tail over the rows whose target falls in it (the expected count under Zipf ids)."""
    TB, H = row.T * row.B, row.H
    cutoffs = [int(c) for c in row.cutoffs.split(",")]
    shapes = adaptive.param_shapes(H, cutoffs, row.V)  # the widths lstmtext's head has
    edges = [*cutoffs, row.V]
    K = len(edges) - 1
    p = zipf_probs(row.V)
    out = [
        Gemm("adaptive head fwd", TB, H, edges[0] + K, 1),
        Gemm("adaptive head bwd", TB, edges[0] + K, H, 1),
        Gemm("adaptive head dW", H, TB, edges[0] + K, 1),
    ]
    for k in range(1, K + 1):
        n = max(1, round(TB * p[edges[k - 1] : edges[k]].sum()))  # rows in cluster k
        inner, m = shapes[f"head.tail.{k}.O"]
        out += [
            Gemm(f"tail {k} fwd z·P", n, H, inner, 1), Gemm(f"tail {k} fwd ·O", n, inner, m, 1),
            Gemm(f"tail {k} bwd dl·Oᵀ", n, m, inner, 1), Gemm(f"tail {k} dO", inner, n, m, 1),
            Gemm(f"tail {k} dP", H, n, inner, 1), Gemm(f"tail {k} dz", n, inner, H, 1),
        ]
    return out


def time_gemm(M: int, K: int, N: int, seconds: float, repeats: int = 5) -> float:
    """-> seconds of one (M,K) @ (K,N) float32 matmul into a preallocated output, the fastest of
    `repeats` batches: a floor is a best case, and on a shared machine others only ever add time."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    c = np.empty((M, N), dtype=np.float32)
    n = 1
    while True:  # the first pass warms caches and BLAS threads; grow n until a batch takes `seconds`
        t0 = time.perf_counter()
        for _ in range(n):
            np.matmul(a, b, out=c)
        if time.perf_counter() - t0 >= seconds:
            break
        n *= 2
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            np.matmul(a, b, out=c)
        per_call.append((time.perf_counter() - t0) / n)
    return min(per_call)


def measure(row: Row, seconds: float) -> dict:
    """-> {"gemms": {orientation: [...]}, "<orientation>": {"seconds_per_step", "tokens_per_s"}}."""
    times: dict[str, float] = {}  # one timing per distinct shape; layers above the first repeat them
    result: dict = {"gemms": {}}
    for orientation in ORIENTATIONS:
        rows = []
        for g in step_gemms(row, orientation):
            if g.key not in times:
                times[g.key] = time_gemm(g.M, g.K, g.N, seconds)
            rows.append({**asdict(g), "seconds": times[g.key], "gflops": 2e-9 * g.M * g.K * g.N / times[g.key]})
        step = sum(r["seconds"] * r["calls"] for r in rows)
        result["gemms"][orientation] = rows
        result[orientation] = {"seconds_per_step": step, "tokens_per_s": row.T * row.B / step}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("row", choices=[n for n, r in ROWS.items() if r.task == "train"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=0.05, help="minimum time of one timed batch of calls")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads, user_api="blas"):
        print(json.dumps(measure(ROWS[args.row], args.seconds)))


if __name__ == "__main__":
    main()
