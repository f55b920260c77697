"""Keeps the code's shape honest: the layering STYLE.md asks for, one error
shape for every error code, and the packages being this project's own."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import branching
import policy
import proxy
from proxy import errors

ROOT = Path(__file__).resolve().parents[1]
# What `policy` and `branching` may import from `proxy`: leaf modules only.
PROXY_LEAVES = {"proxy.errors", "proxy.result", "proxy.trace", "proxy.backends.base", "proxy.statement",
                "proxy.db_errors", "proxy.sql_filters", "proxy.backends.pg_simple",
                "proxy.backends.duckdb_params",  # checkpoints bind a statement's values as it binds them
                "proxy.backends.duckdb_result"}  # and answer UPDATE ... RETURNING as it answers


def imports_of(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                if node.module in ("proxy", "policy", "branching"):  # `from proxy import errors`
                    names.discard(node.module)
                    names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("package, forbidden", [("policy", "branching"), ("branching", "policy")])
def test_policy_and_branching_stay_apart(package: str, forbidden: str) -> None:
    for module, names in imports_of(package).items():
        assert not any(n == forbidden or n.startswith(forbidden + ".") for n in names), module


@pytest.mark.parametrize("package", ["policy", "branching"])
def test_only_leaf_modules_of_proxy_are_imported(package: str) -> None:
    for module, names in imports_of(package).items():
        from_proxy = {n for n in names if n == "proxy" or n.startswith("proxy.")}
        assert from_proxy <= PROXY_LEAVES, (module, from_proxy - PROXY_LEAVES)


def test_packages_are_this_projects_own() -> None:
    """The generic top-level names must resolve to this checkout, not to some installed namesake."""
    for package in (proxy, policy, branching):
        assert Path(package.__file__).resolve().parent.parent == ROOT


ERROR_CONSTRUCTORS = [
    obj for name, obj in inspect.getmembers(errors, inspect.isfunction)
    if obj.__module__ == errors.__name__ and inspect.signature(obj).return_annotation in ("SqlgateError",)
]


def sample_args(fn):  # type: ignore[no-untyped-def]
    values = {"limit": 10, "endpoints": ["GET /"], "position": 3}
    return [values.get(name, "x") for name in inspect.signature(fn).parameters]


@pytest.mark.parametrize("constructor", ERROR_CONSTRUCTORS, ids=lambda f: f.__name__)
def test_every_error_has_the_same_shape(constructor) -> None:  # type: ignore[no-untyped-def]
    error = constructor(*sample_args(constructor))
    body = error.to_json()
    assert list(body)[: len(errors.NEON_FIELDS)] == list(errors.NEON_FIELDS)
    assert set(body) >= {"reason", "next"}
    assert body["message"] and body["next"] and body["hint"], constructor.__name__
    assert len(body["code"]) == 5 and body["code"].isalnum()
    assert body["reason"].count(".") >= 1 or body["reason"] == "internal"
    assert 400 <= error.status < 600
    wire = error.wire_fields()
    assert wire["S"] == wire["V"] == "ERROR" and wire["C"] == body["code"] and wire["M"] == body["message"]
    assert "Next:" in wire["H"]


def test_every_error_constructor_is_covered() -> None:
    assert len(ERROR_CONSTRUCTORS) >= 20
