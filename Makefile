# Two commands on a fresh clone: `make demo` and `make test`. Both are idempotent:
# `make demo` trains for at most 2.5 minutes (--max-minutes, the hard cap) and takes about 3 in all.
# the venv is made once, and reinstalled only when pyproject.toml or this Makefile changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := runs/demo
# An editable install that puts the clone itself on the path (a .pth file): the default one finds
# lstmtext through an import hook that runs after the current folder, so from the folder that holds
# a clone named lstmtext/, that clone was imported as an empty namespace package instead.
EDITABLE := --config-settings editable_mode=compat

.PHONY: demo test dev lint clean compare-cells parity reproduce-ptb reproduce-ptb-stretch reproduce-wp memory see-inside ptb-cell recipes reproduce-awd ablate-awd notebook

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet $(EDITABLE) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet $(EDITABLE) -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/lstmtext train corpora/tinyshakespeare.txt --out $(DEMO) --force \
		--epochs 4 --max-minutes 2.5 --sample-every 500 --seed 1
	@echo
	$(BIN)/lstmtext generate $(DEMO) --prompt "ROMEO:" --length 80 --seed 1 --temperature 0.8
	@echo
	$(BIN)/lstmtext eval $(DEMO) $(DEMO)/valid.txt

dev: $(VENV)/.installed-dev

test: $(VENV)/.installed-dev
	$(BIN)/ruff check lstmtext tests
	$(BIN)/python -m pytest

# While developing: every test but those that start lstmtext in processes of their own (MPI,
# faults, memory use: marked slow). `make test` runs them all.
.PHONY: test-fast
test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not slow"

# Issue #33: the lecture as a notebook. Writes notebooks/lstm_lecture.ipynb from its source (jupytext's
# percent format) with every output, about two minutes on 2 cores; `make test` runs it with small budgets.
$(VENV)/.installed-notebook: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet $(EDITABLE) -e '.[notebook]'
	touch $@
notebook: $(VENV)/.installed-notebook
	$(BIN)/python notebooks/run.py
	@echo "open it: $(BIN)/jupyter lab notebooks/lstm_lecture.ipynb"

# The five-cell table of docs/results.md (about 10 minutes on 2 cores).
compare-cells: $(VENV)/.installed
	$(BIN)/pip install --quiet $(EDITABLE) -e '.[plot]'
	mkdir -p runs
	bench/compare_cells.sh 2

# Speed against PyTorch, the table of docs/speed.md (bench/README.md; several minutes on 2 cores).
# A short rerun of some rows: make bench BENCH_ARGS="--quick --rows small,medium" BENCH_MPI_ARGS="--repeats 1"
# Then the MPI rows (bench/mpi.py): one process against `mpiexec -n 2`, the same run (about 7 minutes).
.PHONY: bench
bench: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.mpi $(BENCH_MPI_ARGS)

# Where one row's training step spends its time, phase by phase, against each phase's GEMM floor.
ROW ?= char
.PHONY: profile
profile: $(VENV)/.installed-dev
	$(BIN)/python -m bench.profile $(ROW)

# Issue #6: one PTB epoch through lstmtext and through PyTorch from the same initial weights.
# First both cells' first 20 steps in float64, loss by loss (the same arithmetic, to 1e-9). Then
# the epoch: the LSTM at Zaremba's lr 20 in float32, the GRU at lr 10 in float64, must end within 1%.
# The GRU's loss spikes early, and a spike turns any rounding difference into a percent by step
# 110, even in float64; in float32 it ended 1.14% apart, so float32 only reports (docs/results.md,
# "Same training as PyTorch"), as does the GRU at lr 20, whose runs spread wider still.
PTB ?= ../shared/data/ptb
parity: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/python tests/reference/parity.py --cell lstm --data $(PTB) --divergence 20 --dtype float64 --tolerance 1e-9
	$(BIN)/python tests/reference/parity.py --cell gru --data $(PTB) --divergence 20 --dtype float64 --tolerance 1e-9
	$(BIN)/python tests/reference/parity.py --cell lstm --data $(PTB)
	$(BIN)/python tests/reference/parity.py --cell gru --data $(PTB) --lr 10 --dtype float64
	-$(BIN)/python tests/reference/parity.py --cell gru --data $(PTB) --lr 10
	-$(BIN)/python tests/reference/parity.py --cell gru --data $(PTB)

