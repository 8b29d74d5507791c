"""`make bench`: lstmtext's training step and sampling against PyTorch, with the GEMM floor.

Each framework runs each row in a process of its own (bench/worker.py), started with the
OpenBLAS variables as given or removed (the mode); the two are timed in alternating runs and the
medians compared. See bench/README.md for what each number means.

    python -m bench.run [--quick] [--rows small,medium] [--mode both|given|unset]
"""

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench.rows import EVAL_THREADS_TOKENS, EVAL_TOKENS, ROWS, Row

ROOT = Path(__file__).resolve().parent.parent
FORMAT_VERSION = 2  # 2: threads and eval rows, with their "contestants"
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
BUSY = 0.25  # cores of others' load above which a row's timings are flagged
PAUSE = 0.2  # s between runs: OpenBLAS and OpenMP threads spin ~0.1 s after work before sleeping


class BenchError(Exception):
    """A worker or the GEMM timing failed; its own traceback is already on stderr."""


class Worker:
    """One bench/worker.py process; `ask` sends a command and returns its one-line JSON answer."""

    def __init__(self, framework: str, row: Row, env: dict, threads: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", framework, row.name, str(threads)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            who = " ".join(self.proc.args[3:5])
            raise BenchError(f"the {who} worker died (exit {self.proc.wait()}); see its error above")
        return json.loads(line)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def quit(self) -> dict:
        answer = self.ask(cmd="quit")
        self.proc.wait()
        return answer

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def modes(choice: str | None, quick: bool) -> tuple[dict[str, dict], str]:
    """-> ({mode: environment}, note). "given" is the environment as it is, "unset" drops both
    OpenBLAS variables (the targets apply there)."""
    unset = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
    given = {k: os.environ[k] for k in OPENBLAS_VARS if k in os.environ}
    if not given:
        note = "neither OPENBLAS_CORETYPE nor OPENBLAS_L2_SIZE is set: both modes are the same, measured once"
        return {"unset": unset}, note
    choice = choice or ("unset" if quick else "both")
    picked = {"given": dict(os.environ), "unset": unset}
    picked = picked if choice == "both" else {choice: picked[choice]}
    return picked, "given = " + ", ".join(f"{k}={v}" for k, v in given.items()) + "; unset = both removed"


def _time_workers(row: Row, env: dict, specs: dict[str, tuple[str, str, int]], seconds: float, repeats: int,
                  workers: dict, warm: dict[str, float] | None = None) -> dict[str, dict]:
    """Time each contestant {name: (framework, threads, tokens per unit)} in a worker of its own, in
    alternating runs (A B C, C B A, ...); warm: seconds of warm-up before calibrating, by name."""
    ks = {}
    for name, (fw, threads, _) in specs.items():  # one at a time, so that none warms up beside another
        workers[name] = Worker(fw, row, env, threads)
        per_unit = workers[name].ask(cmd="calibrate", seconds=seconds / 3, warm=(warm or {}).get(name, 0.0))
        ks[name] = max(1, math.ceil(seconds / per_unit["per_unit"]))
    names = list(specs)
    runs = {name: [] for name in names}
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:  # ABBA
            time.sleep(PAUSE)
            r = workers[name].ask(cmd="run", k=ks[name])
            run = {"tokens_per_s": ks[name] * specs[name][2] / r["seconds"], "seconds": r["seconds"],
                   "loss": r["loss"], "finite": r["finite"]}
            runs[name].append({**run, "stats": r["stats"]} if r["stats"] else run)
    out = {}
    for name in names:
        w = workers[name]
        end = w.quit()
        out[name] = {
            "framework": specs[name][0], "threads": specs[name][1],
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs[name]),
            "runs": runs[name], "units_per_run": ks[name],
            "peak_rss_mb": end["maxrss_kb"] / 1024, "rss_after_import_mb": w.hello["rss_import_kb"] / 1024,
            "info": {k: v for k, v in w.hello.items() if k not in ("framework", "row", "rss_import_kb")},
            **({"stats": end["stats"]} if end.get("stats") else {}),
        }
    return out


def _time_frameworks(row: Row, env: dict, threads: int, seconds: float, repeats: int, workers: dict) -> dict:
    tokens_per_unit = row.T * row.B if row.task == "train" else 1
    specs = {fw: (fw, str(threads), tokens_per_unit) for fw in ("lstmtext", "torch")}
    timed = _time_workers(row, env, specs, seconds, repeats, workers)
    return {"row": row.name, "task": row.task, "config": row.describe, "tokens_per_unit": tokens_per_unit, **timed}


