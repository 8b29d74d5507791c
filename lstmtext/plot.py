"""`lstmtext plot`: the training and validation curves of one or more runs, from their metrics.jsonl,
against step and against wall time, overlaid so that cells and settings compare at a glance.

matplotlib is an optional extra (`pip install 'lstmtext[plot]'`): it is imported only here, when a
picture is asked for, so the base install stays small.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmtext.errors import CheckpointError, ConfigError

INSTALL = "pip install 'lstmtext[plot]'"  # the one line a user without matplotlib is told
FORMATS = (".png", ".svg")


@dataclass
class Curves:
    name: str
    train_step: np.ndarray  # (n,) steps of the logged training windows
    train_ppl: np.ndarray  # (n,) perplexity of the training loss since the last log line
    train_time: np.ndarray  # (n,) seconds of training at that step
    valid_step: np.ndarray  # (m,) steps of the validations
    valid_ppl: np.ndarray  # (m,)
    valid_time: np.ndarray  # (m,) seconds, read off the training log at the same step


def load_curves(run: Path, name: str | None = None) -> Curves:
    """Read RUN/metrics.jsonl. A resumed run's file holds one history (resume drops what it redoes)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise CheckpointError(f"{run} has no metrics.jsonl; give the directory of a training run (its --out)")
    train, valid = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill: the rest of the file still counts
        if rec.get("kind") == "train":
            train.append((rec["step"], rec["ppl"], rec["elapsed"]))
        elif rec.get("kind") == "valid":
            valid.append((rec["step"], rec["ppl"]))
    if not train and not valid:
        raise CheckpointError(f"{path} has no training or validation lines yet; plot it once the run has logged")
    t = np.array(train, dtype=np.float64).reshape(-1, 3)  # (n, 3) step, ppl, elapsed
    v = np.array(valid, dtype=np.float64).reshape(-1, 2)  # (m, 2) step, ppl
    # Validation lines carry no clock; the training clock at the same step is within one log interval.
    v_time = np.interp(v[:, 0], t[:, 0], t[:, 2]) if len(t) else np.full(len(v), np.nan)
    return Curves(name or run.name, t[:, 0], t[:, 1], t[:, 2], v[:, 0], v[:, 1], v_time)


def names_for(runs: list[Path]) -> list[str]:
    """Each run's folder name, or more of its path where two runs share a name."""
    names = [r.name for r in runs]
    for depth in range(2, 6):
        if len(set(names)) == len(names):
            break
        names = ["/".join(r.resolve().parts[-depth:]) for r in runs]
    return names


def plot(runs: list[Path], out: Path) -> list[Curves]:
    """Draw the curves of `runs` into `out` (.png or .svg). -> the curves drawn."""
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"--out must end in {' or '.join(FORMATS)}, got {out.name}")
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(f"lstmtext plot needs matplotlib: {INSTALL}") from None
    matplotlib.use("Agg")  # no display needed: the picture goes to a file
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    curves = [load_curves(r, n) for r, n in zip(runs, names_for(runs), strict=True)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True, constrained_layout=True)
    for k, c in enumerate(curves):
        color = f"C{k % 10}"
        for ax, tx, vx in ((axes[0], c.train_step, c.valid_step), (axes[1], c.train_time, c.valid_time)):
            ax.plot(tx, c.train_ppl, color=color, alpha=0.45, linewidth=1, label=f"{c.name} train")
            ax.plot(vx, c.valid_ppl, color=color, marker="o", markersize=3, linewidth=1.8, label=f"{c.name} valid")
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("training time (s)")
    axes[0].set_ylabel("perplexity")
    for ax in axes:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())  # 3, 4, 6, 10 rather than 3×10⁰
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize="small", loc="upper right")
    fig.suptitle("training (thin) and validation (dots) perplexity")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return curves
