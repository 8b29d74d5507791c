"""`make memory`: does a cell remember across a gap? A family of long-range dependency tasks, each
cell trained on each through the CLI and scored the way a person asks (`lstmtext.load(run)` then
`generate(prompt, length=1, greedy=True)`), beside a PyTorch nn.LSTM (its default initialisation)
trained on the same data in the same run. With --torch, PyTorch goes first, scored after every
epoch, and lstmtext trains for as many epochs as PyTorch's slowest seed needed to answer every gap
from a fresh state (`matched_epochs`), so one run's table says whether lstmtext learns as fast.

Each line: a cue word, then G filler words, then the marker "says", then the answer, a fixed
function of the cue ("I grew up in India ... I speak fluent ___"). In generators with a prefix,
0-PREFIX_MAX filler words come before the cue, so it is not always at a line start:

    cue_3 the cat sees a box holds the river ... says ans_0                      (basic)
    w17 w203 cue_1 w88 w9 w140 ... says ans_4                                     (markov, prefix)

The filler is drawn without looking at the cue, so only the cue, G + 1 words back, tells the
answer; always answering the most frequent answer scores 1 / cues on the held-out probes (every
cue equally often at every gap). The generators (SPECS) differ in cues, grammar, filler
vocabulary, gaps and prefix.

    python -m bench.memory [--generators basic,rich,...] [--cells lstm,rnn] [--seeds 1,2,3] [--torch]
                           [--args '--init torch'] [--out runs/memory] [--words N] [--epochs N]
"""

import argparse
import contextlib
import functools
import json
import math
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS_VERSION = 2  # results.json: 2 = {"version", "train_args", "specs", "rows"}; 1 was a bare list of rows
SHORT_GAPS = (1, 10)  # gaps of the short training lines, where the cue is easy to find
SHORT_SHARE = 0.5  # of training lines; the rest spread over the spec's train_gaps, where keeping it is the test
PREFIX_MAX = 20  # a prefix is 0-PREFIX_MAX filler words, uniform: the cue starts the line 1 time in 21
PROBES_PER_GAP = 60  # at least; rounded up to a multiple of the cues, so every cue is probed equally often
CONTEXT_LINES = 2  # whole lines of the same text before a probe, when scored "in context"
PASS = 0.95  # "learned": every gap at least this accurate from a fresh state
MODES = ("fresh", "context")  # a probe alone from a zero state (as `lstmtext generate` starts), or after context
TORCH = "PyTorch nn.LSTM"  # the reference's name in rows and tables
GAPS_60 = (5, 10, 20, 40, 60)
GAPS_100 = (5, 10, 20, 40, 60, 100)


@dataclass(frozen=True)
class Spec:
    """One generator of the family."""

    name: str  # what --generators picks and the tables show
    cues: int  # distinct cue words, each with its own answer: chance is 1 / cues
    grammar: str  # the filler's grammar, a key of GRAMMARS
    vocab: int  # distinct filler words the grammar draws from
    train_gaps: tuple[int, int]  # gap range (inclusive) of the long training lines; short ones: SHORT_GAPS
    held_gaps: tuple[int, ...]  # the gaps scored, on held-out probes
    prefix: bool  # 0-PREFIX_MAX filler words before the cue, in training lines and probes alike
    words: int  # training words, line ends counted; validation is a twentieth of it
    epochs: int  # passes over the training words, lstmtext's and PyTorch's

    def __post_init__(self) -> None:
        assert math.gcd(3, self.cues) == 1, f"{self.name}: answer_of is a permutation only when 3 and cues are coprime"
        assert self.grammar in GRAMMARS and max(self.held_gaps) <= self.train_gaps[1], self

    def answer_of(self, cue: int) -> int:
        """A fixed permutation, so the task is not "answer = cue"."""
        return (3 * cue + 1) % self.cues

    def describe(self) -> str:
        lo, hi = self.train_gaps
        prefix = f", 0-{PREFIX_MAX} filler words before the cue" if self.prefix else ""
        return (f"{self.cues} cues, {self.grammar} grammar over {self.vocab} words, trained on gaps "
                f"{SHORT_GAPS[0]}-{SHORT_GAPS[1]} and {lo}-{hi}{prefix}, {self.words:,} words, {self.epochs} epochs")


