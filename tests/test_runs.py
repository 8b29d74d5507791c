"""Runs as people use them, through the CLI: resume typed with the original options, a finished run,
a run killed before its first validation, fine-tuning with --init-from, `info`, `--version`,
samples while training and the warnings that save time."""

import json
import math

import numpy as np
import pytest
from test_cli import TINY, invoke, make_corpus

from lstmtext import __version__, checkpoint
from lstmtext.tokenizer import Tokenizer


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "tiny.txt")


def _train(corpus, out, *extra):
    r = invoke(["train", corpus, "--out", out, *TINY, *extra])
    assert r.exit_code == 0, r.output
    return r


def test_resume_accepts_the_original_options_and_names_a_changed_one(tmp_path, corpus):
    out = tmp_path / "run"
    first = ["train", corpus, "--out", out, *TINY, "--lr", "5", "--seed", "7", "--epochs", "0"]
    assert invoke([*first, "--max-steps", "6"]).exit_code == 0
    # ↑ and --resume: every option as before, only the budget larger.
    r = invoke([*first, "--max-steps", "10", "--resume", out])
    assert r.exit_code == 0, r.output
    assert "Resuming" in r.output
    assert checkpoint.load(out / "last.safetensors").progress["step"] == 10
    r = invoke([*first, "--max-steps", "12", "--resume", out, "--hidden", "16"])
    assert r.exit_code == 1
    assert "--hidden 16 (the run has 8)" in r.stderr and "\n" not in r.stderr.strip()
    r = invoke([*first, "--max-steps", "12", "--resume", out, "--lr", "6"])
    assert r.exit_code == 1 and "--lr 6.0 (the run has 5.0)" in r.stderr
    r = invoke(["train", corpus, "--resume", out, "--max-steps", "12", "--tokenizer", "char"])
    assert r.exit_code == 1 and "--tokenizer char (the run has word)" in r.stderr


def test_resuming_a_finished_run_says_so_and_how_to_extend(tmp_path, corpus):
    out = tmp_path / "run"
    _train(corpus, out, "--max-steps", "4", "--epochs", "0")
    before = (out / "metrics.jsonl").read_text()
    r = invoke(["train", "--resume", out])
    assert r.exit_code == 0, r.output
    assert "already finished" in r.output and "--max-steps 4" in r.output and "--epochs" in r.output
    assert "4 steps more is --max-steps 8" in r.output  # a budget is the whole run's
    assert len(r.output.strip().splitlines()) == 1
    assert "nan" not in r.output and "tokens/s" not in r.output
    assert (out / "metrics.jsonl").read_text() == before  # nothing ran
    r = invoke(["train", "--resume", out, "--max-steps", "6"])
    assert r.exit_code == 0 and checkpoint.load(out / "last.safetensors").progress["step"] == 6


