# One command each, from a fresh clone:  `make demo`  and  `make test`.
# Both create the virtual environment in .venv and install dualline into it first.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin

.PHONY: demo test bench bench-scale clean

$(BIN)/.installed: pyproject.toml setup.py records/_sqlite_rows.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# Bytecode for dualline's own packages, as a wheel install writes it (an editable install
	# does not, and with PYTHONDONTWRITEBYTECODE set every command compiled them at start-up).
	$(BIN)/python -m compileall -q connectors mappings records sync web
	touch $@

demo: $(BIN)/.installed
	$(BIN)/dualline demo

test: $(BIN)/.installed
	bash tests/web/browser/install_chromium.sh
	$(BIN)/python -m pytest -n auto --dist loadfile

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.sync_bench --staff 100000

# The 1 000 000-staff benchmark with its yardsticks (dlt, the bare floor) on SQLite; for
# PostgreSQL add  ARGS=--database=postgresql://postgres@127.0.0.1:5432/dualline_scale
bench-scale: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.scale_bench $(ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache
