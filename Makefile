# Two commands on a fresh clone: `make demo` and `make test`. Both are idempotent:
# the venv is made once, and reinstalled only when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := runs/demo

.PHONY: demo test dev lint clean

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
	$(BIN)/lstmtext generate $(DEMO) --prompt "ROMEO:" --length 80 --seed 1
	@echo
	$(BIN)/lstmtext eval $(DEMO) $(DEMO)/valid.txt

dev: $(VENV)/.installed-dev

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check lstmtext tests

clean:
	rm -rf $(VENV) runs .pytest_cache
