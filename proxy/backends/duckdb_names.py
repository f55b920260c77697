"""PostgreSQL's output column names and CREATE TABLE AS tag for statements run on DuckDB.

DuckDB names an unaliased select-list item after its own rendering of the
expression (`count_star()`, `(a + 1)`, `CAST(x AS INTEGER)`); PostgreSQL
names it by FigureColname (src/backend/parser/parse_target.c) over the raw
parse tree: a column reference gives its last name, a function call its
function name, a cast the inner expression's name or else the type name, CASE
its ELSE branch's name or else `case`, and anything else `?column?`.

The SQL sent to DuckDB is never rewritten for this. The statement is read with
PostgreSQL's own parser (libpg_query via pglast, the raw tree FigureColname
works on) into a `Shape`: one entry per output item of the select list (or
RETURNING), and only the description's names are replaced, where the counts
match. A set operation is named by its leftmost branch, VALUES `column1..n`.
A star over a subquery, VALUES or CTE is expanded from its select list; over
a table, view or function its width is unknown and DuckDB's names stay (they
are the catalog's column names, as PostgreSQL's are), the items before it
placed from the front and those after it from the back. A statement
PostgreSQL's parser rejects (DuckDB-only syntax) keeps all of DuckDB's names,
as does anything holding DuckDB's star-like COLUMNS()/UNPACK().

The names are PostgreSQL 15's (the server version sqlgate announces): `SELECT
true` is `?column?` there, not `bool` as in 14.

Shapes are cached by exact text, then by the numeric-literal-insensitive
fingerprint of policy.fingerprint (numeric literal values never name a column),
so a repeated statement costs a dictionary look-up, not a parse.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from pglast import parser as pgparser

from policy.fingerprint import fingerprint

__all__ = ["ctas_tag", "pg_column_names", "shape_of"]

QCOLUMN = "?column?"
MAX_CACHED_CHARS = 8_192  # longer texts are parsed each time (rare; running them dwarfs the parse)
_EXACT_ENTRIES = 4_096
_FP_ENTRIES = 4_096


class _Star:
    """A select-list item of unknown width whose names DuckDB already gives right."""

    def __repr__(self) -> str:
        return "STAR"


STAR: Any = _Star()
_UNKNOWN: Any = object()  # a name PostgreSQL would derive from a catalog we cannot see


class Shape:
    """What a statement's output looks like to PostgreSQL's parser.

    items: one per output item: its PostgreSQL name, None (keep DuckDB's: one
           column), or STAR (keep DuckDB's: any number of columns); None when
           the statement has no select list or RETURNING to name.
    ctas:  it is CREATE TABLE ... AS; skip_data: ... WITH NO DATA.
    """

    __slots__ = ("ctas", "fixed", "items", "skip_data")

    def __init__(self, items: tuple[Any, ...] | None, ctas: bool = False, skip_data: bool = False) -> None:
        self.items = items
        self.fixed = sum(1 for i in items if i is not STAR) if items is not None else 0
        self.ctas = ctas
        self.skip_data = skip_data

    def __repr__(self) -> str:
        return f"Shape({self.items!r}, ctas={self.ctas}, skip_data={self.skip_data})"

    def rename(self, names: Sequence[str]) -> list[str]:
        """`names` (DuckDB's, one per output column) with PostgreSQL's where known."""
        items = self.items
        out = list(names)
        if not items:
            return out
        n = len(out)
        if self.fixed == len(items):  # no star: one column per item, or we do not know which is which
            if n == len(items):
                for i, name in enumerate(items):
                    if name is not None:
                        out[i] = name
            return out
        if n < self.fixed:
            return out
        for i, name in enumerate(items):  # items before the first star, from the front
            if name is STAR:
                break
            if name is not None:
                out[i] = name
        for i, name in enumerate(reversed(items)):  # items after the last star, from the back
            if name is STAR:
                break
            if name is not None:
                out[n - 1 - i] = name
        return out  # items between two stars: their position is unknown, DuckDB's names stay


_NOTHING = Shape(None)


# --- FigureColname ------------------------------------------------------------------------------

_SVF = {
    "SVFOP_CURRENT_DATE": "current_date", "SVFOP_CURRENT_TIME": "current_time",
    "SVFOP_CURRENT_TIME_N": "current_time", "SVFOP_CURRENT_TIMESTAMP": "current_timestamp",
    "SVFOP_CURRENT_TIMESTAMP_N": "current_timestamp", "SVFOP_LOCALTIME": "localtime",
    "SVFOP_LOCALTIME_N": "localtime", "SVFOP_LOCALTIMESTAMP": "localtimestamp",
    "SVFOP_LOCALTIMESTAMP_N": "localtimestamp", "SVFOP_CURRENT_ROLE": "current_role",
    "SVFOP_CURRENT_USER": "current_user", "SVFOP_USER": "user", "SVFOP_SESSION_USER": "session_user",
    "SVFOP_CURRENT_CATALOG": "current_catalog", "SVFOP_CURRENT_SCHEMA": "current_schema",
}
_XML = {
    "IS_XMLCONCAT": "xmlconcat", "IS_XMLELEMENT": "xmlelement", "IS_XMLFOREST": "xmlforest",
    "IS_XMLPARSE": "xmlparse", "IS_XMLPI": "xmlpi", "IS_XMLROOT": "xmlroot", "IS_XMLSERIALIZE": "xmlserialize",
}
_JSON_FUNC = {"JSON_EXISTS_OP": "json_exists", "JSON_QUERY_OP": "json_query", "JSON_VALUE_OP": "json_value"}
# Nodes that name themselves like a function (PostgreSQL 16+ SQL/JSON and MERGE syntax).
_FIXED = {
    "GroupingFunc": "grouping", "A_ArrayExpr": "array", "RowExpr": "row", "CoalesceExpr": "coalesce",
    "XmlSerialize": "xmlserialize", "JsonParseExpr": "json", "JsonScalarExpr": "json_scalar",
    "JsonSerializeExpr": "json_serialize", "JsonObjectConstructor": "json_object",
    "JsonArrayConstructor": "json_array", "JsonArrayQueryConstructor": "json_array",
    "JsonObjectAgg": "json_objectagg", "JsonArrayAgg": "json_arrayagg", "MergeSupportFunc": "merge_action",
}
# DuckDB expressions that expand into several columns (PostgreSQL would see a function call).
_DUCKDB_STARS = frozenset({"columns", "unpack"})


def _last_string(items: list[Any]) -> str | None:
    name = None
    for item in items:
        if "String" in item:
            name = item["String"].get("sval", "")
    return name


def _figure(node: Any, ctes: _Scope) -> tuple[int, Any]:
    """FigureColnameInternal: (strength, name); strength 0 = no name, 1 = second best, 2 = good."""
    if not isinstance(node, dict) or len(node) != 1:
        return 0, None
    ((tag, n),) = node.items()
    if tag == "ColumnRef":
        name = _last_string(n.get("fields", []))
        return (2, name) if name is not None else (0, None)
    if tag == "A_Indirection":
        name = _last_string(n.get("indirection", []))
        return (2, name) if name is not None else _figure(n.get("arg"), ctes)
    if tag == "FuncCall":
        return 2, _last_string(n["funcname"])
    if tag == "A_Expr":
        kind = n.get("kind")
        if kind == "AEXPR_NULLIF":
            return 2, "nullif"
        if kind == "AEXPR_PAREN":
            return _figure(n.get("lexpr"), ctes)
        return 0, None
    if tag == "TypeCast":
        strength, name = _figure(n.get("arg"), ctes)
        if strength <= 1 and n.get("typeName"):
            return 1, _last_string(n["typeName"]["names"])
        return strength, name
    if tag == "CollateClause":
        return _figure(n.get("arg"), ctes)
    if tag == "SubLink":
        kind = n.get("subLinkType")
        if kind == "EXISTS_SUBLINK":
            return 2, "exists"
        if kind == "ARRAY_SUBLINK":
            return 2, "array"
        if kind == "EXPR_SUBLINK":  # the subquery's first output column's name
            items = _select_items(n.get("subselect"), ctes)
            first = items[0] if items else None
            return 2, (first if isinstance(first, str) else _UNKNOWN)
        return 0, None
    if tag == "CaseExpr":
        strength, name = _figure(n.get("defresult"), ctes)
        return (1, "case") if strength <= 1 else (strength, name)
    if tag in _FIXED:
        return 2, _FIXED[tag]
    if tag == "MinMaxExpr":
        op = n.get("op")
        return (2, "greatest") if op == "IS_GREATEST" else (2, "least") if op == "IS_LEAST" else (0, None)
    if tag == "SQLValueFunction":
        name = _SVF.get(n.get("op"))
        return (2, name) if name else (0, None)
    if tag == "XmlExpr":
        name = _XML.get(n.get("op"))
        return (2, name) if name else (0, None)
    if tag == "JsonFuncExpr":
        name = _JSON_FUNC.get(n.get("op"))
        return (2, name) if name else (0, None)
    return 0, None


# --- select lists, stars, FROM items and CTEs -----------------------------------------------------

# The CTEs a query can see: name -> (its CommonTableExpr node, the CTEs its own query sees).
_Scope = dict[str, tuple[dict[str, Any], Any]]
_UNKNOWN_WIDTH = (STAR,)


def _has_duckdb_star(node: Any) -> bool:
    if isinstance(node, dict):
        fc = node.get("FuncCall")
        if fc is not None and len(fc["funcname"]) == 1 and _last_string(fc["funcname"]) in _DUCKDB_STARS:
            return True
        return any(_has_duckdb_star(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_duckdb_star(v) for v in node)
    return False


def _star(node: Any) -> tuple[str, ...] | None:
    """For a star item (`*`, `t.*`, `s.t.*`, `(x).*`) the names before the star; else None."""
    if not isinstance(node, dict) or len(node) != 1:
        return None
    ((tag, n),) = node.items()
    if tag == "ColumnRef":
        fields = n.get("fields", [])
        if fields and "A_Star" in fields[-1]:
            return tuple(f["String"].get("sval", "") if "String" in f else "" for f in fields[:-1])
    if tag == "A_Indirection":
        ind = n.get("indirection", [])
        if ind and "A_Star" in ind[-1]:
            return ("",)  # (x).*: a composite value's fields
    return None


def _with(node: dict[str, Any], ctes: _Scope) -> _Scope:
    """`ctes` plus the WITH clause of `node` (each CTE sees the ones before it; all of them if RECURSIVE)."""
    wc = node.get("withClause")
    if not wc:
        return ctes
    scope = dict(ctes)
    recursive = bool(wc.get("recursive"))
    for c in wc.get("ctes", []):
        cte = c.get("CommonTableExpr", {})
        # RECURSIVE: None = the scope where it is read (its names come from its leftmost branch).
        scope[cte.get("ctename", "")] = (cte, None if recursive else dict(scope))
    return scope


def _aliased(items: tuple[Any, ...] | None, colnames: list[Any] | None) -> tuple[Any, ...]:
    """A relation's column names after `alias(c1, c2, ...)` renames its first columns."""
    if not items:
        return _UNKNOWN_WIDTH
    if not colnames:
        return items
    names = [c["String"].get("sval", "") for c in colnames if "String" in c]
    if STAR in items[: len(names)]:
        return _UNKNOWN_WIDTH  # which columns the aliases fall on is unknown: DuckDB applies them itself
    return tuple(names) + items[len(names):]


def _relation_items(item: Any, ctes: _Scope) -> tuple[Any, ...]:
    """The output names of one FROM item, as `*` expands it (STAR where a catalog would be needed)."""
    if not isinstance(item, dict) or len(item) != 1:
        return _UNKNOWN_WIDTH
    ((tag, n),) = item.items()
    alias = n.get("alias") or {}
    if tag == "RangeSubselect":
        return _aliased(_select_items(n.get("subquery"), ctes), alias.get("colnames"))
    if tag == "RangeVar":
        found = None if n.get("schemaname") or n.get("catalogname") else ctes.get(n.get("relname", ""))
        if found is None:
            return _UNKNOWN_WIDTH  # a table or view: DuckDB names its columns as its catalog has them
        cte, seen = found
        items = _aliased(_select_items(cte.get("ctequery"), seen if seen is not None else ctes),
                         cte.get("aliascolnames"))
        return _aliased(items, alias.get("colnames"))
    if tag == "JoinExpr":
        if n.get("usingClause") or n.get("isNatural"):
            return _UNKNOWN_WIDTH  # merged USING columns come first: left to DuckDB
        items = _relation_items(n.get("larg"), ctes) + _relation_items(n.get("rarg"), ctes)
        return _aliased(items, alias.get("colnames"))
    return _UNKNOWN_WIDTH  # functions, VALUES lists in FROM without a subquery, table samples, ...


def _find_relation(item: Any, name: str) -> Any:
    """The FROM item `name.*` refers to (by alias, else by relation name), or None."""
    if not isinstance(item, dict) or len(item) != 1:
        return None
    ((tag, n),) = item.items()
    if tag == "JoinExpr" and not n.get("alias"):
        return _find_relation(n.get("larg"), name) or _find_relation(n.get("rarg"), name)
    alias = (n.get("alias") or {}).get("aliasname")
    if alias is not None:
        return item if alias == name else None
    if tag == "RangeVar" and n.get("relname") == name:
        return item
    return None


def _expand(prefix: tuple[str, ...], from_clause: list[Any] | None, ctes: _Scope) -> tuple[Any, ...]:
    if not from_clause:
        return _UNKNOWN_WIDTH
    if not prefix:
        out: tuple[Any, ...] = ()
        for item in from_clause:
            out += _relation_items(item, ctes)
        return out
    if len(prefix) == 1 and prefix[0]:
        for item in from_clause:
            found = _find_relation(item, prefix[0])
            if found is not None:
                return _relation_items(found, ctes)
    return _UNKNOWN_WIDTH


def _target_items(targets: list[Any], from_clause: list[Any] | None, ctes: _Scope) -> tuple[Any, ...]:
    items: list[Any] = []
    for t in targets:
        rt = t.get("ResTarget", {})
        val = rt.get("val")
        if _has_duckdb_star(val):
            items.append(STAR)
            continue
        if rt.get("name"):
            items.append(rt["name"])
            continue
        prefix = _star(val)
        if prefix is not None:
            items.extend(_expand(prefix, from_clause, ctes))
            continue
        strength, name = _figure(val, ctes)
        items.append(None if name is _UNKNOWN else name if strength else QCOLUMN)
    return tuple(items)


def _select_items(node: Any, ctes: _Scope) -> tuple[Any, ...] | None:
    """A SELECT's output items; a set operation is named by its leftmost branch, VALUES by position."""
    if isinstance(node, dict) and "SelectStmt" in node:
        node = node["SelectStmt"]
    if not isinstance(node, dict):
        return None
    ctes = _with(node, ctes)
    while node.get("op", "SETOP_NONE") != "SETOP_NONE":
        node = node.get("larg")
        if isinstance(node, dict) and "SelectStmt" in node:
            node = node["SelectStmt"]
        if not isinstance(node, dict):
            return None
        ctes = _with(node, ctes)
    values = node.get("valuesLists")
    if values:
        first = values[0].get("List", {}).get("items", [])
        return tuple(f"column{i}" for i in range(1, len(first) + 1))
    targets = node.get("targetList")
    return _target_items(targets, node.get("fromClause"), ctes) if targets else None


def _returning(stmt: dict[str, Any]) -> tuple[Any, ...] | None:
    targets = stmt.get("returningList")
    if targets is None and isinstance(stmt.get("returningClause"), dict):  # PostgreSQL 18's parse tree
        targets = stmt["returningClause"].get("exprs")
    return _target_items(targets, None, _with(stmt, {})) if targets else None


def _shape_of_tree(stmt: dict[str, Any]) -> Shape:
    ((tag, n),) = stmt.items()
    if tag == "SelectStmt":
        if n.get("intoClause"):
            return _NOTHING
        return Shape(_select_items(n, {}))
    if tag in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
        return Shape(_returning(n))
    if tag == "CreateTableAsStmt" and n.get("objtype") == "OBJECT_TABLE":
        return Shape(None, ctas=True, skip_data=bool(n.get("into", {}).get("skipData")))
    return _NOTHING


def _parse_shape(sql: str) -> Shape:
    try:
        tree = json.loads(pgparser.parse_sql_json(sql))
        stmts = tree.get("stmts", [])
        if len(stmts) != 1:
            return _NOTHING
        return _shape_of_tree(stmts[0]["stmt"])
    except Exception:  # noqa: BLE001 - PostgreSQL's parser rejects it (DuckDB syntax): DuckDB's names stay
        return _NOTHING


# --- caches ---------------------------------------------------------------------------------------

_fp_cache: OrderedDict[Any, Shape] = OrderedDict()
_fp_lock = threading.Lock()


@lru_cache(maxsize=_EXACT_ENTRIES)
def _cached_shape(sql: str) -> Shape:
    fp = fingerprint(sql, "postgres")
    if fp is None:
        return _parse_shape(sql)
    with _fp_lock:
        shape = _fp_cache.get(fp.key)
        if shape is not None:
            _fp_cache.move_to_end(fp.key)
            return shape
    shape = _parse_shape(sql)
    with _fp_lock:
        _fp_cache[fp.key] = shape
        if len(_fp_cache) > _FP_ENTRIES:
            _fp_cache.popitem(last=False)
    return shape


def shape_of(sql: str) -> Shape:
    """The statement's Shape, cached by text (and by fingerprint behind that)."""
    if len(sql) > MAX_CACHED_CHARS:
        return _parse_shape(sql)
    return _cached_shape(sql)


def pg_column_names(sql: str, names: Sequence[str]) -> list[str]:
    """The output column names PostgreSQL would give `sql`, from DuckDB's `names` for it."""
    return shape_of(sql).rename(names)


def ctas_tag(sql: str, rows: Sequence[Sequence[Any]]) -> str | None:
    """PostgreSQL's tag for a CREATE TABLE that DuckDB answered with `rows` (its Count
    column): for CREATE TABLE ... AS `SELECT n`, or `CREATE TABLE AS` when nothing was
    filled (WITH NO DATA, or IF NOT EXISTS found the table: no Count row). None for a
    plain CREATE TABLE. DuckDB gives a Count row only for CREATE TABLE ... AS, which
    also covers its own syntax PostgreSQL's parser rejects (CREATE OR REPLACE TABLE)."""
    shape = shape_of(sql)
    if shape.ctas:
        return "CREATE TABLE AS" if shape.skip_data or not rows else f"SELECT {rows[0][0]}"
    return f"SELECT {rows[0][0]}" if rows else None
