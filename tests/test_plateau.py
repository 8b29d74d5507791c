"""--plateau: a run whose validation has stopped improving while wsd holds its rate goes back to its
best weights, decays from there, and ends when the decay does (schedule.plateaued, end_plan_now;
lstmtext.trainer.Trainer.settle)."""

import itertools
import json
import math

import numpy as np
import pytest
from test_cli import TINY, invoke, make_corpus
from test_schedule import _interrupt_at

from lstmtext import checkpoint, evaluate, schedule, trainer
from lstmtext.config import TrainConfig
from lstmtext.progress import Progress
from lstmtext.trainer import Trainer

LR = 0.01
UP = math.log(1.5) + math.log1p(0.03)  # a perplexity 3% above a best of 1.5's
NEAR = math.log(1.5) + math.log1p(0.01)  # 1% above: inside the margin


def test_the_trigger_wants_the_last_validations_all_above_the_best():
    best = math.log(1.5)
    assert schedule.plateaued([2.0, best, UP, UP, UP], best, 0.02)
    assert not schedule.plateaued([2.0, best, UP, UP, UP], best, 0.0)  # off
    assert not schedule.plateaued([2.0, best, UP, UP, UP], best, 0.05)  # 3% is inside a 5% margin
    assert not schedule.plateaued([2.0, best, UP, UP], best, 0.02)  # two are not enough
    assert not schedule.plateaued([2.0, best, UP, NEAR, UP], best, 0.02)  # one near the best
    # Twenty validations: the last fifth is four, and one of them is near the best ...
    assert not schedule.plateaued([2.0, best, *[UP] * 14, NEAR, UP, UP, UP], best, 0.02)
    # ... and twenty-five: the last five, all above.
    assert schedule.plateaued([2.0, best, *[UP] * 17, NEAR, *[UP] * 5], best, 0.02)


def test_the_decay_starts_where_the_plan_is_cut_and_takes_its_share_of_the_shorter_plan():
    cfg = TrainConfig(lr=1.0, epochs=0, max_minutes=10.0)  # wsd: warm-up 0.02, decay over the last 0.2
    prog = Progress(elapsed=120.0, step=500)
    assert schedule.holding(cfg, prog, 10)
    before = schedule.learning_rate(cfg, prog, 10)
    schedule.end_plan_now(cfg, prog, 10)
    assert prog.plan_end == pytest.approx(0.25) and prog.plateau_step == 500  # 2 minutes of 10: the plan ends at 2.5
    assert not schedule.holding(cfg, prog, 10)  # once only
    assert schedule.learning_rate(cfg, prog, 10) == pytest.approx(before) == 1.0  # no jump
    prog.elapsed = 135.0  # half way down
    assert schedule.learning_rate(cfg, prog, 10) == pytest.approx(0.55)
    assert schedule.seconds_left(cfg, prog, 10) == pytest.approx(15.0)
    assert not schedule.plan_over(cfg, prog, 10)
    prog.elapsed = 150.0
    assert schedule.learning_rate(cfg, prog, 10) == pytest.approx(cfg.lr_floor)
    assert schedule.plan_over(cfg, prog, 10) and prog.plan_ended
    assert "decay was brought forward to step 500" in schedule.finished_reason(cfg, prog)
    # Not while warming up or decaying, nor under another schedule.
    assert not schedule.holding(cfg, Progress(elapsed=6.0), 10)
    assert not schedule.holding(cfg, Progress(elapsed=500.0), 10)
    cosine = TrainConfig(lr=1.0, epochs=0, max_minutes=10.0, schedule="cosine")
    assert not schedule.holding(cosine, Progress(elapsed=120.0), 10)
    sudden = TrainConfig(lr=1.0, epochs=0, max_minutes=10.0, cooldown=0.0)  # no decay to bring forward
    assert not schedule.holding(sudden, Progress(elapsed=120.0), 10)


