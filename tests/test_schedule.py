"""The learning rate's plan over a budget (lstmtext.schedule): by steps, by time and by epochs, the
largest share deciding, and kept across an interruption and a resume."""

import json
import math
import os
import signal
from dataclasses import replace

import numpy as np
import pytest
from test_cli import TINY, invoke, make_corpus

from lstmtext import checkpoint, schedule
from lstmtext.config import TrainConfig
from lstmtext.errors import ConfigError
from lstmtext.progress import Progress
from lstmtext.schedule import finished_reason
from lstmtext.trainer import Trainer


def prog(epoch=1, window=0, step=0, elapsed=0.0, **more) -> Progress:
    return Progress(epoch=epoch, window=window, step=step, elapsed=elapsed, **more)


def lr(cfg: TrainConfig, windows_per_epoch: int = 10, **where) -> float:
    return schedule.learning_rate(cfg, prog(**where), windows_per_epoch)


def test_cosine_by_steps_warms_up_peaks_and_ends_at_the_floor():
    cfg = TrainConfig(lr=1.0, epochs=0, max_steps=1000, schedule="cosine", warmup=0.1, lr_floor=0.1)
    assert lr(cfg, step=0) == pytest.approx(schedule.FIRST_WARMUP_SHARE)  # the first step moves, gently
    assert lr(cfg, step=50) == pytest.approx(0.5)  # half way through the warm-up
    assert lr(cfg, step=100) == pytest.approx(1.0)  # the top, where the decay starts
    assert lr(cfg, step=550) == pytest.approx(0.55)  # the decay's middle: floor + (1 - floor) / 2
    assert lr(cfg, step=1000) == pytest.approx(0.1)  # the end of the budget: the floor
    rates = [lr(cfg, step=s) for s in range(100, 1001, 10)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))  # never rises after the warm-up


def test_cosine_by_time_reads_the_runs_own_clock():
    cfg = TrainConfig(lr=0.002, epochs=0, max_minutes=2.0, schedule="cosine", warmup=0.0, lr_floor=0.0)
    assert lr(cfg, elapsed=0.0) == pytest.approx(0.002)
    assert lr(cfg, elapsed=60.0) == pytest.approx(0.001)  # one minute of two: half way down
    assert lr(cfg, elapsed=90.0) == pytest.approx(0.002 * 0.5 * (1 + math.cos(0.75 * math.pi)))
    assert lr(cfg, elapsed=120.0) == pytest.approx(0.0, abs=1e-12)
    assert lr(cfg, elapsed=500.0) == pytest.approx(0.0, abs=1e-12)  # past the budget: stays at the floor


def test_wsd_holds_the_rate_then_falls_in_a_line_to_the_floor():
    cfg = TrainConfig(lr=1.0, epochs=0, max_steps=1000, warmup=0.1, cooldown=0.2, lr_floor=0.1)
    assert cfg.schedule == "wsd"  # the default
    assert lr(cfg, step=50) == pytest.approx(0.5)  # warming up
    assert [lr(cfg, step=s) for s in (100, 500, 800)] == pytest.approx([1.0, 1.0, 1.0])  # held
    assert lr(cfg, step=900) == pytest.approx(0.55)  # half way down the cooldown
    assert lr(cfg, step=1000) == pytest.approx(0.1) == lr(cfg, step=1200)  # the floor, at and past the end


def test_cosine_by_epochs_counts_windows_into_the_epoch():
    cfg = TrainConfig(lr=1.0, epochs=4, schedule="cosine", warmup=0.0, lr_floor=0.0)
    assert schedule.budget_used(cfg, prog(epoch=3, window=5), 10) == pytest.approx(0.625)  # 2.5 of 4 epochs
    assert lr(cfg, epoch=3, window=0) == pytest.approx(0.5)


def test_the_budget_that_ends_first_sets_the_pace():
    cfg = TrainConfig(lr=1.0, epochs=10, max_steps=100, max_minutes=1.0)
    where = prog(epoch=2, window=0, step=50, elapsed=45.0)  # epochs 10%, steps 50%, time 75%
    assert schedule.budget_used(cfg, where, 10) == pytest.approx(0.75)


def test_step_and_constant_schedules():
    step = TrainConfig(lr=20.0, schedule="step", lr_decay=0.5, decay_after=4, epochs=6)
    assert [lr(step, epoch=e, step=999) for e in (1, 4, 5, 7)] == [20.0, 20.0, 10.0, 2.5]
    const = TrainConfig(lr=0.3, schedule="constant", max_steps=10)
    assert {lr(const, step=s) for s in (0, 5, 10)} == {0.3}


