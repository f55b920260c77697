"""pgbench through the wire front door on the PostgreSQL backend: -i, then
short runs in the simple, extended and prepared query modes."""


from __future__ import annotations

import subprocess

import pytest

from tests.support.wire import Wire


def pgbench(w: Wire, *args: str) -> subprocess.CompletedProcess[str]:
    env = w.psql_env()
    return subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(w.pg_port), "-U", "agent", *args, "main"],
                          env=env, text=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def initialised(wire_pg: Wire) -> Wire:
    # no "v" step: VACUUM cannot run in the transaction the pipeline wraps a write in (see report)
    r = pgbench(wire_pg, "-i", "-I", "dtgp", "-s", "1", "-q")
    assert r.returncode == 0, r.stderr + r.stdout
    return wire_pg


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_tpcb_like(initialised: Wire, mode: str) -> None:
    r = pgbench(initialised, "-M", mode, "-c", "4", "-t", "50", "-n")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "number of failed transactions: 0" in r.stdout
    assert "number of transactions actually processed: 200/200" in r.stdout


@pytest.mark.parametrize("mode", ["simple", "prepared"])
def test_pgbench_select_only(initialised: Wire, mode: str) -> None:
    r = pgbench(initialised, "-M", mode, "-S", "-c", "2", "-t", "50", "-n")
    assert r.returncode == 0, r.stderr + r.stdout
