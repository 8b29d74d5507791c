"""The thread tuner: its count stays within the allowed cores, a fixed count reaches the BLAS, and it
follows the faster count. Timings are injected (a fake clock), so nothing here depends on the
machine's speed and no test asserts one."""

import math
import os

import numpy as np
import pytest

from lstmtext import parallel, threads


@pytest.fixture(autouse=True)
def _restore_counts():
    """The tuner sets process-wide counts; leave them as found for the tests that follow."""
    blas, pool = threads.blas_threads(), parallel.THREADS
    yield
    if blas is not None:
        for lib in threads.find_blas():
            lib.set_num_threads(blas)
    parallel.set_threads(pool)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeLoad:
    """Others' load in cores, as the test sets it."""

    def __init__(self, load: float | None = None):
        self.load = load

    def read(self) -> float | None:
        return self.load


def drive(tuner, clock, seconds_per_window, until: float, tokens: int = 400) -> list[int]:
    """Run windows until the fake clock reaches `until`; each takes seconds_per_window(threads).
    -> the count used by each window."""
    used = []
    while clock.now < until:
        used.append(tuner.threads)
        tuner.begin()
        clock.now += seconds_per_window(tuner.threads)
        tuner.end(tokens)
    return used


def needs_openblas():
    if not threads.find_blas():
        pytest.skip("NumPy's BLAS here is not an OpenBLAS the tuner can set")


def test_count_stays_within_the_allowed_cores():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= threads.allowed_cores() <= cores
    assert threads.ThreadTuner(fixed=10_000).threads == threads.allowed_cores()  # capped, never more
    clock, rng = FakeClock(), np.random.default_rng(0)
    tuner = threads.ThreadTuner(clock=clock, load_meter=FakeLoad())
    used = drive(tuner, clock, lambda n: rng.uniform(0.005, 0.05), until=120.0)
    assert all(1 <= n <= threads.allowed_cores() for n in used)


def test_fixed_one_reaches_the_blas():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    needs_openblas()
    clock = FakeClock()
    tuner = threads.ThreadTuner(fixed=1, max_threads=2, clock=clock)
    drive(tuner, clock, lambda n: 0.001 if n == 2 else 0.1, until=60.0)  # 2 would be far faster
    assert tuner.threads == 1 and tuner.label == "1" and tuner.probes == 0
    blas = [d for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]
    assert blas and all(d["num_threads"] == 1 for d in blas)
    assert threads.blas_threads() == 1 and parallel.THREADS == 1


