# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The LSTM, gate by gate, with lstmtext's own code
#
# The lecture on recurrent networks in the order it is taught: why a plain RNN forgets, one LSTM step
# worked by hand, the variants, and then real models trained on your laptop to show that the LSTM
# remembers, how far its gradient reaches, what a unit does while it reads, and what its word vectors
# learned. Every number here comes from lstmtext's own functions (the cells' `forward`, `step` and
# `backward`, `lstmtext.train`, `generate`, `inspect`), never from a second implementation, and every
# worked number is checked with an `assert`: change a cell and the notebook tells you.
#
# Open it with `pip install -e '.[notebook]'` and `jupyter lab notebooks/lstm_lecture.py` (JupyterLab
# opens the file as a notebook; `make notebook` also writes and runs `lstm_lecture.ipynb`). It runs top
# to bottom in about two minutes on a laptop CPU. Each section ends with one thing to try.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from rich.console import Console

import lstmtext
from lstmtext import inside, model
from lstmtext.cells import cifg, gru, lstm, rnn
from lstmtext.config import ModelConfig

QUICK = os.environ.get("LSTMTEXT_NOTEBOOK_QUICK") == "1"  # CI's switch: smaller budgets, same checks
WORK = Path(tempfile.mkdtemp(prefix="lstm-lecture-"))  # runs and texts go here
QUIET = Console(quiet=True)  # training prints nothing here; the cells below show what matters
np.set_printoptions(precision=3, suppress=True)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# %% [markdown]
# ## 1. Why not a plain RNN
#
# *"I grew up in India … (a long story) … so I speak fluent ___."* The answer depends on a word read
# long ago. A plain RNN carries everything in one state, `h_t = tanh(x_t W_x + h_{t-1} W_h + b)`, and
# training asks how the loss at the end changes with the state at the start. By the chain rule that is
# a product of one Jacobian per step, `∂h_T/∂h_0 = Π_t ∂h_t/∂h_{t-1}`, each `diag(tanh′) W_hᵀ`. With
# every factor a little below 1 in size, the product shrinks geometrically: the cue is out of reach.
#
# Below, lstmtext's RNN cell reads T steps of input, and its `backward` takes the gradient of `h_T`
# back to `h_0`. The LSTM's cell state has another route back, `c_t = f_t ⊙ c_{t-1} + …`, whose factor
# is the forget gate itself: with `f` near 1 the product hardly shrinks.

# %%
rng = np.random.default_rng(0)
H = D = 16
x = rng.normal(size=(80, 1, D))  # (T, B, D): 80 steps of one stream
p_rnn = {"W_x": rng.normal(scale=0.3, size=(D, H)), "W_h": rng.normal(scale=0.9 / np.sqrt(H), size=(H, H)),
         "b": np.zeros(H)}
p_lstm = {"W_x": rng.normal(scale=0.3, size=(D, 4 * H)), "W_h": rng.normal(scale=0.9 / np.sqrt(H), size=(H, 4 * H)),
          "b": np.zeros(4 * H)}
p_lstm["b"][H : 2 * H] = 3.0  # the forget gate's bias: f ≈ σ(3) ≈ 0.95, the usual "remember by default"


def reach(cell, p, state_name, T):
    """‖∂ sum(h_T) / ∂ state_0‖ after T steps of x, by the cell's own backward pass."""
    state = {name: np.zeros((1, H)) for name in cell.STATE}
    _, cache = cell.forward(p, x[:T], state)
    dh = np.zeros((T, 1, H))
    dh[-1] = 1.0  # the loss reads only the last output
    _, _, dstate = cell.backward(dh, cache)
    return float(np.linalg.norm(dstate[state_name]))


steps = np.arange(1, 81)
g_rnn = [reach(rnn, p_rnn, "h", T) for T in steps]
g_lstm = [reach(lstm, p_lstm, "c", T) for T in steps]
plt.semilogy(steps, g_rnn, label="RNN: ‖∂h_T/∂h_0‖")
plt.semilogy(steps, g_lstm, label="LSTM: ‖∂h_T/∂c_0‖")
plt.xlabel("steps T between the cue and the loss")
plt.ylabel("gradient size")
plt.legend()
plt.title("The product of Jacobians shrinks")
plt.show()
assert g_rnn[59] < 1e-6 * g_rnn[0]  # 60 steps back, the RNN's gradient has all but vanished
assert g_lstm[59] > 100 * g_rnn[59]  # the cell state keeps far more of it

