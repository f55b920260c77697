"""Row ids across rebuilds on DuckDB. Row checkpoints name rows by row id,
but a rollback that builds a table again (a DROP COLUMN of a column that is
not last, a table copied back by DROP TABLE or DROP SCHEMA) renumbers them:
rows copied in row-id order get dense new ids (INSERT ... SELECT ... ORDER BY
keeps the order; a table created in the transaction is numbered 0..n-1 at
commit, in that order). Such a rollback records the mapping (new, old) as a
"moves" object of its own checkpoint; rolling back an older checkpoint maps
every row id it reads (the table's rows, kept images, kept column values)
back through each rebuild since, latest first, into the space of the oldest
piece (a row with no old id was added since). Rows a rollback puts back get
fresh ids with no link to the rows they restore: an older row checkpoint of
that table then refuses mode 'all' (and DROP COLUMN or ALTER TYPE values by
row id) rather than restoring the wrong rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from branching.duck_sql import ROWID, Cursor, q
from proxy import errors

Key = tuple[str, str]


@dataclass
class Moves:
    """What this rollback did to row ids, in its own transaction."""

    new_cp: str
    maps: dict[Key, list[str]] = field(default_factory=dict)  # scratch (new = live row id, old), in order
    marks: dict[Key, int] = field(default_factory=dict)  # the watermark before this rollback rebuilt it
    unknown: set[Key] = field(default_factory=set)  # rebuilt without kept row ids (kept by an older sqlgate)
    reinserted: set[Key] = field(default_factory=set)
    drop_later: list[str] = field(default_factory=list)
    fills: dict[Key, dict[str, tuple[str, int]]] = field(default_factory=dict)  # column -> (keep, seq)
    # NOT NULL set (or dropped) once the rows are undone: {"table": quoted name, "column", "set": bool}
    after_rows: list[dict[str, Any]] = field(default_factory=list)
    retyped: dict[Key, dict[str, tuple[str, int]]] = field(default_factory=dict)  # column -> (keep, seq)
    renamed: set[Key] = field(default_factory=set)  # a column renamed back: kept rows name it as then
    taken_away: dict[Key, set[str]] = field(default_factory=dict)  # columns added since, dropped: rows kept
    # after their ADD COLUMN have them, and the rows undone go back without them
    oids: dict[int, int] = field(default_factory=dict)  # a table this rollback rebuilt: its oid before -> now
    oid_keys: dict[int, Key] = field(default_factory=dict)  # (old oid -> the table's name, for the record)
    unindexed: set[int] = field(default_factory=set)  # tables it dropped an index of (DuckDB then drops
    # no column that index was on, nor changes its type, until the transaction commits)
    _n: int = 0

    def follow_rename(self, table: str, new_table: str, column: str | None = None,
                      new_column: str | None = None) -> None:
        """This rollback renamed `table` (or its `column`) back: the NOT NULL changes queued for after the
        rows, named as they were when queued, follow the rename."""
        for change in self.after_rows:
            if change["table"] == table and column in (None, change["column"]):
                change["table"] = new_table
                if column is not None:
                    change["column"] = new_column

    def oid(self, oid: int) -> int:
        """What table `oid` is now, after the rebuilds of this rollback."""
        while oid in self.oids:
            oid = self.oids[oid]
        return oid

    def scratch(self, prefix: str) -> str:
        self._n += 1
        return f"sqlgate.{q(f'{prefix}_{self.new_cp}_{self._n}')}"

    def rebuilt(self, cur: Cursor, schema: str, name: str, olds: str | None, mark: int) -> None:
        """`schema.name` was just created again and filled from `olds` (a query with column __old, the
        kept row ids) in that order; None: the kept rows carry no row ids."""
        key = (schema, name)
        self.marks.setdefault(key, mark)
        if olds is None:
            self.unknown.add(key)
            return
        m = self.scratch("mvx")
        cur.execute(f"CREATE TABLE {m} AS WITH a AS (SELECT rowid AS new, row_number() OVER (ORDER BY rowid) AS k"
                    f" FROM {q(schema)}.{q(name)}), b AS (SELECT __old AS old, row_number() OVER (ORDER BY __old)"
                    f" AS k FROM ({olds})) SELECT a.new, b.old FROM a JOIN b USING (k)")
        self.maps.setdefault(key, []).append(m)

    def objects(self, cur: Cursor) -> list[dict[str, Any]]:
        """The moves objects of this rollback's checkpoint (row ids as they will be once it commits)."""
        out: list[dict[str, Any]] = []
        for (schema, name), maps in sorted(self.maps.items()):
            if (schema, name) in self.unknown:
                continue
            chain = _chain(f"SELECT rowid AS __live, rowid AS __k FROM {q(schema)}.{q(name)}", list(reversed(maps)))
            keep = f"sqlgate.{q(f'mv_{self.new_cp}_{len(out)}')}"
            cur.execute(f"CREATE TABLE {keep} AS SELECT row_number() OVER (ORDER BY __live) - 1 AS new, __k AS old"
                        f" FROM ({chain}) ORDER BY __live")
            cur.execute(f"DELETE FROM {keep} WHERE old IS NULL")
            out.append({"kind": "moves", "schema": schema, "name": name, "map": keep})
        for schema, name in sorted(self.unknown):
            out.append({"kind": "moves", "schema": schema, "name": name, "unlinked": "rebuilt"})
        for schema, name in sorted(self.reinserted - self.unknown):
            out.append({"kind": "moves", "schema": schema, "name": name, "unlinked": "put back"})
        for old, new in sorted(self.oids.items()):  # older definition checkpoints find the table through it
            schema, name = self.oid_keys[old]
            out.append({"kind": "moves", "schema": schema, "name": name, "oids": [old, new]})
        for kept in self.drop_later:
            cur.execute(f"DROP TABLE IF EXISTS {kept}")
        return out


