import math

import numpy as np
import pytest

from lstmtext import model, optim, schedule
from lstmtext.cells import CELLS
from lstmtext.config import ModelConfig


@pytest.mark.parametrize("cell_name,nonlinearity", [(c, "tanh") for c in sorted(CELLS)] + [("rnn", "relu")])
def test_chunked_tbptt_equals_whole_forward(cell_name, nonlinearity):
    """Carrying the state across windows gives the same outputs as one pass over the sequence."""
    rng = np.random.default_rng(0)
    cfg = ModelConfig(
        vocab_size=11, embed=5, hidden=6, layers=2, cell=cell_name, dropout=0.0, nonlinearity=nonlinearity
    )
    params = model.init_params(cfg, rng, np.float64)
    params = {k: rng.uniform(-0.5, 0.5, size=v.shape) for k, v in params.items()}
    T, B = 12, 3
    ids, targets = rng.integers(0, 11, size=(T, B)), rng.integers(0, 11, size=(T, B))
    state0 = {k: rng.normal(size=v.shape) for k, v in model.init_state(cfg, B, np.float64).items()}
    _, nll_whole, _, state_whole = model.forward(params, cfg, ids, targets, state0)
    state, parts = state0, []
    for a, b in [(0, 5), (5, 6), (6, 12)]:
        _, nll, _, state = model.forward(params, cfg, ids[a:b], targets[a:b], state)
        parts.append(nll)
    np.testing.assert_allclose(np.concatenate(parts), nll_whole, rtol=1e-12, atol=1e-12)
    for k in state_whole:
        np.testing.assert_allclose(state[k], state_whole[k], rtol=1e-12, atol=1e-12)


def test_initial_loss_is_about_log_vocab():
    V = 500
    cfg = ModelConfig(vocab_size=V, embed=16, hidden=16, layers=2, init_scale=0.05, dropout=0.2)
    rng = np.random.default_rng(1)
    params = model.init_params(cfg, rng)
    ids = rng.integers(0, V, size=(10, 4))
    loss, *_ = model.forward(params, cfg, ids, rng.integers(0, V, size=(10, 4)), model.init_state(cfg, 4))
    assert abs(loss - math.log(V)) < 0.05


@pytest.mark.parametrize("tie", [False, True])
def test_overfits_one_batch(tie):
    V = 20
    cfg = ModelConfig(vocab_size=V, embed=32, hidden=32, layers=2, dropout=0.0, tie=tie)
    rng = np.random.default_rng(2)
    params = model.init_params(cfg, rng)
    opt = optim.init_state("adam", params)
    ids = rng.integers(0, V, size=(8, 4))
    targets = rng.integers(0, V, size=(8, 4))
    state = model.init_state(cfg, 4)
    for _ in range(300):
        loss, _, cache, _ = model.forward(params, cfg, ids, targets, state)
        grads, _ = model.backward(params, cfg, cache)
        optim.step("adam", params, grads, opt, 0.01)
    assert loss < 0.1


def test_clip_global_norm():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    norm = optim.clip_global_norm(g, 1.0)
    assert norm == pytest.approx(5.0)
    assert optim.global_norm(g) == pytest.approx(1.0, rel=1e-5)
    assert g["a"][0] / g["b"][0, 0] == pytest.approx(0.75)


def test_zaremba_schedule():
    lrs = [schedule.by_epoch(1.0, 0.5, 4, e) for e in range(1, 8)]
    assert lrs == [1, 1, 1, 1, 0.5, 0.25, 0.125]


