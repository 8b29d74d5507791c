"""Scoring held-out text: one deterministic in-order pass, state carried across windows.

Every token after the first is predicted exactly once (the last stream is padded and masked), so
the numbers do not depend on how the text divides into batches, apart from the B-1 stream starts
that begin without context. Per-word perplexity divides the same total loss by the number of
whitespace words plus line ends (Penn Treebank counts one <eos> per line), so word, character and
BPE models of the same text compare; bits per byte divide it by the UTF-8 size instead.
"""

import math

import numpy as np

from lstmtext import batching, model
from lstmtext.config import EvalOptions, ModelConfig

UNK_WARN = 0.05  # above this <unk> rate a perplexity flatters the model


def score(
    params: dict, cfg: ModelConfig, ids: np.ndarray, batch_size: int = EvalOptions.batch_size,
    bptt: int = EvalOptions.bptt, tuner=None, progress=None,
) -> tuple[float, int]:
    """-> (total loss in nats, number of predicted tokens) over ids (N,). tuner: a threads.ThreadTuner
    that times each window and chooses the BLAS threads of the next (None: leave them). progress:
    reading.Progress, told the tokens scored after each window."""
    if len(ids) < 2:
        return 0.0, 0
    batch_size = min(batch_size, len(ids) - 1)
    x, y, mask = batching.padded_streams(ids, batch_size)  # (n, B) each
    dtype = params["embed.W"].dtype
    state = model.init_state(cfg, batch_size, dtype)
    total = 0.0
    n_scored, done = int(mask.sum()), 0
    for i in range(0, x.shape[0], bptt):
        m = mask[i : i + bptt]  # (T, B)
        if tuner is not None:
            tuner.begin()
        _, nll, _, state = model.forward(params, cfg, x[i : i + bptt], y[i : i + bptt], state, None, m)
        total += float((nll.astype(np.float64) * m).sum())
        if tuner is not None:
            tuner.end(m.size)
        done += int(m.sum())
        if progress is not None:
            progress("scoring", done, n_scored)
    return total, n_scored


def perplexity(nats: float) -> float:
    """exp of an average loss; a diverged model's huge loss gives inf rather than an OverflowError."""
    if math.isnan(nats):
        return math.nan
    return math.exp(nats) if nats < 700 else math.inf


def count_words(text: str) -> int:
    return len(text.split()) + text.count("\n")


def report(total_nll: float, n_tokens: int, text: str, unk: int) -> dict:
    """The numbers `lstmtext eval` prints."""
    words = max(count_words(text), 1)
    n_bytes = max(len(text.encode("utf-8")), 1)
    loss = total_nll / max(n_tokens, 1)
    return {
        "tokens": n_tokens,
        "loss": loss,
        "perplexity": perplexity(loss),
        "words": words,
        "word_perplexity": perplexity(total_nll / words),
        "bits_per_byte": total_nll / math.log(2) / n_bytes,
        "unk_rate": unk / max(n_tokens, 1),
    }