# -- the filler grammars: each has `words` (its vocabulary) and `stream(rng, n)`, n words of it ------------

DETS = ["the", "a", "this", "that", "every", "some", "each", "no"]
NOUNS = ["cat", "box", "river", "dog", "tree", "house", "road", "stone", "bird", "lamp", "door", "hill"]
VERBS = ["sees", "holds", "finds", "takes", "keeps", "moves", "likes", "meets", "calls", "hears"]
ADJS = ["red", "old", "small", "quiet", "bright", "cold", "tall", "green"]
PREPS = ["in", "on", "under", "near", "with", "from", "behind", "over"]
CONJS = ["because", "while", "when", "although", "if", "since", "after", "before"]
MARKS = [",", ";", ".", ":", "!", "?", "(", ")", '"']


def names(real: list[str], kind: str, n: int) -> list[str]:
    """n words of a class: the real ones first, then kind4, kind5, ... when more are asked for."""
    return real[:n] + [f"{kind}{i}" for i in range(len(real), n)]


def pick(rng: np.random.Generator, words: list[str]) -> str:
    return str(rng.choice(words))


class Cyclic:
    """(determiner noun verb)*, cut to n: predictable text (at 8 words about 1 nat a word), so the one
    unpredictable word, the answer, carries a large share of the loss."""

    def __init__(self, vocab: int) -> None:
        n_det = max(2, vocab // 8)
        n_noun = (vocab - n_det) // 2
        n_verb = vocab - n_det - n_noun
        self.kinds = [names(DETS, "det", n_det), names(NOUNS, "noun", n_noun), names(VERBS, "verb", n_verb)]
        self.words = [w for kind in self.kinds for w in kind]

    def stream(self, rng: np.random.Generator, n: int) -> list[str]:
        return [pick(rng, self.kinds[i % 3]) for i in range(n)]


class Rich:
    """Sentences S -> NP VP; NP -> det adj* noun (PP); PP -> prep NP; VP -> verb NP (conj S): adjectives,
    prepositional phrases and subordinate clauses make phrases of variable length, cut to n words."""

    DEPTH = 2  # deepest nesting of PPs and subordinate clauses

    def __init__(self, vocab: int) -> None:
        self.det, self.prep, self.conj = DETS[:6], PREPS, CONJS
        n_open = vocab - len(self.det) - len(self.prep) - len(self.conj)
        self.adj, self.verb = names(ADJS, "adj", n_open // 4), names(VERBS, "verb", n_open // 4)
        self.noun = names(NOUNS, "noun", n_open - 2 * (n_open // 4))
        self.words = [*self.det, *self.prep, *self.conj, *self.adj, *self.verb, *self.noun]

    def noun_phrase(self, rng: np.random.Generator, depth: int) -> list[str]:
        adjs = min(int(rng.geometric(0.5)) - 1, 3)  # 0 half the time, then 1, 2, 3
        out = [pick(rng, self.det), *(pick(rng, self.adj) for _ in range(adjs)), pick(rng, self.noun)]
        if depth < self.DEPTH and rng.random() < 0.3:
            out += [pick(rng, self.prep), *self.noun_phrase(rng, depth + 1)]
        return out

    def sentence(self, rng: np.random.Generator, depth: int = 0) -> list[str]:
        out = [*self.noun_phrase(rng, depth), pick(rng, self.verb), *self.noun_phrase(rng, depth)]
        if depth < self.DEPTH and rng.random() < 0.35:
            out += [pick(rng, self.conj), *self.sentence(rng, depth + 1)]
        return out

    def stream(self, rng: np.random.Generator, n: int) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            out += self.sentence(rng)
        return out[:n]


class Markov:
    """A first-order Markov chain over `vocab` words: each word has SUCCESSORS next words, with
    weights drawn once from a fixed seed (the chain is part of the generator, not of the data seed).
    The successor i + 1 is always among them, so the chain reaches every word."""

    SUCCESSORS = 8
    SEED = 20261205

    def __init__(self, vocab: int) -> None:
        rng = np.random.default_rng(self.SEED)
        self.words = [f"w{i}" for i in range(vocab)]
        nxt = np.empty((vocab, self.SUCCESSORS), dtype=np.int64)  # (N, K)
        for i in range(vocab):
            others = np.setdiff1d(np.arange(vocab), [i, (i + 1) % vocab])
            nxt[i] = [(i + 1) % vocab, *rng.choice(others, self.SUCCESSORS - 1, replace=False)]
        self.next = nxt
        self.cumulative = np.cumsum(rng.dirichlet(np.ones(self.SUCCESSORS), size=vocab), axis=1)  # (N, K)

    def stream(self, rng: np.random.Generator, n: int) -> list[str]:
        i, u = int(rng.integers(len(self.words))), rng.random(n)  # u (n,)
        out = []
        for t in range(n):
            out.append(self.words[i])
            k = min(int(np.searchsorted(self.cumulative[i], u[t])), self.SUCCESSORS - 1)  # min: rounding at 1.0
            i = int(self.next[i, k])
        return out


class Punct:
    """Line-internal structure: short clauses (det adj? noun verb (det adj? noun)?), some in
    parentheses or quotes, separated by punctuation marks that are words of their own, cut to n."""

    SEPARATORS = MARKS[:6]

    def __init__(self, vocab: int) -> None:
        self.det = DETS[:4]
        n_open = vocab - len(self.det) - len(MARKS)
        self.adj, self.verb = names(ADJS, "adj", n_open // 6), names(VERBS, "verb", n_open // 3)
        self.noun = names(NOUNS, "noun", n_open - n_open // 6 - n_open // 3)
        self.words = [*MARKS, *self.det, *self.adj, *self.verb, *self.noun]

    def noun_phrase(self, rng: np.random.Generator) -> list[str]:
        return [pick(rng, self.det), *([pick(rng, self.adj)] if rng.random() < 0.4 else []), pick(rng, self.noun)]

    def clause(self, rng: np.random.Generator) -> list[str]:
        out = [*self.noun_phrase(rng), pick(rng, self.verb), *(self.noun_phrase(rng) if rng.random() < 0.6 else [])]
        r = rng.random()
        return ["(", *out, ")"] if r < 0.15 else ['"', *out, '"'] if r < 0.3 else out

    def stream(self, rng: np.random.Generator, n: int) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            out += [*self.clause(rng), pick(rng, self.SEPARATORS)]
        return out[:n]


GRAMMARS = {"cyclic": Cyclic, "rich": Rich, "markov": Markov, "punct": Punct}


@functools.cache
def grammar(name: str, vocab: int):
    """The grammar of that name over `vocab` words, built once (the Markov chain draws its table)."""
    g = GRAMMARS[name](vocab)
    assert len(set(g.words)) == len(g.words) == vocab, (name, vocab)
    return g


# Epochs are generous: learning is scored from a fresh state now, which the in-context figures below
# (2026-12-02, Adam 2e-3 constant) flatter. Each run of 1 × 128 stays within a few minutes on 2 cores.
SPECS = (
    # name, cues, grammar, filler vocabulary, long training gaps, held-out gaps, prefix, words, epochs
    # Today's task, the same text (seed 0); 5 cues: PyTorch found the cue in under 8 epochs in context.
    Spec("basic", 5, "cyclic", 8, (5, 60), GAPS_60, False, 900_000, 10),
    # Many cues on the simple grammar: with 10 cues PyTorch needed 14 epochs in context, so 20 get more.
    Spec("cues20", 20, "cyclic", 32, (5, 60), GAPS_60, False, 900_000, 16),
    Spec("rich", 8, "rich", 150, (5, 100), GAPS_100, True, 900_000, 14),
    # A high-entropy filler (about 1.7 nats a word) buries the answer's loss: at 14 epochs neither lstmtext
    # (0.19-0.84 from a fresh state, 3 seeds) nor PyTorch (0.12) had found the cue; the loss still fell.
    Spec("markov", 8, "markov", 250, (5, 100), GAPS_100, True, 900_000, 28),
    Spec("punct", 10, "punct", 60, (5, 100), GAPS_100, True, 900_000, 14),
)
SPEC = {s.name: s for s in SPECS}


# -- the data ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A held-out line, scored by the word a model writes after `prefix`."""

    gap: int  # filler words between the cue and "says"
    context: str  # CONTEXT_LINES whole lines of the same text, each ending "\n"
    prefix: str  # the line up to and including "says"
    answer: str  # the word that should follow


def line(spec: Spec, rng: np.random.Generator, gap: int, cue: int | None = None) -> tuple[str, str]:
    """-> (the line up to and including the marker, the answer). The filler is one stream of the
    grammar, drawn without looking at the cue, with the cue put in after `before` of its words."""
    cue = int(rng.integers(spec.cues)) if cue is None else cue
    before = int(rng.integers(PREFIX_MAX + 1)) if spec.prefix else 0
    words = grammar(spec.grammar, spec.vocab).stream(rng, before + gap)
    return " ".join([*words[:before], f"cue_{cue}", *words[before:], "says"]), f"ans_{spec.answer_of(cue)}"


def training_line(spec: Spec, rng: np.random.Generator) -> str:
    lo, hi = SHORT_GAPS if rng.random() < SHORT_SHARE else spec.train_gaps
    prefix, answer = line(spec, rng, int(rng.integers(lo, hi + 1)))
    return f"{prefix} {answer}"


def make_data(spec: Spec, out: Path, seed: int = 0) -> tuple[Path, Path, list[Probe]]:
    """Training and validation text, and the held-out probes."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)

    def text(n_words: int) -> str:
        lines, count = [], 0
        while count < n_words:
            lines.append(training_line(spec, rng))
            count += len(lines[-1].split()) + 1
        return "\n".join(lines) + "\n"

    train, valid = out / "train.txt", out / "valid.txt"
    train.write_text(text(spec.words), encoding="utf-8")
    valid.write_text(text(spec.words // 20), encoding="utf-8")
    per_gap = spec.cues * math.ceil(PROBES_PER_GAP / spec.cues)
    probes = []
    for g in spec.held_gaps:
        for k in range(per_gap):
            context = "".join(training_line(spec, rng) + "\n" for _ in range(CONTEXT_LINES))
            probes.append(Probe(g, context, *line(spec, rng, g, cue=k % spec.cues)))
    return train, valid, probes


# -- scoring -----------------------------------------------------------------------------------------------


def prompt_of(probe: Probe, mode: str) -> str:
    return probe.prefix if mode == "fresh" else probe.context + probe.prefix


def written(model, prompt: str) -> str:
    """The word `model` writes after `prompt`, greedily, as `lstmtext generate` does (the prompt stripped)."""
    out = model.generate(prompt, length=1, greedy=True)
    assert out.startswith(prompt), (prompt[-40:], out[-40:])
    new = out[len(prompt) :].split()
    return new[0] if new else ""


def score(model, probes: list[Probe], answers: list[str], modes=MODES, probs: bool = True) -> dict:
    """Accuracy per mode and gap, and (probs) the probability of the right answer among `answers`.
    model: anything with lstmtext.Model's `generate` (and, for probs, `next_token_probs` and `tokenizer`).
    -> {"fresh": {gap: acc}, "context": {gap: acc}, "p_fresh": {gap: p}, "p_context": {gap: p}}."""
    got: dict[str, dict[int, list[float]]] = {}
    for probe in probes:
        for mode in modes:
            prompt = prompt_of(probe, mode)
            got.setdefault(mode, {}).setdefault(probe.gap, []).append(float(written(model, prompt) == probe.answer))
            if probs:
                p = model.next_token_probs(prompt, n=model.tokenizer.vocab_size)
                p_answer = p.get(probe.answer, 0.0) / max(sum(p.get(a, 0.0) for a in answers), 1e-30)
                got.setdefault(f"p_{mode}", {}).setdefault(probe.gap, []).append(p_answer)
    return {key: {g: float(np.mean(v)) for g, v in by_gap.items()} for key, by_gap in got.items()}


def answers_of(spec: Spec) -> list[str]:
    return [f"ans_{k}" for k in range(spec.cues)]


class TorchLSTM:
    """PyTorch's embedding, nn.LSTM and head behind lstmtext.Model's `generate` (greedy, one word, <unk>
    barred as lstmtext's sampler bars it) and `next_token_probs`, so both are scored by one function."""

    def __init__(self, emb, rnn, head, tok) -> None:
        self.emb, self.rnn, self.head, self.tokenizer = emb, rnn, head, tok

    def logits(self, prompt: str) -> np.ndarray:
        import torch

        from lstmtext.sample import read_as_a_line

        with torch.no_grad():
            ids = read_as_a_line(self.tokenizer, prompt)  # the ids lstmtext's generate reads
            x = torch.from_numpy(ids.astype(np.int64))[:, None]  # (P, 1)
            out, _ = self.rnn(self.emb(x))  # (P, 1, H), from a zero state
            return self.head(out[-1, 0]).double().numpy()  # (V,)

    def generate(self, prompt: str, *, length: int, greedy: bool) -> str:
        assert length == 1 and greedy, "only what score() asks"
        z = self.logits(prompt)  # (V,)
        if self.tokenizer.unk_id is not None:
            z[self.tokenizer.unk_id] = -np.inf
        return f"{prompt} {self.tokenizer.id_to_token(int(z.argmax()))}"

    def next_token_probs(self, context: str, n: int) -> dict[str, float]:
        z = self.logits(context)  # (V,)
        p = np.exp(z - z.max())
        p /= p.sum()
        return {self.tokenizer.id_to_token(int(i)): float(p[i]) for i in np.argsort(-p, kind="stable")[:n]}


@contextlib.contextmanager
def one_thread():
    """Torch on one thread: a prompt is a batch of one, where a second thread only adds waiting
    (1.7 against 2.6-7.6 ms a 150-word prompt on the 2 shared cores, 2026-12-04)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Shape:
    """PyTorch's model and windows: the pinned configuration's (TRAIN_ARGS), or the size lstmtext's
    defaults choose for the text (`chosen_shape`)."""

    layers: int = 1
    hidden: int = 128
    embed: int = 64
    batch: int = 20
    bptt: int = 100

    def describe(self) -> str:
        return f"{self.layers}×{self.hidden}, embed {self.embed}, batch {self.batch}, bptt {self.bptt}"


PINNED = Shape()  # TRAIN_ARGS's size, batch and bptt


def run_torch(spec: Spec, train: Path, probes: list[Probe], seed: int, shape: Shape = PINNED,
              stop_at_pass: bool = False) -> dict:
    """PyTorch's nn.LSTM at its default initialisation (forget bias +1, as lstmtext's cells), the same
    tokenizer, streams, windows, optimizer (Adam 2e-3, constant) and clipping; its probes scored from a
    fresh state after every epoch, for the first epoch at which every gap reaches PASS; stop_at_pass:
    stop there (the epochs after it only say how its accuracy swings)."""
    import torch
    from torch import nn

    from lstmtext import batching
    from lstmtext.tokenizer import Tokenizer

    torch.manual_seed(seed)
    text = train.read_text(encoding="utf-8")
    tok = Tokenizer.train("word", text, vocab_size=10000, word_split="whitespace")
    ids = tok.encode(text)
    V, E, H, B, T = tok.vocab_size, shape.embed, shape.hidden, shape.batch, shape.bptt
    emb, rnn, head = nn.Embedding(V, E), nn.LSTM(E, H, num_layers=shape.layers), nn.Linear(H, V)
    with torch.no_grad():
        for layer in range(shape.layers):
            getattr(rnn, f"bias_ih_l{layer}")[H : 2 * H] += 1.0
    model = TorchLSTM(emb, rnn, head, tok)
    ps = [*emb.parameters(), *rnn.parameters(), *head.parameters()]
    opt = torch.optim.Adam(ps, lr=0.002)
    streams = torch.from_numpy(batching.make_streams(ids, B).astype(np.int64))  # (n, B)
    seconds, by_epoch = 0.0, []
    for epoch in range(spec.epochs):
        t0 = time.perf_counter()
        state, total, n = None, 0.0, 0
        for start in range(0, streams.shape[0] - 1 - T + 1, T):
            x, y = streams[start : start + T], streams[start + 1 : start + T + 1]  # (T, B)
            out, state = rnn(emb(x), state)
            loss = nn.functional.cross_entropy(head(out).reshape(-1, V), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(ps, 5.0)
            opt.step()
            state = tuple(s.detach() for s in state)
            total, n = total + loss.item(), n + 1
        seconds += time.perf_counter() - t0
        with one_thread():
            by_epoch.append(score(model, probes, answers_of(spec), modes=("fresh",), probs=False)["fresh"])
        print(f"  PyTorch epoch {epoch + 1}: train loss {total / max(n, 1):.3f}, fresh-state accuracy "
              f"{min(by_epoch[-1].values()):.2f} at the worst gap", file=sys.stderr, flush=True)
        if stop_at_pass and min(by_epoch[-1].values()) >= PASS:
            break
    needed = next((e + 1 for e, accs in enumerate(by_epoch) if min(accs.values()) >= PASS), None)
    t0 = time.perf_counter()
    with one_thread():
        scores = score(model, probes, answers_of(spec))
    return {"seconds": seconds, "score_seconds": time.perf_counter() - t0, "epochs_needed": needed,
            "by_epoch": by_epoch, **scores}


# -- the bench ---------------------------------------------------------------------------------------------

# One configuration for every cell and generator: 1 × 128, embed 64, batch 20, bptt 100, Adam 2e-3 on the
# default learning-rate schedule, clip 5 on the mean loss, no dropout; epochs come from the spec.
TRAIN_ARGS = [
    "--tokenizer", "word", "--word-split", "whitespace", "--embed", "64", "--hidden", "128", "--layers", "1",
    "--dropout", "0", "--batch-size", "20", "--bptt", "100", "--optimizer", "adam", "--lr", "0.002", "--clip", "5",
]


# --defaults: only what the text needs (its words are whitespace-separated tokens); the size, optimizer,
# learning rate, dropout, batch and bptt are lstmtext's defaults for this text and these epochs.
DEFAULT_ARGS = ["--tokenizer", "word", "--word-split", "whitespace"]


def chosen_shape(spec: Spec, train: Path) -> Shape:
    """The size `lstmtext train` chooses for this text and the spec's epochs with no size flag
    (lstmtext.sizing; the words' count as the CLI reads them), with the default batch and bptt."""
    from lstmtext import sizing
    from lstmtext.options import TrainOptions
    from lstmtext.tokenizer import Tokenizer

    o = TrainOptions()
    text = train.read_text(encoding="utf-8")
    tok = Tokenizer.train("word", text, vocab_size=sizing.vocab_for("word", len(text)), word_split="whitespace")
    budget = sizing.Budget(epochs=spec.epochs, max_steps=0, max_minutes=0.0, train_tokens=len(tok.encode(text)),
                           batch=o.batch_size, bptt=o.bptt)
    c = sizing.choose("word", tok.vocab_size, budget, None, {})
    return Shape(c.layers, c.hidden, c.embed, o.batch_size, o.bptt)


def run_lstmtext(spec: Spec, cell: str, train: Path, valid: Path, probes: list[Probe], run: Path, seed: int,
                 args: str, defaults: bool = False) -> dict:
    """Train through the CLI, then score the best checkpoint as a user loads it. defaults: with
    DEFAULT_ARGS instead of the pinned TRAIN_ARGS."""
    import lstmtext

    exe = str(Path(sys.executable).with_name("lstmtext"))
    cmd = [exe, "train", str(train), "--valid", str(valid), "--out", str(run), "--force", "--cell", cell,
           *(DEFAULT_ARGS if defaults else TRAIN_ARGS), "--epochs", str(spec.epochs), "--seed", str(seed),
           *shlex.split(args)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    model = lstmtext.load(run)
    scores = score(model, probes, answers_of(spec))
    c = model.config
    return {"seconds": seconds, "score_seconds": time.perf_counter() - t0 - seconds, "epochs_needed": None,
            "shape": f"{c.layers}×{c.hidden}, embed {c.embed}, dropout {c.dropout:g}", **scores}


def matched_epochs(spec: Spec, torch_rows: list[dict], own: bool) -> int:
    """lstmtext's epochs on `spec`: as many as PyTorch needed to reach PASS from a fresh state in every
    seed (its slowest seed's first such epoch), so "as fast as PyTorch" is one run's table; the spec's
    epochs when some seed never reached it, or when `own`."""
    needed = [r["epochs_needed"] for r in torch_rows]
    if own or not needed or None in needed:
        return spec.epochs
    return max(needed)


def print_tables(specs: list[Spec], rows: list[dict]) -> None:
    for spec in specs:
        mine = [r for r in rows if r["generator"] == spec.name]
        print(f"\n## {spec.name}: {spec.describe()}")
        for mode, title in (("fresh", "from a fresh state (lstmtext.load, generate)"),
                            ("context", f"in context ({CONTEXT_LINES} lines before the probe)")):
            print(f"\nAccuracy on the answer, {title}:\n")
            gaps = " | ".join(f"gap {g}" for g in spec.held_gaps)
            print(f"| model | seed | {gaps} | epochs | s | epochs to {PASS} |")
            print("|---|---|" + "---|" * len(spec.held_gaps) + "---|---|---|")
            for r in mine:
                needed = (r["epochs_needed"] or "not reached") if r["model"] == TORCH else "–"
                accs = " | ".join(f"{r[mode][g]:.2f}" for g in spec.held_gaps)
                print(f"| {r['model']} | {r['seed']} | {accs} | {r['epochs']} | {r['seconds']:.0f} | {needed} |")
    print("\n## Summary: accuracy from a fresh state; min over gaps and seeds, gap 60 as mean (worst seed)\n")
    print(f"| generator | model | epochs | seeds | min | gap 60 | min in context | PyTorch: epochs to {PASS} |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in specs:
        models = dict.fromkeys(r["model"] for r in rows if r["generator"] == spec.name)
        for model in models:
            rs = [r for r in rows if r["generator"] == spec.name and r["model"] == model]
            at60 = [r["fresh"][60] for r in rs if 60 in r["fresh"]]
            gap60 = f"{np.mean(at60):.2f} ({min(at60):.2f})" if at60 else "–"
            needed = ", ".join(str(r["epochs_needed"] or "not reached") for r in rs) if model == TORCH else "–"
            epochs = ", ".join(str(e) for e in dict.fromkeys(r["epochs"] for r in rs))
            worst = min(min(r["fresh"].values()) for r in rs)
            print(f"| {spec.name} | {model} | {epochs} | {len(rs)} | {worst:.2f} | {gap60} "
                  f"| {min(min(r['context'].values()) for r in rs):.2f} | {needed} |")


def save(path: Path, specs: list[Spec], rows: list[dict]) -> None:
    """After every run, so a long measurement that stops keeps what it measured."""
    doc = {"version": RESULTS_VERSION, "train_args": TRAIN_ARGS, "default_args": DEFAULT_ARGS,
           "specs": {s.name: asdict(s) for s in specs}, "rows": rows}
    path.write_text(json.dumps(doc, indent=1) + "\n")


def kept_rows(path: Path) -> list[dict]:
    """The rows of an earlier run of the same measurement (results.json), their gap keys as numbers again."""
    if not path.exists():
        return []
    doc = json.loads(path.read_text())
    if doc.get("version") != RESULTS_VERSION:
        sys.exit(f"{path} is from another version of this measurement; start a new --out")
    for r in doc["rows"]:
        for key in ("fresh", "p_fresh", "context", "p_context"):
            if key in r:
                r[key] = {int(g): v for g, v in r[key].items()}
        r["by_epoch"] = [{int(g): v for g, v in accs.items()} for accs in r.get("by_epoch", [])]
    return doc["rows"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generators", default=",".join(SPEC), help=f"comma-separated, of {', '.join(SPEC)}")
    ap.add_argument("--cells", default="rnn,gru,lstm,peephole,cifg")
    ap.add_argument("--args", default="", help="more lstmtext train options, e.g. '--init torch --chrono 60'")
    ap.add_argument("--seeds", default="1", help="comma-separated seeds")
    ap.add_argument("--torch", action="store_true", help="also train PyTorch's nn.LSTM (needs torch)")
    ap.add_argument("--words", type=int, default=None, help="training words for every generator (default: its spec's)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs for every generator (default: its spec's); with --torch, PyTorch's, "
                    "and lstmtext's at most these")
    ap.add_argument("--own-epochs", action="store_true",
                    help="with --torch, train lstmtext for the generator's epochs, not PyTorch's epochs to PASS")
    ap.add_argument("--defaults", action="store_true",
                    help="lstmtext with no size or training flags (its defaults choose them for the text), "
                    "and PyTorch at the size they choose, stopped at its first epoch at PASS")
    ap.add_argument("--out", default=str(ROOT / "runs" / "memory"))
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows already in OUT/results.json and train only the missing ones (a "
                    "measurement of many hours outlives one sitting)")
    a = ap.parse_args()
    unknown = [g for g in a.generators.split(",") if g and g not in SPEC]
    if unknown:
        ap.error(f"unknown generator {', '.join(unknown)}; known: {', '.join(SPEC)}")
    specs = [SPEC[g] for g in a.generators.split(",") if g]
    specs = [replace(s, words=a.words or s.words, epochs=a.epochs or s.epochs) for s in specs]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = kept_rows(out / "results.json") if a.resume else []

    def done(generator: str, model: str, seed: int) -> dict | None:
        return next((r for r in rows if (r["generator"], r["model"], r["seed"]) == (generator, model, seed)), None)

    def add(row: dict) -> None:
        rows.append(row)
        print(f"{row['generator']} {row['model']} seed {row['seed']}: from a fresh state "
              f"{min(row['fresh'].values()):.2f}, in context {min(row['context'].values()):.2f} at the worst gap; "
              f"{row['seconds']:.0f} s", flush=True)
        save(out / "results.json", specs, rows)

    seeds = [int(s) for s in a.seeds.split(",")]
    for spec in specs:
        train, valid, probes = make_data(spec, out / spec.name / "data")
        epochs = spec.epochs
        shape = chosen_shape(spec, train) if a.defaults else PINNED
        if a.torch:
            torch_rows = []
            for seed in seeds:
                r = done(spec.name, TORCH, seed)
                if r is None:
                    r = run_torch(spec, train, probes, seed, shape, stop_at_pass=a.defaults)
                    add({"generator": spec.name, "model": TORCH, "seed": seed, "epochs": len(r["by_epoch"]),
                         "shape": shape.describe(), **r})
                torch_rows.append(r)
            epochs = matched_epochs(spec, torch_rows, a.own_epochs)
        for seed in seeds:
            for c in [c for c in a.cells.split(",") if c]:
                model = f"lstmtext {c}" + (" defaults" if a.defaults else "") + (f" {a.args}" if a.args else "")
                if done(spec.name, model, seed) is not None:
                    continue
                run = out / spec.name / f"{c}-seed{seed}"
                r = run_lstmtext(replace(spec, epochs=epochs), c, train, valid, probes, run, seed, a.args, a.defaults)
                add({"generator": spec.name, "model": model, "seed": seed, "epochs": epochs, **r})
    print_tables(specs, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
