"""Checkpoints are untrusted input: a round trip is exact, and a truncated, flipped, reshaped, oversized
or malicious file is refused with a CheckpointError naming the file -- never loaded half-way, and never
running code (each malicious test proves its payload is live, then that loading did not run it)."""

import base64
import json
import pickle
import re
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from lstmtext import checkpoint, model, optim
from lstmtext.cli import app
from lstmtext.config import ModelConfig, TrainConfig
from lstmtext.errors import CheckpointError
from lstmtext.tokenizer import Tokenizer

TEXT = "the cat sat on the mat .\nthe dog ran to him , and her !\n"
STEP = 987654321  # a number found once in the file, so a test can change one digit of it
DROPOUT = b'dropout\\": 0.25'  # as it sits in the file: JSON inside a JSON string


class Payload:
    """Unpickling this creates `marker`: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def make(tmp_path, name="ck.safetensors", vocab_extra=0, hidden=8) -> tuple[Path, checkpoint.Checkpoint, Tokenizer]:
    tok = Tokenizer.train("word", TEXT)
    cfg = ModelConfig(vocab_size=tok.vocab_size + vocab_extra, embed=6, hidden=hidden, layers=2, dropout=0.25)
    params = model.init_params(cfg, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    extra = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in optim.init_state("adam", params).items()}
    extra["adam.t"] = np.array([7], dtype=np.int64)
    extra.update({f"state.{k}": rng.standard_normal(v.shape) for k, v in model.init_state(cfg, 2).items()})
    progress = {"epoch": 2, "window": 3, "step": STEP, "rng": {"state": [1, 2]}, "best_valid_ppl": None}
    ck = checkpoint.Checkpoint(
        cfg, params, tok.to_json(), TrainConfig(batch_size=2, optimizer="adam", epochs=1), progress, extra,
        {"corpus": "x.txt"},
    )
    path = tmp_path / name
    checkpoint.save(path, ck)
    return path, ck, tok


def parts(path: Path) -> tuple[bytes, int, dict, dict]:
    """-> file bytes, safetensors header length, lstmtext header, arrays."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["lstmtext"])
    return data, n, header, load_file(path)


def forge(path: Path, header: dict, arrays: dict, **meta) -> Path:
    """Write a file with a *valid* checksum, so only the later checks can refuse it."""
    header = {k: v for k, v in header.items() if k != "checksum"}
    header["checksum"] = checkpoint._checksum(header, arrays)
    save_file(arrays, str(path), metadata={"lstmtext": json.dumps(header), **meta})
    return path


