"""--reset-state: a stream's carried state is zeroed now and then at a step, so the model learns to
read from the fresh state that generate and eval start from."""

from types import SimpleNamespace

import numpy as np
from gradcheck import numerical_grad, rel_error
from test_gradients import random_params, random_state

from lstmtext import layers, model
from lstmtext.config import ModelConfig, TrainConfig
from lstmtext.trainer import Trainer


def fresh_starts(state: dict, chance: float, seed: int, columns=None) -> dict:
    """Trainer.fresh_starts on a stand-in holding only what it reads."""
    me = SimpleNamespace(rng=np.random.default_rng(seed), cfg=TrainConfig(batch_size=8, reset_state=chance, epochs=1),
                         columns=columns)  # fmt: skip
    return Trainer.fresh_starts(me, state)


def test_the_drawn_streams_start_over_and_the_others_keep_their_state():
    rng = np.random.default_rng(0)
    state = {"layers.0.h": rng.standard_normal((8, 3)), "layers.0.c": rng.standard_normal((8, 3))}
    out = fresh_starts(state, 0.5, seed=4)
    fresh = np.random.default_rng(4).random(8) < 0.5  # the draw the trainer makes
    assert 0 < fresh.sum() < 8
    for k in state:
        assert (out[k][fresh] == 0).all() and np.array_equal(out[k][~fresh], state[k][~fresh])
        assert out[k] is not state[k] and state[k][fresh].any()  # a new array: the caller's state is kept


def test_an_mpi_rank_resets_its_own_columns_of_the_whole_batch_draw():
    rng = np.random.default_rng(1)
    whole = {"layers.0.h": rng.standard_normal((8, 2))}
    one = fresh_starts(whole, 0.4, seed=7)
    for cols in (slice(0, 4), slice(4, 8)):
        mine = fresh_starts({"layers.0.h": whole["layers.0.h"][cols]}, 0.4, seed=7, columns=(8, cols))
        assert np.array_equal(mine["layers.0.h"], one["layers.0.h"][cols])


def test_gradients_through_a_window_from_a_partly_reset_state():
    rng = np.random.default_rng(3)
    cfg = ModelConfig(vocab_size=7, embed=4, hidden=4, layers=2, dropout=0.0)
    params = random_params(cfg, rng)
    state = random_state(cfg, 4, rng)
    state = fresh_starts({k: np.tile(v, (2, 1)) for k, v in state.items()}, 0.5, seed=2)  # (8, H)
    ids, targets = rng.integers(0, 7, size=(3, 8)), rng.integers(0, 7, size=(3, 8))

    def loss():
        return model.forward(params, cfg, ids, targets, state)[0]

    _, _, cache, _ = model.forward(params, cfg, ids, targets, state)
    grads, dstate = model.backward(params, cfg, cache)
    for k in params:
        g = grads[k].dense() if isinstance(grads[k], layers.RowGrad) else grads[k]
        assert rel_error(g, numerical_grad(loss, params[k])) < 1e-6, k
    for k in state:
        assert rel_error(dstate[k], numerical_grad(loss, state[k])) < 1e-6, k
