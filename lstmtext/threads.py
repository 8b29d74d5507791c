"""How many threads NumPy's BLAS (and parallel.py's elementwise pool) use, chosen while training.

Why choose at all: on a laptop or a shared machine the cores are not all ours. On 2 cores, the
small config (LSTM 2×200, V 10k, B 20, T 20) trains ~40% faster with 2 BLAS threads than with 1
when the machine is quiet, but 2× *slower* once another process keeps one core busy: OpenBLAS
splits each product in equal halves and waits for both, so the half that shares a core with the
other process sets the pace, and the waits spin. No fixed count is right for both, and what the
machine can give changes while a run lasts hours. So the trainer measures.

The policy, driven by the time of each training window (`begin()` / `end(tokens)` around it):

- Time is measured in *segments*: consecutive windows at one count, at least SEGMENT_WINDOWS of
  them and SEGMENT_SECONDS of window time. A segment's cost is the mean seconds per token after
  dropping its slowest eighth: the mean, because under contention many windows get slower, not
  just a few (the median hides that tail, and throughput is the mean); trimmed, because another
  program's burst should not decide alone.
- A *probe* runs one segment at a neighbouring count (a ladder 1, 2, 4, ... up to the allowed
  cores), after one untimed settling window (BLAS threads wake up, caches refill), and compares it
  with the segment just before at the current count. If the probe is more than MARGIN faster, one
  more segment at the current count confirms it (A-B-A: a slow "before" caused by a burst does not
  switch us); the probe count wins only if it beats both. Otherwise we stay: staying is free. A
  probe SURE× faster switches without confirming. A probe (or confirmation) whose windows so far
  are EARLY× slower than the count it is compared with ends at once: one window of 1 thread on a
  quiet machine (~1.4× slower) or of 2 threads beside a busy core (2-3× slower) tells enough, and
  the rest of a segment would only cost time. So a probe that finds nothing costs about two
  windows at the worse count.
- When to probe: soon after the start (FIRST_PROBE of training), then every PERIOD_MIN of
  training, the period doubling up to PERIOD_MAX while probes keep confirming the count, back to
  PERIOD_MIN after a switch. A fixed period alone would be slow to notice a change, or costly, so
  two triggers start a probe early: the current count's cost moving by more than CHANGE× for two
  segments in a row, and (on Linux) other processes' load on our cores, read from /proc/stat every
  LOAD_EVERY seconds, moving by LOAD_STEP cores for two readings in a row. The second catches a
  busy process *stopping* while we run on one thread, which our own speed barely shows. Triggered
  probes that change nothing double a minimum gap between probes (MIN_GAP up to MAX_GAP), so a
  noisy machine cannot make us probe all the time.
- With the figures above the probes cost well under 1% of a long run's time (a few % in its first
  ~15 s, while the period grows), and a change of load is followed within ~1–2 s.

`--threads N` (fixed) sets N once and never measures. Results differ in the last bits between
thread counts (OpenBLAS sums in another order), so a run is bit-for-bit reproducible, and a resume
bit-for-bit equal to an uninterrupted run, only with a fixed count.

The BLAS is reached through ctypes, with no dependency: the OpenBLAS library NumPy loaded (NumPy ≥ 2
wheels ship libscipy_openblas64_*.so with `scipy_openblas_set_num_threads64_`, older ones
`openblas_set_num_threads`), found in /proc/self/maps or NumPy's own library folder. Any other BLAS
(MKL, Accelerate) is left alone: the tuner then reports "?" and only sets the elementwise pool.
OPENBLAS_NUM_THREADS, when set, caps the count.
"""

import ctypes
import glob
import itertools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np  # loads the BLAS before we look for it

from lstmtext import parallel

SEGMENT_WINDOWS = 3  # a measurement spans at least this many windows ...
SEGMENT_SECONDS = 0.25  # ... and this much window time
SETTLE_WINDOWS = 1  # untimed windows after each change of count
MARGIN = 0.05  # a probe must be this much faster (relative) to switch
EARLY = 1.25  # a segment under way already this many times slower than the other count's: ends now
SURE = 1.5  # a probe this many times faster than the current count switches without confirming
FIRST_PROBE = 1.0  # s of training before the first probe
PERIOD_MIN, PERIOD_MAX = 4.0, 32.0  # s of training between periodic probes
CHANGE = 1.3  # the current count's cost moved by this factor: probe now
LOAD_EVERY = 0.5  # s between readings of others' load
LOAD_STEP = 0.5  # cores: others' load moved this much: probe now
MIN_GAP, MAX_GAP = 1.0, 8.0  # s of training between a probe and a triggered one


