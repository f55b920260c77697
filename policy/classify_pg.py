"""Classify one PostgreSQL statement from PostgreSQL's own parse tree (pglast's
JSON form of libpg_query's raw parse tree). This is authoritative: the lexer
and grammar are the server's, identifiers arrive decoded, folded and truncated."""

from __future__ import annotations

from policy.classify_common import Acc, C, check_capture_format
from policy.classify_pg_functions import handle_alter_function, handle_create_function
from policy.classify_pg_tables import (
    AT,
    COLUMN_AT,
    DROP_DANGEROUS,
    DROP_PLAIN,
    OBJ_WORD,
    REL_KIND,
    RENAME_DANGEROUS,
    SIMPLE,
    SIMPLE_DANGEROUS,
    TXN,
)
from policy.classify_pg_tree import (
    TooDeep,
    const_text,
    name_list,
    path_schemas,
    rv_name,
    setting_value,
    sval,
    truthy,
    walk,
)
from policy.dangerous import SAFEGUARD_SETTINGS, SEQUENCE_FUNCTIONS, function_is_dangerous
from policy.names import qualified, quote_ident, split_qualified_text
from proxy.statement import Target

__all__ = ["TooDeep", "classify_node", "scan", "walk"]

META = "sqlgate"
DML = {"InsertStmt": (C.WRITE, "insert", "INSERT"), "UpdateStmt": (C.DESTRUCTIVE_DML, "update", "UPDATE"),
       "DeleteStmt": (C.DESTRUCTIVE_DML, "delete", "DELETE"), "MergeStmt": (C.DESTRUCTIVE_DML, "merge", "MERGE")}


def scan(acc: Acc, tree, executed: bool) -> None:
    """Walk a subtree: dangerous functions (always), and when the subtree runs,
    data-modifying statements, sequence advances and set_config effects."""
    for key, val in walk(tree):
        if isinstance(val, list):
            qualified = bool(val) and sval(val[0]) == META and (len(val) > 1 or key == "objects")
            if qualified or (key == "objects" and any(sval(v) == META for v in val)):
                acc.meta = True
            continue
        if val.get("schemaname") == META or val.get("newschema") == META:
            acc.meta = True
        if key == "String":  # any name part spelled sqlgate (schema in a qualified name, COMMENT ON SCHEMA, ...)
            if val.get("sval") == META:
                acc.meta = True
        elif key == "FuncCall":
            _funccall(acc, val, executed)
        elif key == "A_Const":
            if "sval" in val:
                parts = split_qualified_text(val["sval"].get("sval", ""))
                if parts and len(parts) > 1 and parts[0] == META:
                    acc.meta = True
            elif "ival" in val or "fval" in val:
                acc.numbers.append(val.get("location", -1))
        elif executed and key in DML:
            klass, action, _ = DML[key]
            rel = val.get("relation") or {}
            acc.raise_to(klass, "" if klass < C.DESTRUCTIVE_DML else f"{action.upper()} changes existing rows")
            if (val.get("onConflictClause") or {}).get("action") == "ONCONFLICT_UPDATE":
                action = "upsert"  # still `write` (the corpus contract), but checkpointed: it can overwrite rows
                acc.raise_to(klass, "the upsert may overwrite existing rows")
            if rel:
                acc.later(rel.get("location", 0), _t("table", rv_name(rel), action))
        elif executed and key == "ExecuteStmt":
            acc.raise_to(C.DANGEROUS, "EXECUTE runs a statement prepared elsewhere, which sqlgate cannot inspect")
        elif executed and key == "intoClause":
            rel = val.get("rel") or {}
            acc.raise_to(C.SAFE_DDL)
            acc.later(rel.get("location", 0), _t("table", rv_name(rel), "create", detail=_temp(rel, "select into")))


# Functions whose effect outlives the transaction on that connection (session-level advisory locks,
# the random seed): the connection then carries state, so it is pinned to its client, never pooled.
_SESSION_STATE_FUNCTIONS = frozenset({
    "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
    "pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all", "setseed",
})


def _t(kind, name, action, column=None, detail=""):
    return Target(kind, name, action, column, detail)


