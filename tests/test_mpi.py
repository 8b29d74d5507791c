"""Data-parallel training over MPI (mpi.py): `mpiexec -n 2` is the same run as one process.

These start real MPI jobs with the MPICH of the `[mpi]` extra (installed by `make test`); they are
skipped, with the reason, only where the extra is absent."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_cli import invoke, make_corpus

from lstmtext import checkpoint

pytestmark = pytest.mark.slow  # processes of their own: `make test-fast` leaves these out

MPIEXEC = Path(sys.executable).parent / "mpiexec"
try:
    import mpi4py  # noqa: F401

    HAVE_MPI = MPIEXEC.exists()
except ImportError:
    HAVE_MPI = False
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="the [mpi] extra (mpi4py, mpich) is not installed")

# The launcher's environment would make an in-process run think it is a rank.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "MPI_", "HYDRA_"))}


def tiny(dtype: str, batch: int, tokenizer: str) -> list:
    return [
        "--tokenizer", tokenizer, "--embed", "8", "--hidden", "8", "--layers", "2", "--dropout", "0.3",
        "--batch-size", str(batch), "--bptt", "5", "--optimizer", "adam", "--lr", "0.01", "--clip", "0.5",
        "--dtype", dtype, "--threads", "1", "--seed", "3", "--log-every", "1", "--eval-every", "7", "--epochs", "0",
        "--plateau", "0",  # off under MPI: the one-process runs compared with the ranks go without it too
    ]  # fmt: skip


def wide_corpus(path: Path) -> Path:
    """300 distinct words: the embedding gradient then goes over the wire as rows, not as the table."""
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(300)]
    path.write_text("\n".join(" ".join(rng.choice(words, size=8)) for _ in range(200)) + "\n", encoding="utf-8")
    return path


def mpi_train(n: int, args: list, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [str(MPIEXEC), "-n", str(n), sys.executable, "-m", "lstmtext", "train", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=CLEAN_ENV)


def mpi_python(code: str) -> subprocess.CompletedProcess:
    """`python -c code` on two ranks."""
    cmd = [str(MPIEXEC), "-n", "2", sys.executable, "-c", code]
    return subprocess.run(cmd, capture_output=True, text=True, env=CLEAN_ENV, timeout=60)


def losses(out: Path) -> np.ndarray:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return np.array([x["loss"] for x in lines if x["kind"] == "train"])


def assert_same_run(a: Path, b: Path, rtol: float) -> None:
    """Losses of every step, weights, optimizer state and the carried state of the whole batch. Each
    array within rtol of its own scale: float32 sums taken in another order differ by rounding, and an
    entry near zero has no relative digits to keep."""
    la, lb = losses(a), losses(b)
    assert len(la) == len(lb) > 0
    np.testing.assert_allclose(lb, la, rtol=rtol)
    ca, cb = checkpoint.load(a / "last.safetensors"), checkpoint.load(b / "last.safetensors")
    assert ca.progress["step"] == cb.progress["step"] and ca.progress["tokens"] == cb.progress["tokens"]
    assert ca.params.keys() == cb.params.keys() and ca.extra.keys() == cb.extra.keys()
    for got, want in ((cb.params, ca.params), (cb.extra, ca.extra)):
        for k in want:
            scale = float(np.abs(want[k]).max()) if want[k].size else 0.0
            np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=rtol * scale, err_msg=k)


# AWD-LSTM's parts (issue #31): masks drawn for the whole batch, the penalties' gradients as shares of
# the batch, windows of varied length, and NT-ASGD averaging on rank 0, which validates and saves.
AWD = ["--weight-drop", "0.4", "--dropout-kind", "locked", "--embed-dropout", "0.2", "--ar", "2", "--tar", "1",
       "--bptt-jitter", "--optimizer", "nt-asgd", "--lr", "10", "--nonmono", "1", "--eval-every", "2"]


@needs_mpi
@pytest.mark.parametrize(
    "dtype, rtol, batch, tokenizer, accumulate, extra",
    [
        ("float64", 1e-10, 4, "word", 1, []),  # embedding rows on the wire (300 words)
        ("float64", 1e-10, 5, "char", 1, []),  # a dense embedding gradient; 5 streams split 2 + 3
        ("float32", 1e-5, 4, "word", 1, []),
        ("float64", 1e-10, 4, "word", 3, []),  # three windows' rows merged into one exchange
        ("float64", 1e-10, 5, "word", 1, AWD),
    ],
    ids=["word", "char", "float32", "accumulate", "awd"],
)
def test_two_ranks_train_the_one_process_run(tmp_path, dtype, rtol, batch, tokenizer, accumulate, extra):
    corpus = wide_corpus(tmp_path / "c.txt")
    args = [corpus, "--max-steps", "20", *tiny(dtype, batch, tokenizer), "--accumulate", accumulate, *extra]
    r = invoke(["train", *args, "--out", tmp_path / "one"])
    assert r.exit_code == 0, r.output
    r = mpi_train(2, [*args, "--out", tmp_path / "two"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "different weights" not in r.stdout
    assert_same_run(tmp_path / "one", tmp_path / "two", rtol)
    if extra:  # the averaging really started, on rank 0 as in one process
        assert int(checkpoint.load(tmp_path / "two" / "last.safetensors").extra["asgd.n"][0]) > 1


@needs_mpi
def test_two_ranks_follow_one_time_plan(tmp_path):
    # Only rank 0 validates, so only it knows the time set aside for the final validation, which the
    # learning rate reads on a --max-minutes budget: shared, or the ranks' weights part.
    args = [wide_corpus(tmp_path / "c.txt"), *tiny("float64", 4, "word"), "--max-minutes", "0.04", "--log-every", "1"]
    r = mpi_train(2, [*args, "--out", tmp_path / "two"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "different weights" not in r.stdout
    p = checkpoint.load(tmp_path / "two" / "last.safetensors").progress
    assert p["valid_seconds"] > 0 and p["minutes_used"] == 0.04 and p["step"] > 10
    lines = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    rates = [x["lr"] for x in lines if x["kind"] == "train"]
    assert rates[-1] < 0.5 * max(rates)  # the time plan's cooldown ran: the rate fell with the clock


@needs_mpi
def test_two_ranks_across_epochs_and_a_finished_run(tmp_path):
    corpus = tmp_path / "c.txt"  # 40 lines: 16 windows an epoch at batch 4, bptt 5
    corpus.write_text("".join(wide_corpus(tmp_path / "w.txt").read_text().splitlines(keepends=True)[:40]))
    opts = tiny("float64", 4, "word")
    opts[opts.index("--epochs") + 1] = "2"
    args = [corpus, *opts]
    assert invoke(["train", *args, "--out", tmp_path / "one"]).exit_code == 0
    r = mpi_train(2, [*args, "--out", tmp_path / "two"])
    assert r.returncode == 0, r.stdout + r.stderr
    epochs = [checkpoint.load(tmp_path / d / "last.safetensors").progress["epoch"] for d in ("one", "two")]
    assert epochs[0] == epochs[1] == 3  # two done, the next one's number
    assert_same_run(tmp_path / "one", tmp_path / "two", 1e-10)
    r = mpi_train(2, [corpus, "--resume", tmp_path / "two"])  # nothing left to do: every rank exits 0
    assert r.returncode == 0 and r.stdout.count("is already finished") == 1, r.stdout + r.stderr


@needs_mpi
def test_each_rank_takes_its_share_of_the_cores(tmp_path):
    code = "import os; from lstmtext import mpi; g = mpi.world(); os.write(1, f'{g.rank}:{g.threads()}\\n'.encode())"
    r = mpi_python(code)
    assert r.returncode == 0, r.stderr
    share = max(1, len(os.sched_getaffinity(0)) // 2)  # two unbound ranks share this process's cores
    assert sorted(r.stdout.split()) == [f"0:{share}", f"1:{share}"]
    # one rank alone on its cores takes them all, down to OPENBLAS_NUM_THREADS (a singleton MPI run)
    alone = "from mpi4py import MPI; from lstmtext.mpi import Group; print(Group(MPI.COMM_WORLD).threads())"
    cores = len(os.sched_getaffinity(0))
    for env, want in (({}, cores), ({"OPENBLAS_NUM_THREADS": "1"}, 1)):
        r = subprocess.run([sys.executable, "-c", alone], capture_output=True, text=True, env={**CLEAN_ENV, **env},
                           timeout=60)  # fmt: skip
        assert r.returncode == 0 and r.stdout.split() == [str(want)], r.stdout + r.stderr


@needs_mpi
def test_a_rank_waiting_for_rank_0_does_not_keep_a_core_busy():
    """MPICH's blocking calls poll nonstop; the waits for rank 0 (reading the text, validating) sleep."""
    code = (
        "import os, resource, time; from lstmtext import mpi; g = mpi.world()\n"
        "if g.rank == 0: time.sleep(3)\n"
        "c0 = resource.getrusage(resource.RUSAGE_SELF); g.bcast_json({'go': 1}); g.agree(False, None, 0.0)\n"
        "c1 = resource.getrusage(resource.RUSAGE_SELF)\n"
        "os.write(1, f'{g.rank}:{c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime:.3f}\\n'.encode())"
    )
    r = mpi_python(code)
    assert r.returncode == 0, r.stderr
    cpu = dict(line.split(":") for line in r.stdout.split())
    assert float(cpu["1"]) < 1.0, cpu  # polling nonstop through rank 0's 3 s would cost about 3 s


