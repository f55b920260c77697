"""The classification cache's quick ways to a hit (policy/fingerprint.py): the
template match that skips the fingerprint scan must agree with `fingerprint`
itself, and no cache hit, by any way, may hand one statement another's
classification."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.classify import classify
from policy.fingerprint import TEMPLATE_PREFIX, ClassificationCache, fingerprint, match_template

DIALECTS = ["postgres", "duckdb"]


def _same(a, b) -> bool:
    return (a.klass, a.tables, [p.sql for p in a.parts], [p.command for p in a.parts],
            [p.targets for p in a.parts], [p.touches_meta for p in a.parts]) == \
        (b.klass, b.tables, [p.sql for p in b.parts], [p.command for p in b.parts],
         [p.targets for p in b.parts], [p.touches_meta for p in b.parts])


def _warm(cache: ClassificationCache, sql: str, d: str) -> None:
    """Classify `sql` and a copy with other numbers, so its template is remembered."""
    cache.get(sql, d)
    fp = fingerprint(sql, d)
    if fp is not None:
        other = sql
        for s, e in reversed(fp.spans):
            other = other[:s] + str(int(float(sql[s:e])) + 7) + other[e:]
        cache.get(other, d)


# ------------------------------------------------------ template == fingerprint

def _agrees(sql: str, segments: tuple[str, ...], d: str) -> None:
    """Whenever the template matches, `fingerprint` gives the same key and spans."""
    spans = match_template(sql, segments)
    if spans is not None:
        fp = fingerprint(sql, d)
        assert fp is not None, sql
        assert fp.key == (d, segments), sql
        assert fp.spans == spans, sql


SHAPES = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
    "UPDATE pgbench_accounts SET abalance = abalance + {} WHERE aid = {};",
    "SELECT * FROM items WHERE price > {} AND id < {} ORDER BY id LIMIT {}",
    "SELECT a1, x$2, \"c3\" FROM t WHERE y = {} /* 7 */ -- 8\n AND z = {}",
    "SELECT 'it''s 5', E'\\\\ 6', $$ 7 $$, $q$ 8 $q$ FROM t WHERE a = {}",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({}, {}, {}, {}, CURRENT_TIMESTAMP);",
    "SELECT {}",
]
NUMBERS = ["0", "7", "12345", "1.5", "00012", "3.14159", "99999999999999999999"]
NOT_NUMBERS = ["1e5", "0x1F", "1_000", "1.", ".5", "1.5.3", "12a", "a", "'1'", "$1", "-1", "1e+5", "١٢", "1 ", " 1",
               "1;DROP TABLE t", "1 OR 1=1", "1/*", "1--", ""]


@pytest.mark.parametrize("d", DIALECTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_template_match_agrees_with_fingerprint(shape: str, d: str) -> None:
    n = shape.count("{}")
    base = shape.format(*["1"] * n)
    fp = fingerprint(base, d)
    assert fp is not None
    segments = fp.key[1]
    rng = random.Random(shape)
    for _ in range(300):
        values = [rng.choice(NUMBERS + NOT_NUMBERS) for _ in range(n)]
        sql = shape.format(*values)
        _agrees(sql, segments, d)
        if all(v in NUMBERS for v in values):
            assert match_template(sql, segments) is not None, sql  # and it does match what it should


_ALPHABET = "0123456789.eEx$_aZ '\"-/*+;\n\\,=()"


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=st.text(alphabet=_ALPHABET, max_size=40), b=st.text(alphabet=_ALPHABET, max_size=40),
       d=st.sampled_from(DIALECTS))
def test_template_match_never_disagrees_on_arbitrary_text(a: str, b: str, d: str) -> None:
    fp = fingerprint(a, d)
    if fp is None:
        return
    _agrees(b, fp.key[1], d)
    # b's numbers put in a's places: the likeliest way to fool a template
    fb = fingerprint(b, d)
    if fb is not None:
        mixed = a
        for (s, e), (bs, be) in zip(reversed(fp.spans), reversed(fb.spans)):
            mixed = mixed[:s] + b[bs:be] + mixed[e:]
        _agrees(mixed, fp.key[1], d)
    for (s, e) in fp.spans:  # one number changed into something else
        for other in NOT_NUMBERS:
            _agrees(a[:s] + other + a[e:], fp.key[1], d)


# --------------------------------------------- no hit returns another statement's class

PAIRS = [
    # an identifier
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1", "SELECT abalance FROM pgbench_accounts WHERE bid = 1"),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1", "SELECT abalance FROM pgbench_tellers1 WHERE aid = 1"),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1", "SELECT abalance FROM sqlgate.tokens WHERE aid = 1"),
    # a keyword
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1", "DELETE FROM pgbench_accounts WHERE aid = 1"),
    ("SELECT * FROM pgbench_accounts WHERE aid = 1 LIMIT 5", "SELECT * FROM pgbench_accounts WHERE aid = 1 FOR UPDATE"),
    ("EXPLAIN (ANALYZE 0) DELETE FROM pgbench_accounts", "EXPLAIN (ANALYZE 1) DELETE FROM pgbench_accounts"),
    # a quoted identifier vs a string literal
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 'x' AND bid = 1",
     "SELECT abalance FROM pgbench_accounts WHERE aid = \"x\" AND bid = 1"),
    ("SELECT set_config('search_path_x', 'a', false), 1 FROM pgbench_accounts",
     "SELECT set_config('search_path', 'sqlgate', false), 1 FROM pgbench_accounts"),
    # a comment containing SQL
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1 -- ; DELETE FROM pgbench_accounts\n",
     "SELECT abalance FROM pgbench_accounts WHERE aid = 1 --\r; DELETE FROM pgbench_accounts\n"),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1 /* DELETE FROM t */",
     "SELECT abalance FROM pgbench_accounts WHERE aid = 1 /* /* */ DELETE FROM t */"),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1 /* x */; SELECT 2",
     "SELECT abalance FROM pgbench_accounts WHERE aid = 1 /* x */; DROP TABLE pgbench_accounts"),
    # dollar quotes
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1 AND $$ ; DELETE FROM t $$ = 'a'",
     "SELECT abalance FROM pgbench_accounts WHERE aid = 1 AND $a$ $$; DELETE FROM t; $$ $a$ = 'a'"),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1 AND $q$ x $q$ = 'a'",
     "SELECT abalance FROM pgbench_accounts WHERE aid = 1 AND $q$ x $q$ = 'a'; DROP TABLE pgbench_accounts"),
    # numbers next to what changes their meaning
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1", "SELECT abalance FROM pgbench_accounts WHERE aid = 1e5"),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1", "SELECT abalance FROM pgbench_accounts WHERE aid = $1"),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1",
     "SELECT abalance FROM pgbench_accounts WHERE aid = 1; DELETE FROM pgbench_accounts"),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1", "SELECT abalance FROM pgbench_accounts WHERE aid = 1--"),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1.5",
     "SELECT abalance FROM pgbench_accounts WHERE aid = 1.5.3"),
]


@pytest.mark.parametrize("d", DIALECTS)
@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_a_hit_never_returns_another_statements_classification(a: str, b: str, d: str) -> None:
    cache = ClassificationCache()
    _warm(cache, a, d)  # a, and a with other numbers: its fingerprint and template are stored
    got = cache.get(b, d)
    want = classify(b, d)
    assert got.sql == b
    assert _same(got, want), (a, b)
    assert _same(cache.get(b, d), want)  # and from the exact cache


@pytest.mark.parametrize("d", DIALECTS)
def test_template_hits_are_counted_and_match_full_classification(d: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import policy.fingerprint as module

    scans = []
    real = module.fingerprint
    monkeypatch.setattr(module, "fingerprint", lambda sql, dialect: scans.append(sql) or real(sql, dialect))
    cache = ClassificationCache()
    shape = "SELECT abalance FROM pgbench_accounts WHERE aid = {} AND bid < {};"
    assert len(shape.split("{}")[0]) >= TEMPLATE_PREFIX
    cache.get(shape.format(1, 2), d)
    cache.get(shape.format(3, 4), d)  # a fingerprint hit
    assert (cache.misses, cache.hits_fingerprint) == (1, 1)
    before = len(cache._templates)
    for i in range(50):
        sql = shape.format(1000 + i, f"{i}.5")
        got = cache.get(sql, d)
        assert got.sql == sql and _same(got, classify(sql, d))
    assert (cache.misses, cache.hits_fingerprint) == (1, 51)
    assert len(scans) == 1  # only the miss was scanned: every hit came through its template
    assert len(cache._templates) == before


def test_templates_of_other_statements_with_one_prefix_stay_apart() -> None:
    cache = ClassificationCache()
    statements = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = {}",
        "SELECT abalance FROM pgbench_accounts WHERE aid = {} FOR UPDATE",
        "SELECT abalance FROM pgbench_accounts WHERE aid = {}; DELETE FROM pgbench_accounts",
        "SELECT abalance FROM pgbench_accounts WHERE aid = {} UNION SELECT 1 FROM sqlgate.tokens",
        "SELECT abalance FROM pgbench_accounts WHERE aid = {} -- {}",
        "SELECT abalance FROM pgbench_accounts WHERE bid = {}",
    ]
    for shape in statements:
        _warm(cache, shape.format(1, 2), "postgres")
    rng = random.Random(5)
    for _ in range(300):
        shape = rng.choice(statements)
        sql = shape.format(rng.randint(0, 10**6), rng.randint(0, 9))
        assert _same(cache.get(sql, "postgres"), classify(sql, "postgres")), sql


def test_a_template_whose_entry_was_evicted_is_classified_afresh() -> None:
    cache = ClassificationCache(max_entries=3)
    shape = "SELECT abalance FROM pgbench_accounts WHERE aid = {}"
    _warm(cache, shape.format(1), "postgres")
    for i in range(5):  # other fingerprints push it out
        _warm(cache, f"SELECT {i} AS c{i} FROM pgbench_branches WHERE bid = 7", "postgres")
    sql = shape.format(424242)
    got = cache.get(sql, "postgres")
    assert got.sql == sql and _same(got, classify(sql, "postgres"))
    assert len(cache._templates) <= 3


def test_an_overlong_number_is_not_cached_through_a_template() -> None:
    cache = ClassificationCache()
    shape = "SELECT abalance FROM pgbench_accounts WHERE aid = {}"
    _warm(cache, shape.format(1), "postgres")
    sql = shape.format("9" * 20000)
    got = cache.get(sql, "postgres")
    assert _same(got, classify(sql, "postgres"))
    assert ("postgres", sql) not in cache._exact


def test_template_hits_leave_the_exact_level_alone() -> None:
    """Text that differs only in its numbers hits through its template, and is not stored as exact text:
    pgbench's random keys would otherwise insert (and evict) one exact entry per statement."""
    cache = ClassificationCache()
    shape = "SELECT abalance FROM pgbench_accounts WHERE aid = {};"
    _warm(cache, shape.format(1), "postgres")
    exact = len(cache._exact)
    hits = cache.hits_fingerprint
    for aid in range(1000, 1100):
        got = cache.get(shape.format(aid), "postgres")
        assert got.sql == shape.format(aid) and got.parts[0].sql == shape.format(aid)[:-1]
    assert cache.hits_fingerprint == hits + 100 and cache.misses == 1
    assert len(cache._exact) == exact
