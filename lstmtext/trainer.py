"""The training loop: TBPTT windows, optimizer steps, validation, patience, progress, checkpoints.

Where training stands lives in one `progress` dict (epoch, window within the epoch, step, best
validation perplexity, RNG state, ...) that goes into every checkpoint; together with the weights,
the optimizer state and the carried hidden state it lets `--resume` continue bit for bit.

What can go wrong, and what happens then:
- Ctrl-C / SIGTERM: the current step finishes, last.safetensors is written, Interrupted is raised.
- kill -9: checkpoints are written atomically, so the previous one survives; --save-every bounds
  the loss. A resumed run drops the metrics lines logged after its checkpoint, so none repeat.
- a diverged window (non-finite, or a loss past all reason; see `healthy`): the weights are not
  touched; training stops (--on-nan stop) with the last good weights on disk, or skips that window
  (--on-nan skip), counted in the metrics.

Under MPI (mpi.py) the same loop runs on every rank over its columns of the batch; rank 0 alone
validates, logs and writes, and the ranks agree once per step on whether to stop.
"""

import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich import progress as bars
from rich.console import Console
from rich.table import Table

from lstmtext import batching, checkpoint, evaluate, model, mpi, optim, sample, schedule, threads
from lstmtext.config import ModelConfig, TrainConfig
from lstmtext.errors import Diverged, TrainingError
from lstmtext.progress import Progress

if TYPE_CHECKING:
    from lstmtext.start import Start

METRICS_VERSION = 1
# A window whose mean loss is this many times that of guessing uniformly (log V) has diverged, even
# when float32 still holds it: weights blown up by a huge step give losses like 1e29 that overflow
# on some NumPy builds and not on others.
DIVERGED_LOSS_FACTOR = 100.0


def healthy(loss: float, norm: float, vocab_size: int) -> bool:
    """False for a window that diverged: a non-finite loss or gradient norm, or an absurd loss."""
    bound = DIVERGED_LOSS_FACTOR * max(1.0, math.log(vocab_size))
    return math.isfinite(loss) and math.isfinite(norm) and loss < bound


# Windows of the held-out text timed at the start of a --max-minutes run (after one untimed), to foresee
# the final validation's time before a validation has measured it.
VALIDATION_PROBE_WINDOWS = 8
VALIDATION_WARN_SHARE = 0.25  # of a --max-minutes budget: a final validation taking more is said at the start