def _temp(rel, detail=""):
    """A created relation's detail: 'temp' first when it lives in the session only (it then runs on
    the login the session's other statements use: proxy.pipeline.login_for)."""
    return " ".join(filter(None, ("temp" if rel.get("relpersistence") == "t" else "", detail)))


def _funccall(acc: Acc, fc: dict, executed: bool) -> None:
    names = name_list(fc.get("funcname"))
    if not names:
        return
    name = names[-1].lower()
    if len(names) > 1 and names[0] == META:
        acc.meta = True
    args = fc.get("args") or []
    if function_is_dangerous(name):
        acc.raise_to(C.DANGEROUS, f"{name}() has effects outside the database's data or runs a query string")
        return
    if name == "set_config":
        setting = const_text(args[0]) if args else None
        if setting is None or setting.lower() in SAFEGUARD_SETTINGS:
            acc.raise_to(C.DANGEROUS, f"set_config() of a safeguard setting ({setting or 'unknown'})")
            return
        # wherever it is (a view's definition too): it runs whenever that does
        check_capture_format(acc, setting, (const_text(args[1]) if len(args) > 1 else None) or "")
        if executed:
            acc.raise_to(C.SESSION)
            if setting.lower() == "search_path" and len(args) > 1:
                value = const_text(args[1])
                schemas = split_qualified_text(value.replace(",", ".")) if value is not None else None
                acc.meta = acc.meta or schemas is None or META in schemas
                acc.later(fc.get("location", 0), _t("setting", "search_path", "set", detail=value or ""), listed=False)
        return
    if not executed:
        return
    if name in _SESSION_STATE_FUNCTIONS:
        acc.raise_to(C.SESSION, f"{name}() leaves state on the connection beyond the transaction")
        return
    if name in SEQUENCE_FUNCTIONS:
        acc.raise_to(C.WRITE, f"{name}() advances a sequence (not undone by rollback)")
        text = const_text(args[0]) if args else None
        parts = split_qualified_text(text) if text is not None else None
        if parts:
            if len(parts) > 1 and parts[0] == META:
                acc.meta = True
            acc.later(fc.get("location", 0), _t("sequence", qualified(*parts), "advance"))
    elif name == "pg_notify":
        acc.raise_to(C.SESSION)


# ---------------------------------------------------------------- statements

def classify_node(stmt: dict, text: str, prepared: dict) -> Acc:
    """Classify one raw statement node ({"SelectStmt": {...}}); `text` is its
    source (needed for PL/pgSQL bodies); `prepared` maps PREPARE names seen
    earlier in the same string to their Acc."""
    (kind, body), = stmt.items()
    acc = Acc()
    h = HANDLERS.get(kind)
    if h is not None:
        h(acc, body, stmt, text, prepared)
    elif kind in SIMPLE_DANGEROUS:
        acc.command, reason = SIMPLE_DANGEROUS[kind]
        acc.raise_to(C.DANGEROUS, reason)
    elif kind in SIMPLE:
        acc.command, klass = SIMPLE[kind]
        acc.raise_to(klass)
        if kind == "VacuumStmt" and not body.get("is_vacuumcmd"):
            acc.command = "ANALYZE"
    else:
        acc.command = kind.removesuffix("Stmt").upper()
        acc.raise_to(C.DANGEROUS, f"sqlgate does not know the statement type {kind}")
    if h is not _h_query:
        scan(acc, stmt, executed=False)  # dangerous functions and sqlgate names anywhere
    acc.flush()
    return acc


def _h_query(acc, body, stmt, text, prepared):
    (kind,) = stmt.keys()
    acc.command = DML[kind][2] if kind in DML else "SELECT"
    scan(acc, stmt, executed=True)


def _h_copy(acc, body, stmt, text, prepared):
    acc.command = "COPY"
    rel = body.get("relation")
    is_from = body.get("is_from", False)
    if body.get("is_program") or body.get("filename") is not None:
        what = "runs a shell command" if body.get("is_program") else "reads or writes a server file"
        acc.raise_to(C.DANGEROUS, f"COPY ... {'PROGRAM' if body.get('is_program') else 'file'} {what}")
        if is_from and rel:
            acc.target("table", rv_name(rel), "insert", detail="copy")
        return
    if is_from:
        acc.raise_to(C.WRITE)
        if rel:
            acc.target("table", rv_name(rel), "insert", detail="copy")
        scan(acc, body.get("whereClause") or {}, executed=True)
    elif body.get("query"):
        scan(acc, body["query"], executed=True)


