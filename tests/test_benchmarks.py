"""The benchmarks are not run in CI (they need minutes and an idle machine),
but each must at least start: this catches one rotting behind a change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

NAMES = sorted(p.stem for p in (Path(__file__).parents[1] / "benchmarks").glob("*.py")
               if p.stem not in ("__init__", "__main__", "baseline_http", "loadgen"))


def test_every_scenario_is_found() -> None:
    assert set(NAMES) >= {"http_overhead", "wire_overhead", "checkpoint_cost"}


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_starts(name: str) -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks", name, "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage" in out.stdout


def test_unknown_benchmark_lists_the_real_ones() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks", "nope"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "http_overhead" in out.stderr + out.stdout
