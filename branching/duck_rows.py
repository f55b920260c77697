"""DuckDB row checkpoints for DELETE, UPDATE and TRUNCATE: the rows a
statement removes (with their row ids) and, for UPDATE, the rows it writes,
kept in tables of schema `sqlgate` in the statement's own transaction."""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from branching import common
from branching.duck_catalog import Catalog
from branching.duck_rowids import MAX_ROW_ID
from branching.duck_sql import ROWID, Cursor, Take, q, render_params
from proxy.backends.duckdb_result import run_for_result
from proxy.result import Result
from proxy.statement import Part


def rowid_select(tree: exp.Expression) -> exp.Select:
    """SELECT the target's rowids with the statement's own FROM/USING/WHERE."""
    target = tree.this
    if not isinstance(target, exp.Table):
        raise ValueError("target is not a table")
    ref = target.alias_or_name
    select = exp.select(exp.column("rowid", table=ref, quoted=True)).from_(target.copy())
    extra = tree.args.get("using") or tree.args.get("tables") or []
    from_ = tree.args.get("from") or tree.args.get("from_")
    if from_ is not None:
        extra = [*extra, from_.this, *[j.this for j in (tree.args.get("joins") or [])]]
        for join in from_.args.get("joins") or []:
            extra.append(join)
    for other in extra:
        if isinstance(other, exp.Join):
            select = select.join(other.copy())
        else:
            select = select.join(other.copy(), join_type="cross")
    where = tree.args.get("where")
    if where is not None:
        select = select.where(where.this.copy())
    with_ = tree.args.get("with") or tree.args.get("with_")
    if with_ is not None:
        select.set("with_", with_.copy())
    return select


def kept_select(tree: exp.Expression) -> exp.Select | None:
    """SELECT rowid AS __sqlgate_rowid, * of the rows the statement changes, by its own WHERE, when it names
    no other table and has no WITH (rowid_select's rows, without a second pass over the table); else None."""
    target = tree.this
    others = ("using", "tables", "from", "from_", "joins", "with", "with_", "order", "limit")
    if not isinstance(target, exp.Table) or any(tree.args.get(k) for k in others):
        return None
    select = exp.select(exp.alias_(exp.column("rowid", table=target.alias_or_name, quoted=True), ROWID, quoted=True),
                        exp.Star()).from_(target.copy())
    where = tree.args.get("where")
    if where is not None:
        select = select.where(where.this.copy())
    return select


def rows_object(cur: Cursor, catalog: Catalog, schema: str | None, table: str, old: str,
                new: str | None = None, session: Any = None) -> dict[str, Any]:
    """A kept-rows object, with the table's watermark and live row count taken now (before the statement;
    duck_rowids) and the values of the sequences its defaults draw from (the definitions of those never
    used yet). `schema` None: the current one, resolved by the same catalog read. Rows this transaction
    appended are kept by value in obj['appended']: their row ids are known only once it commits.
    `session`: the statement's own; with it Catalog.mark reads no catalog table when it can."""
    schema, mark, live, appended, sequences, fresh = catalog.mark(cur, schema, table, session)
    obj: dict[str, Any] = {"kind": "rows", "schema": schema, "name": table, "old": old, "new": new, "watermark": mark,
           "live_rows": live, "sequences": sequences}
    if appended:
        obj["appended"] = old.replace('"cpd_', '"cpt_', 1)
        cur.execute(f"CREATE TABLE {obj['appended']} AS SELECT * FROM {q(schema)}.{q(table)}"
                    f" WHERE rowid >= {MAX_ROW_ID}")
    if fresh:
        obj["fresh_sequences"] = fresh
    return obj


def _parts(name: str) -> tuple[str | None, str]:
    """Schema (None: not named, the current one) and table of a name, without asking the database."""
    table = exp.to_table(name, dialect="duckdb")
    return table.db or None, table.name


