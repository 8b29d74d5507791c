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
"""

import json
import math
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from lstmtext import batching, checkpoint, evaluate, model, optim, sample, threads
from lstmtext.config import ModelConfig, TrainConfig
from lstmtext.data import Data
from lstmtext.errors import ConfigError, TrainingError

METRICS_VERSION = 1
# A window whose mean loss is this many times that of guessing uniformly (log V) has diverged, even
# when float32 still holds it: weights blown up by a huge step give losses like 1e29 that overflow
# on some NumPy builds and not on others.
DIVERGED_LOSS_FACTOR = 100.0


def healthy(loss: float, norm: float, vocab_size: int) -> bool:
    """False for a window that diverged: a non-finite loss or gradient norm, or an absurd loss."""
    bound = DIVERGED_LOSS_FACTOR * max(1.0, math.log(vocab_size))
    return math.isfinite(loss) and math.isfinite(norm) and loss < bound


# --sample-every: short, a little conservative, the same each time so that samples compare.
SAMPLE_OPTIONS = sample.SampleOptions(length=30, temperature=0.8)


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving; `signum` picks the exit code."""

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


class _StopSignals:
    """Turn SIGINT/SIGTERM into a flag checked between steps, so a step is never cut in half."""

    def __init__(self):
        self.signum = None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def _progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(bar_width=16),
        MofNCompleteColumn(),
        TextColumn(
            "loss {task.fields[loss]:.3f} ppl {task.fields[ppl]:.1f} {task.fields[tps]:,.0f} tok/s "
            "{task.fields[threads]} thr"
        ),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(compact=True),
        console=console,
        transient=False,
    )


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
) -> tuple[float, float, dict]:
    """One TBPTT window: forward, backward, clip, update. -> (loss, gradient norm, next state).

    A diverged window (see `healthy`) leaves the weights untouched, so the caller can stop cleanly."""
    # Overflow shows up as a non-finite loss or norm, which the caller handles: no warnings on stderr.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loss, _, cache, new_state = model.forward(params, model_cfg, x, y, state, rng)
        grads, _ = model.backward(params, model_cfg, cache)
        if cfg.freeze_embed:  # as requires_grad=False: not clipped, decayed or moved
            del grads["embed.W"]
        if cfg.weight_decay:
            optim.add_weight_decay(params, grads, cfg.weight_decay)
        norm = optim.clip_global_norm(grads, cfg.clip)
    if healthy(loss, norm, model_cfg.vocab_size):
        optim.step(cfg.optimizer, params, grads, opt_state, lr)
    return loss, norm, new_state


def initial_params(model_cfg: ModelConfig, cfg: TrainConfig) -> dict:
    """A new run's starting weights: drawn from the seed's own stream, apart from dropout's."""
    return model.init_params(model_cfg, np.random.default_rng([cfg.seed, 0]), np.dtype(cfg.dtype))


