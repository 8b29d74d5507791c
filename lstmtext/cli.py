"""The command line: parse options, call the library, turn LstmTextError into one line + exit 1."""

import contextlib
import functools
import json
import signal
import sys
from collections.abc import Iterator
from dataclasses import fields
from inspect import Parameter, Signature
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich import progress as bars
from rich.console import Console
from rich.table import Table

from lstmtext import api, malloc, mpi, reading, runs
from lstmtext.cells import get_cell
from lstmtext.config import EvalOptions, ModelConfig
from lstmtext.corpus import REPLACEMENT, read_text
from lstmtext.errors import ConfigError, LstmTextError
from lstmtext.export import FORMATS
from lstmtext.inside import InspectOptions
from lstmtext.options import TrainOptions
from lstmtext.sample import SampleOptions, run_generation
from lstmtext.trainer import Interrupted
from lstmtext.version import __version__

app = typer.Typer(
    help="Train a NumPy LSTM language model on your text, sample from it, and measure it.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode="rich",  # said, not left to typer's default: help texts escape their brackets for it
)



def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def user_errors(fn):
    """Our errors become one line on stderr and exit 1; Ctrl-C outside training exits 130 quietly."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except mpi.Released as e:
            raise typer.Exit(e.code) from None
        except LstmTextError as e:
            if mpi.launched_rank() != 0 and getattr(e, "every_rank", False):
                raise typer.Exit(1) from None  # MPI: rank 0 prints the line every rank has
            raise _fail(str(e)) from None
        except Interrupted as e:
            if mpi.launched_rank() == 0:
                typer.echo(str(e), err=True)
            raise typer.Exit(128 + e.signum) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(128 + signal.SIGINT) from None

    return wrapper


def _warn(message: str) -> None:
    typer.echo(message if message.startswith("warning: ") else f"warning: {message}", err=True)


def _note(message: str) -> None:
    """A line about what was done for the user, on stderr so that stdout stays the result."""
    typer.echo(message, err=True)


# --threads on every command that runs the model: a fixed count, or (by default) chosen as train does.
Threads = Annotated[
    int | None, typer.Option(help="BLAS threads (default: chosen by timing the work, as train does).", metavar="N")
]

CHECKPOINT_HELP = "A run directory (best.safetensors, or last.safetensors before the first validation) or a file."


def _metavar(kind) -> str:
    """What an option's value is, in a word."""
    text = str(kind)
    for part, name in (("Path", "PATH"), ("list", "GLOB"), ("float", "X"), ("int", "N")):
        if part in text:
            return name
    return "TEXT"


def options_parameters(options) -> list[Parameter]:
    """A command's parameters built from an options dataclass (TrainOptions, SampleOptions,
    EvalOptions): one list of names, defaults and help texts for the command and the API."""
    kind = Parameter.POSITIONAL_OR_KEYWORD
    params = []
    for f in fields(options):
        m = f.metadata
        if m["argument"]:
            info = typer.Argument(help=m["help"], show_default=m["show_default"])
        elif f.type is bool:  # a flag alone: a --no-… twin would give every option an empty column
            info = typer.Option(f"--{f.name.replace('_', '-')}", help=m["help"], show_default=False, metavar="")
        else:  # short metavars leave the help text room at 80 columns ("<list[str]>" took 13 of them)
            metavar = m["metavar"] or _metavar(f.type)
            info = typer.Option(help=m["help"], show_default=m["show_default"], metavar=metavar)
        params.append(Parameter(f.name, kind, default=f.default, annotation=Annotated[f.type, info]))
    return params


def _signature(*groups) -> Signature:
    """A command's signature from groups of parameters: (name, annotation[, default]) tuples, or
    options_parameters(...) lists."""
    kind = Parameter.POSITIONAL_OR_KEYWORD
    params = []
    for group in groups:
        for p in group:
            if isinstance(p, tuple):
                name, annotation, *default = p
                p = Parameter(name, kind, annotation=annotation, default=default[0] if default else
                                      Parameter.empty)  # fmt: skip
            params.append(p)
    return Signature(params)


