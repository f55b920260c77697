"""Tests of policy.classify and the classification cache (policy.fingerprint)."""

from __future__ import annotations

import json
import pathlib
import threading

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pglast import parser as pgparser
from sqlglot import exp

from policy.classify import MAX_SQL_CHARS, classify, classify_cached
from policy.fingerprint import ClassificationCache, fingerprint
from policy.names import quote_ident, split_qualified_text
from proxy.statement import StatementClass as C
from proxy.statement import Target

CORPUS = pathlib.Path(__file__).parent / "corpus"


def _load(name: str, dialect: str):
    rows = []
    for n, line in enumerate((CORPUS / name).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            r = json.loads(line)
            rows.append(pytest.param(dialect, r, id=f"{dialect}-{n}-{r['sql'][:40]!r}"))
    return rows


PG_ROWS = _load("postgres.jsonl", "postgres")
DUCK_ROWS = _load("duckdb.jsonl", "duckdb")
ALL_ROWS = PG_ROWS + DUCK_ROWS


def test_corpus_sizes():
    assert len(PG_ROWS) >= 200
    assert len(DUCK_ROWS) >= 60
    shared = pathlib.Path("/work/shared/corpus")
    for sample, rows in (("classify-sample.jsonl", PG_ROWS), ("classify-sample-duckdb.jsonl", DUCK_ROWS)):
        if (shared / sample).exists():
            ours = {json.dumps(p.values[1], sort_keys=True) for p in rows}
            for line in (shared / sample).read_text(encoding="utf-8").splitlines():
                if line.strip():
                    assert json.dumps(json.loads(line), sort_keys=True) in ours, line


@pytest.mark.parametrize("dialect,row", ALL_ROWS)
def test_corpus_line(dialect, row):
    st = classify(row["sql"], dialect)
    assert (st.klass.label, list(st.tables)) == (row["class"], row["tables"]), (st.error, st.parts)
    if st.klass == C.UNPARSEABLE:
        assert st.error and not st.parts
    else:
        assert not st.error


_duck = duckdb.connect()


@pytest.mark.parametrize("dialect,row", ALL_ROWS)
def test_corpus_line_real_parser(dialect, row):
    """Every labelled line is accepted by the real engine's parser, except the
    unparseable ones, which it rejects."""
    if dialect == "postgres":
        try:
            pgparser.parse_sql_json(row["sql"])
            accepted = True
        except pgparser.ParseError:
            accepted = False
    else:
        try:
            _duck.extract_statements(row["sql"])
            accepted = True
        except duckdb.Error:
            accepted = False
    assert accepted == (row["class"] != "unparseable")


@pytest.mark.parametrize("dialect,row", ALL_ROWS)
def test_cached_agrees_with_classify(dialect, row):
    a = classify(row["sql"], dialect)
    b = classify_cached(row["sql"], dialect)
    assert (a.klass, a.tables, [p.sql for p in a.parts]) == (b.klass, b.tables, [p.sql for p in b.parts])


# ------------------------------------------------------------ parts & details

def test_parts_are_exact_source_slices_pg():
    sql = "SELECT 'é'; --c\rDELETE FROM \"ü\"; DO $x$ BEGIN END $x$"
    st = classify(sql, "postgres")
    assert [p.sql for p in st.parts] == ["SELECT 'é'", 'DELETE FROM "ü"', "DO $x$ BEGIN END $x$"]
    assert [p.command for p in st.parts] == ["SELECT", "DELETE", "DO"]
    assert st.klass == C.DANGEROUS
    assert st.parts[2].reason == "DO blocks run code sqlgate cannot inspect"
    for p in st.parts:
        assert p.sql in sql


def test_parts_are_exact_source_slices_duckdb():
    sql = "SELECT 1;  DELETE FROM t WHERE a = ';' ; -- done"
    st = classify(sql, "duckdb")
    assert [p.sql for p in st.parts] == ["SELECT 1", "DELETE FROM t WHERE a = ';'"]
    assert st.klass == C.DESTRUCTIVE_DML and st.tables == ("t",)


def test_empty_and_comment_only():
    for d in ("postgres", "duckdb"):
        for sql in ("", "   ", "-- nothing\n", "/* c */"):
            st = classify(sql, d)
            assert st.klass == C.READ and st.parts == () and st.tables == ()


def test_targets_drop_alter_truncate_view():
    st = classify("DROP TABLE a, b CASCADE", "postgres")
    assert st.parts[0].targets == (Target("table", "a", "drop", None, "cascade"),
                                   Target("table", "b", "drop", None, "cascade"))
    assert st.parts[0].command == "DROP TABLE"
    t = classify("ALTER TABLE t DROP COLUMN c", "postgres").parts[0].targets
    assert t == (Target("table", "t", "alter", "c", "drop column"),)
    t = classify("ALTER TABLE t RENAME TO u", "postgres").parts[0].targets
    assert t[0].action == "rename" and t[0].name == "t"
    t = classify("TRUNCATE a, b", "postgres").parts[0].targets
    assert [(x.name, x.action) for x in t] == [("a", "truncate"), ("b", "truncate")]
    t = classify("CREATE OR REPLACE VIEW v AS SELECT 1", "postgres").parts[0].targets
    assert t == (Target("view", "v", "replace"),)
    assert classify("DELETE FROM x", "postgres").parts[0].targets[0].action == "delete"
    assert classify("UPDATE x SET a = 1", "postgres").parts[0].targets[0].action == "update"
    t = classify("SELECT nextval('s')", "postgres").parts[0].targets
    assert t == (Target("sequence", "s", "advance"),)
    t = classify("ALTER TABLE t ALTER COLUMN c TYPE int", "duckdb").parts[0].targets
    assert t == (Target("table", "t", "alter", "c", "type"),)


def test_commands():
    cases = {"BEGIN": "BEGIN", "COMMIT": "COMMIT", "ROLLBACK": "ROLLBACK", "SET x = 1": "SET",
             "CREATE TABLE t (a int)": "CREATE TABLE", "MERGE INTO a USING b ON true WHEN MATCHED THEN DELETE": "MERGE",
             "TRUNCATE t": "TRUNCATE", "COPY t FROM STDIN": "COPY", "EXPLAIN SELECT 1": "EXPLAIN",
             "INSERT INTO t VALUES (1)": "INSERT", "ALTER TABLE t ADD COLUMN b int": "ALTER TABLE"}
    for sql, cmd in cases.items():
        assert classify(sql, "postgres").parts[0].command == cmd, sql


@pytest.mark.parametrize("sql", [
    "SELECT * FROM sqlgate.checkpoints", 'SELECT * FROM "sqlgate"."log"', "SELECT sqlgate.f()",
    "SELECT nextval('sqlgate.s')", "DROP SCHEMA sqlgate CASCADE", "ALTER TABLE t SET SCHEMA sqlgate",
    "GRANT USAGE ON SCHEMA sqlgate TO x", "CREATE TABLE sqlgate.t (a int)", "SELECT 1::sqlgate.mytype",
    "SELECT sqlgate.t.c FROM sqlgate.t", "SELECT 'sqlgate.t'::regclass", "ALTER SCHEMA sqlgate RENAME TO x",
    # a search_path that reaches sqlgate's schema, as a list in one string or on a function
    "SET search_path = 'public, sqlgate'",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = sqlgate, pg_catalog"
    " AS $$ SELECT count(*)::int FROM tokens $$",
    "ALTER FUNCTION f() SET search_path = public, \"sqlgate\"",
])
def test_touches_meta_pg(sql):
    assert classify(sql, "postgres").touches_meta


def test_touches_meta_negative_and_duckdb():
    assert not classify("SELECT 'sqlgate' FROM t", "postgres").touches_meta
    assert not classify("SELECT * FROM users", "postgres").touches_meta
    assert not classify("CREATE FUNCTION g() RETURNS int LANGUAGE sql SET search_path = public AS $$ SELECT 1 $$",
                        "postgres").touches_meta
    assert classify("SELECT * FROM sqlgate.meta", "duckdb").touches_meta
    assert classify("DROP SCHEMA sqlgate CASCADE", "duckdb").touches_meta


def test_unparseable_error_has_position():
    st = classify("SELECT 1;\nDELETE FROM users; SELEC 2", "postgres")
    assert st.klass == C.UNPARSEABLE and "line 2" in st.error and "SELEC" in st.error
    st = classify("SELEC 1", "duckdb")
    assert st.klass == C.UNPARSEABLE and "SELEC" in st.error


def test_limits_fail_closed():
    st = classify("SELECT " + "1+" * (MAX_SQL_CHARS // 2) + "1", "postgres")
    assert st.klass == C.UNPARSEABLE and "too large" in st.error
    deep = "SELECT " + "abs(" * 3000 + "1" + ")" * 3000
    for d in ("postgres", "duckdb"):
        st = classify(deep, d)
        assert st.klass in (C.UNPARSEABLE, C.DANGEROUS), d
    # PostgreSQL's grammar folds redundant parentheses away: a plain read
    assert classify("SELECT " + "(" * 3000 + "1" + ")" * 3000, "postgres").klass == C.READ
    many = "SELECT " + ",".join(f"f{i}(a, b, c)" for i in range(6000))
    assert classify(many, "postgres").klass == C.UNPARSEABLE
    assert classify("SELECT 1\x00; DROP TABLE users", "postgres").klass == C.UNPARSEABLE


def test_names():
    assert quote_ident("users") == "users"
    assert quote_ident("Users") == '"Users"'
    assert quote_ident("user") == '"user"'
    assert quote_ident("a$b") == '"a$b"'
    assert quote_ident('we"ird') == '"we""ird"'
    assert quote_ident("data") == "data"  # unreserved keyword
    assert split_qualified_text('public."My Seq"') == ["public", "My Seq"]
    assert split_qualified_text("PUBLIC.S") == ["public", "s"]
    assert split_qualified_text('"unterminated') is None
    long = "é" * 40  # 80 bytes: clipped at a character boundary
    st = classify(f'DROP TABLE "{long}"', "postgres")
    assert st.tables == (f'"{"é" * 31}"',)


def test_search_path_is_reported_for_the_session_layer():
    t = classify('SET search_path = app, "Public"', "postgres").parts[0].targets
    assert t == (Target("setting", "search_path", "set", None, 'app, "Public"'),)
    t = classify("SELECT set_config('search_path', 'app', false)", "postgres").parts[0].targets
    assert t == (Target("setting", "search_path", "set", None, "app"),)
    assert classify("RESET search_path", "postgres").parts[0].targets[0].action == "reset"
    assert classify("SET search_path = sqlgate", "postgres").touches_meta
    assert classify("USE sqlgate", "duckdb").touches_meta
    assert classify("SET search_path = 'main'", "duckdb").parts[0].targets[0].detail == "main"


def test_trees_and_reasons():
    st = classify("SELECT * FROM t; ATTACH 'x.db'", "duckdb")
    assert st.parts[0].tree is not None and st.parts[0].tree.find(exp.Table).name == "t"
    assert st.parts[1].klass == C.DANGEROUS and st.parts[1].reason
    assert classify("SELECT 1", "postgres").parts[0].tree is None  # PostgreSQL is classified from pglast's tree
    for sql in ("DROP TABLE t", "DELETE FROM t", "SELECT pg_read_file('x')", "SET ROLE x", "COPY t TO PROGRAM 'x'"):
        p = classify(sql, "postgres").parts[0]
        assert p.reason, sql
    assert classify("UPDATE EXTENSIONS", "duckdb").klass == C.DANGEROUS  # a statement type the module cannot name


def test_prepare_execute_tracking():
    assert classify("PREPARE q AS SELECT 1; EXECUTE q", "postgres").klass == C.READ
    assert classify("PREPARE q AS SELECT 1; DEALLOCATE q; EXECUTE q", "postgres").klass == C.DANGEROUS
    st = classify("PREPARE d AS DELETE FROM logs; EXECUTE d", "postgres")
    assert st.klass == C.DESTRUCTIVE_DML and st.parts[1].klass == C.DESTRUCTIVE_DML


# -------------------------------------------------------------------- cache

def test_fingerprint_hit_reslices():
    cache = ClassificationCache()
    a = cache.get("SELECT abalance FROM pgbench_accounts WHERE aid = 123", "postgres")
    b = cache.get("SELECT abalance FROM pgbench_accounts WHERE aid = 456789", "postgres")
    assert cache.hits_fingerprint == 1 and cache.misses == 1
    assert b.klass == a.klass == C.READ
    assert b.sql == b.parts[0].sql == "SELECT abalance FROM pgbench_accounts WHERE aid = 456789"


def test_fingerprint_multi_statement_reslice():
    cache = ClassificationCache()
    q = ("BEGIN; UPDATE pgbench_accounts SET abalance = abalance + -{d} WHERE aid = {a}; "
         "SELECT abalance FROM pgbench_accounts WHERE aid = {a}; INSERT INTO pgbench_history VALUES ({a}, {d}.5); END")
    first = cache.get(q.format(d=1, a=7), "postgres")
    new = q.format(d=12345, a=99999)
    second = cache.get(new, "postgres")
    assert cache.hits_fingerprint == 1
    fresh = classify(new, "postgres")
    assert [p.sql for p in second.parts] == [p.sql for p in fresh.parts]
    assert (second.klass, second.tables) == (first.klass, first.tables) == (fresh.klass, fresh.tables)
    assert [p.targets for p in second.parts] == [p.targets for p in fresh.parts]


def test_fingerprint_duckdb():
    cache = ClassificationCache()
    cache.get("SELECT * FROM t WHERE id = 1; DELETE FROM t WHERE id = 2", "duckdb")
    st = cache.get("SELECT * FROM t WHERE id = 100; DELETE FROM t WHERE id = 20000", "duckdb")
    assert cache.hits_fingerprint == 1
    assert [p.sql for p in st.parts] == ["SELECT * FROM t WHERE id = 100", "DELETE FROM t WHERE id = 20000"]
    assert st.klass == C.DESTRUCTIVE_DML


@pytest.mark.parametrize("d", ["postgres", "duckdb"])
def test_strings_identifiers_comments_not_folded(d):
    cache = ClassificationCache()
    pairs = [
        ("SELECT set_config('application_name', 'x', false), 1", "SELECT set_config('role', 'x', false), 1"),
        ("SELECT nextval('a'), 1", "SELECT nextval('b'), 1"),
        ("INSERT INTO t1 VALUES (1)", "INSERT INTO t2 VALUES (1)"),
        ("SELECT 1; -- x\n SELECT 2", "SELECT 1; --c\rDELETE FROM users; SELECT 2"),
        ("SELECT 1 FROM t WHERE a = '1'", "SELECT 1 FROM t WHERE a = '2'"),
    ]
    for a, b in pairs:
        cache.get(a, d)  # the first of the pair fills the cache
        sb = cache.get(b, d)
        fb = classify(b, d)
        assert (sb.klass, sb.tables, [p.sql for p in sb.parts]) == (fb.klass, fb.tables, [p.sql for p in fb.parts])
    assert cache.hits_fingerprint == 0
    assert fingerprint("SELECT 'a1'", d) is None  # no number token outside the string
    assert fingerprint("SELECT x FROM t WHERE y = 5", d) is not None


def test_number_that_matters_is_not_fingerprinted():
    cache = ClassificationCache()
    assert cache.get("EXPLAIN (ANALYZE 0) DELETE FROM t", "postgres").klass == C.READ
    assert cache.get("EXPLAIN (ANALYZE 1) DELETE FROM t", "postgres").klass == C.DESTRUCTIVE_DML
    assert cache.hits_fingerprint == 0


def test_exact_hit_returns_same_object():
    cache = ClassificationCache()
    a = cache.get("SELECT * FROM users", "postgres")
    assert cache.get("SELECT * FROM users", "postgres") is a
    assert cache.hits_exact == 1
    assert cache.get("SELECT * FROM users", "duckdb") is not a


def test_cache_is_bounded():
    cache = ClassificationCache(max_entries=50)
    for i in range(200):
        cache.get(f"SELECT {i} AS c{i}", "postgres")
    assert len(cache._exact) <= 50 and len(cache._fp) <= 50


def test_cache_thread_safety():
    cache = ClassificationCache(max_entries=100)
    errors = []

    def work(k):
        try:
            for i in range(150):
                d = "duckdb" if (i + k) % 3 == 0 else "postgres"
                sql = f"SELECT abalance FROM pgbench_accounts WHERE aid = {i % 40}; UPDATE t{k % 2} SET a = {i}"
                st = cache.get(sql, d)
                assert st.klass == C.DESTRUCTIVE_DML and st.sql == sql
                assert [p.sql for p in st.parts] == [p.sql for p in classify(sql, d).parts]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert cache.hits_exact + cache.hits_fingerprint > 0


# --------------------------------------------------------------- properties

def _pool(rows, dialect):
    ok, bad = [], []
    for p in rows:
        r = p.values[1]
        st = classify(r["sql"], dialect)
        if any(part.command in ("PREPARE", "EXECUTE", "DEALLOCATE") for part in st.parts):
            continue
        (bad if st.klass == C.UNPARSEABLE else ok).append((r["sql"], st.klass))
    return ok, bad


# syntax-only errors: they cannot open a quote or comment that swallows later parts
_SYNTAX_ERRORS = {"postgres": ["DELETE FROM", "SELEC 1", "CREATE TABLE t (id int,)", "SELECT * FROM users WHERE"],
                  "duckdb": ["SELEC * FROM users", "SELECT * FROM users WHERE", "DROP TABLE"]}
_POOLS = {d: _pool(rows, d)[0] for d, rows in (("postgres", PG_ROWS), ("duckdb", DUCK_ROWS))}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=st.sampled_from(["postgres", "duckdb"]), data=st.data())
def test_multi_statement_takes_max(d, data):
    picks = data.draw(st.lists(st.sampled_from(_POOLS[d]), min_size=1, max_size=5))
    broken = data.draw(st.one_of(st.none(), st.sampled_from(_SYNTAX_ERRORS[d])))
    texts = [s for s, _ in picks]
    if broken is not None:
        texts.insert(data.draw(st.integers(0, len(texts))), broken)
    sql = "\n;\n".join(texts)  # newline first: a part may end in a -- comment
    st_ = classify(sql, d)
    if broken is not None:
        assert st_.klass == C.UNPARSEABLE
    else:
        assert st_.klass == max(k for _, k in picks)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200), d=st.sampled_from(["postgres", "duckdb"]))
