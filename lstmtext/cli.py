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

from lstmtext import __version__, checkpoint, evaluate, malloc, runs, vectors
from lstmtext import export as export_
from lstmtext.config import ModelConfig, TrainConfig
from lstmtext.corpus import read_text
from lstmtext.data import TokenizerOptions, check_tokenizer_options, prepare_data
from lstmtext.errors import ConfigError, LstmTextError
from lstmtext.sample import SampleOptions, run_generation
from lstmtext.train import Interrupted, Trainer, finished_reason, initial_params, prepare_out, resume_config

app = typer.Typer(
    help="Train a NumPy LSTM language model on your text, sample from it, and measure it.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)

DEFAULT_LR = {"sgd": 20.0, "adam": 0.002, "rmsprop": 0.002}
# Options that may change when a run is resumed; everything else belongs to the run.
RESUMABLE = {
    "epochs", "max_steps", "max_minutes", "patience", "eval_every", "log_every", "save_every", "sample_every",
    "on_nan", "threads",
}
# Options that only say where things are or what to print; they never belong to a run.
LOCATIONS = {"resume", "init_from", "corpus", "valid", "out", "encoding_errors", "list_files", "embed_init"}
UNK_WARN = 0.05  # above this <unk> rate a perplexity flatters the model


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


def _warn(message: str) -> None:
    typer.echo(message if message.startswith("warning: ") else f"warning: {message}", err=True)


def _plain(console: Console):
    """console.print for our own lines: file names may hold [brackets], which are not rich markup."""
    return functools.partial(console.print, markup=False, highlight=False)


def _note(message: str) -> None:
    """A line about what was done for the user, on stderr so that stdout stays the result."""
    typer.echo(message, err=True)


CHECKPOINT_HELP = "A run directory (best.safetensors, or last.safetensors before the first validation) or a file."


def _resume(resume: Path, args: dict, given: set, console) -> None:
    """`train --resume`: the run keeps its settings; the budget, the text's location and what is
    printed may change. Options typed again with the run's own values are accepted."""
    if "force" in given:
        raise ConfigError("--force starts a run over and --resume continues one; use one of them")
    path = checkpoint.resolve(resume, "last.safetensors")
    ckpt, tok = checkpoint.load_model(path)
    if "init_from" in given:  # accepted when it names the run's own source (the command typed again)
        source = ckpt.info.get("init_from") or {}
        if source.get("path") != str(runs.find_checkpoint(args["init_from"]).resolve()):
            raise ConfigError(
                f"--init-from starts a new run from a checkpoint; {path.parent} was "
                + (f"fine-tuned from {source['path']}" if source else "not fine-tuned")
                + ", so it cannot be resumed with another --init-from"
            )
    if "embed_init" in given and (ckpt.info.get("embed_init") or {}).get("path") != str(
        Path(args["embed_init"]).resolve()
    ):
        raise ConfigError(
            f"--embed-init sets a new run's starting embedding; {path.parent} did not start from "
            f"{args['embed_init']}, so it cannot be resumed with it"
        )
    if ckpt.train_cfg is None or "rng" not in ckpt.progress or not ckpt.extra:
        raise ConfigError(f"{path} holds weights only; resume from a run directory's last.safetensors")
    runs.check_resume_options(ckpt, tok, {k: args[k] for k in given - RESUMABLE - LOCATIONS})
    cfg = resume_config(ckpt.train_cfg, {k: args[k] for k in RESUMABLE if k in given})
    done = finished_reason(cfg, ckpt.progress)
    if done is not None:
        typer.echo(  # plain echo: rich would wrap the line at the terminal's width
            f"{path.parent} is already finished: {done}, at epoch {ckpt.progress['epoch']}, step "
            f"{ckpt.progress['step']:,}. To train it further, resume with a larger --epochs, --max-steps, "
            "--max-minutes or --patience (0 lifts a limit)."
        )
        return
    info = ckpt.info
    corpus, valid, out = args["corpus"], args["valid"], args["out"]
    corpus_path = corpus if corpus is not None else Path(info["corpus"])
    valid_path = valid if valid is not None else (None if info["valid"] is None else Path(info["valid"]))
    run_dir = out if out is not None else path.parent
    if run_dir.resolve() != path.parent.resolve():
        prepare_out(run_dir, force=False)  # a new home for the run: writable, and not another run's
    # Runs from before folders were read recursively took the top-level *.txt files only.
    old_folder = "files" not in info and Path(corpus_path).is_dir()
    data = prepare_data(
        corpus_path, valid_path, None, args["encoding_errors"], _plain(console), tokenizer=tok, cache_dir=run_dir,
        include=tuple(info.get("include", ("/*.txt",) if old_folder else ())),
        valid_split=info.get("valid_split", "end"),
        list_files=args["list_files"],
    )
    if (data.info["train_sha256"], data.info["valid_sha256"]) != (info["train_sha256"], info["valid_sha256"]):
        raise ConfigError(
            f"{corpus_path} is not the text this run was trained on (it changed since); resume needs the same corpus"
        )
    data.info = {**info, **data.info}  # the text's new location, if it moved; the run's other records
    console.print(f"Resuming {path} at epoch {ckpt.progress['epoch']}, step {ckpt.progress['step']:,}.")
    Trainer(data, ckpt.model_cfg, cfg, run_dir, console, resume_from=ckpt).run()


def _unk_report(tok, ids, what: str, say) -> None:
    """Fine-tuning keeps the source's vocabulary: say how much of the new text it cannot name."""
    if tok.unk_id is None or len(ids) == 0:
        return
    rate = tok.count_unk(ids) / len(ids)
    say(f"<unk> rate of {what} with the checkpoint's vocabulary: {100 * rate:.2f}%")
    if rate > UNK_WARN:
        _warn(
            f"{100 * rate:.1f}% of {what} is <unk> for the checkpoint's vocabulary: the model cannot learn "
            "those words; train from scratch (without --init-from) for a vocabulary of the new text"
        )


@app.command()
@user_errors
def train(
    ctx: typer.Context,
    corpus: Annotated[
        Path | None,
        typer.Argument(
            help="A UTF-8 text file, or a folder: every text file in it and its subfolders (see --include).",
            show_default=False,
        ),
    ] = None,
    valid: Annotated[Path | None, typer.Option(help="Held-out text; default: the last 10% of CORPUS.")] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(
            help="Only files matching this glob, e.g. '*.md' (any depth) or 'src/**/*.py'. Repeatable.",
            show_default="every UTF-8 text file",
        ),
    ] = None,
    valid_split: Annotated[
        str, typer.Option(help="end: hold out the last 10% of the corpus; per-file: the last 10% of each file.")
    ] = "end",
    list_files: Annotated[bool, typer.Option(help="Print every file read and every file skipped (and why).")] = False,
    out: Annotated[Path | None, typer.Option(help="Run directory; default: runs/<corpus name>.")] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the run in this directory (or from this checkpoint file) with its settings."),
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Fine-tune: start a new run from this run's (or checkpoint's) weights and vocabulary, "
            "with a fresh optimizer.",
        ),
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
    cell: Annotated[
        str, typer.Option(help="Recurrent cell: lstm, gru, rnn, peephole, cifg, mingru, minlstm or slstm.")
    ] = "lstm",
    nonlinearity: Annotated[str, typer.Option(help="The rnn cell's nonlinearity: tanh or relu.")] = "tanh",
    embed: Annotated[int, typer.Option(help="Embedding size E.")] = 200,
    hidden: Annotated[int, typer.Option(help="Hidden size H of every layer.")] = 200,
    layers: Annotated[int, typer.Option(help="Stacked recurrent layers.")] = 2,
    dropout: Annotated[float, typer.Option(help="Dropout on non-recurrent connections.")] = 0.2,
    tie: Annotated[bool, typer.Option(help="Tie the output head to the embedding (needs --embed = --hidden).")] = False,
    embed_init: Annotated[
        Path | None,
        typer.Option(
            help="Start the embedding from word vectors: a word2vec (text or binary) or GloVe file. "
            "Its dimension sets --embed.",
            show_default=False,
        ),
    ] = None,
    freeze_embed: Annotated[bool, typer.Option(help="Keep the embedding as it starts (not trained).")] = False,
    init_scale: Annotated[float, typer.Option(help="--init uniform: weights start uniform in ±init-scale.")] = 0.1,
    init: Annotated[
        str,
        typer.Option(
            help="Initialisation: uniform (±init-scale, Zaremba 2014), torch (PyTorch's defaults) or orthogonal "
            "(orthogonal recurrent blocks, Saxe 2014)."
        ),
    ] = "uniform",
    chrono: Annotated[
        int, typer.Option(help="Chrono gate biases (Tallec & Ollivier 2018) for gaps up to this many tokens; 0 = off.")
    ] = 0,
    heads: Annotated[int, typer.Option(help="--cell slstm: block-diagonal recurrent heads (1: dense).")] = 1,
    softmax: Annotated[
        str, typer.Option(help="Output head: full, or adaptive (Grave et al. 2017), with --cutoffs.")
    ] = "full",
    cutoffs: Annotated[
        str, typer.Option(help="--softmax adaptive: where the frequency-sorted clusters start, e.g. 2000,6000.")
    ] = "",
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
    sample_every: Annotated[
        int, typer.Option(help="Print a short sample every N steps and at each validation (0: never).")
    ] = 0,
    threads: Annotated[
        int, typer.Option(help="BLAS threads (0: keep choosing the faster count while training).")
    ] = 0,
    on_nan: Annotated[
        str, typer.Option(help="On a diverged window (non-finite, or loss > 100 log V): stop, or skip it.")
    ] = "stop",
    seed: Annotated[int, typer.Option(help="Seed for initialization and dropout.")] = 1234,
    dtype: Annotated[str, typer.Option(help="float32, or float64 (slower) to match a reference trainer.")] = "float32",
) -> None:
    """Train a language model on CORPUS; checkpoints and metrics go to --out."""
    console = Console()
    say = _plain(console)
    args = dict(ctx.params)
    args["include"] = list(include or [])
    # Options the user typed (not defaults): on --resume they must agree with the run.
    given = {k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"}
    budget = {k: ctx.params[k] for k in RESUMABLE}
    if resume is not None:
        _resume(resume, args, given, console)
        return
    if corpus is None:
        raise ConfigError("give a CORPUS to train on (a text file or a folder), or --resume RUN_DIR")
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
        freeze_embed=freeze_embed,
        **budget,
    )
    source = tok = None
    if init_from is not None:
        source_path = runs.find_checkpoint(init_from, say)
        source, tok = checkpoint.load_model(source_path)
        runs.check_init_options(source, tok, {k: args[k] for k in given})
        shape = {k: getattr(source.model_cfg, k) for k in runs.SHAPE_OPTIONS}
        embed, hidden, layers, cell, tie, nonlinearity, softmax, cutoffs, heads = (shape[k] for k in runs.SHAPE_OPTIONS)
        if "dropout" not in given:
            dropout = source.model_cfg.dropout
        init, init_scale, chrono = source.model_cfg.init, source.model_cfg.init_scale, source.model_cfg.chrono
    if embed_init is not None:
        if source is not None:
            raise ConfigError("--embed-init starts a new embedding and --init-from keeps its source's; use one of them")
        kind, dim = vectors.file_kind(embed_init)
        if "embed" in given and embed != dim:
            raise ConfigError(
                f"{embed_init} holds {dim}-dimensional vectors but --embed is {embed}: use --embed {dim} "
                "(or leave --embed out)"
            )
        embed = dim
    # Check the model options before the (possibly slow) tokenization; vocab_size is known later.
    if freeze_embed and tie:
        raise ConfigError("--freeze-embed with --tie would freeze the output head too; use one of them")
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
        init=init,
        chrono=chrono,
        softmax=softmax,
        cutoffs=cutoffs,
        heads=heads,
    )
    run_dir = out if out is not None else Path("runs") / corpus.resolve().name.removesuffix(corpus.suffix)
    tok_opts = TokenizerOptions(tokenizer, vocab_size, min_freq, lowercase, word_split)
    if tok is not None:
        tok_opts = TokenizerOptions(tok.kind, tok.vocab_size, min_freq, tok.lowercase, tok.word_split)
    check_tokenizer_options(tok_opts)  # before --force deletes an old run, not after
    prepare_out(run_dir, force)
    data = prepare_data(
        corpus, valid, tok_opts, encoding_errors, say, tokenizer=tok, cache_dir=run_dir,
        include=tuple(args["include"]), valid_split=valid_split, list_files=list_files,
    )
    # What the tokenizer was asked for (resume compares the options typed again with these).
    data.info["tokenizer_options"] = vars(tok_opts) if source is None else source.info.get("tokenizer_options")
    if source is not None:
        data.info["init_from"] = {"path": str(source_path.resolve()), "step": source.progress.get("step")}
        _unk_report(tok, data.train_ids, "the training text", say)
    elif "vocab_size" in given and data.tokenizer.vocab_size < vocab_size:
        say(
            f"--vocab-size {vocab_size:,} is more than the text has: the vocabulary has "
            f"{data.tokenizer.vocab_size:,} tokens."
        )
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
        f"vocabulary {model_cfg.vocab_size:,} ({data.tokenizer.kind})."
    )
    init = None if source is None else source.params
    if source is not None:
        say(f"Fine-tuning from {source_path} (step {source.progress.get('step', 0):,}) with a fresh optimizer.")
    if embed_init is not None:
        init = initial_params(model_cfg, cfg)
        data.info["embed_init"] = _embed_from(embed_init, data, init, say)
    Trainer(data, model_cfg, cfg, run_dir, console, init_params=init).run()


