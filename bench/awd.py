"""`make reproduce-awd` and `make ablate-awd` (issue #31): AWD-LSTM's parts (Merity, Keskar & Socher
2018) on Penn Treebank within a wall-clock budget on this machine, the test text scored plainly, with
dynamic evaluation (Krause et al. 2018) and with the neural cache (Grave et al. 2017); and the ablation,
the same recipe with one part taken out at a time (their Table 4, at a budget a laptop has).

    python -m bench.awd [--minutes 120 | --steps N] [--runs=full,-weight-drop,...] [--also FLAGS] [--ptb DIR]
                        [--out runs/awd]

Each run trains through the CLI (`lstmtext train ... --max-minutes M`), then `lstmtext eval RUN
test.txt --json` three ways; its results are appended to OUT/results.jsonl as they come, and --resume
skips the runs already there. One training process at a time: the budget is wall-clock. --steps N
gives each run N steps instead (`--max-steps N`, the rate following the steps): on a machine whose
speed has moved since an earlier row, the earlier row's step count keeps the rows comparable.
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PTB = ROOT.parent / "shared" / "data" / "ptb"

# Penn Treebank as the papers count it (Mikolov's 10,000 words, <eos> per line), a tied two-layer LSTM.
# Two changes from AWD-LSTM's own run, both for a budget of hours rather than days, both measured in
# 10-minute pilots of this recipe (docs/results.md): batch 20, not AWD-LSTM's 80 or the 40 it had here
# (batch 40 reads 12% more tokens a second, but twice the steps an epoch learn faster: valid 224 against 290 at 10
# minutes), and U(±1/√512) weights (PyTorch's LSTM start, which AWD-LSTM's LSTM keeps; ±0.1: valid
# 336 against 321 at step 600). The rate falls to a tenth over the budget's last fifth (wsd), so the
# run ends annealed whether or not NT-ASGD's trigger has come.
BASE = (
    "--tokenizer word --word-split whitespace --vocab-size 10000 --embed 512 --hidden 512 --layers 2 --tie "
    "--init uniform --init-scale 0.044 --batch-size 20 --bptt 70 --clip 0.25 --reset-state 0 --rollback 0 "
    "--plateau 0 --schedule wsd --eval-every 400 --seed 1 --threads 2"
)
# Each part and what stands in its place when it is taken out (AWD-LSTM's Table 4 has one row per part).
PARTS = {
    "weight-drop": ("--weight-drop 0.5", ""),
    "locked-dropout": ("--dropout-kind locked --dropout-in 0.4 --dropout 0.25 --dropout-out 0.4", "--dropout 0.4"),
    "embed-dropout": ("--embed-dropout 0.1", ""),
    "ar-tar": ("--ar 2 --tar 1", ""),
    "nt-asgd": ("--optimizer nt-asgd --lr 30", "--optimizer sgd --lr 30"),
    "bptt-jitter": ("--bptt-jitter", ""),
    "weight-decay": ("--weight-decay 1.2e-6", ""),
}
SCORING = {"plain": [], "dynamic": ["--dynamic"], "cache": ["--cache", "500"]}


def flags(run: str, also: str = "") -> list[str]:
    """The flags of a run: "full", every part; "-PART", every part but that one, its stand-in instead; then `also`
    (the command line's last word on an option is the one it keeps)."""
    out = shlex.split(BASE)
    for part, (on, off) in PARTS.items():
        out += shlex.split(off if run == f"-{part}" else on)
    return out + shlex.split(also)


def run_names(spec: str) -> list[str]:
    names = spec.split(",") if spec != "ablation" else ["full", *(f"-{p}" for p in PARTS)]
    unknown = [n for n in names if n != "full" and n.removeprefix("-") not in PARTS]
    if unknown:
        sys.exit(f"unknown run {', '.join(unknown)}; use full or -PART, PART one of {', '.join(PARTS)}")
    return names


def lstmtext(*args) -> list[str]:
    return [str(Path(sys.executable).with_name("lstmtext")), *map(str, args)]


def one(name: str, minutes: float, ptb: Path, out: Path, also: str, steps: int = 0) -> dict:
    run = out / ("full" if name == "full" else f"without-{name[1:]}")
    result = {"run": name, "minutes": minutes, "steps": steps, "flags": flags(name, also)}
    budget = ["--max-steps", steps] if steps else ["--max-minutes", minutes]
    # A run trained to its budget is kept, so one stopped during its evaluations (they take a quarter
    # of an hour) is scored again on --resume, not trained again.
    trained = run / "trained.json"
    kept = json.loads(trained.read_text()) if trained.exists() else {}
    if {k: kept.get(k) for k in result} != result:
        t0 = time.perf_counter()
        train = lstmtext("train", ptb / "train.txt", "--valid", ptb / "valid.txt", "--out", run, "--force",
                         *budget, *result["flags"])  # fmt: skip
        with open(out / f"{run.name}.log", "w") as log:
            subprocess.run(train, check=True, stdout=log, stderr=subprocess.STDOUT)
        trained.write_text(json.dumps({**result, "train_seconds": time.perf_counter() - t0}))
    result = json.loads(trained.read_text())
    for how, extra in SCORING.items():
        t1 = time.perf_counter()
        cmd = lstmtext("eval", run, ptb / "test.txt", "--json", "--batch-size", "1", *extra)
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        result[how] = {"perplexity": r["perplexity"], "seconds": time.perf_counter() - t1}
    best = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    result["end"] = best
    return result


def table(results: list[dict]) -> str:
    full = next((r for r in results if r["run"] == "full"), None)
    lines = ["| run | test (plain) | Δ | dynamic | cache | training s |", "|---|---|---|---|---|---|"]
    for r in results:
        plain = r["plain"]["perplexity"]
        delta = f"{plain - full['plain']['perplexity']:+.1f}" if full and r is not full else "–"
        lines.append(f"| {r['run']} | {plain:.1f} | {delta} | {r['dynamic']['perplexity']:.1f} "
                     f"| {r['cache']['perplexity']:.1f} | {r['train_seconds']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=120.0)
    ap.add_argument("--steps", type=int, default=0, help="a budget of N steps instead of --minutes")
    ap.add_argument(
        "--runs", default="full", help="full, -PART (full without PART: write --runs=-PART), or ablation (all of them)"
    )
    ap.add_argument("--also", default="", help="flags after the recipe's, which they override (make reproduce-awd's)")
    ap.add_argument("--ptb", type=Path, default=PTB)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "awd")
    ap.add_argument("--resume", action="store_true", help="skip the runs OUT/results.jsonl already holds")
    ap.add_argument("--dry-run", action="store_true", help="print the commands' flags and stop")
    a = ap.parse_args()
    names = run_names(a.runs)
    if a.dry_run:
        for n in names:
            print(n, shlex.join(flags(n, a.also)))
        return 0
    if not (a.ptb / "train.txt").exists():
        sys.exit(f"no Penn Treebank in {a.ptb}; pass --ptb DIR (lstmtext does not distribute it)")
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "results.jsonl"
    done = [json.loads(x) for x in path.read_text().splitlines()] if a.resume and path.exists() else []
    same = [r for r in done if (r["minutes"], r.get("steps", 0)) == (a.minutes, a.steps)
            and r["flags"] == flags(r["run"], a.also)]  # fmt: skip
    results = [r for r in same if r["run"] in names]
    for name in names:
        if any(r["run"] == name for r in results):
            continue
        r = one(name, a.minutes, a.ptb, a.out, a.also, a.steps)
        with open(path, "a") as f:
            f.write(json.dumps(r) + "\n")
        results.append(r)
        print(f"{name}: test {r['plain']['perplexity']:.1f}, dynamic {r['dynamic']['perplexity']:.1f}, "
              f"cache {r['cache']['perplexity']:.1f}", flush=True)  # fmt: skip
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