# %% [markdown]
# **Try this:** multiply `p_rnn["W_h"]` by 3 and run the cell again: the same product now explodes,
# the other half of the problem (and the reason training clips the gradient's norm).

# %% [markdown]
# ## 2. One LSTM step by hand
#
# The lecture's numbers, computed by `lstmtext.cells.lstm.step` with weights set so that the gates take
# the values the lecture gives them. First, **combining** `h_{t-1} = [1 2 3]` and `x_t = [2 3 4]`: the
# gates read the two together. Writing them side by side, `[h_{t-1}, x_t] = [1 2 3 2 3 4]`, times one
# stacked weight matrix, is exactly what lstmtext computes as two products, `x_t W_x + h_{t-1} W_h`.

# %%
h_prev, x_t, c_prev = np.array([[1.0, 2, 3]]), np.array([[2.0, 3, 4]]), np.array([[6.0, 8, 9]])
H = 3
W_x, W_h = rng.normal(size=(3, 4 * H)), rng.normal(size=(3, 4 * H))
combined = np.concatenate([h_prev, x_t], axis=1)  # (1, 6)
print("[h_{t-1}, x_t] =", combined[0])
assert np.allclose(combined @ np.vstack([W_h, W_x]), x_t @ W_x + h_prev @ W_h)


def logit(v):
    """The bias that makes σ(b) = v; ±40 stands for 0 and 1 (σ(±40) is 1 to 17 digits)."""
    v = np.asarray(v, dtype=float)
    return np.where(v <= 0, -40.0, np.where(v >= 1, 40.0, np.log(np.clip(v, 1e-12, 1) / np.clip(1 - v, 1e-12, 1))))


def gates(i, f, g, o):
    """LSTM parameters with no weights and the biases that make the gates i, f, g, o exactly."""
    H = len(f)
    b = np.concatenate([logit(i), logit(f), np.arctanh(g), logit(o)])  # lstmtext's order: i | f | g | o
    return {"W_x": np.zeros((3, 4 * H)), "W_h": np.zeros((H, 4 * H)), "b": b}


# %% [markdown]
# **The forget gate** decides how much of the old cell state `c_{t-1} = [6 8 9]` survives: `f ⊙ c_{t-1}`.
# With the input gate shut (`i = 0`) the new cell state is only what is kept.

# %%
for f, expected in (([0, 0, 0], [0, 0, 0]), ([1, 1, 1], [6, 8, 9]), ([0.5, 1, 0.5], [3, 8, 4.5])):
    _, s = lstm.step(gates(i=[0, 0, 0], f=f, g=[0, 0, 0], o=[1, 1, 1]), x_t, {"h": h_prev, "c": c_prev})
    print(f"f = {f}:  c_t = {s['c'][0]}")
    assert np.allclose(s["c"], [expected], atol=1e-9)

# %% [markdown]
# **The input gate and the candidate** write something new: `c_t = f ⊙ c_{t-1} + i ⊙ g`. The candidate
# `g = tanh(…)` proposes values in (−1, 1); the input gate `i` chooses how much of each to add.
# **The output gate** then chooses what the rest of the network sees: `h_t = o ⊙ tanh(c_t)`.

# %%
p = gates(i=[1, 0, 0.5], f=[0.5, 1, 0.5], g=[0.8, -0.6, 0.4], o=[1, 0.5, 0])
h_t, s = lstm.step(p, x_t, {"h": h_prev, "c": c_prev})
print("c_t =", s["c"][0], "  h_t =", h_t[0])
assert np.allclose(s["c"], [[3 + 0.8, 8 + 0, 4.5 + 0.5 * 0.4]], atol=1e-9)  # f ⊙ c + i ⊙ g
assert np.allclose(h_t, [[np.tanh(3.8), 0.5 * np.tanh(8), 0]], atol=1e-9)  # o ⊙ tanh(c_t)

# %% [markdown]
# The lecture's two rules, in one picture: **sigmoid filters** (every gate is a σ, a share between 0
# and 1 of what passes), **tanh writes** (values to add or show lie between −1 and 1, so the state
# cannot be pushed up without bound by any one step).