def _h_explain(acc, body, stmt, text, prepared):
    acc.command = "EXPLAIN"
    analyze = any(truthy(o["DefElem"]) for o in body.get("options") or ()
                  if "DefElem" in o and o["DefElem"].get("defname") == "analyze")
    if analyze:
        inner = classify_node(body["query"], text, prepared)
        acc.merge(inner)
        if inner.klass > C.READ and not acc.reason:
            acc.reason = "EXPLAIN ANALYZE runs the statement it explains"


def _h_prepare(acc, body, stmt, text, prepared):
    acc.command = "PREPARE"
    inner = classify_node(body["query"], text, prepared)
    acc.merge(inner)
    prepared[body.get("name", "")] = inner


def _h_execute(acc, body, stmt, text, prepared):
    acc.command = "EXECUTE"
    inner = prepared.get(body.get("name", ""))
    if inner is None:
        acc.raise_to(C.DANGEROUS, "EXECUTE runs a statement prepared elsewhere, which sqlgate cannot inspect")
    else:
        acc.merge(inner)
    scan(acc, body.get("params") or [], executed=True)


def _h_deallocate(acc, body, stmt, text, prepared):
    acc.command = "DEALLOCATE"
    acc.raise_to(C.SESSION)
    name = body.get("name")
    if name and not body.get("isall"):
        prepared.pop(name, None)
    else:
        prepared.clear()


def _h_declare(acc, body, stmt, text, prepared):
    acc.command = "DECLARE CURSOR"
    scan(acc, body.get("query") or {}, executed=True)


def _h_set(acc, body, stmt, text, prepared):
    kind = body.get("kind", "")
    name = (body.get("name") or "").lower()
    acc.command = "RESET" if kind.startswith("VAR_RESET") else "SET"
    if kind == "VAR_RESET_ALL":
        acc.raise_to(C.DANGEROUS, "RESET ALL resets safeguard settings and the role")
    elif kind == "VAR_SET_MULTI":
        for o in body.get("args") or ():
            d = o.get("DefElem") or {}
            if d.get("defname") == "transaction_read_only":
                c = (d.get("arg") or {}).get("A_Const") or {}
                if not (c.get("ival") or {}).get("ival"):
                    acc.raise_to(C.DANGEROUS, "READ WRITE escapes the proxy's read-only transaction")
        acc.raise_to(C.SESSION)
    elif name in SAFEGUARD_SETTINGS:
        acc.raise_to(C.DANGEROUS, f"{name} is a safeguard setting")
    else:
        acc.raise_to(C.SESSION)
        check_capture_format(acc, name, setting_value(body))
        if name == "search_path":  # the session layer resolves unqualified names with it
            values = [const_text(a) for a in body.get("args") or ()]
            detail = ", ".join(quote_ident(v) for v in values if v is not None)
            action = "reset" if kind.startswith("VAR_RESET") or kind == "VAR_SET_DEFAULT" else "set"
            acc.target("setting", "search_path", action, detail=detail, listed=False)
            acc.meta = acc.meta or META in path_schemas(values)


def _h_discard(acc, body, stmt, text, prepared):
    acc.command = "DISCARD"
    if body.get("target") == "DISCARD_ALL":
        acc.raise_to(C.DANGEROUS, "DISCARD ALL resets the session authorization and safeguards")
    else:
        acc.raise_to(C.SESSION)


def _h_txn(acc, body, stmt, text, prepared):
    acc.command, klass = TXN.get(body.get("kind", ""), ("TRANSACTION", C.DANGEROUS))
    acc.raise_to(klass, "two-phase commit escapes the proxy's transaction" if klass == C.DANGEROUS else "")