def test_set_threads_sets_blas_and_pool():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    needs_openblas()
    for n in (2, 1):
        threads.set_threads(n)
        assert threads.blas_threads() == n and parallel.THREADS == min(n, parallel.CAP)
        assert all(d["num_threads"] == n for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas")


def test_switches_to_the_consistently_faster_count_and_back():
    needs_openblas()
    clock = FakeClock()
    tuner = threads.ThreadTuner(max_threads=2, clock=clock, load_meter=FakeLoad())
    assert tuner.threads == 2  # starts with every core
    busy = {1: 0.040, 2: 0.090}  # a core taken by another program: 1 thread is faster
    used = drive(tuner, clock, busy.get, until=10.0)
    assert tuner.threads == 1 and tuner.switches == 1
    assert used[-50:].count(1) >= 45  # it stays there, apart from a rare probe
    quiet = {1: 0.040, 2: 0.025}  # the other program ended: 2 threads win again
    drive(tuner, clock, quiet.get, until=10.0 + threads.PERIOD_MAX + 5)  # found at the latest by a periodic probe
    assert tuner.threads == 2 and tuner.switches == 2
    assert threads.blas_threads() == 2 and parallel.THREADS == min(2, parallel.CAP)


def test_a_slowdown_starts_a_probe_at_once():
    needs_openblas()
    clock = FakeClock()
    tuner = threads.ThreadTuner(max_threads=2, clock=clock, load_meter=FakeLoad())
    drive(tuner, clock, {1: 0.040, 2: 0.025}.get, until=60.0)  # quiet long enough for a long period
    assert tuner.threads == 2
    drive(tuner, clock, {1: 0.040, 2: 0.090}.get, until=63.0)  # 2 threads got much slower
    assert tuner.threads == 1


def test_others_load_leaving_starts_a_probe_at_once():
    """At 1 thread our own speed barely changes when another program stops; its load does."""
    needs_openblas()
    clock, load = FakeClock(), FakeLoad(1.0)
    tuner = threads.ThreadTuner(max_threads=2, clock=clock, load_meter=load)
    drive(tuner, clock, {1: 0.040, 2: 0.090}.get, until=60.0)
    assert tuner.threads == 1
    load.load = 0.0
    drive(tuner, clock, {1: 0.040, 2: 0.025}.get, until=63.0)  # well before a periodic probe
    assert tuner.threads == 2


def test_noise_does_not_flip_the_count():
    needs_openblas()
    clock, rng = FakeClock(), np.random.default_rng(1)
    tuner = threads.ThreadTuner(max_threads=2, clock=clock, load_meter=FakeLoad())
    used = drive(tuner, clock, lambda n: 0.03 * rng.uniform(0.97, 1.03), until=300.0)  # the same speed
    assert tuner.switches <= 1
    assert used.count(tuner.threads) / len(used) > 0.9
    assert tuner.probes < 30  # backing off while nothing changes


def test_an_unknown_blas_is_left_alone(monkeypatch):
    monkeypatch.setattr(threads, "find_blas", lambda: [])
    clock = FakeClock()
    tuner = threads.ThreadTuner(max_threads=2, clock=clock, load_meter=FakeLoad())
    assert tuner.label == "?" and not tuner.active
    drive(tuner, clock, {1: 0.01, 2: 0.09}.get, until=30.0)
    assert tuner.threads == 2 and tuner.probes == 0


def test_a_far_slower_probe_ends_early():
    needs_openblas()
    clock = FakeClock()
    tuner = threads.ThreadTuner(max_threads=2, clock=clock, load_meter=FakeLoad())
    used = drive(tuner, clock, {1: 0.090, 2: 0.030}.get, until=120.0)
    runs_at_1 = [len(r) for r in "".join(map(str, used)).split("2") if r]
    assert tuner.probes >= 3 and tuner.switches == 0
    assert runs_at_1 and max(runs_at_1) <= threads.SETTLE_WINDOWS + 1  # one timed window tells


def test_every_command_that_runs_the_model_honours_threads(tmp_path, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    needs_openblas()
    from test_cli import TINY, invoke, make_corpus

    from lstmtext import export, model, vectors

    corpus = make_corpus(tmp_path / "c.txt")
    run = tmp_path / "run"
    assert invoke(["train", corpus, *TINY, "--out", run, "--max-steps", "4", "--epochs", "0"]).exit_code == 0
    seen: list[int] = []

    def counting(fn):
        def wrapper(*args, **kwargs):
            seen.append(next(d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"))
            return fn(*args, **kwargs)

        return wrapper

    for module, name in ((model, "forward"), (model, "step_logits"), (vectors, "neighbors"), (export, "to_torch")):
        monkeypatch.setattr(module, name, counting(getattr(module, name)))
    commands = {
        "eval": ["eval", run, corpus],
        "generate": ["generate", run, "--prompt", "the cat", "--length", "5"],
        "inspect": ["inspect", run, corpus, "--units", "--gradient", "--max-distance", "3", "--positions", "2"],
        "neighbors": ["neighbors", run, "cat"],
        "export": ["export", run, "--format", "torch", "--out", tmp_path / "torch"],
    }
    if threads.allowed_cores() < 2:
        pytest.skip("one core: no other count to start from")
    for n in (1, threads.allowed_cores()):
        threads.set_threads(threads.allowed_cores() if n == 1 else 1)  # start from the other count
        for name, args in commands.items():
            seen.clear()
            r = invoke([*args, "--threads", n])
            assert r.exit_code == 0, (name, r.output)
            assert seen and set(seen) == {n}, (name, n, seen)
    assert invoke(["eval", run, corpus, "--threads", "0"]).exit_code == 1


def test_scoring_and_sampling_time_each_window_and_put_the_counts_back(tmp_path):
    needs_openblas()
    from test_cli import TINY, invoke, make_corpus

    import lstmtext
    from lstmtext import evaluate, sample

    corpus = make_corpus(tmp_path / "c.txt")
    run = tmp_path / "run"
    assert invoke(["train", corpus, *TINY, "--out", run, "--max-steps", "4", "--epochs", "0"]).exit_code == 0
    m = lstmtext.load(run)

    class Counting:
        begun = ended = tokens = 0

        def begin(self):
            self.begun += 1

        def end(self, tokens):
            self.ended, self.tokens = self.ended + 1, self.tokens + tokens

    ids = m.tokenizer.encode(corpus.read_text())
    t = Counting()
    evaluate.score(m.checkpoint.params, m.config, ids, 4, 5, t)
    rows = math.ceil((len(ids) - 1) / 4)  # each of the 4 streams' length, padded
    assert t.begun == t.ended == math.ceil(rows / 5) and t.tokens >= len(ids) - 1  # every window
    t = Counting()
    opts = sample.SampleOptions(length=6)
    steps = list(sample.token_steps(m.checkpoint.params, m.config, np.array([1, 2, 3]), opts, np.random.default_rng(0),
                                     None, t))  # fmt: skip
    assert len(steps) == 6 and t.begun == t.ended == 3 + 5  # the prompt's three steps, then five more
    if threads.allowed_cores() < 2:
        return
    quiet = FakeLoad(0.0)  # so that the calls start at every core, not at the count they found
    quiet.cpus = {f"cpu{i}" for i in range(threads.allowed_cores())}
    import lstmtext.threads as module

    module._SINCE_LAST, saved = quiet, module._SINCE_LAST
    try:
        threads.set_threads(1)
        m.score(corpus.read_text())  # chooses for itself, then leaves the process as it found it
        m.generate("the", length=5)
        assert threads.blas_threads() == 1
    finally:
        module._SINCE_LAST = saved


def test_a_short_job_starts_at_the_cores_others_leave_free(monkeypatch):
    needs_openblas()
    monkeypatch.setattr(threads, "allowed_cores", lambda: 2)
    for others, start in ((1.1, 1), (2.0, 1), (0.2, 2), (None, 2)):
        meter = FakeLoad(others)
        meter.cpus = {"cpu0", "cpu1"}
        monkeypatch.setattr(threads, "_SINCE_LAST", meter)
        with threads.choosing() as tuner:
            assert tuner.threads == start, (others, tuner.threads)
    with threads.choosing(2) as tuner:  # a fixed count is kept whatever the load
        assert tuner.threads == 2
    clock = FakeClock()  # started at 1 where 2 is faster: the probes find it, as in training
    tuner = threads.ThreadTuner(max_threads=2, start=1, clock=clock, load_meter=FakeLoad())
    used = drive(tuner, clock, lambda n: 0.01 if n == 2 else 0.02, until=20.0)
    assert used[0] == 1 and tuner.threads == 2
