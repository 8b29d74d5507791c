"""PyTorch parity in float64: the same weights copied in, the same outputs, states and gradients.

torch is never a dependency of lstmtext; these tests skip when it is absent (a user's `make test`)
and always run in CI, where .ci/run installs the CPU wheel first.
"""

import numpy as np
import pytest

from lstmtext import model
from lstmtext.config import ModelConfig

torch = pytest.importorskip("torch")

from reference.torch_lm import torch_rnn  # noqa: E402 (needs torch, imported only when present)

TOL = 1e-10
CASES = [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")]


def torch_grad_of(net, cfg: ModelConfig, layer: int, name: str) -> np.ndarray:
    def g(k):
        return getattr(net, f"{k}_l{layer}").grad.numpy()

    H = cfg.hidden
    return {
        "W_x": lambda: g("weight_ih").T,
        "W_h": lambda: g("weight_hh").T,
        "b": lambda: g("bias_ih"),  # bias_hh's gradient equals it for the parts we merged
        "b_hn": lambda: g("bias_hh")[2 * H :],
    }[name]()


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell,nonlinearity", CASES)
def test_matches_pytorch(cell, nonlinearity, layers):
    rng = np.random.default_rng(7)
    V, E, H, T, B = 13, 6, 5, 7, 3
    cfg = ModelConfig(vocab_size=V, embed=E, hidden=H, layers=layers, cell=cell, dropout=0.0, nonlinearity=nonlinearity)
    params = {k: rng.uniform(-0.5, 0.5, size=s) for k, s in model.param_shapes(cfg).items()}
    state = {k: rng.uniform(-0.5, 0.5, size=v.shape) for k, v in model.init_state(cfg, B, np.float64).items()}
    ids, targets = rng.integers(0, V, size=(T, B)), rng.integers(0, V, size=(T, B))

    loss, _, cache, new_state = model.forward(params, cfg, ids, targets, state)
    grads, dstate = model.backward(params, cfg, cache)

    net = torch_rnn(params, cfg)
    emb = torch.tensor(params["embed.W"], requires_grad=True)
    head_W = torch.tensor(params["head.W"], requires_grad=True)
    head_b = torch.tensor(params["head.b"], requires_grad=True)
    h0 = torch.tensor(np.stack([state[f"layers.{k}.h"] for k in range(layers)]), requires_grad=True)
    if cell == "lstm":
        c0 = torch.tensor(np.stack([state[f"layers.{k}.c"] for k in range(layers)]), requires_grad=True)
        out, (hT, cT) = net(emb[torch.from_numpy(ids)], (h0, c0))
    else:
        out, hT = net(emb[torch.from_numpy(ids)], h0)
    logits = out.reshape(T * B, H) @ head_W + head_b
    t_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(targets.reshape(-1)))
    t_loss.backward()

    assert abs(loss - t_loss.item()) < TOL
    top = cache.head.h.reshape(T, B, H)  # the last layer output at every step, as the head saw it
    np.testing.assert_allclose(top, out.detach().numpy(), atol=TOL, rtol=0)
    for k in range(layers):
        np.testing.assert_allclose(new_state[f"layers.{k}.h"], hT[k].detach().numpy(), atol=TOL, rtol=0)
        np.testing.assert_allclose(dstate[f"layers.{k}.h"], h0.grad[k].numpy(), atol=TOL, rtol=0)
        if cell == "lstm":
            np.testing.assert_allclose(new_state[f"layers.{k}.c"], cT[k].detach().numpy(), atol=TOL, rtol=0)
            np.testing.assert_allclose(dstate[f"layers.{k}.c"], c0.grad[k].numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(grads["embed.W"].dense(), emb.grad.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(grads["head.W"], head_W.grad.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(grads["head.b"], head_b.grad.numpy(), atol=TOL, rtol=0)
    for name in grads:
        if name.startswith("layers."):
            _, layer, local = name.split(".")
            np.testing.assert_allclose(
                grads[name], torch_grad_of(net, cfg, int(layer), local), atol=TOL, rtol=0, err_msg=name
            )


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_min_cells_match_a_pytorch_autograd_reference(name):
    import reference.torch_cells as torch_cells

    from lstmtext.cells import common, get_cell

    cell = get_cell(name)
    rng = np.random.default_rng(11)
    T, B, D, H = 9, 3, 5, 4
    p = {k: rng.uniform(-0.8, 0.8, size=s) for k, s in common.param_shapes(cell, D, H).items()}
    x, h0, dh = rng.normal(size=(T, B, D)), rng.uniform(-1, 1, (B, H)), rng.normal(size=(T, B, H))
    h, cache = cell.forward(p, x, {"h": h0})
    dx, grads, dstate = cell.backward(dh, cache)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in {**p, "x": x, "h0": h0}.items()}
    th, th_last = getattr(torch_cells, name)(t["W_x"], t["b"], t["x"], t["h0"])
    (th * torch.tensor(dh)).sum().backward()
    np.testing.assert_allclose(h, th.detach().numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(cell.final_state(cache)["h"], th_last.detach().numpy(), rtol=0, atol=TOL)
    for ours, theirs in ((dx, "x"), (grads["W_x"], "W_x"), (grads["b"], "b"), (dstate["h"], "h0")):
        np.testing.assert_allclose(ours, t[theirs].grad.numpy(), rtol=0, atol=TOL, err_msg=theirs)
    assert set(grads) == {"W_x", "b"}  # no W_h: the gates see x_t only


def test_linear_scan_is_the_recurrence_across_windows():
    """The scan over a window, carried into the next, is the step-by-step recurrence (float64)."""
    from lstmtext.cells.linear_scan import linear_scan

    rng = np.random.default_rng(5)
    a, b, h0 = rng.uniform(0, 1, (12, 2, 3)), rng.normal(size=(12, 2, 3)), rng.normal(size=(2, 3))
    h = [h0]
    for t in range(12):
        h.append(a[t] * h[-1] + b[t])
    first = linear_scan(a[:5], b[:5], h0)
    second = linear_scan(a[5:], b[5:], first[-1])
    np.testing.assert_allclose(np.concatenate([first, second[1:]]), np.array(h), rtol=0, atol=1e-12)


@pytest.mark.parametrize("heads", [1, 2])
def test_slstm_matches_a_pytorch_autograd_reference(heads):
    """Outputs, final states and every gradient, the initial states' included: torch differentiates
    through the stabiliser m, lstmtext holds it constant and gives m_0 its exact gradient."""
    import reference.torch_cells as torch_cells

    from lstmtext.cells import common, slstm

    rng = np.random.default_rng(12)
    T, B, D, H = 8, 3, 5, 4
    p = {k: rng.uniform(-0.8, 0.8, size=s) for k, s in common.param_shapes(slstm, D, H).items()}
    x, dh = rng.normal(size=(T, B, D)), rng.normal(size=(T, B, H))
    state = {"h": rng.uniform(-1, 1, (B, H)), "c": rng.uniform(-1, 1, (B, H)), "n": rng.uniform(0.5, 2, (B, H)),
             "m": rng.uniform(-1, 1, (B, H))}
    h, cache = slstm.forward(p, x, state, heads=heads)
    dx, grads, dstate = slstm.backward(dh, cache)
    mask = slstm.head_mask(H, heads, np.float64)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in {**p, "x": x, **state}.items()}
    W_h = t["W_h"] * torch.tensor(mask)  # the heads' block-diagonal W_h
    th, final = torch_cells.slstm(t["W_x"], W_h, t["b"], t["x"], t["h"], t["c"], t["n"], t["m"])
    (th * torch.tensor(dh)).sum().backward()
    np.testing.assert_allclose(h, th.detach().numpy(), rtol=0, atol=TOL)
    for k, v in zip(("h", "c", "n", "m"), final, strict=True):
        np.testing.assert_allclose(slstm.final_state(cache)[k], v.detach().numpy(), rtol=0, atol=TOL, err_msg=k)
    ours = {"x": dx, **grads, **dstate}
    for k in ("x", "W_x", "W_h", "b", "h", "c", "n", "m"):
        np.testing.assert_allclose(ours[k], t[k].grad.numpy(), rtol=0, atol=TOL, err_msg=k)
