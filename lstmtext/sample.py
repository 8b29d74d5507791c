"""Sampling text from a trained model: greedy, temperature, top-k and nucleus (top-p).

All samples run together as one batch of streams; each step is one forward step of the network
and one draw per stream. The prompt primes the state first, so the first sampled token already
follows the prompt. A `TokenFilter` keeps samples readable: no "<unk>", and for byte-level BPE
never a byte sequence that is not UTF-8. Two rules look back at what a stream already holds (prompt
and generated ids, `History`): the repetition penalty and the no-repeat n-gram ban. `beam_search`
keeps the N most likely continuations instead of drawing one.
"""

import codecs
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from lstmtext import model
from lstmtext import threads as tuning
from lstmtext.config import ModelConfig, opt
from lstmtext.errors import ConfigError


@dataclass(frozen=True)
class SampleOptions:
    """How `generate` (the command and the API) draws text; every default and help text lives here."""

    length: int = opt(100, help="Tokens to generate.")
    temperature: float = opt(1.0, help="Below 1: safer text; above 1: wilder.")
    top_k: int = opt(0, help="Sample among the k most likely tokens (0: all).")
    top_p: float = opt(1.0, help="Sample among the most likely tokens holding this much probability (1: all).")
    greedy: bool = opt(False, help="Always take the most likely token.")
    num_samples: int = opt(1, help="Samples to draw, together as one batch.")
    allow_unk: bool = opt(False, help="Let samples contain <unk> (left out by default: it is a hole in the text).")
    # CTRL's penalty; below 1 it would reward repetition, so it is refused.
    repetition_penalty: float = opt(
        1.0,
        help="Make tokens already in the prompt or the text less likely: their logit is divided by this "
        "(multiplied if negative). At least 1; 1 is off, 1.2 a usual choice.",
    )
    no_repeat_ngram: int = opt(
        0, help="Never repeat a run of this many tokens already in the prompt or the text (0: off)."
    )
    beam: int = opt(
        1,
        help="Beam search: keep the N most likely continuations and print the best (--num-samples k: the k "
        "best, k <= N). Deterministic, so not with --temperature, --top-k, --top-p or --greedy; the text "
        "prints when the search ends. 1 is off.",
    )

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ConfigError(f"--length must be at least 1, got {self.length}")
        if self.num_samples < 1:
            raise ConfigError(f"--num-samples must be at least 1, got {self.num_samples}")
        if not self.temperature > 0:
            raise ConfigError(
                f"--temperature must be positive, got {self.temperature}; use --greedy for the most likely text"
            )
        if self.top_k < 0:
            raise ConfigError(f"--top-k must be 0 (off) or positive, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        if not 1 <= self.repetition_penalty < math.inf:  # NaN fails too
            raise ConfigError(
                f"--repetition-penalty must be a number of at least 1 (1: off; 1.2 is a usual choice), "
                f"got {self.repetition_penalty}"
            )
        if self.no_repeat_ngram < 0:
            raise ConfigError(
                f"--no-repeat-ngram must be 0 (off) or a positive n-gram size, got {self.no_repeat_ngram}"
            )
        if self.beam < 1:
            raise ConfigError(f"--beam must be at least 1 (1: off), got {self.beam}")
        if self.beam > 1:
            self._check_beam()

    def _check_beam(self) -> None:
        sampling = [
            f"{name} {value}"
            for name, value, off in [
                ("--temperature", self.temperature, 1.0),
                ("--top-k", self.top_k, 0),
                ("--top-p", self.top_p, 1.0),
            ]
            if value != off
        ]
        if sampling:
            raise ConfigError(
                f"--beam {self.beam} searches for the most likely text, it draws nothing at random: leave out "
                f"{' and '.join(sampling)} (they shape random sampling), or use --beam 1 to sample"
            )
        if self.greedy:
            raise ConfigError(f"--greedy and --beam {self.beam} are two searches; use one of them")
        if self.num_samples > self.beam:
            raise ConfigError(
                f"--num-samples {self.num_samples} is more than --beam {self.beam}: beam search returns at most its "
                f"{self.beam} best continuations; use --beam {self.num_samples} or more"
            )


def next_token_weights(logits: np.ndarray, opts: SampleOptions) -> np.ndarray:
    """logits (B,V) -> unnormalized probabilities (B,V), float64, after temperature, top-k and top-p.

    exp runs in float32: once the row max is subtracted every weight is in (0, 1], where float32's
    relative precision (6e-8) is far finer than sampling needs, and its exp is 4× faster than
    float64's here. The sums that decide top-p and the draw are float64, exact enough over any
    vocabulary."""
    z = logits.astype(np.float32)  # (B, V) a copy: the caller's logits stay untouched
    if opts.temperature != 1.0:
        z *= 1.0 / opts.temperature
    if opts.top_k and opts.top_k < z.shape[1]:
        kth = np.partition(z, -opts.top_k, axis=1)[:, -opts.top_k][:, None]  # (B, 1)
        z[z < kth] = -np.inf
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)  # (B, V)
    w = z.astype(np.float64)  # (B, V)
    if opts.top_p < 1.0:
        w /= w.sum(axis=1, keepdims=True)
        order = np.argsort(-w, axis=1)  # (B, V) most likely first
        sorted_p = np.take_along_axis(w, order, axis=1)
        # Keep a token if the mass before it is still below p: the smallest set reaching p.
        keep_sorted = (np.cumsum(sorted_p, axis=1) - sorted_p) < opts.top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=1)
        w[~keep] = 0.0
    return w


