"""Where a training step's time goes: each phase of lstmtext's step beside the GEMM floor of that phase.

    python -m bench.profile ROW [--windows N] [--threads N]      # or: make profile ROW=char

A phase is one function of the step (the cells' forward and backward over all layers, the head's
forward and backward, the embedding, clipping and the update), timed with cProfile (inclusive time)
over N windows after a warm-up. Its floor is the sum of the GEMMs it must do, each shape timed alone
(bench.gemm_floor, feature-major). "outside GEMMs" = phase time - floor: the elementwise work, the
Python loop and whatever makes a product slower inside the step than alone. Run it on a quiet
machine: another process on the second core slows OpenBLAS's two-thread products tenfold.

Then the calls: how many lines of Python the cells run per time step and layer, forward and
backward (one window, traced). In the step loops each line is one NumPy call (or one compiled
kernel, cells/compiled.py), and at small sizes each call costs 1-5 us to start whatever it does.
Whether the compiled path ran is said on the first line: LSTMTEXT_COMPILED=0 profiles NumPy alone.
"""

import argparse
import cProfile
import pstats
import sys
import time

from bench.gemm_floor import measure
from bench.lstmtext_runner import make_runner
from bench.rows import ROWS, Row

# (phase, the profiled functions as (file suffix, name), the gemm_floor descriptions it owns)
PHASES = [
    ("cells forward", [("cells/{cell}.py", "forward")], ("input projection", "recurrent fwd")),
    ("cells backward", [("cells/{cell}.py", "backward")], ("recurrent bwd", "dW_x", "dW_h", "dX")),
    ("head forward", [("layers.py", "head_forward")], ("head fwd",)),
    ("head backward", [("layers.py", "head_backward")], ("head bwd", "head dW")),
    ("embedding", [("layers.py", "embedding_forward"), ("layers.py", "embedding_backward")], ()),
    ("clip + update", [("optim.py", "global_norm"), ("optim.py", "step")], ()),
]


def floors(row: Row, seconds: float) -> dict[str, float]:
    """-> seconds of GEMM floor per phase for one window."""
    out = {name: 0.0 for name, _, _ in PHASES}
    for g in measure(row, seconds)["gemms"]["feature_major"]:
        phase = next(name for name, _, owns in PHASES if any(o in g["what"] for o in owns))
        out[phase] += g["seconds"] * g["calls"]
    return out


def profile(row: Row, windows: int, threads: int) -> tuple[float, dict[str, float]]:
    """-> (seconds per window, inclusive seconds per window of each phase)."""
    run = make_runner(row, threads)
    run(3)  # warm-up: buffers, BLAS threads, caches
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    run(windows)
    prof.disable()
    wall = (time.perf_counter() - t0) / windows
    stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
    phase_time = {}
    for name, funcs, _ in PHASES:
        wanted = [(suffix.format(cell=row.cell), fn) for suffix, fn in funcs]
        phase_time[name] = sum(
            v[3] for (file, _, fn), v in stats.items() if any(file.endswith(s) and fn == f for s, f in wanted)
        ) / windows
    return wall, phase_time


def lines_per_step(row: Row, threads: int) -> dict[str, float]:
    """-> {"forward": lines, "backward": lines} of cells/ code run per time step and layer, over one window."""
    run = make_runner(row, threads)
    run(1)  # warm-up: compiled kernels loaded
    counts = {"forward": 0, "backward": 0}
    inside: list[str] = []  # the cell's forward/backward calls open right now

    def trace(frame, event, arg):
        code = frame.f_code
        if "/lstmtext/cells/" not in code.co_filename:
            return None  # not traced inside: NumPy's own Python, the head, the optimizer
        if event == "call" and code.co_name in counts and not inside:
            inside.append(code.co_name)
        if event == "return" and inside and code.co_name == inside[0] and frame.f_back is not None \
                and "/lstmtext/cells/" not in frame.f_back.f_code.co_filename:
            inside.pop()
        if event == "line" and inside:
            counts[inside[0]] += 1
        return trace

    sys.settrace(trace)
    try:
        run(1)
    finally:
        sys.settrace(None)
    return {k: v / (row.T * row.L) for k, v in counts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("row", choices=[n for n, r in ROWS.items() if r.task == "train"])
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=0.05, help="minimum time of one timed batch of GEMM calls")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    row = ROWS[args.row]
    with threadpool_limits(limits=args.threads, user_api="blas"):
        floor = floors(row, args.seconds)
        wall, phases = profile(row, args.windows, args.threads)
        lines = lines_per_step(row, args.threads)
    from lstmtext.cells import compiled

    path = "compiled steps (numba)" if row.cell == "lstm" and compiled.kernels() else "NumPy steps"
    ms = 1e3
    speed = f"{row.T * row.B / wall:,.0f} tok/s under cProfile"
    print(f"{row.name}: {row.describe}, {path}, {args.windows} windows, {speed}")
    print(f"{'phase':<16} {'ms/window':>10} {'GEMM floor':>11} {'outside GEMMs':>14} {'share of step':>14}")
    for name, _, _ in PHASES:
        t, f = phases[name], floor[name]
        print(f"{name:<16} {t * ms:>10.1f} {f * ms:>11.1f} {(t - f) * ms:>14.1f} {100 * t / wall:>13.0f}%")
    rest = wall - sum(phases.values())
    print(f"{'the rest':<16} {rest * ms:>10.1f} {0:>11.1f} {rest * ms:>14.1f} {100 * rest / wall:>13.0f}%")
    total_floor = sum(floor.values())
    print(f"{'step':<16} {wall * ms:>10.1f} {total_floor * ms:>11.1f} {(wall - total_floor) * ms:>14.1f} {100:>13}%")
    print(f"lines of the cell's Python per time step and layer: forward {lines['forward']:.1f}, "
          f"backward {lines['backward']:.1f}")


if __name__ == "__main__":
    main()
