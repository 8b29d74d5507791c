"""The training loop: TBPTT windows, optimizer steps, validation, patience, progress, checkpoints.

Where training stands lives in one `progress` dict (epoch, window within the epoch, step, lr, best
validation perplexity, RNG state, ...) that goes into every checkpoint; together with the weights,
the optimizer state and the carried hidden state it lets `--resume` continue bit for bit.
"""

import hashlib
import json
import math
import signal
import time
from dataclasses import dataclass, field, replace
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

from lstmtext import batching, checkpoint, evaluate, model, optim
from lstmtext.config import ModelConfig, TrainConfig
from lstmtext.corpus import read_text, split_heldout
from lstmtext.errors import ConfigError, CorpusError, TrainingError
from lstmtext.tokenizer import Tokenizer

METRICS_VERSION = 1
DTYPE = np.float32


@dataclass
class TokenizerOptions:
    kind: str = "word"
    vocab_size: int = 10000
    min_freq: int = 1
    lowercase: bool = False
    word_split: str = "punct"


@dataclass
class Data:
    tokenizer: Tokenizer
    train_ids: np.ndarray  # (N,) int32
    valid_ids: np.ndarray  # (M,) int32
    info: dict  # paths, hashes and sizes, stored in checkpoints to detect a changed corpus
    valid_text: str = field(repr=False, default="")


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving; `signum` picks the exit code."""

    def __init__(self, signum: int, path: Path):
        super().__init__(f"interrupted; resume with: lstmtext train --resume {path.parent}")
        self.signum = signum


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prepare_data(corpus, valid, tok_opts: TokenizerOptions, encoding_errors: str, say, tokenizer=None) -> Data:
    """Read and tokenize. A new run trains a tokenizer on the training text only; a resumed run
    reuses its checkpoint's tokenizer (never one left over from another run)."""
    text = read_text(corpus, encoding_errors)
    if valid is not None:
        train_text, valid_text = text, read_text(valid, encoding_errors)
    else:
        train_text, valid_text = split_heldout(text, 0.1)
        say(f"No --valid given: holding out the last 10% of {corpus} ({len(valid_text):,} characters) for validation.")
    if tokenizer is None:
        tokenizer = Tokenizer.train(
            tok_opts.kind,
            train_text,
            vocab_size=tok_opts.vocab_size,
            min_freq=tok_opts.min_freq,
            lowercase=tok_opts.lowercase,
            word_split=tok_opts.word_split,
        )
    train_ids = tokenizer.encode(train_text)
    valid_ids = tokenizer.encode(valid_text)
    if len(valid_ids) < 2:
        raise CorpusError("the validation text has fewer than 2 tokens; give a longer --valid FILE")
    info = {
        "corpus": str(Path(corpus).resolve()),
        "valid": None if valid is None else str(Path(valid).resolve()),
        "train_sha256": _sha(train_text),
        "valid_sha256": _sha(valid_text),
        "train_tokens": len(train_ids),
        "valid_tokens": len(valid_ids),
    }
    return Data(tokenizer, train_ids, valid_ids, info, valid_text)


class MetricsLog:
    """metrics.jsonl: one JSON object per line, appended; every line carries the format version."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, **record) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"format_version": METRICS_VERSION, **record}) + "\n")


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
        TextColumn("loss {task.fields[loss]:.3f} ppl {task.fields[ppl]:.1f} {task.fields[tps]:,.0f} tok/s"),
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

    A non-finite loss or gradient leaves the weights untouched, so the caller can stop cleanly."""
    loss, _, cache, new_state = model.forward(params, model_cfg, x, y, state, rng)
    grads, _ = model.backward(params, model_cfg, cache)
    norm = optim.clip_global_norm(grads, cfg.clip)
    if math.isfinite(loss) and math.isfinite(norm):
        optim.step(cfg.optimizer, params, grads, opt_state, lr)
    return loss, norm, new_state