class Trainer:
    """One run: its weights, optimizer state, carried state, progress, and its run directory."""

    def __init__(
        self,
        data: Data,
        model_cfg: ModelConfig,
        cfg: TrainConfig,
        out: Path,
        console: Console,
        resume_from: checkpoint.Checkpoint | None = None,
        init_params: dict | None = None,
    ):
        """init_params: start from these weights (fine-tuning, `--init-from`) with a fresh optimizer."""
        batching.check_enough(len(data.train_ids), cfg.batch_size, cfg.bptt, "the training text")
        self.data, self.model_cfg, self.cfg, self.out, self.console = data, model_cfg, cfg, out, console
        self.streams = batching.make_streams(data.train_ids, cfg.batch_size)  # (n, B)
        self.n_windows = batching.num_windows(self.streams.shape[0], cfg.bptt)
        self.rng = np.random.default_rng([cfg.seed, 1])  # dropout masks; the init uses another stream
        self.dtype = np.dtype(cfg.dtype)
        if resume_from is None:
            if init_params is None:
                self.params = initial_params(model_cfg, cfg)
            else:
                self.params = {k: np.array(v, dtype=self.dtype) for k, v in init_params.items()}  # own copies
            self.opt_state = optim.init_state(cfg.optimizer, optim.trainable(self.params, cfg.freeze_embed))
            self.state = model.init_state(model_cfg, cfg.batch_size, self.dtype)
            self.prog = {
                "epoch": 1,
                "window": 0,
                "step": 0,
                "best_valid_ppl": None,
                "bad_evals": 0,
                "elapsed": 0.0,
                "tokens": 0,
                "last_valid_step": -1,
                "skipped": 0,
                "last_valid_ppl": None,
            }
        else:
            extra = resume_from.extra
            self.params, self.prog = resume_from.params, dict(resume_from.progress)
            self.opt_state = {k: v for k, v in extra.items() if not k.startswith("state.")}
            self.state = {k[len("state.") :]: v for k, v in extra.items() if k.startswith("state.")}
            self.rng.bit_generator.state = self.prog["rng"]
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)  # temp files of a writer killed mid-write
        self.metrics = MetricsLog(out / "metrics.jsonl")
        if resume_from is not None:
            self.metrics.drop_after(self.prog["step"])
        self.tok_json = data.tokenizer.to_json()
        self.valid_time = 0.0  # seconds spent validating (and sampling), left out of the training tokens/s
        self.tuner = threads.ThreadTuner(fixed=cfg.threads or None)
        self.last_sample_step = -1  # --sample-every: one sample per step at most

    # -- checkpoints and validation ------------------------------------------------------------

    def snapshot(self, best: bool = False) -> checkpoint.Checkpoint:
        self.prog["rng"] = self.rng.bit_generator.state
        extra = {} if best else {**self.opt_state, **{f"state.{k}": v for k, v in self.state.items()}}
        return checkpoint.Checkpoint(
            self.model_cfg, self.params, self.tok_json, self.cfg, dict(self.prog), extra, self.data.info
        )

    def save_last(self) -> Path:
        path = self.out / "last.safetensors"
        checkpoint.save(path, self.snapshot())
        return path

    def validate(self) -> float:
        t0 = time.perf_counter()
        cfg, prog = self.cfg, self.prog
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            total, n = evaluate.score(self.params, self.model_cfg, self.data.valid_ids, cfg.eval_batch_size, cfg.bptt)
        ppl = evaluate.perplexity(total / n)
        best = prog["best_valid_ppl"]
        improved = best is None or ppl < best
        if improved:
            prog["best_valid_ppl"], prog["bad_evals"] = ppl, 0
            checkpoint.save(self.out / "best.safetensors", self.snapshot(best=True))
        else:
            prog["bad_evals"] += 1
        prog["last_valid_step"], prog["last_valid_ppl"] = prog["step"], ppl
        self.metrics.write(kind="valid", step=prog["step"], epoch=prog["epoch"], loss=total / n, ppl=ppl, best=improved)
        self.console.print(f"  valid ppl {ppl:9.2f}  at step {prog['step']:,}" + ("  (best)" if improved else ""))
        if best is not None and not ppl <= 2 * best:  # a nan counts as a jump too
            self.console.print(
                f"  [yellow]warning[/]: validation perplexity {ppl:.1f} is more than twice the best so far "
                f"({best:.1f}); training may be diverging: try a lower --lr or --clip",
                soft_wrap=True,
            )
        self.valid_time += time.perf_counter() - t0
        if self.cfg.sample_every and self.last_sample_step != prog["step"]:
            self.show_sample()
        return ppl

    def show_sample(self) -> None:
        """A short sample from the same prompt and seed each time, so the runs' samples compare."""
        t0 = time.perf_counter()
        tok = self.data.tokenizer
        start = tok.encode("\n") if tok.eos_id is None else np.array([tok.eos_id])
        ids = sample.generate(
            self.params,
            self.model_cfg,
            start,
            SAMPLE_OPTIONS,
            np.random.default_rng(self.cfg.seed),
            token_filter=sample.TokenFilter(tok, 1, start),
        )[0]
        detok = tok.detokenizer(start)
        text = "".join(detok.push(int(i)) for i in ids) + detok.flush(drop_unfinished=True)
        text = text.strip().replace("\n", " / ")
        self.last_sample_step = self.prog["step"]
        self.metrics.write(kind="sample", step=self.prog["step"], text=text)
        line = f"  sample at step {self.prog['step']:,}: {text}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        self.valid_time += time.perf_counter() - t0

    def budget_spent(self) -> bool:
        cfg, prog = self.cfg, self.prog
        steps_spent = bool(cfg.max_steps and prog["step"] >= cfg.max_steps)
        return steps_spent or bool(cfg.max_minutes and prog["elapsed"] >= 60 * cfg.max_minutes)

    def out_of_patience(self) -> bool:
        return bool(self.cfg.patience and self.prog["bad_evals"] >= self.cfg.patience)

    # -- the loop ------------------------------------------------------------------------------

    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[float, float]:
        """One window; handles a diverged one as --on-nan says. -> (loss, gradient norm)."""
        prog = self.prog
        self.tuner.begin()
        loss, norm, new_state = train_step(
            self.params, self.model_cfg, self.cfg, self.opt_state, lr, x, y, self.state, self.rng
        )
        self.tuner.end(x.size)
        if not healthy(loss, norm, self.model_cfg.vocab_size):
            if self.cfg.on_nan == "stop":
                raise TrainingError(
                    f"training diverged at step {prog['step'] + 1} (loss {loss}, gradient norm {norm}); "
                    f"the checkpoints in {self.out} hold the last good weights; start a new run (--force or "
                    f"another --out) with a lower --lr or --clip, or use --on-nan skip"
                )
            prog["skipped"] += 1  # the weights are untouched; the state carries on from before
        else:
            self.state = new_state
        prog["window"] += 1
        prog["step"] += 1
        prog["tokens"] += x.size
        return loss, norm

    def run(self) -> dict:
        """Train until the budget or patience ends; -> summary. Raises Interrupted after saving."""
        cfg, prog = self.cfg, self.prog
        log_loss, log_steps, log_tokens, t_log, log_valid = 0.0, 0, 0, time.perf_counter(), 0.0
        last_loss, tps, finished = float("nan"), 0.0, False
        t_start, elapsed0, tokens0 = time.perf_counter(), prog["elapsed"], prog["tokens"]
        with _StopSignals() as signals, _progress_bar(self.console) as bar:
            # The budget is checked first too: resuming a finished run must not take one more step.
            finished = self.budget_spent() or self.out_of_patience()
            while not finished and not (cfg.epochs and prog["epoch"] > cfg.epochs):
                lr = optim.lr_for_epoch(cfg.lr, cfg.lr_decay, cfg.decay_after, prog["epoch"])
                task = bar.add_task(
                    "",
                    total=self.n_windows,
                    completed=prog["window"],
                    epoch=prog["epoch"],
                    loss=last_loss,
                    ppl=evaluate.perplexity(last_loss),
                    tps=tps,
                    threads=self.tuner.label,
                )
                for x, y in batching.windows(self.streams, cfg.bptt, prog["window"]):
                    loss, norm = self.step(x, y, lr)
                    prog["elapsed"] = elapsed0 + time.perf_counter() - t_start
                    last_loss = loss
                    log_loss, log_steps, log_tokens = log_loss + loss, log_steps + 1, log_tokens + x.size
                    now = time.perf_counter()
                    tps = log_tokens / max(now - t_log - (self.valid_time - log_valid), 1e-9)
                    if prog["step"] % cfg.log_every == 0:
                        mean = log_loss / log_steps
                        self.metrics.write(
                            kind="train",
                            step=prog["step"],
                            epoch=prog["epoch"],
                            loss=mean,
                            ppl=evaluate.perplexity(mean),
                            lr=lr,
                            grad_norm=norm,
                            tokens_per_s=tps,
                            skipped=prog["skipped"],
                            elapsed=prog["elapsed"],
                        )
                        log_loss, log_steps, log_tokens, t_log, log_valid = 0.0, 0, 0, now, self.valid_time
                    bar.update(
                        task, advance=1, loss=loss, ppl=evaluate.perplexity(loss), tps=tps, threads=self.tuner.label
                    )
                    # Everything this step owes (validation, save, budget) happens before a signal
                    # is honoured, so an interrupted-and-resumed run does exactly what an
                    # undisturbed one does.
                    if cfg.eval_every and prog["step"] % cfg.eval_every == 0:
                        self.validate()
                    sample_due = cfg.sample_every and prog["step"] % cfg.sample_every == 0
                    if sample_due and self.last_sample_step != prog["step"]:
                        self.show_sample()
                    if cfg.save_every and prog["step"] % cfg.save_every == 0:
                        self.save_last()
                    if self.budget_spent() or self.out_of_patience():
                        finished = True
                        break
                    if signals.signum is not None:
                        raise Interrupted(signals.signum, self.save_last())
                else:
                    # The epoch is complete: validate, then start the next one from a zero state.
                    prog["epoch"] += 1
                    prog["window"] = 0
                    self.state = model.init_state(self.model_cfg, cfg.batch_size, self.dtype)
                    if prog["last_valid_step"] != prog["step"]:
                        self.validate()
                    self.save_last()
                    finished = self.budget_spent() or self.out_of_patience()
                    if signals.signum is not None:
                        raise Interrupted(signals.signum, self.out / "last.safetensors")
            if prog["last_valid_step"] != prog["step"]:
                self.validate()
            self.save_last()
        wall = time.perf_counter() - t_start
        summary = {
            "stop": "patience" if self.out_of_patience() else "budget",
            "stop_reason": finished_reason(cfg, prog) or "",
            "epoch": prog["epoch"],
            "steps": prog["step"],
            "tokens": prog["tokens"],
            "skipped": prog["skipped"],
            "elapsed": prog["elapsed"],
            "tokens_per_s": (prog["tokens"] - tokens0) / max(wall - self.valid_time, 1e-9),
            "best_valid_ppl": prog["best_valid_ppl"],
            "last_train_loss": last_loss,
        }
        self.metrics.write(kind="end", **summary)
        print_summary(self.console, summary, self.model_cfg, self.out)
        return summary


