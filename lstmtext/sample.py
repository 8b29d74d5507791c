"""Sampling text from a trained model: greedy, temperature, top-k and nucleus (top-p).

All samples run together as one batch of streams; each step is one forward step of the network
and one draw per stream. The prompt primes the state first, so the first sampled token already
follows the prompt. A `TokenFilter` keeps samples readable: no "<unk>", and for byte-level BPE
never a byte sequence that is not UTF-8.
"""

import codecs
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from lstmtext import model
from lstmtext.config import ModelConfig
from lstmtext.errors import ConfigError


@dataclass(frozen=True)
class SampleOptions:
    length: int = 100  # tokens to generate per sample
    temperature: float = 1.0  # < 1 sharper, > 1 flatter
    top_k: int = 0  # keep the k most likely tokens (0: all)
    top_p: float = 1.0  # keep the smallest set whose probability reaches p (1: all)
    greedy: bool = False  # always the most likely token
    num_samples: int = 1
    allow_unk: bool = False  # let samples contain "<unk>" (left out by default: it is a hole in the text)

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
                decoder = codecs.getincrementaldecoder("utf-8")("strict")
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
    """
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
) -> Iterator[np.ndarray]:
    """Yields the sampled ids (B,) of each step, up to opts.length steps. The next step is computed
    only when asked for, so a caller that stops early pays for nothing more."""
    B = opts.num_samples
    dtype = params["embed.W"].dtype
    state = model.init_state(cfg, B, dtype)
    logits = None
    for tok in prompt_ids:
        logits, state = model.step_logits(params, cfg, np.full(B, tok, dtype=np.int64), state)
    for t in range(opts.length):
        if token_filter is not None:
            token_filter.apply(logits)  # step_logits returns a fresh array: changing it is safe
        ids = logits.argmax(axis=1) if opts.greedy else draw(next_token_weights(logits, opts), rng)  # (B,)
        if token_filter is not None:
            token_filter.advance(ids)
        yield ids
        if t + 1 < opts.length:
            logits, state = model.step_logits(params, cfg, ids, state)


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
    ckpt, tok, prompt: str, opts: SampleOptions, rng: np.random.Generator, stops: list[str]
) -> Iterator[list[str]]:
    """Yields, after every step, each sample's new text (B strings, "" where nothing new or the
    sample is done), and last the rest of each. '<eos>' among stops ends a sample at the line-end
    token. The prompt itself is not yielded: the caller shows it as written."""
    stop_at_eos = "<eos>" in stops and tok.eos_id is not None
    # Tokenizers without an <eos> token (char, bpe) keep line ends as text: stop at "\n" instead.
    text_stops = [("\n" if s == "<eos>" else s) for s in stops if s and not (s == "<eos>" and stop_at_eos)]
    prompt_ids = tok.encode(prompt) if prompt else tok.encode("\n")
    if len(prompt_ids) == 0:
        prompt_ids = np.zeros(1, dtype=np.int32)  # nothing encodable: start from token 0
    # The prompt primes the spacing rules; its text is printed as given.
    texts = [_StreamText(tok.detokenizer(prompt_ids), text_stops) for _ in range(opts.num_samples)]
    token_filter = TokenFilter(tok, opts.num_samples, prompt_ids, allow_unk=opts.allow_unk)
    for ids in token_steps(ckpt.params, ckpt.model_cfg, prompt_ids, opts, rng, token_filter):
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
) -> list[str]:
    """Sample and write text to `stream`: one sample streams as produced; several are printed one
    after another when the batch is done. warn(line) hears about prompt words the model never saw."""
    warning = unknown_prompt_warning(tok, prompt)
    if warning and warn is not None:
        warn(warning)
    outs = [prompt] * opts.num_samples
    live = opts.num_samples == 1
    if live:
        stream.write(prompt)
        stream.flush()
    for pieces in text_pieces(ckpt, tok, prompt, opts, rng, stops):
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