def test_bad_schedule_options_are_refused():
    for bad, message in (({"schedule": "linear"}, "--schedule must be"), ({"warmup": 1.0}, "--warmup"),
                         ({"lr_floor": 1.5}, "--lr-floor")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            TrainConfig(epochs=1, **bad)


def test_a_checkpoint_from_before_schedules_keeps_its_per_epoch_decay():
    from lstmtext.config import from_dict

    old = {k: v for k, v in vars(TrainConfig(epochs=6)).items() if k not in ("schedule", "warmup", "lr_floor")}
    assert from_dict(TrainConfig, old).schedule == "step"


def _interrupt_at(monkeypatch, step: int) -> None:
    """SIGINT to this process right after optimizer step `step`, as Ctrl-C there would."""
    real = Trainer.step

    def stepping(self, windows, lr):
        out = real(self, windows, lr)
        if self.prog.step == step:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(Trainer, "step", stepping)


def _rates(run) -> list[float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x["lr"] for x in lines if x["kind"] == "train"]


def test_an_interrupted_and_resumed_run_follows_the_same_plan(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "c.txt", lines=120)
    common = [corpus, *TINY, "--epochs", "0", "--max-steps", "24", "--log-every", "1", "--lr", "0.01",
              "--warmup", "0.25", "--dropout", "0"]  # fmt: skip
    assert invoke(["train", *common, "--out", tmp_path / "whole"]).exit_code == 0
    _interrupt_at(monkeypatch, 10)
    r = invoke(["train", *common, "--out", tmp_path / "split"])
    assert r.exit_code == 130 and "interrupted" in r.output, r.output
    monkeypatch.undo()
    r = invoke(["train", *common, "--resume", tmp_path / "split"])
    assert r.exit_code == 0, r.output
    whole, split = _rates(tmp_path / "whole"), _rates(tmp_path / "split")
    assert len(whole) == 24 and split == whole  # the same rate at every step, before and after the break
    assert whole[0] < whole[5] < whole[6] == pytest.approx(0.01) and whole[-1] < 0.004  # warm-up, top, annealed
    a, b = (checkpoint.load(tmp_path / run / "last.safetensors") for run in ("whole", "split"))
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)


def test_the_time_plan_keeps_the_final_validation_inside_the_budget():
    cfg = TrainConfig(lr=1.0, epochs=0, max_minutes=1.0, schedule="cosine", warmup=0.0, lr_floor=0.0)
    where = prog(elapsed=40.0, valid_seconds=20.0)  # 40 s spent, the last validation will take 20
    assert schedule.budget_used(cfg, where, 10) == 1.0 and schedule.learning_rate(cfg, where, 10) == 0.0
    assert schedule.time_spent(cfg, where) and not schedule.time_spent(cfg, replace(where, elapsed=39.0))
    assert not schedule.time_spent(cfg, prog(elapsed=40.0))  # nothing kept: the clock alone
    # Just validated, 15 s left to train: less than a second validation would cost, so stop here.
    where = prog(elapsed=25.0, valid_seconds=20.0)
    assert not schedule.time_spent(cfg, where) and schedule.time_spent(cfg, where, validated=True)
    assert not schedule.time_spent(cfg, replace(where, elapsed=19.0), validated=True)  # 21 s left: train on
    # A validation that would leave that little is left to the final one (10 s each): at 31 s, one now
    # ends at 41, and 19 s is less than training on and validating again needs; at 29 s, 21 s is not.
    where = prog(elapsed=31.0, valid_seconds=10.0)
    assert schedule.too_late_to_validate(cfg, where)
    assert not schedule.too_late_to_validate(cfg, replace(where, elapsed=29.0))
    assert not schedule.too_late_to_validate(replace(cfg, max_minutes=0.0, max_steps=5), where)  # no clock to keep


def test_a_run_keeps_time_for_its_last_validation(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "c.txt", lines=120)
    common = [corpus, *TINY, "--epochs", "0"]

    def refuse(self):
        raise AssertionError("no --max-minutes: nothing to foresee")

    monkeypatch.setattr(Trainer, "time_validation", refuse)
    assert invoke(["train", *common, "--out", tmp_path / "steps", "--max-steps", "3"]).exit_code == 0
    # The estimate stands until a validation measures the real time, which replaces it.
    monkeypatch.setattr(Trainer, "time_validation", lambda self: 5.0)
    r = invoke(["train", *common, "--out", tmp_path / "a", "--max-minutes", "10", "--max-steps", "3"])
    assert r.exit_code == 0, r.output
    p = checkpoint.load(tmp_path / "a" / "last.safetensors").progress
    assert p["valid_seconds"] != 5.0 and 0 < p["valid_seconds"] <= p["elapsed"]  # measured, inside the clock
    # A held-out text that takes longer to score than the budget: said, and the run stops after its
    # first step (the one that times the validation), with the one validation it must make.
    monkeypatch.setattr(Trainer, "time_validation", lambda self: 1e6)
    r = invoke(["train", *common, "--out", tmp_path / "b", "--max-minutes", "1"])
    assert r.exit_code == 0, r.output
    assert "no time is left to train" in r.output, r.output
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["valid", "end"] and lines[-1]["steps"] == 1
    # Stopped on its time, though the validation took far less than set aside: finished all the same.
    monkeypatch.undo()
    r = invoke(["train", "--resume", tmp_path / "b"])
    assert r.exit_code == 0 and "already finished: it used its --max-minutes 1" in r.output, r.output
    assert "1 minute more is --max-minutes 2" in r.output


