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
