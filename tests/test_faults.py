"""Faults against a real `lstmtext train` process: Ctrl-C, SIGTERM, kill -9 (also in the middle of a
checkpoint write), divergence. After each, --resume must finish with exactly the weights of a run
that was never disturbed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lstmtext import checkpoint

pytestmark = pytest.mark.slow  # processes of their own: `make test-fast` leaves these out

TINY = [
    "--embed",
    "8",
    "--hidden",
    "8",
    "--layers",
    "2",
    "--batch-size",
    "2",
    "--bptt",
    "4",
    "--dropout",
    "0.2",
    "--epochs",
    "0",
    "--log-every",
    "1",
    "--seed",
    "3",
    "--threads",  # bit-for-bit comparisons need a fixed thread count
    "1",
]
STEPS = 600


def corpus(tmp_path):
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat and dog ran to him her it was so".split()
    lines = [" ".join(rng.choice(words, size=rng.integers(3, 10))) + "." for _ in range(400)]
    path = tmp_path / "c.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start(args, env=None, slow_disk: float = 0.0):
    """`lstmtext train ARGS` in a process of its own; slow_disk: seconds each checkpoint write
    pauses before it is made durable (tests/slow_disk.py)."""
    cli = [str(Path(__file__).with_name("slow_disk.py")), str(slow_disk)] if slow_disk else ["-m", "lstmtext"]
    return subprocess.Popen(
        [sys.executable, *cli, "train", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for(cond, timeout=60.0):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting for the trainer")
        time.sleep(0.01)


def logged_steps(run):
    path = run / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip().endswith("}")]
    return max((x.get("step", 0) for x in lines), default=0)


def train_cli(*args):
    """`lstmtext train ARGS` in a subprocess, to completion: -> CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "lstmtext", "train", *map(str, args)], capture_output=True, text=True)


def run_to_end(args):
    r = train_cli(*args)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An undisturbed run: the weights every disturbed-and-resumed run must end with."""
    tmp = tmp_path_factory.mktemp("ref")
    c = corpus(tmp)
    run_to_end([c, *TINY, "--max-steps", STEPS, "--out", tmp / "run"])
    return c, checkpoint.load(tmp / "run" / "last.safetensors")


def assert_same_weights(run, ref):
    got = checkpoint.load(run / "last.safetensors")
    assert got.progress["step"] == ref.progress["step"] == STEPS
    for k in ref.params:
        assert np.array_equal(got.params[k], ref.params[k]), k


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("after", [1, 150])
def test_signal_saves_and_resume_matches(tmp_path, reference, sig, code, after):
    c, ref = reference
    run = tmp_path / "run"
    p = start([c, *TINY, "--max-steps", STEPS, "--out", run])
    wait_for(lambda: logged_steps(run) >= after)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert "--resume" in err and "Traceback" not in err
    saved = checkpoint.load(run / "last.safetensors")
    assert after <= saved.progress["step"] < STEPS
    run_to_end(["--resume", run])
    assert_same_weights(run, ref)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert steps == list(range(1, STEPS + 1))  # every step logged once, none twice


def test_kill9_during_checkpoint_write_keeps_previous(tmp_path, reference):
    c, ref = reference
    run = tmp_path / "run"
    p = start(
[c, *TINY, "--max-steps", STEPS, "--out", run, "--save-every", "100"], slow_disk=1.0)
    # Wait until one checkpoint exists and the next one is being written.
    wait_for(lambda: (run / "last.safetensors").exists() and any(run.glob(".last.safetensors.tmp-*")), 120)
    p.kill()
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    before = checkpoint.load(run / "last.safetensors")  # whole and verified, not half-written
    assert before.progress["step"] % 100 == 0
    run_to_end(["--resume", run])
    assert not any(run.glob(".*.tmp-*"))  # the unfinished temp file is cleaned up
    assert_same_weights(run, ref)


def test_kill9_mid_epoch_resumes_from_save_every(tmp_path, reference):
    c, ref = reference
    run = tmp_path / "run"
    p = start([c, *TINY, "--max-steps", STEPS, "--out", run, "--save-every", "50"])
    wait_for(lambda: logged_steps(run) >= 230)
    p.kill()
    p.wait(timeout=30)
    assert checkpoint.load(run / "last.safetensors").progress["step"] >= 200  # at most --save-every lost
    run_to_end(["--resume", run])
    assert_same_weights(run, ref)


def test_divergence_stops_before_the_weights_change(tmp_path):
    run = tmp_path / "run"
    r = train_cli(corpus(tmp_path), *TINY, "--max-steps", "50", "--out", run, "--lr", "1e30", "--save-every", "1")
    assert r.returncode == 1
    err = r.stderr.strip()
    assert err.startswith("error: training diverged at step") and "--lr" in err and "\n" not in err
    last = checkpoint.load(run / "last.safetensors")
    assert all(np.isfinite(v).all() for v in last.params.values())  # the last good weights


def test_on_nan_skip_counts_skipped_windows(tmp_path):
    run = tmp_path / "run"
    r = train_cli(corpus(tmp_path), *TINY, "--max-steps", "20", "--out", run, "--lr", "1e30", "--on-nan", "skip")
    assert r.returncode == 0, r.stderr
    end = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert end["kind"] == "end" and end["steps"] == 20 and end["skipped"] > 0
