"""Export to PyTorch and ONNX: the exported model, loaded without lstmtext, gives lstmtext's logits and
final state on a random sequence from a random state (float32, within 1e-5 relative)."""

import importlib.util
import json

import numpy as np
import pytest
from test_cli import TINY, invoke, make_corpus

from lstmtext import export, model
from lstmtext.cells import get_cell
from lstmtext.config import ModelConfig
from lstmtext.errors import ConfigError
from lstmtext.tokenizer import Tokenizer

V, E, H, T, B = 23, 6, 6, 7, 3
CASES = [(cell, layers, tie) for cell in ("lstm", "gru", "rnn") for layers in (1, 2) for tie in (False, True)]


def build(cell, layers, tie, nonlinearity="tanh", seed=0):
    cfg = ModelConfig(V, embed=E, hidden=H, layers=layers, cell=cell, tie=tie, dropout=0.0, nonlinearity=nonlinearity)
    rng = np.random.default_rng(seed)
    # every parameter random, biases and peepholes too, so a misplaced block or bias cannot hide
    params = {k: (v + rng.uniform(-0.5, 0.5, v.shape)).astype(np.float32)
              for k, v in model.init_params(cfg, rng).items()}
    state = {k: rng.uniform(-0.8, 0.8, v.shape).astype(np.float32) for k, v in model.init_state(cfg, B).items()}
    ids = rng.integers(0, V, (T, B))
    return cfg, params, state, ids


def ours(cfg, params, ids, state):
    """lstmtext's logits (T, B, V) and final state, a step at a time."""
    out = []
    for t in range(len(ids)):
        logits, state = model.step_logits(params, cfg, ids[t], state)
        out.append(logits)
    return np.stack(out), state


def stacked(cfg, state, name):
    return np.stack([state[f"layers.{layer}.{name}"] for layer in range(cfg.layers)])  # (L, B, H)


def close(got, want):
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def load_exported(folder):
    """(torch module, config) through the export's own load_torch.py, as a user without lstmtext would."""
    spec = importlib.util.spec_from_file_location(f"load_torch_{folder.name}", folder / "load_torch.py")
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    return loader.load(folder)


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train("char", "abcdefghijklmnopqrstuv")  # 23 tokens with <unk>


@pytest.mark.parametrize("cell, layers, tie", CASES)
def test_torch_export_loads_without_lstmtext_and_matches(tmp_path, tok, cell, layers, tie):
    torch = pytest.importorskip("torch")
    assert tok.vocab_size == V
    cfg, params, state, ids = build(cell, layers, tie)
    export.to_torch(cfg, params, tok, tmp_path)
    source = (tmp_path / "load_torch.py").read_text()
    assert "lstmtext" not in source.split('"""', 2)[2]  # the code after its docstring
    net, config = load_exported(tmp_path)
    assert config["cell"] == cell and json.loads((tmp_path / "config.json").read_text())["tie"] == tie
    # torch's b_hh adds G·H numbers a layer, all zero but the GRU's n part (our b_hn); a tied weight counts once
    extra = sum(getattr(net.rnn, f"bias_hh_l{layer}").numel() for layer in range(layers)) - layers * H * (cell == "gru")
    assert sum(p.numel() for p in net.parameters()) == sum(v.size for v in params.values()) + extra
    want_logits, want_state = ours(cfg, params, ids, state)
    h0 = torch.from_numpy(stacked(cfg, state, "h"))
    s0 = (h0, torch.from_numpy(stacked(cfg, state, "c"))) if cell == "lstm" else h0
    with torch.no_grad():
        logits, s = net(torch.from_numpy(ids), s0)
    close(logits.numpy(), want_logits)
    for name, got in zip(("h", "c"), s if cell == "lstm" else (s,), strict=False):
        close(got.numpy(), stacked(cfg, want_state, name))
    assert Tokenizer.from_json(tok.to_json()).hf_json() == (tmp_path / "tokenizer.json").read_text()


ONNX_CASES = [*CASES, ("peephole", 2, False), ("cifg", 2, False), ("cifg", 1, True)]


