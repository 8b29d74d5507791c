"""The start of a run, from its options to everything the training loop begins with (`Start`): a new
run, a fine-tune (--init-from), a resume (--resume), and what an MPI rank other than 0 receives from
rank 0. The loop itself is trainer.Trainer; api.run_training joins the two.

A new run checks its options before touching a file, reads and tokenizes the text
(data.prepare_data), chooses the size the person left out (lstmtext.sizing) and draws the weights.
A resume checks that the options typed again agree with the run's, finds the same text, and takes
the weights, optimizer state, carried state and progress from last.safetensors. Either way a
refusal before training leaves no run folder behind (`new_out`).
"""

import contextlib
import functools
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
from rich.console import Console

from lstmtext import batching, checkpoint, evaluate, model, mpi, optim, runs, sizing, vectors
from lstmtext.config import ModelConfig, TrainConfig, from_dict
from lstmtext.data import Data, TokenizerOptions, check_tokenizer_options, prepare_data, store_ids
from lstmtext.errors import ConfigError, TrainingError
from lstmtext.options import DEFAULT_LR, DEFAULT_MINUTES, LOCATIONS, NAMES_A_TOKENIZER, RESUMABLE, TrainOptions
from lstmtext.progress import Progress
from lstmtext.schedule import finished_reason


@dataclass
class Start:
    """What the training loop begins from."""

    data: Data | None  # the text and its tokenizer; None on an MPI rank other than 0 (rank 0 validates)
    model_cfg: ModelConfig
    cfg: TrainConfig
    out: Path  # the run's folder
    params: dict  # name -> array
    opt_state: dict  # the optimizer's, name -> array
    state: dict  # the carried state, {name: (B, H)} for the whole batch
    prog: Progress  # prog.rng: the dropout generator's state
    streams: np.ndarray  # (n, B) the token streams; on an MPI rank other than 0, (n, B_r) its columns
    resumed: bool = False  # metrics.jsonl then loses the lines after prog.step


def fresh_start(data: Data, model_cfg: ModelConfig, cfg: TrainConfig, out: Path, params: dict | None = None) -> Start:
    """A new run: params (a fine-tune's, or --embed-init's) or drawn from the seed; a fresh optimizer,
    zero state and progress."""
    streams = _streams(data, cfg)  # first: a text too short for one window is refused before any drawing
    dtype = np.dtype(cfg.dtype)
    if params is None:
        params = initial_params(model_cfg, cfg)
    else:
        params = {k: np.array(v, dtype=dtype) for k, v in params.items()}  # own copies
    opt_state = optim.init_state(cfg.optimizer, optim.trainable(params, cfg.freeze_embed))
    state = model.init_state(model_cfg, cfg.batch_size, dtype)
    # Dropout draws from the seed's second stream (the init from its first).
    prog = Progress(rng=np.random.default_rng([cfg.seed, 1]).bit_generator.state)
    return Start(data, model_cfg, cfg, out, params, opt_state, state, prog, streams)


def resumed_start(data: Data, ckpt: checkpoint.Checkpoint, cfg: TrainConfig, out: Path) -> Start:
    """Where a saved run stopped: its weights, optimizer state, carried state and progress."""
    streams = _streams(data, cfg)
    extra = ckpt.extra
    opt_state = {k: v for k, v in extra.items() if not k.startswith("state.")}
    state = {k[len("state.") :]: v for k, v in extra.items() if k.startswith("state.")}
    prog = Progress.from_dict(ckpt.progress)
    params, opt_state = optim.swap_average(ckpt.params, opt_state)  # NT-ASGD goes on from its iterate
    return Start(data, ckpt.model_cfg, cfg, out, params, opt_state, state, prog, streams, True)


def _streams(data: Data, cfg: TrainConfig) -> np.ndarray:
    batching.check_enough(len(data.train_ids), cfg.batch_size, cfg.bptt, "the training text")
    return batching.make_streams(data.train_ids, cfg.batch_size)  # (n, B)


# -- MPI: the start, sent once by rank 0 ---------------------------------------------------------


