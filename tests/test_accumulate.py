"""--accumulate K: one optimizer step over K consecutive windows, the state carried between them."""

import numpy as np
import pytest
from test_cli import TINY, app, invoke, make_corpus, runner

from lstmtext import batching, checkpoint, model, optim
from lstmtext.config import ModelConfig, TrainConfig
from lstmtext.layers import RowGrad
from lstmtext.trainer import accumulated_step


@pytest.mark.parametrize("tie", [False, True])
def test_the_step_is_the_token_weighted_mean_of_its_windows(tie):
    cfg = ModelConfig(vocab_size=13, embed=6, hidden=6, layers=2, tie=tie, dropout=0.0)
    tcfg = TrainConfig(batch_size=3, bptt=4, optimizer="sgd", lr=0.5, clip=0.0, dtype="float64", epochs=1)
    rng = np.random.default_rng(0)
    params = model.init_params(cfg, rng, np.float64)
    state = {k: rng.standard_normal(v.shape) for k, v in model.init_state(cfg, 3, np.float64).items()}
    ids = rng.integers(0, 13, size=(8, 3))
    windows = [(ids[0:4], ids[1:5]), (ids[4:6], ids[5:7])]  # 4 and 2 steps: weights 4/6 and 2/6
    # by hand: window 1 from the state, window 2 from where it ended
    loss1, _, cache1, s1 = model.forward(params, cfg, *windows[0], state)
    g1, _ = model.backward(params, cfg, cache1)
    loss2, _, cache2, s2 = model.forward(params, cfg, *windows[1], s1)
    g2, _ = model.backward(params, cfg, cache2)

    def dense(g):
        return g.dense() if isinstance(g, RowGrad) else g

    want = {k: params[k] - 0.5 * (4 / 6 * dense(g1[k]) + 2 / 6 * dense(g2[k])) for k in params}
    got = {k: v.copy() for k, v in params.items()}
    loss, _, new_state, ok = accumulated_step(got, cfg, tcfg, {}, 0.5, windows, state, None)
    assert ok
    assert loss == pytest.approx(4 / 6 * loss1 + 2 / 6 * loss2, rel=1e-14)
    for k in params:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14, err_msg=k)
    for k in s2:
        np.testing.assert_array_equal(new_state[k], s2[k])


def test_add_scaled_merges_embedding_rows():
    a = RowGrad(np.array([1, 4]), np.array([[1.0, 2.0], [3.0, 4.0]]), (6, 2))
    b = RowGrad(np.array([0, 4]), np.array([[5.0, 6.0], [7.0, 8.0]]), (6, 2))
    total = optim.add_scaled(optim.add_scaled(None, {"e": a}, 0.5), {"e": b}, 2.0)
    np.testing.assert_array_equal(total["e"].rows, [0, 1, 4])
    np.testing.assert_array_equal(total["e"].dense(), 0.5 * a.dense() + 2.0 * b.dense())


def test_groups_keep_every_window_once():
    assert [len(g) for g in batching.groups(iter(range(7)), 3)] == [3, 3, 1]
    assert [x for g in batching.groups(iter(range(7)), 3) for x in g] == list(range(7))


def test_train_with_accumulate_counts_steps_and_resumes_exactly(tmp_path):
    corpus = make_corpus(tmp_path / "c.txt", lines=120)
    opts = [*TINY, "--accumulate", "3", "--dtype", "float64", "--epochs", "0", "--log-every", "1",
            "--schedule", "constant"]  # the split run's budget is raised on resume
    r = invoke(["train", corpus, *opts, "--max-steps", "4", "--out", tmp_path / "whole"])
    assert r.exit_code == 0, r.output
    whole = checkpoint.load(tmp_path / "whole" / "last.safetensors")
    assert whole.progress["step"] == 4 and whole.progress["window"] == 12
    B, T = whole.train_cfg.batch_size, whole.train_cfg.bptt
    assert whole.progress["tokens"] == 12 * B * T and whole.train_cfg.accumulate == 3
    assert invoke(["train", corpus, *opts, "--max-steps", "2", "--out", tmp_path / "split"]).exit_code == 0
    r = invoke(["train", corpus, "--resume", tmp_path / "split", "--max-steps", "4"])
    assert r.exit_code == 0, r.output
    split = checkpoint.load(tmp_path / "split" / "last.safetensors")
    for k in whole.params:
        np.testing.assert_array_equal(split.params[k], whole.params[k])
    r = invoke(["train", corpus, *opts, "--accumulate", "0", "--out", tmp_path / "bad"])
    assert r.exit_code == 1 and "--accumulate must be at least 1" in r.output
    r = invoke(["train", corpus, "--resume", tmp_path / "split", "--accumulate", "2", "--max-steps", "5"])
    assert r.exit_code == 1 and "--accumulate 2 (the run has 3)" in r.output  # a resumed run keeps it
    shown = runner.invoke(app, ["info", str(tmp_path / "split")], env={"COLUMNS": "200"}).output
    assert "bptt 5, 3 windows a step," in shown