@user_errors
def train(ctx: typer.Context, **options) -> None:
    """Train a language model on CORPUS; checkpoints and metrics go to --out."""
    # Options the user typed (not defaults): on --resume they must agree with the run.
    given = {k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"}
    api.run_training(TrainOptions(**options), given, Console(), _warn)


train.__signature__ = _signature([("ctx", typer.Context)], options_parameters(TrainOptions))
app.command()(train)


CHECKPOINT = Annotated[Path, typer.Argument(metavar="CHECKPOINT", help=CHECKPOINT_HELP)]


@user_errors
def generate(checkpoint_path: Path, prompt: str, seed: int | None, stop: list[str] | None, threads: int | None,
             **options) -> None:  # fmt: skip
    """Generate text from a trained model; it streams to stdout as it is produced."""
    opts = SampleOptions(**options)
    model = api.load(checkpoint_path, note=_note, threads=threads)
    rng = np.random.default_rng(seed)
    run_generation(model.checkpoint, model.tokenizer, prompt, opts, rng, stop or [], sys.stdout, _warn, threads)


generate.__signature__ = _signature(
    [("checkpoint_path", CHECKPOINT),
     ("prompt", Annotated[str, typer.Option(help="Text to start from.", metavar="TEXT")], "")],
    options_parameters(SampleOptions),
    [
        ("seed", Annotated[int | None, typer.Option(help="Seed for reproducible samples.", metavar="N")], None),
        ("stop", Annotated[list[str] | None, typer.Option(
            help="End a sample at this text; '<eos>' ends it at a line end token. Repeatable.", metavar="TEXT")], None),
        ("threads", Threads, None),
    ],
)
app.command()(generate)


@user_errors
def eval_(checkpoint_path: Path, file: Path, encoding_errors: str, as_json: bool, threads: int | None,
          **options) -> None:  # fmt: skip
    """Score FILE with a trained model: loss, perplexity per token and per word, bits per byte."""
    reading.check_options(EvalOptions(**options))  # before the model and the text are read
    model = api.load(checkpoint_path, note=_note, warn=_warn, threads=threads)
    text = read_text(file, encoding_errors)
    if encoding_errors == "replace" and REPLACEMENT in text:
        n = text.count(REPLACEMENT)
        typer.echo(f"--encoding-errors replace read {n:,} invalid UTF-8 sequence{'s' * (n != 1)} as U+FFFD.", err=True)
    with _reading_bar() as progress:
        r = model.score(text, name=str(file), progress=progress, **options)
    if as_json:
        typer.echo(json.dumps({"file": str(file), **r}))
    else:
        t = Table(title=f"{file}", show_header=False)
        t.add_row("tokens evaluated", f"{r['tokens']:,}")
        t.add_row("loss (nats/token)", f"{r['loss']:.4f}")
        t.add_row("perplexity per token", f"{r['perplexity']:,.2f}")
        t.add_row("perplexity per word", f"{r['word_perplexity']:,.2f}  ({r['words']:,} words incl. line ends)")
        t.add_row("bits per byte", f"{r['bits_per_byte']:.4f}")
        t.add_row("<unk> rate", f"{100 * r['unk_rate']:.2f}%")
        Console().print(t)


@contextlib.contextmanager
def _reading_bar() -> Iterator[reading.Progress | None]:
    """A bar on stderr while `eval` reads (a dynamic evaluation of a book takes minutes), gone when
    it is done; nothing when stderr is not a terminal, so logs and --json pipes stay clean."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None  # rich would still end its bar with a blank line
        return
    with bars.Progress(
        bars.TextColumn("{task.description}"),
        bars.BarColumn(bar_width=24),
        bars.TextColumn("{task.completed:,.0f}/{task.total:,.0f} tokens"),
        bars.TimeElapsedColumn(),
        bars.TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, bars.TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        yield progress


eval_.__signature__ = _signature(
    [("checkpoint_path", CHECKPOINT), ("file", Annotated[Path, typer.Argument(help="Held-out text to score.")])],
    options_parameters(EvalOptions),
    [
        ("encoding_errors", Annotated[str, typer.Option(help="strict or replace.", metavar="TEXT")], "strict"),
        ("as_json", Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.",
                                                 metavar="")], False),
        ("threads", Threads, None),
    ],
)
app.command(name="eval")(eval_)


@app.command()
@user_errors
def info(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="RUN_OR_FILE", help="A run directory or a checkpoint.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
) -> None:
    """Show what a run or checkpoint holds: model, tokenizer, training settings, progress, corpus."""
    r = runs.run_info(checkpoint_path)
    if as_json:
        typer.echo(json.dumps(r))
        return
    m, p, c, t = r["model"], r["progress"], r["corpus"], r["tokenizer"]

    def ppl(x):
        return "—" if x is None else f"{x:,.2f}"

    table = Table(title=str(checkpoint_path), show_header=False, title_justify="left")
    table.add_row("model", f"{m['cell']} {m['layers']}×{m['hidden']}, embed {m['embed']}"
                  + (f", {m['heads']} heads" if m.get("heads", 1) > 1 else "")
                  + (", tied head" if m["tie"] else "")
                  + (f", adaptive softmax {m['cutoffs']}" if m.get("softmax") == "adaptive" else "")
                  + f", dropout {m['dropout']:g}")
    if r["regularisers"]:
        table.add_row("regularisers", r["regularisers"])
    table.add_row("parameters", f"{m['parameters']:,}")
    if r["size_choice"]:
        table.add_row("size chosen", r["size_choice"])
    if r.get("tokenizer_choice"):
        table.add_row("tokenizer chosen", r["tokenizer_choice"])
    if r.get("vocab_choice"):
        table.add_row("vocabulary chosen", r["vocab_choice"])
    table.add_row("tokenizer", f"{t['kind']}, vocabulary {t['vocab_size']:,}")
    if r["train"] is not None:
        tr = r["train"]
        table.add_row("training", f"{tr['optimizer']} lr {tr['lr']:g} ({_schedule_text(tr)}), "
                      f"clip {tr['clip']:g}, batch {tr['batch_size']}, bptt {tr['bptt']}"
                      + (" (jittered)" if tr.get("bptt_jitter") else "") + ", "
                      + (f"weight decay {tr['weight_decay']:g}, " if tr.get("weight_decay") else "")
                      + (f"averaging after {tr['nonmono']} stalled checks, " if tr["optimizer"] == "nt-asgd" else "")
                      + (f"{tr['accumulate']} windows a step, " if tr.get("accumulate", 1) > 1 else "")
                      + f"seed {tr['seed']}, {tr['dtype']}" + (", embedding frozen" if tr.get("freeze_embed") else ""))
        budget = [f"{k.replace('_', ' ')} {tr[k]:g}" for k in ("epochs", "max_steps", "max_minutes") if tr[k]]
        table.add_row("budget", ", ".join(budget) or "none")
    if p["step"] is not None:
        into = f" and {count(p['windows_into_epoch'], 'window')} of the next" if p["windows_into_epoch"] else ""
        table.add_row("progress", f"{count(p['epochs_done'], 'epoch')} done{into}; step {p['step']:,}, "
                      f"{p['tokens'] or 0:,} tokens, {p['elapsed_s'] or 0:.0f} s")
    table.add_row("valid perplexity", f"best {ppl(p['best_valid_ppl'])}, last {ppl(p['last_valid_ppl'])}")
    if c["path"]:
        files = c["files"]
        table.add_row("corpus", c["path"] + (f" ({len(files):,} files: {_some(files)})" if len(files) > 1 else ""))
        held = c["valid"] or ("the last 10% of each file" if c["valid_split"] == "per-file" else "the last 10%")
        table.add_row("validation", held + (f" ({_some(c['valid_files'])})" if c["valid_files"] else ""))
        if c["include"]:
            table.add_row("include", " ".join(c["include"]))
        if c["train_tokens"] is not None:
            table.add_row("tokens", f"{c['train_tokens']:,} training, {c['valid_tokens']:,} validation")
    if r["init_from"]:
        table.add_row("fine-tuned from", f"{r['init_from']['path']} (step {r['init_from']['step']})")
    if r["embed_init"]:
        e = r["embed_init"]
        table.add_row("embedding from", f"{e['path']} ({e['kind']}: {e['matched']:,} of {t['vocab_size']:,} tokens)")
    table.add_row("checkpoints", ", ".join(r["checkpoints"]))
    Console().print(table)


def _some(names: list[str], shown: int = 5) -> str:
    """The first few names and how many more: a folder of hundreds of files stays one line."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more:,} more" if more > 0 else "")


