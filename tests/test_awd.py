"""AWD-LSTM's parts (issue #31) where the gradient checks (test_gradients.py) do not reach: weight drop's
one mask per window, and the options through the command line: stored, shown, kept on resume, exact."""

import sys
from pathlib import Path

import numpy as np
import pytest
from test_cli import TINY, app, invoke, make_corpus, runner, whole_and_resumed

from lstmtext import batching, checkpoint, model, optim
from lstmtext.config import ModelConfig
from lstmtext.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project's root, where bench/ is
from bench import awd  # noqa: E402

AWD = ["--weight-drop", "0.5", "--dropout-kind", "locked", "--dropout", "0.2", "--dropout-in", "0.3",
       "--embed-dropout", "0.1", "--ar", "2", "--tar", "1"]


def test_weight_drop_is_one_mask_a_window_and_each_window_draws_its_own():
    """A window under weight drop is the window of a network whose W_h is W_h ⊙ M for every step; the
    next window, carried on from its state, draws another M."""
    rng = np.random.default_rng(0)
    cfg = ModelConfig(vocab_size=9, embed=5, hidden=6, layers=2, dropout=0.0, weight_drop=0.5)
    plain = ModelConfig(vocab_size=9, embed=5, hidden=6, layers=2, dropout=0.0)
    params = model.init_params(cfg, rng, np.float64)
    state = {k: rng.standard_normal(v.shape) for k, v in model.init_state(cfg, 3, np.float64).items()}
    ids = rng.integers(0, 9, size=(8, 3))
    draws = np.random.default_rng(7)
    loss1, nll1, c1, s1 = model.forward(params, cfg, ids[:4], ids[1:5], state, draws)
    loss2, nll2, c2, s2 = model.forward(params, cfg, ids[4:7], ids[5:8], s1, draws)
    assert not np.array_equal(c1.weight_masks[0], c2.weight_masks[0])
    windows = (((ids[:4], ids[1:5], state), c1, nll1, s1), ((ids[4:7], ids[5:8], s1), c2, nll2, s2))
    for (x, y, s), c, nll, after in windows:
        masked = {k: v * c.weight_masks[int(k.split(".")[1])] if k.endswith(".W_h") else v for k, v in params.items()}
        _, want, _, want_after = model.forward(masked, plain, x, y, s, None)  # no generator: nothing drawn
        np.testing.assert_allclose(nll, want, rtol=1e-13)
        for k in after:
            np.testing.assert_allclose(after[k], want_after[k], rtol=1e-13)


def test_the_options_refuse_what_they_cannot_mean():
    with pytest.raises(ConfigError, match="W_h, which the mingru cell does not have"):
        ModelConfig(vocab_size=9, embed=4, hidden=4, layers=1, dropout=0.0, cell="mingru", weight_drop=0.3)
    with pytest.raises(ConfigError, match="--dropout-kind must be step or locked"):
        ModelConfig(vocab_size=9, embed=4, hidden=4, layers=1, dropout=0.0, dropout_kind="variational")
    with pytest.raises(ConfigError, match=r"--embed-dropout must be in \[0, 1\)"):
        ModelConfig(vocab_size=9, embed=4, hidden=4, layers=1, dropout=0.0, embed_dropout=1.0)
    apart = ModelConfig(vocab_size=9, embed=4, hidden=4, layers=1, dropout=0.25, dropout_out=0.5)
    assert (apart.dropout_in, apart.dropout_out) == (0.25, 0.5)  # stored as the rates they stand for


def test_a_run_with_every_regulariser_resumes_bit_for_bit_and_says_what_it_uses(tmp_path):
    corpus = make_corpus(tmp_path / "tiny.txt")
    common = [corpus, *TINY, *AWD, "--optimizer", "adam", "--epochs", "0", "--seed", "3", "--schedule", "constant",
              "--dtype", "float64"]
    a, _, _ = whole_and_resumed(tmp_path, common, "10", "4")
    assert a.model_cfg.weight_drop == 0.5 and a.model_cfg.dropout_kind == "locked" and a.model_cfg.tar == 1.0
    shown = runner.invoke(app, ["info", str(tmp_path / "a")], env={"COLUMNS": "200"}).output
    assert "locked dropout, dropout-in 0.3, embed-dropout 0.1, weight-drop 0.5, ar 2, tar 1" in shown
    assert "bptt 5, seed 3" in shown and "weight decay" not in shown
    r = invoke(["train", "--resume", tmp_path / "b", "--weight-drop", "0.3", "--max-steps", "12"])
    assert r.exit_code == 1 and "--weight-drop 0.3 (the run has 0.5)" in r.output


def test_nt_asgd_trigger_is_awd_lstms():
    """AWD-LSTM's main.py: switch when len(seen) > nonmono and val > min(seen[:-nonmono])."""
    assert not optim.stalled([5.0, 4.0], 9.0, 2)  # too few validations yet
    assert optim.stalled([5.0, 4.0, 4.2], 5.5, 2)  # worse than the best before the last two
    assert not optim.stalled([5.0, 4.0, 4.2], 4.5, 2)  # worse than recent ones only: not yet
    assert optim.stalled([5.0, 4.0, 4.2, 4.3], 4.1, 2)  # now 4.0 is before the last two


