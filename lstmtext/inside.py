"""Looking inside a trained model (`lstmtext inspect`): what its units do on a text, how saturated
its gates are, and how far back its gradient reaches.

Reading a text. One stream runs over the text from a zero state, in windows with the state carried
across them (as `eval` reads), and every window keeps what the cells expose through
`quantities(cache)`: for each layer the hidden state h, the cell state c where there is one, and each
gate. Nothing is computed a second way: these are the arrays of the model's own forward pass.

Units that mean something (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and Understanding
Recurrent Networks"). A feature of the text is a number per token: 1 inside quotes, the position in
the line, ... For each feature, the units whose value after reading a token correlates best (Pearson
r over the tokens) with the feature's value at that token.

Gate saturation (their Figure 4). For every σ gate of every layer, the fraction of tokens where a unit
sits below 0.1 (left-saturated) and above 0.9 (right-saturated).

The vanishing gradient, measured. For a position t of the text and a distance k, how much does the
log-probability the model gives the next token, log p(x_{t+1} | x_{≤t}), depend on the state k steps
back? The norm

    g_l(k) = ‖∂ log p(x_{t+1} | x_{≤t}) / ∂h^l_{t−k}‖        (and ∂/∂c^l_{t−k} for the LSTM family)

averaged over positions, per layer l. It comes from the model's own backward pass: a window of the
k tokens x_{t−k+1..t}, started from the state the model had after reading x_{≤t−k}, with the loss
counted at its last position only; the gradient of that window's initial state is ∂/∂(state_{t−k}).
A simple RNN's g(k) falls geometrically with k; a gated cell's can stay up.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmtext import model
from lstmtext.cells import get_cell
from lstmtext.config import ModelConfig, opt
from lstmtext.errors import ConfigError, CorpusError
from lstmtext.tokenizer import Tokenizer


@dataclass(frozen=True)
class InspectOptions:
    """What `lstmtext inspect` (and `lstmtext.inspect`) does; the rules between its options live here."""

    html: Path | None = opt(
        None, help="Write one self-contained HTML page: units, saturation, surprise, gradient.", metavar="PAGE"
    )
    units: bool = opt(False, help="Print the units that track features of the text.")
    gradient: bool = opt(False, help="Measure ‖∂ log p(next token) / ∂ state k steps back‖ by k.")
    feature: list[str] | None = opt(
        None,
        help="Another feature to find units for, NAME=REGEX (1 on tokens inside a match); repeatable. "
        "Built in: quotes, brackets, line position, word start, line end.",
        show_default=False,
        metavar="NAME=REGEX",
    )
    max_tokens: int = opt(2000, help="--html/--units: read only the first N tokens of TEXT.")
    pictures: Path | None = opt(None, help="--html: also save its pictures as PNG files in this folder.")
    max_distance: int = opt(100, help="--gradient and --html: the largest k.")
    positions: int = opt(20, help="--gradient and --html: positions of the text averaged over.")
    vs: list[Path] | None = opt(
        None, help="--gradient: also measure this run on TEXT, for comparison; repeatable.", metavar="RUN"
    )
    out: Path | None = opt(None, help="--gradient: also draw the curves into this .png or .svg.")
    encoding_errors: str = opt("strict", help="strict or replace.")

    def __post_init__(self) -> None:
        for name in ("html", "pictures", "out"):  # the API takes strings for paths
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, Path(getattr(self, name)))
        if not (self.html or self.units or self.gradient):
            raise ConfigError("say what to inspect: --html PAGE.html, --units or --gradient")
        if self.max_distance < 1 or self.positions < 1 or self.max_tokens < 2:
            raise ConfigError("--max-distance and --positions must be at least 1, --max-tokens at least 2")
        if (self.vs or self.out) and not self.gradient:
            raise ConfigError("--vs and --out belong to --gradient")
        if self.pictures is not None and self.html is None:
            raise ConfigError("--pictures saves the pictures of --html; add --html PAGE.html")
        if self.feature and not (self.html or self.units):
            raise ConfigError("--feature belongs to --html and --units")
        if self.html is not None and self.html.suffix.lower() not in (".html", ".htm"):
            raise ConfigError(f"--html must end in .html, got {self.html.name}")
        self.features()  # each NAME=REGEX parses

    def features(self) -> dict[str, re.Pattern]:
        return dict(parse_feature(f) for f in self.feature or [])


def states_along(params: dict, cfg: ModelConfig, ids: np.ndarray, wanted: set[int]) -> dict[int, dict]:
    """-> {j: the state after reading ids[0..j]} for each j in wanted (one stream, from zero)."""
    state = model.init_state(cfg, 1, params["embed.W"].dtype)
    out = {}
    for j in range(max(wanted) + 1):
        _, state = model.step_logits(params, cfg, ids[j : j + 1], state)
        if j in wanted:
            out[j] = state
    return out


def gradient_norms(
    params: dict, cfg: ModelConfig, ids: np.ndarray, max_distance: int = 100, positions: int = 20, tuner=None
):
    """ids (N,) -> {"distance": [1..K], "positions": P, "at": the P positions t, "norm": {state name:
    [K]}} with state names like "layers.0.h": the mean over the positions of ‖∂ log p(x_{t+1}) / ∂
    state_{t-k}‖, for k = 1..K. tuner: a threads.ThreadTuner timing each distance's pass (None: none)."""
    K = max_distance
    if len(ids) < K + 2:
        raise CorpusError(f"the text has {len(ids)} tokens; --max-distance {K} needs at least {K + 2}")
    last = len(ids) - 2  # the last t with a next token
    ts = np.unique(np.linspace(K, last, positions).round().astype(int))  # (P,) positions t
    states = states_along(params, cfg, ids, {int(t) - k for t in ts for k in range(1, K + 1)})
    names = list(states[int(ts[0]) - 1])
    norm = {name: [] for name in names}
    P = len(ts)
    for k in range(1, K + 1):
        x = np.stack([ids[t - k + 1 : t + 1] for t in ts], axis=1)  # (k, P) the window's inputs
        y = np.stack([ids[t - k + 2 : t + 2] for t in ts], axis=1)  # (k, P) its targets
        mask = np.zeros((k, P))
        mask[-1] = 1.0  # only the prediction of x_{t+1} counts
        start = {name: np.concatenate([states[t - k][name] for t in ts]) for name in names}  # (P, H) each
        if tuner is not None:
            tuner.begin()
        _, _, cache, _ = model.forward(params, cfg, x, y, start, None, mask)
        _, dstate = model.backward(params, cfg, cache)
        if tuner is not None:
            tuner.end(k * P)
        for name in names:
            # The loss is the mean over the P positions, so each row of dstate is 1/P of its own gradient.
            g = np.linalg.norm(dstate[name].astype(np.float64) * P, axis=1)  # (P,)
            norm[name].append(float(g.mean()))
    return {"distance": list(range(1, K + 1)), "positions": P, "at": ts.tolist(), "norm": norm}


