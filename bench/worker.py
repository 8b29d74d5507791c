"""One framework on one row, in its own process, driven by bench/run.py over stdin/stdout.

    python -m bench.worker {lstmtext|lstmtext-eval|torch} ROW THREADS

THREADS is a count, "auto" (lstmtext: the trainer's own choice, lstmtext.threads.ThreadTuner) or
"default" (PyTorch: its own default). lstmtext-eval is lstmtext scoring the eval row's text with
evaluate.score. Speaks one JSON object per line. On start it says hello (versions, BLAS); then it
answers
  {"cmd": "calibrate", "seconds": s, "warm": w}
                                      -> {"per_unit": seconds}  (runs w seconds first, warm-up,
                                         then doubles k until a run of k units takes >= s)
  {"cmd": "run", "k": k}              -> {"seconds": ..., "loss": last loss or null, "finite": ...,
                                          "stats": what the side did meanwhile (the tuner's
                                          probes, switches, windows per thread count), maybe {}}
  {"cmd": "quit"}                     -> {"maxrss_kb": ..., "stats": ...} and exits.
A unit is a training window (T·B tokens), one sampled token, or one scoring of the eval text.
Being a process of its own, its peak RSS (ru_maxrss, read after its last step) is that framework's
on that row alone."""

import json
import math
import resource
import sys
import time


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _diff(after: dict, before: dict) -> dict:
    """What changed between two stats snapshots: counters subtracted, windows per count too."""
    out = {}
    for k, v in after.items():
        if isinstance(v, dict):
            out[k] = {c: n - before.get(k, {}).get(c, 0) for c, n in v.items() if n - before.get(k, {}).get(c, 0)}
        elif k in ("probes", "switches"):
            out[k] = v - before.get(k, 0)
        else:
            out[k] = v  # a state, e.g. the count in use now
    return out


def main(framework: str, row_name: str, threads: str) -> None:
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
    if framework == "torch":
        run = side.make_runner(row, threads)
        hello = side.info()  # after the count is set
    else:
        run = side.make_runner(row, threads, evaluate_only=framework == "lstmtext-eval")
        hello["blas"] = side.blas_info()  # after the count is set
    say(framework=framework, row=row_name, rss_import_kb=rss_import, **hello)
    # Untimed work a command does before its timed part (e.g. reading its files), if the side has any.
    prepare = getattr(run, "prepare", lambda: None)

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "calibrate":
            run(1)  # warm-up: first-call allocations and BLAS thread start-up are not the speed
            t_warm = time.perf_counter() + cmd.get("warm", 0.0)
            while time.perf_counter() < t_warm:  # e.g. lets the tuner settle as in a long run
                run(1)
            k = 1
            while True:
                prepare()
                t0 = time.perf_counter()
                run(k)
                dt = time.perf_counter() - t0
                if dt >= cmd["seconds"]:
                    break
                k *= 2
            say(per_unit=dt / k)
        elif cmd["cmd"] == "run":
            before = run.stats()
            prepare()
            t0 = time.perf_counter()
            loss = run(cmd["k"])
            seconds = time.perf_counter() - t0
            finite = loss is None or math.isfinite(loss)
            say(seconds=seconds, loss=loss if finite else None, finite=finite, stats=_diff(run.stats(), before))
        elif cmd["cmd"] == "quit":
            say(maxrss_kb=_maxrss_kb(), stats=run.stats())
            return


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