def test_nt_asgd_averages_the_iterates_from_the_trigger_on():
    rng = np.random.default_rng(1)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    state = optim.init_state("nt-asgd", params)
    iterates = []
    for t in range(7):
        if t == 3:
            optim.start_averaging(params, state)
            iterates.append({k: v.copy() for k, v in params.items()})
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        want = {k: params[k] - 0.3 * grads[k] for k in params}
        optim.step("nt-asgd", params, grads, state, 0.3)
        for k in params:
            np.testing.assert_allclose(params[k], want[k], rtol=1e-15)  # the steps are SGD's
        if optim.averaging(state):
            iterates.append({k: v.copy() for k, v in params.items()})
    assert int(state["asgd.n"][0]) == len(iterates) == 5  # the weights at the trigger, then 4 steps
    avg = optim.averaged(params, state)
    for k in params:
        np.testing.assert_allclose(avg[k], np.mean([it[k] for it in iterates], axis=0), rtol=1e-13)
    swapped, kept = optim.swap_average(params, state)
    assert swapped["a"] is avg["a"] and kept["asgd.avg.a"] is params["a"]
    back, again = optim.swap_average(swapped, kept)
    assert back["a"] is params["a"] and again["asgd.avg.a"] is avg["a"]


def test_an_nt_asgd_run_validates_and_saves_the_average_and_resumes_bit_for_bit(tmp_path):
    corpus = make_corpus(tmp_path / "tiny.txt", lines=120)
    common = [corpus, *TINY, "--optimizer", "nt-asgd", "--lr", "8", "--nonmono", "1", "--eval-every", "1",
              "--epochs", "0", "--seed", "3", "--dtype", "float64"]
    a, _, output = whole_and_resumed(tmp_path, common, "16", "9")
    assert "averaging the weights from step" in output
    assert a.train_cfg.schedule == "constant"  # NT-ASGD's averaging is its annealing
    # The checkpoint's weights are the average; its state keeps the iterate training goes on from.
    assert int(a.extra["asgd.n"][0]) > 1
    assert not np.array_equal(a.params["layers.0.W_h"], a.extra["asgd.avg.layers.0.W_h"])
    best = checkpoint.load(tmp_path / "a" / "best.safetensors")
    assert set(best.params) == set(a.params)


def test_nt_asgd_before_its_trigger_is_sgd_to_the_bit(tmp_path):
    """Until validation stalls NT-ASGD takes SGD's steps and saves SGD's weights: the ablation's row
    without it (SGD in its place) differs from the whole recipe only once the trigger has come."""
    corpus = make_corpus(tmp_path / "tiny.txt", lines=120)
    common = [corpus, *TINY, "--lr", "8", "--nonmono", "50", "--eval-every", "2", "--epochs", "0", "--seed", "3",
              "--dtype", "float64", "--schedule", "wsd", "--max-steps", "12", "--rollback", "0", "--plateau", "0"]
    got = {}
    for kind in ("nt-asgd", "sgd"):
        r = invoke(["train", *common, "--optimizer", kind, "--out", tmp_path / kind])
        assert r.exit_code == 0, r.output
        got[kind] = checkpoint.load(tmp_path / kind / "last.safetensors")
    assert int(got["nt-asgd"].extra["asgd.n"][0]) == 0  # never triggered
    for k, v in got["sgd"].params.items():
        np.testing.assert_array_equal(got["nt-asgd"].params[k], v)


def test_jittered_windows_cover_each_stream_once_and_resume_where_they_were():
    streams = np.arange(2003 * 3).reshape(2003, 3)
    lengths = batching.jittered_lengths(2003, 35, np.random.default_rng(0))
    assert sum(lengths) == 2002 and min(lengths[:-1]) >= batching.JITTER_MIN and max(lengths) <= 35 + 20
    assert 30 < np.mean(lengths[:-1]) < 36 and any(T < 25 for T in lengths)  # some around bptt/2
    got = list(batching.windows(streams, 35, 0, lengths))
    assert [x.shape[0] for x, _ in got] == lengths
    np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), streams[:-1])
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), streams[1:])
    later = list(batching.windows(streams, 35, 7, lengths))
    np.testing.assert_array_equal(later[0][0], got[7][0])
    assert lengths != batching.jittered_lengths(2003, 35, np.random.default_rng(1))


