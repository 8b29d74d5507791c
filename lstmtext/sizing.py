"""The model's size when the person gives none: as large as the budget can train, no larger than the
text can feed.

A network trained for a fixed time is best at a size between two failures: too small, and it stops
improving long before the time is up; too large, and it has seen too few tokens per parameter to
use what it has (and every step is slow). So the size comes from three facts of this run:

- the budget: tokens the run can see, the smaller of `--epochs` passes over the text, `--max-steps`
  windows, and `--max-minutes` at this machine's speed for that shape;
- this machine's speed: a few timed windows of two shapes (`measure`) fit seconds per window =
  T·L·step + training FLOPs / FLOP rate (`Speed`), the per-step part being what small models pay
  in Python and elementwise work, the FLOP part the GEMMs of large ones;
- the text: a model with many more parameters than the text has tokens learns it by heart.

`choose` walks LADDER from small to large and keeps the largest shape whose run sees at least
TOKENS_PER_PARAM tokens per trained parameter and has at most PARAMS_PER_TOKEN parameters per token
of text. Dropout follows the passes the run will make over its text: none when it sees the text
about once (nothing to overfit), more as it revisits it, and most on a text too small for the
model. Any size option given on the command line wins; `choose` only fills in the rest. The same
plan picks the tokenizer when none is given (lstmtext.start): characters when BPE would read the
text more than CHAR_PASSES times, characters fewer than CHAR_ROOM times, and more than NEW_WORDS of
the held-out text's words are not in the training text. The figures behind the constants are in
docs/training.md ("Defaults").
"""

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

OPTIONS = ("layers", "hidden", "embed", "dropout")  # what `choose` fills in when not given
# (layers, hidden) from small to large: one layer first, since on a short budget a wider layer beat
# two narrower ones (docs/training.md "Defaults"), then two layers for the budgets that can afford them.
LADDER = ((1, 128), (1, 256), (1, 384), (1, 512), (2, 512), (2, 768), (2, 1024))
TOKENS_PER_PARAM = 0.5  # least tokens seen per trained parameter
PARAMS_PER_TOKEN = 4.0  # most trained parameters per token of training text (docs/training.md "Defaults": at 3,
# 1×256 on a 1 MB text sat on the line, kept on Tiny Shakespeare and refused on Debian changelogs)
TRAINING_SHARE = 0.9  # of a --max-minutes budget, the part spent training (the rest: validation, saving)
CHAR_EMBED = 64  # a character vocabulary is small: a wide embedding buys nothing
WORD_EMBED = 256  # word and BPE embeddings, at most the hidden size
WORD_VOCAB = 10_000  # most words (and characters) kept; the rest are <unk>
BPE_VOCAB_PER_ROOT_CHAR = 2.0  # BPE vocabulary per square root of training characters: 1 MB gives 2,000
BPE_VOCAB_RANGE = (400, 16_000)  # the 256 bytes, some merges, and a head a laptop can train
# (passes over the text, dropout): the first row whose pass count the run does not exceed.
DROPOUT_BY_PASSES = ((2.0, 0.0), (6.0, 0.1), (15.0, 0.2), (float("inf"), 0.3))
# Past SMALL_TEXT_PASSES passes, a text too small for the shape (more than PARAMS_PER_TOKEN trained
# parameters per token: even the ladder's smallest is too big for it) takes SMALL_TEXT_DROPOUT. 100 KB
# of prose or changelogs (docs/training.md "Defaults"): 0.5 beat 0.3 at 128 to 833 passes; on 1 MB of
# changelogs at 175 passes, with the run ended once it stopped improving (--plateau), 0.3 beat 0.5 by 7%.
SMALL_TEXT_PASSES, SMALL_TEXT_DROPOUT = 100.0, 0.5


@dataclass(frozen=True)
class Speed:
    """Seconds per training window of a shape: bptt·layers·step_s + FLOPs / flops_per_s, plus the
    optimizer's update of every parameter once a window (Adam's is dense, the embedding included)."""

    step_s: float  # per time step and layer: Python and elementwise work that does not grow with GEMMs
    flops_per_s: float  # what the GEMMs reach on this machine now
    update_s: float = 0.0  # the optimizer's seconds per parameter and window

    def window_seconds(self, layers: int, hidden: int, embed: int, vocab: int, batch: int, bptt: int) -> float:
        flops = training_flops(layers, hidden, embed, vocab, batch, bptt)
        params = trained_params(layers, hidden, embed, vocab) + vocab * embed
        return bptt * layers * self.step_s + flops / self.flops_per_s + params * self.update_s


