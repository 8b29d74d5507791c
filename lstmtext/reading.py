"""Reading as it goes: scoring a text while the model adapts to what it has read of it, at no cost in
training. Both keep the order of `evaluate.score`: a token is scored before anything learns from it.

Dynamic evaluation (Krause et al. 2018, "Dynamic Evaluation of Neural Sequence Models"): the text is
one stream cut into short segments; after a segment is scored, the weights take a step on its loss,

    θ ← θ − η · g / (rms + ε) + λ · r ⊙ (θ₀ − θ)

g the segment's gradient, rms the root mean square of training gradients (per weight, `gradient_rms`),
θ₀ the trained weights and r = rms / (the mean of each array's mean rms), at most 1/λ: the weights
that training moved most are the ones allowed to move and pulled back most. With η = 0 and λ = 0 it
is the plain score.

The neural cache (Grave, Joulin & Usunier 2017, "Improving neural language models with a continuous
cache"): the last layer's outputs h_i of the previous `size` positions are kept with the token that
followed each; the next token's probability mixes in a pointer over them,

    p(w) = (1 − λ) p_model(w) + λ Σ_{i: w_{i+1} = w} softmax_i(θ h_t · h_i)

so a word the text has just used, and that followed a similar state, becomes likelier. λ = 0 is the
plain score.
"""

from collections.abc import Callable

import numpy as np

from lstmtext import adaptive, batching, layers, model
from lstmtext.config import EvalOptions, ModelConfig
from lstmtext.errors import ConfigError

# progress(stage, done, total): what a long reading has done so far, in tokens; the CLI draws it as a bar
Progress = Callable[[str, int, int], None]

STATS_STREAMS = 100  # the training text's streams while gathering gradient statistics (Krause et al.'s)
EPSILON = 2e-5  # ε of the dynamic step: keeps a weight whose training gradient was ~0 from leaping


def check_options(o: EvalOptions) -> None:
    """The eval options' own rules, before any text is read."""
    if o.batch_size < 1 or o.bptt < 1:
        raise ConfigError("--batch-size and --bptt must be at least 1")
    if o.dynamic and o.cache:
        raise ConfigError("--dynamic and --cache each read the text their own way; use one of them")
    if o.dynamic_lr < 0 or o.dynamic_decay < 0 or o.dynamic_window < 1 or o.dynamic_stats < 0:
        raise ConfigError("--dynamic-lr and --dynamic-decay must be at least 0, --dynamic-window at least 1, "
                          "--dynamic-stats at least 0")  # fmt: skip
    if o.cache < 0 or o.cache_theta < 0 or not 0 <= o.cache_lambda <= 1:
        raise ConfigError("--cache and --cache-theta must be at least 0, --cache-lambda in [0, 1]")


