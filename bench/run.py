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
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench.rows import ROWS, Row

ROOT = Path(__file__).resolve().parent.parent
FORMAT_VERSION = 1
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
BUSY = 0.25  # cores of others' load above which a row's timings are flagged
PAUSE = 0.2  # s between runs: OpenBLAS and OpenMP threads spin ~0.1 s after work before sleeping


class BenchError(Exception):
    """A worker or the GEMM timing failed; its own traceback is already on stderr."""


class Worker:
    """One bench/worker.py process; `ask` sends a command and returns its one-line JSON answer."""

    def __init__(self, framework: str, row: Row, env: dict, threads: int):
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


def _time_frameworks(row: Row, env: dict, threads: int, seconds: float, repeats: int, workers: dict) -> dict:
    tokens_per_unit = row.T * row.B if row.task == "train" else 1
    ks = {}
    for fw in ("lstmtext", "torch"):  # one at a time, so that neither warms up beside the other
        workers[fw] = Worker(fw, row, env, threads)
        per_unit = workers[fw].ask(cmd="calibrate", seconds=seconds / 3)["per_unit"]
        ks[fw] = max(1, math.ceil(seconds / per_unit))
    runs = {fw: [] for fw in workers}
    for rep in range(repeats):
        for fw in ("lstmtext", "torch") if rep % 2 == 0 else ("torch", "lstmtext"):  # ABBA
            time.sleep(PAUSE)
            r = workers[fw].ask(cmd="run", k=ks[fw])
            runs[fw].append({"tokens_per_s": ks[fw] * tokens_per_unit / r["seconds"], "seconds": r["seconds"],
                             "loss": r["loss"], "finite": r["finite"]})
    out = {"row": row.name, "task": row.task, "config": row.describe, "tokens_per_unit": tokens_per_unit}
    for fw, w in workers.items():
        end = w.quit()
        out[fw] = {
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs[fw]),
            "runs": runs[fw], "units_per_run": ks[fw],
            "peak_rss_mb": end["maxrss_kb"] / 1024, "rss_after_import_mb": w.hello["rss_import_kb"] / 1024,
            "info": {k: v for k, v in w.hello.items() if k not in ("framework", "row", "rss_import_kb")},
        }
    return out


def _cpu_seconds() -> tuple[float, float] | None:
    """-> (CPU seconds the whole machine has spent busy, of which this process and its finished
    children), or None off Linux. Their difference over a row is the load of others on the machine."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    except OSError:
        return None
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")  # steal: the VM host's
    return busy, me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure_row(row: Row, env: dict, threads: int, seconds: float, repeats: int, quick: bool) -> dict:
    workers: dict[str, Worker] = {}
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    try:
        out = _time_frameworks(row, env, threads, seconds, repeats, workers)
    finally:
        for w in workers.values():
            w.stop()
    ratio = out["lstmtext"]["tokens_per_s"] / out["torch"]["tokens_per_s"]
    out["ratio"] = {"value": ratio, "target": row.ratio_target, "met": ratio >= row.ratio_target}
    if row.task == "train":
        lt, tr = out["lstmtext"]["peak_rss_mb"], out["torch"]["peak_rss_mb"]
        out["rss"] = {"met": lt <= tr}
        out["floor"] = gemm_floor(row, env, threads, 0.02 if quick else 0.05)
        eff = out["lstmtext"]["tokens_per_s"] / out["floor"]["used_tokens_per_s"]
        out["floor_efficiency"] = {"value": eff, "target": row.floor_target,
                                   "met": None if row.floor_target is None else eff >= row.floor_target}
    cpu1 = _cpu_seconds()
    # Others' CPU use while this row ran, in cores: on a shared 2-core machine it slows BLAS a lot.
    out["other_load_cores"] = None if cpu0 is None else max(
        0.0, ((cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1])) / (time.perf_counter() - t0))
    checks = [out["ratio"]["met"], out.get("rss", {}).get("met"), out.get("floor_efficiency", {}).get("met")]
    out["met"] = all(c for c in checks if c is not None)
    return out


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


def blas_line(info: dict) -> str:
    b = info["lstmtext"]["info"]["blas"]
    numpy_blas = "; ".join(
        f"{d['internal_api']} {d['version']} ({d['architecture']} kernel, {d['threading_layer']}, "
        f"{d['num_threads']} threads)" for d in b
    ) or "none found by threadpoolctl"
    t = info["torch"]["info"]
    return f"NumPy BLAS: {numpy_blas} · PyTorch {t['version']} (BLAS {t['blas']}, {t['num_threads']} threads)"


def _mark(met: bool | None) -> str:
    return "" if met is None else " [green]✓[/]" if met else " [red]✗[/]"


def _floor_cell(floor: dict, orientation: str) -> str:
    return f"{floor[orientation]['tokens_per_s']:,.0f}" + ("*" if floor["used"] == orientation else " ")


def _load_cell(r: dict) -> str:
    load = r["other_load_cores"]
    return "?" if load is None else f"[yellow]{load:.1f} busy[/]" if load > BUSY else f"{load:.1f}"


def print_table(console: Console, results: list[dict], header: dict) -> None:
    console.print(f"[bold]lstmtext speed[/] · {header['host']} · {header['threads']} threads · {header['note']}")
    for mode, line in header["blas"].items():
        console.print(f"  mode [bold]{mode}[/]: {line}")
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
            f"{ratio['value']:.2f}× (≥{ratio['target']}){_mark(ratio['met'])}",
            _floor_cell(floor, "batch_major") if train else "—", _floor_cell(floor, "feature_major") if train else "—",
            "—" if eff is None else ("[yellow]![/]" if eff["value"] > 1 else "") + f"{eff['value']:.0%}"
            + ("" if eff["target"] is None else f" (≥{eff['target']:.0%}){_mark(eff['met'])}"),
            f"{r['lstmtext']['peak_rss_mb']:,.0f} MB" + _mark(r.get("rss", {}).get("met")),
            f"{r['torch']['peak_rss_mb']:,.0f} MB", "[green]yes[/]" if r["met"] else "[red]no[/]", _load_cell(r),
        )
    console.print(table)
    for r in results:
        if not all(x["finite"] for fw in ("lstmtext", "torch") for x in r[fw]["runs"]):
            console.print(f"[yellow]warning[/]: {r['row']} ({r['mode']}) reached a non-finite loss; "
                          "its speed may not be a training step's")
    console.print("[dim]tok/s: medians of alternating runs · * the floor used for efficiency · "
                  "RSS ✓ = lstmtext's peak no higher than PyTorch's · others' load: cores used by other processes[/]")
    if any(r.get("floor_efficiency", {}).get("value", 0) > 1 for r in results):
        console.print("[yellow]warning[/]: ! a step faster than its GEMM floor: the floor was timed on a busy "
                      "machine, or the step skips a GEMM that bench/gemm_floor.py counts")
    if any((r["other_load_cores"] or 0) > BUSY for r in results):
        console.print(f"[yellow]warning[/]: other processes used > {BUSY} core during rows marked busy; "
                      "their timings are unreliable, rerun them on a quiet machine (--rows)")


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
            blas.setdefault(mode_name, blas_line(r))
            results.append(r)
            console.print(f"  {name} ({mode_name}): lstmtext {r['lstmtext']['tokens_per_s']:,.0f} tok/s, "
                          f"PyTorch {r['torch']['tokens_per_s']:,.0f} tok/s, ratio {r['ratio']['value']:.2f}×")
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
