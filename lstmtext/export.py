"""A trained model in the formats other tools load.

    torch     DIR/model.safetensors under the state_dict names of PyTorch's word_language_model example
              (encoder = nn.Embedding, rnn = nn.LSTM / nn.GRU / nn.RNN, decoder = nn.Linear),
              DIR/config.json, DIR/tokenizer.json (a HuggingFace `tokenizers` file) and DIR/load_torch.py,
              which builds the model and loads it with torch and safetensors alone.
    onnx      one graph with ONNX's own LSTM / GRU / RNN operators: inputs the token ids (T, B) and the
              carried state (L, B, H); outputs the logits (T, B, V) and the new state.
    word2vec  the input embedding as a word2vec text file (lstmtext.vectors).

Weights only change layout on the way out. Ours are row-vector (x W, W of shape (D, G·H)); torch and
ONNX store W transposed, (G·H, D). We keep one bias per gate where torch keeps two (b_ih + b_hh): ours
goes to b_ih and b_hh is zero, except the GRU's n-gate part of b_hh, which is our b_hn (it sits inside
r ⊙ (h W_hn + b_hn) and has no other place). So nothing is counted twice.
"""

import json
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import save_file

from lstmtext import files, vectors
from lstmtext.cells import get_cell
from lstmtext.config import ModelConfig
from lstmtext.errors import ConfigError

# format -> the cells it can express
SUPPORTED = {
    "torch": ("lstm", "gru", "rnn"),
    "onnx": ("lstm", "gru", "rnn", "peephole", "cifg"),  # ONNX's LSTM has peepholes and input_forget
    "word2vec": None,  # any model: only the embedding is written
}
FORMATS = tuple(SUPPORTED)
ONNX_OPSET = 17


def formats_for(cfg: ModelConfig) -> list[str]:
    return [f for f, cells in SUPPORTED.items() if cells is None or (cfg.cell in cells and cfg.softmax == "full")]


def check(fmt: str, cfg: ModelConfig) -> None:
    """One line if the model cannot be written in fmt, naming the formats it can."""
    if fmt not in SUPPORTED:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt in formats_for(cfg):
        return
    what = "the adaptive softmax head" if cfg.softmax == "adaptive" else f"the {cfg.cell} cell"
    has = {"torch": "nn.LSTM, nn.GRU and nn.RNN", "onnx": "LSTM (with peepholes and coupled gates), GRU and RNN"}
    raise ConfigError(
        f"--format {fmt} has no counterpart for {what} ({fmt} has {has[fmt]}); this model exports as "
        + " or ".join(formats_for(cfg))
    )


def _layer(params: dict, layer: int) -> dict:
    prefix = f"layers.{layer}."
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def _recurrent_bias(cell: str, p: dict) -> np.ndarray:
    """torch's b_hh / ONNX's Rb for one layer, in our block order: zero but the GRU's n block (b_hn)."""
    b_hh = np.zeros_like(p["b"])  # (G·H,)
    if cell == "gru":
        H = p["b_hn"].shape[0]
        b_hh[2 * H :] = p["b_hn"]  # our GRU blocks are r|z|n
    return b_hh


def _torch_state(cfg: ModelConfig, params: dict) -> dict:
    """-> {state_dict name: array} in torch's layouts (see the module docstring)."""
    out = {"encoder.weight": params["embed.W"]}  # (V, E)
    for layer in range(cfg.layers):
        p = _layer(params, layer)
        out[f"rnn.weight_ih_l{layer}"] = p["W_x"].T  # (G·H, D)
        out[f"rnn.weight_hh_l{layer}"] = p["W_h"].T  # (G·H, H)
        out[f"rnn.bias_ih_l{layer}"] = p["b"]  # (G·H,)
        out[f"rnn.bias_hh_l{layer}"] = _recurrent_bias(cfg.cell, p)
    if not cfg.tie:  # tied: load_torch.py points decoder.weight at encoder.weight, as the example does
        out["decoder.weight"] = params["head.W"].T  # (V, H)
    out["decoder.bias"] = params["head.b"]  # (V,)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def to_torch(cfg: ModelConfig, params: dict, tok, out: Path) -> list[Path]:
    check("torch", cfg)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {out}: {e.strerror or e}") from None
    config = {
        "format": "lstmtext-torch-export",
        "version": 1,
        "cell": cfg.cell,
        "nonlinearity": cfg.nonlinearity,
        "vocab_size": cfg.vocab_size,
        "embed": cfg.embed,
        "hidden": cfg.hidden,
        "layers": cfg.layers,
        "tie": cfg.tie,
        "tokenizer": tok.kind,
        "lowercase": tok.lowercase,
    }
    paths = [out / n for n in ("model.safetensors", "config.json", "tokenizer.json", "load_torch.py")]
    try:  # all four are renamed into place once all four are written
        with ExitStack() as stack:
            tmp = [stack.enter_context(files.replaced_when_whole(p)) for p in paths]
            save_file(_torch_state(cfg, params), str(tmp[0]), metadata={"format": "pt"})
            tmp[1].write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            tmp[2].write_text(tok.hf_json(), encoding="utf-8")
            tmp[3].write_text(LOAD_TORCH, encoding="utf-8")
    except (OSError, SafetensorError) as e:
        raise ConfigError(f"cannot write to {out}: {getattr(e, 'strerror', None) or e}") from None
    return paths


