"""The whole network over one TBPTT window, as pure functions of a flat parameter dict.

    e   = embed.W[x]                              (T, B, E)
    z_0 = dropout(e)
    z_l = dropout(cell_l(z_{l-1}, state_l))       (T, B, H)   for l = 1..L
    p   = softmax(z_L head.W + head.b)            (T, B, V)
    loss = mean over the T·B tokens of -log p[target]

In training, AWD-LSTM's regularisers (Merity, Keskar & Socher 2018; each off at 0) act on this:
    embed_dropout   e = (embed.W ⊙ r)[x], r (V,) 0 or 1/(1-p) per word: a dropped word is dropped
                    wherever it stands in the window
    weight_drop     cell_l reads W_h ⊙ M_l, M_l 0 or 1/(1-p) per weight, one mask per window
    dropout_kind    "step": a new mask at every t (Zaremba 2014); "locked": one mask (1, B, D) for
                    the whole window, each stream its own (Gal & Ghahramani 2016)
    dropout_in/out  the rate on z_0 and on z_L (the others use dropout)
    ar, tar         the gradient of ar·mean(z_L²) + tar·mean((h_L[t] − h_L[t−1])²) is added, h_L
                    the last layer's output before dropout; the loss reported stays the cross-entropy

Parameter names (the same keys in grads, optimizer state and checkpoints):
    embed.W (V,E) · layers.{l}.{W_x,W_h,b,...} · head.W (H,V) · head.b (V,)
With --tie there is no head.W: the head uses embed.W transposed, and its gradient adds to embed.W.
"""

from dataclasses import dataclass

import numpy as np

from lstmtext import adaptive, layers
from lstmtext.cells import cell_options, common, get_cell
from lstmtext.cells.common import uniform
from lstmtext.config import ModelConfig


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    cell = get_cell(cfg.cell)
    shapes = {"embed.W": (cfg.vocab_size, cfg.embed)}
    for layer in range(cfg.layers):
        D = cfg.embed if layer == 0 else cfg.hidden
        for name, shape in common.param_shapes(cell, D, cfg.hidden).items():
            shapes[f"layers.{layer}.{name}"] = shape
    if cfg.softmax == "adaptive":
        return {**shapes, **adaptive.param_shapes(cfg.hidden, cfg.cutoff_list, cfg.vocab_size)}
    if not cfg.tie:
        shapes["head.W"] = (cfg.hidden, cfg.vocab_size)
    shapes["head.b"] = (cfg.vocab_size,)
    return shapes