def refused(path, *words) -> str:
    with pytest.raises(CheckpointError) as e:  # any other exception type fails the test
        checkpoint.load_model(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def test_round_trip_is_exact(tmp_path):
    path, ck, tok = make(tmp_path)
    got = checkpoint.load(path)
    assert got.model_cfg == ck.model_cfg and got.train_cfg == ck.train_cfg
    assert got.progress == ck.progress and got.info == ck.info and got.tokenizer_json == ck.tokenizer_json
    for mine, theirs in ((ck.params, got.params), (ck.extra, got.extra)):
        assert mine.keys() == theirs.keys()
        for k in mine:
            assert theirs[k].dtype == mine[k].dtype and theirs[k].tobytes() == mine[k].tobytes(), k
    _, tok2 = checkpoint.load_model(path)
    assert tok2.vocab_size == tok.vocab_size
    assert np.array_equal(tok2.encode(TEXT + "a cat ran\n"), tok.encode(TEXT + "a cat ran\n"))
    assert not list(tmp_path.glob(".*.tmp-*"))  # the atomic write leaves no temp file


def test_truncated_file_is_refused_at_every_offset(tmp_path):
    path, _, _ = make(tmp_path)
    data, n, _, _ = parts(path)
    arrays_mid = 8 + n + (len(data) - 8 - n) // 2
    for cut in (0, 1, 7, 8, 20, 8 + n // 2, 8 + n - 1, 8 + n, 8 + n + 1, arrays_mid, len(data) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        msg = refused(bad)
        assert re.search("truncated|damaged|header size", msg), (cut, msg)


def test_flipped_bytes_are_refused(tmp_path):
    path, _, _ = make(tmp_path)
    data, n, _, _ = parts(path)
    cases = {
        "progress digit": data.replace(str(STEP).encode(), str(STEP + 1).encode()),
        "config digit": data.replace(DROPOUT, DROPOUT.replace(b"0.25", b"0.35")),
        "array byte": data[: 8 + n + 40] + bytes([data[8 + n + 40] ^ 0x10]) + data[8 + n + 41 :],
        "last byte": data[:-1] + bytes([data[-1] ^ 0x01]),
    }
    assert data.count(str(STEP).encode()) == 1 and data.count(DROPOUT) == 1
    for name, bad in cases.items():
        assert len(bad) == len(data) and bad != data, name
        flipped = tmp_path / f"{name.replace(' ', '_')}.st"
        flipped.write_bytes(bad)
        refused(flipped, "checksum")
    inner = data.index(b'{\\"format\\"')  # the lstmtext header inside the safetensors JSON
    for name, at, byte in (("outer json", 8, b"x"), ("inner json", inner, b"[")):
        bad = tmp_path / f"{name.replace(' ', '_')}.st"
        bad.write_bytes(data[:at] + byte + data[at + 1 :])
        refused(bad, "not an lstmtext checkpoint")


def test_header_claiming_other_shapes_is_refused(tmp_path):
    path, _, _ = make(tmp_path)
    _, _, header, arrays = parts(path)
    other = dict(header, model=dict(header["model"], hidden=16))
    msg = refused(forge(tmp_path / "h16.st", other, arrays), "layers.0.W_x", "[6, 64]", "[6, 32]")
    assert "does not fit" in msg
    ints = {k: v.astype(np.int8) if k == "head.b" else v for k, v in arrays.items()}
    refused(forge(tmp_path / "int8.st", header, ints), "head.b", "int8")
    missing = {k: v for k, v in arrays.items() if k != "layers.1.W_h"}
    refused(forge(tmp_path / "missing.st", header, missing), "layers.1.W_h")
    odd_extra = dict(arrays, **{"adam.v.head.b": arrays["head.b"].astype(np.float16)})
    refused(forge(tmp_path / "f16.st", header, odd_extra), "adam.v.head.b", "float16")
    refused(forge(tmp_path / "cell.st", dict(header, model=dict(header["model"], cell="gpt")), arrays), "gpt")


def test_deeply_nested_header_is_refused(tmp_path):
    deep = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    bad = tmp_path / "deep.st"
    bad.write_bytes(struct.pack("<Q", len(deep)) + deep)
    refused(bad, "not an lstmtext checkpoint")


def test_huge_header_size_is_refused_without_allocating(tmp_path):
    bad = tmp_path / "huge.st"
    bad.write_bytes(struct.pack("<Q", 2**40) + b'{"__metadata__":{}}')
    t = time.perf_counter()
    refused(bad, "header size", str(2**40))
    assert time.perf_counter() - t < 1.0
    too_big = checkpoint.MAX_HEADER_BYTES + 1  # over our limit though the file could hold it
    bad.write_bytes(struct.pack("<Q", too_big) + b" " * 16)
    refused(bad, "header size")


def test_unknown_format_version_says_which_one_we_read(tmp_path):
    path, _, _ = make(tmp_path)
    _, _, header, arrays = parts(path)
    msg = refused(forge(tmp_path / "v99.st", dict(header, format_version=99), arrays), "version 99")
    assert f"reads version {checkpoint.FORMAT_VERSION}" in msg
    refused(forge(tmp_path / "alien.st", dict(header, format="other"), arrays), "not an lstmtext checkpoint")


def test_tokenizer_that_does_not_fit_the_embedding_is_refused(tmp_path):
    path, ck, tok = make(tmp_path, vocab_extra=3)
    assert checkpoint.load(path).model_cfg.vocab_size == tok.vocab_size + 3  # the arrays alone are fine
    refused(path, f"{tok.vocab_size} tokens", f"model has {tok.vocab_size + 3}")


def test_pickle_in_metadata_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    live = tmp_path / "control"
    pickle.loads(payload(live))  # the payload is live: unpickling it does create a file
    assert live.exists()
    evil = payload(marker)
    path, _, _ = make(tmp_path)
    data, _, header, arrays = parts(path)
    for i, text in enumerate((base64.b64encode(evil).decode(), evil.decode("latin-1"))):
        bad = tmp_path / f"evil{i}.safetensors"
        save_file(arrays, str(bad), metadata={"lstmtext": text})
        refused(bad, "not an lstmtext checkpoint")
    # A valid header under a hostile tokenizer: read as JSON only, refused.
    bad_tok = forge(tmp_path / "evil_tok.st", dict(header, tokenizer=evil.decode("latin-1")), arrays)
    refused(bad_tok, "tokenizer")
    # An extra metadata key next to a valid header is ignored, not unpickled.
    side = forge(tmp_path / "side.st", header, arrays, evil=base64.b64encode(evil).decode(), raw=evil.decode("latin-1"))
    assert checkpoint.load(side).progress["step"] == STEP
    r = CliRunner().invoke(app, ["generate", str(tmp_path / "evil1.safetensors"), "--length", "3"])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "evil1.safetensors" in err, err
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["npy", "npz"])
def test_numpy_object_arrays_are_never_unpickled(tmp_path, kind):
    marker, live = tmp_path / "pwned", tmp_path / "control"
    for name, m in (("evil", marker), ("control", live)):
        obj = np.array([Payload(m)], dtype=object)
        if kind == "npy":
            np.save(tmp_path / f"{name}.npy", obj, allow_pickle=True)
        else:
            np.savez(tmp_path / f"{name}.npz", a=obj)
    control = np.load(tmp_path / f"control.{kind}", allow_pickle=True)  # what a careless loader would do
    if kind == "npz":
        control["a"]
        control.close()
    assert live.exists()  # the payload is live
    path = tmp_path / f"evil.{kind}"
    with pytest.raises(ValueError, match="allow_pickle"):
        loaded = np.load(path, allow_pickle=False)  # the only way lstmtext may call np.load
        loaded["a"]  # an npz unpacks lazily
    refused(path)  # and the checkpoint loader refuses the file outright
    assert not marker.exists()


def test_no_code_loading_anywhere_in_lstmtext():
    src = Path(checkpoint.__file__).parent
    files = list(src.rglob("*.py"))
    assert len(files) > 10
    banned = re.compile(
        r"^\s*(import|from)\s+(c?pickle|dill|joblib|marshal|shelve)\b|allow_pickle\s*=\s*True|torch\.load", re.M
    )
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert not banned.search(text), (f, banned.search(text))
        for call in re.findall(r"np\.load\([^)]*\)", text):
            assert "allow_pickle=False" in call, (f, call)


def test_cli_refuses_damaged_checkpoints_in_one_line(tmp_path):
    path, _, _ = make(tmp_path)
    data = path.read_bytes()
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    text = tmp_path / "valid.txt"
    text.write_text(TEXT, encoding="utf-8")
    for args, bad in (
        (["eval", trunc, text], trunc),
        (["generate", corrupt], corrupt),
        (["eval", corrupt, text], corrupt),
    ):
        r = CliRunner().invoke(app, [str(a) for a in args])
        assert r.exit_code == 1, r.output
        assert "Traceback" not in r.output and r.stdout == "", r.output
        err = r.stderr.strip()
        assert err.startswith("error: ") and "\n" not in err and str(bad) in err, err
    # The arguments swapped: a text where the run belongs is named as text, with the order to use.
    r = CliRunner().invoke(app, ["eval", str(text), str(path)])
    err = r.stderr.strip()
    assert r.exit_code == 1 and f"{text} is a text file, not a checkpoint" in err and "RUN TEXT" in err, err
    assert "header size" not in err and "\n" not in err


def test_forged_extra_arrays_and_configs_are_refused(tmp_path):
    """Optimizer and carried-state arrays must fit the config too; config fields must have their types."""
    path, ck, _ = make(tmp_path)
    _, _, header, arrays = parts(path)
    bad_moment = dict(arrays, **{"adam.m.embed.W": np.zeros((3, 3), np.float32)})
    refused(forge(tmp_path / "m.st", header, bad_moment), "adam.m.embed.W", "[3, 3]")
    unknown = dict(arrays, **{"evil": np.zeros(1, np.float32)})
    refused(forge(tmp_path / "u.st", header, unknown), "unexpected array evil")
    mixed = dict(arrays, **{"head.b": arrays["head.b"].astype(np.float64)})
    refused(forge(tmp_path / "mix.st", header, mixed), "mix")
    float_vocab = dict(header, model=dict(header["model"], vocab_size=float(header["model"]["vocab_size"])))
    refused(forge(tmp_path / "fv.st", float_vocab, arrays), "vocab_size")
    refused(forge(tmp_path / "prog.st", dict(header, progress=[1, 2]), arrays), "progress")
