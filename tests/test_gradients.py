"""Every backward pass against float64 central differences, all parameters and states random."""

import numpy as np
import pytest
from gradcheck import numerical_grad, rel_error

from lstmtext import layers, model
from lstmtext.cells import CELLS, common
from lstmtext.config import ModelConfig

TOL = 1e-6
# Every cell, and the rnn with both of its nonlinearities.
VARIANTS = [(name, {}) for name in sorted(CELLS)] + [("rnn", {"nonlinearity": "relu"}), ("slstm", {"heads": 2})]
VARIANT_IDS = [name + "".join(f"-{v}" for v in opts.values()) for name, opts in VARIANTS]


def random_params(cfg, rng):
    """Every parameter random and nonzero (zero biases would hide a doubled-bias bug)."""
    return {k: rng.uniform(-0.5, 0.5, size=s) for k, s in model.param_shapes(cfg).items()}


def random_state(cfg, B, rng):
    return {k: rng.uniform(-0.5, 0.5, size=v.shape) for k, v in model.init_state(cfg, B, np.float64).items()}


@pytest.mark.parametrize("cell_name,opts", VARIANTS, ids=VARIANT_IDS)
def test_cell_window_gradients(cell_name, opts):
    """A whole window, nonzero initial state: dx, every parameter and the initial state."""
    rng = np.random.default_rng(0)
    cell = CELLS[cell_name]
    T, B, D, H = 4, 3, 5, 4
    p = {k: rng.uniform(-0.6, 0.6, size=s) for k, s in common.param_shapes(cell, D, H).items()}
    x = rng.normal(size=(T, B, D))
    state = {k: rng.uniform(-0.5, 0.5, size=(B, H)) for k in cell.STATE}
    R = rng.normal(size=(T, B, H))  # loss = sum(h * R): every output gets a distinct gradient

    def loss():
        h, _ = cell.forward(p, x, state, **opts)
        return float((h * R).sum())

    _, cache = cell.forward(p, x, state, **opts)
    dx, grads, dstate = cell.backward(R.copy(), cache)
    assert rel_error(dx, numerical_grad(loss, x)) < TOL
    for k in p:
        assert rel_error(grads[k], numerical_grad(loss, p[k])) < TOL, k
    for k in state:
        assert rel_error(dstate[k], numerical_grad(loss, state[k])) < TOL, k


def test_slstm_gradients_from_an_empty_cell():
    """From c = n = 0 (every run's start) the first step takes m from the input alone (its own branch);
    h does not depend on m, so the gradients must still be exact."""
    rng = np.random.default_rng(5)
    cell = CELLS["slstm"]
    T, B, D, H = 3, 2, 4, 4
    p = {k: rng.uniform(-0.6, 0.6, size=s) for k, s in common.param_shapes(cell, D, H).items()}
    x = rng.normal(size=(T, B, D))
    state = {k: np.zeros((B, H)) for k in cell.STATE}
    R = rng.normal(size=(T, B, H))

    def loss():
        return float((cell.forward(p, x, state)[0] * R).sum())

    _, cache = cell.forward(p, x, state)
    dx, grads, _ = cell.backward(R.copy(), cache)
    assert rel_error(dx, numerical_grad(loss, x)) < TOL
    for k in p:
        assert rel_error(grads[k], numerical_grad(loss, p[k])) < TOL, k


def test_embedding_gradient_with_repeated_ids():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(6, 3))
    ids = np.array([[1, 1], [4, 1], [0, 5]])  # id 1 three times: its rows must add up
    R = rng.normal(size=(3, 2, 3))

    def loss():
        return float((layers.embedding_forward(W, ids)[0] * R).sum())

    g = layers.embedding_backward(R, ids, 6)
    assert g.rows.tolist() == [0, 1, 4, 5]  # only the rows used, each once
    dW = g.dense()
    assert rel_error(dW, numerical_grad(loss, W)) < TOL


def test_head_softmax_xent_gradient_with_mask():
    rng = np.random.default_rng(2)
    N, H, V = 7, 4, 9
    h, W, b = rng.normal(size=(N, H)), rng.normal(size=(H, V)), rng.normal(size=V)
    targets = rng.integers(0, V, size=N)
    mask = np.array([1, 1, 0, 1, 1, 1, 0], dtype=np.float64)

    def loss():
        return layers.head_forward(h, W, b, targets, mask)[0]

    _, _, cache = layers.head_forward(h, W, b, targets, mask)
    dh, dW, db = layers.head_backward(cache, W)
    assert rel_error(dh, numerical_grad(loss, h)) < TOL
    assert rel_error(dW, numerical_grad(loss, W)) < TOL
    assert rel_error(db, numerical_grad(loss, b)) < TOL


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("cell_name,opts", VARIANTS, ids=VARIANT_IDS)
def test_model_gradients_with_fixed_dropout(cell_name, opts, tie):
    """The whole network: embedding, 2 layers, dropout with masks fixed by the seed, head, tying."""
    rng = np.random.default_rng(3)
    cfg = ModelConfig(vocab_size=7, embed=4, hidden=4, layers=2, cell=cell_name, dropout=0.3, tie=tie, **opts)
    T, B = 3, 2
    params = random_params(cfg, rng)
    state = random_state(cfg, B, rng)
    ids = rng.integers(0, 7, size=(T, B))
    targets = rng.integers(0, 7, size=(T, B))

    def loss():
        # A fresh generator with the same seed draws the same dropout masks every call.
        return model.forward(params, cfg, ids, targets, state, np.random.default_rng(9))[0]

    _, _, cache, _ = model.forward(params, cfg, ids, targets, state, np.random.default_rng(9))
    assert cache.masks[0] is not None and (cache.masks[0] == 0).any()  # dropout really active
    grads, dstate = model.backward(params, cfg, cache)
    assert set(grads) == set(params)
    for k in params:
        g = grads[k].dense() if isinstance(grads[k], layers.RowGrad) else grads[k]
        assert rel_error(g, numerical_grad(loss, params[k])) < TOL, k
    for k in state:
        assert rel_error(dstate[k], numerical_grad(loss, state[k])) < TOL, k