def _cpu_seconds() -> tuple[float, float] | None:
    """-> (CPU seconds the whole machine has spent busy, of which this process and its finished
    children), or None off Linux. Their difference over a row is the load of others on the machine."""
    from lstmtext.threads import busy_seconds

    busy = busy_seconds({"cpu"})
    if busy is None:
        return None
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _under_load(row: Row, body: Callable[[dict], dict]) -> dict:
    """Run body(workers) with row.busy busy-loop processes beside it; stop every process after it;
    add the CPU cores other processes (not this harness, its workers or its busy loops) used."""
    workers: dict[str, Worker] = {}
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    # Started after cpu0 and reaped before cpu1, a busy loop's CPU time counts as this harness's.
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(row.busy)]
    try:
        out = body(workers)
    finally:
        for w in workers.values():
            w.stop()
        for proc in busy:
            proc.kill()
            proc.wait()
    cpu1 = _cpu_seconds()
    # Others' CPU use while this row ran, in cores: on a shared 2-core machine it slows BLAS a lot.
    out["other_load_cores"] = None if cpu0 is None else max(
        0.0, ((cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1])) / (time.perf_counter() - t0))
    return out


def measure_row(row: Row, env: dict, threads: int, seconds: float, repeats: int, quick: bool) -> dict:
    if row.task == "threads":
        return _under_load(row, lambda workers: measure_threads(row, env, threads, seconds, repeats, workers))
    if row.task == "eval":
        return _under_load(row, lambda workers: measure_eval(row, env, threads, seconds, repeats, workers))
    if row.task == "eval-threads":
        return _under_load(row, lambda workers: measure_eval_threads(row, env, threads, seconds, repeats, workers))

    def body(workers: dict) -> dict:
        out = _time_frameworks(row, env, threads, seconds, repeats, workers)
        ratio = out["lstmtext"]["tokens_per_s"] / out["torch"]["tokens_per_s"]
        met = None if row.ratio_target is None else ratio >= row.ratio_target
        out["ratio"] = {"value": ratio, "target": row.ratio_target, "met": met}
        if row.task == "train":
            lt, tr = out["lstmtext"]["peak_rss_mb"], out["torch"]["peak_rss_mb"]
            out["rss"] = {"met": lt <= tr if row.torch_cell == row.cell else None}  # only like against like
            out["floor"] = gemm_floor(row, env, threads, 0.02 if quick else 0.05)
            eff = out["lstmtext"]["tokens_per_s"] / out["floor"]["used_tokens_per_s"]
            out["floor_efficiency"] = {"value": eff, "target": row.floor_target,
                                       "met": None if row.floor_target is None else eff >= row.floor_target}
        return out

    out = _under_load(row, body)
    checks = [out["ratio"]["met"], out.get("rss", {}).get("met"), out.get("floor_efficiency", {}).get("met")]
    out["met"] = all(c for c in checks if c is not None)
    return out


AUTO = "lstmtext auto"
THREADS_SECONDS = 1.5  # s per timed run of a threads row at least: the tuner's probes and switches show
THREADS_REPEATS = 5  # at least: auto and a fixed count are often within a few % of each other
THREADS_WARM = 3.0  # s the tuner trains before calibration: past its first probe, as in a long run


def measure_threads(row: Row, env: dict, threads: int, seconds: float, repeats: int, workers: dict) -> dict:
    """lstmtext's own thread choice against fixed counts and PyTorch, all under the same load."""
    n, tpu = str(threads), row.T * row.B
    # auto sits between the two fixed counts, so that each round times it right beside both.
    specs = {"lstmtext 1": ("lstmtext", "1", tpu), AUTO: ("lstmtext", "auto", tpu),
             f"lstmtext {n}": ("lstmtext", n, tpu), "PyTorch default": ("torch", "default", tpu),
             "PyTorch 1": ("torch", "1", tpu)}
    timed = _time_workers(row, env, specs, max(seconds, THREADS_SECONDS), max(repeats, THREADS_REPEATS), workers,
                          {AUTO: THREADS_WARM})
    tps = {name: r["tokens_per_s"] for name, r in timed.items()}
    # Busy: as good as the better fixed count under that load. Quiet: no slower than every core.
    against = max(("lstmtext 1", f"lstmtext {n}"), key=tps.get) if row.busy else f"lstmtext {n}"
    # Paired: the median of each round's ratio, so that a load drifting over the row cancels out.
    share = statistics.median(a["tokens_per_s"] / b["tokens_per_s"]
                              for a, b in zip(timed[AUTO]["runs"], timed[against]["runs"], strict=True))
    ratio = tps[AUTO] / tps["PyTorch default"]
    out = {"row": row.name, "task": row.task, "config": row.describe, "busy_cores": row.busy,
           "tokens_per_unit": tpu, "contestants": timed,
           "share": {"value": share, "target": row.share_target, "against": against,
                     "met": None if row.share_target is None else share >= row.share_target},
           "ratio": {"value": ratio, "target": row.ratio_target, "against": "PyTorch default",
                     "met": None if row.ratio_target is None else ratio >= row.ratio_target}}
    out["met"] = all(c["met"] for c in (out["share"], out["ratio"]) if c["met"] is not None)
    return out


