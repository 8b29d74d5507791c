"""A run as a person meets it: which checkpoint of a run directory serves, whether the options of a
`--resume` or `--init-from` command agree with the run, and what `lstmtext info` shows.

Options are compared by value, not by whether they were typed: pressing ↑ and adding `--resume` to
the command that started a run must work, and only an option whose value differs is refused,
naming the run's value and the new one.
"""

import json
import math
from dataclasses import fields
from pathlib import Path

import numpy as np

from lstmtext import checkpoint, model
from lstmtext.config import ModelConfig, TrainConfig
from lstmtext.errors import CheckpointError, ConfigError
from lstmtext.options import RESUMABLE

# The CLI option names that belong to a run and where its value lives in a checkpoint: every field
# of the two configurations is the option of its name (but the vocabulary's size, which the tokenizer
# sets, and validation's batch); the options a resume may change are not the run's.
MODEL_OPTIONS = tuple(f.name for f in fields(ModelConfig) if f.name != "vocab_size")
TRAIN_OPTIONS = tuple(f.name for f in fields(TrainConfig) if f.name not in {*RESUMABLE, "eval_batch_size"})
# CLI name -> key of the tokenizer options stored in the run's info (TokenizerOptions' fields).
TOKENIZER_OPTIONS = {
    "tokenizer": "kind", "vocab_size": "vocab_size", "min_freq": "min_freq", "lowercase": "lowercase",
    "word_split": "word_split",
}
CORPUS_OPTIONS = ("include", "valid_split")
# What fine-tuning keeps from its source: the network's shape and the vocabulary.
SHAPE_OPTIONS = ("embed", "hidden", "layers", "cell", "tie", "nonlinearity", "softmax", "cutoffs", "heads")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        return " ".join(map(str, value)) or "none"
    return str(value)


def run_value(ckpt: checkpoint.Checkpoint, tok, name: str):
    """The value option `name` has in the run of `ckpt`; KeyError if the checkpoint does not say."""
    if name in MODEL_OPTIONS:
        return getattr(ckpt.model_cfg, name)
    if name in TRAIN_OPTIONS:
        if ckpt.train_cfg is None:
            raise KeyError(name)
        return getattr(ckpt.train_cfg, name)
    if name in TOKENIZER_OPTIONS:
        stored = ckpt.info.get("tokenizer_options")
        if stored is not None:
            return stored[TOKENIZER_OPTIONS[name]]
        # Checkpoints written before the options were stored: what the tokenizer itself knows.
        known = {"tokenizer": tok.kind, "lowercase": tok.lowercase, "word_split": tok.word_split}
        return known[name]
    if name in CORPUS_OPTIONS:
        defaults = {"include": [], "valid_split": "end"}
        return ckpt.info.get(name, defaults[name])
    raise KeyError(name)


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b, rel_tol=1e-12)
    return a == b


def changed_options(ckpt, tok, given: dict, names) -> list[tuple[str, object, object]]:
    """-> [(option, run's value, given value)] for the given options among `names` that differ.
    An option the checkpoint does not record counts as changed (its old value shows as unknown)."""
    out = []
    for name in names:
        if name not in given:
            continue
        try:
            old = run_value(ckpt, tok, name)
        except KeyError:
            out.append((name, "unknown", given[name]))
            continue
        new = given[name]
        if name == "cutoffs":  # "2000, 6000" and "2000,6000" are the same cutoffs
            new = ",".join(c.strip() for c in str(new).split(",") if c.strip())
        if not _same(old, new):
            out.append((name, old, given[name]))
    return out


def describe_changes(changes) -> str:
    return ", ".join(f"{flag(n)} {_shown(new)} (the run has {_shown(old)})" for n, old, new in changes)


def check_resume_options(ckpt, tok, given: dict) -> None:
    """`--resume` keeps the run's settings: options equal to them are fine, a changed one is refused."""
    names = (*MODEL_OPTIONS, *TRAIN_OPTIONS, *TOKENIZER_OPTIONS, *CORPUS_OPTIONS)
    unknown = [n for n in given if n not in names]
    assert not unknown, f"resume does not know how to compare {unknown}"
    changes = changed_options(ckpt, tok, given, names)
    if changes:
        raise ConfigError(
            f"{describe_changes(changes)}: a resumed run keeps its settings; start a new run with --out "
            "(or --init-from to start from this run's weights)"
        )