def test_sparse_embedding_update_equals_dense():
    """SGD and clipping on the rows-only embedding gradient give the same weights as a dense one."""
    from lstmtext.layers import RowGrad

    rng = np.random.default_rng(3)
    W = rng.normal(size=(9, 4))
    ids = np.array([[2, 7], [2, 0]])
    dout = rng.normal(size=(2, 2, 4))
    from lstmtext.layers import embedding_backward

    g = embedding_backward(dout, ids, 9)
    assert isinstance(g, RowGrad)
    dense = g.dense()
    other = rng.normal(size=(3,))
    sparse_grads, dense_grads = {"e": g, "o": other.copy()}, {"e": dense.copy(), "o": other.copy()}
    assert optim.clip_global_norm(sparse_grads, 0.5) == pytest.approx(optim.clip_global_norm(dense_grads, 0.5))
    p_sparse, p_dense = {"e": W.copy(), "o": np.zeros(3)}, {"e": W.copy(), "o": np.zeros(3)}
    optim.step("sgd", p_sparse, sparse_grads, {}, 0.7)
    optim.step("sgd", p_dense, dense_grads, {}, 0.7)
    np.testing.assert_allclose(p_sparse["e"], p_dense["e"], rtol=1e-14)


@pytest.mark.parametrize("kind", ["sgd", "adam", "rmsprop"])
def test_every_optimizer_lowers_the_loss_and_decay_shrinks_weights(kind):
    V = 20
    cfg = ModelConfig(vocab_size=V, embed=16, hidden=16, layers=1, dropout=0.0)
    rng = np.random.default_rng(5)
    ids, targets = rng.integers(0, V, size=(6, 3)), rng.integers(0, V, size=(6, 3))
    lr = {"sgd": 1.0, "adam": 0.01, "rmsprop": 0.01}[kind]
    params = model.init_params(cfg, np.random.default_rng(0))
    state = optim.init_state(kind, params)
    first = None
    for _ in range(30):
        loss, _, cache, _ = model.forward(params, cfg, ids, targets, model.init_state(cfg, 3))
        first = loss if first is None else first
        grads, _ = model.backward(params, cfg, cache)
        optim.step(kind, params, grads, state, lr)
    assert loss < first - 0.3
    # Weight decay alone (zero loss gradient) pulls weight matrices toward 0 and leaves biases.
    zero = {k: np.zeros_like(v) for k, v in params.items()}
    before = {k: v.copy() for k, v in params.items()}
    optim.add_weight_decay(params, zero, 0.1)
    optim.step("sgd", params, zero, {}, 1.0)
    assert np.allclose(params["layers.0.W_h"], 0.9 * before["layers.0.W_h"])
    assert np.array_equal(params["head.b"], before["head.b"])


@pytest.mark.parametrize("kind", ["sgd", "adam", "rmsprop", "nt-asgd"])
def test_clipping_inside_the_update_equals_clipping_first(kind):
    """step(..., scale=clip_scale(norm)) as the trainer calls it, against clip_global_norm then step."""
    rng = np.random.default_rng(3)
    params = {"w": rng.normal(size=(4, 5)), "b": rng.normal(size=5)}
    grads = {"w": rng.normal(size=(4, 5)) * 3, "b": rng.normal(size=5) * 3}
    norm = optim.global_norm(grads)
    scale = optim.clip_scale(norm, 0.5)
    assert scale == pytest.approx(0.5 / norm)
    assert optim.clip_scale(norm, 100.0) == 1.0 and optim.clip_scale(norm, 0.0) == 1.0
    inside, first = ({k: v.copy() for k, v in params.items()} for _ in range(2))
    s_in, s_first = optim.init_state(kind, inside), optim.init_state(kind, first)
    for _ in range(3):
        g = {k: v.copy() for k, v in grads.items()}
        optim.step(kind, inside, g, s_in, 0.1, optim.clip_scale(optim.global_norm(g), 0.5))
        g = {k: v.copy() for k, v in grads.items()}
        optim.clip_global_norm(g, 0.5)
        optim.step(kind, first, g, s_first, 0.1)
    for k in params:
        assert np.allclose(inside[k], first[k], rtol=1e-12, atol=1e-12), k
        assert not np.allclose(inside[k], params[k])