def test_eval_and_generate_use_last_when_there_is_no_best(tmp_path, corpus):
    out = tmp_path / "run"
    _train(corpus, out, "--max-steps", "4", "--epochs", "0")
    (out / "best.safetensors").unlink()  # as after kill -9 before the first validation
    r = invoke(["generate", out, "--length", "5", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "using" in r.stderr and "last.safetensors" in r.stderr
    r = invoke(["eval", out, out / "valid.txt", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["tokens"] > 0 and "last.safetensors" in r.stderr
    (out / "last.safetensors").unlink()
    r = invoke(["eval", out, out / "valid.txt"])
    assert r.exit_code == 1 and "no checkpoint" in r.stderr


def test_init_from_keeps_weights_and_vocabulary_in_a_new_run(tmp_path, corpus):
    src = tmp_path / "src"
    _train(corpus, src, "--max-steps", "6", "--epochs", "0")
    new_text = make_corpus(tmp_path / "new.txt", seed=5)
    with open(new_text, "a", encoding="utf-8") as f:
        f.write("zebra quagga okapi\n" * 3)  # words the source never saw
    out = tmp_path / "tuned"
    # A learning rate so small that one step cannot move the weights: they are the source's.
    r = invoke(["train", new_text, "--init-from", src, "--out", out, "--lr", "1e-30", "--max-steps", "1",
                "--epochs", "0", "--batch-size", "2", "--bptt", "5"])
    assert r.exit_code == 0, r.output
    assert "<unk> rate of the training text" in r.output and "Fine-tuning from" in r.output
    a, b = checkpoint.load(src / "best.safetensors"), checkpoint.load(out / "last.safetensors")
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    assert b.model_cfg == a.model_cfg
    assert Tokenizer.from_json(b.tokenizer_json).to_json() == Tokenizer.from_json(a.tokenizer_json).to_json()
    assert b.progress["step"] == 1 and b.extra["adam.t"][0] == 1  # a fresh optimizer: one step of its own
    assert b.info["init_from"]["path"].endswith("best.safetensors")
    # A shape option that disagrees with the checkpoint names both values.
    r = invoke(["train", new_text, "--init-from", src, "--out", tmp_path / "x", "--hidden", "16", "--max-steps", "1"])
    assert r.exit_code == 1 and "--hidden 16 (the run has 8)" in r.stderr
    r = invoke(["train", new_text, "--init-from", src, "--out", tmp_path / "y", "--tokenizer", "char"])
    assert r.exit_code == 1 and "--tokenizer char (the run has word)" in r.stderr
    # The fine-tuning command typed again with --resume continues it; another source is refused.
    tune = ["train", new_text, "--init-from", src, "--out", out, "--lr", "1e-30", "--epochs", "0",
            "--batch-size", "2", "--bptt", "5", "--vocab-size", "10000"]
    r = invoke([*tune, "--max-steps", "3", "--resume", out])
    assert r.exit_code == 0, r.output
    assert checkpoint.load(out / "last.safetensors").progress["step"] == 3
    r = invoke([*tune[:3], tmp_path / "tuned", *tune[4:], "--max-steps", "4", "--resume", out])
    assert r.exit_code == 1 and "fine-tuned from" in r.stderr


def test_init_from_warns_when_the_new_text_is_mostly_unknown(tmp_path, corpus):
    src = tmp_path / "src"
    _train(corpus, src, "--max-steps", "4", "--epochs", "0")
    other = tmp_path / "other.txt"
    other.write_text("\n".join(f"lorem{i % 7} ipsum{i % 5} dolor" for i in range(80)) + "\n", encoding="utf-8")
    r = invoke(["train", other, "--init-from", src, "--out", tmp_path / "t", "--max-steps", "2", "--epochs", "0",
                "--batch-size", "2", "--bptt", "5"])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "<unk>" in r.stderr


def test_info_shows_the_run(tmp_path, corpus):
    out = tmp_path / "run"
    _train(corpus, out, "--max-steps", "6", "--epochs", "0", "--eval-every", "3")
    r = invoke(["info", out, "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["model"]["cell"] == "lstm" and info["model"]["hidden"] == 8
    V = info["tokenizer"]["vocab_size"]
    # embed V·8, one LSTM layer (8·32 + 8·32 + 32), head 8·V + V
    assert info["model"]["parameters"] == V * 8 + 8 * 32 * 2 + 32 + 8 * V + V
    assert info["tokenizer"]["kind"] == "word"
    assert info["train"]["batch_size"] == 2 and info["progress"]["step"] == 6
    best, last = info["progress"]["best_valid_ppl"], info["progress"]["last_valid_ppl"]
    assert math.isfinite(best) and math.isfinite(last) and best <= last
    assert info["corpus"]["files"] == ["tiny.txt"]
    r = invoke(["info", out])
    assert r.exit_code == 0 and "parameters" in r.stdout and "lstm 1×8" in r.stdout
    r = invoke(["info", tmp_path / "nothing"])
    assert r.exit_code == 1 and r.stderr.startswith("error: ")


def test_version():
    r = invoke(["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"lstmtext {__version__}"


def test_sample_every_prints_samples_while_training(tmp_path, corpus):
    out = tmp_path / "run"
    r = _train(corpus, out, "--max-steps", "8", "--epochs", "0", "--sample-every", "4", "--eval-every", "6")
    shown = [ln for ln in r.output.splitlines() if "sample at step" in ln]
    # Steps 4 and 8 by --sample-every, 6 at the --eval-every validation; 8 once, though it validates too.
    assert [ln.split("sample at step ")[1].split(":")[0] for ln in shown] == ["4", "6", "8"]
    assert all("<unk>" not in ln for ln in shown)
    logged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logged if x["kind"] == "sample"] == [4, 6, 8]
    # Characters: a line or two of text, not 30 characters; line ends shown as ↵, not as a "/" of the text.
    r = _train(corpus, tmp_path / "char", "--max-steps", "2", "--epochs", "0", "--sample-every", "2",
               "--tokenizer", "char")  # fmt: skip
    logged = [json.loads(x) for x in (tmp_path / "char" / "metrics.jsonl").read_text().splitlines()]
    text = next(x["text"] for x in logged if x["kind"] == "sample")
    assert len(text.replace(" ↵ ", "\n")) > 100 and "\n" not in text and " / " not in text


def test_a_jump_in_validation_perplexity_warns(tmp_path, corpus, monkeypatch):
    from lstmtext import trainer as train

    losses = iter([2.0, 1.5, 4.0, 1.4])  # perplexity 7.4, 4.5, then 54.6 (> 2 × 4.5), then 4.1
    monkeypatch.setattr(train.evaluate, "score", lambda *a, **k: (next(losses), 1))
    r = _train(corpus, tmp_path / "run", "--max-steps", "8", "--epochs", "0", "--eval-every", "2")
    warned = [ln for ln in r.output.splitlines() if "more than twice the best" in ln]
    assert len(warned) == 1 and "54.6" in warned[0] and "4.5" in warned[0] and "--lr" in warned[0]


def test_vocab_size_larger_than_the_text_says_the_real_size(tmp_path, corpus):
    r = _train(corpus, tmp_path / "run", "--max-steps", "2", "--epochs", "0", "--vocab-size", "100000")
    line = [ln for ln in r.output.splitlines() if "--vocab-size 100,000" in ln]
    V = checkpoint.load(tmp_path / "run" / "last.safetensors").model_cfg.vocab_size
    assert len(line) == 1 and f"{V:,} tokens" in line[0]


def test_threads_option_is_honoured(tmp_path, corpus):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    r = _train(corpus, tmp_path / "run", "--max-steps", "3", "--epochs", "0", "--threads", "1")
    assert "1 thr" in r.output
    blas = [d for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]
    assert blas and all(d["num_threads"] == 1 for d in blas)
    r = invoke(["train", corpus, "--out", tmp_path / "bad", "--threads", "-1", "--max-steps", "1"])
    assert r.exit_code == 1 and "--threads" in r.stderr


def test_bpe_samples_through_the_cli_are_valid_utf8_without_unk(tmp_path):
    lines = ["Der Bär läuft schnell über die Straße.", "Съешь же ещё этих мягких булок.",
             "Γαζέες καὶ μυρτιὲς δὲν θὰ βρῶ.", "いろはにほへと ちりぬるを 日本語の文章。",
             "Emoji 👍🏽 and café déjà vu — naïve 🎉.", "中文字符测试，这是一个句子。"]
    text = tmp_path / "mixed.txt"
    text.write_text("\n".join(lines[i % len(lines)] for i in range(240)) + "\n", encoding="utf-8")
    out = tmp_path / "bpe"
    r = invoke(["train", text, "--out", out, "--tokenizer", "bpe", "--vocab-size", "400", *TINY,
                "--max-steps", "20", "--epochs", "0"])
    assert r.exit_code == 0, r.output
    for seed in range(4):
        r = invoke(["generate", out, "--length", "1000", "--seed", seed, "--temperature", "1.5"])
        assert r.exit_code == 0, r.output
        assert "\ufffd" not in r.stdout and "<unk>" not in r.stdout
        assert len(r.stdout) > 300  # a real sample, not an empty one


def test_counts_read_as_words():
    from lstmtext.cli import count
    from lstmtext.config import TrainConfig
    from lstmtext.progress import Progress
    from lstmtext.schedule import finished_reason

    assert (count(1, "epoch"), count(2, "epoch"), count(1234, "file")) == ("1 epoch", "2 epochs", "1,234 files")
    one = Progress(epoch=2, step=9, last_valid_step=9, elapsed=1.0)
    assert finished_reason(TrainConfig(epochs=1), one) == "it completed its 1 epoch (--epochs 1)"