def test_never_raises_on_arbitrary_text(text, d):
    st_ = classify(text, d)
    assert st_.sql == text and isinstance(st_.klass, C)
    assert classify_cached(text, d).klass == st_.klass


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 10**12), m=st.integers(0, 10**6))
def test_fingerprint_hits_match_full_classification(n, m):
    sql = f"UPDATE accounts SET balance = balance + {n} WHERE id = {m}; SELECT {m} FROM t LIMIT {n}"
    for d in ("postgres", "duckdb"):
        got = classify_cached(sql, d)
        want = classify(sql, d)
        assert got.sql == sql
        assert got.klass == want.klass and got.tables == want.tables
        assert [p.sql for p in got.parts] == [p.sql for p in want.parts]


# ------------------------------------------------- fingerprint scanner details

@pytest.mark.parametrize("d", ["postgres", "duckdb"])
def test_parameters_are_not_folded(d):
    fp = fingerprint("SELECT * FROM t WHERE a = $1 AND b = 5", d)
    assert fp is not None and len(fp.spans) == 1
    assert "$1" in "".join(fp.key[1])  # the parameter stays in the key
    assert fingerprint("SELECT $1", d) is None  # nothing to fold
    assert fingerprint("SELECT * FROM t WHERE a = $1 AND b = 5", d).key != \
        fingerprint("SELECT * FROM t WHERE a = $2 AND b = 5", d).key


