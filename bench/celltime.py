"""One cell layer's forward + backward over a window, median ms: not part of `make bench`.

    python -m bench.celltime CELL H B T D REPS
    PYTHONPATH=OLD_CHECKOUT python -m bench.celltime …   (the same with another commit's lstmtext)

Used to compare the cells before and after a change of their code (docs/speed.md "Speed")."""

import sys
import time

import numpy as np

import lstmtext
from lstmtext.cells import common, get_cell


def main(cell_name: str, H: int, B: int, T: int, D: int, reps: int) -> None:
    cell = get_cell(cell_name)
    rng = np.random.default_rng(0)
    p = common.init_params(cell, rng, D, H, 0.1, np.float32)
    if "W_h" in p:  # the sLSTM starts W_h at zero; time a working recurrence for every cell
        p["W_h"] = rng.uniform(-0.1, 0.1, p["W_h"].shape).astype(np.float32)
    x = rng.standard_normal((T, B, D)).astype(np.float32)  # (T, B, D)
    state = {k: np.zeros((B, H), np.float32) for k in cell.STATE}
    dh = rng.standard_normal((T, B, H)).astype(np.float32)  # (T, B, H)
    times = []
    for _ in range(reps + 2):  # two warm-up windows
        t0 = time.perf_counter()
        _, cache = cell.forward(p, x, state)
        cell.backward(dh, cache)
        times.append(time.perf_counter() - t0)
    where = lstmtext.__file__.split("/")[-3]
    print(f"{where} {cell_name} H{H} B{B} T{T}: {np.median(times[2:]) * 1e3:.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:7]))
