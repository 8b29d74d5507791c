"""`make recipes`: is lstmtext's default training recipe the right one? Every recipe below trained
through the CLI on corpora of different kinds and sizes, for the same wall-clock budgets, each scored
in bits per byte on its run's held-out text (RUN/valid.txt: the last 10% of the corpus, the same bytes
for every recipe on a corpus). A measurement, not a test: the full default suite is 6 corpora x 12
recipes x (2 + 10 + 60) minutes, about 86 hours on 2 cores. One training process at a time.

    python -m bench.recipes [--corpora prose-100k,manpages] [--budgets 2,10] [--recipes default,old,bpe]
                            [--seeds 1,2] [--resume] [--dry-run] [--list] [--out runs/recipes]

Corpora are built once under OUT/corpora/ from what is on this machine (../shared/data, the man pages,
the Python standard library, Debian changelogs) and rebuilt only when missing. Each run is
OUT/CORPUS/BUDGETmin/RECIPE-seedS with its log in train.log. Each result is appended to
OUT/results.jsonl as soon as it is measured; --resume skips the combinations already there (failed
ones included: delete a line to run it again). A result counts for a recipe only while the recipe's
flags are the ones it was measured with.

At the end, per budget: the default against `old` (the previous defaults) and against the best grid
recipe, then every recipe's bits per byte. Bits per byte compares word, BPE and character models only
once each pays for every byte: byte-level BPE and characters give the text back exactly, but a word
model leaves out the spaces between its tokens (an indentation, no space before a comma) and the
spelling of every <unk>, which it predicts as one cheap token. So a word recipe's number adds what
those would cost an adaptive code of the held-out text (`left_out_bits`): the bits an arithmetic
coder spends on the spaces and the <unk> spellings, learning their frequencies as it goes. That is
less than any real word model of them would need, so the sum still errs in the word model's favour.
"""

import argparse
import functools
import gzip
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
FORMAT, VERSION = "lstmtext-recipes", 2  # of each line of results.jsonl; 2 adds left_out_bpb and defaults
# The defaults' generation: a recipe's flags go on top of the defaults, so a result counts only while
# both are as measured. Raise it when a default changes. 2: the BPE vocabulary chosen from the text;
# 3: the size cap per character of text (reverted); 4: at most 4 parameters per token, not 3;
# 5: dropout 0.5 past 100 passes over the text; 6: --rollback 0.05 (a run that diverges goes back);
# 7: characters when a budget in minutes would read the text as BPE more than sizing.CHAR_PASSES
# times and as characters fewer than sizing.CHAR_ROOM times (42 and 6; first 45 and 10, for one run,
# the changelogs at 60 minutes, which both read as BPE); 8: --plateau 0.02 (a run that stops improving
# while wsd holds its rate decays from its best weights and ends early); 9: dropout 0.5 past 100 passes
# only on a text too small for the model (more than 4 trained parameters per token), else 0.3;
# 10: characters (as 7) only where more than sizing.NEW_WORDS (5%) of the held-out text's words are new.
DEFAULTS = 10

# The defaults before issue #28, made explicit (Zaremba et al.'s small recipe on words, with dropout
# 0.2 and a 6-epoch cap, which a budget in minutes did not lift).
OLD = (
    "--tokenizer word --optimizer sgd --lr 20 --init uniform --init-scale 0.1 --clip 0.25 --batch-size 20 "
    "--bptt 35 --embed 200 --hidden 200 --layers 2 --dropout 0.2 --schedule step --lr-decay 0.5 --decay-after 4 "
    "--reset-state 0 --epochs 6"
)
# The grid: each entry changes the default in one direction. Edit freely; the name is the key in
# results.jsonl, and a changed entry is measured again.
GRID = {
    "bpe": "--tokenizer bpe",  # the default's tokenizer before generation 6, whatever the passes
    "char": "--tokenizer char",
    "word": "--tokenizer word",
    "adaptive": "--tokenizer word --softmax adaptive",  # cutoffs a fifth and a half of the vocabulary
    "bpe-4k": "--vocab-size 4000",
    "big-lr": "--lr 0.012",
    "small-lr": "--lr 0.002",
    "wide": "--hidden 512 --layers 1",
    "deep": "--hidden 512 --layers 2",
    "constant": "--schedule constant",
    "dropout-0.3": "--dropout 0.3",  # the default's past 100 passes before generation 9 was 0.5
}
RECIPES = {"default": [], "old": shlex.split(OLD), **{k: shlex.split(v) for k, v in GRID.items()}}
BUDGETS = "2,10,60"  # minutes
WITHIN = 0.03  # the default passes when it is at most this much above the best grid recipe


# ---- corpora -------------------------------------------------------------------------------------

KB, MB = 1_000, 1_000_000
SKIP_DIRS = {"test", "tests", "idle_test", "__pycache__", "site-packages"}


