# The two commands a newcomer needs: `make serve` and `make test`.
# Each creates .venv and installs what it needs on first use.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: serve test bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

serve: $(VENV)/.installed
	$(VENV)/bin/sqlgate serve $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest $(ARGS)

bench: $(VENV)/.installed
	$(PY) -m benchmarks $(NAME)