def rebuilt_oid(cur: Cursor, moves: Moves, oid: int, since: int) -> int:
    """What table `oid` (read at checkpoint seq `since`) is now: rollbacks since, this one too, that rebuilt
    it (DROP COLUMN undone) created it again under a new oid."""
    for (objects,) in cur.execute("SELECT objects FROM sqlgate.checkpoints WHERE seq > ? AND objects LIKE"
                                  " '%\"oids\"%' ORDER BY seq", [since]).fetchall():
        for o in json.loads(objects):
            if o.get("kind") == "moves" and o.get("oids") and o["oids"][0] == oid:
                oid = o["oids"][1]
    return moves.oid(oid)


def _chain(source: str, maps: list[str]) -> str:
    """`source` (columns __live, __k) with __k mapped back through each map in turn (NULL: no old id)."""
    for m in maps:
        source = f"SELECT x.__live, m.old AS __k FROM ({source}) x LEFT JOIN {m} m ON x.__k = m.new"
    return source


def _persisted(cur: Cursor, schema: str, name: str, since: int) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for seq, objects in cur.execute("SELECT seq, objects FROM sqlgate.checkpoints WHERE seq >= ?"
                                    " AND objects LIKE '%\"moves\"%' ORDER BY seq", [since]).fetchall():
        for o in json.loads(objects):
            if o.get("kind") == "moves" and (o["schema"], o["name"]) == (schema, name):
                out.append((int(seq), o))
    return out


def unlinked(cp_id: str, table: str, why: str) -> errors.SqlgateError:
    return errors.SqlgateError(
        "branching.rollback_conflict", "40001",
        f"cannot roll back checkpoint {cp_id} on {table}: {why}; nothing was changed",
        "DuckDB names rows by row id; rows a later rollback put back got new ones, so the rows this"
        " checkpoint kept can no longer be matched to the table's rows exactly.",
        f'POST /rollback with {{"checkpoint": "<id>", "mode": "statement"}} for each later checkpoint, latest'
        f" first (statement mode matches rows by value), or restore {table} from a backup",
        status=409)


@dataclass
class Space:
    """Maps row ids of one table read at checkpoint seq t (or now) back into the space of seq `since`."""

    cur: Cursor
    moves: Moves
    cp_id: str
    schema: str
    name: str
    since: int
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        key = (self.schema, self.name)
        self.events = _persisted(self.cur, self.schema, self.name, self.since)
        table = f"{self.schema}.{self.name}"
        for seq, o in self.events:
            if o.get("unlinked") == "rebuilt" or (o.get("unlinked") and seq > self.since):
                raise unlinked(self.cp_id, table, "a later rollback put rows back (they got new row ids)"
                               if o["unlinked"] == "put back" else "a later rollback rebuilt it from a copy"
                               " kept without row ids")
        if key in self.moves.unknown:
            raise unlinked(self.cp_id, table, "it was kept by an older sqlgate without row ids")

    def _maps(self, before: int | None) -> list[str]:
        """Maps to walk (latest first) for ids read at seq `before` (None: the table now)."""
        persisted = [o["map"] for seq, o in self.events if "map" in o and (before is None or seq < before)]
        local = list(self.moves.maps.get((self.schema, self.name), [])) if before is None else []
        return list(reversed(local)) + list(reversed(persisted))

    def remapped(self) -> bool:
        """Whether any rebuild since changed the table's row ids (else they are read as they are)."""
        return bool(self._maps(None))

    def live(self) -> str:
        """The table's rows: __live (row id now), __k (its id then; NULL: added since)."""
        return _chain(f"SELECT rowid AS __live, rowid AS __k FROM {q(self.schema)}.{q(self.name)}", self._maps(None))

    def before_rollback(self) -> str:
        """The table's rows: __live, __k (its id before this rollback)."""
        local = list(reversed(self.moves.maps.get((self.schema, self.name), [])))
        return _chain(f"SELECT rowid AS __live, rowid AS __k FROM {q(self.schema)}.{q(self.name)}", local)

    def kept(self, table: str, seq: int) -> str:
        """A kept table with column ROWID, read at seq: its columns plus __k."""
        return _chain(f"SELECT {ROWID} AS __live, {ROWID} AS __k FROM {table}", self._maps(seq))

    def mark(self, now: int) -> int:
        return self.moves.marks.get((self.schema, self.name), now)