def trained_params(layers: int, hidden: int, embed: int, vocab: int) -> int:
    """The dense parameters every step trains: the recurrent layers and the head (the embedding, whose
    rows each step touches only where the window's tokens are, is left out, as in scaling-law counts)."""
    recurrent = sum(4 * hidden * ((embed if i == 0 else hidden) + hidden + 1) for i in range(layers))
    return recurrent + hidden * vocab + vocab


def training_flops(layers: int, hidden: int, embed: int, vocab: int, batch: int, bptt: int) -> float:
    """Forward and backward of one window: 3 × the forward's 2 FLOPs per multiply-add."""
    per_token = sum(4 * hidden * ((embed if i == 0 else hidden) + hidden) for i in range(layers)) + hidden * vocab
    return 6.0 * batch * bptt * per_token


@dataclass(frozen=True)
class Budget:
    """What a run may spend (0: no limit), and the size of its text."""

    epochs: int
    max_steps: int
    max_minutes: float
    train_tokens: int
    batch: int
    bptt: int
    accumulate: int = 1

    def tokens(self, window_s: float) -> float:
        """Tokens the run sees when a window takes window_s seconds."""
        limits = []
        window = self.batch * self.bptt
        if self.epochs:
            limits.append(self.epochs * self.train_tokens)
        if self.max_steps:
            limits.append(self.max_steps * self.accumulate * window)
        if self.max_minutes:
            limits.append(60.0 * self.max_minutes * TRAINING_SHARE / window_s * window)
        return min(limits)


@dataclass(frozen=True)
class Choice:
    layers: int
    hidden: int
    embed: int
    dropout: float
    tokens: float  # the run's tokens at this size, as estimated
    passes: float  # tokens / the text's tokens
    params: int  # trained_params of the shape

    def reason(self) -> str:
        """One line for the start of `train` and for `info`."""
        return (
            f"{self.layers}×{self.hidden}, embed {self.embed}, dropout {self.dropout:g}: about "
            f"{self.tokens / 1e6:,.1f}M tokens ({self.passes:,.1f} passes over the text) for "
            f"{self.params / 1e6:,.2f}M trained parameters"
        )


def embed_for(kind: str, hidden: int) -> int:
    return CHAR_EMBED if kind == "char" else min(hidden, WORD_EMBED)


def placeholders(shape: dict) -> dict:
    """shape with the options still to be chosen (None) set to a valid size, to check the others early.
    A missing embed or hidden takes the other's size, so that --tie with one of them given passes."""
    size = shape.get("hidden") or shape.get("embed") or LADDER[0][1]
    fill = {"layers": 1, "hidden": size, "embed": size, "dropout": 0.0}
    return {k: fill[k] if v is None and k in fill else v for k, v in shape.items()}


def choose(kind: str, vocab: int, budget: Budget, speed: Speed | None, given: dict, tie: bool = False) -> Choice:
    """The size of a run: `given` holds the size options the person set (layers, hidden, embed,
    dropout); they are kept, and the ladder is walked over the rest. tie: embed = hidden. speed:
    needed only for a budget in minutes."""
    best = None
    for layers, hidden in LADDER:
        layers = given.get("layers", layers)
        if tie:  # one size for both: the one given, if either is
            hidden = embed = given.get("hidden", given.get("embed", hidden))
        else:
            hidden = given.get("hidden", hidden)
            embed = given.get("embed", embed_for(kind, hidden))
        params = trained_params(layers, hidden, embed, vocab)
        shape = (layers, hidden, embed, vocab, budget.batch, budget.bptt)
        tokens = budget.tokens(0.0 if speed is None else speed.window_seconds(*shape))
        fits = tokens >= TOKENS_PER_PARAM * params and params <= PARAMS_PER_TOKEN * budget.train_tokens
        if best is None or fits:
            best = (layers, hidden, embed, tokens, params)
    layers, hidden, embed, tokens, params = best
    passes = tokens / max(budget.train_tokens, 1)
    dropout = given.get("dropout", dropout_for(passes, params, budget.train_tokens))
    return Choice(layers, hidden, embed, dropout, tokens, passes, params)


def dropout_for(passes: float, params: int, train_tokens: int) -> float:
    """Dropout for a run that reads its text `passes` times: more as it revisits it, and the most
    where the text is too small for the model, which would learn it by heart first."""
    if passes > SMALL_TEXT_PASSES and params > PARAMS_PER_TOKEN * train_tokens:
        return SMALL_TEXT_DROPOUT
    return next(d for most, d in DROPOUT_BY_PASSES if passes <= most)


