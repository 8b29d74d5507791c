"""Checkpoints: safetensors arrays plus one JSON header, written atomically, checked on load.

A checkpoint holds plain arrays and text only. Loading parses JSON and copies raw numbers; nothing
in the file can make Python run code (no pickle anywhere, unlike torch.save / np.load of objects).

    arrays    model parameters under their own names (embed.W, layers.0.W_x, ...),
              in last.safetensors also the optimizer state (adam.*) and the carried TBPTT state
              (state.layers.0.h, ...), so a resumed run continues bit for bit
    metadata  {"lstmtext": header JSON}: format and version, library version, model and training
              config, tokenizer JSON, training progress, and a SHA-256 over header and arrays
"""

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from lstmtext import files, model, optim
from lstmtext.config import ModelConfig, TrainConfig, from_dict
from lstmtext.errors import CheckpointError, LstmTextError
from lstmtext.version import __version__

FORMAT = "lstmtext-checkpoint"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024 * 1024  # a tokenizer of a few MB fits; a hostile 4 GB header does not


@dataclass
class Checkpoint:
    model_cfg: ModelConfig
    params: dict  # name -> array, the keys of model.param_shapes
    tokenizer_json: str
    train_cfg: TrainConfig | None = None
    progress: dict = field(default_factory=dict)  # where training stands (epoch, window, step, rng, ...)
    extra: dict = field(default_factory=dict)  # optimizer state and carried state, by name
    info: dict = field(default_factory=dict)  # corpus description: paths, hashes, token counts


def _checksum(header: dict, arrays: dict) -> str:
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(path: str | Path, ckpt: Checkpoint) -> None:
    """Write atomically: a temp file in the same directory, fsync, then rename over the old one.
    A crash at any moment leaves either the old complete file or the new complete file."""
    path = Path(path)
    arrays = {k: np.ascontiguousarray(v) for k, v in {**ckpt.params, **ckpt.extra}.items()}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lstmtext_version": __version__,
        "model": vars(ckpt.model_cfg).copy(),
        "train": None if ckpt.train_cfg is None else vars(ckpt.train_cfg).copy(),
        "tokenizer": ckpt.tokenizer_json,
        "progress": ckpt.progress,
        "info": ckpt.info,
    }
    header["checksum"] = _checksum(header, arrays)
    data = st_save(arrays, metadata={"lstmtext": json.dumps(header)})
    try:
        with files.replaced_when_whole(path) as tmp, open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise CheckpointError(
            f"could not write checkpoint {path}: {e.strerror or e}; the previous one is kept"
        ) from None
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the file itself is already on disk


def resolve(path: str | Path, default_name: str) -> Path:
    """A run directory means its `default_name` file; a file means itself."""
    p = Path(path)
    if p.is_dir():
        p = p / default_name
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}; give a run directory or a .safetensors file")
    return p


TEXT_PROBE_BYTES = 512  # read to tell a text file given where a checkpoint belongs


def _looks_like_text(head: bytes) -> bool:
    """No control bytes but tab and line ends: UTF-8 text (its multi-byte characters are all >= 0x80)."""
    return all(b >= 32 or b in (9, 10, 13) for b in head)


def _read_header(path: Path, data: bytes) -> dict:
    if len(data) < 8:
        raise CheckpointError(f"{path} is truncated or not a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        if _looks_like_text(data[:TEXT_PROBE_BYTES]):  # a checkpoint's first bytes are a small length: zeros
            raise CheckpointError(
                f"{path} is a text file, not a checkpoint; give a run folder or its .safetensors file there "
                f"(`lstmtext eval RUN TEXT` takes the run first: were the two swapped?)"
            )
        raise CheckpointError(
            f"{path} has an impossible header size ({n} bytes); the file is damaged or not a checkpoint"
        )
    try:
        st_header = json.loads(data[8 : 8 + n])
        header = json.loads(st_header["__metadata__"]["lstmtext"])
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: absurdly nested JSON
        raise CheckpointError(f"{path} is not an lstmtext checkpoint (no readable lstmtext header)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an lstmtext checkpoint")
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {header.get('format_version')}, this lstmtext "
            f"{__version__} reads version {FORMAT_VERSION}; use the lstmtext version that wrote it"
        )
    return header


