"""Catalog facts a DuckDB checkpoint needs, read in as few statements as
possible and kept between checkpoints. Each catalog table function costs a
full scan of the catalog (0.5-2 ms, growing with the number of tables), so:

- what only DDL can change (a table's DDL, hence the sequences its defaults
  draw from and whether it has foreign keys; its explicit indexes; a session's
  current schema) is cached, keyed by table, and valid only while the backend's
  `catalog_version` is unchanged. The embedded file is opened by this process
  alone (DuckDB locks it), and every statement that is not a plain read or DML
  bumps that version when it runs and again when its transaction ends
  (proxy.backends.duckdb), as do sqlgate's own DDL (checkpoints, rollback, purge);
- what DML changes (the watermark, with the live row count: duck_rowids;
  sequences' last values) is read every time. A row checkpoint of a table
  whose facts are cached reads no catalog table at all: its schema and oid
  are those facts' (a name without a schema: the schema it last resolved to,
  checked against the session's current_schema() in the same read), and
  duck_rowids' window starts at the table's previous watermark (a hint only:
  any start gives the same answer) instead of estimated_size. Only for the
  statement's own session (SET and USE bump the version too); runs again by
  a rollback read the catalog.
A backend without `catalog_version` gets no caching."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import duckdb

from branching.duck_rowids import live_mark, live_mark_with

Cursor = duckdb.DuckDBPyConnection

_NEXTVAL = re.compile(r"nextval\('((?:[^']|'')+)'")
_REFERENCES = re.compile(r"\bREFERENCES\b", re.IGNORECASE)


@dataclass(frozen=True)
class TableFacts:
    """What DDL alone can change about one table."""

    oid: int
    sql: str
    sequences: tuple[str, ...]  # schema.name of each sequence its defaults draw from
    references: bool  # it has foreign keys (read off its DDL: a false positive only costs a copy)
    indexes: tuple[tuple[str, str], ...] | None  # (name, sql) of its explicit indexes; None: not read yet


def sequences_used(ddl: str, schema: str) -> tuple[str, ...]:
    names = (m.group(1).replace("''", "'") for m in _NEXTVAL.finditer(ddl))
    return tuple(sorted({n if "." in n else f"{schema}.{n}" for n in names}))


class Catalog:
    """The cache of one backend (see the module's docstring), and its checkpoint numbers."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self._tables: dict[tuple[str, str], tuple[int, TableFacts]] = {}
        self._hints: dict[tuple[str, str], int] = {}  # (schema, table) -> its last watermark (duck_rowids' window)
        self._resolved: dict[str, tuple[int, str]] = {}  # table named without a schema -> (version, schema found)
        self._keys: dict[tuple[str, str], tuple[int, tuple[frozenset[str], tuple[str, ...]]]] = {}
        self._seq: int | None = None
        self._lock = threading.Lock()

    def next_seq(self, cur: Cursor) -> int:
        """The next checkpoint number (sqlgate.checkpoints.seq orders checkpoints): counted here rather than
        by nextval, which costs a third of a millisecond a checkpoint. Only this process writes the file;
        numbers of transactions that roll back are skipped, as nextval's were."""
        with self._lock:
            if self._seq is None:
                self._seq = int(cur.execute(
                    "SELECT greatest((SELECT coalesce(max(seq), 0) FROM sqlgate.checkpoints),"
                    " (SELECT coalesce(max(last_value), 0) FROM duckdb_sequences() WHERE schema_name = 'sqlgate'"
                    " AND sequence_name = 'checkpoint_seq' AND database_name = current_database()))").fetchone()[0])  # type: ignore[index]
            self._seq += 1
            return self._seq

    def version(self) -> int | None:
        return getattr(self.backend, "catalog_version", None)

    def changed(self) -> None:
        """sqlgate itself changed the catalog outside a session's own statement."""
        bump = getattr(self.backend, "catalog_changed", None)
        if bump is not None:
            bump()

    def facts(self, schema: str, table: str) -> TableFacts | None:
        version = self.version()
        hit = self._tables.get((schema, table))
        return hit[1] if hit is not None and version is not None and hit[0] == version else None

    def keep(self, schema: str, table: str, facts: TableFacts) -> None:
        version = self.version()
        if version is not None:
            if len(self._tables) > 4096:
                self._tables.clear()
                self._hints.clear()
                self._resolved.clear()
            self._tables[(schema, table)] = (version, facts)

    def keys(self, cur: Cursor, schema: str, table: str) -> tuple[frozenset[str], tuple[str, ...]]:
        """The columns of the table's keys (primary, unique, foreign) and nested-typed columns, and its
        indexes' SQL, lower case: what DuckDB re-inserts rows for when an UPDATE changes it. Read once per
        catalog version."""
        version = self.version()
        hit = self._keys.get((schema, table))
        if hit is not None and version is not None and hit[0] == version:
            return hit[1]
        row = cur.execute(
            "SELECT (SELECT list(constraint_column_names) FROM duckdb_constraints() WHERE schema_name = $1"
            "        AND table_name = $2 AND database_name = current_database() AND constraint_type IN"
            "        ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY')),"
            " (SELECT list(lower(sql)) FROM duckdb_indexes() WHERE schema_name = $1 AND table_name = $2"
            "        AND database_name = current_database()),"
            # Nested values (LIST, ARRAY, MAP, STRUCT, UNION) are re-inserted by any UPDATE of them.
            " (SELECT list(lower(column_name)) FROM duckdb_columns() WHERE schema_name = $1 AND table_name = $2"
            "        AND database_name = current_database() AND (data_type LIKE '%[%' OR data_type SIMILAR TO"
            "        '(STRUCT|MAP|UNION)\\(.*'))", [schema, table]).fetchone()
        keys, indexes, nested = row or (None, None, None)
        found = (frozenset([*(str(c).lower() for names in keys or () for c in names), *(nested or ())]),
                 tuple(indexes or ()))
        if version is not None:
            if len(self._keys) > 4096:
                self._keys.clear()
            self._keys[(schema, table)] = (version, found)
        return found

    # --- the reads -----------------------------------------------------------------

    def table_row(self, cur: Cursor, schema: str | None, table: str,
                  ddl: bool, watermark: bool = True) -> tuple[str, int, int, str | None, int, int | None, int] | None:
        """(schema, oid, watermark, DDL if asked for, index count, live rows, rows this transaction appended)
        of the table, from one catalog read; None if there is none. `schema` None: the session's current
        schema. The watermark is the highest live row id and comes with the live row count (duck_rowids);
        not asked for: the slot count - 1 (estimated_size counts deleted rows too) and no count."""
        row = cur.execute(
            f"SELECT schema_name, table_oid, estimated_size, {'sql' if ddl else 'NULL'}, index_count"
            " FROM duckdb_tables() WHERE schema_name = coalesce(?, current_schema()) AND table_name = ?"
            " AND database_name = current_database()", [schema, table]).fetchone()
        if row is None:
            return None
        mark = int(row[2]) - 1 if row[2] is not None else -1
        live, appended = None, 0
        if watermark:
            mark, live, appended = live_mark(cur, _ref(row[0], table), mark)
        return row[0], int(row[1]), mark, row[3], int(row[4] or 0), live, appended

    def mark(self, cur: Cursor, schema: str | None, table: str, session: Any = None
             ) -> tuple[str, int, int, int, dict[str, int | None], dict[str, str]]:
        """(schema, watermark, live rows, rows this transaction appended, last value of each sequence the
        table's defaults draw from, and the DDL of those never used yet). With the table's facts cached and
        `session` a real one (its statements that may change the catalog or its current schema bump the
        version): one read, duck_rowids', which also reads the current schema (`schema` None: it must be
        the one the name last resolved to, else the catalog is read) and the sequences. Otherwise one
        catalog read more (and one for the sequences)."""
        version = self.version()
        if version is not None and session is not None and hasattr(session, "catalog_changed"):
            found = self._mark_cached(cur, version, schema, table)
            if found is not None:
                return found
        row = self.table_row(cur, schema, table, ddl=False)
        if row is None:  # the statement itself reports the missing table
            return schema or str(cur.execute("SELECT current_schema()").fetchone()[0]), -1, 0, 0, {}, {}  # type: ignore[index]
        resolved, oid, mark, _, _, live, appended = row
        facts = self._facts_of(cur, resolved, table, oid)
        if len(self._hints) > 4096:
            self._hints.clear()
        self._hints[(resolved, table)] = mark
        if schema is None and version is not None:
            self._resolved[table] = (version, resolved)
        values: dict[str, int | None] = {}
        fresh: dict[str, str] = {}
        if facts.sequences:
            rows = cur.execute(f"SELECT {_SEQUENCES}", [list(facts.sequences)]).fetchone()[0]  # type: ignore[index]
            values, fresh = _sequence_values(rows)
        return resolved, mark, int(live or 0), appended, values, fresh

    def _mark_cached(self, cur: Cursor, version: int, schema: str | None, table: str
                     ) -> tuple[str, int, int, int, dict[str, int | None], dict[str, str]] | None:
        resolved = schema
        if schema is None:
            hit = self._resolved.get(table)
            resolved = hit[1] if hit is not None and hit[0] == version else None
        facts = self.facts(resolved, table) if resolved is not None else None
        hint = self._hints.get((resolved, table)) if facts is not None else None  # type: ignore[arg-type]
        if facts is None or hint is None:
            return None
        extra = (("current_schema()",) if schema is None else ()) + ((_SEQUENCES,) if facts.sequences else ())
        args = (list(facts.sequences),) if facts.sequences else ()
        (mark, live, appended), got = live_mark_with(cur, _ref(resolved, table), hint, extra, args)  # type: ignore[arg-type]
        if schema is None and got[0] != resolved:
            return None  # this session's current schema is another one: read what it names
        self._hints[(resolved, table)] = mark  # type: ignore[index]
        values, fresh = _sequence_values(got[-1]) if facts.sequences else ({}, {})
        return resolved, mark, live, appended, values, fresh  # type: ignore[return-value]

    def for_drop(self, cur: Cursor, schema: str | None, table: str) -> tuple[str, TableFacts] | None:
        """(schema, facts with indexes) of a table about to be dropped, None if there is none: one catalog
        read (its indexes, which include its keys', are read too when it has any and they are not cached)."""
        row = self.table_row(cur, schema, table, ddl=True, watermark=False)
        if row is None:
            return None
        schema, oid, _, ddl, index_count, _, _ = row
        facts = self._facts_of(cur, schema, table, oid, ddl)
        if facts.indexes is None:
            indexes: tuple[tuple[str, str], ...] = ()
            if index_count:
                indexes = tuple((str(n), str(s)) for n, s in cur.execute(
                    "SELECT index_name, sql FROM duckdb_indexes() WHERE table_oid = ?", [oid]).fetchall())
            facts = TableFacts(facts.oid, facts.sql, facts.sequences, facts.references, indexes)
            self.keep(schema, table, facts)
        return schema, facts

    def _facts_of(self, cur: Cursor, schema: str, table: str, oid: int, ddl: str | None = None) -> TableFacts:
        facts = self.facts(schema, table)
        if facts is None or facts.oid != oid:
            if ddl is None:
                ddl = str(cur.execute("SELECT sql FROM duckdb_tables() WHERE table_oid = ?", [oid]).fetchone()[0])  # type: ignore[index]
            facts = TableFacts(oid, ddl, sequences_used(ddl, schema), bool(_REFERENCES.search(ddl)), None)
            self.keep(schema, table, facts)
        return facts


# (schema.name, last value, definition) of each sequence its `?` (a list of schema.name) names, as one list.
_SEQUENCES = ("(SELECT list((schema_name || '.' || sequence_name, last_value, sql)) FROM duckdb_sequences()"
              " WHERE database_name = current_database()"
              " AND list_contains(?::VARCHAR[], schema_name || '.' || sequence_name))")


def _sequence_values(rows: Any) -> tuple[dict[str, int | None], dict[str, str]]:
    values: dict[str, int | None] = {}
    fresh: dict[str, str] = {}
    for item in rows or ():
        name, last_value, sql = (item[k] for k in item) if isinstance(item, dict) else item
        values[name] = last_value
        if last_value is None:
            fresh[name] = sql
    return values, fresh


def catalog_of(backend: Any) -> Catalog:
    """The one cache of a backend (checkpoints, rollback and purge share it)."""
    found = getattr(backend, "_sqlgate_catalog", None)
    if found is None:
        found = Catalog(backend)
        backend._sqlgate_catalog = found
    return found


def _ref(schema: str, table: str) -> str:
    return '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