# Issue #31: AWD-LSTM's parts on PTB in a 2-hour budget, the test text scored plainly, with dynamic
# evaluation and with the cache (bench/awd.py); ablate-awd takes each part out in turn, at a shorter budget.
# The 2 hours halve the paper's weight drop and embedding dropout (AWD_ALSO, flags after the recipe's):
# at 40 minutes taking either out gained 7-11 in validation perplexity (docs/results.md, "The ablation
# at 40 minutes"), and 2 hours are 21 epochs where AWD-LSTM's strengths were set for hundreds.
AWD_MINUTES ?= 40
AWD_ALSO ?= --weight-drop 0.25 --embed-dropout 0.05
reproduce-awd: $(VENV)/.installed
	$(BIN)/python -m bench.awd --minutes 120 --also="$(AWD_ALSO)" --ptb $(PTB) --out runs/awd --resume
ablate-awd: $(VENV)/.installed
	$(BIN)/python -m bench.awd --runs ablation --minutes $(AWD_MINUTES) --ptb $(PTB) --out runs/awd-ablation --resume

# Issue #6: Zaremba et al. 2014, small config (their lr 1 / clip 5 on a summed loss = our lr 20 /
# clip 0.25 on a per-token mean; see docs/training.md "Loss scale"). Not in CI: about 40 minutes on 2 cores.
# --threads 2: a fixed count makes the run repeatable to the bit (the tuner's choice changes float32 sums).
PTB_RUN ?= runs/ptb-small
reproduce-ptb: $(VENV)/.installed
	@start=$$(date +%s); \
	$(BIN)/lstmtext train $(PTB)/train.txt --valid $(PTB)/valid.txt --out $(PTB_RUN) --force \
		--tokenizer word --word-split whitespace --vocab-size 10000 --embed 200 --hidden 200 --layers 2 --dropout 0 \
		--init uniform --init-scale 0.1 --batch-size 20 --bptt 20 --optimizer sgd --lr 20 --clip 0.25 \
		--schedule step --lr-decay 0.5 --decay-after 4 --reset-state 0 --rollback 0 --plateau 0 --epochs 13 --seed 1 --threads 2 && \
	$(BIN)/lstmtext eval $(PTB_RUN) $(PTB)/test.txt --batch-size 1 --bptt 20 && \
	echo "wall time: $$(( $$(date +%s) - start )) s"

# Issue #6, stretch: the best PTB model within a wall-clock budget (at most 2 hours), with the
# options users have: a tied 2-layer LSTM, dropout, bptt 35, full lr for a few epochs and then a
# steady decay, with the epoch count chosen so that the schedule ends inside the budget
# (--max-minutes is only the safety stop). docs/results.md, "Penn Treebank". The 22-minute run of
# 2026-11-24 was PTB_SIZE=256 PTB_DROPOUT=0.3 PTB_DECAY=0.5 PTB_DECAY_AFTER=4 PTB_EPOCHS=0 PTB_MINUTES=22.
PTB_STRETCH_RUN ?= runs/ptb-stretch
PTB_SIZE ?= 512
PTB_DROPOUT ?= 0.4
PTB_DECAY ?= 0.6
PTB_DECAY_AFTER ?= 6
PTB_EPOCHS ?= 15
PTB_MINUTES ?= 115
reproduce-ptb-stretch: $(VENV)/.installed
	@start=$$(date +%s); \
	$(BIN)/lstmtext train $(PTB)/train.txt --valid $(PTB)/valid.txt --out $(PTB_STRETCH_RUN) --force \
		--tokenizer word --word-split whitespace --vocab-size 10000 --embed $(PTB_SIZE) --hidden $(PTB_SIZE) --tie \
		--layers 2 --dropout $(PTB_DROPOUT) --init uniform --init-scale 0.1 --batch-size 20 --bptt 35 --optimizer sgd \
		--lr 20 --clip 0.25 --schedule step --lr-decay $(PTB_DECAY) --decay-after $(PTB_DECAY_AFTER) --reset-state 0 --rollback 0 --plateau 0 \
		--epochs $(PTB_EPOCHS) --max-minutes $(PTB_MINUTES) --seed 1 && \
	$(BIN)/lstmtext eval $(PTB_STRETCH_RUN) $(PTB)/test.txt --batch-size 1 --bptt 35 && \
	echo "wall time: $$(( $$(date +%s) - start )) s"

