"""The learning rate over a run: a plan that ends with the budget.

A budget (`--epochs`, `--max-steps`, `--max-minutes`, whichever comes first) is not only a stop: the
learning rate knows where the run is in it. `budget_used` is the share of the budget spent so far,
the largest of the three shares in use, measured on the run's own progress (windows, steps, and the
run's clock, validations included; `clock` counts the final validation's time as spent from the
start, so a run asked for M minutes ends, validated and saved, at M minutes), so it is the share at
which the run will stop. Everything it reads is in the checkpoint, so a resumed run continues the
same plan; a resume that raises the budget stretches the plan, and the rate rises to where the
longer plan stands.

Schedules (`--schedule`):
- wsd (warm-up, stable, decay; Hu et al. 2024, MiniCPM; the default): a linear warm-up over the
  first `warmup` of the budget, lr held until the last `cooldown` of it, then a straight line down
  to `lr_floor`·lr at the end. The last minutes anneal instead of being cut off, and the long stable
  part keeps the rate high while a model is still finding long-range structure (docs/training.md "Defaults").
- cosine: the same warm-up, then half a cosine from lr down to `lr_floor`·lr at the end (Loshchilov
  & Hutter 2017, without restarts; the floor as nanoGPT's min_lr).
- step: Zaremba et al. 2014, full lr for `decay_after` epochs, then times `lr_decay` each epoch (the
  paper reproductions pass it explicitly).
- constant: lr throughout.

A wsd run can end its plan early (`--plateau`, the trainer's `plateaued` check): a run that has stopped
improving while the rate is held would spend the rest of the budget overfitting, so the decay starts
there (from the best weights) and the plan ends when it does, `plan_end` of the budget: the decay
takes the same share of the shortened run as it would of the whole one.
"""

import math
from dataclasses import replace

from lstmtext.progress import Progress

SCHEDULES = ("cosine", "wsd", "step", "constant")
# The warm-up's first step: a share of the warm-up's length, so that step 0 moves the weights.
FIRST_WARMUP_SHARE = 0.05
PACE_FROM = 0.005  # of an epoch or step budget done before its pace foretells the time left
# --plateau: the validations that must all sit above the best: the last this many ...
PLATEAU_VALIDATIONS = 3
PLATEAU_SHARE = 0.2  # ... and the last this share of them all


def budget_used(cfg, prog: Progress, windows_per_epoch: int) -> float:
    """The share of the plan spent, in [0, 1]: the largest of the epoch, step and time shares, of the
    budget or of the part of it the plan now ends at (prog.plan_end, --plateau).
    cfg: a TrainConfig; prog: the trainer's progress (epoch from 1, window within it, step, elapsed s,
    and valid_seconds, the time set aside for the final validation, once the trainer has it)."""
    return min(1.0, _budget_share(cfg, prog, windows_per_epoch) / prog.plan_end)


def _budget_share(cfg, prog: Progress, windows_per_epoch: int) -> float:
    """The share of the whole budget spent (not capped: a resume may have lowered the budget)."""
    shares = []
    if cfg.epochs:
        shares.append((prog.epoch - 1 + prog.window / max(windows_per_epoch, 1)) / cfg.epochs)
    if cfg.max_steps:
        shares.append(prog.step / cfg.max_steps)
    if cfg.max_minutes:
        shares.append(clock(prog) / (60.0 * cfg.max_minutes))
    return max(shares, default=0.0)


def plan_over(cfg, prog: Progress, windows_per_epoch: int) -> bool:
    """Whether a plan ended early (--plateau) has reached its end; kept in prog.plan_ended."""
    prog.plan_ended = prog.plan_ended or (prog.plan_end < 1.0 and budget_used(cfg, prog, windows_per_epoch) >= 1.0)
    return prog.plan_ended


def plateaued(history: list[float], best: float, margin: float) -> bool:
    """--plateau's trigger. history: the loss of each validation so far, the latest last; best: the
    lowest; margin: as a share of perplexity. True when the last PLATEAU_VALIDATIONS validations, and
    the last PLATEAU_SHARE of them all, are more than `margin` above the best: the model has stopped
    improving (not one noisy validation, nor a slow climb that still sets a new best now and then:
    that run goes on to its planned decay). Counted in validations, not seconds, so a resumed run
    decides as an undisturbed one would."""
    if not margin or len(history) < PLATEAU_VALIDATIONS:
        return False
    above = best + math.log1p(margin)  # a perplexity `margin` above the best's
    recent = max(PLATEAU_VALIDATIONS, int(PLATEAU_SHARE * len(history)))
    return all(loss > above for loss in history[-recent:])


def end_plan_now(cfg, prog: Progress, windows_per_epoch: int) -> None:
    """--plateau: end the plan so that wsd's decay starts now: the decay takes `cooldown` of the
    shortened plan, as it would have of the whole."""
    # the share used now is where the shortened plan's decay begins, 1 - cooldown of it
    prog.plan_end = _budget_share(cfg, prog, windows_per_epoch) / (1.0 - cfg.cooldown)
    prog.plateau_step = prog.step


def holding(cfg, prog: Progress, windows_per_epoch: int) -> bool:
    """Whether wsd holds the rate now (warmed up, not yet decaying), its plan not yet ended early."""
    used = budget_used(cfg, prog, windows_per_epoch)
    held = cfg.warmup <= used < 1.0 - cfg.cooldown
    return cfg.schedule == "wsd" and cfg.cooldown > 0 and prog.plan_end == 1.0 and held