def _h_create(acc, body, stmt, text, prepared):
    acc.command = "CREATE TABLE"
    rel = body.get("relation") or {}
    acc.raise_to(C.SAFE_DDL)
    acc.target("table", rv_name(rel), "create", detail=_temp(rel))


def _h_ctas(acc, body, stmt, text, prepared):
    mat = body.get("objtype") == "OBJECT_MATVIEW"
    acc.command = "CREATE MATERIALIZED VIEW" if mat else "CREATE TABLE AS"
    rel = (body.get("into") or {}).get("rel") or {}
    acc.raise_to(C.SAFE_DDL)
    acc.target("materialized view" if mat else "table", rv_name(rel), "create", detail=_temp(rel))
    scan(acc, body.get("query") or {}, executed=True)


def _h_view(acc, body, stmt, text, prepared):
    acc.command = "CREATE VIEW"
    view = body.get("view") or {}
    name = rv_name(view)
    if body.get("replace"):
        acc.raise_to(C.DESTRUCTIVE_DDL, "CREATE OR REPLACE replaces an existing definition")
        acc.target("view", name, "replace")
    else:
        acc.raise_to(C.SAFE_DDL)
        acc.target("view", name, "create", detail=_temp(view))


def _h_index(acc, body, stmt, text, prepared):
    acc.command = "CREATE INDEX"
    acc.raise_to(C.SAFE_DDL)
    # CONCURRENTLY cannot run in a transaction block, so it takes no checkpoint (Part.checkpointed_anyway).
    action = "create concurrently" if body.get("concurrent") else "create"
    acc.target("index", rv_name(body.get("relation") or {}), action, detail=body.get("idxname", ""))


def _h_seq(acc, body, stmt, text, prepared):
    acc.command = "CREATE SEQUENCE"
    acc.raise_to(C.SAFE_DDL)
    sequence = body.get("sequence") or {}
    acc.target("sequence", rv_name(sequence), "create", detail=_temp(sequence))


def _h_alterseq(acc, body, stmt, text, prepared):
    acc.command = "ALTER SEQUENCE"
    restart = any((o.get("DefElem") or {}).get("defname") == "restart" for o in body.get("options") or ())
    acc.raise_to(C.DESTRUCTIVE_DDL if restart else C.SAFE_DDL, "RESTART rewinds the sequence" if restart else "")
    acc.target("sequence", rv_name(body.get("sequence") or {}), "alter", detail="restart" if restart else "")


def _h_schema(acc, body, stmt, text, prepared):
    acc.command = "CREATE SCHEMA"
    acc.raise_to(C.SAFE_DDL)
    name = body.get("schemaname") or ""
    if name:
        acc.target("schema", quote_ident(name), "create", listed=False)
    for el in body.get("schemaElts") or ():
        inner = classify_node(el, text, prepared)
        acc.merge(inner)


def _h_define(acc, body, stmt, text, prepared):
    acc.command = "CREATE " + OBJ_WORD.get(body.get("kind", ""), body.get("kind", "OBJECT_TYPE")[7:].replace("_", " "))
    if body.get("replace"):
        acc.raise_to(C.DESTRUCTIVE_DDL, "CREATE OR REPLACE replaces an existing definition")
    else:
        acc.raise_to(C.SAFE_DDL)


def _h_alterenum(acc, body, stmt, text, prepared):
    acc.command = "ALTER TYPE"
    acc.raise_to(C.DESTRUCTIVE_DDL if body.get("oldVal") else C.SAFE_DDL)


def _h_alterdomain(acc, body, stmt, text, prepared):
    acc.command = "ALTER DOMAIN"
    acc.raise_to(C.DESTRUCTIVE_DDL if body.get("subtype") in ("X", "N") else C.SAFE_DDL)


