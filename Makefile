# One command each, from a fresh clone:  `make demo`  and  `make test`.
# Both create the virtual environment in .venv and install dualline into it first.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/dualline demo

test: $(BIN)/.installed
	bash tests/web/browser/install_chromium.sh
	$(BIN)/python -m pytest -n auto --dist loadfile

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.sync_bench --staff 100000

clean:
	rm -rf $(VENV) instance .pytest_cache
