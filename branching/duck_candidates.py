"""Which rows an upsert, a MERGE or a data-modifying CTE may change on DuckDB,
as SQL selecting their row ids (`Candidates`), built from the statement's own
syntax tree: the upsert's incoming rows matched on its conflict key (or every
primary / unique key), the MERGE's source joined on its ON condition."""

from __future__ import annotations

from sqlglot import exp

from branching.duck_images import Candidates
from branching.duck_sql import Cursor, columns, q, render_params, split
from proxy.statement import Target

_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)


def has_dml_cte(tree: exp.Expression) -> bool:
    return any(isinstance(n, _DML) for n in tree.walk() if n is not tree)


def _ctes(tree: exp.Expression) -> list[exp.Expression]:
    with_ = tree.args.get("with") or tree.args.get("with_")
    return list(with_.expressions) if with_ is not None else []


def upsert(cur: Cursor, tree: exp.Insert, name: str) -> Candidates:
    """Rows whose conflict key (the ON CONFLICT target, else each primary or unique key) an incoming
    row carries: the ones it may overwrite. Every row if a key column is not among the inserted ones."""
    schema, table = split(cur, name)
    target = tree.this
    by_name = bool(tree.args.get("by_name"))
    cols = [c.name for c in target.expressions] if isinstance(target, exp.Schema) else columns(cur, schema, table)
    conflict = tree.args.get("conflict")
    written = conflict.args.get("conflict_keys") if conflict is not None else None
    if written:
        keys = [[(k.this if isinstance(k, exp.Ordered) else k).name for k in written]]
    else:
        keys = [list(r[0]) for r in cur.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE schema_name = ? AND table_name = ?"
            " AND constraint_type IN ('PRIMARY KEY', 'UNIQUE') AND database_name = current_database()",
            [schema, table]).fetchall()]
    if not keys:
        return Candidates(name, "")
    if not by_name and any(k not in cols for key in keys for k in key):
        return Candidates(name, None)
    types = dict(cur.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ?"
                             " AND table_name = ? AND database_name = current_database()", [schema, table]).fetchall())
    texts, params = render_params([*_ctes(tree), tree.expression], tree, [types.get(c, "VARCHAR") for c in cols])
    alias = "__sqlgate_x" if by_name else f"__sqlgate_x({', '.join(q(c) for c in cols)})"
    source = f"__sqlgate_s AS (SELECT * FROM ({texts[-1]}) AS {alias})"
    qualified = f"{q(schema)}.{q(table)}"
    selects = " UNION ".join(
        f"SELECT t.rowid FROM {qualified} t SEMI JOIN __sqlgate_s s ON "
        + " AND ".join(f"t.{q(k)} = s.{q(k)}" for k in key) for key in keys)
    return Candidates(name, f"WITH {', '.join([*texts[:-1], source])} {selects}", params)


def merge(tree: exp.Merge, name: str) -> Candidates:
    """Target rows the ON condition matches with a source row; every row when a WHEN NOT MATCHED BY
    SOURCE clause may change the unmatched ones too."""
    whens = tree.args.get("whens")
    clauses = whens.expressions if whens is not None else []
    if any(w.args.get("source") for w in clauses):
        return Candidates(name, None)
    target = tree.this
    if not isinstance(target, exp.Table):
        raise ValueError("the MERGE target is not a table")
    ref = exp.column("rowid", table=target.alias_or_name, quoted=True)
    select = exp.select(ref).from_(target.copy()).join(tree.args["using"].copy(), on=tree.args["on"].copy())
    with_ = tree.args.get("with") or tree.args.get("with_")
    if with_ is not None:
        select.set("with_", with_.copy())
    texts, params = render_params([select], tree)
    return Candidates(name, texts[0], params)


def cte_tables(targets: tuple[Target, ...]) -> list[Candidates]:
    """Every table a statement with data-modifying CTEs changes: all of its rows for a DELETE, UPDATE,
    MERGE or upsert (their conditions may read rows the CTEs change first), none for a plain INSERT."""
    found: dict[str, str | None] = {}
    for t in targets:
        if t.kind == "table" and t.action in ("insert", "delete", "update", "merge", "upsert"):
            rows = "" if t.action == "insert" else None
            found[t.name] = None if t.name in found and found[t.name] is None else rows
    return [Candidates(name, sql) for name, sql in found.items()]