def test_mixed_parameters_and_literals_get_fingerprint_hits():
    for d in ("postgres", "duckdb"):
        cache = ClassificationCache()
        cache.get("UPDATE accounts SET balance = balance + $1 WHERE id = 17 AND $2 > 0", d)
        sql = "UPDATE accounts SET balance = balance + $1 WHERE id = 123456 AND $2 > 0"
        st = cache.get(sql, d)
        assert cache.hits_fingerprint == 1 and cache.misses == 1, d
        fresh = classify(sql, d)
        assert (st.klass, st.tables, [p.sql for p in st.parts]) == (fresh.klass, fresh.tables,
                                                                     [p.sql for p in fresh.parts])
        assert st.sql == sql and st.klass == C.DESTRUCTIVE_DML


@pytest.mark.parametrize("d", ["postgres", "duckdb"])
def test_digits_in_strings_identifiers_comments_are_never_folded(d):
    def key(sql):
        fp = fingerprint(sql, d)
        return None if fp is None else fp.key

    # each pair differs only in digits that are not numeric constants: never the same key
    pairs = [
        ("SELECT 'a1', 5", "SELECT 'a2', 5"),
        ("SELECT 'it''s 1', 5", "SELECT 'it''s 2', 5"),
        ("SELECT E'\\' 1', 5", "SELECT E'\\' 2', 5"),
        ('SELECT "t1".a FROM "t1", 5', 'SELECT "t2".a FROM "t2", 5'),
        ('SELECT "a""1", 5', 'SELECT "a""2", 5'),
        ("SELECT t1.a FROM t1 WHERE b = 5", "SELECT t2.a FROM t2 WHERE b = 5"),
        ("SELECT x$1 FROM t WHERE b = 5", "SELECT x$2 FROM t WHERE b = 5"),
        ("SELECT 5 /* 1 */", "SELECT 5 /* 2 */"),
        ("SELECT 5 /* a /* 1 */ 1 */", "SELECT 5 /* a /* 1 */ 2 */"),
        ("SELECT 5 -- 1\n", "SELECT 5 -- 2\n"),
        ("SELECT 5 -- 1\r", "SELECT 5 -- 2\r"),
        ("SELECT $$ 1 $$, 5", "SELECT $$ 2 $$, 5"),
        ("SELECT $q$ 1 $q$, 5", "SELECT $q$ 2 $q$, 5"),
        ("SELECT $1, 5", "SELECT $2, 5"),
        ("SELECT 1e5, 5", "SELECT 2e5, 5"),
        ("SELECT 0x1F, 5", "SELECT 0x2F, 5"),
        ("SELECT .1, 5", "SELECT .2, 5"),
    ]
    for a, b in pairs:
        ka, kb = key(a), key(b)
        assert ka is not None and kb is not None, (a, b)
        assert ka != kb, (a, b)
    assert key("SELECT 'a1'") is None and key('SELECT "t1"') is None and key("SELECT 1 AS c1") is not None
    # a plain number after a dollar quote, a nested comment or an E'' string is still folded
    assert key("SELECT $q$ 'x $q$, 5") == key("SELECT $q$ 'x $q$, 66")
    assert key("SELECT /* a /* b */ ' */ 5") == key("SELECT /* a /* b */ ' */ 66")
    assert key("SELECT E'\\'', 5") == key("SELECT E'\\'', 66")
    # unterminated quotes and comments are not fingerprinted
    for sql in ("SELECT 5, 'x", 'SELECT 5, "x', "SELECT 5 /* x", "SELECT 5, $q$ x", "SELECT 5 /* /* */"):
        assert key(sql) is None, sql


