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

system-deps:
	@if [ ! -f /usr/share/java/postgresql.jar ]; then \
		echo "installing pgJDBC (libpostgresql-jdbc-java) for the JDBC tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libpostgresql-jdbc-java >/dev/null; \
	fi

test: $(VENV)/.installed system-deps
	$(PY) -m pytest $(ARGS)

bench: $(VENV)/.installed
	$(PY) -m benchmarks $(NAME)