def clock(prog: Progress) -> float:
    """Seconds of a --max-minutes budget spent as the plan counts them: the run's clock plus the time
    the validation that ends the run will take (`valid_seconds`, kept by the trainer), so the rate
    reaches its floor, and the run stops, with that validation still inside the budget."""
    return prog.elapsed + (prog.valid_seconds or 0.0)


def time_spent(cfg, prog: Progress, validated: bool = False) -> bool:
    """Whether a --max-minutes budget leaves no time to train and then validate. validated: the run
    has just validated, so going on costs another validation at the end, and is worth it only if it
    leaves more time to train than that validation takes (otherwise the run could end with two
    validations a step apart)."""
    again = (prog.valid_seconds or 0.0) if validated else 0.0
    return bool(cfg.max_minutes and clock(prog) + again >= 60.0 * cfg.max_minutes)


def too_late_to_validate(cfg, prog: Progress) -> bool:
    """Whether a validation now (an epoch's end, --eval-every) would end a --max-minutes run early:
    after it, time_spent(validated=True) would hold, so the run would stop with up to two
    validations' time unused and its rate short of the floor the plan puts at the budget's end.
    Such a validation is left to the run's final one."""
    after = replace(prog, elapsed=prog.elapsed + (prog.valid_seconds or 0.0))  # the clock once this one is done
    return time_spent(cfg, after, validated=True)


def seconds_left(cfg, prog: Progress, windows_per_epoch: int) -> float | None:
    """The whole run's time left, as the plan sees it: a --max-minutes budget counts down its own clock
    (the final validation inside it); epochs and steps go at the pace of the run so far. Whichever
    ends first. None while an epoch or step budget is too little done to extrapolate from."""
    left = [60.0 * cfg.max_minutes * prog.plan_end - prog.elapsed] if cfg.max_minutes else []
    shares = []
    if cfg.epochs:
        shares.append((prog.epoch - 1 + prog.window / max(windows_per_epoch, 1)) / cfg.epochs)
    if cfg.max_steps:
        shares.append(prog.step / cfg.max_steps)
    share = max(shares, default=0.0) / prog.plan_end
    if share >= PACE_FROM:
        left.append(prog.elapsed * (1.0 - min(share, 1.0)) / share)
    return max(0.0, min(left)) if left else None


def learning_rate(cfg, prog: Progress, windows_per_epoch: int) -> float:
    """The rate of the next step, by cfg.schedule."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        return by_epoch(cfg.lr, cfg.lr_decay, cfg.decay_after, prog.epoch)
    used = budget_used(cfg, prog, windows_per_epoch)
    if cfg.schedule == "wsd":
        return wsd(cfg.lr, used, cfg.warmup, cfg.cooldown, cfg.lr_floor)
    return cosine(cfg.lr, used, cfg.warmup, cfg.lr_floor)


def by_epoch(lr: float, decay: float, decay_after: int, epoch: int) -> float:
    """Zaremba et al.'s schedule: full lr for epochs 1..decay_after, then times decay each epoch."""
    return lr * decay ** max(0, epoch - decay_after)


def wsd(lr: float, used: float, warmup: float, cooldown: float, floor: float) -> float:
    """lr at `used` of the budget: warm-up as cosine's, lr until 1 - cooldown, then linear to floor·lr."""
    if used < warmup:
        return lr * max(used / warmup, FIRST_WARMUP_SHARE)
    left = (1.0 - used) / cooldown if cooldown else 1.0  # 1 where the decay starts, 0 at the end
    return lr * (floor + (1.0 - floor) * min(max(left, 0.0), 1.0))


def cosine(lr: float, used: float, warmup: float, floor: float) -> float:
    """lr at `used` of the budget: linear warm-up to lr over `warmup`, then cosine down to floor·lr."""
    if used < warmup:
        return lr * max(used / warmup, FIRST_WARMUP_SHARE)
    into = (used - warmup) / (1.0 - warmup)  # [0, 1] through the decay
    return lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(into, 1.0))))


def finished_reason(cfg, prog: Progress) -> str | None:
    """Why a run with this budget has nothing left to do, or None. Resuming a finished run must
    say so instead of starting the loop (and printing the summary of zero new steps)."""
    if cfg.epochs and prog.epoch > cfg.epochs:
        return f"it completed its {cfg.epochs} epoch{'' if cfg.epochs == 1 else 's'} (--epochs {cfg.epochs})"
    if cfg.max_steps and prog.step >= cfg.max_steps:
        return f"it reached --max-steps {cfg.max_steps}"
    time_up = time_spent(cfg, prog, validated=prog.last_valid_step == prog.step)
    if cfg.max_minutes and (time_up or (prog.minutes_used or 0) >= cfg.max_minutes):
        return f"it used its --max-minutes {cfg.max_minutes:g}"
    if prog.plan_ended:
        return ("validation stopped improving (--plateau), so the decay was brought forward to "
                f"step {prog.plateau_step:,} and the run ended with it")
    if cfg.patience and prog.bad_evals >= cfg.patience:
        bad = prog.bad_evals
        return (f"it ran out of patience (--patience {cfg.patience}: {bad} validation{'s' * (bad != 1)} "
                "without a new best)")
    return None