def dml_runner(take: Take, name: str, tree: exp.Expression) -> Any:
    """DELETE: one pass, its own RETURNING feeds the kept rows. UPDATE: old rows by the statement's
    own WHERE (kept_select), or with its FROM by row ids (rowid_select), new rows by RETURNING, which then
    also runs the statement."""
    part = take.part
    is_update = isinstance(tree, exp.Update)
    own_returning = tree.args.get("returning") is not None
    rowids: str | None = None
    used: tuple[int, ...] = ()
    direct = kept_select(tree) if is_update else None
    if direct is not None:  # DuckDB refuses values a query does not use (the SET's, here)
        [rowids], used = render_params([direct], tree)
    elif is_update or own_returning:
        [rowids], used = render_params([rowid_select(tree)], tree)
    # UPDATE ... RETURNING: the new rows are kept by RETURNING * instead, and its own list read from them.
    returning = _own_returning(part, tree) if is_update and own_returning else None

    # None: an assignment not read as column = value, so the columns it sets are not known.
    set_columns = ({str(e.this.name).lower() for e in tree.expressions}
                   if all(isinstance(e, exp.EQ) and isinstance(e.this, exp.Column) for e in tree.expressions)
                   else None) if is_update else set()

    def capture(cur: Cursor, args: list[Any] | None) -> Result | None:
        old = take.kept("cpd")
        obj = rows_object(cur, take.catalog, *_parts(name), old, session=take.session)
        qualified = f"{q(obj['schema'])}.{q(obj['name'])}"
        result: Result | None = None
        if rowids is None:  # its own WITH nests in the CTE: DuckDB takes it
            row = cur.execute(f"CREATE TABLE {old} AS WITH __sqlgate_d AS ({part.sql}\n"
                              f"RETURNING rowid AS {ROWID}, *) SELECT * FROM __sqlgate_d", args).fetchone()
            result = Result(command_tag=f"DELETE {row[0] if row else 0}")
        else:
            keep = rowids if direct is not None else (f"SELECT rowid AS {ROWID}, * FROM {qualified}"
                                                      f" WHERE rowid IN ({rowids})")
            cur.execute(f"CREATE TABLE {old} AS {keep}", _picked(args, used))
        if is_update:
            new = take.kept("cpi")
            if returning is not None:  # RETURNING moves row ids, or keeps them, as the statement would
                bare, bare_used, listed, ref = returning
                row = cur.execute(f"CREATE TABLE {new} AS WITH __sqlgate_u AS ({bare}\nRETURNING *)"
                                  " SELECT * FROM __sqlgate_u", _picked(args, bare_used)).fetchone()
                result = run_for_result(cur, f"SELECT {listed} FROM {new} AS {ref} ORDER BY {ref}.rowid", None,
                                        "SELECT")
                result.command_tag = f"UPDATE {row[0] if row else 0}"
                obj["new"] = new
                take.record(cur, "rows", [name], [obj])
                return result
            if _ids_would_move(take.catalog, cur, obj["schema"], obj["name"], set_columns):
                row = cur.execute(f"CREATE TABLE {new} AS WITH __sqlgate_u AS ({part.sql}\nRETURNING *)"
                                  " SELECT * FROM __sqlgate_u", args).fetchone()
            else:  # the rows keep their ids: read them back by id after the statement as sent
                row = cur.execute(part.sql, args).fetchone()
                cur.execute(f"CREATE TABLE {new} AS SELECT * FROM {qualified}"
                            f" WHERE rowid IN (SELECT {ROWID} FROM {old}) ORDER BY rowid")
            obj["new"] = new
            result = Result(command_tag=f"UPDATE {row[0] if row else 0}")
        take.record(cur, "rows", [name], [obj])
        return result

    return take.replace_runner(capture)


def _own_returning(part: Part, tree: exp.Expression) -> tuple[str, tuple[int, ...], str, str]:
    """(the UPDATE without its RETURNING, the parameters that uses, the RETURNING list, the name it reads the
    target by, quoted), or checkpoint.unavailable when the kept rows cannot answer the list as the statement
    would (another table's columns, a parameter, a subquery, rowid)."""
    target = tree.this
    returning = tree.args["returning"]
    ref = target.alias_or_name if isinstance(target, exp.Table) else ""
    if any(isinstance(n, exp.Placeholder) for n in returning.walk()):
        raise common.unavailable(part, "UPDATE ... RETURNING with a parameter in its list on DuckDB")
    columns = list(returning.find_all(exp.Column))
    if any(c.table and c.table.lower() != ref.lower() for c in columns):
        raise common.unavailable(part, "UPDATE ... RETURNING of another table's columns on DuckDB")
    # The list is read from the kept rows afterwards: a subquery would see the table after the update, and
    # rowid the kept table's ids (DuckDB refuses both in RETURNING itself).
    if returning.find(exp.Subquery, exp.Select) or any(c.name.lower() == "rowid" for c in columns):
        raise common.unavailable(part, "UPDATE ... RETURNING of a subquery or rowid on DuckDB")
    listed_tree = returning.copy()
    for column in listed_tree.find_all(exp.Column):  # main.t.n: the kept rows are read as t
        column.set("db", None)
        column.set("catalog", None)
    listed = ", ".join(e.sql(dialect="duckdb") for e in listed_tree.expressions)
    tree.set("returning", None)
    try:
        [bare], used = render_params([tree], tree)
    finally:
        tree.set("returning", returning)
    return bare, used, listed, q(ref)


def _picked(args: list[Any] | None, used: tuple[int, ...]) -> list[Any] | None:
    return [args[i] for i in used] if args and used else None


def _ids_would_move(catalog: Catalog, cur: Cursor, schema: str, table: str, set_columns: set[str] | None) -> bool:
    """Whether an UPDATE of these columns gives rows new ids with RETURNING but keeps them when run as sent.
    On a table with an index or key, DuckDB's UPDATE ... RETURNING deletes and re-inserts the rows (new row
    ids), as a plain UPDATE does only for an indexed column: the checkpoint must not move rows the
    statement would not (later restores by row id, a dropped column's values, would lose them). With no
    index, RETURNING keeps the ids: one statement. (An index expression naming the column counts.)"""
    keys, indexes = catalog.keys(cur, schema, table)
    if set_columns is None or (not keys and not indexes):
        return True
    return bool(set_columns & keys) or any(c in sql for c in set_columns for sql in indexes)


def truncate_runner(take: Take, names: list[str]) -> Any:
    def capture(cur: Cursor) -> None:
        objects = []
        for i, name in enumerate(names):
            old = take.kept("cpd", i)
            obj = rows_object(cur, take.catalog, *_parts(name), old, session=take.session)
            cur.execute(f"CREATE TABLE {old} AS SELECT rowid AS {ROWID}, * FROM {q(obj['schema'])}.{q(obj['name'])}")
            objects.append(obj)
        take.record(cur, "rows", names, objects)

    return take.keep_runner(capture)
