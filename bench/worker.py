"""One framework on one row, in its own process, driven by bench/run.py over stdin/stdout.

    python -m bench.worker {lstmtext|torch} ROW THREADS

Speaks one JSON object per line. On start it says hello (versions, BLAS); then it answers
  {"cmd": "calibrate", "seconds": s}  -> {"per_unit": seconds}  (warm-up, then doubles k until a
                                         run of k units takes >= s)
  {"cmd": "run", "k": k}              -> {"seconds": ..., "loss": last loss or null, "finite": ...}
  {"cmd": "quit"}                     -> {"maxrss_kb": ...} and exits.
A unit is a training window (T·B tokens) or one sampled token. Being a process of its own, its peak
RSS (ru_maxrss, read after its last step) is that framework's on that row alone."""

import json
import math
import resource
import sys
import time


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def main(framework: str, row_name: str, threads: int) -> None:
    proto, sys.stdout = sys.stdout, sys.stderr  # keep stray prints off the protocol channel

    def say(**msg) -> None:
        proto.write(json.dumps(msg) + "\n")
        proto.flush()

    from bench.rows import ROWS

    row = ROWS[row_name]
    if framework == "torch":
        from bench import torch_ref as side

        hello = side.info()
    else:  # lstmtext's process never imports torch
        from bench import lstmtext_runner as side

        hello = {"blas": side.blas_info()}
    rss_import = _maxrss_kb()
    run = side.make_runner(row, threads)
    if framework == "lstmtext":
        hello["blas"] = side.blas_info()  # after threadpool_limits
    say(framework=framework, row=row_name, rss_import_kb=rss_import, **hello)

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "calibrate":
            run(1)  # warm-up: first-call allocations and BLAS thread start-up are not the speed
            k = 1
            while True:
                t0 = time.perf_counter()
                run(k)
                dt = time.perf_counter() - t0
                if dt >= cmd["seconds"]:
                    break
                k *= 2
            say(per_unit=dt / k)
        elif cmd["cmd"] == "run":
            t0 = time.perf_counter()
            loss = run(cmd["k"])
            finite = loss is None or math.isfinite(loss)
            say(seconds=time.perf_counter() - t0, loss=loss if finite else None, finite=finite)
        elif cmd["cmd"] == "quit":
            say(maxrss_kb=_maxrss_kb())
            return


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
