"""The model size chosen when the person gives none (lstmtext.sizing): a function of the text's size,
the budget and the measured speed, and a size option given always wins."""

import json

import pytest
from test_cli import invoke, make_corpus

from lstmtext import checkpoint, data, sizing

FAST = sizing.Speed(step_s=2e-5, flops_per_s=5e10)  # a machine like this one, when quiet
SLOW = sizing.Speed(step_s=2e-4, flops_per_s=5e9)  # ten times slower


def budget(minutes=0.0, epochs=0, steps=0, tokens=1_000_000) -> sizing.Budget:
    return sizing.Budget(epochs, steps, minutes, tokens, batch=32, bptt=64)


def shape(c: sizing.Choice) -> tuple[int, int]:
    return c.layers, c.hidden


def test_the_same_inputs_give_the_same_size():
    picks = {shape(sizing.choose("char", 66, budget(minutes=1.5), FAST, {})) for _ in range(3)}
    assert len(picks) == 1


def test_more_time_or_a_faster_machine_never_gives_a_smaller_model():
    sizes = [sizing.trained_params(*shape(sizing.choose("char", 66, budget(minutes=m, tokens=3_000_000), FAST, {})),
                                   64, 66) for m in (0.5, 2, 10, 60, 600)]  # fmt: skip
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    fast, slow = (sizing.choose("char", 66, budget(minutes=10, tokens=3_000_000), s, {}) for s in (FAST, SLOW))
    assert fast.params > slow.params


def test_a_small_text_keeps_the_model_small_whatever_the_budget():
    big_text = sizing.choose("char", 66, budget(minutes=600, tokens=20_000_000), FAST, {})
    small_text = sizing.choose("char", 66, budget(minutes=600, tokens=100_000), FAST, {})
    assert small_text.params <= sizing.PARAMS_PER_TOKEN * 100_000 < big_text.params
    # A word model's head alone outgrows a tiny text: the smallest shape, with the most dropout.
    tiny = sizing.choose("word", 5_000, budget(minutes=600, tokens=20_000), FAST, {})
    assert shape(tiny) == sizing.LADDER[0] and tiny.dropout == sizing.SMALL_TEXT_DROPOUT


def test_each_chosen_size_sees_enough_tokens_for_its_parameters():
    for minutes in (1, 5, 30):
        c = sizing.choose("char", 66, budget(minutes=minutes), FAST, {})
        if shape(c) != sizing.LADDER[0]:  # the smallest is taken when nothing fits
            assert c.tokens >= sizing.TOKENS_PER_PARAM * c.params