def orthogonal(rng: np.random.Generator, n: int, dtype) -> np.ndarray:
    """A random orthogonal (n, n) matrix, uniform over the orthogonal group: QR of a Gaussian with
    the signs of R's diagonal moved into Q (Mezzadri 2007); without that step Q is not uniform."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))  # (n, n) each
    return (q * np.sign(np.diag(r))).astype(dtype)  # (n, n)


def chrono_biases(b: np.ndarray, blocks: tuple[int, int | None], H: int, t_max: int, rng) -> np.ndarray:
    """b (G·H,) with the keep block log(U(1, t_max - 1)) and the write block its negative."""
    keep, write = blocks
    b = b.copy()
    b[keep * H : (keep + 1) * H] = np.log(rng.uniform(1.0, t_max - 1.0, H))  # (H,)
    if write is not None:
        b[write * H : (write + 1) * H] = -b[keep * H : (keep + 1) * H]  # (H,)
    return b


def init_params(cfg: ModelConfig, rng: np.random.Generator, dtype=np.float32) -> dict:
    """The starting weights under the scheme `cfg.init`:

    - uniform: every weight U(±init_scale), biases 0 (the LSTM-family forget bias 1): Zaremba et
      al. 2014, the Penn Treebank recipe.
    - torch: PyTorch's defaults. Embedding N(0, 1); recurrent and input weights U(±1/√H); each bias
      the sum of PyTorch's two bias vectors (b_ih + b_hh), so U(±1/√H) + U(±1/√H); head (nn.Linear)
      weight and bias U(±1/√H); the adaptive head's layers U(±1/√fan_in) each (a tail's output layer
      reads its inner width H/4^k). The forget bias 1 is added on top, as the other schemes have it. A cell
      without W_h (minGRU, minLSTM) is one nn.Linear per layer: its bias is one draw.
    A cell may add its own start on top of any scheme (`cell.own_init`): the sLSTM sets W_h to zero
    and its forget biases to its authors' power law, on which the torch scheme's bias draws then sit.
    - orthogonal: as uniform, but each H×H gate block of W_h a random orthogonal matrix (Saxe et al.
      2014): the recurrence neither shrinks nor grows a state at the start, so gradients last longer.

    On top of any scheme, `cfg.chrono = T_max` (Tallec & Ollivier 2018, "Can recurrent neural networks
    warp time?") sets each unit's keep-gate bias to log(u), u ~ U(1, T_max - 1), and its write-gate bias
    (where the cell has a separate one) to -log(u): a unit then starts forgetting at a rate of about
    1/u per step, so the units' memories span the gaps 1 .. T_max instead of all fading within a few.
    """
    cell = get_cell(cfg.cell)
    H = cfg.hidden
    s = 1.0 / np.sqrt(H) if cfg.init == "torch" else cfg.init_scale
    if cfg.init == "torch":
        params = {"embed.W": rng.standard_normal((cfg.vocab_size, cfg.embed)).astype(dtype)}
    else:
        params = {"embed.W": uniform(rng, (cfg.vocab_size, cfg.embed), s, dtype)}
    for layer in range(cfg.layers):
        D = cfg.embed if layer == 0 else H
        layer_params = common.init_params(cell, rng, D, H, s, dtype)
        if cell.own_init is not None:  # a cell's own recommended start (the sLSTM's), on top of the draws
            layer_params = cell.own_init(layer_params, H, layer, cfg.layers, **cell_options(cell, cfg))
        for name, value in layer_params.items():
            if cfg.init == "torch" and value.ndim == 1:
                # b stands for b_ih + b_hh; b_hn, peepholes and a cell without W_h have one bias
                draws = 2 if name == "b" and cell.RECURRENT else 1
                value = value + sum(uniform(rng, value.shape, s, dtype) for _ in range(draws))
            if cfg.init == "orthogonal" and name == "W_h":
                value = np.concatenate([orthogonal(rng, H, dtype) for _ in range(value.shape[1] // H)], axis=1)
            if cfg.chrono and name == "b":
                value = chrono_biases(value, cell.CHRONO, H, cfg.chrono, rng)
            params[f"layers.{layer}.{name}"] = value
    if cfg.softmax == "adaptive":  # every matrix uniform, the head's bias zero (torch: each nn.Linear's own)
        for name, shape in adaptive.param_shapes(H, cfg.cutoff_list, cfg.vocab_size).items():
            fan_in = shape[0] if len(shape) == 2 else H  # a tail's output layer reads its inner width
            scale = 1.0 / np.sqrt(fan_in) if cfg.init == "torch" else s
            drawn = cfg.init == "torch" or len(shape) == 2
            params[name] = uniform(rng, shape, scale, dtype) if drawn else np.zeros(shape, dtype=dtype)
        return params
    if not cfg.tie:
        params["head.W"] = uniform(rng, (H, cfg.vocab_size), s, dtype)
    head_b = uniform(rng, (cfg.vocab_size,), s, dtype) if cfg.init == "torch" else np.zeros(cfg.vocab_size)
    params["head.b"] = head_b.astype(dtype)
    return params


def init_state(cfg: ModelConfig, batch: int, dtype=np.float32) -> dict:
    """The zero state every stream starts from: {"layers.{l}.{h,c,...}": (B, H)}."""
    cell = get_cell(cfg.cell)
    return {
        f"layers.{layer}.{name}": np.zeros((batch, cfg.hidden), dtype=dtype)
        for layer in range(cfg.layers)
        for name in cell.STATE
    }


def _layer(d: dict, layer: int, names) -> dict:
    """The entries `names` of one layer from a flat dict, with the "layers.{l}." prefix removed. By
    name, not by a scan of every key: generation asks every token (sampling 2 × 200, V 10k: 2.5%
    faster, the median of 8 alternated pairs)."""
    return {name: d[f"layers.{layer}.{name}"] for name in names}


def head_weight(params: dict) -> np.ndarray:
    return params["head.W"] if "head.W" in params else params["embed.W"].T  # (H, V)


@dataclass
class ModelCache:
    ids: np.ndarray  # (T, B) input token ids
    masks: list  # L+1 dropout masks (T or 1, B, E) / (T or 1, B, H), or None where dropout is off
    cells: list  # one cell cache per layer
    head: layers.HeadCache | adaptive.AdaptiveCache
    shape: tuple[int, int]  # (T, B)
    rows: np.ndarray | None = None  # (V,) embed_dropout's word mask
    weight_masks: list | None = None  # weight_drop's mask of each layer's W_h, (H, G·H)
    top: tuple[np.ndarray, np.ndarray] | None = None  # ar/tar: (z_L, h_L), (T, B, H) each
    penalty: float = 0.0  # ar and tar's terms, which the gradient includes and the loss does not


def forward(
    params: dict,
    cfg: ModelConfig,
    ids: np.ndarray,
    targets: np.ndarray,
    state: dict,
    rng: np.random.Generator | None = None,
    mask: np.ndarray | None = None,
    columns: tuple[int, slice] | None = None,
) -> tuple[float, np.ndarray, ModelCache, dict]:
    """ids, targets (T,B) -> mean loss, per-token nll (T,B), cache, state after the window.

    rng draws the dropout masks; pass None to evaluate (no dropout). mask (T,B) marks which targets
    count (evaluation pads the last window); None counts all. Where the mask is 0 the nll means
    nothing (the adaptive head leaves it 0, never computing the padded rows' tails). columns
    (global batch, slice): these B streams are that slice of a larger batch (a rank of an MPI run,
    mpi.py); the dropout masks are drawn for the whole batch and sliced, as one process draws them.
    """
    cell = get_cell(cfg.cell)
    T, B = ids.shape
    dtype = params["embed.W"].dtype
    train = rng is not None
    full, cols = (B, slice(None)) if columns is None else columns

    def drop(z, p):
        if not train or not p:
            return z, None
        steps = 1 if cfg.dropout_kind == "locked" else z.shape[0]  # locked: one mask for every t
        m = layers.dropout_mask(rng, (steps, full, *z.shape[2:]), p, dtype)[:, cols]  # (T or 1, B, D)
        return z * m, m

    rows = None
    if train and cfg.embed_dropout:  # the whole batch's draw, as every mask here: MPI ranks agree
        rows = layers.dropout_mask(rng, (cfg.vocab_size,), cfg.embed_dropout, dtype)  # (V,)
    z, _ = layers.embedding_forward(params["embed.W"], ids)  # (T, B, E)
    if rows is not None:
        z = z * rows[ids][:, :, None]  # (T, B, E)
    z, m = drop(z, cfg.dropout_in)
    masks, caches, new_state, weight_masks = [m], [], {}, []
    names = common.param_shapes(cell, 1, 1)  # a layer's parameter names, the same at every width
    for layer in range(cfg.layers):
        p = _layer(params, layer, names)
        wm = None
        if train and cfg.weight_drop:
            wm = layers.dropout_mask(rng, p["W_h"].shape, cfg.weight_drop, dtype)  # (H, G·H)
            p["W_h"] = p["W_h"] * wm  # (H, G·H) the cell reads, and its backward differentiates, this one
        h, cell_cache = cell.forward(p, z, _layer(state, layer, cell.STATE), **cell_options(cell, cfg))  # (T, B, H)
        for name, value in cell.final_state(cell_cache).items():
            new_state[f"layers.{layer}.{name}"] = value
        z, m = drop(h, cfg.dropout_out if layer == cfg.layers - 1 else cfg.dropout)
        masks.append(m)
        caches.append(cell_cache)
        weight_masks.append(wm)
    top, penalty = None, 0.0
    if train and (cfg.ar or cfg.tar):
        top = (z, h)  # (T, B, H) each: the last layer's output after and before dropout
        penalty = cfg.ar * float(np.mean(z * z))
        if T > 1:
            penalty += cfg.tar * float(np.mean(np.square(h[1:] - h[:-1])))
    flat_mask = None if mask is None else mask.reshape(T * B)
    if cfg.softmax == "adaptive":
        loss, nll, head_cache = adaptive.forward(
            params, z.reshape(T * B, cfg.hidden), targets.reshape(T * B), cfg.edges, flat_mask
        )
    else:
        loss, nll, head_cache = layers.head_forward(
            z.reshape(T * B, cfg.hidden), head_weight(params), params["head.b"], targets.reshape(T * B), flat_mask
        )
    cache = ModelCache(ids, masks, caches, head_cache, (T, B), rows, weight_masks if train else None, top, penalty)
    return loss, nll.reshape(T, B), cache, new_state


def backward(params: dict, cfg: ModelConfig, cache: ModelCache) -> tuple[dict, dict]:
    """-> grads (same keys as params), dstate (gradient w.r.t. the window's initial state).

    grads["embed.W"] is a layers.RowGrad (only the rows used) unless the weights are tied."""
    cell = get_cell(cfg.cell)
    T, B = cache.shape
    grads, dstate = {}, {}
    if cfg.softmax == "adaptive":
        dz, head_grads = adaptive.backward(params, cache.head)
        grads.update(head_grads)
    else:
        dz, dW_head, grads["head.b"] = layers.head_backward(cache.head, head_weight(params))
    dz = dz.reshape(T, B, cfg.hidden)  # (T, B, H)
    if cache.top is not None and cfg.ar:
        z_top = cache.top[0]
        dz = dz + (2.0 * cfg.ar / z_top.size) * z_top  # (T, B, H) d ar·mean(z_L²)
    for layer in reversed(range(cfg.layers)):
        if cache.masks[layer + 1] is not None:
            dz = dz * cache.masks[layer + 1]
        if layer == cfg.layers - 1 and cache.top is not None and cfg.tar and T > 1:
            h_top = cache.top[1]
            d = (2.0 * cfg.tar / (h_top[1:].size)) * (h_top[1:] - h_top[:-1])  # (T-1, B, H) d tar·mean(Δh²)
            dz = dz.copy()  # (T, B, H) the head's buffer may be shared: add into our own
            dz[1:] += d
            dz[:-1] -= d
        dz, g, ds = cell.backward(dz, cache.cells[layer])  # dz: (T, B, D) for the layer below
        if cache.weight_masks is not None and cache.weight_masks[layer] is not None:
            g["W_h"] = g["W_h"] * cache.weight_masks[layer]  # (H, G·H) through W_h ⊙ M to W_h
        grads.update({f"layers.{layer}.{k}": v for k, v in g.items()})
        dstate.update({f"layers.{layer}.{k}": v for k, v in ds.items()})
    if cache.masks[0] is not None:
        dz = dz * cache.masks[0]
    if cache.rows is not None:
        dz = dz * cache.rows[cache.ids][:, :, None]  # (T, B, E) a dropped word's row gets nothing
    dE = layers.embedding_backward(dz, cache.ids, cfg.vocab_size)  # rows of (V, E)
    if cfg.tie:
        dense = np.ascontiguousarray(dW_head.T)  # (V, E) the head's use of embed.W is dense anyway
        dense[dE.rows] += dE.values
        grads["embed.W"] = dense
    else:
        grads["embed.W"] = dE
        if cfg.softmax == "full":
            grads["head.W"] = dW_head
    return grads, dstate


def step_logits(params: dict, cfg: ModelConfig, ids: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    """One time step for generation, no dropout and no caches: ids (B,) -> logits (B,V), next state."""
    cell = get_cell(cfg.cell)
    opts = cell_options(cell, cfg)
    z = params["embed.W"][ids]  # (B, E)
    new_state = {}
    names = common.param_shapes(cell, 1, 1)  # a layer's parameter names, the same at every width
    for layer in range(cfg.layers):
        z, s = cell.step(_layer(params, layer, names), z, _layer(state, layer, cell.STATE), **opts)  # (B, H)
        new_state.update({f"layers.{layer}.{k}": v for k, v in s.items()})
    if cfg.softmax == "adaptive":  # log p over the whole vocabulary: as logits, softmax gives p back
        return adaptive.log_probs(params, z, cfg.edges), new_state
    logits = z @ head_weight(params)  # (B, V)
    logits += params["head.b"]
    return logits, new_state