# --sample-every: a line or two of text whatever the tokenizer (30 characters said nothing), a little
# conservative, the same each time so that samples compare.
SAMPLE_OPTIONS = sample.SampleOptions(length=30, temperature=0.8)
SAMPLE_TOKENS = {"word": 30, "bpe": 40, "char": 150}
LINE_END_SHOWN = " ↵ "  # a sample's line ends, on the one line it is printed on ("/" is common in text)


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving; `signum` picks the exit code."""

    every_rank = True  # under MPI the ranks agree on a signal before any of them stops

    def __init__(self, signum: int, path: Path):
        super().__init__(f"interrupted; progress saved in {path}; resume with: lstmtext train --resume {path.parent}")
        self.signum = signum


class MetricsLog:
    """metrics.jsonl: one JSON object per line, appended; every line carries the format version."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, **record) -> None:
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"format_version": METRICS_VERSION, **record}) + "\n")
        except OSError as e:
            raise TrainingError(f"cannot write {self.path}: {e.strerror or e}; the last checkpoint is kept") from None

    def drop_after(self, step: int) -> None:
        """On resume: forget what was logged after the checkpoint, since those steps run again."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if rec.get("step", rec.get("steps", 0)) <= step:
                keep.append(line)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(x + "\n" for x in keep), encoding="utf-8")
        tmp.replace(self.path)


class _NoMetrics:
    """The metrics of an MPI rank other than 0: rank 0 writes them."""

    def write(self, **record) -> None:
        pass

    def drop_after(self, step: int) -> None:
        pass


@contextmanager
def handling_signals(handler) -> Iterator[None]:
    """SIGINT and SIGTERM go to `handler` (a function, or signal.SIG_IGN) inside the block. Python
    lets only the main thread set handlers; in another thread (a notebook's worker, say) the block
    keeps the default ones, so Ctrl-C there raises KeyboardInterrupt."""
    main = threading.current_thread() is threading.main_thread()
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _StopSignals:
    """A signal handler that only notes SIGINT/SIGTERM, checked between steps, so a step is never cut
    in half."""

    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame):
        self.signum = signum


def _progress_bar(console: Console) -> bars.Progress:
    """One line that fits 80 columns: the epoch's bar, the loss, the speed, the run's clock and the
    time the whole run has left (perplexity is on the validation lines)."""
    return bars.Progress(
        bars.TextColumn("[bold]epoch {task.fields[epoch]}"),
        bars.BarColumn(bar_width=12),  # the epoch's progress; its window count would not fit 80 columns
        bars.TextColumn(
            "loss {task.fields[loss]:.3f} {task.fields[tps]} tok/s {task.fields[threads]} thr "
            "{task.fields[clock]}, {task.fields[left]} left"
        ),
        console=console,
        transient=False,
    )


def _hms(seconds: float | None) -> str:
    """1:02:03, 2:03: a clock's reading; "?" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _speed(tokens_per_s: float) -> str:
    return f"{tokens_per_s / 1000:.1f}k" if tokens_per_s >= 10_000 else f"{tokens_per_s:,.0f}"


def train_step(
    params: dict,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    opt_state: dict,
    lr: float,
    x: np.ndarray,
    y: np.ndarray,
    state: dict,
    rng: np.random.Generator,
    exchange=None,
    columns: tuple[int, slice] | None = None,
) -> tuple[float, float, dict]:
    """One TBPTT window: forward, backward, clip, update. -> (loss, gradient norm, next state)."""
    return accumulated_step(params, model_cfg, cfg, opt_state, lr, [(x, y)], state, rng, exchange, columns)[:3]


def accumulated_step(
    params: dict,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    opt_state: dict,
    lr: float,
    windows: list[tuple[np.ndarray, np.ndarray]],
    state: dict,
    rng: np.random.Generator,
    exchange=None,
    columns: tuple[int, slice] | None = None,
) -> tuple[float, float, dict, bool]:
    """One optimizer step over consecutive windows (--accumulate), the state carried from one to the
    next: the loss and gradient are the mean over all their tokens. -> (loss, gradient norm, next
    state, whether the step was healthy and applied).

    A diverged step (see `healthy`) leaves the weights untouched, so the caller can stop cleanly.
    Under MPI, exchange (mpi.GradientSum) turns this rank's loss and gradients into the whole
    batch's, and columns says which streams of the batch x holds (for the dropout masks)."""
    total = sum(x.shape[0] for x, _ in windows)
    loss, grads, new_state = 0.0, None, state
    # Overflow shows up as a non-finite loss or norm, which the caller handles: no warnings on stderr.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for x, y in windows:
            window_loss, _, cache, new_state = model.forward(params, model_cfg, x, y, new_state, rng, columns=columns)
            g, _ = model.backward(params, model_cfg, cache)
            share = x.shape[0] / total  # each window's tokens count once in the step's mean
            loss += share * window_loss
            grads = g if len(windows) == 1 else optim.add_scaled(grads, g, share)
        if cfg.freeze_embed:  # as requires_grad=False: not clipped, decayed or moved
            del grads["embed.W"]
        if exchange is not None:  # before decay and clipping, which act on the whole batch's gradient
            loss = exchange(grads, loss)
        if cfg.weight_decay:
            optim.add_weight_decay(params, grads, cfg.weight_decay)
        norm = optim.global_norm(grads)  # clipping happens inside the update: clip_scale
    ok = healthy(loss, norm, model_cfg.vocab_size)
    if exchange is not None:  # one verdict for all: a rank that stepped alone would leave the others behind
        ok = exchange.group.all(ok)
    if ok:
        optim.step(cfg.optimizer, params, grads, opt_state, lr, optim.clip_scale(norm, cfg.clip))
    return loss, norm, new_state, ok


class Trainer:
    """One run: its weights, optimizer state, carried state, progress, and its run directory."""

    def __init__(self, start: "Start", console: Console, group: "mpi.Group | None" = None):
        """start: what lstmtext.start made (a new run, a resume, or what an MPI rank other than 0
        received); group: the MPI ranks sharing this run (None: one process)."""
        cfg = start.cfg
        self.data, self.model_cfg, self.cfg, self.out = start.data, start.model_cfg, cfg, start.out
        self.console = console
        self.group, self.lead = group, group is None or group.rank == 0
        self.columns = None if group is None else (cfg.batch_size, group.columns(cfg.batch_size))
        whole = group is None or not self.lead  # rank 0 holds every column; the others only theirs
        self.streams = start.streams if whole else np.ascontiguousarray(start.streams[:, self.columns[1]])  # (n, B_r)
        self.n_windows = batching.num_windows(self.streams.shape[0], cfg.bptt)
        self.rng = np.random.default_rng()  # dropout masks and state resets, from the run's saved state
        self.rng.bit_generator.state = start.prog.rng
        self.dtype = np.dtype(cfg.dtype)
        self.params, self.opt_state, self.state, self.prog = start.params, start.opt_state, start.state, start.prog
        self.exchange = None
        if group is not None:  # rank 0 has sent the start to the others (start.send)
            self.state = {k: np.ascontiguousarray(v[self.columns[1]]) for k, v in self.state.items()}  # (B_r, H)
            shapes = {k: p.shape for k, p in optim.trainable(self.params, cfg.freeze_embed).items()}
            longest = cfg.bptt + (batching.JITTER_MAX if cfg.bptt_jitter else 0)
            steps = longest * cfg.accumulate  # an --accumulate step merges the rows of all its windows
            self.exchange = mpi.GradientSum(group, shapes, self.dtype, cfg.batch_size, steps, not self.model_cfg.tie)
            if (cfg.rollback or cfg.plateau) and self.lead:
                console.print("Note: --rollback and --plateau are off under MPI (the ranks would have to agree on "
                              "them): a run that diverges or stops improving goes on.", soft_wrap=True)  # fmt: skip
        if self.lead:
            self.out.mkdir(parents=True, exist_ok=True)
            for stale in self.out.glob(".*.tmp-*"):
                stale.unlink(missing_ok=True)  # temp files of a writer killed mid-write
            self.metrics: MetricsLog | _NoMetrics = MetricsLog(self.out / "metrics.jsonl")
            if start.resumed:
                self.metrics.drop_after(self.prog.step)
        else:
            self.metrics = _NoMetrics()
        self.tok_json = self.data.tokenizer.to_json() if self.lead else ""
        self.valid_time = 0.0  # seconds spent validating (and sampling), left out of the training tokens/s
        # Under MPI each rank takes its share of the machine's cores, fixed: ranks that chose their
        # own counts would wait for the slowest at every step.
        self.tuner = threads.ThreadTuner(fixed=cfg.threads or (group.threads() if group is not None else None))
        self.last_sample_step = -1  # --sample-every: one sample per step at most

    def agree(self, finished: bool, signum: int | None) -> tuple[bool, int | None]:
        """Whether to stop, and on which signal: rank 0 decides the budget, any rank may be signalled.
        Under MPI every rank takes rank 0's clock and the seconds it sets aside for the final validation,
        so the plan's learning rate is the same everywhere."""
        if self.group is None:
            return finished, signum
        prog = self.prog
        finished, signum, prog.elapsed, prog.valid_seconds = self.group.agree(
            finished, signum, prog.elapsed, prog.valid_seconds or 0.0
        )
        return finished, signum

    # -- checkpoints and validation ------------------------------------------------------------

    def snapshot(self, best: bool = False, state: dict | None = None) -> checkpoint.Checkpoint:
        """state: the whole batch's carried state (under MPI, gathered from the ranks); default ours."""
        self.prog.rng = self.rng.bit_generator.state
        state = self.state if state is None else state
        params, opt_state = optim.swap_average(self.params, self.opt_state)  # NT-ASGD: the average is the model
        extra = {} if best else {**opt_state, **{f"state.{k}": v for k, v in state.items()}}
        return checkpoint.Checkpoint(
            self.model_cfg, params, self.tok_json, self.cfg, self.prog.to_dict(), extra, self.data.info
        )

    def weights(self) -> dict:
        """What validation, samples and checkpoints use: the weights, or NT-ASGD's average of them."""
        return optim.averaged(self.params, self.opt_state)

    def save_last(self) -> Path:
        """Under MPI every rank calls this at the same step (the state is gathered); rank 0 writes."""
        path = self.out / "last.safetensors"
        state = None
        if self.group is not None:
            state = {k: self.group.gather_columns(self.state[k], self.cfg.batch_size) for k in sorted(self.state)}
        if self.lead:
            checkpoint.save(path, self.snapshot(state=state))
        return path

    def validate(self, final: bool = False) -> float:
        """final: the run's last validation, which does not roll back (nothing is left to train)."""
        if not self.lead:
            return math.nan  # rank 0 validates; the others wait for it at the next agreement
        t0 = time.perf_counter()
        cfg, prog = self.cfg, self.prog
        ids = self.data.valid_ids
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            total, n = evaluate.score(self.weights(), self.model_cfg, ids, cfg.eval_batch_size, cfg.bptt)
        ppl = evaluate.perplexity(total / n)
        if cfg.optimizer == "nt-asgd" and not optim.averaging(self.opt_state):
            self.trigger_averaging(total / n)
        best = prog.best_valid_ppl
        improved = best is None or ppl < best
        if improved:
            prog.best_valid_ppl, prog.bad_evals = ppl, 0
            checkpoint.save(self.out / "best.safetensors", self.snapshot(best=True))
        else:
            prog.bad_evals += 1
        prog.last_valid_step, prog.last_valid_ppl = prog.step, ppl
        train_loss = prog.train_loss_sum / prog.train_steps if prog.train_steps else math.nan
        back = not final and self.should_roll_back(total / n, train_loss)
        prog.valid_history.append(total / n)
        lowest = prog.best_train_loss
        if not math.isnan(train_loss) and (lowest is None or train_loss < lowest):
            prog.best_train_loss = train_loss
        prog.train_loss_sum, prog.train_steps = 0.0, 0
        extra = {"train_loss": train_loss} if math.isfinite(train_loss) else {}  # since the last validation
        self.metrics.write(kind="valid", step=prog.step, epoch=prog.epoch, loss=total / n, ppl=ppl, best=improved,
                           **extra, **({"rollback": True} if back else {}))  # fmt: skip
        self.console.print(f"  valid ppl {ppl:9,.2f}  at step {prog.step:,}" + ("  (best)" if improved else ""))
        prog.valid_seconds = time.perf_counter() - t0  # what the plan keeps for the final validation
        if back:
            self.roll_back(total / n, train_loss, lowest)
        elif not final and self.should_settle():
            self.meter.tick()  # the plan is cut where the next step's clock stands, this validation spent
            self.settle()
        elif best is not None and not ppl <= 2 * best:  # a nan counts as a jump too
            self.console.print(
                f"  [yellow]warning[/]: validation perplexity {ppl:.1f} is more than twice the best so far "
                f"({best:.1f}); training may be diverging: try a lower --lr or --clip",
                soft_wrap=True,
            )
        self.valid_time += time.perf_counter() - t0
        if self.cfg.sample_every and self.last_sample_step != prog.step:
            self.show_sample()
        return ppl

    def should_roll_back(self, loss: float, train_loss: float) -> bool:
        """--rollback: whether the run is diverging: this validation loss that much above the best, and
        the training loss since the last validation that much above its lowest such mean. Both, so that
        a run that only overfits (its training loss still falling) goes on as it would without the
        option. NT-ASGD's average is its own remedy, and under MPI the ranks would have to agree on it:
        neither rolls back."""
        prog, frac = self.prog, self.cfg.rollback
        if not frac or prog.best_valid_ppl is None or self.group is not None or self.cfg.optimizer == "nt-asgd":
            return False
        if prog.best_train_loss is None or math.isnan(train_loss):
            return False
        if not (self.out / "best.safetensors").exists():  # resumed into another --out: its best is elsewhere
            return False
        return optim.diverging(loss, math.log(prog.best_valid_ppl), train_loss, prog.best_train_loss, frac)

    def back_to_best(self) -> checkpoint.Checkpoint:
        """--rollback and --plateau: the weights of best.safetensors, and a zero carried state (the one
        carried belongs to the weights dropped). -> that checkpoint, for its step."""
        best = checkpoint.load(self.out / "best.safetensors")
        self.params = {k: np.array(v, dtype=self.dtype) for k, v in best.params.items()}
        self.state = model.init_state(self.model_cfg, self.streams.shape[1], self.dtype)  # (B_r, H)
        return best

    def should_settle(self) -> bool:
        """--plateau: whether the run has stopped improving while wsd holds its rate (schedule.plateaued).
        Off where --rollback is, and once the plan has been shortened."""
        prog, cfg = self.prog, self.cfg
        if not cfg.plateau or prog.best_valid_ppl is None or self.group is not None or cfg.optimizer == "nt-asgd":
            return False
        if not schedule.holding(cfg, prog, self.n_windows) or not (self.out / "best.safetensors").exists():
            return False
        return schedule.plateaued(prog.valid_history, math.log(prog.best_valid_ppl), cfg.plateau)

    def settle(self) -> None:
        """Back to the best weights (the optimizer's running averages kept: the run is overfitting, not
        diverging, so they are sound), a zero carried state, and wsd's decay from here; the plan ends
        when the decay does (schedule.end_plan_now)."""
        prog, cfg = self.prog, self.cfg
        best = self.back_to_best()
        schedule.end_plan_now(cfg, prog, self.n_windows)
        self.metrics.write(kind="plateau", step=prog.step, epoch=prog.epoch, plan_end=prog.plan_end)
        ends = (f"at {_hms(60 * cfg.max_minutes * prog.plan_end)} of the {cfg.max_minutes:g} minutes" if cfg.max_minutes
                else f"at {100 * prog.plan_end:.0f}% of the budget")
        self.console.print(
            f"  stopped improving: the last validations are all more than {100 * cfg.plateau:g}% above the best "
            f"perplexity ({prog.best_valid_ppl:,.2f}, step {best.progress.get('step', 0):,}): back to those weights, "
            f"the learning rate decays from here and the run ends {ends} (--plateau)",
            soft_wrap=True,
        )

    def roll_back(self, loss: float, train_loss: float, lowest: float) -> None:
        """Back to the best weights (best.safetensors, as validated), a fresh optimizer, a zero
        carried state, and half the learning rate for the rest of the run; the text goes on from
        where it is."""
        prog, cfg = self.prog, self.cfg
        best = self.back_to_best()
        self.opt_state = optim.init_state(cfg.optimizer, optim.trainable(self.params, cfg.freeze_embed))
        prog.lr_scale *= 0.5
        prog.rollbacks += 1
        prog.valid_history.clear()  # --plateau judges the weights the run goes on with, not those dropped
        self.console.print(
            f"  diverging: validation loss {loss:.3f} is {100 * (loss / math.log(prog.best_valid_ppl) - 1):.0f}% above "
            f"the best ({math.log(prog.best_valid_ppl):.3f}, step {best.progress.get('step', 0):,}) and training loss "
            f"{train_loss:.3f} {100 * (train_loss / lowest - 1):.0f}% above its lowest: back to those weights with a "
            f"fresh optimizer, learning rate ×{prog.lr_scale:g} from here (--rollback)",
            soft_wrap=True,
        )

    def trigger_averaging(self, loss: float) -> None:
        """NT-ASGD: average from the first validation that has stalled (optim.stalled)."""
        seen = self.prog.valid_losses
        if optim.stalled(seen, loss, self.cfg.nonmono):
            optim.start_averaging(self.params, self.opt_state)
            seen.clear()
            self.metrics.write(kind="averaging", step=self.prog.step, epoch=self.prog.epoch)
            self.console.print(f"  NT-ASGD: validation stalled; averaging the weights from step {self.prog.step:,} on")
        else:
            seen.append(loss)

    def foresee_validation(self) -> None:
        """--max-minutes: before any validation has been timed, set aside the time the final one will
        take. Called by rank 0 after the first step, once the thread count validations run with is set;
        `agree` hands the figure to the other ranks before their second step, so every rank plans alike."""
        cfg, prog = self.cfg, self.prog
        prog.valid_seconds = seconds = self.time_validation()
        budget = 60 * cfg.max_minutes
        if seconds > VALIDATION_WARN_SHARE * budget:
            left = "no time is left to train" if seconds >= budget else "the plan sets that time aside for it"
            self.console.print(
                f"  [yellow]note[/]: validating the {len(self.data.valid_ids):,} held-out tokens will take about "
                f"{seconds:.3g} s of the {cfg.max_minutes:g}-minute budget, and the run ends with one validation: "
                f"{left}; give more --max-minutes, or --valid a shorter held-out text",
                soft_wrap=True,
            )

    def time_validation(self) -> float:
        """Seconds a validation of the whole held-out text will take, extrapolated from a timed slice of
        it."""
        ids, batch, bptt = self.data.valid_ids, self.cfg.eval_batch_size, self.cfg.bptt
        n = min(len(ids), batch * bptt * VALIDATION_PROBE_WINDOWS + 1)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            evaluate.score(self.weights(), self.model_cfg, ids[: batch * bptt + 1], batch, bptt)  # first-call set-up
            t0 = time.perf_counter()
            evaluate.score(self.weights(), self.model_cfg, ids[:n], batch, bptt)
        return (time.perf_counter() - t0) * len(ids) / max(n, 1)

    def show_sample(self) -> None:
        """A short sample from the same prompt and seed each time, so the runs' samples compare."""
        if not self.lead:
            return
        t0 = time.perf_counter()
        tok = self.data.tokenizer
        start = tok.encode("\n") if tok.eos_id is None else np.array([tok.eos_id])
        ids = sample.generate(
            self.weights(),
            self.model_cfg,
            start,
            replace(SAMPLE_OPTIONS, length=SAMPLE_TOKENS.get(tok.kind, SAMPLE_OPTIONS.length)),
            np.random.default_rng(self.cfg.seed),
            token_filter=sample.TokenFilter(tok, 1, start),
        )[0]
        detok = tok.detokenizer(start)
        text = "".join(detok.push(int(i)) for i in ids) + detok.flush(drop_unfinished=True)
        text = text.strip().replace("\n", LINE_END_SHOWN)
        self.last_sample_step = self.prog.step
        self.metrics.write(kind="sample", step=self.prog.step, text=text)
        line = f"  sample at step {self.prog.step:,}: {text}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        self.valid_time += time.perf_counter() - t0

    def budget_spent(self) -> bool:
        cfg, prog = self.cfg, self.prog
        steps_spent = bool(cfg.max_steps and prog.step >= cfg.max_steps)
        return (steps_spent or schedule.time_spent(cfg, prog, validated=prog.last_valid_step == prog.step)
                or schedule.plan_over(cfg, prog, self.n_windows))

    def out_of_patience(self) -> bool:
        return bool(self.cfg.patience and self.prog.bad_evals >= self.cfg.patience)

    # -- the loop ------------------------------------------------------------------------------

    def step(self, windows: list[tuple[np.ndarray, np.ndarray]], lr: float) -> tuple[float, float]:
        """One optimizer step over 1 (or --accumulate) windows; handles a diverged one as --on-nan
        says. -> (loss, gradient norm)."""
        prog = self.prog
        if self.cfg.reset_state:
            self.state = self.fresh_starts(self.state)
        self.tuner.begin()
        loss, norm, new_state, ok = accumulated_step(
            self.params, self.model_cfg, self.cfg, self.opt_state, lr, windows, self.state, self.rng,
            self.exchange, self.columns,
        )
        rows = sum(x.shape[0] for x, _ in windows)  # time steps this step trained
        self.tuner.end(rows * self.streams.shape[1])
        if not ok:
            if self.cfg.on_nan == "stop":
                raise Diverged(
                    f"training diverged at step {prog.step + 1} (loss {loss}, gradient norm {norm}); "
                    f"the checkpoints in {self.out} hold the last good weights; start a new run (--force or "
                    f"another --out) with a lower --lr or --clip, or use --on-nan skip"
                )
            prog.skipped += 1  # the weights are untouched; the state carries on from before
        else:
            self.state = new_state
            prog.train_loss_sum, prog.train_steps = prog.train_loss_sum + loss, prog.train_steps + 1  # --rollback
        prog.window += len(windows)
        prog.step += 1
        prog.tokens += rows * self.cfg.batch_size  # the whole batch's, on every rank
        return loss, norm

    def fresh_starts(self, state: dict) -> dict:
        """--reset-state: each stream's state is zeroed with that chance. The whole batch's draw on every
        MPI rank, each keeping its own columns, as for the dropout masks."""
        fresh = self.rng.random(self.cfg.batch_size) < self.cfg.reset_state  # (B,)
        if self.columns is not None:
            fresh = fresh[self.columns[1]]  # (B_r,)
        if not fresh.any():
            return state
        return {k: np.where(fresh[:, None], 0, v).astype(v.dtype, copy=False) for k, v in state.items()}  # (B_r, H)

    def run(self) -> dict:
        """Train until the budget or patience ends; -> summary. Raises Interrupted after saving."""
        self.meter = Meter(self.prog)
        signals = _StopSignals()
        with handling_signals(signals), _progress_bar(self.console) as bar:
            # The budget is checked first too: resuming a finished run must not take one more step.
            finished = self.budget_spent() or self.out_of_patience()
            while not finished and not (self.cfg.epochs and self.prog.epoch > self.cfg.epochs):
                finished = self.run_epoch(bar, signals)
            self.finish(finished)
        return self.summarize(finished)

    def run_epoch(self, bar: bars.Progress, signals: "_StopSignals") -> bool:
        """The rest of the epoch under way, then its end. -> whether the run is finished."""
        cfg, prog = self.cfg, self.prog
        lengths = None
        if cfg.bptt_jitter:  # the epoch's own draw, so a resume finds the same windows (every MPI rank too)
            draws = np.random.default_rng([cfg.seed, 2, prog.epoch])  # the seed's third stream, one per epoch
            lengths = batching.jittered_lengths(self.streams.shape[0], cfg.bptt, draws)
            self.n_windows = len(lengths)
        task = bar.add_task("", total=self.n_windows, completed=prog.window, epoch=prog.epoch, **self.bar_fields())
        for windows in batching.groups(batching.windows(self.streams, cfg.bptt, prog.window, lengths), cfg.accumulate):
            lr = schedule.learning_rate(cfg, prog, self.n_windows) * prog.lr_scale  # the plan moves every step
            if lengths is not None:  # a token weighs the same in a short window as in a long one (AWD-LSTM)
                lr *= sum(x.shape[0] for x, _ in windows) / (cfg.bptt * len(windows))
            tokens_before = prog.tokens
            loss, norm = self.step(windows, lr)
            self.meter.count(loss, prog.tokens - tokens_before, self.valid_time)
            if prog.step % cfg.log_every == 0:
                self.log_train(lr, norm)
            bar.update(task, advance=len(windows), **self.bar_fields())
            # Everything this step owes (validation, save, budget) happens before a signal is
            # honoured, so an interrupted-and-resumed run does exactly what an undisturbed one does.
            self.after_step()
            if self.stop_here(signals, saved=None):
                return True
        return self.end_epoch(signals)

    def bar_fields(self) -> dict:
        """The progress line's numbers after a step."""
        m, left = self.meter, schedule.seconds_left(self.cfg, self.prog, self.n_windows)
        return {"loss": m.last_loss, "tps": _speed(m.tokens_per_s), "threads": self.tuner.label,
                "clock": _hms(self.prog.elapsed), "left": _hms(left)}  # fmt: skip

    def log_train(self, lr: float, norm: float) -> None:
        """One line of metrics.jsonl: the mean loss since the last one, and the speed."""
        prog, mean = self.prog, self.meter.mean_loss()
        self.metrics.write(kind="train", step=prog.step, epoch=prog.epoch, loss=mean, ppl=evaluate.perplexity(mean),
                           lr=lr, grad_norm=norm, tokens_per_s=self.meter.tokens_per_s, skipped=prog.skipped,
                           elapsed=prog.elapsed)  # fmt: skip
        self.meter.new_line(self.valid_time)

    def after_step(self) -> None:
        """What is due at this step: --eval-every, --sample-every, --save-every, and (once, with
        --max-minutes) the estimate of the final validation's time."""
        cfg, prog = self.cfg, self.prog
        if cfg.eval_every and prog.step % cfg.eval_every == 0 and not schedule.too_late_to_validate(cfg, prog):
            self.validate()
        if cfg.sample_every and prog.step % cfg.sample_every == 0 and self.last_sample_step != prog.step:
            self.show_sample()
        if cfg.save_every and prog.step % cfg.save_every == 0:
            self.save_last()
        if self.lead and cfg.max_minutes and prog.valid_seconds is None:
            self.foresee_validation()

    def end_epoch(self, signals: "_StopSignals") -> bool:
        """The epoch is complete: validate (unless the final validation is near), save, then start the
        next one from a zero state."""
        prog = self.prog
        prog.epoch += 1
        prog.window = 0
        self.state = model.init_state(self.model_cfg, self.streams.shape[1], self.dtype)  # (B_r, H)
        if prog.last_valid_step != prog.step and not schedule.too_late_to_validate(self.cfg, prog):
            self.validate()
        return self.stop_here(signals, saved=self.save_last())

    def stop_here(self, signals: "_StopSignals", saved: Path | None) -> bool:
        """After a step or an epoch: whether the budget or patience ends the run here (all MPI ranks
        agreeing); else, on a signal, save (unless `saved` already holds this step) and raise."""
        self.meter.tick()  # a validation may just have run
        stop, signum = self.agree(self.budget_spent() or self.out_of_patience(), signals.signum)
        if stop:
            return True
        if signum is not None:
            raise Interrupted(signum, saved or self.save_last())
        return False

    def finish(self, finished: bool) -> None:
        """The run's last validation and save, the validation inside the budget's time."""
        cfg, prog = self.cfg, self.prog
        if finished and cfg.max_minutes and schedule.time_spent(cfg, prog, prog.last_valid_step == prog.step):
            # Kept, because the final validation may take less time than was set aside for it.
            prog.minutes_used = cfg.max_minutes
        if prog.last_valid_step != prog.step:
            self.validate(final=True)
        self.meter.tick()
        self.save_last()

    def summarize(self, finished: bool) -> dict:
        if self.group is not None and not self.group.same_weights(self.params) and self.lead:
            self.console.print("[yellow]warning[/]: the MPI ranks ended with different weights; please report this")
        prog, m = self.prog, self.meter
        summary = {
            "stop": "plateau" if prog.plan_ended else "patience" if self.out_of_patience() else "budget",
            "stop_reason": schedule.finished_reason(self.cfg, prog) or "",
            "epoch": prog.epoch,
            "steps": prog.step,
            "tokens": prog.tokens,
            "skipped": prog.skipped,
            "rollbacks": prog.rollbacks,
            "elapsed": prog.elapsed,
            "tokens_per_s": (prog.tokens - m.tokens0) / max(m.wall() - self.valid_time, 1e-9),
            "best_valid_ppl": prog.best_valid_ppl,
            "last_train_loss": m.last_loss,
        }
        self.metrics.write(kind="end", **summary)
        if self.lead:  # the others never validated: they have no perplexity to show
            print_summary(self.console, summary, self.model_cfg, self.out)
        return summary


class Meter:
    """The run's clock (prog.elapsed, carried across resumes) and, between two lines of
    metrics.jsonl, the mean loss and the training speed, validation and sampling time left out."""

    def __init__(self, prog: Progress):
        self.prog = prog
        self.t_start = time.perf_counter()
        self.elapsed0, self.tokens0 = prog.elapsed, prog.tokens  # where this process began
        self.last_loss, self.tokens_per_s = float("nan"), 0.0
        self.new_line(0.0)

    def wall(self) -> float:
        """Seconds since this process began training."""
        return time.perf_counter() - self.t_start

    def tick(self) -> None:
        self.prog.elapsed = self.elapsed0 + self.wall()

    def count(self, loss: float, tokens: int, valid_time: float) -> None:
        """After a step: its loss and tokens; valid_time: the trainer's validation seconds so far."""
        self.tick()
        self.last_loss = loss
        self.loss_sum, self.steps, self.tokens = self.loss_sum + loss, self.steps + 1, self.tokens + tokens
        training = time.perf_counter() - self.t_line - (valid_time - self.valid_at_line)
        self.tokens_per_s = self.tokens / max(training, 1e-9)

    def mean_loss(self) -> float:
        return self.loss_sum / max(self.steps, 1)

    def new_line(self, valid_time: float) -> None:
        """Start the next line's sums."""
        self.loss_sum, self.steps, self.tokens = 0.0, 0, 0
        self.t_line, self.valid_at_line = time.perf_counter(), valid_time


def print_summary(console: Console, s: dict, cfg: ModelConfig, out: Path) -> None:
    t = Table(title="training summary", show_header=False)
    t.add_row("stopped by", s["stop"] + (f": {s['stop_reason']}" if s["stop_reason"] else ""))
    t.add_row("model", f"{cfg.cell} {cfg.layers}×{cfg.hidden}, embed {cfg.embed}, vocab {cfg.vocab_size:,}")
    t.add_row("steps / tokens", f"{s['steps']:,} / {s['tokens']:,}")
    if s["skipped"]:
        t.add_row("windows skipped (diverged)", f"{s['skipped']:,}")
    if s.get("rollbacks"):
        t.add_row("rollbacks (diverged)", f"{s['rollbacks']} (learning rate ×{0.5 ** s['rollbacks']:g})")
    t.add_row("time", f"{s['elapsed']:.1f} s")
    t.add_row("training tokens/s", f"{s['tokens_per_s']:,.0f}  (validation time excluded)")
    t.add_row("last train loss", f"{s['last_train_loss']:.3f}")
    t.add_row("best valid perplexity", f"{s['best_valid_ppl']:,.2f}")
    t.add_row("checkpoints", f"{out}/best.safetensors, last.safetensors")
    console.print(t)
