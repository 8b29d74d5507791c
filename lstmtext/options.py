"""The options of `lstmtext train`, in one place: `lstmtext.train(...)` takes them as keyword arguments
and the command line builds its flags from them (cli.py), so a default or a help text cannot differ
between the two. An option's flag is its name with dashes: `vocab_size` is `--vocab-size`."""

from dataclasses import dataclass, fields
from pathlib import Path

from lstmtext import sizing
from lstmtext.config import DEFAULT_LR, ModelConfig, TrainConfig, opt, options_of

CHOSEN = "chosen for the budget and the text"  # the size options lstmtext.sizing fills in
# Options that name a tokenizer, or imply one (a vocabulary size, word vectors, a word option): given
# any of them, the default does not choose the tokenizer (lstmtext.start).
NAMES_A_TOKENIZER = ("tokenizer", "vocab_size", "embed_init", "min_freq", "lowercase", "word_split")
DEFAULT_MINUTES = 10.0  # the budget when none of --epochs, --max-steps and --max-minutes is given



# Options that may change when a run is resumed; everything else belongs to the run.
RESUMABLE = {
    "epochs", "max_steps", "max_minutes", "patience", "eval_every", "log_every", "save_every", "sample_every",
    "on_nan", "threads", "rollback", "plateau",
}
# Options that only say where things are or what to print; they never belong to a run.
LOCATIONS = {"resume", "init_from", "corpus", "valid", "out", "encoding_errors", "list_files", "embed_init"}


def _default_lr_text() -> str:
    """"20 for sgd, 0.002 for adam and rmsprop", from DEFAULT_LR."""
    by_value: dict[float, list[str]] = {}
    for name, lr in DEFAULT_LR.items():
        by_value.setdefault(lr, []).append(name)
    return ", ".join(f"{lr:g} for {' and '.join(names)}" for lr, names in by_value.items())