def count(n: int, word: str) -> str:
    """ "1 epoch", "2 epochs": a number with its noun."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _schedule_text(tr: dict) -> str:
    """How the run's learning rate moves, in a few words."""
    schedule = tr["schedule"]  # a checkpoint from before schedules reads as "step" (config.from_dict)
    if schedule == "cosine":
        return f"cosine to ×{tr['lr_floor']:g} at the budget's end, warm-up {tr['warmup']:.0%}"
    if schedule == "wsd":
        return f"held, then down to ×{tr['lr_floor']:g} over the last {tr['cooldown']:.0%}, warm-up {tr['warmup']:.0%}"
    if schedule == "step":
        return f"×{tr['lr_decay']:g} each epoch after epoch {tr['decay_after']}"
    return "constant"


@app.command()
@user_errors
def neighbors(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help=CHECKPOINT_HELP)],
    word: Annotated[
        str | None, typer.Argument(help="The word whose nearest words to show.", show_default=False)
    ] = None,
    n: Annotated[int, typer.Option("-n", help="How many words to show.")] = 10,
    analogy: Annotated[
        tuple[str, str, str] | None,
        typer.Option(help="A B C: the words nearest to A − B + C, e.g. --analogy king man woman.", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    threads: Threads = None,
) -> None:
    """The words nearest to WORD (or to an analogy) by cosine in the model's learned input embedding."""
    if (word is None) == (analogy is None):
        raise ConfigError("give a WORD, or --analogy A B C (not both)")
    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    model = api.load(checkpoint_path, note=_note, threads=threads)
    if analogy is None:
        found, title = model.neighbors(word, n), f"nearest to {word}"
    else:
        found, title = model.analogy(*analogy, n), "{} − {} + {}".format(*analogy)
    if as_json:
        typer.echo(json.dumps({"query": title, "neighbors": [{"token": w, "cosine": c} for w, c in found]}))
        return
    t = Table()
    t.add_column("", justify="right")
    t.add_column("token")
    t.add_column("cosine", justify="right")
    for rank, (w, c) in enumerate(found, start=1):
        t.add_row(str(rank), w, f"{c:.3f}")
    console = Console()
    console.print(f"{title} (cosine, {checkpoint_path})", markup=False, highlight=False, soft_wrap=True)  # one line
    console.print(t)


@app.command()
@user_errors
def export(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help=CHECKPOINT_HELP)],
    to: Annotated[
        str,
        typer.Option(
            "--format",
            help="torch: a folder for PyTorch (safetensors, config, tokenizer, load_torch.py); onnx: one .onnx "
            "graph; word2vec: the input embedding as a word2vec text file.",
        ),
    ],
    out: Annotated[Path, typer.Option(help="The folder (torch) or file (onnx, word2vec) to write.")],
    threads: Threads = None,
) -> None:
    """Write a trained model (or its embedding) in a format other tools read."""
    if to not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {to!r}")
    model = api.load(checkpoint_path, note=_note, threads=threads)
    cfg = model.config
    done = model.export(to, out)
    if to == "torch":
        _note(f"wrote {', '.join(f.name for f in done.files)} to {out}; `python {out / 'load_torch.py'}` loads it")
    elif to == "onnx":
        state = " and ".join(f"{name}0" for name in get_cell(cfg.cell).STATE)
        _note(f"wrote {out}: inputs ids (T, B) and {state} ({cfg.layers}, B, {cfg.hidden}); outputs logits, new state")
    else:
        skipped, written = done.left_out, cfg.vocab_size - len(done.left_out)
        left = f"; left out {len(skipped):,} tokens with whitespace in them ({', '.join(map(repr, skipped[:5]))})"
        _note(f"wrote {written:,} vectors of {cfg.embed} dimensions to {out}" + (left if skipped else ""))