def train(
    data: Data,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    out: Path,
    console: Console,
    resume_from: checkpoint.Checkpoint | None = None,
) -> dict:
    """Train until the budget or patience ends; -> summary dict. Raises Interrupted after saving."""
    batching.check_enough(len(data.train_ids), cfg.batch_size, cfg.bptt, "the training text")
    streams = batching.make_streams(data.train_ids, cfg.batch_size)  # (n, B)
    n_windows = batching.num_windows(streams.shape[0], cfg.bptt)
    rng = np.random.default_rng([cfg.seed, 1])  # dropout masks; the init uses another stream
    if resume_from is None:
        params = model.init_params(model_cfg, np.random.default_rng([cfg.seed, 0]), DTYPE)
        opt_state = optim.init_state(cfg.optimizer, params)
        state = model.init_state(model_cfg, cfg.batch_size, DTYPE)
        prog = {
            "epoch": 1,
            "window": 0,
            "step": 0,
            "best_valid_ppl": None,
            "bad_evals": 0,
            "elapsed": 0.0,
            "tokens": 0,
            "last_valid_step": -1,
        }
    else:
        params, extra, prog = resume_from.params, resume_from.extra, dict(resume_from.progress)
        opt_state = {k: v for k, v in extra.items() if not k.startswith("state.")}
        state = {k[len("state.") :]: v for k, v in extra.items() if k.startswith("state.")}
        rng.bit_generator.state = prog["rng"]

    out.mkdir(parents=True, exist_ok=True)
    metrics = MetricsLog(out / "metrics.jsonl")
    tok_json = data.tokenizer.to_json()

    def snapshot(best: bool = False) -> checkpoint.Checkpoint:
        prog["rng"] = rng.bit_generator.state
        extra = {} if best else {**opt_state, **{f"state.{k}": v for k, v in state.items()}}
        return checkpoint.Checkpoint(model_cfg, params, tok_json, cfg, dict(prog), extra, data.info)

    valid_time = [0.0]  # seconds spent validating, left out of the training tokens/s

    def validate() -> float:
        t0 = time.perf_counter()
        total, n = evaluate.score(params, model_cfg, data.valid_ids, cfg.eval_batch_size, cfg.bptt)
        ppl = math.exp(total / n)
        best = prog["best_valid_ppl"]
        improved = best is None or ppl < best
        if improved:
            prog["best_valid_ppl"], prog["bad_evals"] = ppl, 0
            checkpoint.save(out / "best.safetensors", snapshot(best=True))
        else:
            prog["bad_evals"] += 1
        prog["last_valid_step"] = prog["step"]
        metrics.write(kind="valid", step=prog["step"], epoch=prog["epoch"], loss=total / n, ppl=ppl, best=improved)
        console.print(f"  valid ppl {ppl:9.2f}  at step {prog['step']:,}" + ("  (best)" if improved else ""))
        valid_time[0] += time.perf_counter() - t0
        t_log_shift[0] += time.perf_counter() - t0
        return ppl

    def budget_spent() -> bool:
        return bool(cfg.max_steps and prog["step"] >= cfg.max_steps)

    def out_of_patience() -> bool:
        return bool(cfg.patience and prog["bad_evals"] >= cfg.patience)

    t_log_shift = [0.0]  # validation time inside the current log interval
    window_loss, window_steps, window_tokens, t_log = 0.0, 0, 0, time.perf_counter()
    last_loss, tps, stop_reason, finished = float("nan"), 0.0, "budget", False
    t_start, elapsed0, tokens0 = time.perf_counter(), prog["elapsed"], prog["tokens"]
    with _StopSignals() as signals, _progress_bar(console) as bar:
        while not finished and not (cfg.epochs and prog["epoch"] > cfg.epochs):
            lr = optim.lr_for_epoch(cfg.lr, cfg.lr_decay, cfg.decay_after, prog["epoch"])
            task = bar.add_task(
                "",
                total=n_windows,
                completed=prog["window"],
                epoch=prog["epoch"],
                loss=last_loss,
                ppl=_ppl(last_loss),
                tps=tps,
            )
            for x, y in batching.windows(streams, cfg.bptt, prog["window"]):
                loss, norm, state = train_step(params, model_cfg, cfg, opt_state, lr, x, y, state, rng)
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    raise TrainingError(
                        f"training diverged at step {prog['step'] + 1} (loss {loss}, gradient norm {norm}); "
                        f"the weights on disk are the last good ones; try a lower --lr or --clip"
                    )
                prog["window"] += 1
                prog["step"] += 1
                prog["tokens"] += x.size
                prog["elapsed"] = elapsed0 + time.perf_counter() - t_start
                last_loss = loss
                window_loss, window_steps, window_tokens = window_loss + loss, window_steps + 1, window_tokens + x.size
                now = time.perf_counter()
                tps = window_tokens / max(now - t_log - t_log_shift[0], 1e-9)
                if prog["step"] % cfg.log_every == 0:
                    mean = window_loss / window_steps
                    metrics.write(
                        kind="train",
                        step=prog["step"],
                        epoch=prog["epoch"],
                        loss=mean,
                        ppl=_ppl(mean),
                        lr=lr,
                        grad_norm=norm,
                        tokens_per_s=tps,
                        elapsed=prog["elapsed"],
                    )
                    window_loss, window_steps, window_tokens, t_log = 0.0, 0, 0, now
                    t_log_shift[0] = 0.0
                bar.update(task, advance=1, loss=loss, ppl=_ppl(loss), tps=tps)
                if signals.signum is not None:
                    path = out / "last.safetensors"
                    checkpoint.save(path, snapshot())
                    raise Interrupted(signals.signum, path)
                if cfg.eval_every and prog["step"] % cfg.eval_every == 0:
                    validate()
                if budget_spent() or out_of_patience():
                    finished = True
                    break
            else:
                # The epoch is complete: validate, then start the next one from a zero state.
                prog["epoch"] += 1
                prog["window"] = 0
                state = model.init_state(model_cfg, cfg.batch_size, DTYPE)
                if prog["last_valid_step"] != prog["step"]:
                    validate()
                checkpoint.save(out / "last.safetensors", snapshot())
                finished = budget_spent() or out_of_patience()
    if out_of_patience():
        stop_reason = "patience"
    if prog["last_valid_step"] != prog["step"]:
        validate()
    checkpoint.save(out / "last.safetensors", snapshot())
    wall = time.perf_counter() - t_start
    summary = {
        "stop": stop_reason,
        "epoch": prog["epoch"],
        "steps": prog["step"],
        "tokens": prog["tokens"],
        "elapsed": prog["elapsed"],
        "tokens_per_s": (prog["tokens"] - tokens0) / max(wall - valid_time[0], 1e-9),
        "best_valid_ppl": prog["best_valid_ppl"],
        "last_train_loss": last_loss,
        "out": str(out),
    }
    metrics.write(kind="end", **{k: v for k, v in summary.items() if k != "out"})
    print_summary(console, summary, model_cfg)
    return summary