@dataclass(frozen=True)
class TrainOptions:
    corpus: Path | None = opt(
        None,
        help="A UTF-8 text file, or a folder: every text file in it and its subfolders (see --include).",
        show_default=False,
        argument=True,
    )
    valid: Path | None = opt(None, help="Held-out text; default: the last 10% of CORPUS.")
    include: list[str] | None = opt(
        None,
        help="Only files matching this glob, e.g. '*.md' (any depth) or 'src/**/*.py'. Repeatable.",
        show_default="every UTF-8 text file",
    )
    valid_split: str = opt("end", help="end: hold out the last 10% of the corpus; per-file: the last 10% of each file.")
    list_files: bool = opt(False, help="Print every file read and every file skipped (and why).")
    out: Path | None = opt(None, help="Run directory; default: runs/<corpus name>.")
    resume: Path | None = opt(
        None, help="Continue the run in this directory (or from this checkpoint file) with its settings."
    )
    init_from: Path | None = opt(
        None,
        help="Fine-tune: start a new run from this run's (or checkpoint's) weights and vocabulary, "
        "with a fresh optimizer.",
    )
    force: bool = opt(False, help="Start over in an --out that already holds a run.")
    tokenizer: str | None = opt(
        None,
        help="bpe (byte-level: any text, its spacing and layout kept, nothing unknown), char, or word "
        "(words and punctuation, spaced again by rules; rare words become <unk>).",
        show_default="bpe; char when a budget in minutes would read the text as BPE more than "
        f"{sizing.CHAR_PASSES:g} times and as characters fewer than {sizing.CHAR_ROOM:g}, and more than "
        f"{sizing.NEW_WORDS:.0%} of the held-out text's words are not in the training text",
    )
    vocab_size: int | None = opt(
        None, help="Largest vocabulary, special tokens included.",
        show_default=f"bpe: {sizing.BPE_VOCAB_PER_ROOT_CHAR:g} × √(training characters), "
        f"{sizing.BPE_VOCAB_RANGE[0]}-{sizing.BPE_VOCAB_RANGE[1]}; word, char: {sizing.WORD_VOCAB}",
    )
    min_freq: int = opt(1, help="Words seen fewer times become <unk>.")
    lowercase: bool = opt(False, help="Lowercase the text (word tokenizer).")
    word_split: str = opt(
        "punct", help="punct: split words and punctuation; whitespace: split on spaces only (Penn Treebank)."
    )
    encoding_errors: str = opt("strict", help="strict: stop at invalid UTF-8; replace: use U+FFFD and go on.")
    cell: str = opt(ModelConfig.cell, help="Recurrent cell: lstm, gru, rnn, peephole, cifg, mingru, minlstm or slstm.")
    nonlinearity: str = opt(ModelConfig.nonlinearity, help="The rnn cell's nonlinearity: tanh or relu.")
    embed: int | None = opt(None, help="Embedding size E.", show_default=CHOSEN)
    hidden: int | None = opt(None, help="Hidden size H of every layer.", show_default=CHOSEN)
    layers: int | None = opt(None, help="Stacked recurrent layers.", show_default=CHOSEN)
    dropout: float | None = opt(None, help="Dropout on non-recurrent connections.", show_default=CHOSEN)
    # AWD-LSTM's regularisers (Merity et al. 2018); its PTB values in the help
    dropout_kind: str = opt(
        ModelConfig.dropout_kind,
        help="step: a new dropout mask at every time step; locked: one mask per stream for the whole window "
        "(variational dropout, AWD-LSTM's).",
    )
    dropout_in: float = opt(
        ModelConfig.dropout_in, help="Dropout on the embedding's output (AWD-LSTM: 0.4).", show_default="--dropout"
    )
    dropout_out: float = opt(
        ModelConfig.dropout_out, help="Dropout on the last layer's output (AWD-LSTM: 0.4).", show_default="--dropout"
    )
    embed_dropout: float = opt(
        ModelConfig.embed_dropout, help="Drop whole words: rows of the embedding, a window at a time (AWD-LSTM: 0.1)."
    )
    weight_drop: float = opt(
        ModelConfig.weight_drop, help="DropConnect on each layer's recurrent matrix W_h, a mask a window (AWD: 0.5)."
    )
    ar: float = opt(
        ModelConfig.ar, help="Activation regularisation: ar × mean square of the last layer's output (AWD-LSTM: 2)."
    )
    tar: float = opt(
        ModelConfig.tar, help="Temporal activation regularisation: tar × mean square of its change a step (AWD: 1)."
    )
    tie: bool = opt(ModelConfig.tie, help="Tie the output head to the embedding (needs --embed = --hidden).")
    embed_init: Path | None = opt(
        None,
        help="Start the embedding from word vectors: a word2vec (text or binary) or GloVe file. "
        "Its dimension sets --embed.",
        show_default=False,
    )
    freeze_embed: bool = opt(TrainConfig.freeze_embed, help="Keep the embedding as it starts (not trained).")
    init_scale: float = opt(ModelConfig.init_scale, help="--init uniform: weights start uniform in ±init-scale.")
    init: str = opt(
        ModelConfig.init,
        help="Initialisation: uniform (±init-scale, Zaremba 2014), torch (PyTorch's defaults) or orthogonal "
        "(orthogonal recurrent blocks, Saxe 2014).",
    )
    chrono: int = opt(
        ModelConfig.chrono, help="Chrono gate biases (Tallec & Ollivier 2018) for gaps up to this many tokens; 0 = off."
    )
    heads: int = opt(ModelConfig.heads, help="--cell slstm: block-diagonal recurrent heads (1: dense).")
    softmax: str = opt(ModelConfig.softmax, help="Output head: full, or adaptive (Grave et al. 2017), with --cutoffs.")
    cutoffs: str = opt(
        ModelConfig.cutoffs,
        help="--softmax adaptive: where the frequency-sorted clusters start, e.g. 2000,6000.",
        show_default="a fifth and a half of the vocabulary",
    )
    batch_size: int = opt(TrainConfig.batch_size, help="Parallel streams B.")
    bptt: int = opt(TrainConfig.bptt, help="Window length T of truncated backpropagation through time.")
    bptt_jitter: bool = opt(
        TrainConfig.bptt_jitter,
        help="AWD-LSTM's varied windows: T drawn around --bptt (around half of it one time in 20), the lr "
        "scaled by T / --bptt, so that the state is cut at other places each epoch.",
    )
    accumulate: int = opt(
        TrainConfig.accumulate,
        help="Windows per optimizer step: their gradients are averaged, then one update (under MPI, one exchange)."
    )
    reset_state: float = opt(
        TrainConfig.reset_state,
        help="Chance that a stream's carried state starts over (zero) at a step, so that text generated or "
        "scored from a fresh state reads well (0: never).",
    )
    optimizer: str = opt(
        TrainConfig.optimizer,
        help="adam, sgd, rmsprop, or nt-asgd (AWD-LSTM's: SGD, its weights averaged from the first validation "
        "worse than the best before the last --nonmono; validation and checkpoints use the average).",
    )
    nonmono: int = opt(
        TrainConfig.nonmono, help="--optimizer nt-asgd: validations a new best may take before averaging starts."
    )
    lr: float | None = opt(
        None, help="Learning rate (loss is the mean per token).", show_default=_default_lr_text()
    )
    schedule: str = opt(
        TrainConfig.schedule,
        help="How lr moves over the budget: wsd (warm up, hold, then down to --lr-floor over the last "
        "--cooldown of the budget), cosine (warm up, then half a cosine to --lr-floor at the budget's end), "
        "step (×--lr-decay each epoch after --decay-after; implied by those two) or constant.",
    )
    warmup: float = opt(TrainConfig.warmup, help="--schedule wsd or cosine: share of the budget spent warming up.")
    lr_floor: float = opt(
        TrainConfig.lr_floor, help="--schedule cosine or wsd: lr at the budget's end, as a share of --lr."
    )
    cooldown: float = opt(
        TrainConfig.cooldown, help="--schedule wsd: the last share of the budget, where lr falls to the floor."
    )
    lr_decay: float = opt(
        TrainConfig.lr_decay, help="--schedule step: multiply lr by this each epoch after --decay-after."
    )
    decay_after: int = opt(TrainConfig.decay_after, help="--schedule step: epochs at the full learning rate.")
    clip: float = opt(TrainConfig.clip, help="Largest global gradient norm (0: no clipping).")
    weight_decay: float = opt(TrainConfig.weight_decay, help="L2 penalty on weight matrices.")
    epochs: int = opt(TrainConfig.epochs, help="Passes over the training text (0: no limit).")
    max_steps: int = opt(
        TrainConfig.max_steps, help="Stop after this many optimizer steps, windows unless --accumulate (0: no limit)."
    )
    max_minutes: float = opt(
        TrainConfig.max_minutes,
        help="Stop after this many minutes of the run, validation included (0: no limit).",
        show_default=f"{DEFAULT_MINUTES:g} when no budget is given",
    )
    eval_every: int = opt(TrainConfig.eval_every, help="Also validate every N steps (0: only after epochs).")
    patience: int = opt(TrainConfig.patience, help="Stop after K validations without improvement (0: never).")
    rollback: float = opt(
        TrainConfig.rollback,
        help="A run diverging (validation and training loss both this fraction above their best) goes back "
        "to the best weights with a fresh optimizer and half the learning rate (0: never; not under MPI or NT-ASGD).",
    )
    plateau: float = opt(
        TrainConfig.plateau,
        help="A run whose validation stays this fraction above its best (perplexity; the last fifth of the run, "
        "at least 3 validations) while wsd holds the rate goes back to the best weights, decays now and ends "
        "when the decay does (0: never; not under MPI or NT-ASGD).",
    )
    log_every: int = opt(TrainConfig.log_every, help="Steps per line in metrics.jsonl.")
    save_every: int = opt(TrainConfig.save_every, help="Also save last.safetensors every N steps (0: after epochs).")
    sample_every: int = opt(
        TrainConfig.sample_every, help="Print a short sample every N steps and at each validation (0: never)."
    )
    threads: int = opt(TrainConfig.threads, help="BLAS threads (0: keep choosing the faster count while training).")
    on_nan: str = opt(
        TrainConfig.on_nan, help="On a diverged window (non-finite, or loss > 100 log V): stop, or skip it."
    )
    seed: int = opt(TrainConfig.seed, help="Seed for initialization and dropout.")
    dtype: str = opt(TrainConfig.dtype, help="float32, or float64 (slower) to match a reference trainer.")

    def __post_init__(self) -> None:
        for f in fields(self):  # the API takes strings for paths, and one glob for a list of them
            value = getattr(self, f.name)
            if isinstance(value, str) and "Path" in str(f.type):
                object.__setattr__(self, f.name, Path(value))
        if isinstance(self.include, str):
            object.__setattr__(self, "include", [self.include])

    @classmethod
    def of(cls, options: dict) -> "TrainOptions":
        """From keyword arguments; an unknown name is one line with the closest option names."""
        return options_of(cls, options, "training")
