# Two commands on a fresh clone: `make demo` and `make test`. Both are idempotent:
# the venv is made once, and reinstalled only when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := runs/demo

.PHONY: demo test dev lint clean compare-cells parity reproduce-ptb

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/lstmtext train corpora/tinyshakespeare.txt --out $(DEMO) --force \
		--epochs 3 --max-steps 1500 --seed 1
	@echo
	$(BIN)/lstmtext generate $(DEMO) --prompt "ROMEO:" --length 80 --seed 1 --temperature 0.8
	@echo
	$(BIN)/lstmtext eval $(DEMO) $(DEMO)/valid.txt

dev: $(VENV)/.installed-dev

test: $(VENV)/.installed-dev
	$(BIN)/ruff check lstmtext tests
	$(BIN)/python -m pytest

# The README's five-cell table (about 10 minutes on 2 cores).
compare-cells: $(VENV)/.installed
	mkdir -p runs
	bench/compare_cells.sh 2

# Speed against PyTorch, the README's speed table (bench/README.md; several minutes on 2 cores).
# A short rerun of some rows: make bench BENCH_ARGS="--quick --rows small,medium"
.PHONY: bench
bench: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Issue #6: one PTB epoch through lstmtext and through PyTorch from the same initial weights.
PTB ?= ../shared/data/ptb
parity: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/python tests/reference/parity.py --cell lstm --data $(PTB)
	$(BIN)/python tests/reference/parity.py --cell gru --data $(PTB)

# Issue #6: Zaremba et al. 2014, small config (their lr 1 / clip 5 on a summed loss = our lr 20 /
# clip 0.25 on a per-token mean; see README "Loss scale"). Not in CI: about 40 minutes on 2 cores.
PTB_RUN ?= runs/ptb-small
reproduce-ptb: $(VENV)/.installed
	@start=$$(date +%s); \
	$(BIN)/lstmtext train $(PTB)/train.txt --valid $(PTB)/valid.txt --out $(PTB_RUN) --force \
		--word-split whitespace --vocab-size 10000 --embed 200 --hidden 200 --layers 2 --dropout 0 \
		--init-scale 0.1 --batch-size 20 --bptt 20 --lr 20 --clip 0.25 --lr-decay 0.5 --decay-after 4 \
		--epochs 13 --seed 1 && \
	$(BIN)/lstmtext eval $(PTB_RUN) $(PTB)/test.txt --batch-size 1 --bptt 20 && \
	echo "wall time: $$(( $$(date +%s) - start )) s"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check lstmtext tests

clean:
	rm -rf $(VENV) runs .pytest_cache
