"""Optimizers and clipping over flat dicts: params, grads and optimizer state share their keys.

Optimizer state is a flat dict too ("adam.m.<name>", "adam.v.<name>", "adam.t"), so it goes into
the checkpoint beside the weights and a resumed run continues with the same moments.
"""

import numpy as np

from lstmtext.layers import RowGrad, sum_rows


def _values(g) -> np.ndarray:
    """The stored numbers of a gradient: the array, or the used rows of an embedding gradient."""
    return g.values if isinstance(g, RowGrad) else g


def add_scaled(total: dict | None, grads: dict, w: float) -> dict:
    """total + w·grads, key by key (None: w·grads), for --accumulate. Embedding rows (RowGrad) merge
    into one RowGrad over the union of their rows."""
    if total is None:
        total = {}
    for k, g in grads.items():
        if isinstance(g, RowGrad):
            v = g.values * w  # (U, E)
            if k in total:
                rows = np.concatenate([total[k].rows, g.rows])  # (U1 + U2,)
                v = np.concatenate([total[k].values, v])  # (U1 + U2, E)
                total[k] = sum_rows(rows, v, g.shape)  # (U, E)
            else:
                total[k] = RowGrad(g.rows, v, g.shape)
        elif k in total:
            total[k] += w * g
        else:
            total[k] = w * g
    return total


def global_norm(grads: dict) -> float:
    return float(np.sqrt(sum(float(np.vdot(_values(g), _values(g))) for g in grads.values())))


def clip_global_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients together so their joint L2 norm is at most max_norm (Pascanu et al. 2013).
    Returns the norm before clipping. max_norm <= 0 turns clipping off."""
    norm = global_norm(grads)
    if max_norm > 0 and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads.values():
            _values(g)[...] *= scale
    return norm


RMSPROP_DECAY = 0.95  # as in Karpathy et al. 2015, "Visualizing and Understanding Recurrent Networks"


def state_shapes(kind: str, shapes: dict) -> dict:
    """Name -> shape of an optimizer's state for parameters of these shapes (what checkpoints hold)."""
    if kind == "sgd":
        return {}
    if kind == "rmsprop":
        return {f"rmsprop.v.{k}": s for k, s in shapes.items()}
    out = {"adam.t": (1,)}  # steps taken, (1,) so every format stores it
    for k, s in shapes.items():
        out[f"adam.m.{k}"] = out[f"adam.v.{k}"] = s
    return out


def trainable(d: dict, freeze_embed: bool) -> dict:
    """The entries of d (params or their shapes) that the optimizer moves: all but a frozen embedding."""
    return {k: v for k, v in d.items() if not (freeze_embed and k == "embed.W")}


def init_state(kind: str, params: dict) -> dict:
    shapes = state_shapes(kind, {k: p.shape for k, p in params.items()})
    dtype = next(iter(params.values())).dtype
    return {k: np.zeros(s, dtype=np.int64 if k == "adam.t" else dtype) for k, s in shapes.items()}


def add_weight_decay(params: dict, grads: dict, weight_decay: float) -> None:
    """L2 regularization: the gradient of (weight_decay / 2) ||W||² for every weight matrix (biases
    are left alone). Applied before clipping, like any other part of the loss gradient."""
    for k in grads:
        p = params[k]
        if p.ndim < 2:
            continue
        if isinstance(grads[k], RowGrad):
            grads[k] = grads[k].dense()  # decay touches every row, used in this window or not
        grads[k] += weight_decay * p


def step(kind: str, params: dict, grads: dict, state: dict, lr: float) -> None:
    """Update params in place."""
    if kind == "sgd":
        for k, g in grads.items():  # a frozen parameter has no gradient and stays
            p, v = params[k], _values(g)
            v *= lr  # the gradients are spent: scale them in place rather than allocate lr * g
            if isinstance(g, RowGrad):
                p[g.rows] -= v  # rows are distinct, so fancy-indexed -= touches each once
            else:
                p -= v
        return
    if kind == "rmsprop":
        # Tieleman & Hinton 2012: divide by a running root mean square of recent gradients.
        for k, g in grads.items():
            p, v = params[k], state[f"rmsprop.v.{k}"]
            if isinstance(g, RowGrad):
                g = g.dense()  # the running average decays for every row each step
            v *= RMSPROP_DECAY
            v += (1 - RMSPROP_DECAY) * g * g
            p -= lr * g / (np.sqrt(v) + 1e-8)
        return
    # Adam (Kingma & Ba 2015) with the usual defaults.
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    state["adam.t"] += 1
    t = int(state["adam.t"][0])
    corr = np.sqrt(1 - beta2**t) / (1 - beta1**t)  # bias corrections folded into the step size
    for k, g in grads.items():
        p, m, v = params[k], state[f"adam.m.{k}"], state[f"adam.v.{k}"]
        if isinstance(g, RowGrad):
            g = g.dense()  # Adam decays every row's moments each step, used or not
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        p -= (lr * corr) * m / (np.sqrt(v) + eps)
