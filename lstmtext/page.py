"""The HTML page of `lstmtext inspect --html`: one self-contained file (no network, no external
script or font; plain HTML and CSS, a little vanilla JavaScript) that shows what the model did on a
text: the text coloured by any unit, the units that track features of the text, gate saturation,
surprise, and the pictures (saturation, gradient, training curves) as embedded PNGs.

Every token is written into the page as its own <span> with the value of the unit shown first and
the model's probability for it, so the page reads (and parses) without JavaScript; the script only
recolours the same spans when another layer, quantity or unit is chosen. Each quantity's values are
stored once, as one byte per token and unit (base64 in a <script type="application/octet-stream">),
decoded only when it is first shown.
"""

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmtext import inside, plot
from lstmtext.config import ModelConfig
from lstmtext.inside import Units


@dataclass
class PageInfo:
    """What the page says about where it came from."""

    run: str  # the run as the user named it
    source: str  # the text file it was read on
    tokenizer: str  # word, char or bpe
    cell: str
    layers: int
    hidden: int


LEVELS = 255  # values are stored as bytes: 0 .. LEVELS between each unit's lo and hi


def quantize(values: np.ndarray, gate: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values (N, H) -> bytes (H, N) unit-major, lo (H,), hi (H,) with value ≈ lo + byte/255 (hi - lo).

    σ gates span [0, 1]; a quantity within ±1 (tanh states, candidates) spans [-1, 1]; one that leaves
    it (the LSTM's cell state, a ReLU RNN's h) is scaled per unit by its largest |value| here, over
    [0, max] if it is never negative. A diverged model's inf and nan are drawn as the extremes and 0."""
    H = values.shape[1]
    big = float(np.finfo(np.float32).max)
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=big, neginf=-big)  # (N, H)
    if gate:
        lo, hi = np.zeros(H), np.ones(H)
    elif np.abs(values).max(initial=0.0) <= 1.0:
        lo, hi = -np.ones(H), np.ones(H)
    else:
        hi = np.maximum(np.abs(values).max(axis=0), 1e-12)  # (H,)
        lo = np.zeros(H) if values.min() >= 0 else -hi
    q = np.rint((values - lo) / (hi - lo) * LEVELS)  # (N, H)
    return np.clip(q, 0, LEVELS).astype(np.uint8).T.copy(), lo, hi


def _shown_spans(spans: np.ndarray) -> np.ndarray:
    """Spans that do not overlap: a byte-level BPE token that ends inside a character shares it with
    the next token; the character is drawn once, with the first."""
    out = spans.copy()
    for j in range(1, len(out)):
        out[j, 0] = min(max(out[j, 0], out[j - 1, 1]), out[j, 1])
    return out


def _token_spans(text: str, spans: np.ndarray, cls: str, attrs: list[str]) -> str:
    """The text as HTML: each token a <span class=cls ...attrs[j]>, the text between tokens plain."""
    out, at = [], 0
    for j, (s, e) in enumerate(_shown_spans(spans).tolist()):
        out.append(html.escape(text[at:s]))
        # An empty <i class=nl> before each line end draws "↵" (CSS) without changing the token's text.
        tok = html.escape(text[s:e]).replace("\n", '<i class="nl"></i>\n')
        out.append(f'<span class="{cls}" {attrs[j]}>{tok}</span>')
        at = e
    return "".join(out)


def _fmt(x: float) -> str:
    return "—" if not np.isfinite(x) else f"{x:.3g}"


def _surprise_colour(nll: np.ndarray) -> list[str]:
    cap = max(float(np.nanpercentile(nll, 95)), 1.0) if np.isfinite(nll).any() else 1.0
    out = []
    for v in nll.tolist():
        a = 0.0 if not np.isfinite(v) else min(v / cap, 1.0)
        out.append(f"background:rgba(230,80,0,{a:.2f})")
    return out