def _h_drop(acc, body, stmt, text, prepared):
    rt = body.get("removeType", "")
    word = OBJ_WORD.get(rt, rt[7:].replace("_", " "))
    acc.command = "DROP " + word
    cascade = body.get("behavior") == "DROP_CASCADE"
    detail = "cascade" if cascade else ""
    objs = body.get("objects") or []
    if rt in REL_KIND:
        acc.raise_to(C.DESTRUCTIVE_DDL, f"DROP {word} removes it and its data")
        for o in objs:
            items = (o.get("List") or {}).get("items") if isinstance(o, dict) else None
            acc.target(REL_KIND[rt], qualified(*name_list(items if items is not None else [o])), "drop", detail=detail)
    elif rt == "OBJECT_SCHEMA":
        acc.raise_to(C.DESTRUCTIVE_DDL, "DROP SCHEMA removes every object in it")
        for o in objs:
            s = sval(o) or ""
            acc.target("schema", quote_ident(s) + ".*", "drop", detail=detail)
    elif rt in ("OBJECT_TRIGGER", "OBJECT_RULE", "OBJECT_POLICY"):
        klass = C.DANGEROUS if rt == "OBJECT_POLICY" else C.DESTRUCTIVE_DDL
        acc.raise_to(klass, "row-level security changes are denied" if klass == C.DANGEROUS else "")
        for o in objs:
            items = name_list((o.get("List") or {}).get("items"))
            if len(items) >= 2:
                acc.target("table", qualified(*items[:-1]), "alter", detail="drop " + word.lower())
    elif rt in DROP_DANGEROUS:
        acc.raise_to(C.DANGEROUS, f"DROP {word} is denied")
    elif rt in DROP_PLAIN:
        acc.raise_to(C.DESTRUCTIVE_DDL, f"DROP {word} removes a definition")
        kind = "function" if rt in ("OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_ROUTINE", "OBJECT_AGGREGATE") \
            else word.lower()
        for o in objs:
            if "TypeName" in o:
                nm = qualified(*name_list(o["TypeName"].get("names")))
            elif "ObjectWithArgs" in o:
                nm = qualified(*name_list(o["ObjectWithArgs"].get("objname")))
            else:
                nm = qualified(*name_list((o.get("List") or {}).get("items") or [o]))
            acc.target(kind, nm, "drop", detail=detail, listed=False)
    else:
        acc.raise_to(C.DANGEROUS, f"DROP {word} is not a statement sqlgate allows")


def _h_truncate(acc, body, stmt, text, prepared):
    acc.command = "TRUNCATE"
    acc.raise_to(C.DESTRUCTIVE_DML, "TRUNCATE removes every row")
    detail = "cascade" if body.get("behavior") == "DROP_CASCADE" else ""
    for r in body.get("relations") or ():
        acc.target("table", rv_name(r.get("RangeVar") or {}), "truncate", detail=detail)


def _h_altertable(acc, body, stmt, text, prepared):
    objtype = body.get("objtype", "OBJECT_TABLE")
    kind = REL_KIND.get(objtype)
    acc.command = "ALTER " + OBJ_WORD.get(objtype, objtype[7:].replace("_", " "))
    name = rv_name(body.get("relation") or {})
    acc.raise_to(C.SAFE_DDL)
    for c in body.get("cmds") or ():
        cmd = c.get("AlterTableCmd") or {}
        st = cmd.get("subtype", "")
        klass, detail = AT.get(st, (C.DESTRUCTIVE_DDL, st[3:].lower()))
        if st in ("AT_ColumnDefault", "AT_CookedColumnDefault") and not cmd.get("def"):
            klass, detail = C.DESTRUCTIVE_DDL, "drop default"
        column = None
        if st in COLUMN_AT:
            column = cmd.get("name") or ((cmd.get("def") or {}).get("ColumnDef") or {}).get("colname")
        reason = ""
        if klass == C.DESTRUCTIVE_DDL:
            reason = f"ALTER ... {detail.upper()} can lose data or break dependents"
        elif klass == C.DANGEROUS:
            reason = f"ALTER ... {detail.upper()} weakens a safeguard"
        acc.raise_to(klass, reason)
        acc.target(kind or "type", name, "alter", column, detail, listed=kind is not None)