@user_errors
def inspect_command(checkpoint_path: Path, file: Path, as_json: bool, threads: int | None, **options) -> None:
    """Look inside a trained model on TEXT: an HTML page of its units and gates (--html), the units that
    track features of the text (--units), how far back its gradient reaches (--gradient)."""
    if as_json and (options["html"] or (options["units"] and options["gradient"])):
        raise ConfigError("--json prints one result: use it with --units or --gradient alone")
    r = api.inspect(checkpoint_path, file, note=_note, threads=threads, **options)
    o = r.options
    if r.units is not None and o.units:
        n, total = len(r.units.reading.ids), r.units.total
        if as_json:
            typer.echo(json.dumps({"file": str(file), "tokens": n, "of": total, "units": r.units.found}))
        else:
            _print_units(r.units.found, n, total)
    if o.gradient:
        if as_json:
            objs = [{"run": name, "file": str(file), "cell": cfg.cell, **g} for name, cfg, g in r.gradients]
            typer.echo(json.dumps(objs[0] if len(objs) == 1 else {"runs": objs}))
        else:
            for name, cfg, g in r.gradients:
                _gradient_table(name, cfg, g, o.max_distance)


inspect_command.__signature__ = _signature(
    [("checkpoint_path", Annotated[Path, typer.Argument(metavar="RUN", help=CHECKPOINT_HELP)]),
     ("file", Annotated[Path, typer.Argument(metavar="TEXT", help="Text to read the model on.")])],
    options_parameters(InspectOptions),
    [("as_json", Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.",
                                              metavar="")], False),
     ("threads", Threads, None)],
)
app.command("inspect")(inspect_command)