def _hardest(text: str, spans: np.ndarray, nll: np.ndarray, n: int = 20) -> str:
    order = [j for j in np.argsort(-np.nan_to_num(nll, nan=-1.0), kind="stable")[:n] if np.isfinite(nll[j])]
    rows = []
    for j in order:
        s, e = spans[j].tolist()
        before = text[max(0, s - 40) : s].replace("\n", "↵")
        rows.append(
            f"<tr><td class=num>{nll[j]:.2f}</td><td class=num>{np.exp(-nll[j]):.2g}</td>"
            f"<td class=ctx>{html.escape(before)}<b>{html.escape(text[s:e].replace(chr(10), '↵'))}</b></td></tr>"
        )
    return "".join(rows)


def _units_table(found: dict[str, list[dict]], descriptions: dict[str, str]) -> str:
    rows = []
    for name, units in found.items():
        if units:
            links = " ".join(
                f'<a href="#units" class="unit" data-key="{u["key"]}" data-unit="{u["unit"]}">'
                f'layer {u["key"].split(".")[1]} {u["key"].split(".")[2]} #{u["unit"]}'
                f' <span class=r>r = {u["r"]:+.2f}</span></a>'
                for u in units
            )
        else:
            links = "<i>constant on this text: nothing to correlate with</i>"
        rows.append(f"<tr><td><b>{html.escape(name)}</b><br><small>{html.escape(descriptions[name])}</small></td>"
                    f"<td>{links}</td></tr>")
    return "".join(rows)


def _gradient_table(gradient: dict | None) -> str:
    if gradient is None:
        return ""
    names = list(gradient["norm"])
    head = "".join(f"<th>{html.escape(n.removeprefix('layers.'))}</th>" for n in names)
    rows = []
    for k in (1, 2, 5, 10, 20, 50, 100, 200):
        if k <= len(gradient["distance"]):
            cells = "".join(f"<td class=num>{_fmt(gradient['norm'][n][k - 1])}</td>" for n in names)
            rows.append(f"<tr><td class=num>{k}</td>{cells}</tr>")
    return f"<table class=grid><tr><th>k</th>{head}</tr>{''.join(rows)}</table>"