# %%
z = np.linspace(-6, 6, 200)
plt.plot(z, sigmoid(z), label="σ(z): a gate, 0 … 1 (filters)")
plt.plot(z, np.tanh(z), label="tanh(z): a value, −1 … 1 (writes)")
plt.axhline(0, color="grey", lw=0.5)
plt.legend()
plt.title("Sigmoid filters, tanh writes")
plt.show()

# %% [markdown]
# **Try this:** keep `f = 0.9` and `i = 0` and step 20 times from `c = [6 8 9]`: how much is left
# (0.9²⁰ ≈ 0.12)? Then `f = 0.99`. This is the LSTM's memory: a forget gate near 1.

# %% [markdown]
# ## 3. The variants
#
# - **Peephole connections** (Gers & Schmidhuber 2000): the gates also look at the cell state, `f_t =
#   σ(… + w_f ⊙ c_{t-1})`, so they can time their opening by what the cell holds (`--cell peephole`).
# - **Coupled input and forget gates** (CIFG): one gate does both, `i = 1 − f`: what is forgotten is
#   exactly the room made for the new (`--cell cifg`).
# - **The GRU** (Cho et al. 2014): no separate cell state; a reset gate `r` chooses how much of
#   `h_{t-1}` the candidate reads, and an update gate `z` mixes the old state and the candidate.
#
# Each is a file in `lstmtext/cells/` with its equations at the top. Their sizes, for the same layer:

# %%
E = H = 200
rows = []
for name in ("rnn", "gru", "lstm", "cifg", "peephole"):
    cfg = ModelConfig(vocab_size=1, embed=E, hidden=H, layers=1, dropout=0.0, cell=name)
    n = sum(int(np.prod(s)) for k, s in model.param_shapes(cfg).items() if k.startswith("layers."))
    rows.append((name, n))
    print(f"{name:9s} {n:8,d} parameters per layer (E = H = 200)")
counts = dict(rows)
assert counts["lstm"] == 4 * (E + H + 1) * H and counts["cifg"] == counts["lstm"] * 3 // 4

# %% [markdown]
# CIFG has no input block at all (its gates are f | g | o, three quarters of the LSTM's parameters);
# the coupling is in how it writes. With `f = [0.25 0.5 1]`, the cell writes `1 − f` of the candidate:

# %%
b = np.concatenate([logit([0.25, 0.5, 1]), np.arctanh([0.8, 0.8, 0.8]), logit([1, 1, 1])])  # f | g | o
p = {"W_x": np.zeros((3, 9)), "W_h": np.zeros((3, 9)), "b": b}
_, s = cifg.step(p, x_t, {"h": h_prev, "c": c_prev})
print("CIFG c_t =", s["c"][0])
assert np.allclose(s["c"], [[0.25 * 6 + 0.75 * 0.8, 0.5 * 8 + 0.5 * 0.8, 9]], atol=1e-9)

# %% [markdown]
# **The GRU's reset gate**, the lecture's example: `h_{t-1} = [0.6 0.5 0.3 0.9]` and `r = [0.2 0.4 0.8
# 0.2]` give `r ⊙ h_{t-1} = [0.12 0.20 0.24 0.18]`, the part of the past the candidate reads. In
# lstmtext's GRU (PyTorch's form) the candidate is `n = tanh(x W_xn + b_n + r ⊙ (h_{t-1} W_hn + b_hn))`;
# with `W_hn` the identity and nothing else feeding `n`, `arctanh(n)` is exactly `r ⊙ h_{t-1}`.

# %%
H = 4
h4 = np.array([[0.6, 0.5, 0.3, 0.9]])
r = np.array([0.2, 0.4, 0.8, 0.2])
p = {"W_x": np.zeros((3, 3 * H)), "W_h": np.zeros((H, 3 * H)), "b": np.zeros(3 * H), "b_hn": np.zeros(H)}
p["b"][:H] = np.log(r / (1 - r))  # σ(b_r) = r (lstmtext's order: r | z | n)
p["W_h"][:, 2 * H :] = np.eye(H)  # W_hn = I
_, cache = gru.forward(p, x_t[None], {"h": h4})  # one step of one stream
n = gru.quantities(cache)["n"][0, 0]
print("r ⊙ h_{t-1} =", np.arctanh(n))
assert np.allclose(np.arctanh(n), [0.12, 0.20, 0.24, 0.18])

