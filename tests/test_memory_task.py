"""The long-range tasks of `make memory` (bench/memory.py), every generator of the family: the answer
depends on the cue alone, the gap is what it says, nothing else in a line tells the answer, and the
scoring counts what a model writes after the prompt."""

import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import memory  # noqa: E402

WORDS = 30_000  # of training text per generator: enough for the statistics below, fast to write


def parse(line: str) -> tuple[int, list[str], list[str], int]:
    """-> (cue, filler before the cue, filler after it, answer); asserts the line's shape."""
    words = line.split()
    cues = [i for i, w in enumerate(words) if w.startswith("cue_")]
    assert len(cues) == 1 and words[-2] == "says" and words[-1].startswith("ans_"), line
    assert words.count("says") == 1 and sum(w.startswith("ans_") for w in words) == 1, line
    at = cues[0]
    return int(words[at][4:]), words[:at], words[at + 1 : -2], int(words[-1][4:])


@pytest.fixture(scope="module", params=memory.SPECS, ids=lambda s: s.name)
def data(request, tmp_path_factory):
    spec = request.param
    train, valid, probes = memory.make_data(replace(spec, words=WORDS), tmp_path_factory.mktemp(spec.name))
    return spec, train.read_text(encoding="utf-8").splitlines(), valid, probes


def leak(cues: np.ndarray, counts: np.ndarray) -> float:
    """cues (N,), counts (N, W) filler words per line -> the largest gap between a word's frequency
    among one cue's lines and among all lines."""
    pooled = counts.sum(axis=0) / counts.sum()  # (W,)
    return max(np.abs(counts[cues == c].sum(axis=0) / counts[cues == c].sum() - pooled).max() for c in np.unique(cues))


def test_lines_answer_their_cue_and_only_it(data):
    spec, lines, valid, _ = data
    parsed = [parse(text) for text in lines]
    assert all(answer == spec.answer_of(cue) for cue, _, _, answer in parsed)
    assert sorted(spec.answer_of(k) for k in range(spec.cues)) == list(range(spec.cues))  # a permutation
    answers = Counter(answer for *_, answer in parsed)
    assert len(answers) == spec.cues and max(answers.values()) / len(parsed) < 1.5 / spec.cues
    gaps = np.array([len(after) for _, _, after, _ in parsed])
    assert gaps.min() == memory.SHORT_GAPS[0] and gaps.max() == spec.train_gaps[1]
    assert 0.4 < np.mean(gaps <= memory.SHORT_GAPS[1]) < 0.7  # half the lines short, plus the long ones ≤ 10
    at_start = np.mean([len(before) == 0 for _, before, _, _ in parsed])
    assert at_start < 0.2 if spec.prefix else at_start == 1.0
    held = valid.read_text(encoding="utf-8")
    assert len(held.split()) + held.count("\n") >= WORDS // 20  # words and line ends, as make_data counts


def test_the_filler_is_the_grammar_and_carries_no_trace_of_the_cue(data):
    spec, lines, _, _ = data
    words = memory.grammar(spec.grammar, spec.vocab).words
    assert len(set(words)) == spec.vocab
    assert not any(w == "says" or w.startswith(("cue_", "ans_")) for w in words)
    index = {w: i for i, w in enumerate(words)}
    cues, counts = np.zeros(len(lines), dtype=int), np.zeros((len(lines), spec.vocab))  # (N,), (N, W)
    for n, text in enumerate(lines):
        cue, before, after, _ = parse(text)
        cues[n] = cue
        for w in before + after:
            counts[n, index[w]] += 1  # a KeyError: a filler word outside the grammar
    assert (counts.sum(axis=0) > 0).mean() > 0.9  # the filler uses (nearly) all of its vocabulary
    # Word frequencies per cue differ from the pooled ones no more than with the cues shuffled
    # among the lines (the same lines, so the same noise) ...
    rng = np.random.default_rng(0)
    noise = max(leak(rng.permutation(cues), counts) for _ in range(10))
    assert leak(cues, counts) < 1.5 * noise
    # ... and a trace of the cue, three more of one word in cue 0's lines, would show.
    traced = counts.copy()
    traced[cues == 0, 0] += 3
    assert leak(cues, traced) > 3 * noise


def test_held_out_probes_have_the_gap_they_are_scored_at(data):
    spec, _, _, probes = data
    per_gap = Counter(p.gap for p in probes)
    assert set(per_gap) == set(spec.held_gaps) and len(set(per_gap.values())) == 1
    assert max(spec.held_gaps) <= spec.train_gaps[1]
    starts = []
    for gap in spec.held_gaps:
        # Every cue equally often: always answering one answer scores exactly 1 / cues.
        parsed = [parse(f"{p.prefix} {p.answer}") for p in probes if p.gap == gap]
        assert set(Counter(cue for cue, *_ in parsed).values()) == {per_gap[gap] // spec.cues}
        for cue, before, after, answer in parsed:
            assert len(after) == gap and answer == spec.answer_of(cue)
            starts.append(len(before) == 0)
    assert np.mean(starts) < 0.2 if spec.prefix else all(starts)
    for p in probes:
        assert p.context.count("\n") == memory.CONTEXT_LINES and p.context.endswith("\n")
        for text in p.context.splitlines():
            parse(text)


class HalfRight:
    """A model that writes the right answer for cues 0 and 2, a wrong one for 1 and 3."""

    class tokenizer:
        vocab_size = 7

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def generate(self, prompt: str, *, length: int, greedy: bool) -> str:
        assert length == 1 and greedy
        self.prompts.append(prompt)
        cue = parse(prompt.splitlines()[-1] + " ans_0")[0]
        return f"{prompt} {f'ans_{cue}' if cue % 2 == 0 else 'ans_9'}"

    def next_token_probs(self, context: str, n: int) -> dict[str, float]:
        return {"ans_0": 0.3, "ans_1": 0.1, "x": 0.6}


def test_score_counts_the_written_word_after_the_prompt():
    # Every context holds every answer, so a scorer that looked past the prompt's end would be fooled.
    context = "".join(f"cue_{k} x says ans_{k}\n" for k in range(4))
    probes = [memory.Probe(g, context, f"cue_{k} " + "x " * g + "says", f"ans_{k}") for g in (5, 60) for k in range(4)]
    model = HalfRight()
    got = memory.score(model, probes, answers=["ans_0", "ans_1"], probs=False)
    assert got == {"fresh": {5: 0.5, 60: 0.5}, "context": {5: 0.5, 60: 0.5}}
    assert model.prompts[:2] == [probes[0].prefix, context + probes[0].prefix]
    p = memory.score(HalfRight(), probes, answers=["ans_0", "ans_1"])["p_fresh"]
    assert p == pytest.approx({5: (0.75 + 0.25) / 4, 60: (0.75 + 0.25) / 4})  # ans_0, ans_1, then none


def test_lstmtext_gets_the_epochs_pytorch_needed_in_its_slowest_seed():
    spec = memory.SPEC["punct"]
    rows = [{"epochs_needed": 7}, {"epochs_needed": 11}, {"epochs_needed": 4}]
    assert memory.matched_epochs(spec, rows, own=False) == 11
    # a seed that never got there: no count to match, so the generator's own
    assert memory.matched_epochs(spec, [*rows, {"epochs_needed": None}], own=False) == spec.epochs
    assert memory.matched_epochs(spec, rows, own=True) == spec.epochs
    assert memory.matched_epochs(spec, [], own=False) == spec.epochs
