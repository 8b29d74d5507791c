"""The command line: parse options, call the library, turn LstmTextError into one line + exit 1."""

import functools
import json
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from lstmtext import checkpoint, evaluate, malloc
from lstmtext.config import ModelConfig, TrainConfig
from lstmtext.corpus import read_text
from lstmtext.data import TokenizerOptions, check_tokenizer_options, prepare_data
from lstmtext.errors import ConfigError, LstmTextError
from lstmtext.sample import SampleOptions, run_generation
from lstmtext.train import Interrupted, Trainer, prepare_out, resume_config

app = typer.Typer(
    help="Train a NumPy LSTM language model on your text, sample from it, and measure it.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)

DEFAULT_LR = {"sgd": 20.0, "adam": 0.002, "rmsprop": 0.002}
# Options that may change when a run is resumed; everything else belongs to the run.
RESUMABLE = {"epochs", "max_steps", "max_minutes", "patience", "eval_every", "log_every", "save_every", "on_nan"}


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def user_errors(fn):
    """Our errors become one line on stderr and exit 1; Ctrl-C outside training exits 130 quietly."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LstmTextError as e:
            raise _fail(str(e)) from None
        except Interrupted as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(128 + e.signum) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(128 + signal.SIGINT) from None

    return wrapper


def _resume(resume: Path, corpus, valid, out, encoding_errors: str, given: set, budget: dict, console) -> None:
    """`train --resume`: the run keeps its settings; only the budget and the text's location may change."""
    fixed = given - RESUMABLE - {"resume", "corpus", "valid", "out", "encoding_errors"}
    if fixed:
        names = ", ".join(f"--{k.replace('_', '-')}" for k in sorted(fixed))
        raise ConfigError(
            f"{names} cannot change when resuming (the run keeps its settings); start a new run with --out instead"
        )
    path = checkpoint.resolve(resume, "last.safetensors")
    ckpt, tok = checkpoint.load_model(path)
    if ckpt.train_cfg is None or "rng" not in ckpt.progress or not ckpt.extra:
        raise ConfigError(f"{path} holds weights only; resume from a run directory's last.safetensors")
    cfg = resume_config(ckpt.train_cfg, {k: v for k, v in budget.items() if k in given})
    info = ckpt.info
    corpus_path = corpus if corpus is not None else Path(info["corpus"])
    valid_path = valid if valid is not None else (None if info["valid"] is None else Path(info["valid"]))
    run_dir = out if out is not None else path.parent
    if run_dir.resolve() != path.parent.resolve():
        prepare_out(run_dir, force=False)  # a new home for the run: writable, and not another run's
    data = prepare_data(corpus_path, valid_path, None, encoding_errors, console.print, tokenizer=tok, cache_dir=run_dir)
    if (data.info["train_sha256"], data.info["valid_sha256"]) != (info["train_sha256"], info["valid_sha256"]):
        raise ConfigError(
            f"{corpus_path} is not the text this run was trained on (it changed since); resume needs the same corpus"
        )
    console.print(f"Resuming {path} at epoch {ckpt.progress['epoch']}, step {ckpt.progress['step']:,}.")
    Trainer(data, ckpt.model_cfg, cfg, run_dir, console, resume_from=ckpt).run()


@app.command()
@user_errors
def train(
    ctx: typer.Context,
    corpus: Annotated[
        Path | None, typer.Argument(help="A UTF-8 text file, or a directory of .txt files.", show_default=False)
    ] = None,
    valid: Annotated[Path | None, typer.Option(help="Held-out text; default: the last 10% of CORPUS.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory; default: runs/<corpus name>.")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this directory (or from this checkpoint file).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Start over in an --out that already holds a run.")] = False,
    tokenizer: Annotated[str, typer.Option(help="word, char or bpe.")] = "word",
    vocab_size: Annotated[int, typer.Option(help="Largest vocabulary, special tokens included.")] = 10000,
    min_freq: Annotated[int, typer.Option(help="Words seen fewer times become <unk>.")] = 1,
    lowercase: Annotated[bool, typer.Option(help="Lowercase the text (word tokenizer).")] = False,
    word_split: Annotated[
        str, typer.Option(help="punct: split words and punctuation; whitespace: split on spaces only (Penn Treebank).")
    ] = "punct",
    encoding_errors: Annotated[
        str, typer.Option(help="strict: stop at invalid UTF-8; replace: use U+FFFD and go on.")
    ] = "strict",
    cell: Annotated[str, typer.Option(help="Recurrent cell: lstm, gru, rnn, peephole or cifg.")] = "lstm",
    nonlinearity: Annotated[str, typer.Option(help="The rnn cell's nonlinearity: tanh or relu.")] = "tanh",
    embed: Annotated[int, typer.Option(help="Embedding size E.")] = 200,
    hidden: Annotated[int, typer.Option(help="Hidden size H of every layer.")] = 200,
    layers: Annotated[int, typer.Option(help="Stacked recurrent layers.")] = 2,
    dropout: Annotated[float, typer.Option(help="Dropout on non-recurrent connections.")] = 0.2,
    tie: Annotated[bool, typer.Option(help="Tie the output head to the embedding (needs --embed = --hidden).")] = False,
    init_scale: Annotated[float, typer.Option(help="Weights start uniform in ±init-scale.")] = 0.1,
    batch_size: Annotated[int, typer.Option(help="Parallel streams B.")] = 20,
    bptt: Annotated[int, typer.Option(help="Window length T of truncated backpropagation through time.")] = 35,
    optimizer: Annotated[str, typer.Option(help="sgd, adam or rmsprop.")] = "sgd",
    lr: Annotated[
        float | None,
        typer.Option(
            help="Learning rate (loss is the mean per token).", show_default="20 for sgd, 0.002 for adam and rmsprop"
        ),
    ] = None,
    lr_decay: Annotated[float, typer.Option(help="Multiply lr by this each epoch after --decay-after.")] = 0.5,
    decay_after: Annotated[int, typer.Option(help="Epochs at the full learning rate.")] = 4,
    clip: Annotated[float, typer.Option(help="Largest global gradient norm (0: no clipping).")] = 0.25,
    weight_decay: Annotated[float, typer.Option(help="L2 penalty on weight matrices.")] = 0.0,
    epochs: Annotated[int, typer.Option(help="Passes over the training text (0: no limit).")] = 6,
    max_steps: Annotated[int, typer.Option(help="Stop after this many windows (0: no limit).")] = 0,
    max_minutes: Annotated[
        float, typer.Option(help="Stop after this many minutes of the run, validation included (0: no limit).")
    ] = 0.0,
    eval_every: Annotated[int, typer.Option(help="Also validate every N steps (0: only after epochs).")] = 0,
    patience: Annotated[int, typer.Option(help="Stop after K validations without improvement (0: never).")] = 0,
    log_every: Annotated[int, typer.Option(help="Steps per line in metrics.jsonl.")] = 50,
    save_every: Annotated[int, typer.Option(help="Also save last.safetensors every N steps (0: after epochs).")] = 0,
    on_nan: Annotated[str, typer.Option(help="On a non-finite loss or gradient: stop, or skip the window.")] = "stop",
    seed: Annotated[int, typer.Option(help="Seed for initialization and dropout.")] = 1234,
    dtype: Annotated[str, typer.Option(help="float32, or float64 (slower) to match a reference trainer.")] = "float32",
) -> None:
    """Train a language model on CORPUS; checkpoints and metrics go to --out."""
    console = Console()
    say = console.print
    # Options the user typed (not defaults): on --resume only the budget may change.
    given = {k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"}
    budget = {k: ctx.params[k] for k in RESUMABLE}
    if resume is not None:
        _resume(resume, corpus, valid, out, encoding_errors, given, budget, console)
        return
    if corpus is None:
        raise ConfigError("give a CORPUS to train on (a text file or a directory of .txt files), or --resume RUN_DIR")
    if optimizer not in DEFAULT_LR:
        raise ConfigError(f"--optimizer must be sgd, adam or rmsprop, got {optimizer!r}")
    cfg = TrainConfig(
        batch_size=batch_size,
        bptt=bptt,
        optimizer=optimizer,
        lr=DEFAULT_LR[optimizer] if lr is None else lr,
        lr_decay=lr_decay,
        decay_after=decay_after,
        clip=clip,
        weight_decay=weight_decay,
        seed=seed,
        dtype=dtype,
        **budget,
    )
    # Check the model options before the (possibly slow) tokenization; vocab_size is known later.
    model_cfg = ModelConfig(
        vocab_size=1,
        embed=embed,
        hidden=hidden,
        layers=layers,
        cell=cell,
        dropout=dropout,
        tie=tie,
        init_scale=init_scale,
        nonlinearity=nonlinearity,
    )
    run_dir = out if out is not None else Path("runs") / corpus.stem
    tok_opts = TokenizerOptions(tokenizer, vocab_size, min_freq, lowercase, word_split)
    check_tokenizer_options(tok_opts)  # before --force deletes an old run, not after
    prepare_out(run_dir, force)
    data = prepare_data(corpus, valid, tok_opts, encoding_errors, say, cache_dir=run_dir)
    if valid is None:
        try:
            with open(run_dir / "valid.txt", "w", encoding="utf-8") as f:
                for piece in data.valid_part.pieces():
                    f.write(piece)
        except OSError as e:
            raise ConfigError(f"cannot write {run_dir / 'valid.txt'}: {e.strerror or e}") from None
        say(f"The held-out text is saved as {run_dir / 'valid.txt'} for `lstmtext eval`.")
    model_cfg = replace(model_cfg, vocab_size=data.tokenizer.vocab_size)
    say(
        f"{data.info['train_tokens']:,} training tokens, {data.info['valid_tokens']:,} validation tokens, "
        f"vocabulary {model_cfg.vocab_size:,} ({tokenizer})."
    )
    Trainer(data, model_cfg, cfg, run_dir, console).run()


@app.command()
@user_errors
def generate(
    checkpoint_path: Annotated[
        Path,
        typer.Argument(metavar="CHECKPOINT", help="A run directory (uses best.safetensors) or a .safetensors file."),
    ],
    prompt: Annotated[str, typer.Option(help="Text to start from.")] = "",
    length: Annotated[int, typer.Option(help="Tokens to generate.")] = 100,
    temperature: Annotated[float, typer.Option(help="Below 1: safer text; above 1: wilder.")] = 1.0,
    top_k: Annotated[int, typer.Option(help="Sample among the k most likely tokens (0: all).")] = 0,
    top_p: Annotated[
        float, typer.Option(help="Sample among the most likely tokens holding this much probability.")
    ] = 1.0,
    greedy: Annotated[bool, typer.Option(help="Always take the most likely token.")] = False,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible samples.")] = None,
    num_samples: Annotated[int, typer.Option(help="Samples to draw, together as one batch.")] = 1,
    stop: Annotated[
        list[str] | None,
        typer.Option(help="End a sample at this text; '<eos>' ends it at a line end token. Repeatable."),
    ] = None,
) -> None:
    """Generate text from a trained model; it streams to stdout as it is produced."""
    opts = SampleOptions(
        length=length, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, num_samples=num_samples
    )
    ckpt, tok = checkpoint.load_model(checkpoint.resolve(checkpoint_path, "best.safetensors"))
    run_generation(ckpt, tok, prompt, opts, np.random.default_rng(seed), stop or [], sys.stdout)


@app.command(name="eval")
@user_errors
def eval_(
    checkpoint_path: Annotated[
        Path,
        typer.Argument(metavar="CHECKPOINT", help="A run directory (uses best.safetensors) or a .safetensors file."),
    ],
    file: Annotated[Path, typer.Argument(help="Held-out text to score.")],
    batch_size: Annotated[int, typer.Option(help="Parallel streams while scoring.")] = 10,
    bptt: Annotated[int, typer.Option(help="Window length while scoring.")] = 35,
    encoding_errors: Annotated[str, typer.Option(help="strict or replace.")] = "strict",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
) -> None:
    """Score FILE with a trained model: loss, perplexity per token and per word, bits per byte."""
    if batch_size < 1 or bptt < 1:
        raise ConfigError("--batch-size and --bptt must be at least 1")
    ckpt, tok = checkpoint.load_model(checkpoint.resolve(checkpoint_path, "best.safetensors"))
    text = read_text(file, encoding_errors)
    ids = tok.encode(text)
    if len(ids) < 2:
        raise ConfigError(f"{file} has fewer than 2 tokens; nothing to score")
    total, n = evaluate.score(ckpt.params, ckpt.model_cfg, ids, batch_size, bptt)
    r = evaluate.report(total, n, text, tok.count_unk(ids[1:]))
    if as_json:
        typer.echo(json.dumps({"file": str(file), **r}))
    else:
        t = Table(title=f"{file}", show_header=False)
        t.add_row("tokens evaluated", f"{r['tokens']:,}")
        t.add_row("loss (nats/token)", f"{r['loss']:.4f}")
        t.add_row("perplexity per token", f"{r['perplexity']:.2f}")
        t.add_row("perplexity per word", f"{r['word_perplexity']:.2f}  ({r['words']:,} words incl. line ends)")
        t.add_row("bits per byte", f"{r['bits_per_byte']:.4f}")
        t.add_row("<unk> rate", f"{100 * r['unk_rate']:.2f}%")
        Console().print(t)
    if r["unk_rate"] > 0.05:
        typer.echo(
            f"warning: {100 * r['unk_rate']:.1f}% of the tokens are <unk>; "
            f"the perplexity flatters the model on this text",
            err=True,
        )


def main() -> None:
    malloc.keep_freed_memory()
    app()
