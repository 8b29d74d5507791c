"""`lstmtext inspect --html`: one self-contained page, parsed here as a browser would read it."""

import base64
import html
import json
import re
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from test_cli import TINY, invoke, make_corpus

from lstmtext import checkpoint, inside, page
from lstmtext.cells import get_cell


class Page(HTMLParser):
    """Collects the token spans of each text view, every URL-bearing attribute, and the data blocks."""

    def __init__(self):
        super().__init__()
        self.views: dict[str, list[dict]] = {}
        self.view = None  # the id of the text view we are in
        self.span = None  # the token span we are in
        self.urls: list[str] = []
        self.script = None
        self.scripts: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "div" and a.get("id") in ("units-text", "surprise-text"):
            self.view = a["id"]
            self.views[self.view] = []
        elif tag == "span" and self.view and a.get("class", "").split()[0] in ("t", "s"):
            self.span = {**a, "text": ""}
            self.views[self.view].append(self.span)
        elif tag == "script":
            self.script = a.get("id", "")
            self.scripts[self.script] = ""

    def handle_endtag(self, tag):
        if tag == "span":
            self.span = None
        elif tag == "div":
            self.view = None
        elif tag == "script":
            self.script = None

    def handle_data(self, data):
        if self.span is not None:
            self.span["text"] += data
        if self.script is not None:
            self.scripts[self.script] += data


def trained(tmp_path, cell="lstm", tokenizer="char", layers="1"):
    corpus = make_corpus(tmp_path / "c.txt", lines=80)
    text = corpus.read_text(encoding="utf-8").replace("cat", '"cat"').replace("dog", "(dog)")
    text = "the @@DATA@@ and @@UNITS_TEXT@@ sat\n" + text  # the page's own slot names, as text to show
    corpus.write_text(text, encoding="utf-8")
    run = tmp_path / f"{cell}-{tokenizer}"
    args = ["train", corpus, "--out", run, *TINY, "--cell", cell, "--tokenizer", tokenizer, "--layers", layers]
    r = invoke([*args, "--max-steps", "6", "--epochs", "0"])
    assert r.exit_code == 0, r.output
    return run, corpus, text


@pytest.mark.parametrize(("cell", "tokenizer"), [("lstm", "char"), ("gru", "word"), ("rnn", "bpe")])
def test_every_token_is_in_the_page_in_order_with_a_value(tmp_path, cell, tokenizer):
    run, corpus, text = trained(tmp_path, cell, tokenizer, layers="2")
    out = tmp_path / "page.html"
    r = invoke(["inspect", run, corpus, "--html", out, "--max-tokens", "300", "--max-distance", "10",
                "--feature", "vowel=[aeiou]", "--pictures", tmp_path / "pics"])
    assert r.exit_code == 0, r.output
    doc = Page()
    source = out.read_text(encoding="utf-8")
    doc.feed(source)
    _, tok = checkpoint.load_model(run / "best.safetensors")
    ids, spans = tok.encode_spans(text)
    n = min(300, len(ids))
    for view in ("units-text", "surprise-text"):
        tokens = doc.views[view]
        assert len(tokens) == n
        shown = page._shown_spans(spans[:n])
        assert [t["text"] for t in tokens] == [text[s:e] for s, e in shown.tolist()]  # every token, in order
        values = [float(t["data-v"]) for t in tokens[1:]]  # the first token has no -log p in the surprise view
        assert all(np.isfinite(values))
        assert tokens[0]["data-p"] == "—" and all(0 < float(t["data-p"]) <= 1 for t in tokens[1:])
    # The surprise values are the model's -log p, which the p shown agrees with.
    s = doc.views["surprise-text"]
    assert all(abs(np.exp(-float(t["data-v"])) - float(t["data-p"])) < 2e-3 for t in s[1:])
    # Self-contained: no URL leaves the file (links are to its own sections, pictures are data: URLs).
    assert all(u.startswith(("#", "data:image/png;base64,")) for u in doc.urls), doc.urls
    assert not re.search(r"\b(https?|ftp|wss?):|url\(|@import|=[\"']//", source), "an external URL"
    data = json.loads(doc.scripts["data"])
    assert data["N"] == n
    keys = [q["key"] for q in data["quantities"]]
    if cell == "rnn":
        assert keys == ["layers.0.h", "layers.1.h"] and "has no gates" in source
    else:
        assert {f"layers.1.{g}" for g in ("h", *get_cell(cell).GATES)} <= set(keys)
        assert (tmp_path / "pics" / "saturation.png").read_bytes()[:4] == b"\x89PNG"
    # Without its script, the page shows the unit it opens on: the model's own values, as read here.
    ckpt, _ = checkpoint.load_model(run / "best.safetensors")
    units = inside.find_units(ckpt.params, ckpt.model_cfg, tok, text, {}, 300)
    first = units.reading.values[data["first"]["key"]][:, data["first"]["unit"]]  # (n,)
    shown = np.array([float(t["data-v"]) for t in doc.views["units-text"]])
    np.testing.assert_allclose(shown, first, rtol=1e-3, atol=1e-6)
    script = doc.scripts[""]  # the one script without an id
    used = set(re.findall(r'\$\("([\w-]+)"\)', script))  # every element the script looks up exists
    assert len(used) >= 8 and used <= set(re.findall(r'id="([\w-]+)"', source))
    for q in data["quantities"]:  # each block decodes to one byte per unit and token
        assert len(base64.b64decode(doc.scripts[q["block"]])) == q["H"] * n
    assert "vowel" in source and "line position" in source
    assert (tmp_path / "pics" / "gradient.png").is_file() and (tmp_path / "pics" / "curves.png").is_file()


