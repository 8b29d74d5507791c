"""The adaptive softmax head (lstmtext.adaptive): its gradients against central differences and its
loss, gradients and full distribution against PyTorch's nn.AdaptiveLogSoftmaxWithLoss, float64."""

import numpy as np
import pytest
from gradcheck import numerical_grad, rel_error

from lstmtext import adaptive
from lstmtext.errors import ConfigError

H, V, CUTOFFS = 8, 30, [6, 14]  # a shortlist of 6 words and two clusters, 8 and 16 words wide


def setup(seed=0, N=40):
    rng = np.random.default_rng(seed)
    shapes = adaptive.param_shapes(H, CUTOFFS, V, div_value=2.0)
    params = {k: rng.uniform(-0.5, 0.5, size=s) for k, s in shapes.items()}
    z = rng.normal(size=(N, H))
    targets = rng.integers(0, V, N)
    targets[:3] = [0, 10, 29]  # every part of the vocabulary is hit
    return params, z, targets, adaptive.check_cutoffs(CUTOFFS, V)


def test_shapes_and_cutoff_errors():
    shapes = adaptive.param_shapes(H, CUTOFFS, V, div_value=2.0)
    assert shapes == {"head.W": (8, 8), "head.b": (8,), "head.tail.1.P": (8, 4), "head.tail.1.O": (4, 8),
                      "head.tail.2.P": (8, 2), "head.tail.2.O": (2, 16)}
    for bad, message in (([14, 6], "increase"), ([0, 5], "positive"), ([6, 30], "below the vocabulary size, 30")):
        with pytest.raises(ConfigError, match=message):
            adaptive.check_cutoffs(bad, V)