def _utf8(data: bytes) -> str | None:
    """The text, or None when lstmtext would skip the file (not UTF-8, a NUL byte, or empty)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.strip() and "\0" not in text else None


def head(name: str, limit: int):
    """A builder of the first `limit` bytes of DATA/name, cut at a line end."""
    def build(dest: Path) -> None:
        data = (DATA / name).read_bytes()[:limit]
        dest.write_bytes(data[: data.rindex(b"\n") + 1])
    return build


build_prose = head("warandpeace/input.txt", 100 * KB)


def link(name: str):
    def build(dest: Path) -> None:
        src = DATA / name / "input.txt"
        if not src.is_file():
            raise FileNotFoundError(f"{src} is missing")
        dest.symlink_to(src.resolve())
    return build


def build_manpages(dest: Path, limit: int = 2_500 * KB) -> None:
    """man1 pages in sorted order, rendered at 80 columns, backspace overstrikes removed. A page
    that is another's link or renders to the same text is left out: a copy in the training part
    would make its copy in the held-out part cheap."""
    dest.mkdir()
    total, seen, texts, failed = 0, set(), set(), 0
    env = {**os.environ, "MANWIDTH": "80"}
    for page in sorted(Path("/usr/share/man/man1").iterdir()):
        if total >= limit:
            break
        if not page.is_file() or page.resolve() in seen:
            continue
        seen.add(page.resolve())
        try:
            raw = subprocess.run(["man", "-P", "cat", "-l", str(page)], capture_output=True, env=env, timeout=60)
            out = subprocess.run(["col", "-bx"], input=raw.stdout, capture_output=True, timeout=60)
        except subprocess.TimeoutExpired:
            failed += 1
            continue
        text = _utf8(out.stdout) if raw.returncode == 0 and out.returncode == 0 else None
        digest = hashlib.sha256(out.stdout).digest()
        if text is None or digest in texts:
            failed += 1
            continue
        texts.add(digest)
        name = page.name.removesuffix(".gz").removesuffix(".xz").removesuffix(".bz2")
        (dest / f"{name}.txt").write_bytes(out.stdout)
        total += len(out.stdout)
    print(f"  manpages: {failed} pages left out (failed, empty, not UTF-8 or a duplicate)")


def python_sources(with_tests: bool = False):
    """The standard library's *.py in sorted order: top-level modules and packages (walked in sorted
    order), then, with_tests, the test packages left out before. -> (path, relative path)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])

    def walk(d: Path, skip: set):
        for p in sorted(d.iterdir()):
            if p.is_dir() and p.name not in skip and not p.is_symlink():
                yield from walk(p, skip)
            elif p.is_file() and p.suffix == ".py":
                yield p

    top = sorted(stdlib.iterdir())
    for p in top:
        if p.is_file() and p.suffix == ".py":
            yield p, p.relative_to(stdlib)
        elif p.is_dir() and p.name not in SKIP_DIRS and (p / "__init__.py").is_file():
            for f in walk(p, SKIP_DIRS):
                yield f, f.relative_to(stdlib)
    if with_tests:  # only test code is left: stdlib/test first, then the packages' own tests
        tests = [stdlib / "test"] + [p for p in top if p.is_dir() and p.name != "test" and p.name not in SKIP_DIRS]
        for d in tests:
            for f in walk(d, {"__pycache__", "site-packages"}):
                rel = f.relative_to(stdlib)
                if rel.parts[0] == "test" or set(rel.parts[:-1]) & {"test", "tests", "idle_test"}:
                    yield f, rel


def c_headers(root: Path = Path("/usr/include")):
    """The C headers at the top of the system's include folder (glibc's and many libraries' public
    headers; the folders below are single projects, OpenGL's constants first) in sorted order, each
    file once (a link to one already taken is left out). -> (path, relative path)."""
    seen = set()
    for p in sorted(root.glob("*.h")):
        real = p.resolve()
        if p.is_file() and real not in seen:
            seen.add(real)
            yield p, p.relative_to(root)


def sdk_sources(root: Path = Path("/usr/lib/google-cloud-sdk/lib/googlecloudsdk/command_lib")):
    """The Google Cloud SDK's command_lib *.py in sorted order (on this machine; not on every one).
    -> (path, relative path)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is missing")
    for p in sorted(root.rglob("*.py")):
        if p.is_file():
            yield p, p.relative_to(root)


def copy_until(files, dest: Path, limit: int) -> None:
    dest.mkdir()
    total = 0
    for src, rel in files:
        if total >= limit:
            break
        data = src.read_bytes()
        if _utf8(data) is None:
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
        total += len(data)


def build_notes(dest: Path, limit: int = 1 * MB) -> None:
    """Debian changelogs by package name; a package whose doc folder links to another's is left out."""
    dest.mkdir()
    total, seen = 0, set()
    for f in sorted(Path("/usr/share/doc").glob("*/changelog.Debian.gz")):
        if total >= limit:
            break
        if f.resolve() in seen:
            continue
        seen.add(f.resolve())
        data = gzip.decompress(f.read_bytes())
        if _utf8(data) is None:
            continue
        (dest / f"{f.parent.name}.txt").write_bytes(data)
        total += len(data)