LOAD_TORCH = '''"""Load a model exported by `lstmtext export --format torch`, with torch and safetensors alone.

    python load_torch.py [DIR]        # builds the model, loads it, and scores a few random tokens

In your code:  model, config = load("DIR");  logits, state = model(ids, state)
    ids (T, B) int64 token ids; state None (zeros) or what the last call returned;
    logits (T, B, V). tokenizer.json is a HuggingFace `tokenizers` file for the ids; in a word model
    "<eos>" stands for a line end and "<unk>" for a word outside the vocabulary.
The module names (encoder, rnn, decoder) are those of PyTorch's word_language_model example.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn


class RNNModel(nn.Module):
    def __init__(self, cell, vocab_size, embed, hidden, layers, tie=False, nonlinearity="tanh"):
        super().__init__()
        self.encoder = nn.Embedding(vocab_size, embed)
        if cell == "lstm":
            self.rnn = nn.LSTM(embed, hidden, layers)
        elif cell == "gru":
            self.rnn = nn.GRU(embed, hidden, layers)
        else:
            self.rnn = nn.RNN(embed, hidden, layers, nonlinearity=nonlinearity)
        self.decoder = nn.Linear(hidden, vocab_size)
        if tie:
            self.decoder.weight = self.encoder.weight

    def forward(self, ids, state=None):
        out, state = self.rnn(self.encoder(ids), state)  # (T, B, H)
        return self.decoder(out), state  # (T, B, V)


def load(directory="."):
    d = Path(directory)
    config = json.loads((d / "config.json").read_text(encoding="utf-8"))
    keys = ("cell", "vocab_size", "embed", "hidden", "layers", "tie", "nonlinearity")
    model = RNNModel(**{k: config[k] for k in keys})
    state = load_file(str(d / "model.safetensors"))
    if config["tie"]:
        state["decoder.weight"] = state["encoder.weight"]
    model.load_state_dict(state)
    return model.eval(), config


if __name__ == "__main__":
    model, config = load(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
    print(model)
    ids = torch.randint(config["vocab_size"], (20, 1))
    with torch.no_grad():
        logits, _ = model(ids)
    nll = nn.functional.cross_entropy(logits[:-1].reshape(-1, config["vocab_size"]), ids[1:].reshape(-1))
    uniform = torch.log(torch.tensor(float(config["vocab_size"])))
    print(f"loss on 20 random tokens: {nll.item():.3f} nats (a uniform guess: {uniform:.3f})")
'''


# -- ONNX -------------------------------------------------------------------------------------------

# Our gate blocks -> ONNX's order. ONNX's LSTM is i|o|f|c (c: our g), its GRU z|r|h (h: our n).
# Our own order is each cell's declaration (cells/*.py BLOCKS).
ONNX_ORDER = {"lstm": "iofg", "peephole": "iofg", "cifg": "iofg", "gru": "zrn", "rnn": "h"}


def _onnx_blocks(cell: str, a: np.ndarray, H: int) -> np.ndarray:
    """a (..., G·H) in our block order -> (..., G'·H) in ONNX's.

    CIFG has no i block: ONNX's input_forget=1 couples the two gates, and the spec does not say which
    of them it computes from which. So i gets the f block negated, σ(−a_f) = 1 − σ(a_f): the gates
    are coupled correctly whichever block the runtime reads."""
    ours = get_cell(cell).BLOCKS

    def block(g):
        if g == "i" and cell == "cifg":
            return -block("f")
        k = ours.index(g)
        return a[..., k * H : (k + 1) * H]

    return np.concatenate([block(g) for g in ONNX_ORDER[cell]], axis=-1)