def gradient_rms(params: dict, cfg: ModelConfig, ids: np.ndarray, batch: int, window: int,
                 max_windows: int, progress: Progress | None = None) -> dict:  # fmt: skip
    """Per weight, the root mean square of the training loss's gradient over windows of `ids` (the
    training text), read as `batch` streams, at most `max_windows` windows (0: all), no dropout."""
    batch = max(1, min(batch, len(ids) // (window + 1)))  # each stream needs a whole window and its target
    streams = batching.make_streams(ids, batch)  # (n, B)
    n_windows = (streams.shape[0] - 1) // window  # the whole windows; a short last one is not read
    n_windows = min(n_windows, max_windows) if max_windows else n_windows
    state = model.init_state(cfg, batch, params["embed.W"].dtype)
    total = {k: np.zeros_like(p) for k, p in params.items()}
    count = 0
    for x, y in batching.windows(streams, window):
        if x.shape[0] < window or (max_windows and count == max_windows):
            break
        _, _, cache, state = model.forward(params, cfg, x, y, state, None)
        grads, _ = model.backward(params, cfg, cache)
        for k, g in grads.items():
            if isinstance(g, layers.RowGrad):
                total[k][g.rows] += g.values * g.values  # (U, E) the other rows add 0
            else:
                total[k] += g * g
        count += 1
        if progress is not None:
            progress("statistics", count * window * batch, n_windows * window * batch)
    if count == 0:
        raise ConfigError(f"--dynamic needs a training text of at least {window + 1} tokens for its statistics; "
                          f"this one has {len(ids)}")  # fmt: skip
    return {k: np.sqrt(t / count) for k, t in total.items()}


def dynamic_nll(params: dict, cfg: ModelConfig, ids: np.ndarray, rms: dict, lr: float, decay: float,
                window: int, epsilon: float = EPSILON,
                progress: Progress | None = None) -> np.ndarray:  # fmt: skip
    """-> the loss of each prediction of ids[1:] (M,), each segment of `window` tokens scored with the
    weights learned from the segments before it only, then learned from."""
    theta = {k: p.copy() for k, p in params.items()}
    # The mean of each array's mean RMS, as Krause et al.'s code takes it (their λ is tuned to it).
    mean_rms = float(np.mean([r.mean() for r in rms.values()]))
    # The update rearranged as θ ← θ ⊙ (1 − b) + b ⊙ θ₀ − a ⊙ g, with a = η / (rms + ε) and b = λ r
    # worked out once for the whole text and the arithmetic done in place: each step passes over every
    # weight (a tied PTB model's 9.3M), so the formula as written, with its temporaries, was most of
    # the time. An untied embedding's gradient touches only its rows.
    a, keep, pull = {}, {}, {}
    for k, p in params.items():
        r = np.minimum(rms[k] / mean_rms, 1.0 / decay) if decay else rms[k]  # r, clipped at 1/λ
        a[k] = (lr / (rms[k] + epsilon)).astype(p.dtype)  # same shape as p
        keep[k] = (1.0 - decay * r).astype(p.dtype)
        pull[k] = (decay * r * p).astype(p.dtype)
    x, y = ids[:-1], ids[1:]
    state = model.init_state(cfg, 1, params["embed.W"].dtype)
    out = np.empty(len(x))
    for i in range(0, len(x), window):
        xs, ys = x[i : i + window, None], y[i : i + window, None]  # (T, 1)
        _, nll, cache, state = model.forward(theta, cfg, xs, ys, state, None)
        out[i : i + len(xs)] = nll[:, 0]  # scored first
        if progress is not None:
            progress("scoring", i + len(xs), len(x))
        if lr == 0 and decay == 0:
            continue
        grads, _ = model.backward(theta, cfg, cache)
        for k, p in theta.items():
            g = grads[k]
            if decay:
                p *= keep[k]
                p += pull[k]
            if isinstance(g, layers.RowGrad):
                p[g.rows] -= a[k][g.rows] * g.values  # (U, E) the other rows have no gradient
            else:
                g *= a[k]  # the gradient is ours to spend
                p -= g
    return out


def cache_nll(params: dict, cfg: ModelConfig, ids: np.ndarray, batch: int, bptt: int, size: int, theta: float,
              lam: float, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """-> (loss of each prediction, (n, B) in stream order; the mask of those that count (n, B)), with
    the model's probability mixed with a pointer over each stream's last `size` positions."""
    batch = min(batch, len(ids) - 1)
    x, y, mask = batching.padded_streams(ids, batch)  # (n, B) each
    H = cfg.hidden
    dtype = params["embed.W"].dtype
    state = model.init_state(cfg, batch, dtype)
    keys = np.zeros((0, batch, H), dtype=np.float64)  # (k, B, H) the kept outputs, oldest first
    vals = np.zeros((0, batch), dtype=y.dtype)  # (k, B) the token that followed each
    out = np.empty(x.shape)
    n_scored, done = int(mask.sum()), 0
    for i in range(0, x.shape[0], bptt):
        xs, ys = x[i : i + bptt], y[i : i + bptt]  # (T, B)
        T = xs.shape[0]
        _, nll, cache, state = model.forward(params, cfg, xs, ys, state, None, mask[i : i + bptt])
        h = head_input(cache).reshape(T, batch, H).astype(np.float64)  # (T, B, H)
        k = keys.shape[0]
        K = np.concatenate([keys, h])  # (k+T, B, H)
        V = np.concatenate([vals, ys])  # (k+T, B)
        s = theta * np.einsum("tbh,jbh->btj", h, K)  # (B, T, k+T)
        j, t = np.arange(k + T)[None, :], np.arange(T)[:, None]
        allowed = (j < k + t) & (j >= k + t - size)  # (T, k+T) strictly before t, the last `size`
        s = np.where(allowed[None], s, -np.inf)  # (B, T, k+T)
        top = s.max(axis=2, keepdims=True)  # (B, T, 1)
        any_kept = np.isfinite(top[:, :, 0])  # (B, T) the text's first position has nothing kept
        e = np.exp(s - np.where(np.isfinite(top), top, 0.0))  # (B, T, k+T)
        hit = V.T[:, None, :] == ys.T[:, :, None]  # (B, T, k+T) kept positions followed by the target
        p_cache = (e * hit).sum(axis=2) / np.maximum(e.sum(axis=2), 1e-300)  # (B, T)
        p_model = np.exp(-nll.astype(np.float64)).T  # (B, T)
        mix = np.where(any_kept, lam, 0.0)  # (B, T) no cache yet: the model alone
        with np.errstate(divide="ignore"):  # a padded position's p may be 0; the mask drops it
            out[i : i + T] = -np.log((1.0 - mix) * p_model + mix * p_cache).T  # (T, B)
        keys, vals = K[-size:], V[-size:]
        done += int(mask[i : i + T].sum())
        if progress is not None:
            progress("scoring", done, n_scored)
    return out, mask


def head_input(cache: model.ModelCache) -> np.ndarray:
    """The last layer's output the head read, (T·B, H)."""
    return cache.head.z if isinstance(cache.head, adaptive.AdaptiveCache) else cache.head.h
