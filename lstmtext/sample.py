"""Sampling text from a trained model: greedy, temperature, top-k and nucleus (top-p).

All samples run together as one batch of streams; each step is one forward step of the network
and one draw per stream. The prompt primes the state first, so the first sampled token already
follows the prompt.
"""

from collections.abc import Callable
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


def generate(
    params: dict,
    cfg: ModelConfig,
    prompt_ids: np.ndarray,
    opts: SampleOptions,
    rng: np.random.Generator,
    on_token: Callable[[np.ndarray], bool] | None = None,
) -> np.ndarray:
    """-> sampled ids (num_samples, length). prompt_ids (P,) with P >= 1 primes every stream.

    on_token(ids (B,)) is called after each step; returning True stops early (all streams done).
    """
    B = opts.num_samples
    dtype = params["embed.W"].dtype
    state = model.init_state(cfg, B, dtype)
    logits = None
    for tok in prompt_ids:
        logits, state = model.step_logits(params, cfg, np.full(B, tok, dtype=np.int64), state)
    out = np.zeros((B, opts.length), dtype=np.int64)
    for t in range(opts.length):
        ids = logits.argmax(axis=1) if opts.greedy else draw(next_token_weights(logits, opts), rng)  # (B,)
        out[:, t] = ids
        if on_token is not None and on_token(ids):
            return out[:, : t + 1]
        if t + 1 < opts.length:
            logits, state = model.step_logits(params, cfg, ids, state)
    return out


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

    def flush(self) -> str:
        if self.done:
            return ""
        out, self.pending = self.pending + self.detok.flush(), ""
        return out


def run_generation(
    ckpt, tok, prompt: str, opts: SampleOptions, rng: np.random.Generator, stops: list[str], stream
) -> list[str]:
    """Sample and write text to `stream`: one sample streams as produced; several are printed one
    after another when the batch is done. '<eos>' among stops ends a sample at the line-end token."""
    stop_at_eos = "<eos>" in stops and tok.eos_id is not None
    # Tokenizers without an <eos> token (char, bpe) keep line ends as text: stop at "\n" instead.
    text_stops = [("\n" if s == "<eos>" else s) for s in stops if s and not (s == "<eos>" and stop_at_eos)]
    prompt_ids = tok.encode(prompt) if prompt else tok.encode("\n")
    if len(prompt_ids) == 0:
        prompt_ids = np.zeros(1, dtype=np.int32)  # nothing encodable: start from token 0
    B = opts.num_samples
    texts = []
    for _ in range(B):
        detok = tok.detokenizer()
        for t in prompt_ids:
            detok.push(int(t))  # prime the spacing rules with the prompt; its text is printed as given
        texts.append(_StreamText(detok, text_stops))
    outs = [prompt] * B
    live = B == 1
    if live:
        stream.write(prompt)
        stream.flush()

    def on_token(ids: np.ndarray) -> bool:
        for b, t in enumerate(ids):
            st = texts[b]
            if st.done:
                continue
            if stop_at_eos and t == tok.eos_id:
                st.done = True
                piece = st.pending
                st.pending = ""
            else:
                piece = st.push(t)
            outs[b] += piece
            if live and piece:
                stream.write(piece)
                stream.flush()
        return all(st.done for st in texts)

    generate(ckpt.params, ckpt.model_cfg, prompt_ids, opts, rng, on_token)
    for b, st in enumerate(texts):
        rest = st.flush()
        outs[b] += rest
        if live:
            stream.write(rest + "\n")
    if not live:
        for b, text in enumerate(outs):
            stream.write(f"--- sample {b + 1} ---\n{text}\n")
    stream.flush()
    return outs
