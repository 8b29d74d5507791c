"""The long-range task of `make memory` (bench/memory.py): the answer depends on the cue alone, the
gap is what it says, and nothing else in a line tells the answer."""

import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import memory  # noqa: E402


def parse(line: str) -> tuple[int, list[str], int]:
    words = line.split()
    assert words[0].startswith("cue_") and words[-2] == "says" and words[-1].startswith("ans_"), line
    return int(words[0][4:]), words[1:-2], int(words[-1][4:])


def test_lines_answer_their_cue_and_only_it(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "TRAIN_WORDS", 60_000)
    train, valid, held = memory.make_data(tmp_path)
    lines = train.read_text(encoding="utf-8").splitlines()
    fillers: dict[int, Counter] = {}
    gaps = []
    for text in lines:
        cue, filler, answer = parse(text)
        assert answer == memory.ANSWER_OF[cue]
        gaps.append(len(filler))
        fillers.setdefault(cue, Counter()).update(filler)
    assert sorted(memory.ANSWER_OF) == list(range(memory.CUES))  # a permutation: every answer occurs
    assert min(gaps) == 1 and max(gaps) == memory.GAPS[-1]
    assert 0.4 < np.mean(np.array(gaps) <= 10) < 0.7  # half the lines short, plus the long ones ≤ 10
    # The filler's word frequencies are the same whatever the cue: it carries no trace of it.
    vocab = sorted(set().union(*fillers.values()))
    freq = np.array([[fillers[c][w] / sum(fillers[c].values()) for w in vocab] for c in sorted(fillers)])
    assert np.abs(freq - freq.mean(axis=0)).max() < 0.02
    assert valid.read_text(encoding="utf-8").count("\n") > 100


def test_held_out_lines_have_the_gap_they_are_scored_at(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "TRAIN_WORDS", 2_000)
    _, _, held = memory.make_data(tmp_path)
    assert Counter(g for g, *_ in held) == {g: memory.HELD_OUT_PER_GAP for g in memory.GAPS}
    for gap, context, prefix, answer in held:
        cue, filler, ans = parse(f"{prefix} {answer}")
        assert len(filler) == gap and ans == memory.ANSWER_OF[cue]
        assert context.count("\n") == memory.CONTEXT_LINES and context.endswith("\n")
        for text in context.splitlines():
            parse(text)
