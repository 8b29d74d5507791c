"""The non-recurrent layers: embedding lookup, dropout, and the linear head with softmax
cross-entropy. Each is a pair of pure functions, forward -> (out, cache) and backward -> grads."""

from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------------------------------------
# Embedding: out[t, b] = W[ids[t, b]]


def embedding_forward(W: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W (V,E), ids (T,B) int -> out (T,B,E); the cache is just the ids."""
    return W[ids], ids  # (T, B, E)


def embedding_backward(dout: np.ndarray, ids: np.ndarray, V: int) -> np.ndarray:
    """dout (T,B,E) -> dW (V,E). A word seen k times in the window receives the sum of k rows."""
    E = dout.shape[-1]
    dW = np.zeros((V, E), dtype=dout.dtype)  # (V, E)
    np.add.at(dW, ids.reshape(-1), dout.reshape(-1, E))  # add.at, not +=: repeated ids accumulate
    return dW


# ---------------------------------------------------------------------------------------------
# Dropout (inverted: scaled at training time, so evaluation is the identity)


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float, dtype) -> np.ndarray:
    """Mask of 0 and 1/(1-p): keeps the expected activation unchanged."""
    keep = rng.random(shape) >= p
    return keep.astype(dtype) * np.asarray(1.0 / (1.0 - p), dtype=dtype)


# dropout forward is x * mask and backward is dout * mask; no function needed for one multiply.


# ---------------------------------------------------------------------------------------------
# Linear head + softmax cross-entropy, fused so the (N,V) logits buffer is reused for the softmax


@dataclass
class HeadCache:
    h: np.ndarray  # (N, H) input of the head
    probs: np.ndarray  # (N, V) softmax, overwriting the logits buffer
    targets: np.ndarray  # (N,) int
    weight: np.ndarray  # (N,) each token's share of the loss (1/N, or a mask / count)


def head_forward(
    h: np.ndarray, W: np.ndarray, b: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None
) -> tuple[float, np.ndarray, HeadCache]:
    """h (N,H), W (H,V), b (V,), targets (N,) -> mean loss over counted tokens, nll (N,), cache.

    mask (N,) of 0/1 marks the tokens that count (padding in evaluation); None counts all.
    """
    N = h.shape[0]
    logits = h @ W  # (N, V)
    logits += b
    # Subtracting the row max makes exp() safe and does not change the softmax.
    logits -= logits.max(axis=1, keepdims=True)  # (N, V)
    target_logit = logits[np.arange(N), targets]  # (N,)
    np.exp(logits, out=logits)  # (N, V) unnormalized probabilities, in place
    total = logits.sum(axis=1)  # (N,)
    nll = np.log(total) - target_logit  # (N,) -log softmax[target]
    logits /= total[:, None]  # (N, V) now the softmax
    if mask is None:
        weight = np.full(N, 1.0 / N, dtype=h.dtype)  # (N,)
    else:
        weight = mask.astype(h.dtype) / max(float(mask.sum()), 1.0)  # (N,)
    loss = float((nll * weight).sum())
    return loss, nll, HeadCache(h, logits, targets, weight)


def head_backward(cache: HeadCache, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradient of the weighted mean loss -> dh (N,H), dW (H,V), db (V,).

    d loss / d logits = weight * (softmax - onehot(target)), formed in the probs buffer.
    """
    N = cache.h.shape[0]
    dlogits = cache.probs  # (N, V) reused: the cache is spent after backward
    dlogits[np.arange(N), cache.targets] -= 1.0
    dlogits *= cache.weight[:, None]
    dh = dlogits @ W.T  # (N, H)
    dW = cache.h.T @ dlogits  # (H, V)
    db = dlogits.sum(axis=0)  # (V,)
    return dh, dW, db
