"""`lstmtext plot`: the training and validation curves of one or more runs, from their metrics.jsonl,
against step and against wall time, overlaid so that cells and settings compare at a glance.

matplotlib is an optional extra (`pip install 'lstmtext[plot]'`): it is imported only here, when a
picture is asked for, so the base install stays small.
"""

import io
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


def available() -> bool:
    """Whether matplotlib can be imported (the [plot] extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def pyplot(command: str = "lstmtext plot"):
    """matplotlib.pyplot on the Agg backend (no display: pictures go to files), or one clear line on
    how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(f"{command} needs matplotlib: {INSTALL}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_log_axis(ax, which: str = "y") -> None:
    """A log axis labelled 3, 4, 6, 10 rather than 3×10⁰."""
    from matplotlib.ticker import ScalarFormatter

    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(ScalarFormatter())


def save(fig, out: Path | io.BytesIO) -> None:
    """Write the figure (.png or .svg by the name; PNG into a buffer) and free it."""
    if isinstance(out, Path):
        out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, format=None if isinstance(out, Path) else "png")
    pyplot().close(fig)


def png(fig) -> bytes:
    """The figure as PNG bytes (to embed in a page), freed."""
    buf = io.BytesIO()
    save(fig, buf)
    return buf.getvalue()


def check_format(out: Path, option: str = "--out") -> None:
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"{option} must end in {' or '.join(FORMATS)}, got {out.name}")


def curves_figure(curves: list[Curves]):
    """Two panels, against step and against training time: training perplexity (thin) and validation
    perplexity (dots) of each run, on a log axis."""
    plt = pyplot()
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
        _plain_log_axis(ax)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize="small", loc="upper right")
    fig.suptitle("training (thin) and validation (dots) perplexity")
    return fig


def saturation_figure(sat: dict[str, tuple[np.ndarray, np.ndarray]], title: str):
    """Karpathy, Johnson & Fei-Fei (2015), Figure 4: one panel per gate, one dot per unit at (fraction
    of tokens left-saturated, fraction right-saturated), coloured by layer. sat: {"layers.{l}.{gate}":
    (left (H,), right (H,))}."""
    plt = pyplot("lstmtext inspect")
    gates = list(dict.fromkeys(key.rsplit(".", 1)[1] for key in sat))
    size = (3.6 * len(gates) + 0.6, 3.9)
    fig, axes = plt.subplots(1, len(gates), figsize=size, squeeze=False, constrained_layout=True)
    for ax, gate in zip(axes[0], gates, strict=True):
        for key, (left, right) in sat.items():
            if key.rsplit(".", 1)[1] == gate:
                layer = int(key.split(".")[1])
                ax.scatter(left, right, s=9, alpha=0.6, color=f"C{layer}", label=f"layer {layer}")
        ax.plot([0, 1], [1, 0], color="0.7", linewidth=0.8)  # left + right = 1: a unit never in between
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal", title=f"gate {gate}")
        ax.set_xlabel("fraction left-saturated (< 0.1)")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("fraction right-saturated (> 0.9)")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize="small", loc="outside right upper")
    fig.suptitle(title)
    return fig


def gradient_figure(results: list[tuple[str, dict]]):
    """‖∂ log p(next token) / ∂ state k steps back‖ against k, log scale: one colour per run, h solid
    and c dashed, the top layer drawn strongest. results: [(run name, inside.gradient_norms(...))]."""
    plt = pyplot("lstmtext inspect")
    fig, ax = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
    styles = {"h": "-", "c": "--"}
    for k, (name, r) in enumerate(results):
        top = max(int(state.split(".")[1]) for state in r["norm"])
        for state, norm in r["norm"].items():
            g = np.array(norm, dtype=np.float64)  # (K,)
            g[g <= 0] = np.nan  # a gradient of exactly 0 has no place on a log axis
            layer, kind = int(state.split(".")[1]), state.rsplit(".", 1)[1]
            width, alpha = (2.0, 1.0) if layer == top else (1.0, 0.55)
            ax.plot(r["distance"], g, styles.get(kind, ":"), color=f"C{k % 10}", linewidth=width, alpha=alpha,
                    label=f"{name}: layer {layer} {kind}")
    ax.set_yscale("log")
    ax.set_xlabel("k (tokens back)")
    ax.set_ylabel("‖∂ log p(next token) / ∂ state$_{t-k}$‖")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small", ncols=2 if sum(len(r["norm"]) for _, r in results) > 6 else 1)
    ax.set_title("how far back the gradient reaches (mean over positions)")
    return fig


def plot(runs: list[Path], out: Path) -> list[Curves]:
    """Draw the curves of `runs` into `out` (.png or .svg). -> the curves drawn."""
    check_format(out)
    pyplot()  # before reading the runs: without matplotlib, say so first
    curves = [load_curves(r, n) for r, n in zip(runs, names_for(runs), strict=True)]
    save(curves_figure(curves), out)
    return curves