@dataclass
class Reading:
    """What the model did on a text, token by token."""

    ids: np.ndarray  # (N,) the tokens read
    nll: np.ndarray  # (N,) -log p(token | the tokens before it), float64; nll[0] is nan (no context)
    values: dict[str, np.ndarray]  # "layers.{l}.{name}" -> (N, H) the quantity after reading each token
    gates: list[str]  # the keys of values that are σ gates


def read_along(params: dict, cfg: ModelConfig, ids: np.ndarray, bptt: int = 100, tuner=None) -> Reading:
    """Run the model over ids (N,) as one stream from a zero state, windows of `bptt` with the state
    carried, keeping every cell's quantities and each token's -log p. tuner: as gradient_norms'."""
    cell = get_cell(cfg.cell)
    N = len(ids)
    state = model.init_state(cfg, 1, params["embed.W"].dtype)
    nll = np.full(N, np.nan)  # (N,)
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, N, bptt):
        x = ids[i : i + bptt]  # (T,)
        y = ids[i + 1 : i + bptt + 1]  # (T,) or T-1 at the end of the text
        T = len(x)
        mask = np.zeros((T, 1))
        mask[: len(y)] = 1.0
        targets = np.zeros((T, 1), dtype=ids.dtype)
        targets[: len(y), 0] = y
        if tuner is not None:
            tuner.begin()
        _, window_nll, cache, state = model.forward(params, cfg, x[:, None], targets, state, None, mask)
        if tuner is not None:
            tuner.end(T)
        nll[i + 1 : i + 1 + len(y)] = window_nll[: len(y), 0]  # the prediction of token j is made at j-1
        for layer, cell_cache in enumerate(cache.cells):
            for name, value in cell.quantities(cell_cache).items():
                parts.setdefault(f"layers.{layer}.{name}", []).append(np.array(value[:, 0]))
    values = {key: np.concatenate(v) for key, v in parts.items()}  # (N, H) each
    gates = [key for key in values if key.rsplit(".", 1)[1] in cell.GATES]
    return Reading(ids, nll, values, gates)