def allowed_cores() -> int:
    """The cores this process may run on (its affinity), capped by OPENBLAS_NUM_THREADS if set."""
    n = parallel.cores()
    env = os.environ.get("OPENBLAS_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        n = min(n, int(env))
    return max(1, n)


# -- the BLAS, through ctypes ------------------------------------------------------------------


@dataclass(frozen=True)
class OpenBlas:
    path: str
    get_num_threads: Callable[[], int]
    set_num_threads: Callable[[int], None]


def _loaded_paths() -> list[str]:
    """Paths of loaded libraries that look like OpenBLAS, NumPy's first."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.rsplit(None, 1)[-1]
                if "openblas" in os.path.basename(p).lower() and p.startswith("/") and p not in paths:
                    paths.append(p)
    except OSError:
        pass
    root = os.path.dirname(os.path.dirname(np.__file__))
    for pattern in ("numpy.libs/*openblas*", "numpy/.dylibs/*openblas*"):  # Linux / macOS wheels
        paths += [p for p in sorted(glob.glob(os.path.join(root, pattern))) if p not in paths]
    return paths


def _bind(path: str) -> OpenBlas | None:
    # RTLD_NOLOAD: only bind a library that is already loaded, never load a second copy.
    mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 0)
    try:
        lib = ctypes.CDLL(path, mode=mode)
    except OSError:
        return None
    for prefix, suffix in itertools.product(("", "scipy_"), ("", "64_", "_64")):
        get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
        put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
        if get is None or put is None:
            continue
        get.restype, get.argtypes = ctypes.c_int, []
        put.restype, put.argtypes = None, [ctypes.c_int]
        parallel_kind = getattr(lib, f"{prefix}openblas_get_parallel{suffix}", None)
        if parallel_kind is not None:
            parallel_kind.restype = ctypes.c_int
            if parallel_kind() == 0:  # a sequential build: one thread whatever we ask
                return None
        return OpenBlas(os.path.realpath(path), get, put)
    return None


_found: list[OpenBlas] | None = None


def find_blas() -> list[OpenBlas]:
    """The OpenBLAS libraries loaded in this process (usually one); [] when NumPy uses another BLAS."""
    global _found
    if _found is None:
        libs: dict[str, OpenBlas] = {}
        for p in _loaded_paths():
            lib = _bind(p)
            if lib is not None:
                libs.setdefault(lib.path, lib)
        _found = list(libs.values())
    return _found


def blas_threads() -> int | None:
    """The BLAS's thread count now, or None when it cannot be read."""
    libs = find_blas()
    return libs[0].get_num_threads() if libs else None


def set_threads(n: int) -> None:
    """Use n threads in the BLAS (when found) and in parallel.py's elementwise pool."""
    for lib in find_blas():
        lib.set_num_threads(n)
    parallel.set_threads(n)


# -- others' load ------------------------------------------------------------------------------


def busy_seconds(cpus: set[str]) -> float | None:
    """CPU seconds the named lines of /proc/stat ("cpu" for the whole machine, "cpu0", ...) have
    spent busy since boot, or None off Linux. steal counts as busy: it is the VM host's."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        with open("/proc/stat") as f:
            busy = 0
            for line in f:
                name, *v = line.split()
                if name in cpus:
                    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, v[:8])
                    busy += user + nice + system + irq + softirq + steal
    except (OSError, ValueError):
        return None
    return busy / tick


class LoadMeter:
    """CPU cores used by other processes on our cores, from /proc/stat minus our own CPU time."""

    def __init__(self):
        try:
            self.cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        except AttributeError:
            self.cpus = set()
        self.last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        """-> (wall s, busy s on our cores, our CPU s), or None off Linux."""
        busy = busy_seconds(self.cpus)
        return None if busy is None else (time.monotonic(), busy, time.process_time())

    def read(self) -> float | None:
        """Others' load in cores since the last read, or None if unknown. Under 50 ms (a few clock
        ticks) the reading would be noise: None, and the next read spans from the same start."""
        now = self._sample()
        if now is None or self.last is None:
            self.last = now
            return None
        if now[0] - self.last[0] < 0.05:
            return None
        last, self.last = self.last, now
        return max(0.0, ((now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0]))


_SINCE_LAST = LoadMeter()  # `choosing`'s reading of others' load, from this module's import on

# -- the tuner ---------------------------------------------------------------------------------


@contextmanager
def choosing(fixed: int | None = None) -> Iterator["ThreadTuner"]:
    """A tuner for one piece of work outside training (scoring a text, sampling): the same policy,
    driven by the work's own windows or steps; the counts found before are put back after, since a
    library call must not leave the process's BLAS changed."""
    start = None
    if fixed is None:
        # Others' load since the last such call (or since import: reading the model and the text
        # came between): a short job cannot afford to find a busy core by probing from all cores,
        # so it starts at the cores left free; a job longer than the first probe (FIRST_PROBE) is
        # then corrected by the probes, as training is.
        others = _SINCE_LAST.read()
        if others is not None:
            start = max(1, min(allowed_cores(), int(len(_SINCE_LAST.cpus) - others + 0.5)))
    tuner = ThreadTuner(fixed=fixed, start=start)
    try:
        yield tuner
    finally:
        tuner.restore()


