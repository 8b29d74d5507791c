"""lstmtext's side of a row, through its public API only: a callable that runs k training windows
(or samples k tokens, or scores the eval text k times) and returns the last loss."""

import time
from collections.abc import Callable

import numpy as np

from bench.rows import EVAL_THREADS_TOKENS, Row, eval_ids, token_windows

# s of `lstmtext eval` before it scores: import, checkpoint, text (all of an eval of 200 bytes: 0.4 s)
COMMAND_START = 0.3


def blas_info() -> list[dict]:
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")
    return [{k: d.get(k) for k in keys} for d in threadpool_info() if d["user_api"] == "blas"]


def make_runner(row: Row, threads: str, evaluate_only: bool = False) -> Callable[[int], float | None]:
    """threads: a count, or "auto" for the trainer's own choice (lstmtext.threads.ThreadTuner).

    Threads rows set the count as the trainer does (ThreadTuner, fixed or not, with begin/end around
    each step); the others with threadpoolctl, as they always have. evaluate_only: the eval row's
    scoring side instead of its training side. The returned callable has .stats() for the harness."""
    from threadpoolctl import threadpool_limits

    from lstmtext import evaluate, malloc, model, sample
    from lstmtext import threads as lt_threads
    from lstmtext.config import ModelConfig, TrainConfig
    from lstmtext.trainer import train_step

    tuner = None
    if row.task == "threads":
        tuner = lt_threads.ThreadTuner(fixed=None if threads == "auto" else int(threads))
    elif row.task != "eval-threads":  # those make a tuner per eval, as the command does
        threadpool_limits(limits=int(threads), user_api="blas")
    malloc.keep_freed_memory()  # as `lstmtext`'s entry point does
    cfg = ModelConfig(
        vocab_size=row.V, embed=row.E, hidden=row.H, layers=row.L, cell=row.cell, dropout=0.0,
        softmax="adaptive" if row.cutoffs else "full", cutoffs=row.cutoffs,
    )
    params = model.init_params(cfg, np.random.default_rng(0))  # float32
    rng = np.random.default_rng(1)

    def no_stats() -> dict:
        return {}

    if row.task == "sample":
        def run_sample(k: int) -> None:
            opts = sample.SampleOptions(length=k)
            sample.generate(params, cfg, prompt_ids=np.array([0]), opts=opts, rng=rng)

        run_sample.stats = no_stats
        return run_sample

    if evaluate_only and row.task == "eval-threads":
        long_text = eval_ids(row, n=EVAL_THREADS_TOKENS)
        fixed = None if threads == "auto" else int(threads)

        def run_command(k: int) -> float:
            for _ in range(k):
                with lt_threads.choosing(fixed) as each:  # as `lstmtext eval` and Model.score
                    total, n = evaluate.score(params, cfg, long_text, tuner=each)
            return total / n

        def loading() -> None:
            # `lstmtext eval` reads others' load over its start (import, checkpoint, text) and starts
            # at the cores left free. Here the worker's last reading would span the other
            # contestants' turns, so it is taken afresh over a pause as long as that start.
            lt_threads._SINCE_LAST = lt_threads.LoadMeter()
            time.sleep(COMMAND_START)

        run_command.stats = no_stats
        run_command.prepare = loading
        return run_command

    if evaluate_only:
        text = eval_ids(row)

        def run_eval(k: int) -> float:
            for _ in range(k):
                total, n = evaluate.score(params, cfg, text)  # at its own defaults, as `lstmtext eval`
            return total / n

        run_eval.stats = no_stats
        return run_eval

    tcfg = TrainConfig(batch_size=row.B, bptt=row.T, optimizer="sgd", lr=1.0, clip=0.25, epochs=1)
    ids = token_windows(row)  # (n, T+1, B)
    carry = {"state": model.init_state(cfg, row.B), "i": 0}
    opt_state: dict = {}  # sgd keeps none
    windows_at: dict[int, int] = {}  # windows run at each thread count (the tuner's choice)

    def run_train(k: int) -> float:
        loss = float("nan")
        for _ in range(k):
            w = ids[carry["i"] % len(ids)]  # (T+1, B)
            carry["i"] += 1
            x, y = w[:-1], w[1:]
            if tuner is None:
                loss, _, carry["state"] = train_step(params, cfg, tcfg, opt_state, 1.0, x, y, carry["state"], rng)
                continue
            windows_at[tuner.threads] = windows_at.get(tuner.threads, 0) + 1
            tuner.begin()  # exactly as Trainer.step does
            loss, _, carry["state"] = train_step(params, cfg, tcfg, opt_state, 1.0, x, y, carry["state"], rng)
            tuner.end(x.size)
        return loss

    def stats() -> dict:
        if tuner is None:
            return {}
        return {"threads": tuner.threads, "probes": tuner.probes, "switches": tuner.switches,
                "windows_at": dict(windows_at)}

    run_train.stats = stats
    return run_train