def _h_rename(acc, body, stmt, text, prepared):
    rt = body.get("renameType", "")
    acc.command = "ALTER " + OBJ_WORD.get(rt, rt[7:].replace("_", " "))
    if rt in RENAME_DANGEROUS:
        acc.raise_to(C.DANGEROUS, f"renaming a {rt[7:].lower()} is denied")
        return
    acc.raise_to(C.DESTRUCTIVE_DDL, "RENAME breaks everything that uses the old name")
    if rt == "OBJECT_SCHEMA":
        sub = body.get("subname") or ""
        if META in (sub, body.get("newname")):
            acc.meta = True
        acc.target("schema", quote_ident(sub) + ".*", "rename", detail=body.get("newname", ""))
        return
    rel = body.get("relation")
    if rel:
        rtype = body.get("relationType", "")
        kind = REL_KIND.get(rt) or REL_KIND.get(rtype) or ("table" if rtype in ("", "OBJECT_ACCESS_METHOD") else None)
        column = body.get("subname") if rt == "OBJECT_COLUMN" else None
        detail = {"OBJECT_COLUMN": "rename column", "OBJECT_TABCONSTRAINT": "rename constraint",
                  "OBJECT_TRIGGER": "rename trigger", "OBJECT_RULE": "rename rule"}.get(rt, "")
        if kind is None:  # ALTER TYPE ... RENAME ATTRIBUTE
            acc.target("type", rv_name(rel), "rename", column, detail, listed=False)
        else:
            acc.target(kind, rv_name(rel), "rename", column, detail or body.get("newname", ""))


def _h_setschema(acc, body, stmt, text, prepared):
    ot = body.get("objectType", "")
    acc.command = "ALTER " + OBJ_WORD.get(ot, ot[7:].replace("_", " "))
    if ot == "OBJECT_EXTENSION":
        acc.raise_to(C.DANGEROUS, "extensions are denied")
        return
    acc.raise_to(C.DESTRUCTIVE_DDL, "SET SCHEMA moves the object away from its name")
    rel = body.get("relation")
    if rel and ot in REL_KIND:
        acc.target(REL_KIND[ot], rv_name(rel), "alter", detail="set schema")


def _h_on_table(command, reason):
    def h(acc, body, stmt, text, prepared):
        acc.command = command
        acc.raise_to(C.DANGEROUS, reason)
        rel = body.get("relation") or body.get("table")
        if rel:
            acc.target("table", rv_name(rel), "alter", detail=command.lower())
    return h


def _h_refresh(acc, body, stmt, text, prepared):
    acc.command = "REFRESH MATERIALIZED VIEW"
    acc.raise_to(C.WRITE)
    acc.target("materialized view", rv_name(body.get("relation") or {}), "update", detail="refresh")


HANDLERS = {
    "SelectStmt": _h_query, "InsertStmt": _h_query, "UpdateStmt": _h_query, "DeleteStmt": _h_query,
    "MergeStmt": _h_query, "CopyStmt": _h_copy, "ExplainStmt": _h_explain, "PrepareStmt": _h_prepare,
    "ExecuteStmt": _h_execute, "DeallocateStmt": _h_deallocate, "DeclareCursorStmt": _h_declare,
    "VariableSetStmt": _h_set,
    "DiscardStmt": _h_discard, "TransactionStmt": _h_txn, "CreateStmt": _h_create,
    "CreateTableAsStmt": _h_ctas, "ViewStmt": _h_view, "IndexStmt": _h_index, "CreateSeqStmt": _h_seq,
    "AlterSeqStmt": _h_alterseq, "CreateSchemaStmt": _h_schema, "DefineStmt": _h_define,
    "AlterEnumStmt": _h_alterenum, "AlterDomainStmt": _h_alterdomain, "DropStmt": _h_drop,
    "TruncateStmt": _h_truncate, "AlterTableStmt": _h_altertable, "RenameStmt": _h_rename,
    "AlterObjectSchemaStmt": _h_setschema, "CreateFunctionStmt": handle_create_function,
    "AlterFunctionStmt": handle_alter_function,
    "CreateTrigStmt": _h_on_table("CREATE TRIGGER", "triggers run code on every change"),
    "RuleStmt": _h_on_table("CREATE RULE", "rules rewrite later statements into others"),
    "CreatePolicyStmt": _h_on_table("CREATE POLICY", "row-level security changes are denied"),
    "AlterPolicyStmt": _h_on_table("ALTER POLICY", "row-level security changes are denied"),
    "RefreshMatViewStmt": _h_refresh,
}