def _ppl(loss: float) -> float:
    return math.exp(min(loss, 50.0)) if math.isfinite(loss) else float("nan")


def print_summary(console: Console, s: dict, cfg: ModelConfig) -> None:
    t = Table(title="training summary", show_header=False)
    t.add_row("stopped by", s["stop"])
    t.add_row("model", f"{cfg.cell} {cfg.layers}×{cfg.hidden}, embed {cfg.embed}, vocab {cfg.vocab_size:,}")
    t.add_row("steps / tokens", f"{s['steps']:,} / {s['tokens']:,}")
    t.add_row("time", f"{s['elapsed']:.1f} s")
    t.add_row("training tokens/s", f"{s['tokens_per_s']:,.0f}  (validation time excluded)")
    t.add_row("last train loss", f"{s['last_train_loss']:.3f}")
    t.add_row("best valid perplexity", f"{s['best_valid_ppl']:.2f}")
    t.add_row("checkpoints", f"{s['out']}/best.safetensors, last.safetensors")
    console.print(t)


def prepare_out(out: Path, force: bool) -> None:
    """A new run must not overwrite another run's checkpoints by accident."""
    if (out / "last.safetensors").exists() or (out / "best.safetensors").exists():
        if not force:
            raise TrainingError(
                f"{out} already holds a run; continue it with --resume {out}, choose another --out, "
                f"or pass --force to start over"
            )
        for name in ("last.safetensors", "best.safetensors", "metrics.jsonl"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    probe = out / ".write-test"
    try:
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to --out {out}: {e.strerror or e}") from None


def resume_config(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    """A resumed run keeps its config; only the budget may change."""
    return replace(cfg, **overrides)