# The built-in features: name -> what it measures, shown beside the units found for it.
FEATURES = {
    "quotes": "inside quotes (\" toggles; “ ” and « » open and close; a blank line ends a quote)",
    "brackets": "inside brackets ( ) [ ] { }",
    "line position": "characters since the line began",
    "word start": "the token starts a word",
    "line end": "the token just read ends a line",
}
_OPEN, _CLOSE = "([{", ")]}"


def parse_feature(spec: str) -> tuple[str, re.Pattern]:
    """"NAME=REGEX" (from --feature) -> (name, compiled pattern)."""
    name, sep, pattern = spec.partition("=")
    if not sep or not name.strip() or not pattern:
        raise ConfigError(f"--feature takes NAME=REGEX, e.g. --feature 'digits=[0-9]+'; got {spec!r}")
    try:
        return name.strip(), re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"--feature {name.strip()}: {pattern!r} is not a regular expression ({e})") from None


def text_features(text: str, spans: np.ndarray, extra: dict[str, re.Pattern] | None = None) -> dict[str, np.ndarray]:
    """Each feature's value at each token, {name: (N,)}: the built-in ones (FEATURES) at the token's
    last character, i.e. as they stand once the model has read it; for a --feature, 1 where any of
    the token's characters lies in a match of its pattern."""
    n = int(spans[-1, 1]) if len(spans) else 0
    quote = np.zeros(n)  # (n,) per character
    bracket = np.zeros(n)
    column = np.zeros(n)
    straight, curly, depth, col = 0, 0, 0, 0
    for j, ch in enumerate(text[:n]):
        straight ^= ch == '"'
        curly = max(0, curly + (ch in "“«") - (ch in "”»"))
        if ch == "\n" and col == 0:
            # A blank line ends any quote: a speech over several paragraphs opens each one with a
            # quote mark and closes only the last, which would flip a plain toggle out of step.
            straight = curly = 0
        depth = max(0, depth + (ch in _OPEN) - (ch in _CLOSE))
        col = 0 if ch == "\n" else col + 1
        quote[j], bracket[j], column[j] = bool(straight or curly), depth > 0, col
    start, end = spans[:, 0], spans[:, 1]  # (N,) each
    last = np.maximum(end - 1, 0)  # (N,) a token's last character
    # A byte-level BPE token carries the space before its word: the word starts after it.
    lead = [s + len(text[s:e]) - len(text[s:e].lstrip()) for s, e in spans.tolist()]  # (N,) first non-space
    prev = [text[s - 1] if s > 0 else " " for s in lead]
    first = [text[s] if s < min(e, n) else " " for s, e in zip(lead, end.tolist(), strict=True)]
    out = {
        "quotes": quote[last] if n else np.zeros(len(spans)),
        "brackets": bracket[last] if n else np.zeros(len(spans)),
        "line position": column[last] if n else np.zeros(len(spans)),
        "word start": np.array([f.isalnum() and not p.isalnum() for f, p in zip(first, prev, strict=True)], float),
        "line end": np.array([n > 0 and text[j] == "\n" for j in last.tolist()], float),
    }
    for name, pattern in (extra or {}).items():
        hit = np.zeros(n + 1)
        for m in pattern.finditer(text[:n]):
            hit[m.start() : m.end()] = 1.0
        inside = np.concatenate([[0.0], np.cumsum(hit[:n])])  # (n+1,) matched characters before each offset
        out[name] = (inside[end] - inside[start] > 0).astype(float)
    return out