def measure_eval_threads(row: Row, env: dict, threads: int, seconds: float, repeats: int, workers: dict) -> dict:
    """`lstmtext eval`'s own thread choice (a tuner per eval) against fixed counts, under the same load."""
    n, tpu = str(threads), EVAL_THREADS_TOKENS - 1  # every token after the first is scored
    specs = {"lstmtext 1": ("lstmtext-eval", "1", tpu), AUTO: ("lstmtext-eval", "auto", tpu),
             f"lstmtext {n}": ("lstmtext-eval", n, tpu)}
    timed = _time_workers(row, env, specs, max(seconds, THREADS_SECONDS), max(repeats, THREADS_REPEATS), workers)
    tps = {name: r["tokens_per_s"] for name, r in timed.items()}
    against = max(("lstmtext 1", f"lstmtext {n}"), key=tps.get) if row.busy else f"lstmtext {n}"
    share = statistics.median(a["tokens_per_s"] / b["tokens_per_s"]
                              for a, b in zip(timed[AUTO]["runs"], timed[against]["runs"], strict=True))
    met = None if row.share_target is None else share >= row.share_target
    return {"row": row.name, "task": row.task, "config": row.describe, "busy_cores": row.busy,
            "tokens_per_unit": tpu, "contestants": timed,
            "share": {"value": share, "target": row.share_target, "against": against, "met": met},
            "met": met is not False}


def measure_eval(row: Row, env: dict, threads: int, seconds: float, repeats: int, workers: dict) -> dict:
    """evaluate.score at its defaults against the training step of the same model, per token."""
    n = str(threads)
    specs = {"evaluate.score": ("lstmtext-eval", n, EVAL_TOKENS - 1),  # every token after the first is scored
             "train_step": ("lstmtext", n, row.T * row.B)}
    timed = _time_workers(row, env, specs, seconds, repeats, workers)
    ratio = timed["evaluate.score"]["tokens_per_s"] / timed["train_step"]["tokens_per_s"]
    return {"row": row.name, "task": row.task, "config": row.describe, "contestants": timed,
            "ratio": {"value": ratio, "target": row.ratio_target, "against": "train_step",
                      "met": ratio >= row.ratio_target},
            "met": ratio >= row.ratio_target}