def test_quantize_round_trip():
    rng = np.random.default_rng(0)
    for values, gate in ((rng.uniform(0, 1, (50, 4)), True), (rng.uniform(-1, 1, (50, 4)), False),
                         (rng.uniform(-7, 7, (50, 4)), False)):
        q, lo, hi = page.quantize(values, gate)
        assert q.shape == (4, 50) and q.dtype == np.uint8
        back = lo + q.T / page.LEVELS * (hi - lo)  # (50, 4) what the page's script computes
        assert np.abs(back - values).max() <= (hi - lo).max() / page.LEVELS / 2 + 1e-12


def test_inspect_units_and_errors_are_one_line(tmp_path, monkeypatch):
    run, corpus, _ = trained(tmp_path)
    r = invoke(["inspect", run, corpus, "--units", "--json", "--feature", "vowel=[aeiou]"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert set(d["units"]) == {"quotes", "brackets", "line position", "word start", "line end", "vowel"}
    assert all(-1 <= u["r"] <= 1 for us in d["units"].values() for u in us)
    r = invoke(["inspect", run, corpus, "--units"])
    assert r.exit_code == 0 and "line position" in r.stdout
    for args, message in (
        ([], "say what to inspect"),
        (["--units", "--feature", "x=("], "is not a regular expression"),
        (["--html", tmp_path / "p.txt"], "--html must end in .html"),
        (["--units", "--gradient", "--json"], "--json prints one result"),
        (["--units", "--out", tmp_path / "g.png"], "--vs and --out belong to --gradient"),
    ):
        r = invoke(["inspect", run, corpus, *args])
        assert r.exit_code == 1 and message in r.stderr and "Traceback" not in r.output, (args, r.output)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the extra were not installed
    r = invoke(["inspect", run, corpus, "--html", tmp_path / "p.html"])  # the page, without its pictures
    assert r.exit_code == 0 and r.stderr.count("Without matplotlib the page leaves out its three pictures") == 1
    source = (tmp_path / "p.html").read_text(encoding="utf-8")
    note = html.escape("This picture needs matplotlib: pip install 'lstmtext[plot]'")
    assert "data:image/png" not in source and source.count(note) == 3
    assert "units-text" in source and "surprise-text" in source  # the rest of the page is all there
    r = invoke(["inspect", run, corpus, "--html", tmp_path / "q.html", "--pictures", tmp_path / "pics"])
    assert r.exit_code == 1 and "pip install 'lstmtext[plot]'" in r.stderr and not (tmp_path / "q.html").exists()


def test_inspect_gradient_of_several_runs_in_one_picture(tmp_path):
    run, corpus, _ = trained(tmp_path)
    other, _, _ = trained(tmp_path, "gru")
    png = tmp_path / "g.png"
    r = invoke(["inspect", run, corpus, "--gradient", "--vs", other, "--max-distance", "8", "--positions", "2",
                "--out", png, "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert [x["cell"] for x in d["runs"]] == ["lstm", "gru"] and png.read_bytes()[:4] == b"\x89PNG"


def test_slot_names_in_the_text_stay_text():
    from lstmtext.tokenizer import Tokenizer

    s = "say @@DATA@@ and @@HARDEST@@ then X\n"
    tok = Tokenizer.train("char", s)
    ids, spans = tok.encode_spans(s)
    N = len(ids)
    nll = np.full(N, 0.1)
    nll[0], nll[s.index("X")] = np.nan, 9.0  # X is the hardest token: its context shows the slot names raw
    reading = inside.Reading(ids, nll, {"layers.0.h": np.zeros((N, 3))}, [])
    units = inside.Units(s, spans, N, reading, {"quotes": []}, dict(inside.FEATURES))
    info = page.PageInfo("run", "t.txt", "char", "rnn", 1, 3)
    source = page.build(info, units, {}, None, {})
    assert source.count('"quantities"') == 1 and "@@DATA@@ and @@HARDEST@@ then <b>X</b>" in source