def _img(png: bytes | None, alt: str, missing: str) -> str:
    if png is None:
        return f"<p class=note>{html.escape(missing)}</p>"
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def build(
    info: PageInfo,
    units: Units,
    pictures: dict[str, bytes | None],
    gradient: dict | None,
    notes: dict[str, str],
) -> str:
    """The whole page as a string. pictures: {"saturation", "gradient", "curves": PNG bytes or None};
    notes: why a picture is missing."""
    text, spans, reading, found = units.text, units.spans, units.reading, units.found
    N = len(reading.ids)
    blocks, meta = [], []
    for k, (key, values) in enumerate(reading.values.items()):
        q, lo, hi = quantize(values, key in reading.gates)
        b64 = base64.b64encode(q.tobytes()).decode()
        blocks.append(f'<script type="application/octet-stream" id="q{k}">{b64}</script>')
        layer, name = key.split(".")[1:]
        meta.append({"key": key, "layer": int(layer), "name": name, "H": values.shape[1],
                     "lo": np.round(lo, 6).tolist(), "hi": np.round(hi, 6).tolist(), "block": f"q{k}",
                     "gate": key in reading.gates, "white": 0.5 if key in reading.gates else 0.0})
    # The page opens on the state unit (h or c, not a gate) that tracks a feature best, or on unit 0
    # of the top layer's h; a link "page.html#layers.0.c:16" opens on that unit instead.
    states = [u for us in found.values() for u in us if u["key"].rsplit(".", 1)[1] in ("h", "c")]
    best = max(states, key=lambda u: abs(u["r"]), default=None)
    first = best or {"key": f"layers.{info.layers - 1}.h", "unit": 0}
    v0 = reading.values[first["key"]][:, first["unit"]]  # (N,)
    p = np.exp(-reading.nll)  # (N,) nan for the first token
    unit_attrs = [f'data-v="{v0[j]:.4g}" data-p="{_fmt(p[j])}"' for j in range(N)]
    colours = _surprise_colour(reading.nll)
    surprise_attrs = [
        f'data-v="{_fmt(reading.nll[j])}" data-p="{_fmt(p[j])}" style="{colours[j]}" '
        f'title="−log p = {_fmt(reading.nll[j])}, p = {_fmt(p[j])}"'
        for j in range(N)
    ]
    finite = np.isfinite(reading.nll)
    mean_nll = float(reading.nll[finite].mean()) if finite.any() else float("nan")
    cut = (
        f"the first {N:,} of {units.total:,} tokens (--max-tokens); the rest was not read"
        if N < units.total
        else f"all {N:,} tokens"
    )
    data = {"N": N, "quantities": meta, "first": first}
    parts = {
        "TITLE": html.escape(f"lstmtext inspect: {info.run}"),
        "RUN": html.escape(info.run),
        "MODEL": html.escape(f"{info.cell}, {info.layers} × {info.hidden}, {info.tokenizer} tokens"),
        "SOURCE": html.escape(info.source),
        "CUT": html.escape(cut),
        "LOSS": f"{mean_nll:.4f} nats per token (perplexity {np.exp(mean_nll):.2f})" if finite.any() else "—",
        "UNITS_TEXT": _token_spans(text, spans, "t", unit_attrs),
        "SURPRISE_TEXT": _token_spans(text, spans, "s", surprise_attrs),
        "HARDEST": _hardest(text, spans, reading.nll),
        "FOUND": _units_table(found, units.descriptions),
        "SATURATION": _img(pictures.get("saturation"), "gate saturation", notes.get("saturation", "")),
        "GRADIENT": _img(pictures.get("gradient"), "gradient by distance", notes.get("gradient", ""))
        + _gradient_table(gradient),
        "CURVES": _img(pictures.get("curves"), "training curves", notes.get("curves", "")),
        "BLOCKS": "\n".join(blocks),
        "DATA": json.dumps(data).replace("</", "<\\/"),
    }
    # One pass: a "@@NAME@@" inside the user's own text is not a slot to fill.
    return re.sub(r"@@([A-Z_]+)@@", lambda m: parts[m.group(1)], TEMPLATE)


def make_page(
    params: dict, cfg: ModelConfig, units: Units, info: PageInfo, max_distance: int, positions: int, run_dir: Path,
    tuner=None,
) -> tuple[str, dict[str, bytes | None]]:
    """Draw the pictures for a text the model has read and build the page: -> the page, its pictures
    (PNG bytes, None where there is nothing to draw)."""
    reading = units.reading
    N = len(reading.ids)
    pictures: dict[str, bytes | None] = {"saturation": None, "gradient": None, "curves": None}
    notes = {}
    draw = plot.available()  # without the [plot] extra the page is whole but for its pictures
    no_picture = f"This picture needs matplotlib: {plot.INSTALL}."
    sat = inside.saturation(reading)
    if not sat:
        notes["saturation"] = f"The {cfg.cell} cell has no gates."
    elif draw:
        pictures["saturation"] = plot.png(plot.saturation_figure(sat, f"{cfg.cell}: gate saturation on {N:,} tokens"))
    else:
        notes["saturation"] = no_picture
    gradient = None
    K = min(max_distance, N - 2)
    if K < 1:
        notes["gradient"] = "The text is too short to measure the gradient."
    else:
        gradient = inside.gradient_norms(params, cfg, reading.ids, K, positions, tuner)  # its table needs no picture
        if draw:
            pictures["gradient"] = plot.png(plot.gradient_figure([(info.run, gradient)]))
        else:
            notes["gradient"] = no_picture
    if not (run_dir / "metrics.jsonl").is_file():
        notes["curves"] = "No metrics.jsonl beside the checkpoint: the training curves are not known."
    elif draw:
        pictures["curves"] = plot.png(plot.curves_figure([plot.load_curves(run_dir)]))
    else:
        notes["curves"] = no_picture
    return build(info, units, pictures, gradient, notes), pictures


TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>@@TITLE@@</title>
<style>
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px;
  padding: 0 18px 60px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 18px 0 4px; } h2 { font-size: 18px; margin: 30px 0 6px; border-bottom: 1px solid #ddd; }
.meta { color: #555; margin: 0 0 8px; } .note { color: #777; font-style: italic; }
nav a { margin-right: 14px; }
.text { font: 14px/1.6 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; white-space: pre-wrap;
  word-break: break-word; border: 1px solid #ddd; padding: 10px; max-height: 460px; overflow-y: auto; }
.text i.nl::before { content: "↵"; color: #999; font-style: normal; }
.controls { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin: 8px 0; }
.controls input[type=number] { width: 6em; }
#readout { font: 13px ui-monospace, monospace; color: #333; min-height: 1.4em; }
.legend { display: inline-block; width: 180px; height: 12px; vertical-align: middle;
  background: linear-gradient(to right, rgb(40,90,220), #fff, rgb(220,40,40)); border: 1px solid #ccc; }
table { border-collapse: collapse; } td, th { padding: 3px 8px; vertical-align: top; text-align: left; }
table.grid td, table.grid th { border: 1px solid #ddd; } .num { text-align: right; font-variant-numeric: tabular-nums; }
#found tr { border-bottom: 1px solid #eee; } a.unit { display: inline-block; margin: 1px 8px 1px 0; }
.r { color: #666; font-size: 13px; } td.ctx { font: 13px ui-monospace, monospace; white-space: pre; }
td.ctx b { background: rgba(230,80,0,.35); } #hardest { margin-top: 10px; }
img { max-width: 100%; }
</style></head><body>
<h1>Inside <code>@@RUN@@</code></h1>
<p class="meta">@@MODEL@@ · read on <code>@@SOURCE@@</code>: @@CUT@@ · @@LOSS@@</p>
<nav><a href="#units">units</a><a href="#found">units that mean something</a><a href="#saturation">gate saturation</a>
<a href="#surprise">surprise</a><a href="#gradient">gradient</a><a href="#curves">training curves</a></nav>

<h2 id="units">The text, coloured by one unit</h2>
<div class="controls">
<label>layer <select id="layer"></select></label>
<label>quantity <select id="qty"></select></label>
<label>unit <input id="unit" type="number" min="0" value="0"></label>
<button id="prev" type="button">◀</button><button id="next" type="button">▶</button>
<span><span id="lo"></span> <span class="legend"></span> <span id="hi"></span></span>
</div>
<div id="readout">Hover a token to see its value and the model's probability for it.</div>
<div class="text" id="units-text">@@UNITS_TEXT@@</div>
<p class="note" id="scale-note"></p>

<h2 id="found">Units that mean something</h2>
<p>For each feature of the text, the units whose value after reading a token correlates best (Pearson r
over the tokens) with the feature at that token. Click one to colour the text by it.</p>
<table id="found-table">@@FOUND@@</table>

<h2 id="saturation">Gate saturation</h2>
<p>Each dot is one unit of one gate: the fraction of tokens where it sits below 0.1 (left-saturated)
and above 0.9 (right-saturated). A unit on the grey line is never in between: it acts as a switch.</p>
@@SATURATION@@

<h2 id="surprise">Surprise</h2>
<p>Each token coloured by −log p, how surprised the model was by it (darker: more surprised; the
scale tops out at the 95th percentile). The tokens it found hardest:</p>
<div class="text" id="surprise-text">@@SURPRISE_TEXT@@</div>
<table class="grid" id="hardest"><tr><th>−log p</th><th>p</th><th>the token in context</th></tr>@@HARDEST@@</table>

<h2 id="gradient">How far back the gradient reaches</h2>
<p>‖∂ log p(next token) / ∂ state k tokens back‖, mean over positions of this text, from the model's own
backward pass. A simple RNN's falls geometrically with k; a gated cell's can stay up.</p>
@@GRADIENT@@

<h2 id="curves">Training curves</h2>
@@CURVES@@

@@BLOCKS@@
<script type="application/json" id="data">@@DATA@@</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const spans = Array.from(document.querySelectorAll("#units-text span.t"));
const decoded = {};
const $ = (id) => document.getElementById(id);
function bytes(q) {
  if (!decoded[q.block]) {
    const s = atob(document.getElementById(q.block).textContent.trim());
    const b = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
    decoded[q.block] = b;
  }
  return decoded[q.block];
}
function find(layer, name) { return D.quantities.find((q) => q.layer === layer && q.name === name); }
function colour(t) {  // t in [-1, 1]: blue, white, red
  const a = Math.min(Math.abs(t), 1);
  const [r, g, b] = t >= 0 ? [220, 40, 40] : [40, 90, 220];
  return `rgba(${r},${g},${b},${(0.8 * a).toFixed(3)})`;  // at most 0.8: the text stays readable
}
let current = null;
function show(key, unit) {
  const q = D.quantities.find((x) => x.key === key);
  unit = Math.max(0, Math.min(q.H - 1, unit | 0));
  current = { q, unit };
  $("layer").value = q.layer; fillQty(q.layer); $("qty").value = q.name;
  $("unit").max = q.H - 1; $("unit").value = unit;
  const b = bytes(q), lo = q.lo[unit], hi = q.hi[unit], w = q.white;  // w: the value drawn white
  for (let i = 0; i < spans.length; i++) {
    const v = lo + (b[unit * D.N + i] / 255) * (hi - lo);
    const sp = spans[i];
    sp.dataset.v = v.toPrecision(4);
    sp.style.background = colour(v >= w ? (v - w) / (hi - w || 1) : (v - w) / (w - lo || 1));
    sp.title = `${q.name} = ${v.toFixed(3)}, p = ${sp.dataset.p}`;
  }
  $("lo").textContent = lo.toPrecision(3); $("hi").textContent = hi.toPrecision(3);
  $("scale-note").textContent = q.gate ? `${q.name}: a σ gate, 0 (blue) to 1 (red).`
    : (hi === 1 && lo === -1) ? `${q.name}: from -1 (blue) to 1 (red).`
    : `${q.name} leaves ±1 on this text: unit ${unit} is drawn from ${lo.toPrecision(3)} to its largest |value|, ` +
      `${hi.toPrecision(3)}.`;
}
function fillQty(layer) {
  const sel = $("qty"), names = D.quantities.filter((q) => q.layer === layer).map((q) => q.name);
  if (Array.from(sel.options).map((o) => o.value).join() === names.join()) return;
  sel.innerHTML = ""; for (const n of names) sel.add(new Option(n, n));
}
for (const l of [...new Set(D.quantities.map((q) => q.layer))]) $("layer").add(new Option(l, l));
$("layer").onchange = () => {
  const l = +$("layer").value; fillQty(l); show(find(l, $("qty").value).key, +$("unit").value);
};
$("qty").onchange = () => show(find(+$("layer").value, $("qty").value).key, +$("unit").value);
$("unit").onchange = () => show(current.q.key, +$("unit").value);
$("prev").onclick = () => show(current.q.key, current.unit - 1);
$("next").onclick = () => show(current.q.key, current.unit + 1);
$("units-text").onmouseover = (e) => {
  const sp = e.target.closest("span.t"); if (!sp) return;
  const q = current.q.name, u = current.unit;
  $("readout").textContent = `${JSON.stringify(sp.textContent)}  ${q}[${u}] = ${sp.dataset.v}  p = ${sp.dataset.p}`;
};
for (const a of document.querySelectorAll("a.unit")) a.onclick = () => show(a.dataset.key, +a.dataset.unit);
function fromHash() {  // #layers.0.c:16
  const m = /^#(layers\.\d+\.\w+):(\d+)$/.exec(decodeURIComponent(location.hash));
  if (m && D.quantities.some((q) => q.key === m[1])) { show(m[1], +m[2]); return true; }
  return false;
}
window.onhashchange = fromHash;
if (!fromHash()) show(D.first.key, D.first.unit);
</script>
</body></html>
"""