def gemm_floor(row: Row, env: dict, threads: int, seconds: float) -> dict:
    """Time the step's GEMMs in a NumPy-only process of the same mode (bench/gemm_floor.py)."""
    cmd = [sys.executable, "-m", "bench.gemm_floor", row.name, "--threads", str(threads), "--seconds", str(seconds)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode:
        raise BenchError(f"bench/gemm_floor.py failed on {row.name} (exit {proc.returncode}); see its error above")
    res = json.loads(proc.stdout)
    bm, fm = res["batch_major"]["tokens_per_s"], res["feature_major"]["tokens_per_s"]
    # The issue expects feature-major to be the faster; if a BLAS disagrees, the better floor still rules.
    res["used"] = "feature_major" if fm >= bm else "batch_major"
    res["used_tokens_per_s"] = max(bm, fm)
    return res


def contestants(r: dict) -> dict[str, dict]:
    """A row's timed processes by name: lstmtext and torch, or a threads or eval row's contestants."""
    return r["contestants"] if "contestants" in r else {"lstmtext": r["lstmtext"], "torch": r["torch"]}


def blas_line(r: dict) -> str:
    """NumPy's BLAS as lstmtext's process saw it (its count set), and PyTorch's, if the row has it."""
    procs = contestants(r)
    lts = [c for c in procs.values() if c.get("framework", "lstmtext").startswith("lstmtext")]
    # The fixed count with the most threads: the one every row has (--threads).
    lt = max(lts, key=lambda c: int(c.get("threads", "0")) if c.get("threads", "0").isdigit() else 0)
    numpy_blas = "; ".join(
        f"{d['internal_api']} {d['version']} ({d['architecture']} kernel, {d['threading_layer']}, "
        f"{d['num_threads']} threads)" for d in lt["info"]["blas"]
    ) or "none found by threadpoolctl"
    torch = [c for c in procs.values() if c.get("framework", "torch") == "torch"]
    if not torch:
        return f"NumPy BLAS: {numpy_blas}"
    t = torch[0]["info"]
    return f"NumPy BLAS: {numpy_blas} · PyTorch {t['version']} (BLAS {t['blas']}, {t['num_threads']} threads)"


def summary_line(r: dict) -> str:
    """One line per row as it finishes."""
    if r["task"] in ("threads", "eval", "eval-threads"):
        tps = ", ".join(f"{name} {c['tokens_per_s']:,.0f}" for name, c in r["contestants"].items())
        return f"{tps} tok/s; " + ", ".join(
            f"÷ {r[k]['against']} {r[k]['value']:.2f}" for k in ("share", "ratio") if k in r)
    return (f"lstmtext {r['lstmtext']['tokens_per_s']:,.0f} tok/s, "
            f"PyTorch {r['torch']['tokens_per_s']:,.0f} tok/s, ratio {r['ratio']['value']:.2f}×")


def _mark(met: bool | None) -> str:
    return "" if met is None else " [green]✓[/]" if met else " [red]✗[/]"


def _floor_cell(floor: dict, orientation: str) -> str:
    return f"{floor[orientation]['tokens_per_s']:,.0f}" + ("*" if floor["used"] == orientation else " ")


def _load_cell(r: dict) -> str:
    load = r["other_load_cores"]
    return "?" if load is None else f"[yellow]{load:.1f} busy[/]" if load > BUSY else f"{load:.1f}"


def _check_cell(check: dict, percent: bool = False) -> str:
    fmt = (lambda v: f"{v:.0%}") if percent else (lambda v: f"{v:.2f}×")
    target = "" if check["target"] is None else f" (≥{fmt(check['target'])})"
    return f"{fmt(check['value'])}{target}{_mark(check['met'])}"


def print_table(console: Console, results: list[dict], header: dict) -> None:
    console.print(f"[bold]lstmtext speed[/] · {header['host']} · {header['threads']} threads · {header['note']}")
    for mode, line in header["blas"].items():
        console.print(f"  mode [bold]{mode}[/]: {line}")
    classic = [r for r in results if r["task"] in ("train", "sample")]
    if classic:
        _print_classic(console, classic)
    threads = [r for r in results if r["task"] == "threads"]
    if threads:
        _print_threads(console, threads, header["threads"])
    evals = [r for r in results if r["task"] == "eval"]
    if evals:
        _print_eval(console, evals)
    eval_threads = [r for r in results if r["task"] == "eval-threads"]
    if eval_threads:
        _print_eval_threads(console, eval_threads, header["threads"])
    for r in results:
        if not all(x["finite"] for c in contestants(r).values() for x in c["runs"]):
            console.print(f"[yellow]warning[/]: {r['row']} ({r['mode']}) reached a non-finite loss; "
                          "its speed may not be a training step's")
    console.print("[dim]tok/s: medians of alternating runs · others' load: cores used by other processes[/]")
    if any((r["other_load_cores"] or 0) > BUSY for r in results):
        console.print(f"[yellow]warning[/]: other processes used > {BUSY} core during rows marked busy; "
                      "their timings are unreliable, rerun them on a quiet machine (--rows)")


def _print_classic(console: Console, results: list[dict]) -> None:
    table = Table()
    for col in ("row", "mode", "lstmtext\ntok/s", "PyTorch\ntok/s", "ratio\n(target)", "floor tok/s\nbatch-major",
                "floor tok/s\nfeature-major", "floor eff.\n(target)", "peak RSS\nlstmtext", "peak RSS\nPyTorch",
                "met", "others'\nload"):
        table.add_column(col, justify="left" if col in ("row", "mode") else "right", no_wrap=True)
    for r in results:
        ratio, train = r["ratio"], r["task"] == "train"
        floor = r.get("floor", {})
        eff = r.get("floor_efficiency")
        table.add_row(
            f"{r['row']}\n[dim]{r['config']}[/]", r["mode"],
            f"{r['lstmtext']['tokens_per_s']:,.0f}", f"{r['torch']['tokens_per_s']:,.0f}",
            f"{ratio['value']:.2f}×" + ("" if ratio["target"] is None else f" (≥{ratio['target']})")
            + _mark(ratio["met"]),
            _floor_cell(floor, "batch_major") if train else "—", _floor_cell(floor, "feature_major") if train else "—",
            "—" if eff is None else ("[yellow]![/]" if eff["value"] > 1 else "") + f"{eff['value']:.0%}"
            + ("" if eff["target"] is None else f" (≥{eff['target']:.0%}){_mark(eff['met'])}"),
            f"{r['lstmtext']['peak_rss_mb']:,.0f} MB" + _mark(r.get("rss", {}).get("met")),
            f"{r['torch']['peak_rss_mb']:,.0f} MB", "[green]yes[/]" if r["met"] else "[red]no[/]", _load_cell(r),
        )
    console.print(table)
    console.print("[dim]* the floor used for efficiency · RSS ✓ = lstmtext's peak no higher than PyTorch's[/]")
    if any(r.get("floor_efficiency", {}).get("value", 0) > 1 for r in results):
        console.print("[yellow]warning[/]: ! a step faster than its GEMM floor: the floor was timed on a busy "
                      "machine, or the step skips a GEMM that bench/gemm_floor.py counts")


def _auto_cell(c: dict) -> str:
    """The tuner's speed, with the share of timed windows at each count and its probes/switches."""
    at: dict[str, int] = {}
    for run in c["runs"]:
        for n, w in run.get("stats", {}).get("windows_at", {}).items():
            at[n] = at.get(n, 0) + w
    total = sum(at.values()) or 1
    shares = " ".join(f"{n}:{w / total:.0%}" for n, w in sorted(at.items()))
    st = c.get("stats", {})
    return (f"{c['tokens_per_s']:,.0f}\n[dim]{shares} · {st.get('probes', 0)} probes, "
            f"{st.get('switches', 0)} switches[/]")


def _print_threads(console: Console, results: list[dict], threads: int) -> None:
    table = Table(title="threads: lstmtext's own choice (auto) against fixed counts, under the same load")
    cols = ("row", "mode", "auto tok/s\n[dim]windows at 1:/2:[/]", "lstmtext\n1 thread", f"lstmtext\n{threads} threads",
            "PyTorch\ndefault", "PyTorch\n1 thread", "auto ÷ fixed\n(target)", "auto ÷ PyTorch\ndefault (target)",
            "met", "others'\nload")
    for col in cols:
        table.add_column(col, justify="left" if col in ("row", "mode") else "right", no_wrap=True)
    for r in results:
        c = r["contestants"]
        torch_n = c["PyTorch default"]["info"].get("num_threads")
        table.add_row(
            f"{r['row']}\n[dim]{r['config']}[/]", r["mode"], _auto_cell(c[AUTO]),
            f"{c['lstmtext 1']['tokens_per_s']:,.0f}", f"{c[f'lstmtext {threads}']['tokens_per_s']:,.0f}",
            f"{c['PyTorch default']['tokens_per_s']:,.0f}\n[dim]{torch_n} threads[/]",
            f"{c['PyTorch 1']['tokens_per_s']:,.0f}",
            _check_cell(r["share"], percent=True) + f"\n[dim]÷ {r['share']['against']}[/]",
            _check_cell(r["ratio"]), "[green]yes[/]" if r["met"] else "[red]no[/]", _load_cell(r),
        )
    console.print(table)
    console.print("[dim]busy rows keep cores busy with `python -c \"while True: pass\"` processes of their own "
                  "(not counted in others' load) · auto ÷ fixed: busy, the faster fixed count; quiet, all cores[/]")


def _print_eval_threads(console: Console, results: list[dict], threads: int) -> None:
    table = Table(title=f"eval: `lstmtext eval` of {EVAL_THREADS_TOKENS:,} tokens, its own thread choice (auto) "
                  "against fixed counts, under the same load")
    for col in ("row", "mode", "auto\ntok/s", "1 thread\ntok/s", f"{threads} threads\ntok/s",
                "auto ÷ the better\nfixed (target)", "met", "others'\nload"):
        table.add_column(col, justify="right" if "tok" in col else "left")
    for r in results:
        c = r["contestants"]
        table.add_row(f"{r['row']}\n[dim]{r['config']}[/]", r["mode"], f"{c[AUTO]['tokens_per_s']:,.0f}",
                      f"{c['lstmtext 1']['tokens_per_s']:,.0f}", f"{c[f'lstmtext {threads}']['tokens_per_s']:,.0f}",
                      _check_cell(r["share"], percent=True) + f"\n[dim]÷ {r['share']['against']}[/]",
                      "[green]yes[/]" if r["met"] else "[red]no[/]", _load_cell(r))
    console.print(table)


def _print_eval(console: Console, results: list[dict]) -> None:
    table = Table(title="eval: evaluate.score (no backward) against the training step, per token")
    for col in ("row", "mode", "evaluate.score\ntok/s", "train_step\ntok/s", "ratio\n(target)", "met", "others'\nload"):
        table.add_column(col, justify="left" if col in ("row", "mode") else "right", no_wrap=True)
    for r in results:
        c = r["contestants"]
        table.add_row(f"{r['row']}\n[dim]{r['config']}[/]", r["mode"], f"{c['evaluate.score']['tokens_per_s']:,.0f}",
                      f"{c['train_step']['tokens_per_s']:,.0f}", _check_cell(r["ratio"]),
                      "[green]yes[/]" if r["met"] else "[red]no[/]", _load_cell(r))
    console.print(table)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def _git() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], check=False, cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "lstmtext_dirty": bool(git("status", "--porcelain", "lstmtext"))}