def check_init_options(ckpt, tok, given: dict) -> None:
    """`--init-from` takes the network's shape and the vocabulary from its source checkpoint."""
    changes = changed_options(ckpt, tok, given, (*SHAPE_OPTIONS, *TOKENIZER_OPTIONS))
    if changes:
        raise ConfigError(
            f"{describe_changes(changes)}: --init-from takes the model's shape and vocabulary from the checkpoint; "
            "drop these options or start from scratch without --init-from"
        )


def find_checkpoint(path: str | Path, say=None) -> Path:
    """A run directory means its best.safetensors, or last.safetensors when no validation has
    saved a best yet (a run killed early); a file means itself. `say` hears which was taken."""
    p = Path(path)
    if p.is_dir() and not (p / "best.safetensors").is_file() and (p / "last.safetensors").is_file():
        if say is not None:
            say(f"using {p / 'last.safetensors'}: the run has no best.safetensors yet (no validation finished)")
        return p / "last.safetensors"
    return checkpoint.resolve(p, "best.safetensors")


def _last_valid_ppl(ckpt, run_dir: Path | None):
    if "last_valid_ppl" in ckpt.progress:
        return ckpt.progress["last_valid_ppl"]
    if run_dir is None or not (run_dir / "metrics.jsonl").is_file():
        return None
    last = None
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("kind") == "valid":
            last = rec.get("ppl")
    return last


def _finite(x):
    """JSON has no inf or nan: a diverged run's perplexity shows as null."""
    return x if x is None or math.isfinite(x) else None


def run_info(path: str | Path) -> dict:
    """What `lstmtext info` shows, as one JSON-able dict. A run directory is described by its
    last.safetensors (which knows the training state) with best.safetensors beside it."""
    p = Path(path)
    run_dir = p if p.is_dir() else None
    if run_dir is not None:
        names = [n for n in ("last.safetensors", "best.safetensors") if (run_dir / n).is_file()]
        if not names:
            raise CheckpointError(f"no checkpoint in {run_dir}; give a run directory or a .safetensors file")
        file = run_dir / names[0]
    else:
        file = checkpoint.resolve(p, "best.safetensors")
    ckpt, tok = checkpoint.load_model(file)
    m, prog = ckpt.model_cfg, ckpt.progress
    n_params = int(sum(np.prod(s) for s in model.param_shapes(m).values()))
    info = ckpt.info
    return {
        "path": str(p),
        "checkpoint": str(file),
        "checkpoints": [str(run_dir / n) for n in names] if run_dir is not None else [str(file)],
        "model": {**vars(m), "parameters": n_params},
        "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size, "options": info.get("tokenizer_options")},
        "train": None if ckpt.train_cfg is None else vars(ckpt.train_cfg),
        "progress": {
            "epoch": prog.get("epoch"),  # the epoch training is in (or would start next)
            "epochs_done": None if prog.get("epoch") is None else prog["epoch"] - 1,
            "windows_into_epoch": prog.get("window"),
            "step": prog.get("step"),
            "tokens": prog.get("tokens"),
            "elapsed_s": prog.get("elapsed"),
            "best_valid_ppl": _finite(prog.get("best_valid_ppl")),
            "last_valid_ppl": _finite(_last_valid_ppl(ckpt, run_dir)),
        },
        "corpus": {
            "path": info.get("corpus"),
            "valid": info.get("valid"),
            "files": info.get("files", []),
            "valid_files": info.get("valid_files", []),
            "include": info.get("include", []),
            "valid_split": info.get("valid_split", "end"),
            "train_tokens": info.get("train_tokens"),
            "valid_tokens": info.get("valid_tokens"),
        },
        "init_from": info.get("init_from"),
        "embed_init": info.get("embed_init"),
        "size_choice": info.get("size_choice"),  # why this size, when the person gave none (lstmtext.sizing)
        "tokenizer_choice": info.get("tokenizer_choice"),  # why this tokenizer, when no --tokenizer was given
        "vocab_choice": info.get("vocab_choice"),  # why this vocabulary, when no --vocab-size was given
        "regularisers": regularisers(m),
    }


def regularisers(m: ModelConfig) -> str:
    """AWD-LSTM's options the run trains with, in one line ("" for none): what `info` shows."""
    apart = [k for k in ("dropout_in", "dropout_out") if getattr(m, k) != m.dropout]
    shown = apart + [k for k in ("embed_dropout", "weight_drop", "ar", "tar") if getattr(m, k)]
    parts = [f"{m.dropout_kind} dropout"] if m.dropout_kind != "step" else []
    return ", ".join(parts + [f"{flag(k)[2:]} {getattr(m, k):g}" for k in shown])