def test_cutoffs_left_out_are_a_fifth_and_a_half_of_the_vocabulary(tmp_path):
    from test_cli import TINY, invoke, make_corpus

    from lstmtext.config import ModelConfig

    def cutoffs(vocab):
        return ModelConfig(vocab_size=vocab, embed=4, hidden=4, layers=1, dropout=0.0, softmax="adaptive").cutoffs

    assert cutoffs(10_000) == "2000,5000" and cutoffs(2_950) == "590,1475" and cutoffs(3) == "1,2"
    assert cutoffs(2) == "1"
    assert cutoffs(1) == ""  # before tokenization: chosen once the vocabulary is known
    corpus = make_corpus(tmp_path / "c.txt")
    r = invoke(["train", corpus, *TINY, "--softmax", "adaptive", "--max-steps", "3", "--epochs", "0", "--out",
                tmp_path / "run"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "Adaptive softmax (--cutoffs not given): clusters from" in r.output


def test_gradients_match_central_differences():
    params, z, targets, edges = setup()
    mask = (np.arange(len(targets)) % 5 != 0).astype(float)  # some rows do not count
    _, _, cache = adaptive.forward(params, z, targets, edges, mask)
    dz, grads = adaptive.backward(params, cache)

    def loss():
        return adaptive.forward(params, z, targets, edges, mask)[0]

    assert rel_error(dz, numerical_grad(loss, z)) < 1e-6
    for name, value in params.items():
        assert rel_error(grads[name], numerical_grad(loss, value)) < 1e-6, name


def test_full_distribution_sums_to_one_and_agrees_with_the_loss():
    params, z, targets, edges = setup()
    lp = adaptive.log_probs(params, z, edges)  # (N, V)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-12)
    _, nll, _ = adaptive.forward(params, z, targets, edges)
    np.testing.assert_allclose(nll, -lp[np.arange(len(targets)), targets], rtol=1e-12)


def test_matches_pytorch_adaptive_log_softmax():
    torch = pytest.importorskip("torch")
    params, z, targets, edges = setup(seed=3)
    ref = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, CUTOFFS, div_value=2.0, head_bias=True).double()
    with torch.no_grad():
        ref.head.weight.copy_(torch.tensor(params["head.W"].T))
        ref.head.bias.copy_(torch.tensor(params["head.b"]))
        for k in (1, 2):
            ref.tail[k - 1][0].weight.copy_(torch.tensor(params[f"head.tail.{k}.P"].T))
            ref.tail[k - 1][1].weight.copy_(torch.tensor(params[f"head.tail.{k}.O"].T))
    tz = torch.tensor(z, requires_grad=True)
    out = ref(tz, torch.tensor(targets))
    out.loss.backward()
    loss, nll, cache = adaptive.forward(params, z, targets, edges)
    dz, grads = adaptive.backward(params, cache)
    assert abs(loss - out.loss.item()) < 1e-10
    np.testing.assert_allclose(-nll, out.output.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(grads["head.W"], ref.head.weight.grad.numpy().T, rtol=0, atol=1e-10)
    np.testing.assert_allclose(grads["head.b"], ref.head.bias.grad.numpy(), rtol=0, atol=1e-10)
    for k in (1, 2):
        np.testing.assert_allclose(grads[f"head.tail.{k}.P"], ref.tail[k - 1][0].weight.grad.numpy().T, atol=1e-10)
        np.testing.assert_allclose(grads[f"head.tail.{k}.O"], ref.tail[k - 1][1].weight.grad.numpy().T, atol=1e-10)
    full = ref.log_prob(torch.tensor(z)).detach().numpy()
    np.testing.assert_allclose(adaptive.log_probs(params, z, edges), full, rtol=0, atol=1e-10)


def test_masked_rows_cost_nothing_and_count_for_nothing():
    params, z, targets, edges = setup(seed=2)
    mask = (np.arange(len(targets)) % 3 != 0).astype(float)
    loss, nll, cache = adaptive.forward(params, z, targets, edges, mask)
    kept = mask.astype(bool)
    loss_kept, nll_kept, _ = adaptive.forward(params, z[kept], targets[kept], edges)
    assert loss == pytest.approx(loss_kept, rel=1e-12)
    np.testing.assert_allclose(nll[kept], nll_kept, rtol=1e-12)
    assert not nll[~kept].any()
    for cluster in cache.clusters:  # no tail is evaluated for a row that does not count
        assert cluster is None or kept[cluster.rows].all()


def test_torch_init_draws_each_head_layer_by_its_own_fan_in():
    from lstmtext import model
    from lstmtext.config import ModelConfig

    cfg = ModelConfig(vocab_size=400, embed=8, hidden=64, layers=2, dropout=0.2, softmax="adaptive", cutoffs="50,200",
                      init="torch")
    params = model.init_params(cfg, np.random.default_rng(0), np.float64)
    for name in ("head.W", "head.b", "head.tail.1.P", "head.tail.1.O", "head.tail.2.O"):
        fan_in = params[name].shape[0] if params[name].ndim == 2 else 64
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(params[name]).max() <= bound and np.abs(params[name]).max() > 0.8 * bound, name


def test_model_with_the_adaptive_head_gradients_and_generation():
    from lstmtext import layers, model
    from lstmtext.config import ModelConfig

    rng = np.random.default_rng(4)
    cfg = ModelConfig(vocab_size=12, embed=4, hidden=4, layers=2, dropout=0.0, softmax="adaptive", cutoffs="4,8")
    params = {k: rng.uniform(-0.5, 0.5, size=s) for k, s in model.param_shapes(cfg).items()}
    assert "head.tail.2.O" in params and params["head.W"].shape == (4, 6)
    state = {k: rng.uniform(-0.5, 0.5, size=v.shape) for k, v in model.init_state(cfg, 2, np.float64).items()}
    ids, targets = rng.integers(0, 12, size=(3, 2)), np.array([[0, 5], [9, 11], [3, 7]])  # every part of V

    def loss():
        return model.forward(params, cfg, ids, targets, state)[0]

    _, nll, cache, _ = model.forward(params, cfg, ids, targets, state)
    grads, dstate = model.backward(params, cfg, cache)
    assert set(grads) == set(params)
    for k in params:
        g = grads[k].dense() if isinstance(grads[k], layers.RowGrad) else grads[k]
        assert rel_error(g, numerical_grad(loss, params[k])) < 1e-6, k
    for k in state:
        assert rel_error(dstate[k], numerical_grad(loss, state[k])) < 1e-6, k
    # Generation scores the whole vocabulary: the step's log p agrees with the window's nll.
    logits, _ = model.step_logits(params, cfg, ids[0], state)
    np.testing.assert_allclose(np.exp(logits).sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(-logits[np.arange(2), targets[0]], nll[0], rtol=1e-10)


def test_adaptive_through_the_command_line(tmp_path):
    from test_cli import TINY, invoke, make_corpus

    corpus = make_corpus(tmp_path / "c.txt")
    run = tmp_path / "run"
    r = invoke(["train", corpus, "--out", run, *TINY, "--softmax", "adaptive", "--cutoffs", "4,8", "--max-steps", "6",
                "--epochs", "0"])
    assert r.exit_code == 0, r.output
    assert invoke(["generate", run, "--length", "5", "--seed", "1"]).exit_code == 0
    r = invoke(["eval", run, corpus, "--json"])
    assert r.exit_code == 0 and '"perplexity"' in r.stdout
    for args, message in ((["--cutoffs", "4,400"], "below the vocabulary size"),
                          (["--cutoffs", "8,4"], "increasing --cutoffs"),
                          (["--cutoffs", "4", "--tie", "--embed", "8"], "--tie shares the full head")):
        r = invoke(["train", corpus, "--out", tmp_path / "bad", "--force", *TINY, "--softmax", "adaptive", *args,
                    "--max-steps", "2", "--epochs", "0"])
        assert r.exit_code == 1 and message in r.stderr and "Traceback" not in r.output, r.output