def vocab_for(kind: str, chars: int) -> int:
    """The vocabulary when --vocab-size is not given. BPE's grows as the square root of the training
    text: a large vocabulary on a small text leaves most tokens too rare to learn and spends the
    run's time in the head (on Tiny Shakespeare in 2 minutes, 1,000-2,000 tokens beat 10,000 by 5%
    in bits per byte; docs/training.md "Defaults"). Word and character vocabularies keep the old cap."""
    if kind != "bpe":
        return WORD_VOCAB
    size = BPE_VOCAB_PER_ROOT_CHAR * chars**0.5
    return int(min(max(round(size, -2), BPE_VOCAB_RANGE[0]), BPE_VOCAB_RANGE[1]))


def vocab_reason(kind: str, chars: int, size: int) -> str:
    """One line for `train` and `info`: the vocabulary vocab_for chose, and why."""
    if kind != "bpe":
        return f"at most {size:,} {kind} tokens, the rest <unk>"
    return (f"at most {size:,} BPE tokens, {BPE_VOCAB_PER_ROOT_CHAR:g} × the square root of the "
            f"{chars:,} training characters (within {BPE_VOCAB_RANGE[0]:,}-{BPE_VOCAB_RANGE[1]:,})")


# A text that a budget in minutes would read many times over as BPE is small for that budget: a BPE
# model under the cap learns it by heart in its first passes and the rest of the time is lost, while
# characters make three to four times the tokens of the same text, room for a model that much larger
# under the same cap. That helps only while the characters themselves read the text a few times: a
# text they too would read often is learnt by heart either way, and BPE's longer tokens model it
# better (docs/training.md "Defaults"). On the recipe suite characters were 4.5% ahead where BPE would
# read the text 53 times and characters 3 (man pages, 60 minutes); 6% behind at 33 BPE passes
# (Debian changelogs, 10 minutes); at 171 to 198 BPE passes and 12 to 20 of characters (the
# changelogs, 60 minutes) characters were 3% behind BPE. The planned passes of one cell vary by a
# quarter from one measurement of the speed to the next, so each line sits in the middle, in
# proportion, of the nearest cells on either side (33 and 53; 3.1 and 12).
CHAR_PASSES = 42.0  # BPE passes past which characters are considered ...
CHAR_ROOM = 6.0  # ... and taken if they would read the text fewer times than this ...
NEW_WORDS = 0.05  # ... and more than this share of the held-out text's words are new to the training text
WORD = re.compile(r"[^\W\d_]+")  # a word, for NEW_WORDS: a run of letters, in any script


def new_word_share(train: Iterable[str], valid: Iterable[str]) -> float:
    """The share of the held-out text's words (each occurrence, case kept) that the training text
    never uses; 0 when it has none. Both texts in pieces cut at line ends, as TextPart streams them.

    A BPE model that reads its text many times learns the text's words by heart: where the held-out
    text is written in those words it goes on improving (War and Peace: 2.2% new), where many of its
    words are new it overfits within a few passes and characters, which spell a new word as they
    spell any other, do better (man pages 10.9%, python code 9.8%; docs/training.md "Defaults")."""
    seen = {w for piece in train for w in WORD.findall(piece)}
    new = total = 0
    for piece in valid:
        words = WORD.findall(piece)
        total += len(words)
        new += sum(w not in seen for w in words)
    return new / total if total else 0.0


def reads_characters(bpe_passes: float, char_passes: float | None, new_words: float | None = None) -> bool:
    """Whether a budget in minutes reads the text as characters: BPE would read it more than
    CHAR_PASSES times, characters fewer than CHAR_ROOM times, and more than NEW_WORDS of the held-out
    text's words are new. None: not measured yet, so whether the rest is worth measuring."""
    return (bpe_passes > CHAR_PASSES and (char_passes is None or char_passes < CHAR_ROOM)
            and (new_words is None or new_words > NEW_WORDS))