# Issue #6: Karpathy, Johnson & Fei-Fei 2015 on War and Peace, characters: first 80% train, next
# 10% valid, last 10% test, sequences of 100. LSTM, GRU and RNN of about the same parameter count
# (3.46M, 3.44M, 3.47M), each trained for its own budget in minutes on 2 cores, then scored on the
# test part. Not in CI. Test loss in nats/char is what `eval` prints as "nats per token".
WP ?= ../shared/data/warandpeace
WP_RUN ?= runs/warandpeace
# cell:hidden:init-scale:optimizer:lr:epochs-before-halving:minutes. The plain RNN needs a smaller
# start (PyTorch's 1/√H: at ±0.1 its 1040×1040 recurrent matrix has a spectral radius of 1.9) and
# Adam's small, bias-corrected first steps: RMSProp's running average starts at zero, so its first
# steps move every weight by several times lr, all in step, and the recurrence saturates (docs/results.md).
WP_CELLS ?= lstm:512:0.1:rmsprop:0.004:3:60 gru:592:0.1:rmsprop:0.002:2:35 rnn:1040:0.031:adam:0.0003:2:35
# Issue #16's cells, each alone with the LSTM's budget: WP_CELLS="mingru:1228:0.1:rmsprop:0.004:3:60" (2 x 1228
# has the LSTM's parameter count; 2 x 996 for minlstm; slstm 2 x 512 has exactly the LSTM's shapes).
reproduce-wp: $(VENV)/.installed
	mkdir -p $(WP_RUN)
	$(BIN)/python -c 'import sys; t = open(sys.argv[1], encoding="utf-8").read(); n = len(t); \
		cut = {"train": (0, n * 8 // 10), "valid": (n * 8 // 10, n * 9 // 10), "test": (n * 9 // 10, n)}; \
		[open(f"{sys.argv[2]}/{k}.txt", "w", encoding="utf-8").write(t[a:b]) for k, (a, b) in cut.items()]; \
		print(f"{n:,} characters split 80/10/10 into {sys.argv[2]}")' $(WP)/input.txt $(WP_RUN)
	@for spec in $(WP_CELLS); do set -- $$(echo $$spec | tr : ' '); \
		start=$$(date +%s); \
		$(BIN)/lstmtext train $(WP_RUN)/train.txt --valid $(WP_RUN)/valid.txt --out $(WP_RUN)/$$1 --force \
			--tokenizer char --cell $$1 --embed 128 --hidden $$2 --layers 2 --dropout 0 --init uniform --init-scale $$3 \
			--batch-size 50 --bptt 100 --optimizer $$4 --lr $$5 --schedule step --lr-decay 0.5 --decay-after $$6 \
			--reset-state 0 --rollback 0 --plateau 0 \
			--clip 1 --epochs 0 --max-minutes $$7 --seed 1 && \
		$(BIN)/lstmtext eval $(WP_RUN)/$$1 $(WP_RUN)/test.txt --batch-size 10 --bptt 100 && \
		echo "$$1 wall time: $$(( $$(date +%s) - start )) s" || exit 1; \
	done

# Issue #19: long-range dependencies (cue, filler, "says", an answer set by the cue), a family of five
# generators (bench/memory.py SPECS: basic, cues20, rich, markov, punct; 5-20 cues, 8-250 filler words,
# gaps up to 100, some with filler before the cue). The LSTM and the RNN are trained on each through the
# CLI with three seeds, beside PyTorch's nn.LSTM (its default init) on the same data, and scored by
# greedy accuracy per gap through lstmtext.load + generate, from a fresh state and in context. PyTorch
# goes first and is scored after every epoch; lstmtext's cells then train for as many epochs as PyTorch's
# slowest seed needed to reach 0.95 at every gap from a fresh state (the generator's own epochs when a
# seed never did; --own-epochs always). A measurement, not a test: at most about 1¾ hours
# on 2 cores, an estimate (2026-12-02 per-run seconds for 8 epochs of 900k words, LSTM 100 s, RNN 29 s,
# PyTorch 42 s, scaled by each generator's epochs; about 4½ hours with --cells rnn,gru,lstm,peephole,cifg).
# A shorter run: make memory MEMORY_ARGS="--generators basic --cells lstm --seeds 1 --args '--init uniform'"
# At the size the defaults choose (lstmtext with no size or training flags, PyTorch at that shape, stopped at
# its first epoch at 0.95): make memory MEMORY_ARGS="--defaults --generators markov --cells lstm --seeds 1,2,3"
MEMORY_ARGS ?= --cells lstm,rnn --seeds 1,2,3
memory: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/python -m bench.memory --torch $(MEMORY_ARGS)

