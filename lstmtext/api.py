"""The Python API: what the command line does, from a script or a notebook. The commands in cli.py
are a thin layer over these functions.

    import lstmtext
    run = lstmtext.train("corpora/tinyshakespeare.txt", out="runs/tiny", tokenizer="char", epochs=1)
    model = run.model()                            # or lstmtext.load("runs/tiny")
    model.generate("ROMEO:", length=80, temperature=0.8, seed=1)
    for piece in model.stream("ROMEO:", length=80):
        print(piece, end="")
    model.score("held-out text")                   # the fields of `lstmtext eval --json`
    model.next_token_probs("To be, or not to", n=5)
    model.neighbors("king")                        # nearest tokens in the learned embedding
    model.info                                     # what `lstmtext info --json` shows

`lstmtext.train` takes every option of `lstmtext train` as a keyword argument, with the same names
(dashes become underscores) and the same defaults: both read them from `options.TrainOptions`.
Mistakes raise `lstmtext.errors.LstmTextError` subclasses with the one-line message the CLI prints.
"""

import functools
import itertools
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from inspect import Parameter, Signature, signature
from pathlib import Path

import numpy as np
from rich.console import Console

from lstmtext import checkpoint, data, evaluate, export, inside, mpi, reading, runs, start, threads, vectors
from lstmtext import model as network
from lstmtext.config import EvalOptions, ModelConfig, options_of
from lstmtext.errors import ConfigError
from lstmtext.options import TrainOptions
from lstmtext.sample import SampleOptions, read_as_a_line, shown_prompt, text_pieces, unknown_prompt_warning
from lstmtext.tokenizer import Tokenizer
from lstmtext.trainer import Trainer, handling_signals


def _python_warning(message: str) -> None:
    """A UserWarning that points at the caller's line: the first frame outside lstmtext, however
    deep inside it the warning was raised."""
    frame, level = sys._getframe(1), 2  # stacklevel 2: whoever called this function
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message.removeprefix("warning: "), UserWarning, stacklevel=level)


_PACKAGE_DIR = str(Path(__file__).resolve().parent) + os.sep


# -- a trained model ---------------------------------------------------------------------------------