def send(group: "mpi.Group", start: Start) -> None:
    """Rank 0: everything but the text, each rank getting only its own columns of the streams."""
    group.started = True  # from here a failure on rank 0 must abort the others (mpi.leading)
    head = {"model": asdict(start.model_cfg), "train": asdict(start.cfg), "out": str(start.out),
            "prog": start.prog.to_dict(), "streams": [start.streams.shape[0], start.streams.dtype.str]}  # fmt: skip
    group.bcast_json(head)
    group.scatter_columns(start.streams, start.cfg.batch_size)
    for d in (start.params, start.opt_state, start.state):
        group.bcast_arrays(d)


def received(group: "mpi.Group") -> "Start | int":
    """A rank other than 0: the run rank 0 sends, or the exit code it sent when it ended before
    training (a mistake, or nothing to do)."""
    head = group.bcast_json()
    if "exit" in head:
        return head["exit"]
    model_cfg, cfg = from_dict(ModelConfig, head["model"]), from_dict(TrainConfig, head["train"])
    n, dtype = head["streams"]
    streams = group.scatter_columns(None, cfg.batch_size, n, np.dtype(dtype))  # (n, B_r)
    params, opt_state, state = group.bcast_arrays(), group.bcast_arrays(), group.bcast_arrays()
    prog = Progress.from_dict(head["prog"])
    return Start(None, model_cfg, cfg, Path(head["out"]), params, opt_state, state, prog, streams)


# -- the options of a new run and of a resume ------------------------------------------------------