def load(path: str | Path) -> Checkpoint:
    """Read, verify the checksum, and check every array against the model config before use."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    header = _read_header(path, data)
    try:
        arrays = st_load(data)
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path} is damaged ({e}); use another checkpoint") from None
    expected = header.pop("checksum", None)
    if _checksum(header, arrays) != expected:
        raise CheckpointError(f"{path} failed its checksum: the file is corrupted; use another checkpoint")
    try:
        model_cfg = from_dict(ModelConfig, header["model"])
        train_cfg = None if header["train"] is None else from_dict(TrainConfig, header["train"])
    except (LstmTextError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} has an invalid config: {e}") from None
    progress, info = header.get("progress") or {}, header.get("info") or {}
    if not isinstance(progress, dict) or not isinstance(info, dict):
        raise CheckpointError(f"{path} has an invalid progress or info record; the file does not fit its format")
    params, extra = _check_arrays(path, arrays, model_cfg, train_cfg)
    tok = header.get("tokenizer")
    if not isinstance(tok, str):
        raise CheckpointError(f"{path} has no tokenizer")
    return Checkpoint(model_cfg, params, tok, train_cfg, progress, extra, info)


def _check_arrays(path: Path, arrays: dict, model_cfg: ModelConfig, train_cfg: TrainConfig | None):
    """Every array must be one the config expects, with its exact shape and a float dtype shared by
    all parameters: a forged file is refused here, before any array is used."""
    shapes = model.param_shapes(model_cfg)
    expected = dict(shapes)
    required = set(shapes)
    if train_cfg is not None and any(k not in shapes for k in arrays):
        # A resumable checkpoint (last.safetensors): exactly its optimizer's state and the carried
        # TBPTT state, one row per stream. best.safetensors holds the parameters alone.
        expected.update(optim.state_shapes(train_cfg.optimizer, optim.trainable(shapes, train_cfg.freeze_embed)))
        for name in model.init_state(model_cfg, 1):
            expected[f"state.{name}"] = (train_cfg.batch_size, model_cfg.hidden)
        required = set(expected)
    dtypes = set()
    order = {name: i for i, name in enumerate(expected)}  # report in model order: embed, layers, head
    for name in sorted(arrays, key=lambda k: order.get(k, -1)):
        a = arrays[name]
        if name not in expected:
            raise CheckpointError(f"{path}: unexpected array {name}; the file does not fit its config")
        counter = name in optim.COUNTERS  # an optimizer's step count
        want = "int64" if counter else "a float"
        ok_dtype = a.dtype.name == "int64" if counter else a.dtype.name in ("float32", "float64")
        if a.shape != expected[name] or not ok_dtype:
            raise CheckpointError(
                f"{path}: array {name} should be {want} {list(expected[name])}, found {a.dtype.name}"
                f"{list(a.shape)}; the file does not fit its config"
            )
        if name in shapes:
            dtypes.add(a.dtype.name)
    missing = [name for name in expected if name in required and name not in arrays]
    if missing:
        raise CheckpointError(f"{path}: array {missing[0]} is missing; the file does not fit its config")
    if len(dtypes) > 1:
        raise CheckpointError(f"{path}: parameters mix dtypes {sorted(dtypes)}; the file is not one a trainer wrote")
    params = {k: arrays[k] for k in shapes}
    extra = {k: v for k, v in arrays.items() if k not in shapes}
    return params, extra


def load_model(path: str | Path):
    """For generate / eval: -> (checkpoint, tokenizer), the tokenizer checked against the embedding."""
    from lstmtext.tokenizer import Tokenizer

    ckpt = load(path)
    try:
        tok = Tokenizer.from_json(ckpt.tokenizer_json)
    except LstmTextError as e:
        raise CheckpointError(f"{path}: its tokenizer cannot be read: {e}") from None
    if tok.vocab_size != ckpt.model_cfg.vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {tok.vocab_size} tokens but the model has {ckpt.model_cfg.vocab_size}; "
            f"the file is inconsistent"
        )
    return ckpt, tok