class Model:
    """A trained model, loaded from a run directory or a checkpoint file (`load`)."""

    def __init__(
        self,
        path: Path,
        ckpt: checkpoint.Checkpoint,
        tok: Tokenizer,
        warn: Callable[[str], None],
        file: Path,
        threads: int | None = None,
    ) -> None:
        """path: what was asked for (a run directory or a file); file: the checkpoint loaded from it;
        threads: the BLAS threads of every method (None: chosen by timing the work, as training does)."""
        self.path, self.checkpoint, self.tokenizer, self._warn, self.file = path, ckpt, tok, warn, file
        self.threads = threads

    @property
    def config(self) -> ModelConfig:
        return self.checkpoint.model_cfg

    @functools.cached_property
    def info(self) -> dict:
        """What `lstmtext info --json` shows for `path` (model, tokenizer, training settings, progress,
        corpus; a run directory is described by its last.safetensors), and "loaded": `file`."""
        return {**runs.run_info(self.path), "loaded": str(self.file)}

    def __repr__(self) -> str:
        m = self.config
        return f"<lstmtext.Model {m.cell} {m.layers}×{m.hidden}, {self.tokenizer.kind} vocabulary {m.vocab_size:,}>"

    def stream(self, prompt: str = "", *, seed: int | None = None, stop: list[str] | tuple[str, ...] = (),
               **options) -> Iterator[str]:  # fmt: skip
        """The prompt, then the sampled text piece by piece as it is produced; "".join of it is
        `generate` with the same arguments. Spaces and tabs ending the prompt's last line of text are
        left to the continuation, which brings its own (word and BPE models: sample.shown_prompt).
        stop: end at any of these strings ("<eos>": a line end). options: SampleOptions's fields
        (length, temperature, top_k, top_p, greedy, allow_unk, repetition_penalty, no_repeat_ngram,
        beam), checked here, before the first piece is asked for.

        repetition_penalty (>= 1, 1: off): a token already in the prompt or the text has its logit
        divided by it (multiplied if negative). no_repeat_ngram (0: off): never complete an n-gram
        of tokens already there. beam (1: off): beam search keeping that many continuations, the
        most likely one returned; it is deterministic (no temperature, top_k, top_p or greedy), and
        its text comes in one piece when the search ends (sample.beam_search says how it scores)."""
        opts = _sample_options(options, 1)
        prompt = shown_prompt(prompt, self.tokenizer)
        self._check_prompt(prompt)
        rng = np.random.default_rng(seed)
        pieces = text_pieces(self.checkpoint, self.tokenizer, prompt, opts, rng, list(stop), self.threads)
        return itertools.chain([prompt], (p[0] for p in pieces if p[0]))

    def generate(self, prompt: str = "", *, seed: int | None = None, stop: list[str] | tuple[str, ...] = (),
                 **options) -> str:  # fmt: skip
        """The prompt and a sample that follows it: `lstmtext generate`'s text. The options are
        `stream`'s."""
        return "".join(self.stream(prompt, seed=seed, stop=stop, **options))

    def samples(self, n: int, prompt: str = "", *, seed: int | None = None, stop: list[str] | tuple[str, ...] = (),
                **options) -> list[str]:  # fmt: skip
        """n samples drawn together as one batch (what `generate --num-samples n` prints); with
        beam > 1, the n best beams, best first (n <= beam). The options are `stream`'s."""
        opts = _sample_options(options, n)
        prompt = shown_prompt(prompt, self.tokenizer)
        self._check_prompt(prompt)
        outs = [prompt] * n
        rng = np.random.default_rng(seed)
        for pieces in text_pieces(self.checkpoint, self.tokenizer, prompt, opts, rng, list(stop), self.threads):
            outs = [out + piece for out, piece in zip(outs, pieces, strict=True)]
        return outs

    def _check_prompt(self, prompt: str) -> None:
        warning = unknown_prompt_warning(self.tokenizer, prompt)
        if warning:
            self._warn(warning)

    def score(self, text: str, batch_size: int = EvalOptions.batch_size, bptt: int = EvalOptions.bptt, *,
              name: str = "the text", progress: reading.Progress | None = None, **options) -> dict:  # fmt: skip
        """How well the model predicts `text`: the fields `lstmtext eval --json` prints (tokens, loss,
        perplexity, words, word_perplexity, bits_per_byte, unk_rate). name: the text in messages.
        progress(stage, done, total): called as the reading goes, in tokens; stage "statistics" (the
        training text's gradients, --dynamic only) or "scoring". options: EvalOptions's fields
        (batch_size, bptt; dynamic and its dynamic_*, which read the text as one stream and learn from
        it as it goes; cache, cache_theta, cache_lambda: lstmtext.reading)."""
        o = options_of(EvalOptions, {"batch_size": batch_size, "bptt": bptt, **options}, "scoring")
        reading.check_options(o)
        ids = self.tokenizer.encode(text)
        if len(ids) < 2:
            raise ConfigError(f"{name} has fewer than 2 tokens; nothing to score")
        params, cfg = self.checkpoint.params, self.config
        with threads.choosing(self.threads) as tuner:
            if o.dynamic:
                rms = reading.gradient_rms(params, cfg, self._training_ids(), reading.STATS_STREAMS,
                                           o.dynamic_window, o.dynamic_stats, progress)  # fmt: skip
                nll = reading.dynamic_nll(params, cfg, ids, rms, o.dynamic_lr, o.dynamic_decay, o.dynamic_window,
                                          progress=progress)  # fmt: skip
                total, n = float(nll.sum()), len(nll)
            elif o.cache:
                nll, mask = reading.cache_nll(params, cfg, ids, o.batch_size, o.bptt, o.cache, o.cache_theta,
                                              o.cache_lambda, progress)  # fmt: skip
                total, n = float((nll * mask).sum()), int(mask.sum())
            else:
                total, n = evaluate.score(params, cfg, ids, o.batch_size, o.bptt, tuner, progress)
        r = evaluate.report(total, n, text, self.tokenizer.count_unk(ids[1:]))
        if r["unk_rate"] > evaluate.UNK_WARN:
            self._warn(f"{100 * r['unk_rate']:.1f}% of the tokens are <unk>; the perplexity flatters the model on "
                       "this text")  # fmt: skip
        return r

    def _training_ids(self) -> np.ndarray:
        """The run's training text as token ids, as `train` cached them beside the checkpoint."""
        ids = data.cached_ids(self.file.parent / "train-ids.npy", self.tokenizer)
        if ids is None:
            raise ConfigError(
                f"--dynamic takes the size of each weight's steps from the training text's gradients, and "
                f"{self.file.parent / 'train-ids.npy'} (which `train` writes beside its checkpoints) is missing "
                "or from another tokenizer; score from the run's folder, or leave out --dynamic"
            )
        return ids

    def next_token_probs(self, context: str = "", n: int = 10) -> dict[str, float]:
        """The n most likely next tokens after `context` with their probabilities, most likely first.
        Tokens are named as `neighbors` names them (vectors.token_words: a BPE piece inside a word is
        "##ing", one that is not whole UTF-8 "<0xE6>"), so every token keeps its own entry."""
        if n < 1:
            raise ConfigError(f"n must be at least 1, got {n}")
        ids = read_as_a_line(self.tokenizer, context)  # as generate reads its prompt
        cfg, params = self.config, self.checkpoint.params
        state = network.init_state(cfg, 1, params["embed.W"].dtype)
        with threads.choosing(self.threads) as tuner:
            for i in ids:
                tuner.begin()
                logits, state = network.step_logits(params, cfg, np.array([i]), state)  # (1, V)
                tuner.end(1)
        z = logits[0].astype(np.float64)  # (V,)
        p = np.exp(z - z.max())  # (V,)
        p /= p.sum()
        names = vectors.token_words(self.tokenizer)
        return {names[i]: float(p[i]) for i in np.argsort(-p, kind="stable")[:n]}

    def _ids(self, words) -> list[int]:
        names = vectors.token_words(self.tokenizer)
        return [vectors.find(names, w, lowercase=self.tokenizer.lowercase) for w in words]

    def neighbors(self, word: str, n: int = 10) -> list[tuple[str, float]]:
        """The n tokens nearest to `word` by cosine in the learned input embedding."""
        names, W = vectors.token_words(self.tokenizer), self.checkpoint.params["embed.W"]
        with threads.choosing(self.threads):  # one product over the vocabulary: nothing to time, a count to keep
            return [(names[i], c) for i, c in vectors.neighbors(W, self._ids([word])[0], n)]

    def analogy(self, a: str, b: str, c: str, n: int = 10) -> list[tuple[str, float]]:
        """The n tokens nearest to a − b + c: analogy("king", "man", "woman") ≈ queen."""
        names = vectors.token_words(self.tokenizer)
        with threads.choosing(self.threads):
            found = vectors.analogy(self.checkpoint.params["embed.W"], *self._ids([a, b, c]), n)
        return [(names[i], cos) for i, cos in found]

    def export(self, format: str, out: str | Path) -> "Exported":
        """Write the model for other tools: "torch" (a folder), "onnx" or "word2vec" (a file)."""
        export.check(format, self.config)
        out = Path(out)
        with threads.choosing(self.threads):
            return self._export(format, out)

    def _export(self, format: str, out: Path) -> "Exported":
        if format == "torch":
            return Exported(export.to_torch(self.config, self.checkpoint.params, self.tokenizer, out), [])
        if format == "onnx":
            return Exported([export.to_onnx(self.config, self.checkpoint.params, out)], [])
        _, left_out = export.to_word2vec(self.checkpoint.params, self.tokenizer, out)
        return Exported([out], left_out)