def test_a_finished_time_budget_after_a_validation():
    cfg = TrainConfig(max_minutes=1.0, epochs=0)
    just = prog(step=7, elapsed=25.0, valid_seconds=20.0, last_valid_step=7)
    assert "--max-minutes 1" in finished_reason(cfg, just)  # 15 s to train would cost a 20 s validation
    assert finished_reason(cfg, replace(just, step=8)) is None  # not validated at this step: 15 s to train
    assert finished_reason(replace(cfg, max_minutes=2.0), just) is None
    assert "--max-minutes 1" in finished_reason(cfg, replace(just, step=8, minutes_used=1.0))


def test_the_whole_runs_time_left():
    minutes = TrainConfig(max_minutes=2.0, epochs=0)
    assert schedule.seconds_left(minutes, prog(elapsed=30.0), 10) == 90.0  # the budget's own clock
    epochs = TrainConfig(epochs=4, max_minutes=0.0)
    assert schedule.seconds_left(epochs, prog(epoch=2, window=0, elapsed=50.0), 10) == pytest.approx(150.0)
    assert schedule.seconds_left(epochs, prog(), 10) is None  # nothing done yet: no pace to go by
    both = TrainConfig(epochs=4, max_minutes=2.0)  # the epochs would take 150 s more, the clock ends sooner
    assert schedule.seconds_left(both, prog(epoch=2, window=0, elapsed=50.0), 10) == pytest.approx(70.0)
    assert schedule.seconds_left(minutes, prog(elapsed=500.0), 10) == 0.0


def test_the_progress_line_fits_80_columns():
    import io
    import re

    from rich.console import Console

    from lstmtext.trainer import _hms, _progress_bar, _speed

    out = io.StringIO()
    with _progress_bar(Console(file=out, width=80, force_terminal=True)) as bar:
        # Wide values: a second-digit epoch and loss, a 12-core count, two-digit hours on both clocks.
        bar.add_task("", total=237_700, completed=81_300, epoch=12, loss=10.079, tps=_speed(112_718.0),
                     threads="12", clock=_hms(45296.0), left=_hms(36000.0))  # fmt: skip
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.getvalue())  # the terminal's control codes out
    line = [ln for ln in text.splitlines() if "epoch" in ln][-1]
    for part in ("epoch 12", "loss 10.079", "112.7k tok/s", "12 thr", "12:34:56, 10:00:00 left"):
        assert part in line, (part, line)
    assert "…" not in line and len(line.rstrip()) <= 80
    assert _hms(None) == "?" and _hms(62.9) == "1:02" and _speed(950.4) == "950"


class _SlowValidation:
    """A clock for the trainer: each reading moves it 1 ms, and scoring n tokens moves it n × 10 ms,
    so that a validation takes far longer than a step, as on a large held-out text."""

    def __init__(self, monkeypatch):
        import types

        from lstmtext import evaluate
        from lstmtext import trainer as trainer_module

        self.now = 0.0
        monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=self.read))
        real = evaluate.score

        def slow(params, cfg, ids, *args, **kwargs):
            self.now += 0.01 * len(ids)
            return real(params, cfg, ids, *args, **kwargs)

        monkeypatch.setattr(trainer_module.evaluate, "score", slow)

    def read(self) -> float:
        self.now += 0.001
        return self.now


def test_no_second_validation_a_step_after_the_epochs(tmp_path, monkeypatch):
    _SlowValidation(monkeypatch)
    corpus = make_corpus(tmp_path / "c.txt", lines=120)
    common = [corpus, *TINY, "--log-every", "1"]
    assert invoke(["train", *common, "--out", tmp_path / "one", "--epochs", "1", "--max-minutes", "100"]).exit_code == 0
    p = checkpoint.load(tmp_path / "one" / "last.safetensors").progress
    epoch_end, validation = p["elapsed"], p["valid_seconds"]  # on the fake clock
    for f in (0.3, 0.9, 1.05, 1.2, 1.6, 1.95):  # the budget ends this many validations after the epoch's
        out = tmp_path / f"f{f}"
        minutes = (epoch_end + f * validation) / 60
        r = invoke(["train", *common, "--out", out, "--epochs", "3", "--max-minutes", f"{minutes:.6f}"])
        assert r.exit_code == 0, r.output
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        valid = [x["step"] for x in lines if x["kind"] == "valid"]
        # Less than two validations' time left after the epoch's: the epoch's is left out, the run trains
        # on to its budget's end and validates once there, its rate at the floor.
        steps = [x["step"] for x in lines if x["kind"] == "train"]
        assert valid == [steps[-1]] and steps[-1] > p["step"], (f, valid)
        assert [x["lr"] for x in lines if x["kind"] == "train"][-1] < 0.2 * TrainConfig.lr, f