# AWD-LSTM's regularisers, one at a time and all together; the rates are high so that every mask
# really drops something in a 3×2 window.
REGULARISERS = {
    "weight-drop": {"weight_drop": 0.5},
    "locked": {"dropout_kind": "locked", "dropout": 0.4},
    "rates-apart": {"dropout_in": 0.5, "dropout": 0.2, "dropout_out": 0.0},
    "embed-dropout": {"embed_dropout": 0.4},
    "ar": {"ar": 2.0},
    "tar": {"tar": 3.0},
    "all": {"weight_drop": 0.5, "dropout_kind": "locked", "dropout": 0.3, "dropout_in": 0.4, "embed_dropout": 0.4,
            "ar": 2.0, "tar": 3.0},
}


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("cell_name", ["lstm", "gru", "peephole", "slstm"])
@pytest.mark.parametrize("reg", list(REGULARISERS))
def test_model_gradients_with_awd_regularisers(reg, cell_name, tie):
    """The whole network with each regulariser's masks fixed by the seed: the gradient is that of the
    cross-entropy plus ar and tar's terms (cache.penalty), through W_h ⊙ M, the word mask and the
    locked masks, to every parameter and the initial state."""
    rng = np.random.default_rng(4)
    opts = {"dropout": 0.0, **REGULARISERS[reg]}
    cfg = ModelConfig(vocab_size=7, embed=4, hidden=4, layers=2, cell=cell_name, tie=tie, **opts)
    T, B = 3, 2
    params = random_params(cfg, rng)
    state = random_state(cfg, B, rng)
    ids = np.array([[1, 2], [2, 5], [1, 1]])  # repeated words: a dropped word is dropped at each place
    targets = rng.integers(0, 7, size=(T, B))

    def objective():
        loss, _, cache, _ = model.forward(params, cfg, ids, targets, state, np.random.default_rng(9))
        return loss + cache.penalty

    loss, _, cache, _ = model.forward(params, cfg, ids, targets, state, np.random.default_rng(9))
    if cfg.weight_drop:
        assert all((m == 0).any() and (m != 0).any() for m in cache.weight_masks)
    if cfg.embed_dropout:
        used = np.unique(ids)
        assert (cache.rows[used] == 0).any() and (cache.rows[used] != 0).any()
    if cfg.dropout_kind == "locked":
        assert all(m is None or m.shape[0] == 1 for m in cache.masks)
    assert (cache.penalty > 0) == bool(cfg.ar or cfg.tar)
    grads, dstate = model.backward(params, cfg, cache)
    for k in params:
        g = grads[k].dense() if isinstance(grads[k], layers.RowGrad) else grads[k]
        # eps 1e-5: some of these gradients are ~1e-4 in norm (layer 1's peepholes), where a central
        # difference at 1e-6 carries rounding of ~1e-16·|loss|/eps per entry, 1e-6 of the norm: the
        # check would measure its own noise (1.1e-6 on the compiled path, 0.9e-6 on NumPy's)
        assert rel_error(g, numerical_grad(objective, params[k], eps=1e-5)) < TOL, k
    for k in state:
        assert rel_error(dstate[k], numerical_grad(objective, state[k], eps=1e-5)) < TOL, k


def test_regularisers_off_in_evaluation_and_at_zero():
    """Without a generator (evaluation) none acts; at 0 none draws, so a run's masks are as before."""
    rng = np.random.default_rng(2)
    base = ModelConfig(vocab_size=7, embed=4, hidden=4, layers=2, dropout=0.3)
    awd = ModelConfig(vocab_size=7, embed=4, hidden=4, layers=2, dropout=0.3, weight_drop=0.5, embed_dropout=0.3,
                      ar=2.0, tar=1.0)
    params, state = random_params(base, rng), random_state(base, 2, rng)
    ids, targets = rng.integers(0, 7, size=(3, 2)), rng.integers(0, 7, size=(3, 2))
    plain = model.forward(params, base, ids, targets, state, None)
    with_regs = model.forward(params, awd, ids, targets, state, None)
    assert plain[0] == with_regs[0] and with_regs[2].penalty == 0.0
    off = ModelConfig(vocab_size=7, embed=4, hidden=4, layers=2, dropout=0.3, weight_drop=0.0, dropout_in=-1.0)
    a = model.forward(params, base, ids, targets, state, np.random.default_rng(5))
    b = model.forward(params, off, ids, targets, state, np.random.default_rng(5))
    assert a[0] == b[0] and all(np.array_equal(x, y) for x, y in zip(a[2].masks, b[2].masks, strict=True))