def main(
    quick: Annotated[bool, typer.Option(help="Short timings and one mode (unset): a developer's rerun.")] = False,
    rows: Annotated[str, typer.Option(help=f"Comma-separated rows of: {','.join(ROWS)}.")] = ",".join(ROWS),
    mode: Annotated[str | None, typer.Option(help="both, given or unset (default: both; unset with --quick).")] = None,
    threads: Annotated[int, typer.Option(help="Threads for both frameworks.")] = 2,
    repeats: Annotated[int, typer.Option(help="Timed runs per framework (median reported).", min=3)] = 3,
    seconds: Annotated[float | None, typer.Option(help="Seconds per timed run (default 4; 0.5 with --quick).")] = None,
    out: Annotated[Path | None, typer.Option(help="JSON path (default runs/bench-<time>.json).")] = None,
) -> None:
    """Time lstmtext against PyTorch, row by row, and write the table to JSON."""
    console = Console() if sys.stdout.isatty() else Console(width=200)  # a log keeps rows whole
    names = [n.strip() for n in rows.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        console.print(f"[red]unknown row {', '.join(unknown)}[/]: choose from {', '.join(ROWS)}")
        raise typer.Exit(1)
    if mode not in (None, "both", "given", "unset"):
        console.print(f"[red]unknown mode {mode}[/]: choose both, given or unset")
        raise typer.Exit(1)
    envs, note = modes(mode, quick)
    seconds = seconds or (0.5 if quick else 4.0)
    results, blas = [], {}
    for mode_name, env in envs.items():
        for name in names:
            try:
                with console.status(f"{name} ({mode_name}) …"):
                    r = {"mode": mode_name, **measure_row(ROWS[name], env, threads, seconds, repeats, quick)}
            except BenchError as e:
                console.print(f"[red]bench failed[/]: {e}")
                raise typer.Exit(1) from None
            if mode_name not in blas or (r["task"] != "eval" and "PyTorch" not in blas[mode_name]):
                blas[mode_name] = blas_line(r)
            results.append(r)
            console.print(f"  {name} ({mode_name}): {summary_line(r)}")
    header = {"host": f"{_cpu_name()} ×{os.cpu_count()}", "threads": threads,
              "note": note, "blas": blas}
    print_table(console, results, header)
    path = out or ROOT / "runs" / f"bench-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": "lstmtext-bench", "version": FORMAT_VERSION, "created": datetime.now().isoformat(timespec="seconds"),
        "git": _git(), "python": platform.python_version(), "header": header,
        "options": {"quick": quick, "rows": names, "modes": list(envs), "repeats": repeats, "seconds": seconds},
        "rows": results,
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")
    console.print(f"JSON: {path}")


if __name__ == "__main__":
    typer.run(main)