def new_run(o: TrainOptions, given: set, console: Console, warn: Callable[[str], None]) -> Start:
    """A new run (or a fine-tune, --init-from) from the options: the text read and tokenized, the size
    the person left out chosen, the weights drawn. given: the options the person set."""
    say = _say(console)
    args = _args(o)
    if o.corpus is None:
        raise ConfigError("give a CORPUS to train on (a text file or a folder), or --resume RUN_DIR")
    if o.optimizer not in DEFAULT_LR:
        raise ConfigError(f"--optimizer must be one of {', '.join(DEFAULT_LR)}, got {o.optimizer!r}")
    if not (o.epochs or o.max_steps or o.max_minutes):
        args["max_minutes"] = DEFAULT_MINUTES
        say(f"No budget given: training for {DEFAULT_MINUTES:g} minutes (--max-minutes, --epochs or --max-steps "
            "set another).")
    chosen = {  # the two training options whose value depends on others
        "lr": DEFAULT_LR[o.optimizer] if o.lr is None else o.lr,
        # --lr-decay and --decay-after are the step schedule's: typing one asks for it; NT-ASGD's
        # averaging is its annealing, at a constant rate (AWD-LSTM's)
        "schedule": o.schedule if "schedule" in given else "step" if {"lr_decay", "decay_after"} & given
        else "constant" if o.optimizer == "nt-asgd" else o.schedule,
    }
    # Every other field of TrainConfig is the option of its name (tests/test_options.py).
    cfg = TrainConfig(**{**{f.name: args[f.name] for f in fields(TrainConfig) if f.name in args}, **chosen})
    shape = {k: args[k] for k in runs.MODEL_OPTIONS}  # every field of ModelConfig but the vocabulary
    sized = {k for k in sizing.OPTIONS if shape[k] is None}  # chosen below, once the text is read
    source = tok = None
    if o.init_from is not None:
        source_path = runs.find_checkpoint(o.init_from, say)
        source, tok = checkpoint.load_model(source_path)
        runs.check_init_options(source, tok, {k: args[k] for k in given})
        m = source.model_cfg
        shape.update({k: getattr(m, k) for k in (*runs.SHAPE_OPTIONS, "init", "init_scale", "chrono")})
        if "dropout" not in given:
            shape["dropout"] = m.dropout
        sized = set()
    if o.embed_init is not None:
        if source is not None:
            raise ConfigError("--embed-init starts a new embedding and --init-from keeps its source's; use one of them")
        if o.tokenizer == "char":
            raise ConfigError("--embed-init matches words to the vocabulary; a char model's tokens are characters")
        _, dim = vectors.file_kind(o.embed_init)
        if "embed" in given and o.embed != dim:
            raise ConfigError(
                f"{o.embed_init} holds {dim}-dimensional vectors but --embed is {o.embed}: use --embed {dim} "
                "(or leave --embed out)"
            )
        shape["embed"] = dim
        sized.discard("embed")
    # Check the model options before the (possibly slow) tokenization; vocab_size is known later.
    if o.freeze_embed and shape["tie"]:
        raise ConfigError("--freeze-embed on a model with a tied head (--tie) would freeze the head too")
    model_cfg = ModelConfig(vocab_size=1, **sizing.placeholders(shape))
    corpus = o.corpus
    run_dir = o.out if o.out is not None else Path("runs") / corpus.resolve().name.removesuffix(corpus.suffix)
    tok_opts = TokenizerOptions(o.tokenizer or "bpe", o.vocab_size, o.min_freq, o.lowercase, o.word_split)
    if tok is not None:
        tok_opts = TokenizerOptions(tok.kind, tok.vocab_size, o.min_freq, tok.lowercase, tok.word_split)
    check_tokenizer_options(tok_opts)  # before the slow tokenization
    with new_out(run_dir, o.force):  # a refusal from here until training leaves no folder behind
        read = functools.partial(
            prepare_data, corpus, o.valid, encoding_errors=o.encoding_errors, tokenizer=tok, cache_dir=run_dir,
            include=tuple(args["include"]), valid_split=o.valid_split,
        )
        data = read(tok_opts, say=say, list_files=o.list_files)
        plan = None  # the size for the text as tokenized, when the tokenizer's choice needed it
        if source is None and _may_choose_tokenizer(given, model_cfg, cfg):
            data, tok_opts, plan = _choose_tokenizer(data, tok_opts, read, run_dir / "train-ids.npy", model_cfg, cfg,
                                                     shape, sized, say)  # fmt: skip
        # What the tokenizer was asked for (resume compares the options typed again with these).
        # A chosen vocabulary is stored as if typed, so that typing it on --resume is no change.
        cap = data.info.pop("vocab_cap", None)
        data.info["tokenizer_options"] = {**vars(tok_opts), "vocab_size": cap} if source is None else \
            source.info.get("tokenizer_options")
        if source is not None:
            data.info["init_from"] = {"path": str(source_path.resolve()), "step": source.progress.get("step")}
            _unk_report(tok, data.train_ids, "the training text", say, warn)
        elif "vocab_size" in given and data.tokenizer.vocab_size < o.vocab_size:
            say(
                f"--vocab-size {o.vocab_size:,} is more than the text has: the vocabulary has "
                f"{data.tokenizer.vocab_size:,} tokens."
            )
        if o.valid is None:
            try:
                with open(run_dir / "valid.txt", "w", encoding="utf-8") as f:
                    for piece in data.valid_part.pieces():
                        f.write(piece)
            except OSError as e:
                raise ConfigError(f"cannot write {run_dir / 'valid.txt'}: {e.strerror or e}") from None
            say(f"The held-out text is saved as {run_dir / 'valid.txt'} for `lstmtext eval`.")
        model_cfg = replace(model_cfg, vocab_size=data.tokenizer.vocab_size)
        if model_cfg.softmax == "adaptive" and "cutoffs" not in given:
            say(f"Adaptive softmax (--cutoffs not given): clusters from {model_cfg.cutoffs}, chosen from the "
                f"{model_cfg.vocab_size:,} tokens (a fifth and a half of them).")  # fmt: skip
        say(
            f"{data.info['train_tokens']:,} training tokens, {data.info['valid_tokens']:,} validation tokens, "
            f"vocabulary {model_cfg.vocab_size:,} ({data.tokenizer.kind})."
        )
        if data.info.get("vocab_choice"):
            say(f"Vocabulary (--vocab-size not given): {data.info['vocab_choice']}.", soft_wrap=True)
        if sized:
            model_cfg = _choose_size(model_cfg, cfg, shape, sized, data, say, plan)
        init = None if source is None else source.params
        if source is not None:
            say(f"Fine-tuning from {source_path} (step {source.progress.get('step', 0):,}) with a fresh optimizer.")
        if o.embed_init is not None:
            init = initial_params(model_cfg, cfg)
            data.info["embed_init"] = _embed_from(o.embed_init, data, init, say)
        if o.force:
            clear_old_run(run_dir)
        return fresh_start(data, model_cfg, cfg, run_dir, init)