# %% [markdown]
# **Try this:** set `r` to all ones and all zeros: with `r = 0` the candidate ignores the past
# entirely, as if the sentence started here.

# %% [markdown]
# ## 4. It remembers
#
# Now real training. Each line of the text below is the lecture's sentence: a country, then a story of
# 1–30 filler words, then *"so i speak fluent"* and the language that goes with the country. Nothing
# but that one word, many words back, tells the answer. We train a plain RNN, an LSTM and a GRU of the
# same size with `lstmtext.train` (3,000 steps, under half a minute each), then ask each the question the way a person
# would, with `generate(prompt, length=1, greedy=True)` from a fresh state, at gaps up to 40 words.

# %%
COUNTRIES = {"india": "hindi", "france": "french", "spain": "spanish", "japan": "japanese"}
FILLER = "i grew up in and then we moved to a city by the sea where it rained a lot".split()


def story(rng, country, gap):
    return ["i", "grew", "up", "in", country, *rng.choice(FILLER, gap), "so", "i", "speak", "fluent"]


def write_text(path, lines, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(lines):
        country = list(COUNTRIES)[rng.integers(len(COUNTRIES))]
        out.append(" ".join(story(rng, country, int(rng.integers(1, 31))) + [COUNTRIES[country]]))
    path.write_text("\n".join(out) + "\n")
    return path


train_text = write_text(WORK / "stories.txt", 6000, seed=0)
valid_text = write_text(WORK / "stories-valid.txt", 300, seed=1)
print(train_text.read_text().splitlines()[0])

runs = {}
for cell in ("rnn", "lstm", "gru"):
    runs[cell] = WORK / cell
    lstmtext.train(train_text, valid=valid_text, out=runs[cell], force=True, cell=cell, tokenizer="word",
                   word_split="whitespace", hidden=64, embed=32, layers=1, dropout=0.0, batch_size=16, bptt=64,
                   reset_state=0.2, max_steps=3000, epochs=0, seed=1, console=QUIET)

# %%
GAPS = [5, 10, 20, 30, 40]


def accuracy(run, gap, n=20):
    m, rng, right = lstmtext.load(run), np.random.default_rng(7), 0
    for k in range(n):
        country = list(COUNTRIES)[k % len(COUNTRIES)]
        answer = m.generate(" ".join(story(rng, country, gap)), length=1, greedy=True).split()[-1]
        right += answer == COUNTRIES[country]
    return right / n


acc = {cell: [accuracy(run, g) for g in GAPS] for cell, run in runs.items()}
for (cell, a), style in zip(acc.items(), ("o-", "s-", "^--"), strict=True):
    plt.plot(GAPS, a, style, label=cell, lw=2, ms=8, alpha=0.8)  # the LSTM and GRU lines may lie on each other
plt.axhline(1 / len(COUNTRIES), color="grey", ls=":", label="guessing")
plt.xlabel("filler words between the country and the question")
plt.ylabel("right answers")
plt.legend()
plt.title("Who remembers the country?")
plt.show()
print(acc)
assert min(acc["lstm"]) >= 0.9 and min(acc["gru"]) >= 0.9  # every gap, 40 included (training's longest: 30)
assert acc["rnn"][2] < acc["lstm"][2]  # at gap 20 the RNN has lost the cue

# %% [markdown]
# **Try this:** set the forget bias to −3 (`FORGET_BIAS` in `lstmtext/cells/common.py`, 1 by default)
# and train the LSTM again: a cell that forgets by default has to learn to remember, and needs far more
# steps. Or train for fewer steps (`max_steps=1000`): the LSTM finds the cue suddenly, somewhere between
# 1,000 and 2,000 steps depending on the seed, and before that it only guesses.

# %% [markdown]
# ## 5. The vanishing gradient, measured
#
# Section 1 showed the product of Jacobians with random weights. `lstmtext.inspect(..., gradient=True)`
# measures it in the trained models: how much the prediction at a position depends on the state k
# tokens earlier, `‖∂ log p(x_{t+1}) / ∂ state_{t-k}‖`, averaged over positions of a text.

# %%
probe = WORK / "probe.txt"
probe.write_text(valid_text.read_text())
found = {cell: lstmtext.inspect(runs[cell], probe, gradient=True, max_distance=40, positions=10).gradients[0][2]
         for cell in ("rnn", "lstm")}
for cell, g in found.items():
    for name, norms in g["norm"].items():
        plt.semilogy(g["distance"], norms, label=f"{cell}: {name.split('.')[-1]}")
plt.xlabel("k, tokens back")
plt.ylabel("‖∂ log p / ∂ state k back‖")
plt.legend()
plt.title("How far back the gradient reaches")
plt.show()
assert found["lstm"]["norm"]["layers.0.c"][29] > found["rnn"]["norm"]["layers.0.h"][29]

# %% [markdown]
# **Try this:** `lstmtext inspect RUN TEXT --gradient --vs OTHER_RUN --out curves.png` draws the same
# picture from the command line, for any runs you trained.

# %% [markdown]
# ## 6. Inside the cell
#
# The LSTM answered at every gap, 40 included, so some units must hold the country across the story.
# `inside.read_along` runs the model over a text and keeps every gate and state after each token. Two
# stories that differ only in the country: the unit whose cell state stays most apart between them,
# from the country to the question, is one that carries it.

# %%
m = lstmtext.load(runs["lstm"])
rng = np.random.default_rng(3)
filler = list(rng.choice(FILLER, 15))
texts = {c: ["i", "grew", "up", "in", c, *filler, "so", "i", "speak", "fluent"] for c in ("india", "japan")}
read = {c: inside.read_along(m.checkpoint.params, m.config, m.tokenizer.encode(" ".join(words)))
        for c, words in texts.items()}
c_india, c_japan = read["india"].values["layers.0.c"], read["japan"].values["layers.0.c"]
apart = np.abs(c_india - c_japan)[4:]  # (tokens from the country on, H)
unit = int(np.argmax(apart.min(axis=0)))
words = texts["india"]
fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
axes[0].plot(c_india[:, unit], "o-", label="c (india)")
axes[0].plot(c_japan[:, unit], "o-", label="c (japan)")
axes[0].legend()
axes[0].set_title(f"unit {unit}: its cell state holds the country")
for gate in ("i", "f", "o"):
    axes[1].plot(read["india"].values[f"layers.0.{gate}"][:, unit], label=f"{gate} (india)")
axes[1].legend()
axes[1].set_xticks(range(len(words)), words, rotation=60)
plt.tight_layout()
plt.show()
print(f"unit {unit}: its cell state differs by at least {apart[:, unit].min():.2f} all the way")
assert apart[:, unit].min() > 0.5  # the country is kept all the way through the story

# %% [markdown]
# **Try this:** `lstmtext inspect RUN TEXT --html page.html` writes a page with every unit's
# activations over a text, coloured, and the units that track quotes, brackets or line position.

# %% [markdown]
# ## 7. Words as vectors
#
# The first layer of a word model is a lookup table: each word is a row of `embed.W`, a vector the
# model learns as it trains. Words used alike end up near each other. A word model of the bundled
# Shakespeare (a minute of training here, less in CI), and the nearest neighbours of a few words by
# cosine. After a minute here, *good* sat among *royal, noble, gentle, ancient, young, brave* and *he*
# beside *she, it, they*: words that stand in the same places in a sentence.

# %%
corpus = Path(lstmtext.__file__).resolve().parents[1] / "corpora" / "tinyshakespeare.txt"
words_run = WORK / "words"
# 2,000 lowercased words, and small starting vectors (init uniform): in a minute the table moves far
# from where it started, so what it learned shows.
lstmtext.train(corpus, out=words_run, force=True, tokenizer="word", lowercase=True, vocab_size=2000,
               init="uniform", hidden=256, embed=64, layers=1, max_minutes=0.2 if QUICK else 1.0, seed=1,
               console=QUIET)
wm = lstmtext.load(words_run)
for w in ("king", "good", "he", "love"):
    near = wm.neighbors(w, n=6)
    print(f"{w:6s} →", ", ".join(f"{n} {c:.2f}" for n, c in near))
    assert len(near) == 6 and all(-1 <= c <= 1 for _, c in near) and w not in [n for n, _ in near]

# %% [markdown]
# **Try this:** `wm.analogy("king", "man", "woman")` looks for king − man + woman; with a model
# trained this briefly the answer is rough: train for ten minutes (`max_minutes=10`) and ask again.
