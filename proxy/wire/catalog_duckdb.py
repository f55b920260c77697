"""psql's catalog queries (\\d, \\dt, \\dv, \\di, \\ds, \\d NAME, \\dn, \\l) answered on
DuckDB, whose own pg_catalog lacks much of what psql reads.

A query over pg_catalog is read with PostgreSQL's parser (pglast): which
catalog relations it reads, its output columns, and the relkinds, name
patterns and object oid it filters on. It is then rewritten into a DuckDB
query over duckdb_tables(), duckdb_columns(), ... that returns the same
columns; that query goes through the pipeline like any other read.
Queries this module does not recognise are left alone (None).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from proxy.pgtypes import ARRAY_OF, pg_type_for_duckdb  # noqa: F401 - documents where the type names come from

_CATALOG = frozenset({
    "pg_class", "pg_namespace", "pg_am", "pg_attribute", "pg_attrdef", "pg_index", "pg_constraint", "pg_database",
    "pg_policy", "pg_statistic_ext", "pg_publication", "pg_publication_rel", "pg_publication_namespace",
    "pg_inherits", "pg_trigger", "pg_rewrite", "pg_foreign_table", "pg_partitioned_table", "pg_sequence",
    "pg_collation", "pg_type", "pg_description", "pg_tablespace",
})
_NOTHING_HERE = frozenset({
    "pg_policy", "pg_statistic_ext", "pg_publication", "pg_publication_rel", "pg_publication_namespace",
    "pg_inherits", "pg_trigger", "pg_rewrite", "pg_foreign_table", "pg_partitioned_table", "pg_sequence",
})

# DuckDB type name -> what format_type() would print in PostgreSQL.
_TYPE_NAMES = {
    "BOOLEAN": "boolean", "TINYINT": "smallint", "SMALLINT": "smallint", "INTEGER": "integer", "BIGINT": "bigint",
    "HUGEINT": "numeric", "UTINYINT": "smallint", "USMALLINT": "integer", "UINTEGER": "bigint", "UBIGINT": "numeric",
    "FLOAT": "real", "DOUBLE": "double precision", "VARCHAR": "text", "BLOB": "bytea", "DATE": "date",
    "TIME": "time without time zone", "TIMESTAMP": "timestamp without time zone",
    "TIMESTAMP WITH TIME ZONE": "timestamp with time zone", "INTERVAL": "interval", "UUID": "uuid", "JSON": "json",
}
_TYPE_CASE = ("CASE " + " ".join(f"WHEN data_type = '{d}' THEN '{p}'" for d, p in _TYPE_NAMES.items())
              + " WHEN data_type LIKE 'DECIMAL(%'"
              + " THEN replace(replace(lower(data_type), 'decimal', 'numeric'), ' ', '')"
              + " ELSE lower(data_type) END")

# Key, foreign-key and check constraints as pg_constraint rows, named as PostgreSQL would name them
# (DuckDB keeps no names of its own): table_col_check, table_check1, ... The oid is the one DuckDB's
# own pg_get_constraintdef() reads; a key's index has the same oid.
_CONSTRAINTS = """(
  SELECT *, base || CASE WHEN nth > 1 THEN (nth - 1)::VARCHAR ELSE '' END AS conname FROM (
    SELECT *, row_number() OVER (PARTITION BY conrelid, base ORDER BY oid) AS nth FROM (
      SELECT c.table_oid * 1000000 + c.constraint_index AS oid, c.schema_oid AS connamespace, c.schema_name AS nspname,
             c.table_oid AS conrelid, c.table_name AS relname, t.table_oid AS confrelid,
             constraint_column_names AS cols, [i + 1 FOR i IN list_distinct(constraint_column_indexes)] AS conkey,
             CASE constraint_type WHEN 'PRIMARY KEY' THEN 'p' WHEN 'UNIQUE' THEN 'u' WHEN 'FOREIGN KEY' THEN 'f'
               ELSE 'c' END AS contype,
             c.table_name || CASE constraint_type WHEN 'PRIMARY KEY' THEN '_pkey'
               WHEN 'UNIQUE' THEN '_' || array_to_string(cols, '_') || '_key'
               WHEN 'FOREIGN KEY' THEN '_' || array_to_string(cols, '_') || '_fkey'
               ELSE CASE WHEN len(list_distinct(cols)) = 1 THEN '_' || cols[1] ELSE '' END || '_check' END AS base,
             CASE constraint_type WHEN 'CHECK' THEN 'CHECK ' || CASE WHEN starts_with(expression, '(')
                 THEN replace(expression, ' != ', ' <> ') ELSE '(' || replace(expression, ' != ', ' <> ') || ')' END
               ELSE constraint_type || ' (' || array_to_string(cols, ', ') || ')' || CASE constraint_type
                 WHEN 'FOREIGN KEY' THEN ' REFERENCES ' || referenced_table || '('
                   || array_to_string(referenced_column_names, ', ') || ')' ELSE '' END END AS condef
        FROM duckdb_constraints() c
        LEFT JOIN duckdb_tables() t ON t.database_name = c.database_name AND t.schema_name = c.schema_name
             AND t.table_name = c.referenced_table
       WHERE c.database_name = current_database() AND NOT starts_with(c.table_name, '__sqlgate_')
             AND constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY', 'CHECK')))
) AS constraints"""
# pg_constraint's own columns, for queries of it sqlgate does not know by shape.
_PG_CONSTRAINT = f"""(SELECT oid, conname, connamespace, contype, false AS condeferrable, false AS condeferred,
         true AS convalidated, conrelid, 0 AS contypid, CASE WHEN contype IN ('p', 'u') THEN oid ELSE 0 END AS conindid,
         0 AS conparentid, coalesce(confrelid, 0) AS confrelid,
         CASE contype WHEN 'f' THEN 'a' ELSE ' ' END AS confupdtype, CASE contype WHEN 'f' THEN 'a' ELSE ' ' END
           AS confdeltype, CASE contype WHEN 'f' THEN 's' ELSE ' ' END AS confmatchtype, true AS conislocal,
         0 AS coninhcount, false AS connoinherit, conkey, NULL::SMALLINT[] AS confkey, NULL AS conbin
    FROM {_CONSTRAINTS})"""

# Every relation psql may list, as (oid, schema, name, relkind, type label, table it belongs to). Tables a
# DROP TABLE renamed aside for its checkpoint (`__sqlgate_cp_..`) are dropped as far as users know: DuckDB
# cannot move a table to another schema, so they stay beside the others and are left out here.
_OBJECTS = f"""(
  SELECT table_oid AS oid, schema_name AS nspname, table_name AS relname, 'r' AS relkind, 'table' AS kind,
         NULL AS tablename, has_primary_key OR index_count > 0 AS hasindex
    FROM duckdb_tables() WHERE NOT internal AND database_name = current_database()
         AND NOT starts_with(table_name, '__sqlgate_')
  UNION ALL
  SELECT view_oid, schema_name, view_name, 'v', 'view', NULL, false
    FROM duckdb_views() WHERE NOT internal AND database_name = current_database()
  UNION ALL
  SELECT index_oid, schema_name, index_name, 'i', 'index', table_name, false
    FROM duckdb_indexes() WHERE database_name = current_database()
  UNION ALL
  SELECT oid, nspname, conname, 'i', 'index', relname, false FROM {_CONSTRAINTS} WHERE contype IN ('p', 'u')
  UNION ALL
  SELECT sequence_oid, schema_name, sequence_name, 'S', 'sequence', NULL, false
    FROM duckdb_sequences() WHERE database_name = current_database()
) AS objects"""

# Every index: DuckDB's own and the ones behind key constraints.
_INDEXES = f"""(
  SELECT index_oid, table_oid, table_name, is_unique, false AS is_primary,
         string_split(trim(expressions, '[]'), ', ') AS cols
    FROM duckdb_indexes() WHERE database_name = current_database()
  UNION ALL
  SELECT oid, conrelid, relname, true, contype = 'p', cols FROM {_CONSTRAINTS} WHERE contype IN ('p', 'u')
) AS indexes"""
# Columns of tables and views, and of indexes (those naming a column; not expressions).
_COLUMNS = f"""(
  SELECT table_oid, column_name, data_type, column_default, is_nullable, column_index FROM duckdb_columns()
  UNION ALL
  SELECT indexes.index_oid, c.column_name, c.data_type, NULL, c.is_nullable,
         list_position(indexes.cols, c.column_name)
    FROM {_INDEXES} JOIN duckdb_columns() c
         ON c.table_oid = indexes.table_oid AND list_contains(indexes.cols, c.column_name)
) AS columns"""


@dataclass
class _Shape:
    relations: set[str] = field(default_factory=set)
    targets: list[tuple[str, str]] = field(default_factory=list)  # (output name, what it is: column or function)
    relkinds: list[str] = field(default_factory=list)
    patterns: dict[str, str] = field(default_factory=dict)  # column -> regex (~ only)
    oid: str | None = None
    contype: str | None = None  # contype = '..'
    referenced: str | None = None  # the oid in `confrelid IN (...)`


def _sval(node: Any) -> str | None:
    """A string constant, however pglast wraps it (A_Const, CollateClause, TypeCast)."""
    if not isinstance(node, dict):
        return None
    if "A_Const" in node:
        c = node["A_Const"]
        sval = c.get("sval")
        return sval.get("sval") if isinstance(sval, dict) else sval
    for wrapper in ("CollateClause", "TypeCast"):
        if wrapper in node:
            return _sval(node[wrapper].get("arg"))
    return None


def _colname(node: Any) -> str | None:
    if isinstance(node, dict) and "ColumnRef" in node:
        fields = node["ColumnRef"].get("fields", [])
        last = fields[-1] if fields else {}
        return last.get("String", {}).get("sval") if isinstance(last, dict) else None
    if isinstance(node, dict) and "TypeCast" in node:
        return _colname(node["TypeCast"].get("arg"))
    return None


def _walk(node: Any, shape: _Shape) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, shape)
        return
    if not isinstance(node, dict):
        return
    if "RangeVar" in node:
        shape.relations.add(node["RangeVar"].get("relname", ""))
    if "A_Expr" in node:
        expr = node["A_Expr"]
        op = [n.get("String", {}).get("sval") for n in expr.get("name", [])][-1:]
        column = _colname(expr.get("lexpr"))
        if expr.get("kind") == "AEXPR_OP" and op == ["~"] and column:
            pattern = _sval(expr.get("rexpr"))
            if pattern is not None:
                shape.patterns[column] = pattern
        elif expr.get("kind") == "AEXPR_OP" and op == ["="] and column in ("oid", "attrelid", "indrelid", "conrelid"):
            value = _sval(expr.get("rexpr"))
            if value is not None and value.isdigit():
                shape.oid = value
        elif expr.get("kind") == "AEXPR_OP" and op == ["="] and column == "contype":
            shape.contype = _sval(expr.get("rexpr"))
        elif expr.get("kind") == "AEXPR_IN" and column == "relkind":
            items = expr.get("rexpr", [])
            if isinstance(items, dict):
                items = items.get("List", {}).get("items", [])
            shape.relkinds = [v for v in (_sval(x) for x in items) if v]
    if "SubLink" in node and _colname(node["SubLink"].get("testexpr")) == "confrelid":
        shape.referenced = _first_number(node["SubLink"].get("subselect"))
    for value in node.values():
        _walk(value, shape)


def _first_number(node: Any) -> str | None:
    value = _sval(node)
    if value is not None and value.isdigit():
        return value
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return next((n for n in map(_first_number, children) if n), None)


def _shape(sql: str) -> _Shape | None:
    from pglast import parser

    try:
        tree = json.loads(parser.parse_sql_json(sql))
    except Exception:  # noqa: BLE001 - not PostgreSQL we can read: not ours to answer
        return None
    stmts = tree.get("stmts", [])
    if len(stmts) != 1 or "SelectStmt" not in stmts[0].get("stmt", {}):
        return None
    select = stmts[0]["stmt"]["SelectStmt"]
    shape = _Shape()
    _walk(select, shape)
    while "targetList" not in select and "larg" in select:  # a UNION: the first branch names the columns
        select = select["larg"]
    for target in select.get("targetList", []):
        res = target.get("ResTarget", {})
        val = res.get("val", {})
        what = _colname(val)
        if what is None and "FuncCall" in val:
            names = [n.get("String", {}).get("sval") for n in val["FuncCall"].get("funcname", [])]
            what = "fn:" + (names[-1] or "")
        elif what is None and "SubLink" in val:
            what = "sublink:" + ("pg_attrdef" if "pg_attrdef" in json.dumps(val) else "")
        shape.targets.append((res.get("name") or (what or "?").split(":")[-1], what or "?"))
    return shape


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _select(shape: _Shape, values: dict[str, str], source: str, where: str = "true", order: str = "") -> str:
    """The DuckDB query giving shape's output columns: by output name, then by what the column is."""
    exprs = []
    for name, what in shape.targets:
        expr = values.get(name) or values.get(what) or "NULL"
        exprs.append(f'{expr} AS "{name}"')
    sql = f"SELECT {', '.join(exprs)} FROM {source} WHERE {where}"
    return sql + (f" ORDER BY {order}" if order else "")


def _name_filter(shape: _Shape) -> str:
    conds = []
    if "relname" in shape.patterns:
        conds.append(f"regexp_full_match(relname, {_quote(shape.patterns['relname'])})")
    if "nspname" in shape.patterns:
        conds.append(f"regexp_full_match(nspname, {_quote(shape.patterns['nspname'])})")
    if not conds:
        conds.append("nspname = current_schema()")  # pg_table_is_visible: what the search path shows
    return " AND ".join(conds)


def rewrite(sql: str) -> str | None:
    """A DuckDB query answering psql's catalog query `sql` (or asyncpg's type
    lookup), or None if not one of those."""
    if "pg_" not in sql:
        return None
    if "typeinfo_tree" in sql and "rngsubtype" in sql:
        return _ASYNCPG_TYPES
    shape = _shape(sql)
    if shape is None or not shape.relations & _CATALOG:
        return None
    rels = shape.relations
    names = {name for name, _ in shape.targets}
    if rels == {"pg_constraint"} and shape.contype and (shape.oid or shape.referenced):  # \d NAME: checks, FKs
        on = f"conrelid = {shape.oid}" if shape.oid else f"confrelid = {shape.referenced}"
        return _select(shape, {
            "conname": "conname", "fn:pg_get_constraintdef": "condef", "condef": "condef", "sametable": "true",
            "ontable": "relname",
        }, _CONSTRAINTS, f"contype = {_quote(shape.contype)} AND {on}", "conname")
    if "pg_constraint" in rels and "pg_index" not in rels and not rels & _NOTHING_HERE:
        return constraints_query(sql)
    if rels & _NOTHING_HERE:
        return _select(shape, {}, "(SELECT 1) AS nothing", "false")
    if "pg_database" in rels:  # \l: the branches
        return _select(shape, {
            "Name": "'main'", "datname": "'main'", "Owner": "'sqlgate'", "Encoding": "'UTF8'", "Collate": "'C'",
            "Ctype": "'C'", "Locale Provider": "'libc'",
        }, "(SELECT 1) AS branches", order="1")
    if rels == {"pg_namespace"} and "Name" in names:  # \dn
        return _select(shape, {"Name": "schema_name", "Owner": "'sqlgate'"}, "duckdb_schemas()",
                       "schema_name NOT IN ('information_schema', 'pg_catalog') AND database_name = current_database()",
                       "1")
    if "pg_attribute" in rels and shape.oid:  # \d NAME: the columns
        return _select(shape, {
            "attname": "column_name", "fn:format_type": _TYPE_CASE, "sublink:pg_attrdef": "column_default",
            "attnotnull": "NOT is_nullable", "attidentity": "''", "attgenerated": "''", "attstorage": "'x'",
            "attcompression": "''", "attstattarget": "-1", "attnum": "column_index", "is_key": "'yes'",
            "indexdef": "column_name",
        }, _COLUMNS, f"table_oid = {shape.oid}", "column_index")
    if "pg_index" in rels and shape.oid and "amname" in names:  # \d INDEX: what it indexes
        return _select(shape, {
            "indisunique": "is_unique", "indisprimary": "is_primary", "amname": "'btree'", "relname": "table_name",
            "indisclustered": "false", "indisvalid": "true", "condeferrable": "false", "condeferred": "false",
            "indisreplident": "false", "indnullsnotdistinct": "false",
        }, _INDEXES, f"index_oid = {shape.oid}")
    if "pg_index" in rels and shape.oid:  # \d NAME: indexes and key constraints
        keys = f"""(
          SELECT conname AS relname, contype = 'p' AS indisprimary, true AS indisunique,
                 'CREATE UNIQUE INDEX ' || conname || ' ON ' || relname || ' USING btree ('
                   || array_to_string(cols, ', ') || ')' AS indexdef, condef, contype
            FROM {_CONSTRAINTS} WHERE conrelid = {shape.oid} AND contype IN ('p', 'u')
          UNION ALL
          SELECT index_name, false, is_unique, replace(rtrim(sql, ';'), '(', ' USING btree ('), NULL, NULL
            FROM duckdb_indexes() WHERE table_oid = {shape.oid}
        ) AS keys"""
        return _select(shape, {
            "relname": "relname", "indisprimary": "indisprimary", "indisunique": "indisunique",
            "indisclustered": "false", "indisvalid": "true", "fn:pg_get_indexdef": "indexdef",
            "fn:pg_get_constraintdef": "condef", "contype": "contype", "condeferrable": "false",
            "condeferred": "false", "indisreplident": "false", "reltablespace": "0",
        }, keys, order="indisprimary DESC, relname")
    if "pg_class" in rels and "relchecks" in {w for _, w in shape.targets} and shape.oid:  # \d NAME: the relation
        return _select(shape, {
            "relchecks": f"(SELECT count(*) FROM {_CONSTRAINTS} WHERE conrelid = {shape.oid} AND contype = 'c')",
            "relkind": "relkind", "relhasindex": "hasindex", "relhasrules": "false",
            "relhastriggers": f"EXISTS (SELECT 1 FROM {_CONSTRAINTS} WHERE contype = 'f' AND {shape.oid} IN"
                              " (conrelid, confrelid))",  # psql shows foreign keys only then
            "relrowsecurity": "false", "relforcerowsecurity": "false",
            "relhasoids": "false", "relispartition": "false", "fn:array_to_string": "''", "reltablespace": "0",
            "reloftype": "''", "relpersistence": "'p'", "relreplident": "'d'",
            "amname": "CASE WHEN relkind = 'r' THEN 'heap' END",
        }, _OBJECTS, f"oid = {shape.oid}")
    if "pg_class" in rels and "Schema" in names and "Name" in names:  # \d, \dt, \dv, \di, \ds
        kinds = shape.relkinds or ["r", "p", "v", "m", "S", "f"]
        return _select(shape, {
            "Schema": "nspname", "Name": "relname", "Type": "kind", "Owner": "'sqlgate'", "Table": "tablename",
            "Persistence": "'permanent'", "Access method": "CASE WHEN relkind = 'r' THEN 'heap' END",
        }, _OBJECTS, f"relkind IN ({', '.join(_quote(k) for k in kinds)}) AND {_name_filter(shape)}", "1, 2")
    if "pg_class" in rels and {w for _, w in shape.targets} >= {"oid", "nspname", "relname"}:  # \d NAME: lookup
        return _select(shape, {"oid": "oid", "nspname": "nspname", "relname": "relname"}, _OBJECTS,
                       _name_filter(shape), "2, 3")
    return None



_CONSTRAINT_REL = re.compile(r'(?:"?pg_catalog"?\s*\.\s*)?"?pg_constraint"?', re.I)
_CONDEF = re.compile(r"(?:pg_catalog\s*\.\s*)?pg_get_constraintdef\s*\(\s*([\w.\"]+)\s*(?:,\s*\w+\s*)?\)", re.I)
_REG = r"\s*::\s*(?:pg_catalog\s*\.\s*)?(regclass|regnamespace)\b"
_REG_LITERAL = re.compile(r"'((?:[^']|'')*)'" + _REG, re.I)
_REG_COLUMN = re.compile(r"([\w.\"]+)" + _REG, re.I)
_NAMESPACES = "(SELECT oid, schema_name AS relname FROM duckdb_schemas() WHERE database_name = current_database()) s"


def _condef(m: re.Match[str]) -> str:
    return (f"(SELECT k.sqlgate_def FROM (SELECT oid AS sqlgate_key, condef AS sqlgate_def FROM {_CONSTRAINTS}) k"
            f" WHERE k.sqlgate_key = {m[1]})")


def _reg_literal(m: re.Match[str]) -> str:
    """'name'::regclass (or ::regnamespace) as the oid DuckDB gives the object."""
    text = m[1].replace("''", "'")
    if text.isdigit():
        return text
    is_class = m[2].lower() == "regclass"
    schema, _, name = text.rpartition(".") if is_class else ("", "", text)
    where = f"relname = {_quote(name.strip(chr(34)))}" + (f" AND nspname = {_quote(schema)}" if schema else "")
    return f"(SELECT oid FROM {_OBJECTS if is_class else _NAMESPACES} WHERE {where} LIMIT 1)"


def _reg_column(m: re.Match[str]) -> str:
    """column::regclass (or ::regnamespace) as the object's name."""
    source = _OBJECTS if m[2].lower() == "regclass" else _NAMESPACES
    return (f"(SELECT k.sqlgate_name FROM (SELECT oid AS sqlgate_key, relname AS sqlgate_name FROM {source}) k"
            f" WHERE k.sqlgate_key = {m[1]} LIMIT 1)")


def _nodes(node: Any, key: str) -> list[dict[str, Any]]:
    """Every `key` node in a pglast JSON tree."""
    if isinstance(node, list):
        return [n for item in node for n in _nodes(item, key)]
    if not isinstance(node, dict):
        return []
    return ([node[key]] if isinstance(node.get(key), dict) else []) + _nodes(list(node.values()), key)


def constraints_query(sql: str) -> str:
    """Any other query of pg_constraint, over PostgreSQL-shaped rows: pg_constraint replaced,
    pg_get_constraintdef() and ::regclass spelt as DuckDB lookups, named as PostgreSQL names them."""
    from pglast import parser

    tree = json.loads(parser.parse_sql_json(sql))
    chars = (lambda at: at) if sql.isascii() else (lambda at: len(sql.encode()[:at].decode(errors="ignore")))
    names = {}  # where an unnamed output column starts -> the name PostgreSQL gives it
    for target in _nodes(tree, "ResTarget"):
        val = target.get("val", {})
        inner = val.get("TypeCast", {}).get("arg", val)
        where = next((n.get("location") for n in inner.values() if isinstance(n, dict)), None)
        if "name" not in target and where is not None:
            func = [n.get("String", {}).get("sval") for n in inner.get("FuncCall", {}).get("funcname", [])][-1:]
            names[chars(where)] = _colname(val) or (func or ["regclass"])[0]
    edits = []  # (start, end, replacement) in `sql`
    for rv in _nodes(tree, "RangeVar"):
        m = _CONSTRAINT_REL.match(sql, chars(rv.get("location", 0))) if rv.get("relname") == "pg_constraint" else None
        if m:
            edits.append((m.start(), m.end(), _PG_CONSTRAINT + ("" if "alias" in rv else " AS pg_constraint")))
    for pattern, spell in ((_CONDEF, _condef), (_REG_LITERAL, _reg_literal), (_REG_COLUMN, _reg_column)):
        for m in pattern.finditer(sql):
            if not any(a < m.end() and m.start() < b for a, b, _ in edits):
                named = f' AS "{names[m.start()]}"' if m.start() in names else ""
                edits.append((m.start(), m.end(), spell(m) + named))
    for a, b, text in sorted(edits, reverse=True):
        sql = sql[:a] + text + sql[b:]
    return sql

# asyncpg learns array types (and any type it has no codec for) by a recursive
# query over pg_type and pg_range; DuckDB's pg_catalog has no pg_range. The
# answer, for every array type sqlgate reports, is a fixed table: the array
# (depth 0) and its element (depth 1), requested by $1, the OIDs asyncpg wants.
# Every column and the parameter must have a type asyncpg decodes without a
# lookup of its own (text[], oid[], int4), or the lookup would look itself up.
_PG_TYPE_NAMES = {
    16: "bool", 17: "bytea", 18: "char", 19: "name", 20: "int8", 21: "int2", 23: "int4", 25: "text", 26: "oid",
    114: "json", 142: "xml", 700: "float4", 701: "float8", 1042: "bpchar", 1043: "varchar", 1082: "date",
    1083: "time", 1114: "timestamp", 1184: "timestamptz", 1186: "interval", 1266: "timetz", 1560: "bit",
    1562: "varbit", 1700: "numeric", 2950: "uuid", 3802: "jsonb",
}
_TYPE_ROWS = ", ".join(
    f"({array}, {array}, '_{_PG_TYPE_NAMES[elem]}', {elem}, ',', 0, '{_PG_TYPE_NAMES[elem]}'), "
    f"({array}, {elem}, '{_PG_TYPE_NAMES[elem]}', NULL, NULL, 1, NULL)"
    for elem, array in ARRAY_OF.items()
)
_ASYNCPG_TYPES = f"""SELECT DISTINCT oid, 'pg_catalog' AS ns, name, 'b' AS kind, NULL::INTEGER AS basetype, elemtype,
       elemdelim, NULL::INTEGER AS range_subtype, NULL::VARCHAR[] AS attrtypoids, NULL::VARCHAR[] AS attrnames,
       depth, NULL::VARCHAR AS basetype_name, elemtype_name, NULL::VARCHAR AS range_subtype_name
  FROM (VALUES {_TYPE_ROWS}) AS t(wanted_by, oid, name, elemtype, elemdelim, depth, elemtype_name)
 WHERE list_contains($1::INTEGER[], wanted_by) OR list_contains($1::INTEGER[], oid)
 ORDER BY depth DESC"""


def parameter_types(query: str) -> tuple[int, ...] | None:
    """Parameter types to describe for a rewritten query whose casts DuckDB cannot spell."""
    return (ARRAY_OF[26],) if query is _ASYNCPG_TYPES else None  # $1 is oid[], as in PostgreSQL


# PostgreSQL-only settings drivers set on connect (pgJDBC: extra_float_digits,
# application_name); DuckDB has none of them and locks its configuration.
# They change nothing sqlgate's answers depend on, so they are acknowledged.
_HARMLESS_SETTINGS = {
    "extra_float_digits": None, "application_name": None, "client_min_messages": None,
    "datestyle": {"iso", "iso, mdy", "mdy"}, "intervalstyle": {"postgres"}, "client_encoding": {"utf8", "unicode"},
    "bytea_output": {"hex"}, "standard_conforming_strings": {"on"}, "timezone": {"utc", "etc/utc", "gmt"},
}


def harmless_setting(sql: str) -> bool:
    """Whether `sql` is a SET of a PostgreSQL-only setting DuckDB can acknowledge without running it."""
    if "set" not in sql[:20].lower():
        return False
    from pglast import parser

    try:
        tree = json.loads(parser.parse_sql_json(sql))
    except Exception:  # noqa: BLE001
        return False
    stmts = tree.get("stmts", [])
    if len(stmts) != 1 or "VariableSetStmt" not in stmts[0].get("stmt", {}):
        return False
    node = stmts[0]["stmt"]["VariableSetStmt"]
    name = (node.get("name") or "").lower()
    if name not in _HARMLESS_SETTINGS or node.get("kind") not in ("VAR_SET_VALUE", "VAR_SET_DEFAULT", "VAR_RESET"):
        return False
    allowed = _HARMLESS_SETTINGS[name]
    if allowed is None or node.get("kind") != "VAR_SET_VALUE":
        return True
    values = []
    for arg in node.get("args", []):
        value = _sval(arg)
        if value is None:
            return False
        values.append(value.lower())
    return ", ".join(values) in allowed
