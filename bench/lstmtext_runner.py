"""lstmtext's side of a row, through its public API only: a callable that runs k training windows
(or samples k tokens) and returns the last loss."""

from collections.abc import Callable

import numpy as np

from bench.rows import Row, token_windows


def blas_info() -> list[dict]:
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")
    return [{k: d.get(k) for k in keys} for d in threadpool_info() if d["user_api"] == "blas"]


def make_runner(row: Row, threads: int) -> Callable[[int], float | None]:
    from threadpoolctl import threadpool_limits

    from lstmtext import malloc, model, sample
    from lstmtext.config import ModelConfig, TrainConfig
    from lstmtext.train import train_step

    threadpool_limits(limits=threads, user_api="blas")
    malloc.keep_freed_memory()  # as `lstmtext`'s entry point does
    cfg = ModelConfig(vocab_size=row.V, embed=row.E, hidden=row.H, layers=row.L, cell=row.cell, dropout=0.0)
    params = model.init_params(cfg, np.random.default_rng(0))  # float32
    rng = np.random.default_rng(1)

    if row.task == "sample":
        def run_sample(k: int) -> None:
            opts = sample.SampleOptions(length=k)
            sample.generate(params, cfg, prompt_ids=np.array([0]), opts=opts, rng=rng)

        return run_sample

    tcfg = TrainConfig(batch_size=row.B, bptt=row.T, optimizer="sgd", lr=1.0, clip=0.25)
    ids = token_windows(row)  # (n, T+1, B)
    carry = {"state": model.init_state(cfg, row.B), "i": 0}
    opt_state: dict = {}  # sgd keeps none

    def run_train(k: int) -> float:
        loss = float("nan")
        for _ in range(k):
            w = ids[carry["i"] % len(ids)]  # (T+1, B)
            carry["i"] += 1
            loss, _, carry["state"] = train_step(params, cfg, tcfg, opt_state, 1.0, w[:-1], w[1:], carry["state"], rng)
        return loss

    return run_train