def resumed_run(o: TrainOptions, given: set, console: Console) -> tuple[Path, Start | None]:
    """`train --resume`: the run keeps its settings; the budget, the text's location and what is
    printed may change. Options typed again with the run's own values are accepted. -> (the run's
    folder, its Start; None when it has nothing left to do, which is said)."""
    say = _say(console)
    args = _args(o)
    if o.force:
        raise ConfigError("--force starts a run over and --resume continues one; use one of them")
    path = checkpoint.resolve(o.resume, "last.safetensors")
    ckpt, tok = checkpoint.load_model(path)
    if o.init_from is not None:  # accepted when it names the run's own source (the command typed again)
        source = ckpt.info.get("init_from") or {}
        if source.get("path") != str(runs.find_checkpoint(o.init_from).resolve()):
            raise ConfigError(
                f"--init-from starts a new run from a checkpoint; {path.parent} was "
                + (f"fine-tuned from {source['path']}" if source else "not fine-tuned")
                + ", so it cannot be resumed with another --init-from"
            )
    if o.embed_init is not None and (ckpt.info.get("embed_init") or {}).get("path") != str(
        Path(o.embed_init).resolve()
    ):
        raise ConfigError(
            f"--embed-init sets a new run's starting embedding; {path.parent} did not start from "
            f"{o.embed_init}, so it cannot be resumed with it"
        )
    if ckpt.train_cfg is None or "rng" not in ckpt.progress or not ckpt.extra:
        raise ConfigError(f"{path} holds weights only; resume from a run directory's last.safetensors")
    runs.check_resume_options(ckpt, tok, {k: args[k] for k in given - RESUMABLE - LOCATIONS})
    cfg = replace(ckpt.train_cfg, **{k: args[k] for k in RESUMABLE if k in given})
    prog = Progress.from_dict(ckpt.progress)
    if prog.plan_end < 1.0:
        _keep_cut_budget(ckpt.train_cfg, cfg, prog, path.parent)
    done = finished_reason(cfg, prog)
    if done is not None and prog.plan_ended:
        console.print(
            f"{path.parent} is already finished: {done}, at step {prog.step:,}. Its best weights stopped "
            f"improving on this text; to train them further, start a new run from them: lstmtext train CORPUS "
            f"--init-from {path.parent}/best.safetensors --out NEW",
            markup=False, highlight=False, soft_wrap=True,
        )
        return path.parent, None
    if done is not None:
        console.print(  # soft_wrap: one line, whatever the terminal's width
            f"{path.parent} is already finished: {done}, at epoch {ckpt.progress['epoch']}, step "
            f"{ckpt.progress['step']:,}. To train it further, resume with a larger --epochs, --max-steps, "
            "--max-minutes (by more than one validation takes) or --patience (0 lifts a limit)"
            + _more_hint(cfg, done) + ".",
            markup=False, highlight=False, soft_wrap=True,
        )
        return path.parent, None
    info = ckpt.info
    corpus_path = o.corpus if o.corpus is not None else Path(info["corpus"])
    valid_path = o.valid if o.valid is not None else (None if info["valid"] is None else Path(info["valid"]))
    run_dir = o.out if o.out is not None else path.parent
    moved = run_dir.resolve() != path.parent.resolve()  # a new home for the run: writable, not another run's
    with new_out(run_dir, force=False) if moved else contextlib.nullcontext():
        # Runs from before folders were read recursively took the top-level *.txt files only.
        old_folder = "files" not in info and Path(corpus_path).is_dir()
        data = prepare_data(
            corpus_path, valid_path, None, o.encoding_errors, say, tokenizer=tok, cache_dir=run_dir,
            include=tuple(info.get("include", ("/*.txt",) if old_folder else ())),
            valid_split=info.get("valid_split", "end"),
            list_files=o.list_files,
        )
        if (data.info["train_sha256"], data.info["valid_sha256"]) != (info["train_sha256"], info["valid_sha256"]):
            raise ConfigError(
                f"{corpus_path} is not the text this run was trained on (it changed since); "
                "resume needs the same corpus"
            )
        data.info = {**info, **data.info}  # the text's new location, if it moved; the run's other records
        console.print(f"Resuming {path} at epoch {ckpt.progress['epoch']}, step {ckpt.progress['step']:,}.")
        return run_dir, resumed_start(data, ckpt, cfg, run_dir)