@dataclass(frozen=True)
class Exported:
    """What `Model.export` wrote: files, and the tokens it left out (word2vec: tokens with whitespace in
    them, which the format cannot hold; empty for the other formats)."""

    files: list[Path]
    left_out: list[str]


def _sample_options(options: dict, n: int) -> SampleOptions:
    """SampleOptions from a generation method's keywords; the count comes from the method."""
    if "num_samples" in options:
        raise ConfigError("num_samples is samples(n, ...)'s first argument")
    return options_of(SampleOptions, {**options, "num_samples": n}, "sampling")


def _with_options(method, options, leave_out=()) -> Signature:
    """method's signature with an options dataclass's fields spelt out as keywords, for help() and
    completion."""
    kw = Parameter.KEYWORD_ONLY
    sig = signature(method)
    fixed = [p for p in sig.parameters.values() if p.kind != Parameter.VAR_KEYWORD]
    spelt = [Parameter(f.name, kw, default=f.default, annotation=f.type)
             for f in fields(options) if f.name not in leave_out]  # fmt: skip
    return sig.replace(parameters=[*fixed, *spelt])


for _method in (Model.stream, Model.generate, Model.samples):
    _method.__signature__ = _with_options(_method, SampleOptions, ("num_samples",))
Model.score.__signature__ = _with_options(Model.score, EvalOptions, ("batch_size", "bptt"))  # those two positional too