def read_prefix(tok: Tokenizer, text: str, max_tokens: int) -> tuple[np.ndarray, np.ndarray, int]:
    """-> ids (n,), spans (n, 2) of the first n = min(max_tokens, all) tokens of text, and how many
    tokens the whole text has. Only a prefix is tokenized with spans, cut at a line end so that its
    tokens are the whole text's; it grows until it holds more than max_tokens."""
    total = len(tok.encode(text))
    size = max(max_tokens, 64) * 8
    while True:
        cut = text.find("\n", min(size, len(text)))
        prefix = text if cut == -1 else text[: cut + 1]
        ids, spans = tok.encode_spans(prefix)
        if len(prefix) == len(text) or len(ids) > max_tokens + 8:  # the last few may differ at the cut
            return ids[:max_tokens], spans[:max_tokens], total
        size *= 2


@dataclass
class Units:
    """A text read by the model, and the units found for its features."""

    text: str
    spans: np.ndarray  # (N, 2) where each token read sits in text
    total: int  # tokens in the whole text (N of them were read)
    reading: Reading
    found: dict[str, list[dict]]  # feature -> its best units (unit_search)
    descriptions: dict[str, str]  # feature -> what it measures


def find_units(
    params: dict, cfg: ModelConfig, tok: Tokenizer, text: str, extra: dict[str, re.Pattern], max_tokens: int,
    tuner=None,
) -> Units:
    """Read the first max_tokens tokens of text and search the units for every feature."""
    ids, spans, total = read_prefix(tok, text, max_tokens)
    if len(ids) < 2:
        raise CorpusError(f"the text has {len(ids)} token(s); inspect needs at least 2")
    reading = read_along(params, cfg, ids, tuner=tuner)
    found = unit_search(reading, text_features(text, spans, extra))
    descriptions = {**FEATURES, **{name: f"matches /{p.pattern}/" for name, p in extra.items()}}
    return Units(text, spans, total, reading, found, descriptions)


def unit_search(reading: Reading, features: dict[str, np.ndarray], top: int = 5) -> dict[str, list[dict]]:
    """For each feature, the `top` units by |Pearson r| between their value and the feature over the
    tokens: {feature: [{"key": "layers.0.c", "unit": 17, "r": 0.93}, ...]}. A feature that is
    constant on the text has no correlation and gets an empty list."""
    keys = list(reading.values)
    A = np.concatenate([reading.values[k] for k in keys], axis=1).astype(np.float64)  # (N, U) every unit
    owner = np.concatenate([[i] * reading.values[k].shape[1] for i, k in enumerate(keys)])  # (U,) its key
    unit = np.concatenate([np.arange(reading.values[k].shape[1]) for k in keys])  # (U,) its index in the key
    A -= A.mean(axis=0)
    a_norm = np.linalg.norm(A, axis=0)  # (U,)
    found = {}
    for name, f in features.items():
        f = f - f.mean()  # (N,)
        f_norm = np.linalg.norm(f)
        if f_norm == 0:
            found[name] = []
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (f @ A) / (a_norm * f_norm)  # (U,)
        r = np.nan_to_num(r)  # a unit that never moves correlates with nothing
        best = np.argsort(-np.abs(r), kind="stable")[:top]
        found[name] = [{"key": keys[owner[u]], "unit": int(unit[u]), "r": float(r[u])} for u in best]
    return found


def saturation(reading: Reading, low: float = 0.1, high: float = 0.9) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{gate key: (left (H,), right (H,))}: each unit's fraction of tokens below `low` and above `high`."""
    v = reading.values
    return {key: ((v[key] < low).mean(axis=0), (v[key] > high).mean(axis=0)) for key in reading.gates}