def _keep_cut_budget(was: TrainConfig, cfg: TrainConfig, prog: Progress, run: Path) -> None:
    """A plan --plateau cut short ends at a share of its budget, which another budget would move (a
    larger one back to the held rate on the weights that stopped improving): refused."""
    changed = [f"--{k.replace('_', '-')}" for k in ("epochs", "max_steps", "max_minutes")
               if getattr(cfg, k) != getattr(was, k)]  # fmt: skip
    if changed:
        raise ConfigError(
            f"{run} stopped improving at step {prog.plateau_step:,} and its learning rate is decaying to the "
            f"end of its plan (--plateau): its budget can no longer change ({', '.join(changed)} given); resume "
            "without it, or start a new run from its best weights with --init-from"
        )


def _more_hint(cfg: TrainConfig, done: str) -> str:
    """The finished-run line's example, in the limit that ended the run (`done` names its flag):
    budgets are totals, not increments."""
    for flag, n, unit in (("--max-minutes", cfg.max_minutes, "minute"), ("--epochs", cfg.epochs, "epoch"),
                          ("--max-steps", cfg.max_steps, "step")):  # fmt: skip
        if n and flag in done:
            more, total = (f"{n:g}", f"{2 * n:g}") if unit == "minute" else (f"{n:,}", f"{2 * n}")
            return f"; each counts the whole run: {more} {unit}{'' if n == 1 else 's'} more is {flag} {total}"
    return ""


def _may_choose_tokenizer(given: set, model_cfg: ModelConfig, cfg: TrainConfig) -> bool:
    """Whether the tokenizer is the default's to choose: not typed (nor implied by --vocab-size,
    --embed-init or a word tokenizer's option), a full head (the adaptive one is for large
    vocabularies), and a budget in minutes only, the one whose tokens the tokenizer changes (an
    epoch is a pass whatever the tokens)."""
    return not (set(NAMES_A_TOKENIZER) & given) and model_cfg.softmax == "full" and not (cfg.epochs or cfg.max_steps)


def _choose_tokenizer(data: Data, tok_opts: TokenizerOptions, read, cache: Path, model_cfg: ModelConfig,
                      cfg: TrainConfig, shape: dict, sized: set, say) -> tuple[Data, TokenizerOptions, sizing.Choice]:
    """BPE (data, as read), or characters when the size plans and the held-out text's new words say
    so (sizing.reads_characters).
    read(tok_opts, say=...): the text again; cache: the run's train-ids.npy. -> (data, its tokenizer
    options, the size plan)."""
    bpe_plan = _plan_size(replace(model_cfg, vocab_size=data.tokenizer.vocab_size), cfg, shape, sized, data)
    plan, char_passes, ratio, new_words = bpe_plan, None, 1.0, None
    if sizing.reads_characters(bpe_plan.passes, None):  # worth a look at characters
        char_opts = replace(tok_opts, kind="char")
        chars = read(char_opts, say=lambda *a, **k: None)  # the files were listed once already
        char_plan = _plan_size(replace(model_cfg, vocab_size=chars.tokenizer.vocab_size), cfg, shape, sized, chars)
        char_passes, ratio = char_plan.passes, len(chars.train_ids) / max(len(data.train_ids), 1)
        if sizing.reads_characters(bpe_plan.passes, char_plan.passes):  # and at the held-out text's words
            new_words = sizing.new_word_share(data.train_part.pieces(), data.valid_part.pieces())
        if sizing.reads_characters(bpe_plan.passes, char_plan.passes, new_words):
            data, tok_opts, plan = chars, char_opts, char_plan
        else:  # the probe's ids took the run's cache (train-ids.npy, which eval --dynamic reads): BPE's back
            store_ids(cache, data.tokenizer, data.info["train_sha256"], data.train_ids)
    data.info["tokenizer_choice"] = sizing.tokenizer_reason(bpe_plan.passes, char_passes, data.tokenizer.kind, ratio,
                                                            new_words)
    say(f"Tokenizer (--tokenizer not given): {data.info['tokenizer_choice']}.", soft_wrap=True)
    return data, tok_opts, plan