def _embed_from(path: Path, data, params: dict, say) -> dict:
    """--embed-init: put the file's vectors into the rows of the words it has; say how much it covers."""
    found = vectors.match(path, vectors.token_words(data.tokenizer))
    V = data.tokenizer.vocab_size
    if len(found.rows) == 0:
        raise ConfigError(
            f"none of the vocabulary's {V:,} tokens is in {path} ({found.read:,} words, checked as written and "
            "lowercased); is it the right file, and a word model (--tokenizer word)?"
        )
    params["embed.W"][found.rows] = found.vectors
    covered = float(np.isin(data.train_ids, found.rows).mean()) if len(data.train_ids) else 0.0
    say(
        f"--embed-init: {len(found.rows):,} of {V:,} tokens take a vector from {path} ({found.kind}, "
        f"{found.read:,} words, {found.dim} dimensions): {found.exact:,} as written, {found.lowered:,} lowercased; "
        f"they are {100 * covered:.1f}% of the training text. The other {V - len(found.rows):,} start as --init "
        "draws them."
    )
    return {"path": str(path.resolve()), "kind": found.kind, "matched": len(found.rows), "exact": found.exact,
            "lowered": found.lowered, "train_coverage": covered}


@app.command()
@user_errors
def generate(
    checkpoint_path: Annotated[
        Path,
        typer.Argument(metavar="CHECKPOINT", help=CHECKPOINT_HELP),
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
    allow_unk: Annotated[bool, typer.Option(help="Let samples contain <unk> (left out by default).")] = False,
) -> None:
    """Generate text from a trained model; it streams to stdout as it is produced."""
    opts = SampleOptions(
        length=length,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        greedy=greedy,
        num_samples=num_samples,
        allow_unk=allow_unk,
    )
    ckpt, tok = checkpoint.load_model(runs.find_checkpoint(checkpoint_path, _note))
    run_generation(ckpt, tok, prompt, opts, np.random.default_rng(seed), stop or [], sys.stdout, warn=_warn)


@app.command(name="eval")
@user_errors
def eval_(
    checkpoint_path: Annotated[
        Path,
        typer.Argument(metavar="CHECKPOINT", help=CHECKPOINT_HELP),
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
    ckpt, tok = checkpoint.load_model(runs.find_checkpoint(checkpoint_path, _note))
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
    if r["unk_rate"] > UNK_WARN:
        typer.echo(
            f"warning: {100 * r['unk_rate']:.1f}% of the tokens are <unk>; "
            f"the perplexity flatters the model on this text",
            err=True,
        )


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
        return "—" if x is None else f"{x:.2f}"

    table = Table(title=str(checkpoint_path), show_header=False, title_justify="left")
    table.add_row("model", f"{m['cell']} {m['layers']}×{m['hidden']}, embed {m['embed']}"
                  + (f", {m['heads']} heads" if m.get("heads", 1) > 1 else "")
                  + (", tied head" if m["tie"] else "")
                  + (f", adaptive softmax {m['cutoffs']}" if m.get("softmax") == "adaptive" else "")
                  + f", dropout {m['dropout']:g}")
    table.add_row("parameters", f"{m['parameters']:,}")
    table.add_row("tokenizer", f"{t['kind']}, vocabulary {t['vocab_size']:,}")
    if r["train"] is not None:
        tr = r["train"]
        table.add_row("training", f"{tr['optimizer']} lr {tr['lr']:g} (×{tr['lr_decay']:g} after epoch "
                      f"{tr['decay_after']}), clip {tr['clip']:g}, batch {tr['batch_size']}, bptt {tr['bptt']}, "
                      f"seed {tr['seed']}, {tr['dtype']}" + (", embedding frozen" if tr.get("freeze_embed") else ""))
        budget = [f"{k.replace('_', ' ')} {tr[k]:g}" for k in ("epochs", "max_steps", "max_minutes") if tr[k]]
        table.add_row("budget", ", ".join(budget) or "none")
    if p["step"] is not None:
        into = f" and {p['windows_into_epoch']:,} windows of the next" if p["windows_into_epoch"] else ""
        table.add_row("progress", f"{p['epochs_done']} epochs done{into}; step {p['step']:,}, "
                      f"{p['tokens'] or 0:,} tokens, {p['elapsed_s'] or 0:.0f} s")
    table.add_row("valid perplexity", f"best {ppl(p['best_valid_ppl'])}, last {ppl(p['last_valid_ppl'])}")
    if c["path"]:
        files = c["files"]
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        table.add_row("corpus", c["path"] + (f" ({len(files)} files: {shown})" if len(files) > 1 else ""))
        held = c["valid"] or ("the last 10% of each file" if c["valid_split"] == "per-file" else "the last 10%")
        table.add_row("validation", held + (f" ({', '.join(c['valid_files'])})" if c["valid_files"] else ""))
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


@app.command()
@user_errors
def neighbors(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help=CHECKPOINT_HELP)],
    word: Annotated[
        str | None, typer.Argument(help="The word whose nearest words to show.", show_default=False)
    ] = None,
    n: Annotated[int, typer.Option("-n", "--n", help="How many words to show.")] = 10,
    analogy: Annotated[
        tuple[str, str, str] | None,
        typer.Option(help="A B C: the words nearest to A − B + C, e.g. --analogy king man woman.", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
) -> None:
    """The words nearest to WORD (or to an analogy) by cosine in the model's learned input embedding."""
    if (word is None) == (analogy is None):
        raise ConfigError("give a WORD, or --analogy A B C (not both)")
    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    ckpt, tok = checkpoint.load_model(runs.find_checkpoint(checkpoint_path, _note))
    words = vectors.token_words(tok)
    W = ckpt.params["embed.W"]  # (V, E)
    asked = [word] if analogy is None else list(analogy)
    ids = [vectors.find(words, w, lowercase=tok.lowercase) for w in asked]
    if analogy is None:
        found, title = vectors.neighbors(W, ids[0], n), f"nearest to {words[ids[0]]}"
    else:
        found, title = vectors.analogy(W, *ids, n), "{} − {} + {}".format(*(words[i] for i in ids))
    if as_json:
        typer.echo(json.dumps({"query": title, "neighbors": [{"token": words[i], "cosine": c} for i, c in found]}))
        return
    t = Table(title=f"{title} (cosine, {checkpoint_path})", title_justify="left")
    t.add_column("", justify="right")
    t.add_column("token")
    t.add_column("cosine", justify="right")
    for rank, (i, c) in enumerate(found, start=1):
        t.add_row(str(rank), words[i], f"{c:.3f}")
    Console().print(t)


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
) -> None:
    """Write a trained model (or its embedding) in a format other tools read."""
    if to not in export_.FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(export_.FORMATS)}, got {to!r}")
    ckpt, tok = checkpoint.load_model(runs.find_checkpoint(checkpoint_path, _note))
    cfg = ckpt.model_cfg
    export_.check(to, cfg)
    if to == "torch":
        files = export_.to_torch(cfg, ckpt.params, tok, out)
        _note(f"wrote {', '.join(f.name for f in files)} to {out}; `python {out / 'load_torch.py'}` loads it")
    elif to == "onnx":
        export_.to_onnx(cfg, ckpt.params, out)
        state = "h0 and c0" if cfg.cell in ("lstm", "peephole", "cifg") else "h0"
        _note(f"wrote {out}: inputs ids (T, B) and {state} ({cfg.layers}, B, {cfg.hidden}); outputs logits, new state")
    else:
        written, skipped = export_.to_word2vec(ckpt.params, tok, out)
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
) -> None:
    """Look inside a trained model on TEXT: an HTML page of its units and gates (--html), the units that
    track features of the text (--units), how far back its gradient reaches (--gradient)."""
    from lstmtext import inside, page, plot

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
        plot.pyplot("lstmtext inspect --html")  # before the work: without matplotlib, say so first
    extra = dict(inside.parse_feature(f) for f in feature or [])
    found_path = runs.find_checkpoint(checkpoint_path, _note)
    ckpt, tok = checkpoint.load_model(found_path)
    cfg = ckpt.model_cfg
    text = read_text(file, encoding_errors)
    if html_out or units:
        found = inside.find_units(ckpt.params, cfg, tok, text, extra, max_tokens)
    if html_out is not None:
        info = page.PageInfo(str(checkpoint_path), str(file), tok.kind, cfg.cell, cfg.layers, cfg.hidden)
        html_text, pics = page.make_page(ckpt.params, cfg, found, info, max_distance, positions, found_path.parent)
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
        _gradient(checkpoint_path, ckpt, tok, text, file, vs or [], out, max_distance, positions, as_json)


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


def _gradient(run, ckpt, tok, text, file, vs, out, max_distance, positions, as_json) -> None:
    """inspect --gradient: the table (or JSON) for RUN and each --vs run, and their picture."""
    from lstmtext import inside, plot

    results = []
    for name, (c, t) in [(str(run), (ckpt, tok))] + [
        (str(v), checkpoint.load_model(runs.find_checkpoint(v, _note))) for v in vs
    ]:
        r = inside.gradient_norms(c.params, c.model_cfg, t.encode(text), max_distance, positions)
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
    """Training and validation perplexity of runs against step and wall time, overlaid (needs lstmtext[plot])."""
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