def load(
    path: str | Path, *, note: Callable[[str], None] | None = None, warn=None, threads: int | None = None
) -> Model:
    """A run directory (its best.safetensors, or last.safetensors before the first validation) or a
    checkpoint file. note(line) hears which file was taken; warn(line) gets warnings (default:
    Python's warnings); threads: a fixed BLAS thread count for the model's work (default: chosen by
    timing it, as training does; `Model.threads` may be changed later)."""
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    p = Path(path)
    file = runs.find_checkpoint(p, note)
    ckpt, tok = checkpoint.load_model(file)
    return Model(p, ckpt, tok, warn or _python_warning, file, threads)


# -- looking inside ----------------------------------------------------------------------------------


@dataclass
class Inspection:
    """What `inspect` found: the units (with --units or --html), the gradient by distance of the run and
    each --vs run (name, its ModelConfig, inside.gradient_norms's result), and the files it wrote."""

    units: inside.Units | None
    gradients: list[tuple[str, ModelConfig, dict]]
    wrote: list[Path]
    options: inside.InspectOptions  # what was asked


def inspect(
    run: str | Path, text_file: str | Path, *, note: Callable[[str], None] | None = None, threads: int | None = None,
    **options,
) -> Inspection:
    """`lstmtext inspect RUN TEXT` without the printing: options are inside.InspectOptions's fields
    (html=, units=, gradient=, feature=, ...). Writes the page, its pictures and the --out picture it
    is asked for; note(line) hears what was written."""
    from lstmtext import page, plot
    from lstmtext.corpus import read_text
    from lstmtext.threads import choosing

    say = note or (lambda line: None)
    o = options_of(inside.InspectOptions, options, "inspect")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if o.out is not None:
        plot.check_format(o.out)
    if o.pictures is not None:
        plot.pyplot("lstmtext inspect --pictures")  # before the work: without matplotlib, say so first
    elif o.html is not None and not plot.available():
        say(f"Without matplotlib the page leaves out its three pictures ({plot.INSTALL} draws them).")
    model = load(run, note=note, threads=threads)
    ckpt, tok, cfg = model.checkpoint, model.tokenizer, model.config
    text = read_text(Path(text_file), o.encoding_errors)
    found, gradients, wrote = None, [], []
    with choosing(threads) as tuner:
        if o.html or o.units:
            found = inside.find_units(ckpt.params, cfg, tok, text, o.features(), o.max_tokens, tuner)
        if o.html is not None:
            info = page.PageInfo(str(run), str(text_file), tok.kind, cfg.cell, cfg.layers, cfg.hidden)
            html, pics = page.make_page(ckpt.params, cfg, found, info, o.max_distance, o.positions,
                                        model.file.parent, tuner)  # fmt: skip
            o.html.parent.mkdir(parents=True, exist_ok=True)
            o.html.write_text(html, encoding="utf-8")
            wrote.append(o.html)
            say(f"Wrote {o.html} ({len(html.encode()) / 1e6:.1f} MB, {len(found.reading.ids):,} of {found.total:,} "
                f"tokens of {text_file}).")  # fmt: skip
            if o.pictures is not None:
                o.pictures.mkdir(parents=True, exist_ok=True)
                for name, png in pics.items():
                    if png is not None:
                        (o.pictures / f"{name}.png").write_bytes(png)
                        wrote.append(o.pictures / f"{name}.png")
                        say(f"Wrote {o.pictures / name}.png.")
        if o.gradient:
            for name, m in [(str(run), model), *((str(v), load(v, note=note)) for v in o.vs or [])]:
                g = inside.gradient_norms(m.checkpoint.params, m.config, m.tokenizer.encode(text), o.max_distance,
                                          o.positions, tuner)  # fmt: skip
                gradients.append((name, m.config, g))
    if o.out is not None:
        names = plot.names_for([Path(name) for name, _, _ in gradients])  # "lstm", not "runs/inside/lstm"
        plot.save(plot.gradient_figure([(n, g) for n, (_, _, g) in zip(names, gradients, strict=True)]), o.out)
        wrote.append(o.out)
        say(f"Wrote {o.out}.")
    return Inspection(found, gradients, wrote, o)


