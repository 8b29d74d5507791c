"""--rollback: a validation loss that much above the best so far takes the run back to its best
weights, with a fresh optimizer and half the learning rate for the rest of the run
(lstmtext.trainer.Trainer.roll_back)."""

import itertools
import json

import numpy as np
import pytest
from test_cli import TINY, invoke, make_corpus

from lstmtext import checkpoint, evaluate, trainer
from lstmtext.trainer import Trainer

LR = 0.01


@pytest.fixture
def scripted(monkeypatch):
    """Validation losses by a script: 2.0, then a best of 1.5, then 1.9 (27% above: rolls back at
    0.05), then 1.56 from there on (4% above: does not); and the training loss of each step, two steps
    to a validation: 3.0, 2.0, then `third` (2.6: 30% above its lowest, a run that diverges; 1.8: one
    that only overfits), then 2.0."""

    def script(third=2.6):
        losses = itertools.chain([2.0, 1.5, 1.9], itertools.repeat(1.56))
        monkeypatch.setattr(evaluate, "score", lambda *a, **k: (next(losses) * 100, 100))
        train = itertools.chain([3.0, 3.0, 2.0, 2.0, third, third], itertools.repeat(2.0))
        step = trainer.accumulated_step
        monkeypatch.setattr(trainer, "accumulated_step", lambda *a: (next(train), *step(*a)[1:]))

    return script


def lines(run, kind):
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_a_worse_validation_goes_back_to_the_best_weights_at_half_the_rate(tmp_path, monkeypatch, scripted):
    corpus = make_corpus(tmp_path / "c.txt", lines=120)
    common = [corpus, *TINY, "--epochs", "0", "--eval-every", "2", "--schedule", "constant", "--lr", str(LR)]
    seen = []
    original = Trainer.roll_back

    def spy(self, *a):
        original(self, *a)
        best = checkpoint.load(self.out / "best.safetensors").params
        seen.append({
            "step": self.prog.step,
            "best weights": all(np.array_equal(self.params[k], best[k]) for k in best),
            "fresh optimizer": not any(v.any() for v in self.opt_state.values()),
            "zero state": not any(v.any() for v in self.state.values()),
        })

    monkeypatch.setattr(Trainer, "roll_back", spy)
    scripted()
    run = tmp_path / "run"
    r = invoke(["train", *common, "--out", run, "--max-steps", "12"])
    assert r.exit_code == 0, r.output
    assert "diverging: validation loss 1.900 is 27% above the best (1.500, step 4) and training loss 2.600 30%" in (
        r.output
    ), r.output
    assert "back to those weights with a fresh optimizer, learning rate ×0.5" in r.output, r.output
    assert seen == [{"step": 6, "best weights": True, "fresh optimizer": True, "zero state": True}]
    assert [v.get("rollback", False) for v in lines(run, "valid")][:4] == [False, False, True, False]
    rates = {t["step"]: t["lr"] for t in lines(run, "train")}
    assert rates[6] == pytest.approx(LR) and rates[8] == pytest.approx(LR / 2) and rates[12] == pytest.approx(LR / 2)
    prog = checkpoint.load(run / "last.safetensors").progress
    assert (prog["lr_scale"], prog["rollbacks"]) == (0.5, 1)
    # A resume keeps the halved rate.
    r = invoke(["train", *common, "--max-steps", "16", "--resume", run])
    assert r.exit_code == 0, r.output
    assert {t["step"]: t["lr"] for t in lines(run, "train")}[16] == pytest.approx(LR / 2)
    # --rollback 0: the same validations change nothing.
    scripted()
    r = invoke(["train", *common, "--out", tmp_path / "off", "--max-steps", "12", "--rollback", "0"])
    assert r.exit_code == 0 and "back to those weights" not in r.output, r.output
    assert {t["step"]: t["lr"] for t in lines(tmp_path / "off", "train")}[12] == pytest.approx(LR)
    assert len(seen) == 1
    # A run whose training loss still falls only overfits: the same validations change nothing.
    scripted(third=1.8)
    r = invoke(["train", *common, "--out", tmp_path / "overfits", "--max-steps", "12"])
    assert r.exit_code == 0 and "back to those weights" not in r.output, r.output
    assert {t["step"]: t["lr"] for t in lines(tmp_path / "overfits", "train")}[12] == pytest.approx(LR)
    assert len(seen) == 1


def test_rollback_must_not_be_negative(tmp_path):
    r = invoke(["train", make_corpus(tmp_path / "c.txt"), *TINY, "--max-steps", "1", "--rollback", "-0.1"])
    assert r.exit_code == 1 and "--rollback must not be negative" in r.output, r.output


def test_a_run_resumed_into_another_folder_does_not_roll_back_to_a_best_it_does_not_have(tmp_path, scripted):
    corpus = make_corpus(tmp_path / "c.txt", lines=120)
    common = [corpus, *TINY, "--epochs", "0", "--eval-every", "2", "--schedule", "constant", "--lr", str(LR)]
    scripted()  # its best (1.5) at step 4 stays in the first folder
    r = invoke(["train", *common, "--out", tmp_path / "first", "--max-steps", "4"])
    assert r.exit_code == 0, r.output
    r = invoke(["train", *common, "--max-steps", "8", "--resume", tmp_path / "first", "--out", tmp_path / "moved"])
    assert r.exit_code == 0 and "back to those weights" not in r.output, r.output
    assert {t["step"]: t["lr"] for t in lines(tmp_path / "moved", "train")}[8] == pytest.approx(LR)