def _plan_size(model_cfg: ModelConfig, cfg: TrainConfig, shape: dict, sized: set, data) -> sizing.Choice:
    """The size the budget, the text and this machine's speed give, the options given kept."""
    budget = sizing.Budget(cfg.epochs, cfg.max_steps, cfg.max_minutes, len(data.train_ids), cfg.batch_size, cfg.bptt,
                           cfg.accumulate)
    speed = sizing.measure(model_cfg, cfg) if cfg.max_minutes else None  # only minutes need the speed
    given = {k: shape[k] for k in sizing.OPTIONS if k not in sized}
    return sizing.choose(data.tokenizer.kind, model_cfg.vocab_size, budget, speed, given, tie=model_cfg.tie)


def _choose_size(model_cfg: ModelConfig, cfg: TrainConfig, shape: dict, sized: set, data, say,
                 plan: sizing.Choice | None = None) -> ModelConfig:
    """The size options the person left out, from the budget, the text and this machine's speed (or
    `plan`, when it was chosen for this text already: one measurement, one answer)."""
    choice = plan or _plan_size(model_cfg, cfg, shape, sized, data)
    data.info["size_choice"] = choice.reason()
    left = ", ".join(f"--{k}" for k in sizing.OPTIONS if k in sized)
    say(f"Model size ({left} not given) chosen for the budget: {choice.reason()}.", soft_wrap=True)
    # dropout_in/out left out follow --dropout (-1): the placeholder config resolved them to its 0
    follow = {k: shape[k] for k in ("dropout_in", "dropout_out")} if "dropout" in sized else {}
    return replace(model_cfg, **{k: getattr(choice, k) for k in sized}, **follow)


def _unk_report(tok, ids, what: str, say, warn) -> None:
    """Fine-tuning keeps the source's vocabulary: say how much of the new text it cannot name."""
    if tok.unk_id is None or len(ids) == 0:
        return
    rate = tok.count_unk(ids) / len(ids)
    say(f"<unk> rate of {what} with the checkpoint's vocabulary: {100 * rate:.2f}%")
    if rate > evaluate.UNK_WARN:
        warn(
            f"{100 * rate:.1f}% of {what} is <unk> for the checkpoint's vocabulary: the model cannot learn "
            "those words; train from scratch (without --init-from) for a vocabulary of the new text"
        )


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


def initial_params(model_cfg: ModelConfig, cfg: TrainConfig) -> dict:
    """A new run's starting weights: drawn from the seed's own stream, apart from dropout's."""
    return model.init_params(model_cfg, np.random.default_rng([cfg.seed, 0]), np.dtype(cfg.dtype))


def _say(console: Console):
    return functools.partial(console.print, markup=False, highlight=False)  # file names may hold [brackets]


def _args(o: TrainOptions) -> dict:
    args = asdict(o)
    args["include"] = list(o.include or [])
    return args


# -- the run's folder --------------------------------------------------------------------------


def prepare_out(out: Path, force: bool) -> None:
    """A new run must not overwrite another run's checkpoints by accident, and must be able to
    write where it will save: a probe write finds an unwritable or full --out before training.
    With force the old run stays until `clear_old_run`, once everything before training has worked."""
    if not force and ((out / "last.safetensors").exists() or (out / "best.safetensors").exists()):
        raise TrainingError(
            f"{out} already holds a run; continue it with --resume {out}, choose another --out, "
            f"or pass --force to start over"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        with open(probe, "wb") as f:
            f.write(b"\0" * 65536)  # a full disk usually refuses this much
            f.flush()
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to --out {out}: {e.strerror or e}") from None


@contextmanager
def new_out(out: Path, force: bool) -> Iterator[None]:
    """`prepare_out`, then the body; if the body fails (a refusal while reading the text, an option
    found wrong, Ctrl-C), the folders made for the run are removed again: a train that never started
    leaves nothing behind. Folders that were there before are left as they were."""
    made = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
    try:
        prepare_out(out, force)
        yield
    except BaseException:
        if out in made:
            shutil.rmtree(out, ignore_errors=True)  # made by this command: all in it is this run's
        for parent in made[1:]:  # new parents only if still empty: another run may have begun in one
            try:
                parent.rmdir()
            except OSError:
                break
        raise


def clear_old_run(out: Path) -> None:
    """--force: remove the run being replaced. Called just before training, so a mistake found while
    reading the corpus or a vectors file leaves the old run whole. (train-ids.npy is a cache keyed by
    the text and tokenizer, so it needs no removal.)"""
    for name in ("last.safetensors", "best.safetensors", "metrics.jsonl"):
        (out / name).unlink(missing_ok=True)