def test_epoch_and_step_budgets_need_no_speed():
    by_epochs = sizing.choose("char", 66, budget(epochs=20), None, {})
    by_steps = sizing.choose("char", 66, budget(steps=20 * 1_000_000 // (32 * 64)), None, {})
    assert by_epochs.tokens == pytest.approx(20_000_000) and shape(by_epochs) == shape(by_steps)


def test_dropout_follows_the_passes_over_the_text():
    once = sizing.choose("char", 66, budget(epochs=1), None, {})
    many = sizing.choose("char", 66, budget(epochs=40), None, {})
    assert once.dropout == 0.0 < many.dropout and many.passes == pytest.approx(40)


def test_the_most_dropout_goes_to_a_text_too_small_for_the_model():
    # The same many passes: a text the model fits keeps the passes' dropout, a smaller one gets more.
    fits = sizing.choose("char", 66, budget(epochs=200, tokens=3_000_000), None, {})
    too_small = sizing.choose("char", 66, budget(epochs=200, tokens=20_000), None, {})
    assert fits.params <= sizing.PARAMS_PER_TOKEN * 3_000_000 and too_small.params > sizing.PARAMS_PER_TOKEN * 20_000
    assert fits.dropout == sizing.DROPOUT_BY_PASSES[-1][1] < too_small.dropout == sizing.SMALL_TEXT_DROPOUT
    # Read only a few times, even a text too small for the model is not given the most.
    assert sizing.dropout_for(5.0, 10**6, 1_000) < sizing.SMALL_TEXT_DROPOUT


def test_a_given_size_option_wins():
    c = sizing.choose("word", 10_000, budget(minutes=60), FAST, {"hidden": 96, "dropout": 0.4})
    assert c.hidden == 96 and c.dropout == 0.4
    c = sizing.choose("word", 10_000, budget(minutes=60), FAST, {"layers": 3})
    assert c.layers == 3
    tied = sizing.choose("word", 10_000, budget(minutes=60), FAST, {}, tie=True)
    assert tied.embed == tied.hidden


def test_the_fit_recovers_the_speed_that_made_the_timings():
    true = sizing.Speed(step_s=3e-5, flops_per_s=4e10, update_s=2e-9)
    # what measure() times: a forward and backward, the update apart
    timed = [(true.window_seconds(1, h, 64, 66, 32, 16) - (sizing.trained_params(1, h, 64, 66) + 66 * 64)
              * true.update_s, sizing.training_flops(1, h, 64, 66, 32, 16)) for h in (128, 512)]  # fmt: skip
    got = sizing.fit(timed[0], timed[1], 16, true.update_s)
    assert got.step_s == pytest.approx(true.step_s) and got.flops_per_s == pytest.approx(true.flops_per_s)


def test_measure_leaves_the_blas_thread_count_as_it_found_it():
    from lstmtext import threads
    from lstmtext.config import ModelConfig, TrainConfig

    before = threads.blas_threads()
    small = ModelConfig(vocab_size=50, embed=8, hidden=8, layers=1, dropout=0.2)
    speed = sizing.measure(small, TrainConfig(batch_size=4, epochs=1), 1)
    assert threads.blas_threads() == before and speed.flops_per_s > 0


def test_a_tied_model_gives_one_size_to_both_whichever_is_given():
    for given in ({"hidden": 96}, {"embed": 96}):
        c = sizing.choose("word", 10_000, budget(minutes=60), FAST, given, tie=True)
        assert c.hidden == c.embed == 96
    assert sizing.placeholders({"hidden": None, "embed": 96, "layers": None, "dropout": None, "tie": True}) == {
        "hidden": 96, "embed": 96, "layers": 1, "dropout": 0.0, "tie": True}


def test_train_says_what_it_chose_and_info_shows_it(tmp_path):
    corpus = make_corpus(tmp_path / "c.txt", lines=80)
    out = tmp_path / "run"
    r = invoke(["train", corpus, "--out", out, "--max-steps", "2", "--batch-size", "2", "--bptt", "5",
                "--threads", "1"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "Model size (--layers, --hidden, --embed, --dropout not given) chosen for the budget" in r.output
    ckpt = checkpoint.load(out / "last.safetensors")
    assert (ckpt.model_cfg.layers, ckpt.model_cfg.hidden) == sizing.LADDER[0]  # 2 steps: the smallest
    info = json.loads(invoke(["info", out, "--json"]).output)
    assert info["size_choice"].startswith(f"{ckpt.model_cfg.layers}×{ckpt.model_cfg.hidden}")
    assert "Vocabulary (--vocab-size not given): at most 400 BPE tokens" in r.output  # a tiny text: the floor
    assert info["vocab_choice"].startswith("at most 400 BPE tokens")
    r = invoke(["train", corpus, "--out", out, "--max-steps", "3", "--batch-size", "2", "--bptt", "5",
                "--threads", "1", "--resume", out])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(invoke(["info", out, "--json"]).output)["vocab_choice"] == info["vocab_choice"]
    r = invoke(["train", corpus, "--out", tmp_path / "given", "--max-steps", "2", "--batch-size", "2", "--bptt", "5",
                "--hidden", "24", "--threads", "1"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "(--layers, --embed, --dropout not given)" in r.output
    r = invoke(["train", corpus, "--out", tmp_path / "vocab", "--max-steps", "1", "--batch-size", "2", "--bptt", "5",
                "--vocab-size", "300", "--threads", "1"])  # fmt: skip
    assert r.exit_code == 0 and "Vocabulary (--vocab-size not given)" not in r.output, r.output
    assert json.loads(invoke(["info", tmp_path / "vocab", "--json"]).output)["vocab_choice"] is None
    assert checkpoint.load(tmp_path / "given" / "last.safetensors").model_cfg.hidden == 24


def test_bpe_vocabulary_grows_with_the_square_root_of_the_text():
    assert sizing.vocab_for("bpe", 1_000_000) == 2_000
    assert sizing.vocab_for("bpe", 4_000_000) == 4_000  # 4 × the text, 2 × the vocabulary
    assert sizing.vocab_for("bpe", 90_000) == 600
    # Clamped at both ends: a tiny text still gets merges, a huge one a head a laptop can train.
    assert sizing.vocab_for("bpe", 100) == sizing.BPE_VOCAB_RANGE[0]
    assert sizing.vocab_for("bpe", 10**12) == sizing.BPE_VOCAB_RANGE[1]
    # Word and character vocabularies keep their cap whatever the size.
    assert sizing.vocab_for("word", 90_000) == sizing.vocab_for("char", 10**9) == sizing.WORD_VOCAB
    assert "2,000 BPE tokens" in sizing.vocab_reason("bpe", 1_000_000, 2_000)


def test_characters_when_bpe_would_read_the_text_often_and_characters_would_not():
    bpe, char = sizing.CHAR_PASSES, sizing.CHAR_ROOM
    assert not sizing.reads_characters(bpe, None) and sizing.reads_characters(bpe + 0.1, None)  # worth a look
    assert sizing.reads_characters(bpe + 0.1, char - 0.1) and not sizing.reads_characters(bpe + 0.1, char)
    assert not sizing.reads_characters(bpe, 1.0)
    # ... and only where more than NEW_WORDS of the held-out text's words are new.
    new = sizing.NEW_WORDS
    assert sizing.reads_characters(bpe + 0.1, char - 0.1, None)  # not counted yet: worth counting
    assert sizing.reads_characters(bpe + 0.1, char - 0.1, new + 0.001)
    assert not sizing.reads_characters(bpe + 0.1, char - 0.1, new)
    assert not sizing.reads_characters(bpe, char - 0.1, 1.0) and not sizing.reads_characters(bpe + 0.1, char, 1.0)


def test_new_words_are_the_held_out_words_the_training_text_never_uses():
    train = ["The cat sat.\n", "Le chat, 42 fois: éléphant_x\n"]
    # Words are runs of letters in any script, case kept, each occurrence counted: "the" and "Dog"
    # are new, "cat" and "éléphant" are not (the digits and the underscore split words).
    assert sizing.new_word_share(iter(train), iter(["the cat, Dog!\n", "éléphant 7 cat\n"])) == 2 / 5
    assert sizing.new_word_share(train, ["The cat\n"]) == 0.0
    assert sizing.new_word_share(train, ["12 + 7 = 19\n"]) == 0.0  # no words: nothing new
    assert sizing.new_word_share([], ["a b\n"]) == 1.0


def test_a_text_a_budget_in_minutes_would_read_many_times_as_bpe_is_read_as_characters(tmp_path, monkeypatch):
    from rich.console import Console

    import lstmtext

    corpus = make_corpus(tmp_path / "c.txt", lines=80)  # about 1,000 BPE tokens
    with open(corpus, "a", encoding="utf-8") as f:  # the held-out end in words the rest never uses
        f.write("zebra quokka fjord.\n" * 9)
    reused = make_corpus(tmp_path / "r.txt", lines=90)  # held out in the words of the rest
    # --plateau 0: a resume with more time must go on, however the tiny run's validations fell
    small = ["--batch-size", "2", "--bptt", "5", "--threads", "1", "--plateau", "0", "--max-minutes", "0.01"]
    faster = sizing.Speed(step_s=FAST.step_s / 100, flops_per_s=FAST.flops_per_s * 100)

    def train(out, speed, *flags, char_speed=None, text=corpus):
        """speed: the BPE model's measured speed; char_speed: the character model's (else the same)."""
        monkeypatch.setattr(sizing, "measure", lambda m, c: speed if m.vocab_size >= 256 else char_speed or speed)
        r = invoke(["train", text, "--out", tmp_path / out, *small, *flags])
        assert r.exit_code == 0, r.output
        return r.output, checkpoint.load_model(tmp_path / out / "last.safetensors")[1].kind

    # In 0.6 s the faster machine reads the text some 400 times as BPE, SLOW about twice. Characters
    # when BPE would read it more than 42 times and characters fewer than 6, and the held-out text
    # has words the training text does not.
    said, kind = train("many", faster, char_speed=SLOW)
    assert kind == "char" and "Tokenizer (--tokenizer not given): characters, since as BPE" in said, said
    assert "% of the held-out text's words are not in the training text" in said, said
    said, kind = train("reused", faster, char_speed=SLOW, text=reused)
    assert kind == "bpe" and "is written in the training text's words (0.0% new" in said, said
    info = json.loads(invoke(["info", tmp_path / "many", "--json"]).output)
    assert info["tokenizer_choice"].startswith("characters") and info["tokenizer"]["kind"] == "char"
    said, kind = train("both", faster)
    assert kind == "bpe" and "Tokenizer (--tokenizer not given): bpe: it would read" in said, said
    assert "but characters would too" in said, said
    # The characters' probe left the run's id cache (which eval --dynamic reads) to the tokenizer chosen.
    for out in ("many", "both", "reused"):
        tok = checkpoint.load_model(tmp_path / out / "last.safetensors")[1]
        assert data.cached_ids(tmp_path / out / "train-ids.npy", tok) is not None, out
    said, kind = train("few", SLOW)
    assert kind == "bpe" and "Tokenizer (--tokenizer not given): bpe, which would read" in said, said
    # The first command typed again, with --resume and more time, goes on; or with the chosen tokenizer
    # typed; the other tokenizer typed is a changed option.
    for typed in ([], ["--tokenizer", "char"]):
        more = str(0.05 * (1 + len(typed)))  # more than a validation takes, on a busy machine too
        r = invoke(["train", corpus, *small[:-1], more, *typed, "--resume", tmp_path / "many"])
        assert r.exit_code == 0 and "Resuming" in r.output, r.output
    r = invoke(["train", corpus, *small[:-1], "0.1", "--tokenizer", "bpe", "--resume", tmp_path / "many"])
    assert r.exit_code == 1 and "tokenizer" in r.output, r.output
    # A tokenizer typed, or one a word option or --vocab-size implies, and a budget not only in minutes, are kept.
    for out, flags in (("typed", ["--tokenizer", "bpe"]), ("vocab", ["--vocab-size", "300"]),
                       ("epochs", ["--epochs", "50"])):  # fmt: skip
        said, kind = train(out, faster, *flags)
        assert kind == "bpe" and "Tokenizer (" not in said, said
    # The API's keyword is as typed, though it names the old default.
    run = lstmtext.train(corpus, out=tmp_path / "api", tokenizer="bpe", max_minutes=0.01, batch_size=2, bptt=5,
                         threads=1, console=Console(quiet=True))  # fmt: skip
    assert run.model().tokenizer.kind == "bpe"