def print_summary(console: Console, s: dict, cfg: ModelConfig, out: Path) -> None:
    t = Table(title="training summary", show_header=False)
    t.add_row("stopped by", s["stop"] + (f": {s['stop_reason']}" if s["stop_reason"] else ""))
    t.add_row("model", f"{cfg.cell} {cfg.layers}×{cfg.hidden}, embed {cfg.embed}, vocab {cfg.vocab_size:,}")
    t.add_row("steps / tokens", f"{s['steps']:,} / {s['tokens']:,}")
    if s["skipped"]:
        t.add_row("windows skipped (diverged)", f"{s['skipped']:,}")
    t.add_row("time", f"{s['elapsed']:.1f} s")
    t.add_row("training tokens/s", f"{s['tokens_per_s']:,.0f}  (validation time excluded)")
    t.add_row("last train loss", f"{s['last_train_loss']:.3f}")
    t.add_row("best valid perplexity", f"{s['best_valid_ppl']:.2f}")
    t.add_row("checkpoints", f"{out}/best.safetensors, last.safetensors")
    console.print(t)


def prepare_out(out: Path, force: bool) -> None:
    """A new run must not overwrite another run's checkpoints by accident, and must be able to
    write where it will save: a probe write finds an unwritable or full --out before training.
    With force the old run stays until `clear_old_run`, once everything before training has worked."""
    if not force and ((out / "last.safetensors").exists() or (out / "best.safetensors").exists()):
        raise TrainingError(
            f"{out} already holds a run; continue it with --resume {out}, choose another --out, "
            f"or pass --force to start over"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        with open(probe, "wb") as f:
            f.write(b"\0" * 65536)  # a full disk usually refuses this much
            f.flush()
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to --out {out}: {e.strerror or e}") from None


def clear_old_run(out: Path) -> None:
    """--force: remove the run being replaced. Called just before training, so a mistake found while
    reading the corpus or a vectors file leaves the old run whole. (train-ids.npy is a cache keyed by
    the text and tokenizer, so it needs no removal.)"""
    for name in ("last.safetensors", "best.safetensors", "metrics.jsonl"):
        (out / name).unlink(missing_ok=True)


def finished_reason(cfg: TrainConfig, prog: dict) -> str | None:
    """Why a run with this budget has nothing left to do, or None. Resuming a finished run must
    say so instead of starting the loop (and printing the summary of zero new steps)."""
    if cfg.epochs and prog["epoch"] > cfg.epochs:
        return f"it completed its {cfg.epochs} epochs (--epochs {cfg.epochs})"
    if cfg.max_steps and prog["step"] >= cfg.max_steps:
        return f"it reached --max-steps {cfg.max_steps}"
    if cfg.max_minutes and prog["elapsed"] >= 60 * cfg.max_minutes:
        return f"it used its --max-minutes {cfg.max_minutes:g}"
    if cfg.patience and prog["bad_evals"] >= cfg.patience:
        return f"it ran out of patience (--patience {cfg.patience}: {prog['bad_evals']} validations without a new best)"
    return None


def resume_config(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    """A resumed run's config with the options the command line may change (api.RESUMABLE)."""
    return replace(cfg, **overrides)
