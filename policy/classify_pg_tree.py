"""Reading pglast's JSON parse tree: a bounded walk over every node and the
small accessors (names, string constants, boolean options) the PostgreSQL
classifier modules share."""

from __future__ import annotations

from policy.names import qualified

MAX_DEPTH = 400


class TooDeep(Exception):
    pass


def walk(root):
    """Every (key, value) pair of a JSON tree whose value is a dict or list
    (list items get key ""). Order is unspecified; callers sort by location."""
    stack = [(None, root, 0)]
    pop, push = stack.pop, stack.append
    container = (dict, list)
    while stack:
        key, obj, depth = pop()
        if key is not None:
            yield key, obj
        if depth > MAX_DEPTH:
            raise TooDeep("statement nested too deeply to inspect")
        depth += 1
        if type(obj) is dict:
            for k, v in obj.items():
                if type(v) in container:
                    push((k, v, depth))
        else:
            for v in obj:
                if type(v) in container:
                    push(("", v, depth))


def sval(node) -> str | None:
    if isinstance(node, dict):
        s = node.get("String")
        if s is not None:
            return s.get("sval", "")
    return None


def name_list(items) -> list[str]:
    return [sval(i) or "" for i in items or ()]


def rv_name(rv: dict) -> str:
    return qualified(rv.get("catalogname"), rv.get("schemaname"), rv.get("relname"))


def const_text(node) -> str | None:
    """A string literal argument, possibly behind a cast ('s'::regclass)."""
    if not isinstance(node, dict):
        return None
    if "TypeCast" in node:
        return const_text(node["TypeCast"].get("arg"))
    c = node.get("A_Const")
    if c and "sval" in c:
        return c["sval"].get("sval", "")
    return None


def setting_value(body: dict) -> str | None:
    """The value a VariableSetStmt gives its setting as text (a string, an integer, a decimal); None when
    it goes back to its default (RESET, TO DEFAULT) or keeps the session's (FROM CURRENT); "" for
    anything else (several values, an expression), which no setting check should take for safe."""
    if body.get("kind") != "VAR_SET_VALUE":
        return None
    args = body.get("args") or []
    if len(args) != 1 or not isinstance(args[0], dict):
        return ""
    c = args[0].get("A_Const") or (args[0].get("TypeCast") or {}).get("arg", {}).get("A_Const")
    if not c:
        return ""
    if "ival" in c:
        return str((c["ival"] or {}).get("ival", 0))  # the parse tree leaves a zero out
    if "fval" in c:
        return str(c["fval"].get("fval", "0"))
    if "sval" in c:
        return c["sval"].get("sval", "")
    return ""


def truthy(defelem: dict) -> bool:
    arg = defelem.get("arg")
    if arg is None:
        return True
    if "Boolean" in arg:
        return bool(arg["Boolean"].get("boolval"))
    if "Integer" in arg:
        return bool(arg["Integer"].get("ival"))
    s = sval(arg)
    if s is not None:
        return s.lower() not in ("false", "off", "0", "no", "f", "n", "of")
    return True


def path_schemas(values) -> set[str]:
    """The schemas a search_path value names: each value may itself be a list ('a, "B"')."""
    found = set()
    for value in values:
        for item in (value or "").split(","):
            item = item.strip()
            found.add(item[1:-1].replace('""', '"') if item.startswith('"') else item.lower())
    return found