# -- training ------------------------------------------------------------------------------------------

@dataclass
class Run:
    """A training run: its directory, and the summary training printed (None if it had finished)."""

    path: Path
    summary: dict | None

    def model(self, which: str = "best", warn=None) -> Model:
        """The run's model: "best" (by validation) or "last"."""
        if which not in ("best", "last"):
            raise ConfigError(f"which must be best or last, got {which!r}")
        return load(self.path / f"{which}.safetensors", warn=warn)


def train(corpus: str | Path | None = None, *, console: Console | None = None, warn=None, **options) -> Run:
    """Train as `lstmtext train CORPUS --option value ...` does, with the options as keyword arguments
    (`vocab_size=5000`, `resume="runs/x"`). Progress and the summary print to `console` (default: the
    terminal or notebook; Console(quiet=True) for none). -> the Run."""
    # "Given" means set to something other than the default, so a script may pass every option.
    defaults = {f.name: f.default for f in fields(TrainOptions)}
    given = {k for k, v in options.items() if k not in defaults or v != defaults[k]}
    given |= {"corpus"} if corpus is not None else set()
    opts = TrainOptions.of({"corpus": corpus, **options})
    return run_training(opts, given, console or Console(), warn or _python_warning)


def _train_signature() -> Signature:
    """train's signature with every option spelt out, for help() and notebooks' completion."""
    kw = Parameter.KEYWORD_ONLY
    params = [Parameter("corpus", Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                annotation=str | Path | None)]
    params += [Parameter(f.name, kw, default=f.default, annotation=f.type)
               for f in fields(TrainOptions) if f.name != "corpus"]
    params += [Parameter("console", kw, default=None, annotation=Console | None),
               Parameter("warn", kw, default=None, annotation=Callable[[str], None] | None)]
    return Signature(params, return_annotation=Run)


train.__signature__ = _train_signature()


def run_training(o: TrainOptions, given: set, console: Console, warn: Callable[[str], None]) -> Run:
    """`given`: the options the person set (typed, or passed); on --resume only those are compared
    with the run's own, and a few messages depend on them. Started by an MPI launcher with N
    processes, rank 0 runs this as usual and the others train their share of it (mpi.py)."""
    group = mpi.world()
    if group is not None and group.rank != 0:
        return _follow(group, o)
    with mpi.leading(group):
        if o.resume is None:
            begun = start.new_run(o, given, console, warn)
        else:
            folder, begun = start.resumed_run(o, given, console)
            if begun is None:  # it had finished, and said so
                return Run(folder, None)
        if group is not None:
            start.send(group, begun)  # the others wait for it in `received`
        summary = Trainer(begun, console, group).run()
    return Run(begun.out, summary)


def _follow(group: "mpi.Group", o: TrainOptions) -> Run:
    # Ctrl-C reaches every rank; rank 0 answers it (it releases us, or the training loop agrees to
    # stop), so until the loop takes the signals over a follower lets them pass.
    try:
        with handling_signals(signal.SIG_IGN):
            begun = start.received(group)
        result = begun if isinstance(begun, int) else Trainer(begun, Console(quiet=True), group).run()
    except BaseException as e:
        if not getattr(e, "every_rank", False):  # rank 0 may be waiting for us in a collective
            print(f"error on rank {group.rank}: {e!r}", file=sys.stderr)
            group.abort(1)
        raise
    if isinstance(result, int):
        if result:
            raise mpi.Released(result)
        result = None  # nothing to train (the run had finished): as rank 0's Run says
    where = o.out if o.out is not None else o.resume  # rank 0's default --out is its to name
    return Run(Path(where) if where is not None else Path("."), result)
