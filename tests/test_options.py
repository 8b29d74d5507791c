"""Every default lives once: the command line's flags and the API's keywords are built from the
options dataclasses, and this walks both to check that they agree with them."""

import inspect
from dataclasses import MISSING, fields

import numpy as np
import pytest
import typer

from lstmtext import api, cli
from lstmtext.config import EvalOptions, TrainConfig, options_of
from lstmtext.errors import ConfigError
from lstmtext.options import TrainOptions
from lstmtext.sample import SampleOptions


def cli_defaults(name: str) -> dict:
    command = typer.main.get_command(cli.app).commands[name]
    return {p.name: p.default for p in command.params}


def api_defaults(fn) -> dict:
    params = inspect.signature(fn).parameters.items()
    return {k: p.default for k, p in params if p.default is not inspect.Parameter.empty}


def owned(options, leave_out=()) -> dict:
    return {f.name: f.default for f in fields(options) if f.default is not MISSING and f.name not in leave_out}


def agree(found: dict, expected: dict, where: str) -> None:
    for name, default in expected.items():
        assert name in found, f"{where} has no {name}"
        got = found[name]
        # click keeps a list option's default as None or (); a dataclass says None
        assert got == default or (default is None and got in ((), [])), f"{where}: {name} {got!r} != {default!r}"


def test_train_flags_and_keywords_are_train_options():
    agree(cli_defaults("train"), owned(TrainOptions, leave_out=("corpus",)), "lstmtext train")
    agree(api_defaults(api.train), owned(TrainOptions), "lstmtext.train")
    assert set(api_defaults(api.train)) - {"console", "warn"} == set(owned(TrainOptions))


def test_generate_flags_and_keywords_are_sample_options():
    agree(cli_defaults("generate"), owned(SampleOptions), "lstmtext generate")
    per_call = owned(SampleOptions, leave_out=("num_samples",))  # the API's count is samples(n, ...)
    for method in (api.Model.stream, api.Model.generate, api.Model.samples):
        agree(api_defaults(method), per_call, method.__qualname__)


def test_eval_flags_and_keywords_are_eval_options():
    agree(cli_defaults("eval"), owned(EvalOptions), "lstmtext eval")
    agree(api_defaults(api.Model.score), owned(EvalOptions), "Model.score")
    assert TrainConfig(epochs=1).eval_batch_size == EvalOptions().batch_size  # validation scores as eval does


def test_a_misspelt_sampling_keyword_names_the_nearest():
    with pytest.raises(ConfigError, match="did you mean temperature"):
        api._sample_options({"temprature": 0.5}, 1)
    with pytest.raises(ConfigError, match="samples"):
        api._sample_options({"num_samples": 2}, 1)


@pytest.mark.parametrize("kind", ["word", "char", "bpe"])
def test_train_refuses_a_vocabulary_size_exactly_when_the_tokenizer_would(kind):
    from lstmtext.data import TokenizerOptions, check_tokenizer_options
    from lstmtext.tokenizer import Tokenizer

    def refused(fn, *args, **kw) -> bool:
        try:
            fn(*args, **kw)
        except ConfigError:
            return True
        return False

    for size in (1, 2, 3):
        early = refused(check_tokenizer_options, TokenizerOptions(kind, size, 1, False, "punct"))
        late = refused(Tokenizer.train, kind, "the cat sat on the mat\n" * 5, vocab_size=size)
        assert early == late, (kind, size)
    assert refused(check_tokenizer_options, TokenizerOptions(kind, 1, 1, False, "punct"))


def test_every_config_field_is_an_option_of_the_same_name():
    from lstmtext.config import ModelConfig

    options = {f.name for f in fields(TrainOptions)}
    assert {f.name for f in fields(TrainConfig)} - options == {"eval_batch_size"}  # validation scores as eval does
    assert {f.name for f in fields(ModelConfig)} - options == set()


def test_the_options_defaults_are_the_configs_and_old_checkpoints_keep_their_meaning():
    from lstmtext.config import ModelConfig, from_dict

    config = {**owned(ModelConfig), **owned(TrainConfig)}
    for name, default in owned(TrainOptions).items():
        if name in config and default is not None:  # None: chosen for the run (size, lr)
            assert default == config[name], name
    # A header written before --init and --reset-state existed: the values every run had then.
    now = ModelConfig(vocab_size=10, embed=8, hidden=8, layers=1, dropout=0.0)
    old_model = {k: v for k, v in vars(now).items() if k != "init"}
    old_train = {k: v for k, v in vars(TrainConfig(epochs=1)).items() if k not in ("reset_state", "schedule")}
    assert from_dict(ModelConfig, old_model).init == "uniform" and now.init == "torch"
    with pytest.raises(ConfigError, match="missing hidden"):  # a size has no default to fall back on
        from_dict(ModelConfig, {k: v for k, v in vars(now).items() if k != "hidden"})
    assert from_dict(TrainConfig, old_train).reset_state == 0.0 and from_dict(TrainConfig, old_train).schedule == "step"


def test_a_keyword_of_the_wrong_type_is_one_clear_error(tmp_path):
    """The command line converts its strings; a script's value is checked against the option's type
    before anything runs (tie="true" once trained and wrote a checkpoint nothing could load)."""
    for bad, message in (({"tie": "true"}, "tie takes True or False, got 'true'"),
                         ({"hidden": 12.5}, "hidden takes a whole number or None, got 12.5"),
                         ({"lr": "0.1"}, "lr takes a number or None"),
                         ({"epochs": True}, "epochs takes a whole number, got True")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            api.train(tmp_path / "none.txt", **bad)
    with pytest.raises(ConfigError, match="temperature takes a number"):
        api._sample_options({"temperature": "hot"}, 1)
    o = options_of(TrainOptions, {"out": str(tmp_path), "lr": 1, "include": "*.md", "hidden": np.int64(64),
                                  "dropout": np.float32(0.25)}, "training")  # fmt: skip
    assert o.lr == 1 and o.include == ["*.md"] and o.out == tmp_path  # a str path, an int lr, one glob
    assert type(o.hidden) is int and type(o.dropout) is float  # NumPy's scalars become Python's (JSON headers)