def _cost(per_token: list[float]) -> float:
    """Mean of the per-token times without the slowest eighth."""
    s = sorted(per_token)
    s = s[: len(s) - len(s) // 8]
    return sum(s) / len(s)


class ThreadTuner:
    """Chooses the thread count window by window; see the module docstring for the policy.

    fixed: a count to set once and keep (`--threads N`; capped at the allowed cores); None chooses,
    from `start` (default: every allowed core).
    max_threads: the most to use (default: allowed_cores()). clock and load_meter are for tests:
    a clock in seconds, and an object whose read() gives others' load in cores (or None)."""

    def __init__(
        self,
        fixed: int | None = None,
        max_threads: int | None = None,
        *,
        start: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        load_meter: LoadMeter | None = None,
    ):
        self.max_threads = max(1, max_threads or allowed_cores())
        self.fixed = None if fixed is None else max(1, min(fixed, self.max_threads))
        self.known = bool(find_blas())  # False: the BLAS is not one we can set
        self.threads = self.fixed or max(1, min(start or self.max_threads, self.max_threads))  # the count in use now
        self.probes = self.switches = 0  # for benchmarks and curious people
        self._saved = (blas_threads(), parallel.THREADS)
        set_threads(self.threads)
        self.active = self.fixed is None and self.known and self.max_threads > 1
        if not self.active:
            return
        self.clock = clock
        self.meter = load_meter if load_meter is not None else (LoadMeter() if os.path.exists("/proc/stat") else None)
        self.ladder = sorted({1, self.max_threads} | {2**k for k in range(1, self.max_threads.bit_length())})
        self._t0: float | None = None
        self._trained = 0.0  # s of window time so far: the tuner's own clock for periods and gaps
        self._seg: list[float] = []  # per-token times of the segment being measured
        self._seg_time = 0.0
        self._settle = 0
        self._phase = "run"  # "run" at self.threads, "probe" at the candidate, "confirm" back at the current
        self._current = self.threads  # the chosen count (differs from self.threads during a probe)
        self._candidate = 0
        self._triggered = False  # whether the probe under way was triggered (or periodic)
        self._before = self._probe_cost = 0.0
        self._last_cost: float | None = None  # the current count's last segment
        self._ref: float | None = None  # the current count's cost at the last decision
        self._off = 0  # segments in a row off the reference by more than CHANGE
        self._pending = 0  # a triggered probe waits for the segment's end: -1 fewer, +1 more threads
        self._period = PERIOD_MIN
        self._next_periodic = FIRST_PROBE
        self._gap = MIN_GAP
        self._last_probe = -MAX_GAP
        self._up_next = False  # which neighbour the next periodic probe tries
        self._load_ref: float | None = None
        self._load_off = 0
        self._read_at = clock()
        self._since_read = 0.0  # window time since the last load reading

    @property
    def label(self) -> str:
        """The count for a progress line: "2", or "?" when the BLAS is not one we can set."""
        return str(self.threads) if self.known else "?"

    def begin(self) -> None:
        """Call right before a training window."""
        if self.active:
            self._t0 = self.clock()

    def end(self, tokens: int) -> None:
        """Call right after it, with its token count; may change the count for the next window."""
        if not self.active or self._t0 is None:
            return
        now = self.clock()
        dt, self._t0 = now - self._t0, None
        self._trained += dt
        self._since_read += dt
        if self.meter is not None and now - self._read_at >= LOAD_EVERY:
            self._check_load(now)
        if self._settle:
            self._settle -= 1
            return
        if tokens <= 0 or dt <= 0:
            return
        self._seg.append(dt / tokens)
        self._seg_time += dt
        full = len(self._seg) >= SEGMENT_WINDOWS and self._seg_time >= SEGMENT_SECONDS
        if full or self._early():
            cost = _cost(self._seg)
            self._seg, self._seg_time = [], 0.0
            self._segment_done(cost)

    def _early(self) -> bool:
        """During a probe or its confirmation: is the count being timed already clearly slower than
        the other one? Then the rest of its segment would only cost time; end it now. A burst may
        end one early: we then stay, the safe side, or take the count that was measured faster."""
        if self._phase == "run":
            return False
        other = self._before if self._phase == "probe" else self._probe_cost
        return sum(self._seg) / len(self._seg) > EARLY * other

    def restore(self) -> None:
        """Put back the counts found at construction (for library users; the CLI exits anyway)."""
        blas, pool = self._saved
        if blas is not None:
            for lib in find_blas():
                lib.set_num_threads(blas)
        parallel.set_threads(pool)

    # -- the policy's steps ---------------------------------------------------------------------

    def _use(self, n: int) -> None:
        if n != self.threads:
            set_threads(n)
            self.threads = n
            self._settle = SETTLE_WINDOWS

    def _neighbour(self, direction: int, fallback: bool) -> int:
        """The next count on the ladder in that direction (-1 fewer, +1 more); else the other
        way if fallback, else the current count."""
        i = self.ladder.index(self._current)
        for d in (direction, -direction) if fallback else (direction,):
            if 0 <= i + d < len(self.ladder):
                return self.ladder[i + d]
        return self._current

    def _check_load(self, now: float) -> None:
        spanned, trained = now - self._read_at, self._since_read
        self._read_at, self._since_read = now, 0.0
        load = self.meter.read()
        # A reading across a pause (validation, another program's turn in a benchmark) says
        # nothing about training: drop it.
        if load is None or trained < 0.8 * spanned:
            return
        if self._load_ref is None:
            self._load_ref = load
            return
        delta = load - self._load_ref
        self._load_off = self._load_off + 1 if abs(delta) >= LOAD_STEP else 0
        if self._load_off >= 2 and self._phase == "run":
            self._pending = -1 if delta > 0 else 1  # others took cores: try fewer threads
            self._load_ref, self._load_off = load, 0

    def _segment_done(self, cost: float) -> None:
        if self._phase == "probe":
            self._probe_cost = cost
            if cost * SURE < self._before:  # far faster: no need to confirm
                self._decide(switch=True, cost=cost)
            elif cost < self._before * (1 - MARGIN):
                self._phase = "confirm"
                self._use(self._current)
            else:
                self._decide(switch=False, cost=self._before)
            return
        if self._phase == "confirm":
            self._decide(switch=self._probe_cost < min(self._before, cost) * (1 - MARGIN), cost=cost)
            return
        self._last_cost = cost
        if self._ref is None:
            self._ref = cost
        off = cost / self._ref
        self._off = self._off + 1 if off > CHANGE or off < 1 / CHANGE else 0
        if self._off >= 2:
            self._pending = -1 if off > 1 else 1
        gap_ok = self._trained - self._last_probe >= self._gap
        if self._pending and gap_ok:
            self._start_probe(self._pending, triggered=True)
        elif self._trained >= self._next_periodic:
            self._start_probe(1 if self._up_next else -1, triggered=False)
            self._up_next = not self._up_next

    def _start_probe(self, direction: int, triggered: bool) -> None:
        candidate = self._neighbour(direction, fallback=not triggered)
        self._pending, self._off = 0, 0
        if candidate == self._current:  # nothing to try that way: take the new speed as the reference
            self._ref = self._last_cost
            return
        self.probes += 1
        self._triggered = triggered
        self._candidate, self._before, self._phase = candidate, self._last_cost, "probe"
        self._use(candidate)

    def _decide(self, switch: bool, cost: float) -> None:
        """End a probe: keep the candidate or the current count; reset the references."""
        if switch:
            self.switches += 1
            self._current, self._ref = self._candidate, self._probe_cost
            self._period, self._gap = PERIOD_MIN, MIN_GAP
        else:
            self._ref = cost
            if self._triggered:
                self._gap = min(2 * self._gap, MAX_GAP)
            else:
                self._period = min(2 * self._period, PERIOD_MAX)
        self._use(self._current)
        self._phase, self._off, self._pending = "run", 0, 0
        self._last_probe = self._trained
        self._next_periodic = self._trained + self._period
        self._load_ref, self._load_off = None, 0  # the next clean reading is the new baseline
