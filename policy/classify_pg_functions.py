"""CREATE/ALTER FUNCTION and PROCEDURE: the language, SECURITY DEFINER, SET
clauses and the body (SQL bodies re-parsed by PostgreSQL's parser, PL/pgSQL
bodies by its PL/pgSQL parser) decide between safe_ddl and dangerous."""

from __future__ import annotations

import json

import pglast
from pglast import parser as pgparser

from policy.classify_common import C, check_capture_format
from policy.classify_pg_tree import const_text, name_list, path_schemas, setting_value, sval, truthy, walk
from policy.dangerous import SAFEGUARD_SETTINGS
from policy.names import qualified


def _classify_node(stmt, text, prepared):
    from policy.classify_pg import classify_node  # the statement classifier recurses into bodies

    return classify_node(stmt, text, prepared)


def _lang_and_flags(body):
    lang, definer, src, sets = None, False, None, []
    for o in body.get("options") or body.get("actions") or ():
        d = o.get("DefElem") or {}
        n = d.get("defname")
        if n == "language":
            lang = (sval(d.get("arg")) or "").lower()
        elif n == "security":
            definer = truthy(d)
        elif n == "as":
            items = name_list((d.get("arg") or {}).get("List", {}).get("items"))
            src = items
        elif n == "set":
            sets.append((d.get("arg") or {}).get("VariableSetStmt") or {})
    return lang, definer, src, sets


def handle_create_function(acc, body, stmt, text, prepared):
    proc = body.get("is_procedure", False)
    acc.command = "CREATE PROCEDURE" if proc else "CREATE FUNCTION"
    name = qualified(*name_list(body.get("funcname")))
    lang, definer, src, sets = _lang_and_flags(body)
    if lang is None:
        lang = "sql"
    if body.get("replace"):
        acc.raise_to(C.DESTRUCTIVE_DDL, "CREATE OR REPLACE replaces an existing function body")
        acc.target("function", name, "replace", listed=False)
    else:
        acc.raise_to(C.SAFE_DDL)
        acc.target("function", name, "create", listed=False)
    if definer:
        acc.raise_to(C.DANGEROUS, "SECURITY DEFINER functions run with their owner's rights")
    _check_sets(acc, sets)
    if lang == "sql":
        if src:
            _check_sql_body(acc, src[0], prepared)
    elif lang == "plpgsql":
        _check_plpgsql(acc, text)
    else:
        acc.raise_to(C.DANGEROUS, f"functions in language {lang} run code sqlgate cannot inspect")


def _check_sets(acc, sets) -> None:
    """A function's SET clauses: no safeguard, and a search_path reaching sqlgate's schema touches it."""
    for s in sets:
        if (s.get("name") or "").lower() in SAFEGUARD_SETTINGS or s.get("kind") == "VAR_RESET_ALL":
            acc.raise_to(C.DANGEROUS, "the function changes a safeguard setting")
        else:
            check_capture_format(acc, s.get("name") or "", setting_value(s), "the function's SET clause: ")
        if (s.get("name") or "").lower() == "search_path":
            acc.meta = acc.meta or "sqlgate" in path_schemas(const_text(a) for a in s.get("args") or ())


def _judge_body_statement(acc, inner) -> None:
    if inner.klass >= C.DANGEROUS:
        acc.raise_to(C.DANGEROUS, "the function body does something sqlgate denies: " + inner.reason)
    elif inner.klass is C.DESTRUCTIVE_DDL:  # rows a function changes are captured by triggers; objects are not
        acc.raise_to(C.DANGEROUS, f"the function body runs {inner.command or 'destructive DDL'}, which no "
                                  "checkpoint covers when the function is called")
    acc.meta = acc.meta or inner.meta


def _check_sql_body(acc, src: str, prepared) -> None:
    try:
        tree = json.loads(pgparser.parse_sql_json(src))
    except Exception:
        acc.raise_to(C.DANGEROUS, "the function body does not parse")
        return
    for s in tree.get("stmts", ()):
        _judge_body_statement(acc, _classify_node(s["stmt"], src, {}))


def _check_plpgsql(acc, text: str) -> None:
    try:
        fns = pglast.parse_plpgsql(text)
    except Exception:
        acc.raise_to(C.DANGEROUS, "the PL/pgSQL body could not be inspected")
        return
    exprs = []
    for key, val in walk(fns):
        if key in ("PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors") or (
            key in ("PLpgSQL_stmt_open", "PLpgSQL_stmt_return_query") and "dynquery" in val
        ):
            acc.raise_to(C.DANGEROUS, "the function runs dynamic SQL (EXECUTE)")
            return
        if key == "PLpgSQL_expr" and isinstance(val, dict) and isinstance(val.get("query"), str):
            exprs.append(val["query"])
    for q in exprs:
        try:
            tree = json.loads(pgparser.parse_sql_json(q))
        except Exception:
            try:
                tree = json.loads(pgparser.parse_sql_json("SELECT " + q))
            except Exception:
                continue  # PL/pgSQL fragments such as assignment targets
        for s in tree.get("stmts", ()):
            _judge_body_statement(acc, _classify_node(s["stmt"], q, {}))


def handle_alter_function(acc, body, stmt, text, prepared):
    acc.command = "ALTER FUNCTION"
    _, definer, _, sets = _lang_and_flags(body)
    acc.raise_to(C.SAFE_DDL)
    if definer:
        acc.raise_to(C.DANGEROUS, "SECURITY DEFINER functions run with their owner's rights")
    _check_sets(acc, sets)
