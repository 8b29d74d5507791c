"""The two configurations a run is made of. Both live in every checkpoint's header, so a checkpoint
rebuilds its model and resumes its training with no flags."""

import numbers
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from difflib import get_close_matches
from pathlib import Path

import numpy as np

from lstmtext.errors import ConfigError
from lstmtext.schedule import SCHEDULES

OPTIMIZERS = ("sgd", "adam", "rmsprop", "nt-asgd")
# The learning rate when --lr is not given, by optimizer: the mean-loss equivalent of Zaremba's SGD
# lr 1 (docs/training.md "Loss scale"); for Adam, the best of a sweep on short budgets (docs/training.md
# "Defaults"); for NT-ASGD, AWD-LSTM's (its loss is the mean per token too).
DEFAULT_LR = {"sgd": 20.0, "adam": 0.006, "rmsprop": 0.002, "nt-asgd": 30.0}
INIT_SCHEMES = ("uniform", "torch", "orthogonal")


def opt(default, help: str, show_default: bool | str = True, argument: bool = False, metavar: str | None = None):
    """A field of an options dataclass with its command-line help: the command's flags and the API's
    keywords are built from these fields (cli.options_parameters, api), so each default and help
    text is written once. argument: positional on the command line; metavar: what the value is, in
    the help (default: from the type)."""
    meta = {"help": help, "show_default": show_default, "argument": argument, "metavar": metavar}
    return field(default=default, metadata=meta)


