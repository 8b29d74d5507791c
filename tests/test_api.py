"""The Python API: every public function, against what the CLI and the library compute."""

import inspect
import json
import shutil
from dataclasses import fields

import numpy as np
import pytest
from rich.console import Console
from test_cli import invoke, make_corpus

import lstmtext
from lstmtext import model as network
from lstmtext import vectors
from lstmtext.errors import ConfigError
from lstmtext.options import TrainOptions

# Word tokens: these tests ask about words (unknown prompt words, neighbours); bpe is the default.
TINY = dict(tokenizer="word", embed=8, hidden=8, layers=1, batch_size=2, bptt=5, log_every=2, threads=1)
QUIET = Console(quiet=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    corpus = make_corpus(tmp / "tiny.txt")
    # paths as strings, as a script would pass them
    return lstmtext.train(str(corpus), out=str(tmp / "run"), max_steps=12, epochs=0, console=QUIET, **TINY)


def test_train_returns_the_run_and_its_summary(run):
    assert isinstance(run, lstmtext.Run) and (run.path / "best.safetensors").is_file()
    assert run.summary["steps"] == 12
    assert run.model().info["progress"]["step"] == 12


def test_load_a_file_or_a_run_and_its_last_checkpoint(run):
    by_dir, by_file = lstmtext.load(run.path), lstmtext.load(str(run.path / "best.safetensors"))
    assert by_dir.file == by_file.file and by_file.file.name == "best.safetensors"
    assert by_dir.generate("the", length=6, greedy=True) == by_file.generate("the", length=6, greedy=True)
    last = run.model("last")
    assert last.file.name == "last.safetensors" and last.info["loaded"].endswith("last.safetensors")
    assert last.info["progress"]["step"] == 12


def test_generate_is_the_joined_stream_and_reproducible(run):
    m = run.model()
    a = m.generate("the cat", length=15, seed=3, temperature=0.8)
    assert a == "".join(m.stream("the cat", length=15, seed=3, temperature=0.8))
    assert a == m.generate("the cat", length=15, seed=3, temperature=0.8) and a.startswith("the cat")
    assert a != m.generate("the cat", length=15, seed=4, temperature=0.8)
    assert m.generate("the", length=10, greedy=True) == m.generate("the", length=10, greedy=True, seed=9)
    three = m.samples(3, "the", length=6, seed=1, top_k=3)
    assert len(three) == 3 and all(s.startswith("the") for s in three)
    # A trailing space is the continuation's to give (sample.shown_prompt): as from "the".
    assert m.generate("the ", length=10, greedy=True) == m.generate("the", length=10, greedy=True)
    assert m.samples(2, "the ", length=4, seed=1) == m.samples(2, "the", length=4, seed=1)
    with pytest.raises(ConfigError, match="--temperature must be positive"):
        m.stream("the", temperature=-1)  # checked at the call, not at the first piece


def test_generate_matches_the_cli(run):
    r = invoke(["generate", run.path, "--prompt", "the cat", "--length", "15", "--seed", "3"])
    assert r.exit_code == 0
    assert r.output == run.model().generate("the cat", length=15, seed=3) + "\n"


def test_unknown_prompt_words_warn(run):
    m = run.model()
    for call in (lambda: m.generate("zebra", length=3, seed=0), lambda: list(m.stream("zebra", length=3, seed=0))):
        with pytest.warns(UserWarning, match="never saw, read as <unk>: 'zebra'") as caught:
            call()
        assert caught[0].filename == __file__  # the warning points at the caller's line, not lstmtext's


def test_score_is_what_eval_json_prints(run):
    text = (run.path / "valid.txt").read_text()
    r = invoke(["eval", run.path, run.path / "valid.txt", "--json"])
    assert json.loads(r.output) == {"file": str(run.path / "valid.txt"), **run.model().score(text)}
    with pytest.raises(ConfigError, match="fewer than 2 tokens"):
        run.model().score("the")


def test_next_token_probs_needs_a_positive_n(run):
    with pytest.raises(ConfigError, match="n must be at least 1"):
        run.model().next_token_probs("the", n=0)


def test_next_token_probs_are_the_models_softmax(run):
    m = run.model()
    got = m.next_token_probs("the cat", n=4)
    assert len(got) == 4 and list(got.values()) == sorted(got.values(), reverse=True)
    cfg, params = m.config, m.checkpoint.params
    state = network.init_state(cfg, 1)
    for i in m.tokenizer.encode("\nthe cat"):  # a context is read after a line end, as a prompt is
        logits, state = network.step_logits(params, cfg, np.array([i]), state)
    p = np.exp(logits[0] - logits[0].max())
    p /= p.sum()
    top = np.argsort(-p)[:4]
    assert list(got) == [m.tokenizer.id_to_token(int(i)) for i in top]
    np.testing.assert_allclose(list(got.values()), p[top], rtol=1e-5)


def test_info_neighbors_and_export(run, tmp_path):
    m = lstmtext.load(run.path)
    assert m.info["model"]["hidden"] == 8 and m.info["progress"]["step"] >= 12 and "lstm 1×8" in repr(m)
    names = vectors.token_words(m.tokenizer)
    want = vectors.neighbors(m.checkpoint.params["embed.W"], names.index("cat"), 3)
    assert m.neighbors("cat", 3) == [(names[i], c) for i, c in want]
    W = m.checkpoint.params["embed.W"]
    want = vectors.analogy(W, names.index("cat"), names.index("dog"), names.index("mat"), 2)
    assert m.analogy("cat", "dog", "mat", 2) == [(names[i], c) for i, c in want]
    done = m.export("word2vec", tmp_path / "v.txt")
    assert done.files == [tmp_path / "v.txt"]
    assert int(done.files[0].read_text().split()[0]) + len(done.left_out) == m.config.vocab_size
    done = m.export("onnx", tmp_path / "m.onnx")
    assert isinstance(done, lstmtext.Exported) and done.files == [tmp_path / "m.onnx"] and done.left_out == []
    done = m.export("torch", tmp_path / "torch")
    assert {f.name for f in done.files} >= {"model.safetensors", "load_torch.py"}
    assert all(f.exists() for f in done.files)
    with pytest.raises(ConfigError, match="not in the model's vocabulary"):
        m.neighbors("zebra")


def test_resume_through_the_api(run, tmp_path):
    shutil.copytree(run.path, tmp_path / "copy")  # the module's run stays as the other tests expect it
    more = lstmtext.train(resume=tmp_path / "copy", max_steps=14, console=QUIET)
    assert more.summary["steps"] == 14
    done = lstmtext.train(resume=tmp_path / "copy", max_steps=14, console=QUIET)
    assert done.summary is None  # already finished: nothing trained
    # a script that passes every option, most at their defaults: only the set ones count
    every = {f.name: f.default for f in fields(TrainOptions) if f.name not in ("corpus", "resume", "max_steps")}
    more = lstmtext.train(resume=tmp_path / "copy", max_steps=15, console=QUIET, **every)
    assert more.summary["steps"] == 15
    with pytest.raises(ConfigError, match="--force starts a run over"):
        lstmtext.train(resume=tmp_path / "copy", max_steps=16, force=True, console=QUIET)


def test_unknown_options_and_mistakes_are_one_clear_error(tmp_path):
    corpus = make_corpus(tmp_path / "c.txt")
    with pytest.raises(ConfigError, match="unknown training option 'vocab_sise'; did you mean vocab_size"):
        lstmtext.train(corpus, vocab_sise=10)
    with pytest.raises(ConfigError, match="--optimizer must be one of sgd, adam, rmsprop, nt-asgd"):
        lstmtext.train(corpus, out=tmp_path / "r", optimizer="lbfgs", console=QUIET)
    with pytest.raises(ConfigError, match="give a CORPUS"):
        lstmtext.train(console=QUIET)
    with pytest.raises(ConfigError, match="which must be best or last"):
        lstmtext.Run(tmp_path, None).model("first")


def test_the_cli_and_help_show_every_api_option():
    r = invoke(["train", "--help"])
    for f in fields(TrainOptions):
        if not f.metadata["argument"]:
            assert "--" + f.name.replace("_", "-") in r.output, f.name
    # and help(lstmtext.train) lists them too
    assert set(inspect.signature(lstmtext.train).parameters) >= {f.name for f in fields(TrainOptions)}
