"""Make the notebook from its source and run it: `python notebooks/run.py [--quick] [--out PATH]`.

The source is notebooks/lstm_lecture.py in jupytext's percent format (reviewable, no outputs); this
writes notebooks/lstm_lecture.ipynb with every cell's output, as `make notebook` does, and fails on
the first cell that raises (every worked number is an assert). --quick sets LSTMTEXT_NOTEBOOK_QUICK=1,
the small budgets CI runs it with."""

import argparse
import os
import sys
import time
from pathlib import Path

import jupytext
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "lstm_lecture.py"


def run(out: Path, quick: bool, timeout: int = 600) -> float:
    """-> seconds the notebook took; raises nbclient's CellExecutionError on a failing cell."""
    nb = jupytext.read(SOURCE)
    if quick:
        os.environ["LSTMTEXT_NOTEBOOK_QUICK"] = "1"  # the kernel inherits this process's environment
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    seconds = time.perf_counter() - t0
    jupytext.write(nb, out)
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI's small budgets")
    ap.add_argument("--out", type=Path, default=HERE / "lstm_lecture.ipynb")
    a = ap.parse_args()
    seconds = run(a.out, a.quick)
    print(f"ran {SOURCE.name} in {seconds:.0f} s; wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