# Which training recipe should be the default: the defaults, the old defaults (Zaremba's SGD recipe on
# words) and a small grid (bench/recipes.py GRID), each trained through the CLI for the same wall-clock
# budgets on corpora of different kinds (prose, Shakespeare, man pages, Python code, changelogs; built
# once under runs/recipes/corpora/), scored in bits per byte on the same held-out text. A measurement,
# not a test: corpora x recipes x budgets x minutes, 6 x 11 x (2 + 10 + 60) minutes, about 80 hours on
# 2 cores. A short run (about 45 minutes): make recipes RECIPES_ARGS="--budgets 2 --recipes default,old,bpe"
# Results are appended to runs/recipes/results.jsonl as they come; RECIPES_ARGS="... --resume" goes on.
recipes: $(VENV)/.installed
	$(BIN)/python -m bench.recipes $(RECIPES_ARGS)

# Issue #16, time to quality: another cell on Penn Treebank with the shape and the wall-clock budget of
# `make reproduce-ptb`'s LSTM (2 x 200, no dropout, about 35 minutes of training), then the test
# score. The cells without W_h stall at SGD lr 20 (training perplexity near 780 after 400 steps
# against the LSTM's 506), so they get Adam 0.002, halved each epoch after the fourth.
PTB_CELL ?= mingru
PTB_CELL_ARGS ?= --optimizer adam --lr 0.002 --clip 0.25 --schedule step --lr-decay 0.5 --decay-after 4
PTB_CELL_MINUTES ?= 35
PTB_CELL_EPOCHS ?= 0
PTB_CELL_RUN ?= runs/ptb-$(PTB_CELL)
ptb-cell: $(VENV)/.installed
	@start=$$(date +%s); \
	$(BIN)/lstmtext train $(PTB)/train.txt --valid $(PTB)/valid.txt --out $(PTB_CELL_RUN) --force \
		--tokenizer word --word-split whitespace --vocab-size 10000 --embed 200 --hidden 200 --layers 2 --dropout 0 \
		--cell $(PTB_CELL) --init uniform --init-scale 0.1 --reset-state 0 --rollback 0 --plateau 0 --batch-size 20 --bptt 20 $(PTB_CELL_ARGS) \
		--epochs $(PTB_CELL_EPOCHS) --max-minutes $(PTB_CELL_MINUTES) --seed 1 && \
	$(BIN)/lstmtext eval $(PTB_CELL_RUN) $(PTB)/test.txt --batch-size 1 --bptt 20 && \
	echo "wall time: $$(( $$(date +%s) - start )) s"

# Issue #15: docs/see-inside.md "See inside". An RNN, a GRU and an LSTM trained the same way (characters of the
# bundled corpus, 2 x 256, PyTorch's init, Adam, the same number of epochs), then: how far back each
# one's gradient reaches (one picture), the LSTM's inspect page with its pictures, and the three runs'
# curves. About 10 minutes on 2 cores. INSIDE_EPOCHS=1 for a quicker look. With the default init
# (uniform ±0.1) this LSTM starts slowly: 1.80 valid nats/char after 3 epochs, behind the RNN's 1.70.
INSIDE_RUN ?= runs/inside
INSIDE_EPOCHS ?= 3
see-inside: $(VENV)/.installed
	$(BIN)/pip install --quiet $(EDITABLE) -e '.[plot]'
	@for cell in rnn gru lstm; do \
		$(BIN)/lstmtext train corpora/tinyshakespeare.txt --out $(INSIDE_RUN)/$$cell --force --tokenizer char \
			--cell $$cell --embed 64 --hidden 256 --layers 2 --dropout 0 --init torch --optimizer adam --lr 0.002 --clip 1 \
			--schedule constant --reset-state 0 --rollback 0 --plateau 0 --batch-size 32 --bptt 100 --epochs $(INSIDE_EPOCHS) --seed 1 || exit 1; \
	done
	$(BIN)/lstmtext inspect $(INSIDE_RUN)/lstm $(INSIDE_RUN)/lstm/valid.txt --gradient \
		--vs $(INSIDE_RUN)/gru --vs $(INSIDE_RUN)/rnn --out $(INSIDE_RUN)/gradient.png
	$(BIN)/lstmtext inspect $(INSIDE_RUN)/lstm $(INSIDE_RUN)/lstm/valid.txt --html $(INSIDE_RUN)/lstm.html \
		--pictures $(INSIDE_RUN)/lstm-pictures
	$(BIN)/lstmtext plot $(INSIDE_RUN)/rnn $(INSIDE_RUN)/gru $(INSIDE_RUN)/lstm --out $(INSIDE_RUN)/curves.png

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check lstmtext tests

clean:
	rm -rf $(VENV) runs .pytest_cache