def test_bptt_jitter_scales_the_lr_by_the_window_and_resumes_bit_for_bit(tmp_path, monkeypatch):
    from lstmtext import trainer

    corpus = make_corpus(tmp_path / "tiny.txt", lines=200)
    common = [corpus, *TINY, "--bptt-jitter", "--bptt", "12", "--optimizer", "sgd", "--lr", "2", "--schedule",
              "constant", "--epochs", "2", "--seed", "4", "--dtype", "float64"]
    seen = []
    step = trainer.Trainer.step

    def recording(self, windows, lr):
        seen.append((sum(x.shape[0] for x, _ in windows), lr))
        return step(self, windows, lr)

    monkeypatch.setattr(trainer.Trainer, "step", recording)
    assert invoke(["train", *common, "--out", tmp_path / "a"]).exit_code == 0
    assert len({T for T, _ in seen}) > 3  # varied windows
    for T, lr in seen:
        assert lr == pytest.approx(2 * T / 12, rel=1e-12)
    monkeypatch.setattr(trainer.Trainer, "step", step)
    a, _, _ = whole_and_resumed(tmp_path / "split", common, "0", "7")  # 0: the two epochs, no step limit
    assert a.progress["step"] == len(seen)


def test_dropout_in_and_out_follow_the_dropout_the_size_chooser_picks(tmp_path):
    """Left out, --dropout-in and --dropout-out are --dropout's rate, also when the run chose it."""
    corpus = make_corpus(tmp_path / "tiny.txt")
    r = invoke(["train", corpus, *TINY, "--epochs", "10", "--out", tmp_path / "r"])  # no --dropout: chosen
    assert r.exit_code == 0, r.output
    m = checkpoint.load(tmp_path / "r" / "last.safetensors").model_cfg
    assert m.dropout > 0 and m.dropout_in == m.dropout_out == m.dropout
    r = invoke(["train", corpus, *TINY, "--epochs", "10", "--dropout-out", "0", "--out", tmp_path / "s"])
    m = checkpoint.load(tmp_path / "s" / "last.safetensors").model_cfg
    assert m.dropout > 0 and m.dropout_in == m.dropout and m.dropout_out == 0.0


def test_make_reproduce_awds_flags_after_the_recipe_are_the_ones_kept(tmp_path):
    """bench.awd --also appends flags to the recipe's; the command line keeps an option's last value."""
    got = awd.flags("full", "--weight-drop 0.25")
    assert got[: len(awd.flags("full"))] == awd.flags("full") and got[-2:] == ["--weight-drop", "0.25"]
    assert "--weight-drop" not in awd.flags("-weight-drop") and awd.flags("-nt-asgd").count("sgd") == 1
    corpus = make_corpus(tmp_path / "tiny.txt")
    run = tmp_path / "run"
    r = invoke(["train", corpus, *TINY, "--max-steps", "2", "--epochs", "0", "--out", run, "--weight-drop", "0.5",
                "--weight-drop", "0.25"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert checkpoint.load(run / "last.safetensors").model_cfg.weight_drop == 0.25


def fake_subprocess(commands: list, interrupt_dynamic: bool = False):
    """bench.awd's subprocess.run without processes: records each command (as strings); a train makes
    the run's folder and a metrics line, an eval answers perplexity 90; interrupt_dynamic: the first
    dynamic evaluation is stopped, as when the session ends during the slowest one."""

    def fake_run(cmd, **kw):
        commands.append([str(c) for c in cmd])
        if cmd[1] == "train":
            run = Path(cmd[cmd.index("--out") + 1])
            run.mkdir(parents=True, exist_ok=True)
            (run / "metrics.jsonl").write_text('{"kind": "valid", "ppl": 99.0}\n')
            return None
        if interrupt_dynamic and "--dynamic" in cmd and sum("--dynamic" in c for c in commands) == 1:
            raise KeyboardInterrupt
        return type("Done", (), {"stdout": '{"perplexity": 90.0}'})()

    return fake_run


def test_a_run_stopped_in_its_evaluations_is_scored_again_not_trained_again(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(awd.subprocess, "run", fake_subprocess(commands, interrupt_dynamic=True))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        awd.one("-ar-tar", 1.0, tmp_path, out, "")
    r = awd.one("-ar-tar", 1.0, tmp_path, out, "")
    calls = ["dynamic" if "--dynamic" in c else c[1] for c in commands]
    assert calls == ["train", "eval", "dynamic", "eval", "dynamic", "eval"] and r["plain"]["perplexity"] == 90.0
    r = awd.one("-ar-tar", 1.0, tmp_path, out, "--ar 1")  # other flags: trained anew
    assert commands[6][1] == "train" and r["flags"][-2:] == ["--ar", "1"]


def test_a_step_budget_trains_those_steps_and_no_clock(tmp_path, monkeypatch):
    """bench.awd --steps N: `train --max-steps N` in place of --max-minutes, kept apart from a clock run."""
    commands = []
    monkeypatch.setattr(awd.subprocess, "run", fake_subprocess(commands))
    r = awd.one("-weight-decay", 40.0, tmp_path, tmp_path, "", steps=4909)
    train = commands[0]
    assert train[train.index("--max-steps") + 1] == "4909" and "--max-minutes" not in train and r["steps"] == 4909
    awd.one("-weight-decay", 40.0, tmp_path, tmp_path, "")  # the same run on the clock: trained anew
    assert commands[4][1] == "train" and "--max-minutes" in commands[4] and "--max-steps" not in commands[4]