def lines(run, kind):
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_a_stalled_run_decays_from_its_best_weights_and_ends_early(tmp_path, monkeypatch):
    """Validations every 2 steps of a 40-step budget: 2.0, a best of 1.5 at step 4, then 1.6 (7%
    above) from then on: the third of those (step 10) cuts the plan to 10 / 40 / 0.8 of the budget:
    12.5 steps, the decay over steps 11-13."""
    corpus = make_corpus(tmp_path / "c.txt", lines=120)
    common = [corpus, *TINY, "--epochs", "0", "--eval-every", "2", "--lr", str(LR), "--rollback", "0",
              "--log-every", "1"]  # fmt: skip
    seen = []
    original = Trainer.settle

    def spy(self):
        original(self)
        best = checkpoint.load(self.out / "best.safetensors").params
        seen.append({
            "step": self.prog.step,
            "best weights": all(np.array_equal(self.params[k], best[k]) for k in best),
            "optimizer kept": any(v.any() for v in self.opt_state.values()),
            "zero state": not any(v.any() for v in self.state.values()),
        })

    def script():
        losses = itertools.chain([2.0, math.log(1.5)], itertools.repeat(math.log(1.6)))
        monkeypatch.setattr(evaluate, "score", lambda *a, **k: (next(losses) * 100, 100))

    monkeypatch.setattr(Trainer, "settle", spy)
    script()
    run = tmp_path / "run"
    r = invoke(["train", *common, "--out", run, "--max-steps", "40"])
    assert r.exit_code == 0, r.output
    assert "stopped improving: the last validations are all more than 2% above the best perplexity (1.50, step 4)" in (
        r.output
    ), r.output
    assert seen == [{"step": 10, "best weights": True, "optimizer kept": True, "zero state": True}]
    prog = checkpoint.load(run / "last.safetensors").progress
    assert prog["step"] == 13 and prog["plan_end"] == pytest.approx(0.3125) and prog["plan_ended"]
    rates = {t["step"]: t["lr"] for t in lines(run, "train")}
    assert [rates[s] / LR for s in (11, 12, 13)] == pytest.approx([1.0, 0.64, 0.28])
    assert [p["step"] for p in lines(run, "plateau")] == [10]
    end = lines(run, "end")[0]
    assert end["stop"] == "plateau" and "validation stopped improving (--plateau)" in end["stop_reason"]
    # A resume finds the run finished, and points at a new run from its best weights; another budget,
    # which would move the cut plan's end, is refused.
    r = invoke(["train", *common, "--max-steps", "40", "--resume", run])
    assert r.exit_code == 0 and "decay was brought forward to step 10" in r.output, r.output
    assert f"--init-from {run}/best.safetensors" in r.output.replace("\n", ""), r.output
    r = invoke(["train", *common, "--max-steps", "80", "--resume", run])
    assert r.exit_code == 1 and "its budget can no longer change (--max-steps given)" in r.output, r.output
    assert checkpoint.load(run / "last.safetensors").progress["step"] == 13
    # --plateau 0: the same validations, the whole budget at the planned rate.
    script()
    r = invoke(["train", *common, "--out", tmp_path / "off", "--max-steps", "40", "--plateau", "0"])
    assert r.exit_code == 0 and "stopped improving" not in r.output, r.output
    assert checkpoint.load(tmp_path / "off" / "last.safetensors").progress["step"] == 40
    assert len(seen) == 1


def test_plateau_is_off_for_other_schedules_and_refuses_a_negative_margin(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "c.txt", lines=120)
    losses = itertools.chain([2.0, math.log(1.5)], itertools.repeat(math.log(1.6)))
    monkeypatch.setattr(evaluate, "score", lambda *a, **k: (next(losses) * 100, 100))
    common = [corpus, *TINY, "--epochs", "0", "--eval-every", "2", "--rollback", "0", "--max-steps", "20"]
    r = invoke(["train", *common, "--out", tmp_path / "cos", "--schedule", "cosine"])
    assert r.exit_code == 0 and "stopped improving" not in r.output, r.output
    r = invoke(["train", *common, "--out", tmp_path / "neg", "--plateau", "-0.1"])
    assert r.exit_code == 1 and "--plateau must not be negative" in r.output, r.output


def scripted(monkeypatch, valid, train=None):
    """Validation losses from `valid`, then the last one forever; training losses likewise, if given."""
    losses = itertools.chain(valid, itertools.repeat(valid[-1]))
    monkeypatch.setattr(evaluate, "score", lambda *a, **k: (next(losses) * 100, 100))
    if train is not None:
        steps, real = itertools.chain(train, itertools.repeat(train[-1])), trainer.accumulated_step
        monkeypatch.setattr(trainer, "accumulated_step", lambda *a: (next(steps), *real(*a)[1:]))


STALLS = [2.0, math.log(1.5), math.log(1.6)]  # a best at the second validation, 7% above it after


def test_a_run_interrupted_in_its_decay_resumes_into_the_same_plan(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "c.txt", lines=120)
    common = [corpus, *TINY, "--epochs", "0", "--eval-every", "2", "--lr", str(LR), "--rollback", "0",
              "--log-every", "1", "--dropout", "0", "--max-steps", "40"]  # fmt: skip
    scripted(monkeypatch, STALLS)
    assert invoke(["train", *common, "--out", tmp_path / "whole"]).exit_code == 0
    scripted(monkeypatch, STALLS)
    _interrupt_at(monkeypatch, 11)  # the first step of the decay
    r = invoke(["train", *common, "--out", tmp_path / "split"])
    assert r.exit_code == 130, r.output
    r = invoke(["train", *common, "--resume", tmp_path / "split"])
    assert r.exit_code == 0, r.output
    rates = [[t["lr"] for t in lines(tmp_path / run, "train")] for run in ("whole", "split")]
    assert len(rates[0]) == 13 and rates[1] == rates[0]
    a, b = (checkpoint.load(tmp_path / run / "last.safetensors") for run in ("whole", "split"))
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)


def test_a_rollback_comes_first_and_the_plateau_then_judges_only_what_follows(tmp_path, monkeypatch):
    """Validations every 2 steps: the fifth (step 10) is both a plateau's third and a divergence's
    (training loss 2.6 against a lowest mean of 1.8): the rollback acts; the plateau needs three
    validations after it (step 16)."""
    corpus = make_corpus(tmp_path / "c.txt", lines=120)
    train = [3.0, 3.0, 2.0, 2.0, 1.9, 1.9, 1.8, 1.8, 2.6, 2.6, 1.7]
    scripted(monkeypatch, STALLS, train)
    run = tmp_path / "run"
    r = invoke(["train", corpus, *TINY, "--epochs", "0", "--eval-every", "2", "--lr", str(LR), "--max-steps", "60",
                "--out", run])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert [v["step"] for v in lines(run, "valid") if v.get("rollback")] == [10]
    assert [p["step"] for p in lines(run, "plateau")] == [16]