@pytest.mark.parametrize("d", ["postgres", "duckdb"])
def test_cr_terminated_comment_before_delete(d):
    sql = "SELECT 1; --c\rDELETE FROM users WHERE id = 5"
    assert classify(sql, d).klass == C.DESTRUCTIVE_DML
    cache = ClassificationCache()
    assert cache.get(sql, d).klass == C.DESTRUCTIVE_DML
    st = cache.get("SELECT 7; --c\rDELETE FROM users WHERE id = 9", d)
    assert st.klass == C.DESTRUCTIVE_DML and st.tables == ("users",)
    # the comment text is part of the key: the hidden DELETE never shares an entry with a plain SELECT
    cache.get("SELECT 1; --c\nSELECT 2", d)
    assert cache.get("SELECT 1; --c\rDELETE FROM users WHERE id = 6", d).klass == C.DESTRUCTIVE_DML
    assert fingerprint("SELECT 1; --c\rDELETE FROM t", d).key != fingerprint("SELECT 1; --c DELETE FROM t", d).key


def test_fingerprint_hit_pgbench_shapes_match_full_classification():
    shapes = ["SELECT abalance FROM pgbench_accounts WHERE aid = {a};",
              "UPDATE pgbench_accounts SET abalance = abalance + {d} WHERE aid = {a};",
              "UPDATE pgbench_tellers SET tbalance = tbalance + -{d} WHERE tid = {a}",
              "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({a}, 1, {a}, {d}, CURRENT_TIMESTAMP);"]
    for d in ("postgres", "duckdb"):
        cache = ClassificationCache()
        for shape in shapes:
            cache.get(shape.format(a=1, d=2), d)
            for a, delta in ((123456, 4999), (7, 0), (99999999, 12)):
                sql = shape.format(a=a, d=delta)
                got, want = cache.get(sql, d), classify(sql, d)
                assert got.sql == sql
                assert (got.klass, got.tables, [p.sql for p in got.parts], [p.targets for p in got.parts]) == \
                    (want.klass, want.tables, [p.sql for p in want.parts], [p.targets for p in want.parts])
        assert cache.hits_fingerprint == 3 * len(shapes), d