@dataclass(frozen=True)
class Corpus:
    build: Callable[[Path], None]  # writes the file or the folder it is given
    folder: bool  # a folder (OUT/corpora/NAME) or a file (OUT/corpora/NAME.txt)
    default: bool  # in the suite when --corpora is not given
    what: str


CORPORA = {
    "prose-100k": Corpus(build_prose, False, True, "the first 100 KB of War and Peace"),
    "shakespeare": Corpus(link("tinyshakespeare"), False, True, "tiny Shakespeare, 1.1 MB"),
    "warandpeace": Corpus(link("warandpeace"), False, True, "War and Peace, 3.2 MB"),
    "manpages": Corpus(build_manpages, True, True, "man1 pages rendered at 80 columns, 2.5 MB"),
    "python-code": Corpus(lambda d: copy_until(python_sources(), d, 3 * MB), True, True,
                          "Python standard library sources without tests, 3 MB"),
    "notes": Corpus(build_notes, True, True, "Debian changelogs, 1 MB"),
    # Not in the suite the defaults are chosen on: a text of another kind to check a rule chosen there.
    "c-headers": Corpus(lambda d: copy_until(c_headers(), d, 3 * MB // 2), True, False,
                        "the system's top-level C headers (glibc and libraries), 1.5 MB (only when asked)"),
    "news-1m": Corpus(head("ptb/train.txt", 1_100 * KB), False, False,
                      "the first 1.1 MB of Penn Treebank's training text: news whose held-out tenth reuses its "
                      "words (2.0% new), for the tokenizer rule (only when asked)"),
    "sdk-code": Corpus(lambda d: copy_until(sdk_sources(), d, 1_100 * KB), True, False,
                       "Google Cloud SDK command_lib sources, 1.1 MB: code whose held-out tenth has many new words, "
                       "for the tokenizer rule (only when asked)"),
    "code-large": Corpus(lambda d: copy_until(python_sources(with_tests=True), d, 20 * MB), True, False,
                         "the standard library, then its tests, 20 MB (only when asked)"),
}


def corpus_path(name: str, out: Path) -> Path:
    return out / "corpora" / (name if CORPORA[name].folder else f"{name}.txt")


def corpus_size(path: Path) -> tuple[int, int]:
    """-> (bytes, files)."""
    if path.is_file():
        return path.stat().st_size, 1
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def ensure_corpus(name: str, out: Path) -> Path:
    """The corpus, built first if missing. Built under a hidden name and renamed when whole, so a
    build cut short is never taken for a corpus."""
    path = corpus_path(name, out)
    if path.is_symlink() and not path.exists():
        path.unlink()  # its target moved
    state = "cached"
    if not path.exists():
        partial = path.with_name(f".{path.name}.partial")
        if partial.is_dir() and not partial.is_symlink():
            shutil.rmtree(partial)
        else:
            partial.unlink(missing_ok=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        CORPORA[name].build(partial)
        partial.rename(path)
        state = f"built in {time.perf_counter() - t0:.0f} s"
    size, files = corpus_size(path)
    print(f"{name}: {size:,} bytes in {files:,} file{'s' * (files != 1)} ({state}: {path})", flush=True)
    return path


# ---- runs ----------------------------------------------------------------------------------------


def minutes(m: float) -> str:
    return f"{m:g}"


def train_command(exe: str, corpus: Path, run: Path, budget: float, seed: int, flags: list[str]) -> list[str]:
    return [exe, "train", str(corpus), "--out", str(run), "--force", "--max-minutes", minutes(budget),
            "--seed", str(seed), *flags]


def key(r: dict) -> tuple:
    return r["corpus"], float(r["budget_minutes"]), r["recipe"], int(r["seed"]), tuple(r["flags"])


def load_results(path: Path) -> list[dict]:
    """Every record of results.jsonl; a line cut short by a killed suite is skipped with a note."""
    if not path.is_file():
        return []
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            print(f"{path}:{i}: not a JSON line, skipped", file=sys.stderr)
            continue
        if r.get("format") != FORMAT or r.get("version") not in (1, VERSION):  # 1: --rescore adds left_out_bpb
            sys.exit(f"{path}:{i} is not {FORMAT} version 1 or {VERSION}: move the file aside and run again")
        records.append(r)
    return records


def append(path: Path, r: dict) -> None:
    """One line more, on a line of its own even after a line cut short."""
    with open(path, "ab+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write((json.dumps(r) + "\n").encode("utf-8"))


def plan(corpora: list[str], budgets: list[float], recipes: list[str], seeds: list[int]) -> list[dict]:
    """Every combination, budgets outermost so that a suite cut short has whole tables for the
    short budgets."""
    return [{"corpus": c, "budget_minutes": b, "recipe": r, "seed": s, "flags": RECIPES[r]}
            for b in budgets for c in corpora for r in recipes for s in seeds]


def pending(todo: list[dict], done: list[dict]) -> list[dict]:
    have = {key(r) for r in current(done)}  # a record that does not count is measured again
    return [c for c in todo if key(c) not in have]


def last_line(text: str) -> str:
    lines = [s.strip() for s in text.replace("\r", "\n").splitlines() if s.strip()]
    return lines[-1] if lines else "(no output)"


# ---- what a word model leaves out ----------------------------------------------------------------


class ByteCode:
    """Bytes then an end mark, each from adaptive Laplace counts over 257 symbols: what an arithmetic
    coder spends spelling strings it has not seen, learning the byte frequencies as it goes."""

    END = 256

    def __init__(self) -> None:
        self.counts, self.n = Counter(), 0

    def bits(self, text: str) -> float:
        total = 0.0
        for sym in (*text.encode("utf-8"), self.END):
            total -= math.log2((self.counts[sym] + 1) / (self.n + 257))
            self.counts[sym] += 1
            self.n += 1
        return total


class StringCode:
    """Whole strings from adaptive counts, a new one escaped and spelled by a ByteCode (PPM's method C:
    the escape is as likely as the distinct strings seen so far), one table per context."""

    def __init__(self) -> None:
        self.tables: dict[object, Counter] = {}
        self.spell = ByteCode()

    def bits(self, context: object, s: str) -> float:
        seen = self.tables.setdefault(context, Counter())
        n, distinct = sum(seen.values()), len(seen)
        if seen[s]:
            total = -math.log2(seen[s] / (n + distinct))
        else:
            total = (-math.log2(distinct / (n + distinct)) if n else 0.0) + self.spell.bits(s)
        seen[s] += 1
        return total


def _kind(piece: str) -> str:
    return "word" if piece[:1].isalnum() else "mark"


def left_out_bits(tok, text: str) -> float:
    """Bits an adaptive code of `text` spends on what `tok` does not give back: the spaces between
    word tokens (in the context of the kinds of token on either side) and, for each <unk>, whether
    it was a literal "<unk>" and if not its spelling. 0 for byte-level BPE, which gives every byte
    back. Not charged: the case a --lowercase tokenizer drops (no recipe lowercases)."""
    if tok.kind == "bpe":
        return 0.0
    ids, spans = tok.encode_spans(text)  # (N,), (N, 2)
    gaps, spelled, literal = StringCode(), ByteCode(), StringCode()
    total, pos, before = 0.0, 0, "eos"
    for i, (start, end) in zip(ids.tolist(), spans.tolist(), strict=True):
        piece = text[start:end]
        kind = "eos" if i == tok.eos_id else _kind(piece)
        if tok.kind == "word":  # characters are tokens, spaces included: no gaps
            total += gaps.bits((before, kind), text[pos:start])
        if i == tok.unk_id:
            is_literal = tok.kind == "word" and piece.lower() == "<unk>"
            total += literal.bits("flag", str(is_literal)) + (0.0 if is_literal else spelled.bits(piece))
        pos, before = end, kind
    return total + (gaps.bits((before, "end"), text[pos:]) if tok.kind == "word" else 0.0)


def run_one(combo: dict, corpus: Path, out: Path, exe: str) -> dict:
    """Train, score the held-out text, read the model's size: one record, failed or not."""
    run = out / combo["corpus"] / f"{minutes(combo['budget_minutes'])}min" / f"{combo['recipe']}-seed{combo['seed']}"
    run.mkdir(parents=True, exist_ok=True)
    log = run / "train.log"
    record = {"format": FORMAT, "version": VERSION, "defaults": DEFAULTS, **combo, "run": str(run), "status": "failed"}
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        cmd = train_command(exe, corpus, run, combo["budget_minutes"], combo["seed"], combo["flags"])
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    record["train_seconds"] = round(time.perf_counter() - t0, 1)

    def wall() -> dict:
        return {"wall_seconds": round(time.perf_counter() - t0, 1)}

    if rc != 0:
        return {**record, **wall(), "error": f"train exited {rc}: {last_line(log.read_text(encoding='utf-8'))}"}
    t1 = time.perf_counter()
    scored = subprocess.run([exe, "eval", str(run), str(run / "valid.txt"), "--json"], capture_output=True, text=True)
    info = subprocess.run([exe, "info", str(run), "--json"], capture_output=True, text=True)
    record["eval_seconds"] = round(time.perf_counter() - t1, 1)
    for what, r in (("eval", scored), ("info", info)):
        if r.returncode != 0:
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"\n$ lstmtext {what}\n{r.stderr}")
            return {**record, **wall(), "error": f"{what} exited {r.returncode}: {last_line(r.stderr)}"}
    s, i = json.loads(scored.stdout), json.loads(info.stdout)
    m = i["model"]
    try:
        left_out = left_out_bpb(run)
    except Exception as e:  # noqa: BLE001 - one run's failure is its record, not the suite's end
        return {**record, **wall(), "error": f"left_out_bits: {type(e).__name__}: {e}"}
    return {
        **record, "status": "ok",
        **{k: s[k] for k in ("bits_per_byte", "unk_rate", "perplexity", "tokens")},
        "left_out_bpb": left_out,
        "tokenizer": i["tokenizer"]["kind"], "vocab_size": i["tokenizer"]["vocab_size"],
        "model": {k: m.get(k) for k in ("cell", "layers", "hidden", "embed", "parameters")},
        "size_choice": i.get("size_choice"), "tokenizer_choice": i.get("tokenizer_choice"),
        "progress": {k: i["progress"].get(k) for k in ("epochs_done", "step", "tokens", "elapsed_s")},
        **wall(),
    }


def left_out_bpb(run: Path) -> float:
    """left_out_bits of the run's held-out text, per byte of it."""
    import lstmtext

    text = (run / "valid.txt").read_text(encoding="utf-8")
    return left_out_bits(lstmtext.load(run).tokenizer, text) / max(len(text.encode("utf-8")), 1)


def rescore(records: list[dict], path: Path) -> list[dict]:
    """Records measured before left_out_bpb, given it from their runs (the runs that are gone stay
    as they are, and do not count); results.jsonl rewritten whole, through a temporary file. Defaults
    1 differ from 2 only in the BPE vocabulary: word and character records carry over, BPE ones not."""
    out = []
    for r in records:
        if r["status"] == "ok" and "left_out_bpb" not in r and Path(r["run"], "valid.txt").exists():
            carried = {"defaults": 2} if r.get("tokenizer") in ("word", "char") else {}
            r = {**r, "left_out_bpb": left_out_bpb(Path(r["run"])), "version": VERSION, **carried}
            print(f"rescored {r['run']}: +{r['left_out_bpb']:.4f} bits/byte left out", flush=True)
        out.append(r)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
    tmp.replace(path)
    return out


def code_version() -> dict:
    """The commit measured, and whether lstmtext/ had changes on top of it."""
    def git(*a):
        r = subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    status = git("status", "--porcelain", "--", "lstmtext")
    return {"commit": git("rev-parse", "HEAD"), "lstmtext_changed": None if status is None else bool(status)}


# ---- tables --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One recipe on one corpus and budget, over its seeds."""

    bpb: float | None  # mean bits per byte of the seeds that finished, left-out bytes paid; None if none did
    failed: int  # seeds that failed

    def show(self) -> str:
        if self.bpb is None:
            return "failed" if self.failed else "—"
        return f"{self.bpb:.3f}" + (f" ({self.failed} failed)" if self.failed else "")


NONE = Cell(None, 0)


def paid(r: dict) -> float:
    """A record's bits per byte with what its tokenizer left out paid for."""
    return r["bits_per_byte"] + r["left_out_bpb"]


def _value(flags: list[str], name: str) -> str | None:
    return flags[flags.index(name) + 1] if name in flags[:-1] else None


def _pins_size(r: dict) -> bool:
    return "--hidden" in r["flags"] and "--layers" in r["flags"]  # the size cap acts only on the ladder walk


def _passes(r: dict) -> float:
    """The passes over the text the size chooser planned for a record's run, read back from
    sizing.Choice.reason() (the only place a run keeps them); inf when unknown."""
    found = re.search(r"\(([\d,.]+) passes over the text\)", r.get("size_choice") or "")
    return float(found.group(1).replace(",", "")) if found else math.inf


# What each generation of the defaults changed, as a test of a record: True when its recipe pins
# what changed, or its run was not touched by it, so that it measured what it would measure now.
PINNED_BY = {
    2: lambda r: "--vocab-size" in r["flags"] or _value(r["flags"], "--tokenizer") in ("word", "char"),  # BPE vocab
    3: _pins_size,  # the size cap per character (reverted)
    4: _pins_size,  # the size cap at 4 parameters per token
    5: lambda r: "--dropout" in r["flags"] or _passes(r) <= 100,  # dropout 0.5 past 100 passes
    6: lambda r: "--rollback" in r["flags"] or _never_worse(r, 0.05),  # --rollback 0.05 (a diverging run)
    7: lambda r: _keeps_tokenizer(r["flags"]) or _chooses_bpe(r),  # characters past 42 BPE passes, if fewer than 6
    8: lambda r: "--plateau" in r["flags"] or _never_settles(r, 0.02),  # --plateau 0.02 (a run overfitting)
    9: lambda r: "--dropout" in r["flags"] or _passes(r) <= 100 or _too_small(r),  # 0.5 only on a small text
    10: lambda r: _keeps_tokenizer(r["flags"]) or r.get("tokenizer") != "char" or _new_words(r) > 0.05,  # new words
}


@functools.cache
def _corpus_new_words(path: Path) -> float:
    from lstmtext import corpus, sizing

    train, valid = corpus.heldout_parts(path)
    return sizing.new_word_share(train.pieces(), valid.pieces())


def _new_words(r: dict) -> float:
    """Generation 10 on a record that read characters: the share of new words in its corpus's held-out
    text, as the default's choice counts them, from the corpus beside its run (OUT/corpora), else the
    one under the default --out; 0 when neither is there, so that the record does not stand."""
    if r["corpus"] not in CORPORA:
        return 0.0
    for out in (Path(r["run"]).parents[2], ROOT / "runs" / "recipes"):
        if corpus_path(r["corpus"], out).exists():
            return _corpus_new_words(corpus_path(r["corpus"], out))
    return 0.0


def _too_small(r: dict) -> bool:
    """Whether a record's run had more than 4 trained parameters per token of its text, read back
    from sizing.Choice.reason() like _passes (a literal 4, as in _chooses_bpe); False when unknown."""
    pattern = r"about ([\d,.]+)M tokens \(([\d,.]+) passes .* for ([\d,.]+)M trained"
    found = re.search(pattern, r.get("size_choice") or "")
    if not found:
        return False
    tokens, passes, params = (float(g.replace(",", "")) for g in found.groups())
    return params > 4.0 * tokens / passes


def _never_worse(r: dict, rollback: float) -> bool:
    """Whether --rollback would not have acted on a record's run (read from its metrics.jsonl): no
    validation `rollback` above the best before it while the training loss since the validation before
    was as much above its lowest such mean (a run that diverged, not one that overfits). Runs from
    before the valid lines carried `train_loss` take the mean of their train lines instead. False when
    the run is gone."""
    from lstmtext import optim

    try:
        lines = Path(r["run"], "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    best, lowest, since = math.inf, math.inf, []
    for v in (json.loads(x) for x in lines):
        if v.get("kind") == "train":
            since.append(v["loss"])
        elif v.get("kind") == "valid":
            train = v.get("train_loss", sum(since) / len(since) if since else math.nan)
            if optim.diverging(v["loss"], best, train, lowest, rollback):
                return False
            best, lowest, since = min(best, v["loss"]), min(lowest, train) if train == train else lowest, []
    return True


def _never_settles(r: dict, margin: float) -> bool:
    """Whether --plateau would not have acted on a record's run (read from its metrics.jsonl): at no
    validation while wsd held the rate (by the clock, a validation's time being the train line's before
    it: a budget in minutes only) did schedule.plateaued hold. Runs with another schedule or NT-ASGD
    never settle; a wsd run with a budget in epochs or steps, or one that is gone, is measured again."""
    from lstmtext import schedule
    from lstmtext.config import TrainConfig

    flags = r["flags"]
    if _value(flags, "--schedule") not in (None, "wsd") or _value(flags, "--optimizer") == "nt-asgd":
        return True
    if {"--epochs", "--max-steps"} & set(flags):
        return False
    warmup = float(_value(flags, "--warmup") or TrainConfig.warmup)
    cooldown = float(_value(flags, "--cooldown") or TrainConfig.cooldown)
    try:
        lines = Path(r["run"], "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    budget, clock, history, best = 60.0 * r["budget_minutes"], 0.0, [], math.inf
    for v in (json.loads(x) for x in lines):
        if v.get("kind") == "train":
            clock = v.get("elapsed", clock)
        elif v.get("kind") == "valid" and v.get("rollback"):
            history.clear()  # as the trainer's roll_back does; a rollback comes before a plateau
        elif v.get("kind") == "valid":
            history.append(v["loss"])
            best = min(best, v["loss"]) if math.isfinite(v["loss"]) else best
            held = warmup <= clock / budget < 1.0 - cooldown
            if held and schedule.plateaued(history, best, margin):
                return False
    return True


def _keeps_tokenizer(flags: list[str]) -> bool:
    """Whether a recipe's flags take the tokenizer out of the default's choice (lstmtext.start): one
    named or implied, the adaptive head, or a budget not only in minutes."""
    from lstmtext.options import NAMES_A_TOKENIZER

    named = {f"--{name.replace('_', '-')}" for name in NAMES_A_TOKENIZER} | {"--epochs", "--max-steps"}
    return bool(named & set(flags)) or _value(flags, "--softmax") == "adaptive"


def _chooses_bpe(r: dict) -> bool:
    """Generation 7 on a record of before: whether the default's choice (lstmtext.start) would still
    read its text as BPE: few BPE passes or, for the default itself, characters that would read it
    often too (their plan's passes, `char_passes`, from the `char` record of the same corpus, budget
    and seed; a grid recipe's own size would plan other passes, so it is measured again). Literal
    thresholds, so that a later change of sizing's constants raises the generation again."""
    return _passes(r) <= 42.0 or (r["recipe"] == "default" and r.get("char_passes", 0.0) >= 6.0)


def _cell(r: dict) -> tuple:
    return r["corpus"], float(r["budget_minutes"]), int(r["seed"])


def as_of_today(r: dict, plans: dict) -> list[dict]:
    """A record as the recipes stand. Before generation 7 the default was `--tokenizer bpe`, so its
    record is also one of the `bpe` recipe. Where the default now chooses characters its cell is
    measured again, through the default's own path (the choice included), not taken from a `char`
    record. plans: {(corpus, budget, seed): {"char": passes a `char` record planned}}."""
    plan = plans.get(_cell(r), {})
    r = {**r, "char_passes": plan.get("char", 0.0)}
    if r.get("defaults", 1) >= 7 or r["status"] != "ok" or DEFAULTS < 7:
        return [r]
    if r["recipe"] == "default":
        return [r, {**r, "recipe": "bpe", "flags": RECIPES["bpe"]}]
    return [r]


def _plans(records: list[dict]) -> dict:
    """The passes the `char` recipe planned, by corpus, budget and seed."""
    plans: dict[tuple, dict] = {}
    for r in records:
        if r["status"] == "ok" and r["recipe"] == "char" and tuple(r["flags"]) == tuple(RECIPES["char"]):
            if _passes(r) < math.inf:  # a record without its size choice says nothing
                plans.setdefault(_cell(r), {})["char"] = _passes(r)
    return plans


def untouched(r: dict) -> bool:
    """Whether a record, of whatever generation of the defaults, still counts."""
    return all(PINNED_BY[g](r) for g in range(r.get("defaults", 1) + 1, DEFAULTS + 1))


def current(records: list[dict]) -> list[dict]:
    """The latest record of each combination, for the recipes and defaults as they are now: a record
    of an older generation of the defaults counts when its recipe pins every change since."""
    plans = _plans(records)
    today = [t for r in records for t in as_of_today(r, plans)]
    latest = {key(r): r for r in today if tuple(r["flags"]) == tuple(RECIPES.get(r["recipe"], [None]))
              and untouched(r)
              and (r["status"] != "ok" or "left_out_bpb" in r)}  # version 1 records: --rescore them
    return list(latest.values())


def cells(records: list[dict], budget: float, seeds: list[int]) -> dict[str, dict[str, Cell]]:
    """{corpus: {recipe: Cell}} at this budget, over these seeds."""
    grouped: dict[tuple, list[dict]] = {}
    for r in current(records):
        if float(r["budget_minutes"]) != budget or int(r["seed"]) not in seeds:
            continue
        grouped.setdefault((r["corpus"], r["recipe"]), []).append(r)
    out: dict[str, dict[str, Cell]] = {}
    for (c, name), rs in grouped.items():
        ok = [r for r in rs if r["status"] == "ok"]
        out.setdefault(c, {})[name] = Cell(mean(paid(r) for r in ok) if ok else None, len(rs) - len(ok))
    return out


@dataclass(frozen=True)
class Verdict:
    best: str | None  # the grid recipe with the fewest bits per byte
    gap: float | None  # (default - best) / best
    within: bool | None  # the default within WITHIN of the best
    beats_old: bool | None


def verdict(row: dict[str, Cell]) -> Verdict:
    default, old = row.get("default", NONE), row.get("old", NONE)
    fair = {n: c for n, c in row.items() if n in GRID and c.bpb is not None}
    best = min(fair, key=lambda n: fair[n].bpb) if fair else None
    gap = None if best is None or default.bpb is None else (default.bpb - fair[best].bpb) / fair[best].bpb
    beats = None if default.bpb is None or old.bpb is None else default.bpb < old.bpb
    return Verdict(best, gap, None if gap is None else gap <= WITHIN + 1e-9, beats)  # 1e-9: 3.0% shown is within


def yes(b: bool | None) -> str:
    return "—" if b is None else ("yes" if b else "no")


def tables(records: list[dict], budgets: list[float], corpora: list[str], recipes: list[str],
           seeds: list[int]) -> str:
    lines = []
    for b in budgets:
        by = cells(records, b, seeds)
        lines += [f"\n### {minutes(b)} minutes: the default against the old defaults and the best grid recipe "
                  "(bits per byte on the held-out text, lower is better)\n",
                  "| corpus | default | old | best grid recipe | default vs best | within 3% of best "
                  "| better than old |", "|---|---|---|---|---|---|---|"]
        for c in corpora:
            row = {r: x for r, x in by.get(c, {}).items() if r in recipes}
            v = verdict(row)
            best = "—" if v.best is None else f"{v.best} {row[v.best].show()}"
            gap = "—" if v.gap is None else f"{100 * v.gap:+.1f}%"
            d, o = row.get("default", NONE), row.get("old", NONE)
            lines.append(f"| {c} | {d.show()} | {o.show()} | {best} | {gap} | {yes(v.within)} | {yes(v.beats_old)} |")
        lines += [f"\nEvery recipe at {minutes(b)} minutes (bits per byte):\n",
                  f"| corpus | {' | '.join(recipes)} |", "|---|" + "---|" * len(recipes)]
        lines += [f"| {c} | {' | '.join(by.get(c, {}).get(r, NONE).show() for r in recipes)} |" for c in corpora]
    lines.append("\nWord recipes pay for the spaces and <unk> spellings they leave out (bench/recipes.py: "
                 "left_out_bits).")
    failed = [r for r in current(records) if r["status"] != "ok"
              and r["corpus"] in corpora and r["recipe"] in recipes and float(r["budget_minutes"]) in budgets
              and int(r["seed"]) in seeds]
    if failed:
        lines.append("\nFailed runs:\n")
        lines += [f"- {r['corpus']} {minutes(r['budget_minutes'])} min {r['recipe']} seed {r['seed']}: "
                  f"{r.get('error')} ({r['run']}/train.log)" for r in failed]
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------------------


def names(text: str, known: dict, what: str) -> list[str]:
    chosen = [n for n in text.split(",") if n]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        sys.exit(f"unknown {what}: {', '.join(unknown)}; choose from {', '.join(known)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default=",".join(n for n, c in CORPORA.items() if c.default),
                    help="comma-separated (default: all but code-large; --list shows them)")
    ap.add_argument("--budgets", default=BUDGETS, help=f"minutes, comma-separated (default {BUDGETS})")
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated (default: all)")
    ap.add_argument("--seeds", default="1", help="comma-separated seeds (default 1)")
    ap.add_argument("--resume", action="store_true", help="skip the combinations already in results.jsonl")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing, build nothing")
    ap.add_argument("--list", action="store_true", help="print the corpora and the recipes")
    ap.add_argument("--rescore", action="store_true",
                    help="add left_out_bpb to results.jsonl's older records whose runs are still there, then go on")
    ap.add_argument("--out", default=str(ROOT / "runs" / "recipes"), help="corpora, runs and results.jsonl")
    a = ap.parse_args(argv)
    out = Path(a.out)
    corpora = names(a.corpora, CORPORA, "corpus")
    recipes = names(a.recipes, RECIPES, "recipe")
    budgets = [float(b) for b in a.budgets.split(",") if b]
    seeds = [int(s) for s in a.seeds.split(",") if s]
    if any(b <= 0 for b in budgets):
        sys.exit("--budgets: minutes must be above 0")
    if a.list:
        print("corpora (* = in the default list):")
        for n, c in CORPORA.items():
            p = corpus_path(n, out)
            size, files = corpus_size(p) if p.exists() else (0, 0)
            built = f"{size:,} bytes in {files:,} file{'s' * (files != 1)}" if p.exists() else "not built"
            print(f"  {n}{'*' * c.default}: {c.what} ({built})")
        print("recipes (flags after CORPUS --out RUN --force --max-minutes M --seed S):")
        for n, flags in RECIPES.items():
            print(f"  {n}: {shlex.join(flags) or '(none: the defaults)'}")
        return 0

    results = out / "results.jsonl"
    done = load_results(results)
    if a.rescore:
        done = rescore(done, results)
    todo = plan(corpora, budgets, recipes, seeds)
    if a.resume:
        todo = pending(todo, done)
    exe = str(Path(sys.executable).with_name("lstmtext"))
    if a.dry_run:
        for c in todo:
            run = out / c["corpus"] / f"{minutes(c['budget_minutes'])}min" / f"{c['recipe']}-seed{c['seed']}"
            print(shlex.join(train_command(exe, corpus_path(c["corpus"], out), run, c["budget_minutes"],
                                           c["seed"], c["flags"])))
            print(shlex.join([exe, "eval", str(run), str(run / "valid.txt"), "--json"]))
        print(f"{len(todo)} runs, at most {sum(c['budget_minutes'] for c in todo):g} minutes of training")
        return 0

    paths = {}
    for n in sorted({c["corpus"] for c in todo}, key=corpora.index):
        try:
            paths[n] = ensure_corpus(n, out)
        except (OSError, subprocess.SubprocessError) as e:
            sys.exit(f"cannot build corpus {n}: {e}; leave it out with --corpora")
    version = code_version()
    print(f"{len(todo)} runs, at most {sum(c['budget_minutes'] for c in todo):g} minutes of training; "
          f"results to {results}", flush=True)
    for i, c in enumerate(todo, 1):
        r = {**run_one(c, paths[c["corpus"]], out, exe), **version}
        append(results, r)
        done.append(r)
        what = (f"{paid(r):.4f} bits/byte, <unk> {100 * r['unk_rate']:.2f}%, {r['tokenizer']} "
                f"{r['model']['layers']}x{r['model']['hidden']}" if r["status"] == "ok" else f"FAILED: {r['error']}")
        print(f"[{i}/{len(todo)}] {c['corpus']} {minutes(c['budget_minutes'])} min {c['recipe']} seed {c['seed']}: "
              f"{what} ({r['train_seconds'] + r.get('eval_seconds', 0):.0f} s)", flush=True)
    print(tables(done, budgets, corpora, recipes, seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