def _print_units(found: dict, n: int, total: int) -> None:
    t = Table(title=f"Units that track features of the text ({n:,} of {total:,} tokens)")
    t.add_column("feature")
    for k in range(3):
        t.add_column(f"#{k + 1} unit, Pearson r")
    for name, us in found.items():
        if us:
            shown = [f"{u['key'].removeprefix('layers.')}[{u['unit']}] {u['r']:+.2f}" for u in us[:3]]
        else:
            shown = ["constant on this text"]
        t.add_row(name, *shown)
    Console().print(t)


def _gradient_table(name: str, cfg: ModelConfig, r: dict, max_distance: int) -> None:
    names = list(r["norm"])
    top = f"layers.{cfg.layers - 1}.h"
    # The bar: 24 characters at k = 1, three fewer per factor of 10 lost (a zero gradient: none).
    g = np.array(r["norm"][top])  # (K,)
    bars = np.zeros(len(g), dtype=int)
    alive = g > 0
    if g[0] > 0:
        bars[alive] = np.clip(np.round(24 + 3 * np.log10(g[alive] / g[0])), 0, 40).astype(int)
    title = f"{name}: ‖∂ log p(next token) / ∂ state k steps back‖, {cfg.cell}, mean of {r['positions']} positions"
    t = Table(title=title)
    t.add_column("k", justify="right")
    for n in names:
        t.add_column(n.removeprefix("layers."), justify="right")
    t.add_column(f"{top.removeprefix('layers.')}, 3 █ per factor of 10")
    shown = [k for k in (1, 2, 3, 5, 10, 20, 30, 50, 70, 100, 150, 200) if k <= max_distance] + [max_distance]
    for k in sorted(set(shown)):
        t.add_row(str(k), *(f"{r['norm'][n][k - 1]:.3g}" for n in names), "█" * int(bars[k - 1]))
    Console().print(t)


@app.command("plot")
@user_errors
def plot_command(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN...", help="One or more run directories.")],
    out: Annotated[Path, typer.Option(help="The picture to write: a .png or .svg file.")] = Path("curves.png"),
) -> None:
    # The backslash: Rich, which draws the help, reads a bare [plot] as markup and drops it.
    """Training and validation perplexity of runs against step and wall time, overlaid (needs lstmtext\\[plot])."""
    from lstmtext import plot  # imports matplotlib, which only this command needs

    curves = plot.plot(run_dirs, out)
    typer.echo(f"Wrote {out} ({len(curves)} run{'s' * (len(curves) > 1)}: {', '.join(c.name for c in curves)}).")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lstmtext {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train a NumPy LSTM language model on your text, sample from it, and measure it."""


def main() -> None:
    malloc.keep_freed_memory()
    app()