def tokenizer_reason(bpe_passes: float, char_passes: float | None, kind: str, tokens_ratio: float = 1.0,
                     new_words: float | None = None) -> str:
    """One line for `train` and `info`: the tokenizer chosen by the passes each plan would make and
    the share of new words in the held-out text (char_passes, new_words None: not considered).
    tokens_ratio: the text's character tokens over its BPE tokens."""
    if kind == "char":
        return (f"characters, since as BPE this text would be read {bpe_passes:,.0f} times in the budget (more "
                f"than {CHAR_PASSES:g}: learnt by heart long before the end), as characters {char_passes:,.1f} "
                f"times (fewer than {CHAR_ROOM:g}), and {new_words:.1%} of the held-out text's words are not in "
                f"the training text (more than {NEW_WORDS:.0%}: words BPE has not learnt, which characters "
                f"spell); characters make {tokens_ratio:.1f} times the tokens of it, room for a larger model")
    if new_words is not None:
        return (f"bpe: it would read this text {bpe_passes:,.0f} times in the budget and characters "
                f"{char_passes:,.1f} times, but the held-out text is written in the training text's words "
                f"({new_words:.1%} new, not more than {NEW_WORDS:.0%}), which BPE learns as wholes")
    if char_passes is not None:
        return (f"bpe: it would read this text {bpe_passes:,.0f} times in the budget, but characters would "
                f"too ({char_passes:,.1f} times, not fewer than {CHAR_ROOM:g})")
    return f"bpe, which would read this text {bpe_passes:,.1f} times in the budget (characters past {CHAR_PASSES:g})"


MEASURE_BPTT = 16  # short windows keep the measurement quick and its logits small; time is linear in T


def measure(model_cfg, train_cfg, windows: int = 2) -> Speed:
    """Time `windows` training windows (after one to warm up) of a small and a large one-layer shape
    on this vocabulary and batch, MEASURE_BPTT steps long, and fit Speed to them. A second or a few.

    Each shape is timed on one BLAS thread and on all the cores it may use, and the faster counts, as
    the trainer's thread tuner will choose: on a busy machine all threads can be several times slower
    than one (docs/speed.md "Threads"), and a size chosen from that would be too small."""
    from dataclasses import replace

    from lstmtext import model, optim, threads  # here: the sizing rules above need none of the network

    counts = sorted({1, train_cfg.threads or threads.allowed_cores()})
    before = threads.blas_threads()

    def seconds(hidden: int) -> tuple[float, float, float]:
        """-> (forward and backward s, their FLOPs, the update's s per parameter), the faster count's."""
        return min(one_count(hidden, n) for n in counts)

    def one_count(hidden: int, n: int) -> tuple[float, float, float]:
        threads.set_threads(n)
        m = replace(model_cfg, layers=1, hidden=hidden, embed=embed_for("char", hidden), dropout=0.0, tie=False)
        rng = np.random.default_rng(0)
        params = model.init_params(m, rng, np.dtype(train_cfg.dtype))
        state = model.init_state(m, train_cfg.batch_size, np.dtype(train_cfg.dtype))
        opt = optim.init_state("adam", params)
        x = rng.integers(0, m.vocab_size, (MEASURE_BPTT, train_cfg.batch_size))  # (T, B)
        passes, updates = [], []  # a window's update does not grow with its length: timed apart
        for _ in range(windows + 1):
            t0 = time.perf_counter()
            _, _, cache, _ = model.forward(params, m, x, x, state, rng)
            grads, _ = model.backward(params, m, cache)
            t1 = time.perf_counter()
            optim.step("adam", params, grads, opt, 1e-3)
            passes.append(t1 - t0)
            updates.append(time.perf_counter() - t1)
        flops = training_flops(1, hidden, m.embed, m.vocab_size, train_cfg.batch_size, MEASURE_BPTT)
        n_params = sum(p.size for p in params.values())
        return float(np.median(passes[1:])), flops, float(np.median(updates[1:])) / n_params

    try:
        (t_small, f_small, _), (t_large, f_large, update) = seconds(128), seconds(512)
    finally:
        threads.set_threads(before or threads.allowed_cores())
    return fit((t_small, f_small), (t_large, f_large), MEASURE_BPTT, update)


def fit(small: tuple[float, float], large: tuple[float, float], bptt: int, update_s: float) -> Speed:
    """Speed from two one-layer shapes' (seconds, FLOPs) of a forward and backward over bptt steps: two
    equations t = bptt·step + f / rate, two unknowns."""
    (t_small, f_small), (t_large, f_large) = small, large
    rate = max((f_large - f_small) / max(t_large - t_small, 1e-9), 1e6)  # a noisy pair cannot make it absurd
    step = max((t_small - f_small / rate) / bptt, 0.0)
    return Speed(step_s=step, flops_per_s=rate, update_s=update_s)
