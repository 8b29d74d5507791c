"""Optimizers and clipping over flat dicts: params, grads and optimizer state share their keys.

Optimizer state is a flat dict too ("adam.m.<name>", "adam.v.<name>", "adam.t"), so it goes into
the checkpoint beside the weights and a resumed run continues with the same moments.
"""

import numpy as np

from lstmtext.cells import compiled
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


def clip_scale(norm: float, max_norm: float) -> float:
    """What clipping multiplies every gradient by: max_norm / norm past max_norm, else 1 (Pascanu et
    al. 2013). max_norm <= 0 turns clipping off."""
    return max_norm / (norm + 1e-6) if max_norm > 0 and norm > max_norm else 1.0


def clip_global_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients together so their joint L2 norm is at most max_norm, in place. Returns
    the norm before clipping. (The trainer passes clip_scale to `step` instead: one pass fewer.)"""
    norm = global_norm(grads)
    scale = clip_scale(norm, max_norm)
    if scale != 1.0:
        for g in grads.values():
            _values(g)[...] *= scale
    return norm


RMSPROP_DECAY = 0.95  # as in Karpathy et al. 2015, "Visualizing and Understanding Recurrent Networks"


def state_shapes(kind: str, shapes: dict) -> dict:
    """Name -> shape of an optimizer's state for parameters of these shapes (what checkpoints hold)."""
    if kind == "sgd":
        return {}
    if kind == "nt-asgd":  # the iterates averaged so far (0: not averaging yet), and their mean
        return {"asgd.n": (1,), **{f"asgd.avg.{k}": s for k, s in shapes.items()}}
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
    return {k: np.zeros(s, dtype=np.int64 if k in COUNTERS else dtype) for k, s in shapes.items()}


COUNTERS = ("adam.t", "asgd.n")  # the integer entries of optimizer states


# -- NT-ASGD (Merity, Keskar & Socher 2018): SGD until validation stalls, then the same SGD steps with
# the weights averaged from there on (Polyak & Juditsky 1992); the average is the model.


def stalled(seen: list[float], loss: float, nonmono: int) -> bool:
    """NT-ASGD's non-monotone trigger (Merity et al. 2018): this validation loss is worse than the best
    of those seen before the last `nonmono` (seen: the earlier ones, oldest first)."""
    return len(seen) > nonmono and loss > min(seen[:-nonmono])


def diverging(loss: float, best: float, train_loss: float, lowest: float, frac: float) -> bool:
    """--rollback's trigger: this validation loss more than `frac` above the best, and the training
    loss since the validation before as far above its lowest such mean (a run that only overfits has
    its training loss still falling). A nan validation loss counts."""
    return not loss <= best * (1.0 + frac) and train_loss > lowest * (1.0 + frac)


def averaging(state: dict) -> bool:
    return "asgd.n" in state and int(state["asgd.n"][0]) > 0


def start_averaging(params: dict, state: dict) -> None:
    """The trigger: the average starts as the weights of now, one iterate."""
    for k in params:
        if f"asgd.avg.{k}" in state:
            state[f"asgd.avg.{k}"][...] = params[k]
    state["asgd.n"][0] = 1


def averaged(params: dict, state: dict) -> dict:
    """The weights to validate, save and use: the average once averaging has started, else params."""
    if not averaging(state):
        return params
    return {k: state.get(f"asgd.avg.{k}", p) for k, p in params.items()}


def swap_average(params: dict, state: dict) -> tuple[dict, dict]:
    """(params, state) with the average and the current weights traded places, so that a checkpoint's
    weights are the average every tool reads, while its state keeps the iterate a resume goes on from.
    Its own inverse: a resume swaps them back. Identity when not averaging."""
    if not averaging(state):
        return params, state
    state = dict(state)
    params = dict(params)
    for k in list(params):
        if f"asgd.avg.{k}" in state:
            params[k], state[f"asgd.avg.{k}"] = state[f"asgd.avg.{k}"], params[k]
    return params, state