def options_of(cls, values: dict, what: str):
    """cls(**values); an unknown name is one line with the closest names of cls's fields."""
    names = [f.name for f in fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        close = get_close_matches(unknown[0], names, n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(f"unknown {what} option {unknown[0]!r}{hint}")
    kinds = typing.get_type_hints(cls)
    # NumPy's scalars as Python's, so that a checkpoint's JSON header can hold them
    values = {k: v.item() if isinstance(v, np.generic) else v for k, v in values.items()}
    for name, value in values.items():  # the command line converts its strings; a script's values are checked here
        if not _fits(value, kinds[name]):
            raise ConfigError(f"{what} option {name} takes {_shown_type(kinds[name])}, got {value!r}")
    return cls(**values)


def _fits(value, kind) -> bool:
    """Whether a keyword's value has its option's type (a str for a Path is fine; True is no int)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return any(_fits(value, k) for k in typing.get_args(kind))
    # Any number type counts (a Fraction, a Decimal's int); a bool is no number here.
    simple = {type(None): value is None, bool: isinstance(value, bool), str: isinstance(value, str),
              int: isinstance(value, numbers.Integral) and not isinstance(value, bool),
              float: isinstance(value, numbers.Real) and not isinstance(value, bool),
              Path: isinstance(value, str | Path)}  # fmt: skip
    if kind in simple:
        return simple[kind]
    if typing.get_origin(kind) in (list, tuple):
        return isinstance(value, list | tuple | str)  # one string stands for a list of one (--include)
    return True


def _shown_type(kind) -> str:
    names = {bool: "True or False", int: "a whole number", float: "a number", str: "a string", Path: "a path",
             type(None): "None"}  # fmt: skip
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return " or ".join(_shown_type(k) for k in typing.get_args(kind))
    return names.get(kind, "a list" if typing.get_origin(kind) in (list, tuple) else str(kind))


@dataclass(frozen=True)
class EvalOptions:
    """How `eval` (the command and Model.score) reads a text; the defaults live here."""

    # 35: the window of Zaremba et al.'s evaluation; the score barely depends on it, as the state carries
    batch_size: int = opt(10, help="Parallel streams while scoring.")
    bptt: int = opt(35, help="Window length while scoring.")
    # Reading as it goes (lstmtext.reading); the defaults are Krause et al.'s and Grave et al.'s
    dynamic: bool = opt(
        False,
        help="Dynamic evaluation (Krause et al. 2018): after scoring each segment, learn from it. The text is "
        "read as one stream.",
    )
    dynamic_lr: float = opt(5e-5, help="--dynamic: the step η, in units of the training gradients' RMS.")
    dynamic_decay: float = opt(0.002, help="--dynamic: λ, the pull back to the trained weights at each step.")
    dynamic_window: int = opt(5, help="--dynamic: tokens per segment, one step after each.")
    dynamic_stats: int = opt(
        2000, help="--dynamic: training windows (100 streams × --dynamic-window) for the gradients' RMS; 0: all."
    )
    cache: int = opt(
        0, help="Neural cache (Grave et al. 2017): a pointer over the last N positions of each stream (0: off)."
    )
    cache_theta: float = opt(0.3, help="--cache: θ, how sharply the pointer prefers the most similar state.")
    cache_lambda: float = opt(0.1, help="--cache: λ, the pointer's share of the probability.")


def _one_of(names: list[str]) -> str:
    """"a", "a or b", "a, b or c"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


@dataclass(frozen=True)
class ModelConfig:
    # The size has no default here: `train` chooses it for the text and the budget (lstmtext.sizing)
    # unless the person gives it, and code that builds a model itself says what it wants.
    vocab_size: int  # V: rows of the embedding, columns of the head (set by the tokenizer)
    embed: int  # E: embedding width, the input size of the first layer
    hidden: int  # H: state size of every recurrent layer
    layers: int  # L: stacked recurrent layers
    dropout: float  # Zaremba-style: on the embedding, between layers and before the head
    cell: str = "lstm"  # which module of lstmtext.cells
    tie: bool = False  # head.W is embed.W transposed (Press & Wolf 2017); needs embed == hidden
    init_scale: float = 0.1  # the uniform scheme: every weight starts uniform in (-init_scale, init_scale)
    init: str = "torch"  # the initialisation scheme, one of INIT_SCHEMES (lstmtext.model.init_params)
    nonlinearity: str = "tanh"  # the rnn cell's φ: "tanh" or "relu" (other cells ignore it)
    chrono: int = 0  # T_max of the chrono gate biases (Tallec & Ollivier 2018); 0 = off
    heads: int = 1  # the slstm cell's recurrent heads: W_h block-diagonal in this many blocks (1 = dense)
    softmax: str = "full"  # the output head: "full", or "adaptive" (Grave et al. 2017, lstmtext.adaptive)
    cutoffs: str = ""  # adaptive: where the frequency-sorted clusters start, e.g. "2000,6000"; "": chosen from V
    # AWD-LSTM's regularisers (Merity, Keskar & Socher 2018), in training only; 0 turns each off.
    dropout_kind: str = "step"  # "step": a new mask at every time step; "locked": one per stream and window
    dropout_in: float = -1.0  # on the embedding's output; negative: --dropout
    dropout_out: float = -1.0  # on the last layer's output, before the head; negative: --dropout
    embed_dropout: float = 0.0  # whole words: a row of embed.W dropped for the window (scaled by 1/(1-p))
    weight_drop: float = 0.0  # DropConnect on each layer's W_h, one mask per window
    ar: float = 0.0  # activation regularisation: ar × mean of the dropped last-layer output squared
    tar: float = 0.0  # temporal activation regularisation: tar × mean of (h_t − h_{t−1})² of the last layer

    @property
    def cutoff_list(self) -> list[int]:
        """cutoffs as numbers: "2000,6000" -> [2000, 6000]."""
        return [int(c) for c in self.cutoffs.split(",") if c.strip()]

    @property
    def edges(self) -> list[int]:
        """Where the adaptive head's parts begin and end: the cutoffs, then V."""
        return [*self.cutoff_list, self.vocab_size]

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embed", "hidden", "layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        from lstmtext.cells import CELLS, get_cell  # here, not at the top: cells do not need the config

        cell = get_cell(self.cell)  # an unknown name is a ConfigError listing the cells
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        for name in ("dropout_in", "dropout_out"):  # stored as the rate they stand for
            if getattr(self, name) < 0:
                object.__setattr__(self, name, self.dropout)
        for name in ("dropout_in", "dropout_out", "embed_dropout", "weight_drop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        if self.dropout_kind not in ("step", "locked"):
            raise ConfigError(f"--dropout-kind must be step or locked, got {self.dropout_kind!r}")
        if self.ar < 0 or self.tar < 0:
            raise ConfigError(f"--ar and --tar must be at least 0, got {self.ar} and {self.tar}")
        if self.weight_drop and not cell.RECURRENT:
            raise ConfigError(f"--weight-drop masks the recurrent matrix W_h, which the {self.cell} cell does not have")
        if self.init_scale <= 0:
            raise ConfigError(f"--init-scale must be positive, got {self.init_scale}")
        if self.init not in INIT_SCHEMES:
            raise ConfigError(f"--init must be one of {', '.join(INIT_SCHEMES)}, got {self.init!r}")
        if self.chrono != 0 and self.chrono < 3:
            raise ConfigError(f"--chrono is the longest gap to remember, at least 3 (or 0 for off), got {self.chrono}")
        # What each option needs, read off the cells' declarations rather than a list of names here.
        if self.chrono and cell.CHRONO is None:
            able = [name for name, c in CELLS.items() if c.CHRONO is not None]
            raise ConfigError(f"--chrono is not defined for the {self.cell} cell: use {_one_of(able)}")
        # orthogonal shapes W_h: pointless without one, or where the cell sets its own start (the sLSTM's zeros)
        if self.init == "orthogonal" and (not cell.RECURRENT or cell.own_init is not None):
            raise ConfigError(
                f"--init orthogonal shapes the recurrent matrix W_h, which the {self.cell} cell does not have"
                " (or, for slstm, starts at zero as its authors recommend): use uniform or torch"
            )
        if self.heads < 1 or self.hidden % self.heads:
            raise ConfigError(f"--heads must divide --hidden {self.hidden}, got {self.heads}")
        if self.heads > 1 and "heads" not in cell.OPTIONS:
            able = [name for name, c in CELLS.items() if "heads" in c.OPTIONS]
            raise ConfigError(f"--heads belongs to --cell {_one_of(able)}")
        if self.nonlinearity not in ("tanh", "relu"):
            raise ConfigError(f"--nonlinearity must be tanh or relu, got {self.nonlinearity!r}")
        if self.softmax not in ("full", "adaptive"):
            raise ConfigError(f"--softmax must be full or adaptive, got {self.softmax!r}")
        if self.softmax == "adaptive":
            try:
                cuts = self.cutoff_list
            except ValueError:
                raise ConfigError(f"--cutoffs takes increasing numbers like 2000,6000; got {self.cutoffs!r}") from None
            from lstmtext import adaptive  # here, not at the top: as for the cells above

            # vocab_size 1 is the CLI's placeholder before tokenization: the bound is checked, and
            # cutoffs left out are chosen, once V is set.
            if not cuts and self.vocab_size > 1:
                cuts = adaptive.chosen_cutoffs(self.vocab_size)
            if cuts:
                adaptive.check_cutoffs(cuts, None if self.vocab_size == 1 else self.vocab_size)
            if self.tie:
                raise ConfigError("--tie shares the full head with the embedding; use it with --softmax full")
            # One spelling, so that resume compares "2000, 6000" and "2000,6000" as the same run.
            object.__setattr__(self, "cutoffs", ",".join(map(str, cuts)))
        elif self.cutoffs:
            raise ConfigError("--cutoffs belongs to --softmax adaptive")
        if self.tie and self.embed != self.hidden:
            raise ConfigError(
                f"--tie needs --embed equal to --hidden (got {self.embed} and {self.hidden}); set both to the same size"
            )


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 32  # B parallel streams of the token sequence
    bptt: int = 64  # T steps per window; the state carries over, the gradient does not
    bptt_jitter: bool = False  # AWD-LSTM's windows of varied length around bptt (batching.jittered_lengths)
    optimizer: str = "adam"  # one of OPTIMIZERS; nt-asgd: SGD whose weights are averaged once validation stalls
    nonmono: int = 5  # nt-asgd: average from the validation that is worse than the best before the last nonmono
    lr: float = DEFAULT_LR["adam"]  # for the mean-per-token loss; see docs/training.md "Loss scale"
    schedule: str = "wsd"  # how lr moves over the budget: wsd, cosine, step or constant (lstmtext.schedule)
    warmup: float = 0.02  # cosine: share of the budget spent warming up from a small lr to lr
    lr_floor: float = 0.1  # cosine, wsd: lr at the end of the budget, as a share of lr
    cooldown: float = 0.2  # wsd: the last share of the budget, where lr falls to the floor
    lr_decay: float = 0.5  # step: lr *= lr_decay each epoch after decay_after (Zaremba et al. 2014)
    decay_after: int = 4  # step: epochs at full lr
    clip: float = 1.0  # max global norm of the gradient; 0 turns clipping off
    weight_decay: float = 0.0  # L2 penalty on weight matrices (not biases)
    epochs: int = 0  # budget in passes over the training text (0: no epoch limit)
    max_steps: int = 0  # budget in windows (0: no step limit)
    max_minutes: float = 0.0  # budget in wall-clock minutes of the run, validation included (0: none)
    eval_every: int = 0  # also validate every this many steps (0: only after each epoch)
    patience: int = 0  # stop after this many validations without improvement (0: never)
    # A validation loss this fraction above the best so far, with the training loss as far above its
    # lowest (a run diverging, not overfitting), takes the run back to its best weights, with a fresh
    # optimizer and half the learning rate from then on (0: never). Mikolov's RNNLM toolkit reloads
    # and halves the same way.
    rollback: float = 0.05
    # A run that stops improving while wsd still holds its rate (every validation over the last fifth
    # of the run, and at least the last 3, this much above the best in perplexity) goes back to its best
    # weights, decays from there and ends when the decay does, instead of overfitting at full rate for
    # the rest of the budget (0: never).
    plateau: float = 0.02
    log_every: int = 50  # steps between progress lines in metrics.jsonl
    save_every: int = 0  # also write last.safetensors every this many steps (0: after epochs only)
    sample_every: int = 0  # print a short sample every this many steps and at each validation (0: never)
    threads: int = 0  # BLAS threads; 0: chosen while training from what the machine can give now
    on_nan: str = "stop"  # a diverged window (train.healthy): "stop" training, or "skip" that window
    eval_batch_size: int = EvalOptions.batch_size  # streams used by validation, as `eval` scores
    seed: int = 1234
    dtype: str = "float32"  # float64 is slower; it is for comparing runs with a reference trainer
    freeze_embed: bool = False  # the embedding is not trained (e.g. vectors from --embed-init kept as they are)
    accumulate: int = 1  # windows per optimizer step, their gradients averaged (and exchanged once under MPI)
    # Each stream's carried state is zeroed with this chance at the start of a step, so the model also
    # learns to read from the fresh state that `generate` and `eval` start from (0: never).
    reset_state: float = 0.05

    def __post_init__(self) -> None:
        for name in ("batch_size", "bptt", "log_every", "eval_batch_size", "accumulate", "nonmono"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("epochs", "max_steps", "eval_every", "patience", "decay_after", "save_every", "sample_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")
        # No upper bound here: a checkpoint written on a bigger machine must still load; the
        # trainer uses at most the cores it is given.
        if self.threads < 0:
            raise ConfigError(f"--threads must be 0 (choose while training) or a count of threads, got {self.threads}")
        if self.max_minutes < 0:
            raise ConfigError(f"--max-minutes must not be negative, got {self.max_minutes}")
        for name in ("rollback", "plateau"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name} must not be negative, got {getattr(self, name)}")
        if self.epochs == 0 and self.max_steps == 0 and self.max_minutes == 0:
            raise ConfigError("give a budget: --epochs N, --max-steps N and/or --max-minutes M")
        if self.on_nan not in ("stop", "skip"):
            raise ConfigError(f"--on-nan must be stop or skip, got {self.on_nan!r}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"--dtype must be float32 or float64, got {self.dtype!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"--optimizer must be {_one_of(list(OPTIMIZERS))}, got {self.optimizer!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must not be negative, got {self.weight_decay}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule must be {_one_of(list(SCHEDULES))}, got {self.schedule!r}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"--warmup is a share of the budget in [0, 1), got {self.warmup}")
        if not 0 <= self.cooldown <= 1:
            raise ConfigError(f"--cooldown is a share of the budget in [0, 1], got {self.cooldown}")
        if not 0 <= self.lr_floor <= 1:
            raise ConfigError(f"--lr-floor is a share of --lr in [0, 1], got {self.lr_floor}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"--lr-decay must be in (0, 1], got {self.lr_decay}")
        if not 0 <= self.reset_state <= 1:
            raise ConfigError(f"--reset-state is a chance in [0, 1], got {self.reset_state}")
        if self.clip < 0:
            raise ConfigError(f"--clip must be positive (or 0 to turn it off), got {self.clip}")


def from_dict(cls, d: dict):
    """Build a config from a checkpoint header, ignoring nothing silently: unknown keys are an error."""
    if not isinstance(d, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object")
    d = {**BEFORE.get(cls, {}), **d}
    types = {f.name: f.type for f in fields(cls)}
    unknown = set(d) - set(types)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} fields {sorted(unknown)}; is the checkpoint newer than lstmtext?")
    missing = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING} - set(d)
    if missing:
        raise ConfigError(f"{cls.__name__} is missing {', '.join(sorted(missing))}; the checkpoint is damaged")
    for name, value in d.items():
        # JSON has no int/float distinction to trust: 13.0 must not pass for a vocabulary size.
        want = {int: int, float: (int, float), str: str, bool: bool}[types[name]]
        if isinstance(value, bool) != (want is bool) or not isinstance(value, want):
            raise ConfigError(f"{cls.__name__}.{name} has the wrong type ({type(value).__name__})")
    return cls(**d)


# What a checkpoint means by a field it does not have: it was written before the field existed, when
# every run had this value (the defaults above have moved on since).
BEFORE = {
    ModelConfig: {"init": "uniform"},
    # lr followed lr_decay per epoch; no resets; no rollback; no plateau
    TrainConfig: {"schedule": "step", "reset_state": 0.0, "rollback": 0.0, "plateau": 0.0},
}
