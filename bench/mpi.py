"""The speed table's MPI rows: `lstmtext train` on one process against `mpiexec -n 2`, same run.

    python -m bench.mpi [--repeats 3] [--rows small,char] [--steps N]

Both sides are the real command on the same generated corpus (Zipf-distributed words for the
small word shape, random characters for the char shape), the same global batch and the same
number of steps; tokens/s is the trainer's own "training tokens/s" (validation excluded, read from
metrics.jsonl's end record). One process runs with 2 BLAS threads (--threads 2); under MPI each
rank takes 1 (the default: the machine's cores shared among its ranks). The two alternate, pair
by pair, and the table gives medians and the median of the pairs' ratios. It also prints what
one step sends (mpi.GradientSum's buffer), for docs/many-machines.md "Many machines"."""

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

ROWS = {
    # name: (tokenizer, vocabulary, embed, hidden, batch, bptt)
    "small": ("word", 10_000, 200, 200, 20, 20),
    "char": ("char", 100, 512, 512, 50, 100),
}
STEPS = {"small": 300, "char": 30}  # about 20 and 35 s a run on 2 cores
BIN = Path(sys.executable).parent


def make_corpus(path: Path, kind: str, vocab: int, tokens: int) -> None:
    rng = np.random.default_rng(0)
    if kind == "word":
        p = 1.0 / np.arange(1, vocab + 1)  # Zipf, as in text
        ids = rng.choice(vocab, size=tokens, p=p / p.sum())
        words = np.array([f"w{i}" for i in range(vocab)])
        lines = [" ".join(words[ids[i : i + 20]]) for i in range(0, tokens, 20)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        chars = np.array([chr(c) for c in range(0x21, 0x21 + vocab - 1)])  # printable, and "\n"
        text = "".join(rng.choice(chars, size=tokens))
        path.write_text("\n".join(text[i : i + 80] for i in range(0, tokens, 80)) + "\n", encoding="utf-8")


def train_args(row: str, corpus: Path, out: Path, steps: int) -> list[str]:
    kind, vocab, embed, hidden, batch, bptt = ROWS[row]
    return [
        "train", str(corpus), "--out", str(out), "--force", "--tokenizer", kind, "--vocab-size", str(vocab),
        "--embed", str(embed), "--hidden", str(hidden), "--layers", "2", "--dropout", "0", "--batch-size",
        str(batch), "--bptt", str(bptt), "--max-steps", str(steps), "--epochs", "0", "--eval-every", "0",
        "--optimizer", "sgd", "--lr", "1", "--seed", "1",
    ]  # fmt: skip


def tokens_per_s(cmd: list[str], out: Path) -> float:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    end = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
    return float(end["tokens_per_s"])


def message_numbers(row: str, ranks: int, batch: int | None = None, accumulate: int = 1) -> tuple[int, int]:
    """(numbers one step's Allreduce carries, the model's parameters) for this row on `ranks` ranks
    with global batch `batch` (default the row's)."""
    from lstmtext import model, mpi
    from lstmtext.config import ModelConfig

    kind, vocab, embed, hidden, row_batch, bptt = ROWS[row]
    shapes = model.param_shapes(ModelConfig(vocab_size=vocab, embed=embed, hidden=hidden, layers=2, dropout=0.2))
    n_params = sum(int(np.prod(s)) for s in shapes.values())
    steps = bptt * accumulate
    sparse, slot = mpi.embedding_on_the_wire(ranks, vocab, embed, np.float32, batch or row_batch, steps, True)
    dense = n_params - (vocab * embed if sparse else 0)
    return 1 + dense + (ranks * slot * (embed + 1) if sparse else 0), n_params


# On paper: N machines of this one's speed, each keeping the row's batch (global batch N·B), one ring
# Allreduce a step: 2(N−1) messages of S/N bytes each way. The latencies are assumptions, not measured.
LINKS = {"1 Gbit/s": (1e9 / 8, 50e-6), "10 Gbit/s": (10e9 / 8, 10e-6), "100 Gbit/s": (100e9 / 8, 2e-6)}
MACHINES = (2, 4, 8, 16)


def speedup(row: str, one_tok_s: float, n: int, link: str, accumulate: int = 1) -> float:
    kind, vocab, embed, hidden, batch, bptt = ROWS[row]
    t_window = batch * bptt / one_tok_s  # s a window on one machine
    numbers, _ = message_numbers(row, n, batch * n, accumulate)
    bandwidth, latency = LINKS[link]
    t_sum = 2 * (n - 1) * latency + 2 * (n - 1) / n * 4 * numbers / bandwidth
    return n * accumulate * t_window / (accumulate * t_window + t_sum)


def print_estimate(results: list[dict], accumulate: int = 8) -> None:
    for r in results:
        row = r["row"]
        kind, vocab, embed, hidden, batch, bptt = ROWS[row]
        step_ms = 1e3 * batch * bptt / r["one"]
        print(f"\n{row}: {step_ms:.0f} ms a window on one machine (B{batch} T{bptt}); speed-up over one machine")
        links = list(LINKS)
        print("| machines | sent per step | " + " | ".join(links)
              + f" | sent per step, --accumulate {accumulate} | {links[0]}, --accumulate {accumulate} |")
        print("|---" * (len(links) + 4) + "|")
        for n in MACHINES:
            mb = 4 * message_numbers(row, n, batch * n)[0] / 1e6
            mb_k = 4 * message_numbers(row, n, batch * n, accumulate)[0] / 1e6
            cells = [f"{speedup(row, r['one'], n, link):.1f}×" for link in links]
            cells += [f"{mb_k:.1f} MB", f"{speedup(row, r['one'], n, links[0], accumulate):.1f}×"]
            print(f"| {n} | {mb:.1f} MB | " + " | ".join(cells) + " |")


def main(
    steps: Annotated[int, typer.Option(help="Training steps per run (0: 300 for small, 30 for char).")] = 0,
    repeats: Annotated[int, typer.Option(help="Pairs of runs per row.")] = 3,
    rows: Annotated[str, typer.Option(help="Comma-separated: small, char.")] = "small,char",
    estimate_only: Annotated[
        Path | None, typer.Option(help="Only print the on-paper estimate from this bench-mpi.json.")
    ] = None,
) -> None:
    if estimate_only is not None:
        print_estimate(json.loads(estimate_only.read_text()))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows.split(","):
            kind, vocab, *_ = ROWS[row]
            corpus = Path(tmp) / f"{row}.txt"
            n_steps = steps or STEPS[row]
            make_corpus(corpus, kind, vocab, 600_000)
            one, two = [], []
            for _ in range(repeats):
                out = Path(tmp) / f"{row}-1"
                cmd = [str(BIN / "lstmtext"), *train_args(row, corpus, out, n_steps), "--threads", "2"]
                one.append(tokens_per_s(cmd, out))
                out = Path(tmp) / f"{row}-2"
                cmd = [str(BIN / "mpiexec"), "-n", "2", str(BIN / "lstmtext"), *train_args(row, corpus, out, n_steps)]
                two.append(tokens_per_s(cmd, out))
                print(f"{row}: 1 process {one[-1]:,.0f} tok/s, mpiexec -n 2 {two[-1]:,.0f} tok/s", flush=True)
            numbers, n_params = message_numbers(row, 2)
            results.append({
                "row": row, "steps": n_steps, "one": statistics.median(one), "two": statistics.median(two),
                "ratio": statistics.median(b / a for a, b in zip(one, two, strict=True)), "runs_one": one,
                "runs_two": two, "numbers_per_step": numbers, "params": n_params,
            })  # fmt: skip
    print()
    print("| row | 1 process, 2 threads (tok/s) | mpiexec -n 2, 1 thread each (tok/s) | ratio (median of pairs) "
          "| sent per step (float32) |")
    print("|---|---|---|---|---|")
    for r in results:
        kind, vocab, embed, hidden, batch, bptt = ROWS[r["row"]]
        shape = f"{r['row']} (lstm 2×{hidden} E{embed} V{vocab:,} B{batch} T{bptt})"
        print(f"| {shape} | {r['one']:,.0f} | {r['two']:,.0f} | {r['ratio']:.2f}× | "
              f"{r['numbers_per_step']:,} numbers = {4 * r['numbers_per_step'] / 1e6:.1f} MB "
              f"(model {r['params']:,}) |")
    print_estimate(results)
    out = Path("runs") / "bench-mpi.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    typer.run(main)