@pytest.mark.parametrize("cell, layers, tie", ONNX_CASES)
def test_onnx_export_runs_in_onnxruntime_and_matches(tmp_path, cell, layers, tie):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    cfg, params, state, ids = build(cell, layers, tie)
    path = export.to_onnx(cfg, params, tmp_path / "model.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    names = get_cell(cell).STATE
    feeds = {"ids": ids.astype(np.int64), **{f"{n}0": stacked(cfg, state, n) for n in names}}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    want_logits, want_state = ours(cfg, params, ids, state)
    close(got["logits"], want_logits)
    for n in names:
        close(got[f"{n}_out"], stacked(cfg, want_state, n))


def test_relu_rnn_exports_its_nonlinearity(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    cfg, params, state, ids = build("rnn", 2, False, nonlinearity="relu")
    path = export.to_onnx(cfg, params, tmp_path / "relu.onnx")
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"ids": ids.astype(np.int64), "h0": stacked(cfg, state, "h")}
    )
    close(out[0], ours(cfg, params, ids, state)[0])


def test_relu_rnn_exports_its_nonlinearity_to_torch(tmp_path, tok):
    torch = pytest.importorskip("torch")
    cfg, params, state, ids = build("rnn", 2, False, nonlinearity="relu")
    export.to_torch(cfg, params, tok, tmp_path)
    net, _ = load_exported(tmp_path)
    assert net.rnn.nonlinearity == "relu"
    with torch.no_grad():
        logits, h = net(torch.from_numpy(ids), torch.from_numpy(stacked(cfg, state, "h")))
    want_logits, want_state = ours(cfg, params, ids, state)
    close(logits.numpy(), want_logits)
    close(h.numpy(), stacked(cfg, want_state, "h"))


@pytest.mark.parametrize(
    "cell, fmt, message",
    [
        ("peephole", "torch", "--format torch has no counterpart for the peephole cell"),
        ("mingru", "onnx", "this model exports as word2vec"),
        ("slstm", "torch", "has no counterpart for the slstm cell"),
    ],
)
def test_cells_without_a_counterpart_say_which_formats_they_have(cell, fmt, message):
    cfg = ModelConfig(V, embed=E, hidden=H, cell=cell, layers=2, dropout=0.2)
    with pytest.raises(ConfigError, match=message):
        export.check(fmt, cfg)
    peephole = ModelConfig(V, cell="peephole", embed=8, hidden=8, layers=1, dropout=0.0)
    assert export.formats_for(peephole) == ["onnx", "word2vec"]
    adaptive = ModelConfig(100, cell="lstm", softmax="adaptive", cutoffs="20", embed=8, hidden=8, layers=1, dropout=0.0)
    with pytest.raises(ConfigError, match="no counterpart for the adaptive softmax head"):
        export.check("torch", adaptive)


def test_export_command(tmp_path):
    pytest.importorskip("onnx")
    corpus = make_corpus(tmp_path / "tiny.txt")
    run = tmp_path / "run"
    assert invoke(["train", corpus, "--out", run, "--max-steps", "4", "--epochs", "0", *TINY]).exit_code == 0
    r = invoke(["export", run, "--format", "torch", "--out", tmp_path / "torch"])
    assert r.exit_code == 0 and "load_torch.py" in r.output, r.output
    assert {p.name for p in (tmp_path / "torch").iterdir()} >= {"model.safetensors", "config.json", "tokenizer.json"}
    r = invoke(["export", run, "--format", "onnx", "--out", tmp_path / "m.onnx"])
    assert r.exit_code == 0 and (tmp_path / "m.onnx").stat().st_size > 0, r.output
    r = invoke(["export", run, "--format", "gif", "--out", tmp_path / "x"])
    assert r.exit_code == 1 and "--format must be one of torch, onnx, word2vec" in r.output
    run2 = tmp_path / "run2"
    args = ["train", corpus, "--out", run2, "--max-steps", "2", "--epochs", "0", "--cell", "mingru", *TINY]
    assert invoke(args).exit_code == 0
    r = invoke(["export", run2, "--format", "torch", "--out", tmp_path / "t2"])
    assert r.exit_code == 1 and "exports as word2vec" in r.output and not (tmp_path / "t2").exists()