def _compiled(*arrays: np.ndarray):
    """The compiled kernels, when numba is there and every array is contiguous and of one float dtype
    (then reshape(-1) is a view, and the kernel's writes land in the parameter), else None."""
    dt = arrays[0].dtype
    if not all(a.flags.c_contiguous and a.dtype == dt for a in arrays):
        return None
    return compiled.kernels(dt)


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


def step(kind: str, params: dict, grads: dict, state: dict, lr: float, scale: float = 1.0) -> None:
    """Update params in place with the gradients times scale: the clipping factor (clip_scale), applied
    inside the update rather than in a pass over every gradient of its own."""
    if kind == "nt-asgd":
        step("sgd", params, grads, state, lr, scale)
        if averaging(state):
            state["asgd.n"] += 1
            n = int(state["asgd.n"][0])
            for k in grads:  # a frozen parameter stays, and so does its average
                avg = state[f"asgd.avg.{k}"]
                avg += (params[k] - avg) / n  # the mean of the n iterates since the trigger
        return
    if kind == "sgd":
        for k, g in grads.items():  # a frozen parameter has no gradient and stays
            p, v = params[k], _values(g)
            if not isinstance(g, RowGrad) and (kernel := _compiled(p, v)):
                kernel.sgd_update(p.reshape(-1), v.reshape(-1), p.dtype.type(lr * scale))  # the same, one pass
                continue
            v *= lr * scale  # the gradients are spent: scale them in place rather than allocate lr * g
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
            if scale != 1.0:
                g = g * scale
            v *= RMSPROP_DECAY
            v += (1 - RMSPROP_DECAY) * g * g
            p -= lr * g / (np.sqrt(v) + 1e-8)
        return
    # Adam (Kingma & Ba 2015) with the usual defaults.
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    state["adam.t"] += 1
    t = int(state["adam.t"][0])
    # bias corrections folded into the step size; a Python float, so the update stays in float32
    step_size = float(lr * np.sqrt(1 - beta2**t) / (1 - beta1**t))
    for k, g in grads.items():
        p, m, v = params[k], state[f"adam.m.{k}"], state[f"adam.v.{k}"]
        dt = p.dtype.type
        consts = (dt((1 - beta1) * scale), dt((1 - beta2) * scale * scale), dt(beta1), dt(beta2), dt(step_size),
                  dt(eps))  # fmt: skip
        if isinstance(g, RowGrad):
            if kernel := _compiled(p, g.values, m, v):  # every row in one pass, the used ones with their rows
                # the kernel walks the rows in order: others would be skipped, so a RowGrad that breaks
                # its promise must not pass silently
                if kernel.adam_rows_update(p, g.rows, g.values, m, v, *consts) != len(g.rows):
                    raise ValueError("an embedding gradient's rows must be ascending, distinct and in range")
                continue
            g = g.dense()  # Adam decays every row's moments each step, used or not
        if kernel := _compiled(p, g, m, v):  # the same update in one pass (cells/compiled.py)
            kernel.adam_update(*(a.reshape(-1) for a in (p, g, m, v)), *consts)  # views: contiguous
            continue
        # In place through one scratch array: each written-out temporary is a pass over memory, and
        # the update is a large share of a step at the defaults' sizes (4M parameters: 25 ms -> 11).
        # The clipping scale s rides on the constants, not on a scaled copy of g.
        tmp = np.multiply(g, (1 - beta1) * scale)  # (1-β1) s g
        m *= beta1
        m += tmp  # m = β1 m + (1-β1) s g
        np.multiply(g, (1 - beta2) * scale * scale, out=tmp)
        tmp *= g  # (1-β2) (s g)²
        v *= beta2
        v += tmp  # v = β2 v + (1-β2) g²
        np.sqrt(v, out=tmp)
        tmp += eps
        np.divide(m, tmp, out=tmp)  # m / (√v + ε)
        tmp *= step_size
        p -= tmp