def next_token_probs(logits: np.ndarray, opts: SampleOptions) -> np.ndarray:
    """The normalized distribution the sampler draws from: (B,V), rows summing to 1."""
    w = next_token_weights(logits, opts)
    return w / w.sum(axis=1, keepdims=True)


BLOCK = 128  # tokens per block of the two-level draw


def draw(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One id per row of unnormalized weights (B,V), by inverting the cumulative sum.

    In two levels, because a cumulative sum is a sequential loop (4 ns a token here, the slowest
    part of sampling at batch 1 over 10,000 tokens): the running total of block sums picks the block
    of BLOCK tokens the draw falls in, and only that block's own cumulative sum picks the token.
    side="right" never picks a zero-weight token or block: its running total equals its left
    neighbour's."""
    B, V = weights.shape
    n_blocks = -(-V // BLOCK)
    blocks = np.zeros((B, n_blocks * BLOCK), dtype=np.float64)  # (B, n·BLOCK) zero-padded
    blocks[:, :V] = weights
    blocks = blocks.reshape(B, n_blocks, BLOCK)  # (B, n, BLOCK)
    ends = np.cumsum(blocks.sum(axis=2), axis=1)  # (B, n) running total at each block's end
    # u must stay below the total for side="right" to land on weight; r·total can round up to it.
    u = np.minimum(rng.random(B) * ends[:, -1], np.nextafter(ends[:, -1], 0.0))  # (B,)
    ids = np.empty(B, dtype=np.int64)
    for b in range(B):
        k = int(np.searchsorted(ends[b], u[b], side="right"))
        cum = np.cumsum(blocks[b, k])  # (BLOCK,)
        # The same rule inside the block, whose cumulative sum may round below its pairwise total.
        r = min(u[b] - (ends[b, k - 1] if k else 0.0), np.nextafter(cum[-1], 0.0))
        ids[b] = k * BLOCK + int(np.searchsorted(cum, r, side="right"))
    return ids


def penalize_repeats(logits: np.ndarray, seen: np.ndarray, penalty: float) -> None:
    """logits (B,V), in place: the tokens each stream has already seen (B,V bool) become less likely.

    CTRL's penalty (Keskar et al. 2019, §4.1, https://arxiv.org/abs/1909.05858) divides the logit by
    the penalty; a negative logit divided would *rise*, so, as HuggingFace's RepetitionPenalty does,
    a negative one is multiplied instead. -inf (a banned token) stays -inf."""
    z = logits[seen]  # (n,) the seen tokens' logits, all streams together
    logits[seen] = np.where(z > 0, z / penalty, z * penalty)


def repeated_ngram_bans(history: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """history (B,t) token ids -> (rows, ids): stream rows[i] may not take ids[i] next, as it would
    complete an n-gram the stream already holds (HuggingFace's no_repeat_ngram_size). n = 1 bans
    every token seen. Pairs may repeat."""
    B, t = history.shape
    if t < n:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    grams = np.lib.stride_tricks.sliding_window_view(history, n, axis=1)  # (B, t-n+1, n) every n-gram so far
    tail = history[:, t - n + 1 :]  # (B, n-1) the next n-gram's first n-1 ids
    hit = (grams[:, :, :-1] == tail[:, None, :]).all(axis=2)  # (B, t-n+1) n-grams that begin like it
    rows, at = np.nonzero(hit)
    return rows, grams[rows, at, -1]


def ban_repeated_ngrams(logits: np.ndarray, history: np.ndarray, n: int) -> None:
    """logits (B,V), in place: -inf for the tokens that would repeat an n-gram of the stream's
    history (B,t). A stream the rule would leave with no token at all (a small vocabulary, a small n,
    long text) is let off it for this step: every token it may take repeats, so it repeats."""
    rows, ids = repeated_ngram_bans(history, n)
    if len(rows) == 0:
        return
    kept = logits[rows, ids]  # (n_bans,)
    logits[rows, ids] = -np.inf
    stuck = np.isneginf(logits.max(axis=1))  # (B,)
    if stuck.any():
        back = stuck[rows]
        logits[rows[back], ids[back]] = kept[back]


class History:
    """Each stream's token ids so far, the prompt's then its own, for the rules that look back at
    them: the repetition penalty and the no-repeat n-gram ban. Made only when one of them is on."""

    def __init__(self, prompt_ids: np.ndarray, num_streams: int, opts: SampleOptions, vocab_size: int) -> None:
        P = len(prompt_ids)
        self.ids = np.empty((num_streams, P + opts.length), dtype=np.int64)  # (B, P+length) filled up to n
        self.ids[:, :P] = prompt_ids
        self.n = P
        self.penalty, self.ngram = opts.repetition_penalty, opts.no_repeat_ngram
        self.seen = None  # (B, V) bool, kept as it goes: cheaper than rebuilding from ids each step
        if self.penalty != 1.0:
            self.seen = np.zeros((num_streams, vocab_size), dtype=bool)
            self.seen[:, np.asarray(prompt_ids, dtype=np.int64)] = True

    def apply(self, logits: np.ndarray) -> None:
        """logits (B,V), in place: the penalty, then the n-gram bans."""
        if self.seen is not None:
            penalize_repeats(logits, self.seen, self.penalty)
        if self.ngram:
            ban_repeated_ngrams(logits, self.ids[:, : self.n], self.ngram)

    def advance(self, ids: np.ndarray) -> None:
        """The streams took ids (B,)."""
        self.ids[:, self.n] = ids
        self.n += 1
        if self.seen is not None:
            self.seen[np.arange(len(ids)), ids] = True

    def reorder(self, parents: np.ndarray) -> None:
        """Beam search: stream b continues stream parents[b] (B',)."""
        self.ids = self.ids[parents]  # fancy indexing copies: children of one parent stay apart
        if self.seen is not None:
            self.seen = self.seen[parents]


def look_back(opts: SampleOptions) -> bool:
    """Whether a rule needs each stream's history (else none is kept: nothing to pay when off)."""
    return opts.repetition_penalty != 1.0 or opts.no_repeat_ngram > 0


class TokenFilter:
    """The tokens each stream may not take next; `apply` sets their logits to -inf before a draw, so
    no temperature, top-k or top-p can bring them back, nor can greedy pick them.

    - "<unk>" (word; for char the U+FFFD it decodes to), unless `allow_unk`: it is a hole in the
      text, and a model that saw many rare words learned to predict it often.
    - bpe: every token whose bytes would make the text invalid UTF-8 after the 0-3 bytes of the
      unfinished character the stream has pending (`Tokenizer.utf8_mask`), so a sample never shows
      U+FFFD: an untrained model would otherwise start characters it never finishes.
    """

    def __init__(self, tok, num_samples: int, prompt_ids: np.ndarray, allow_unk: bool = False) -> None:
        self._tok = tok
        self._unk = None if allow_unk else tok.unk_id
        self._decoders = []  # bpe: one strict UTF-8 decoder per stream, holding its pending bytes
        if tok.kind == "bpe":
            prompt = b"".join(tok.token_bytes(int(i)) for i in prompt_ids)
            for _ in range(num_samples):
                decoder = _utf8_decoder()
                decoder.decode(prompt)
                self._decoders.append(decoder)
        self._blocked: dict[bytes, np.ndarray] = {}  # pending bytes -> ids that may not follow them

    def apply(self, logits: np.ndarray) -> None:
        """logits (B,V), in place: the tokens no stream may take next get -inf."""
        if self._unk is not None:
            logits[:, self._unk] = -np.inf
        for b, decoder in enumerate(self._decoders):
            pending = decoder.getstate()[0]
            if pending not in self._blocked:
                self._blocked[pending] = np.flatnonzero(~self._tok.utf8_mask(pending))
            logits[b, self._blocked[pending]] = -np.inf

    def advance(self, ids: np.ndarray) -> None:
        """The streams took ids (B,)."""
        for b, decoder in enumerate(self._decoders):
            decoder.decode(self._tok.token_bytes(int(ids[b])))  # strict: raises if a bad byte got through

    def reorder(self, parents: np.ndarray) -> None:
        """Beam search: stream b continues stream parents[b] (B',). Each gets a decoder of its own
        holding its parent's pending bytes, so two children of one parent never share one."""
        if self._decoders:
            states = [self._decoders[p].getstate() for p in parents]
            self._decoders = [_utf8_decoder(state) for state in states]


def _utf8_decoder(state: tuple[bytes, int] | None = None) -> codecs.IncrementalDecoder:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    if state is not None:
        decoder.setstate(state)
    return decoder


def generate(
    params: dict,
    cfg: ModelConfig,
    prompt_ids: np.ndarray,
    opts: SampleOptions,
    rng: np.random.Generator,
    on_token: Callable[[np.ndarray], bool] | None = None,
    *,
    token_filter: TokenFilter | None = None,
) -> np.ndarray:
    """-> sampled ids (num_samples, length). prompt_ids (P,) with P >= 1 primes every stream.

    on_token(ids (B,)) is called after each step; returning True stops early (all streams done).
    token_filter says which tokens each stream may not take next (without one, any token).
    With opts.beam > 1: the num_samples best beams of `beam_search` (no on_token: the search ends
    before any token is sure), for a token_filter made for one stream.
    """
    if opts.beam > 1:
        assert on_token is None, "beam search knows no token before it ends"
        return beam_search(params, cfg, prompt_ids, opts, token_filter).ids
    out = []
    for ids in token_steps(params, cfg, prompt_ids, opts, rng, token_filter):
        out.append(ids)
        if on_token is not None and on_token(ids):
            break
    return np.stack(out, axis=1)  # (B, steps)


def token_steps(
    params: dict,
    cfg: ModelConfig,
    prompt_ids: np.ndarray,
    opts: SampleOptions,
    rng: np.random.Generator,
    token_filter: TokenFilter | None = None,
    tuner=None,
) -> Iterator[np.ndarray]:
    """Yields the sampled ids (B,) of each step, up to opts.length steps. The next step is computed
    only when asked for, so a caller that stops early pays for nothing more. The repetition penalty
    and n-gram bans come before temperature, top-k, top-p and greedy. tuner: a threads.ThreadTuner
    timing each step (the prompt's too) to choose the BLAS threads (None: leave them)."""
    assert opts.beam == 1, "beam search is beam_search"
    B = opts.num_samples
    dtype = params["embed.W"].dtype
    state = model.init_state(cfg, B, dtype)
    history = History(prompt_ids, B, opts, cfg.vocab_size) if look_back(opts) else None
    logits = None
    for tok in prompt_ids:
        if tuner is not None:
            tuner.begin()
        logits, state = model.step_logits(params, cfg, np.full(B, tok, dtype=np.int64), state)
        if tuner is not None:
            tuner.end(B)
    for t in range(opts.length):
        _restrict(logits, token_filter, history)
        ids = logits.argmax(axis=1) if opts.greedy else draw(next_token_weights(logits, opts), rng)  # (B,)
        if token_filter is not None:
            token_filter.advance(ids)
        if history is not None:
            history.advance(ids)
        yield ids
        if t + 1 < opts.length:
            if tuner is not None:
                tuner.begin()
            logits, state = model.step_logits(params, cfg, ids, state)
            if tuner is not None:
                tuner.end(B)


def _restrict(logits: np.ndarray, token_filter: TokenFilter | None, history: History | None) -> None:
    """logits (B,V), in place: the filter's bans, then the look-back rules. step_logits returns a
    fresh array, so changing it is safe."""
    if token_filter is not None:
        token_filter.apply(logits)
    if history is not None:
        history.apply(logits)  # after the filter: a stream let off the n-gram rule keeps the filter's bans


@dataclass(frozen=True)
class Beams:
    """What `beam_search` found, best first."""

    ids: np.ndarray  # (k, T) token ids, T <= length; a beam that ended at eos_id is padded with it
    scores: np.ndarray  # (k,) float64 summed log-probability of each beam's tokens, to its eos_id


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """logits (B,V) -> log-probabilities (B,V) float64; -inf stays -inf. float64 keeps apart the
    logits float32 keeps apart once a beam's score is added, so a beam of 1 picks what argmax does."""
    z = logits.astype(np.float64)  # (B, V)
    z -= z.max(axis=1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


def _best(scores: np.ndarray, n: int) -> np.ndarray:
    """Flat indices of the n largest finite scores (flat), largest first; fewer if fewer are
    finite. Ties go to the lower index, as argmax's do, without sorting all of them."""
    n = min(n, len(scores))
    kth = np.partition(scores, len(scores) - n)[len(scores) - n]  # the n-th largest
    top = np.flatnonzero(scores >= kth)  # (>= n,) every tie at the boundary, in index order
    top = top[np.argsort(-scores[top], kind="stable")[:n]]
    return top[np.isfinite(scores[top])]


def beam_search(
    params: dict,
    cfg: ModelConfig,
    prompt_ids: np.ndarray,
    opts: SampleOptions,
    token_filter: TokenFilter | None = None,
    eos_id: int | None = None,
) -> Beams:
    """The opts.num_samples most likely continuations of opts.length tokens that a beam of
    opts.beam finds: each step every beam is extended by every token, and the opts.beam extensions
    of highest summed log-probability are kept. prompt_ids (P,) primes one stream; token_filter is
    made for that one stream and is reordered with the beams.

    score(y_1..y_T) = Σ_t log softmax(z_t)[y_t], z_t the logits after the filter's bans, the
    repetition penalty and the n-gram bans (so they shape the scores as they shape a draw).

    A beam that takes eos_id (the caller passes it when '<eos>' is a stop) is finished: it keeps its
    score and its place, extended only by eos_id at no cost, and competes with the live beams as it
    is. Scores are not normalized by length, so a beam that ends early is favoured (every token
    costs some log-probability). The search ends at opts.length tokens, or as soon as every kept beam
    is finished (a live beam's score can only fall). Stop strings are not seen here: the caller cuts
    the text of the beams found. Running the beams as one batch makes a step cost about what a batch
    of opts.beam samples costs.
    """
    N, V = opts.beam, cfg.vocab_size
    state = model.init_state(cfg, 1, params["embed.W"].dtype)
    logits = None
    for tok in prompt_ids:
        logits, state = model.step_logits(params, cfg, np.array([tok], dtype=np.int64), state)
    history = History(prompt_ids, 1, opts, V) if look_back(opts) else None
    scores = np.zeros(1)  # (B,) one beam at first: N copies of the prompt would offer each token N times
    done = np.zeros(1, dtype=bool)  # (B,)
    beams = np.empty((1, 0), dtype=np.int64)  # (B, t) each beam's tokens so far
    for t in range(opts.length):
        _restrict(logits, token_filter, history)
        logp = log_softmax(logits)  # (B, V)
        if done.any():
            logp[done] = -np.inf
            logp[done, eos_id] = 0.0
        total = (scores[:, None] + logp).ravel()  # (B·V,) the score of every extension
        best = _best(total, N)  # (B',) B' = N once N extensions are allowed
        assert len(best), "the filter and the n-gram rule always leave a token, a finished beam eos_id"
        parents, ids = np.divmod(best, V)  # (B',) (B',)
        scores = total[best]
        beams = np.concatenate([beams[parents], ids[:, None]], axis=1)  # (B', t+1)
        done = done[parents] | (ids == eos_id) if eos_id is not None else done[parents]
        if done.all() or t + 1 == opts.length:
            break
        for keeper in (token_filter, history):
            if keeper is not None:
                keeper.reorder(parents)
                keeper.advance(ids)
        state = {k: s[parents] for k, s in state.items()}  # (B', H) each
        logits, state = model.step_logits(params, cfg, ids, state)
    k = opts.num_samples
    if len(scores) < k:
        raise ConfigError(
            f"the model allows only {len(scores)} continuations of {opts.length} tokens here, fewer than "
            f"--num-samples {k}; ask for fewer samples or a longer --length"
        )
    return Beams(beams[:k], scores[:k])


class _StreamText:
    """Turns one stream's ids into printable text, ending it at a stop string.

    Up to len(longest stop) - 1 characters are held back, so a stop string that arrives in pieces
    is never half printed."""

    def __init__(self, detok, stops: list[str]):
        self.detok, self.stops = detok, stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.pending, self.done = "", False

    def push(self, tok: int) -> str:
        self.pending += self.detok.push(int(tok))
        for s in self.stops:
            at = self.pending.find(s)
            if at >= 0:
                self.done = True
                out, self.pending = self.pending[:at], ""
                return out
        cut = max(len(self.pending) - self.hold, 0)
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def end(self) -> str:
        """The rest of the text when the sample ends here (at "<eos>" or its length)."""
        if self.done:
            return ""
        self.done = True
        # A sample cut off mid-character drops that character rather than print U+FFFD.
        rest = self.pending + self.detok.flush(drop_unfinished=True)
        self.pending = ""
        for s in self.stops:  # a held-back apostrophe may complete a stop string
            at = rest.find(s)
            if at >= 0:
                rest = rest[:at]
        return rest


def shown_prompt(prompt: str, tok) -> str:
    """The prompt as a sample starts from and shows it: for word and BPE models, spaces and tabs that
    end a line of text are dropped, because the continuation brings its own (a word's space comes
    with the word, so "The module " would print as "The module  set"). Indentation alone on the last
    line stays: code needs it. A character model reads a space as any other character: kept."""
    if tok.kind == "char":
        return prompt
    last = prompt.rsplit("\n", 1)[-1]
    trailing = len(last) - len(last.rstrip(" \t"))
    return prompt if trailing == len(last) else prompt[: len(prompt) - trailing]


def read_as_a_line(tok, prompt: str) -> np.ndarray:
    """The ids a prompt primes a fresh state with: a line end, then the prompt. A prompt is where a
    person starts a text, and in training every line starts after a line end: from the zero state
    alone a model finds itself mid-stream, where it may never have been (a cue read straight from
    zero was forgotten 40 words on, and remembered after a line end: docs/training.md "Defaults"). A prompt
    that starts with a line end, or a vocabulary without one, is read as it is."""
    line_end = tok.encode("\n")
    if prompt.startswith("\n") or len(line_end) == 0 or tok.count_unk(line_end):
        ids = tok.encode(prompt)
    else:
        ids = tok.encode("\n" + prompt)
    return ids if len(ids) else np.zeros(1, dtype=np.int32)  # nothing encodable: start from token 0


MAX_NAMED = 10  # unknown prompt words named in the warning


def unknown_prompt_warning(tok, prompt: str) -> str | None:
    """One line naming the prompt's words (or characters) the model reads as "<unk>", or None."""
    unknown = tok.unknown_in(prompt)
    if not unknown:
        return None
    names = ", ".join(repr(w) for w in unknown[:MAX_NAMED])
    if len(unknown) > MAX_NAMED:
        names += f" and {len(unknown) - MAX_NAMED} more"
    what = "characters" if tok.kind == "char" else "words"
    return f"warning: the prompt has {what} the model never saw, read as <unk>: {names}"


def text_pieces(
    ckpt, tok, prompt: str, opts: SampleOptions, rng: np.random.Generator, stops: list[str],
    threads: int | None = None,
) -> Iterator[list[str]]:
    """Yields, after every step, each sample's new text (B strings, "" where nothing new or the
    sample is done), and last the rest of each. '<eos>' among stops ends a sample at the line-end
    token. The prompt itself is not yielded: the caller shows it as written. With opts.beam > 1 the
    samples are the best beams, and nothing comes until the search ends. threads: a fixed BLAS
    thread count; None chooses by timing the steps, as training does (threads.ThreadTuner)."""
    with tuning.choosing(threads) as tuner:
        yield from _text_pieces(ckpt, tok, prompt, opts, rng, stops, tuner)


def _text_pieces(ckpt, tok, prompt, opts, rng, stops, tuner) -> Iterator[list[str]]:
    stop_at_eos = "<eos>" in stops and tok.eos_id is not None
    # Tokenizers without an <eos> token (char, bpe) keep line ends as text: stop at "\n" instead.
    text_stops = [("\n" if s == "<eos>" else s) for s in stops if s and not (s == "<eos>" and stop_at_eos)]
    prompt_ids = read_as_a_line(tok, prompt)
    # The prompt primes the spacing rules; its text is printed as given.
    texts = [_StreamText(tok.detokenizer(prompt_ids), text_stops) for _ in range(opts.num_samples)]
    if opts.beam > 1:
        token_filter = TokenFilter(tok, 1, prompt_ids, allow_unk=opts.allow_unk)  # the search starts as one beam
        eos_id = tok.eos_id if stop_at_eos else None
        found = beam_search(ckpt.params, ckpt.model_cfg, prompt_ids, opts, token_filter, eos_id)
        steps = iter(found.ids.T)  # (k,) per step, as token_steps yields them
    else:
        token_filter = TokenFilter(tok, opts.num_samples, prompt_ids, allow_unk=opts.allow_unk)
        steps = token_steps(ckpt.params, ckpt.model_cfg, prompt_ids, opts, rng, token_filter, tuner)
    for ids in steps:
        pieces = []
        for st, t in zip(texts, ids, strict=True):
            done = st.done
            pieces.append("" if done else st.end() if stop_at_eos and t == tok.eos_id else st.push(t))
        yield pieces
        if all(st.done for st in texts):
            break
    yield [st.end() for st in texts]


def run_generation(
    ckpt,
    tok,
    prompt: str,
    opts: SampleOptions,
    rng: np.random.Generator,
    stops: list[str],
    stream,
    warn: Callable[[str], None] | None = None,
    threads: int | None = None,
) -> list[str]:
    """Sample and write text to `stream`: one sample streams as produced; several are printed one
    after another when the batch is done. warn(line) hears about prompt words the model never saw."""
    prompt = shown_prompt(prompt, tok)
    warning = unknown_prompt_warning(tok, prompt)
    if warning and warn is not None:
        warn(warning)
    outs = [prompt] * opts.num_samples
    live = opts.num_samples == 1
    if live:
        stream.write(prompt)
        stream.flush()
    for pieces in text_pieces(ckpt, tok, prompt, opts, rng, stops, threads):
        outs = [out + piece for out, piece in zip(outs, pieces, strict=True)]
        if live and pieces[0]:
            stream.write(pieces[0])
            stream.flush()
    if live:
        stream.write("\n")
    else:
        for b, text in enumerate(outs):
            stream.write(f"--- sample {b + 1} ---\n{text}\n")
    stream.flush()
    return outs