def to_onnx(cfg: ModelConfig, params: dict, out: Path) -> Path:
    check("onnx", cfg)
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ConfigError("lstmtext export --format onnx needs onnx: pip install 'lstmtext[onnx]'") from None
    H, L, cell = cfg.hidden, cfg.layers, cfg.cell
    cell_state = "c" in get_cell(cell).STATE
    op = {"gru": "GRU", "rnn": "RNN"}.get(cell, "LSTM")
    inits, nodes = [], []

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=dtype), name))
        return name

    const("embed", params["embed.W"])  # (V, E)
    nodes.append(helper.make_node("Gather", ["embed", "ids"], ["x0"]))  # (T, B, E)
    const("squeeze_axes", [1], np.int64)
    x, finals = "x0", {"h": [], "c": []}
    for layer in range(L):
        p = _layer(params, layer)
        W = _onnx_blocks(cell, p["W_x"], H).T[None]  # (1, G·H, D)
        R = _onnx_blocks(cell, p["W_h"], H).T[None]  # (1, G·H, H)
        b_rec = _recurrent_bias(cell, p)  # (G·H,)
        B = np.concatenate([_onnx_blocks(cell, p["b"], H), _onnx_blocks(cell, b_rec, H)])[None]  # (1, 2·G·H)
        names = [x, const(f"W{layer}", W), const(f"R{layer}", R), const(f"B{layer}", B), ""]  # "": no lengths
        const(f"l{layer}", [layer], np.int64)
        nodes.append(helper.make_node("Gather", ["h0", f"l{layer}"], [f"h0_{layer}"]))  # (1, B, H)
        names.append(f"h0_{layer}")
        outputs = [f"y{layer}", f"h_last{layer}"]
        if cell_state:
            nodes.append(helper.make_node("Gather", ["c0", f"l{layer}"], [f"c0_{layer}"]))
            names.append(f"c0_{layer}")
            outputs.append(f"c_last{layer}")
            if cell == "peephole":  # ONNX's P is i|o|f
                names.append(const(f"P{layer}", np.concatenate([p["p_i"], p["p_o"], p["p_f"]])[None]))
        attrs = {"hidden_size": H}
        if cell == "gru":
            attrs["linear_before_reset"] = 1  # PyTorch's GRU: r multiplies (h W_hn + b_hn)
        if cell == "rnn":
            attrs["activations"] = ["Relu" if cfg.nonlinearity == "relu" else "Tanh"]
        if cell == "cifg":
            attrs["input_forget"] = 1
        nodes.append(helper.make_node(op, names, outputs, **attrs))  # y: (T, 1, B, H)
        nodes.append(helper.make_node("Squeeze", [f"y{layer}", "squeeze_axes"], [f"x{layer + 1}"]))  # (T, B, H)
        x = f"x{layer + 1}"
        finals["h"].append(f"h_last{layer}")
        if cell_state:
            finals["c"].append(f"c_last{layer}")
    if cfg.tie:
        nodes.append(helper.make_node("Transpose", ["embed"], ["head_W"], perm=[1, 0]))  # (E=H, V)
    else:
        const("head_W", params["head.W"])  # (H, V)
    const("head_b", params["head.b"])  # (V,)
    nodes.append(helper.make_node("MatMul", [x, "head_W"], ["z"]))  # (T, B, V)
    nodes.append(helper.make_node("Add", ["z", "head_b"], ["logits"]))
    state_names = ["h", "c"] if cell_state else ["h"]
    for s in state_names:
        nodes.append(helper.make_node("Concat", finals[s], [f"{s}_out"], axis=0))  # (L, B, H)
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, ["T", "B"])]
    inputs += [helper.make_tensor_value_info(f"{s}0", f32, [L, "B", H]) for s in state_names]
    outputs = [helper.make_tensor_value_info("logits", f32, ["T", "B", cfg.vocab_size])]
    outputs += [helper.make_tensor_value_info(f"{s}_out", f32, [L, "B", H]) for s in state_names]
    graph = helper.make_graph(nodes, f"lstmtext_{cell}", inputs, outputs, inits)
    # IR version 8 goes with opset 17; the installed onnx would stamp its newest, which older
    # runtimes (onnxruntime before 1.18) refuse to open.
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="lstmtext", ir_version=8
    )
    onnx.checker.check_model(model)
    try:
        with files.replaced_when_whole(out) as tmp:
            onnx.save(model, str(tmp))
    except OSError as e:
        raise ConfigError(f"cannot write {out}: {e.strerror or e}") from None
    return out


def to_word2vec(params: dict, tok, out: Path) -> tuple[int, list[str]]:
    return vectors.write_word2vec(out, vectors.token_words(tok), params["embed.W"])