@needs_mpi
def test_resume_on_another_number_of_ranks(tmp_path):
    corpus = wide_corpus(tmp_path / "c.txt")
    opts = [*tiny("float64", 4, "word"), "--schedule", "constant"]  # the split run's budget is raised on resume
    assert invoke(["train", corpus, "--max-steps", "20", *opts, "--out", tmp_path / "whole"]).exit_code == 0
    assert invoke(["train", corpus, "--max-steps", "9", *opts, "--out", tmp_path / "split"]).exit_code == 0
    r = mpi_train(2, [corpus, "--resume", tmp_path / "split", "--max-steps", "20"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Resuming" in r.stdout
    assert_same_run(tmp_path / "whole", tmp_path / "split", 1e-10)


def _rank_pids(out: Path) -> dict[int, int]:
    """rank -> pid of the lstmtext processes training into out (read from /proc)."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            env = dict(x.split(b"=", 1) for x in (d / "environ").read_bytes().split(b"\0") if b"=" in x)
        except OSError:
            continue
        if str(out).encode() in cmd and b"lstmtext" in cmd and b"PMI_RANK" in env:
            found[int(env[b"PMI_RANK"])] = int(d.name)
    return found


def _start_long_run(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    corpus = wide_corpus(tmp_path / "c.txt")
    out = tmp_path / "run"
    opts = tiny("float32", 4, "word")
    cmd = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "lstmtext", "train", str(corpus), *opts,
           "--epochs", "1000", "--save-every", "3", "--out", str(out)]  # fmt: skip
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLEAN_ENV)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if checkpoint.load(out / "last.safetensors").progress["step"] >= 6:
                return job, out, corpus
        except Exception:
            pass
        time.sleep(0.2)
    job.kill()
    pytest.fail("the MPI run did not get going within 60 s: " + "".join(job.communicate()))


@needs_mpi
def test_a_killed_rank_ends_the_job_and_the_checkpoint_resumes(tmp_path):
    job, out, corpus = _start_long_run(tmp_path)
    ranks = _rank_pids(out)
    assert set(ranks) == {0, 1}, ranks
    t0 = time.monotonic()
    os.kill(ranks[1], signal.SIGKILL)
    try:
        job.wait(timeout=30)
    except subprocess.TimeoutExpired:
        job.kill()
        pytest.fail("the job still ran 30 s after one of its ranks was killed")
    assert job.returncode != 0 and time.monotonic() - t0 < 30
    step = checkpoint.load(out / "last.safetensors").progress["step"]
    assert step >= 6
    r = invoke(["train", corpus, "--resume", out, "--max-steps", str(step + 2)])  # on one process
    assert r.exit_code == 0, r.output
    assert checkpoint.load(out / "last.safetensors").progress["step"] == step + 2


@needs_mpi
def test_sigterm_to_mpiexec_saves_and_stops_every_rank(tmp_path):
    job, out, _ = _start_long_run(tmp_path)
    job.send_signal(signal.SIGTERM)
    stdout, stderr = job.communicate(timeout=30)
    assert job.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert stderr.count("interrupted; progress saved") == 1  # said once, by rank 0
    ckpt = checkpoint.load(out / "last.safetensors")
    end = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert ckpt.progress["step"] == max(x.get("step", 0) for x in end)  # saved at the step it stopped
    assert ckpt.extra["state.layers.0.h"].shape == (4, 8)  # the whole batch's state, gathered


def _pretend_launched(rank: int, code: str) -> subprocess.CompletedProcess:
    env = {**CLEAN_ENV, "PMI_SIZE": "2", "PMI_RANK": str(rank)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_without_the_extra_one_line_says_what_to_install(tmp_path):
    corpus = make_corpus(tmp_path / "c.txt")
    code = (
        "import sys; sys.modules['mpi4py'] = None; from lstmtext.cli import main; "
        f"sys.argv = ['lstmtext', 'train', {str(corpus)!r}, '--out', {str(tmp_path / 'r')!r}]; main()"
    )
    r = _pretend_launched(0, code)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: this command was started by an MPI launcher with 2 processes, but mpi4py is not installed: "
        "pip install 'lstmtext[mpi]'"
    ]
    r = _pretend_launched(1, code)
    assert r.returncode == 1 and r.stderr == "" and r.stdout == ""  # the other ranks stay quiet


def test_one_process_never_imports_mpi(tmp_path):
    corpus = make_corpus(tmp_path / "c.txt")
    code = (
        "import sys; from lstmtext.cli import main; "
        f"sys.argv = ['lstmtext', 'train', {str(corpus)!r}, '--out', {str(tmp_path / 'r')!r}, '--max-steps', '2', "
        "'--epochs', '0', '--embed', '8', '--hidden', '8', '--batch-size', '4', '--bptt', '5']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'mpi4py' not in sys.modules, 'imported mpi4py'\nprint('ok')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=CLEAN_ENV, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
