"""The command line: parse options, call the library, turn LstmTextError into one line + exit 1."""

import functools
import inspect
import json
import signal
import sys
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from lstmtext import api, checkpoint, malloc, mpi, runs
from lstmtext.cells import get_cell
from lstmtext.config import EvalOptions, ModelConfig
from lstmtext.corpus import REPLACEMENT, read_text
from lstmtext.errors import ConfigError, LstmTextError
from lstmtext.export import FORMATS
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


def options_parameters(options) -> list[inspect.Parameter]:
    """A command's parameters built from an options dataclass (TrainOptions, SampleOptions,
    EvalOptions): one list of names, defaults and help texts for the command and the API."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = []
    for f in fields(options):
        m = f.metadata
        if m["argument"]:
            info = typer.Argument(help=m["help"], show_default=m["show_default"])
        elif f.type is bool:  # a flag alone: a --no-… twin would give every option an empty column
            info = typer.Option(f"--{f.name.replace('_', '-')}", help=m["help"], show_default=False, metavar="")
        else:  # short metavars leave the help text room at 80 columns ("<list[str]>" took 13 of them)
            info = typer.Option(help=m["help"], show_default=m["show_default"], metavar=_metavar(f.type))
        params.append(inspect.Parameter(f.name, kind, default=f.default, annotation=Annotated[f.type, info]))
    return params


def _signature(*groups) -> inspect.Signature:
    """A command's signature from groups of parameters: (name, annotation[, default]) tuples, or
    options_parameters(...) lists."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = []
    for group in groups:
        for p in group:
            if isinstance(p, tuple):
                name, annotation, *default = p
                p = inspect.Parameter(name, kind, annotation=annotation, default=default[0] if default else
                                      inspect.Parameter.empty)  # fmt: skip
            params.append(p)
    return inspect.Signature(params)


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
    opts = EvalOptions(**options)
    model = api.load(checkpoint_path, note=_note, warn=_warn, threads=threads)
    text = read_text(file, encoding_errors)
    if encoding_errors == "replace" and REPLACEMENT in text:
        n = text.count(REPLACEMENT)
        typer.echo(f"--encoding-errors replace read {n:,} invalid UTF-8 sequence{'s' * (n != 1)} as U+FFFD.", err=True)
    r = model.score(text, opts.batch_size, opts.bptt, name=str(file))
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
    table.add_row("parameters", f"{m['parameters']:,}")
    if r["size_choice"]:
        table.add_row("size chosen", r["size_choice"])
    if r.get("vocab_choice"):
        table.add_row("vocabulary chosen", r["vocab_choice"])
    table.add_row("tokenizer", f"{t['kind']}, vocabulary {t['vocab_size']:,}")
    if r["train"] is not None:
        tr = r["train"]
        table.add_row("training", f"{tr['optimizer']} lr {tr['lr']:g} ({_schedule_text(tr)}), "
                      f"clip {tr['clip']:g}, batch {tr['batch_size']}, bptt {tr['bptt']}, "
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


@app.command()
@user_errors
def inspect(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="RUN", help=CHECKPOINT_HELP)],
    file: Annotated[Path, typer.Argument(metavar="TEXT", help="Text to read the model on.")],
    html_out: Annotated[
        Path | None,
        typer.Option("--html", help="Write one self-contained HTML page: units, saturation, surprise, gradient."),
    ] = None,
    units: Annotated[bool, typer.Option("--units", help="Print the units that track features of the text.")] = False,
    gradient: Annotated[
        bool, typer.Option("--gradient", help="Measure ‖∂ log p(next token) / ∂ state k steps back‖ by k.")
    ] = False,
    feature: Annotated[
        list[str] | None,
        typer.Option(
            help="Another feature to find units for, NAME=REGEX (1 on tokens inside a match); repeatable. "
            "Built in: quotes, brackets, line position, word start, line end."
        ),
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="--html/--units: read only the first N tokens of TEXT.")] = 2000,
    pictures: Annotated[
        Path | None, typer.Option(help="--html: also save its pictures as PNG files in this folder.")
    ] = None,
    max_distance: Annotated[int, typer.Option(help="--gradient and --html: the largest k.")] = 100,
    positions: Annotated[int, typer.Option(help="--gradient and --html: positions of the text averaged over.")] = 20,
    vs: Annotated[
        list[Path] | None, typer.Option(help="--gradient: also measure this run on TEXT, for comparison; repeatable.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="--gradient: also draw the curves into this .png or .svg.")] = None,
    encoding_errors: Annotated[str, typer.Option(help="strict or replace.")] = "strict",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    threads: Threads = None,
) -> None:
    """Look inside a trained model on TEXT: an HTML page of its units and gates (--html), the units that
    track features of the text (--units), how far back its gradient reaches (--gradient)."""
    from lstmtext import inside, plot
    from lstmtext.threads import choosing

    if not (html_out or units or gradient):
        raise ConfigError("say what to inspect: --html PAGE.html, --units or --gradient")
    if as_json and (html_out or (units and gradient)):
        raise ConfigError("--json prints one result: use it with --units or --gradient alone")
    if max_distance < 1 or positions < 1 or max_tokens < 2:
        raise ConfigError("--max-distance and --positions must be at least 1, --max-tokens at least 2")
    if (vs or out) and not gradient:
        raise ConfigError("--vs and --out belong to --gradient")
    if pictures is not None and html_out is None:
        raise ConfigError("--pictures saves the pictures of --html; add --html PAGE.html")
    if feature and not (html_out or units):
        raise ConfigError("--feature belongs to --html and --units")
    if out is not None:
        plot.check_format(out)
    if html_out is not None:
        if html_out.suffix.lower() not in (".html", ".htm"):
            raise ConfigError(f"--html must end in .html, got {html_out.name}")
        if pictures is not None:
            plot.pyplot("lstmtext inspect --pictures")  # before the work: without matplotlib, say so first
        elif not plot.available():
            _note(f"Without matplotlib the page leaves out its three pictures ({plot.INSTALL} draws them).")
    extra = dict(inside.parse_feature(f) for f in feature or [])
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    found_path = runs.find_checkpoint(checkpoint_path, _note)
    ckpt, tok = checkpoint.load_model(found_path)
    text = read_text(file, encoding_errors)
    with choosing(threads) as tuner:
        _inspect(ckpt, tok, found_path, checkpoint_path, file, text, html_out, units, gradient, extra, max_tokens,
                 pictures, max_distance, positions, vs, out, as_json, tuner)  # fmt: skip


def _inspect(ckpt, tok, found_path, checkpoint_path, file, text, html_out, units, gradient, extra, max_tokens,
             pictures, max_distance, positions, vs, out, as_json, tuner) -> None:  # fmt: skip
    """inspect's work once its options are checked and the model and the text are read."""
    from lstmtext import inside, page

    cfg = ckpt.model_cfg
    if html_out or units:
        found = inside.find_units(ckpt.params, cfg, tok, text, extra, max_tokens, tuner)
    if html_out is not None:
        info = page.PageInfo(str(checkpoint_path), str(file), tok.kind, cfg.cell, cfg.layers, cfg.hidden)
        html_text, pics = page.make_page(
            ckpt.params, cfg, found, info, max_distance, positions, found_path.parent, tuner
        )
        html_out.parent.mkdir(parents=True, exist_ok=True)
        html_out.write_text(html_text, encoding="utf-8")
        n = len(found.reading.ids)
        _note(f"Wrote {html_out} ({len(html_text.encode()) / 1e6:.1f} MB, {n:,} of {found.total:,} tokens of {file}).")
        if pictures is not None:
            pictures.mkdir(parents=True, exist_ok=True)
            for name, png in pics.items():
                if png is not None:
                    (pictures / f"{name}.png").write_bytes(png)
                    _note(f"Wrote {pictures / name}.png.")
    if units:
        n = len(found.reading.ids)
        if as_json:
            typer.echo(json.dumps({"file": str(file), "tokens": n, "of": found.total, "units": found.found}))
        else:
            _print_units(found.found, n, found.total)
    if gradient:
        _gradient(checkpoint_path, ckpt, tok, text, file, vs or [], out, max_distance, positions, as_json, tuner)


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


def _gradient(run, ckpt, tok, text, file, vs, out, max_distance, positions, as_json, tuner) -> None:
    """inspect --gradient: the table (or JSON) for RUN and each --vs run, and their picture."""
    from lstmtext import inside, plot

    results = []
    for name, (c, t) in [(str(run), (ckpt, tok))] + [
        (str(v), checkpoint.load_model(runs.find_checkpoint(v, _note))) for v in vs
    ]:
        r = inside.gradient_norms(c.params, c.model_cfg, t.encode(text), max_distance, positions, tuner)
        results.append((name, c.model_cfg, r))
    if as_json:
        objs = [{"run": name, "file": str(file), "cell": cfg.cell, **r} for name, cfg, r in results]
        typer.echo(json.dumps(objs[0] if len(objs) == 1 else {"runs": objs}))
    else:
        for name, cfg, r in results:
            _gradient_table(name, cfg, r, max_distance)
    if out is not None:
        names = plot.names_for([Path(name) for name, _, _ in results])  # "lstm", not "runs/inside/lstm"
        plot.save(plot.gradient_figure([(n, r) for n, (_, _, r) in zip(names, results, strict=True)]), out)
        _note(f"Wrote {out}.")


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
