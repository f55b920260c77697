"""What a checkpoint costs: the same destructive statement with and without it.

    python -m benchmarks checkpoint_cost [--sizes 10000,1000000] [--rounds 15] [--drops 4]
                                         [--backends postgres,duckdb]

In process, on the real backends (a throwaway PostgreSQL, a DuckDB file).
"session": through the same Session the pipeline uses, one transaction per
statement (the checkpoint's own cost against the bare statement);
"pipeline": through proxy.pipeline.Pipeline as a request runs (classify,
policy, session, traces committed with it), with the real checkpointer
against one that keeps nothing. Each:
  DELETE and UPDATE of 100 rows (by key range) from an N-row table: a table that
  has never been checkpointed (so no capture triggers) without, its twin with;
  DROP TABLE and DROP COLUMN (the last one) of an N-row table (fresh tables,
  built before timing; DuckDB's have no primary key, as DuckDB cannot alter an
  indexed table);
  the rollback of each (rows: mode statement; DROP: bringing it back).
Runs alternate without/with (interleaved) and the medians are compared. The
targets (PERFORMANCE.md): DELETE ≤ 1.5x, DROP TABLE ≤ 2x, the same at every
size; UPDATE and DROP COLUMN have none, but must not grow with the table.
Exit code 0 whatever the outcome: a benchmark reports.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from branching.checkpoint import Checkpoint, CheckpointContext
from policy.classify import classify
from proxy.backends.base import BackendRole
from tests.support.pgserver import PgServer

CTX = CheckpointContext("bench", None, "main", "tr_bench")
TARGETS: dict[str, float | None] = {
    "DELETE 100 rows (session)": 1.5, "DELETE 100 rows (pipeline)": 1.5, "UPDATE 100 rows (session)": None,
    "DROP TABLE (session)": 2.0, "DROP COLUMN (session)": None,
}


async def run_statement(backend: Any, checkpointer: Any, sql: str, with_cp: bool) -> tuple[float, str | None]:
    part = classify(sql, backend.dialect).parts[0]
    async with backend.session(BackendRole.OWNER, "main", True) as session:
        started = time.perf_counter()
        await session.begin()
        cp = await checkpointer.take(session, part, CTX) if with_cp else None
        if cp is not None and cp.run is not None:  # as the pipeline runs it
            await cp.run(lambda: session.execute(part.sql, None, part.command), None)
        else:
            await session.execute(part.sql, None, part.command)
        await session.commit()
        return (time.perf_counter() - started) * 1000, cp.id if cp else None


class KeepNothing:
    """The "without" of the pipeline runs: a checkpointer that keeps nothing."""

    async def take(self, session: Any, part: Any, context: Any) -> Checkpoint:
        return Checkpoint("cp_none", part.tables, "none")


def pipelines(backend: Any, checkpointer: Any) -> tuple[Any, Any, Any, Any]:
    from policy.identity import Identity, Role, Token
    from proxy.pipeline import Pipeline
    from proxy.trace_sink import TraceSink

    traces = TraceSink(backend.meta)
    traces.start()
    token = Token("tok_bench", "bench", Role.ADMIN, "x", datetime.now(UTC), None)
    return (Pipeline(backend, traces, checkpointer=KeepNothing()), Pipeline(backend, traces, checkpointer=checkpointer),
            Identity(token, "bench"), traces)


async def run_request(pipeline: Any, identity: Any, sql: str) -> tuple[float, str | None]:
    from proxy.pipeline import Query, Request

    started = time.perf_counter()
    response = await pipeline.run(Request(identity, (Query(sql),)))
    elapsed = (time.perf_counter() - started) * 1000
    cp = response.steps[0].checkpoint
    return elapsed, cp.id if cp is not None and cp.id != "cp_none" else None


async def admin(backend: Any, sql: str) -> None:
    async with backend.session(BackendRole.OWNER, "main", True) as session:
        await session.execute(sql, None, "")


def table_sql(dialect: str, name: str, rows: int, key: bool = True) -> str:
    if dialect == "postgres":
        return (f"CREATE TABLE {name} AS SELECT i AS id, md5(i::text) AS payload, i % 97 AS bucket"
                f" FROM generate_series(1, {rows}) g(i); ALTER TABLE {name} ADD PRIMARY KEY (id)")
    return (f"CREATE TABLE {name} (id BIGINT{' PRIMARY KEY' if key else ''}, payload VARCHAR, bucket INTEGER);"
            f" INSERT INTO {name} SELECT i, md5(i::VARCHAR), i % 97 FROM range(1, {rows + 1}) r(i)")


async def bench_fresh(backend: Any, checkpointer: Any, label: str, statement: str, size: int, drops: int,
                      key: bool = True) -> tuple[str, int, float, float, float]:
    """A statement on fresh N-row tables (built before timing), plain against checkpointed, and its rollback."""
    kind = label.split()[1].lower()
    tables = [f"bench_{kind}_{variant}_{size}_{i}" for i in range(drops) for variant in ("plain", "cp")]
    for table in tables:
        for part in table_sql(backend.dialect, table, size, key).split("; "):
            await admin(backend, part)
    without, with_, undo = [], [], []
    for i in range(drops):
        t, _ = await run_statement(backend, checkpointer, statement.format(t=tables[2 * i]), False)
        without.append(t)
        t, cp = await run_statement(backend, checkpointer, statement.format(t=tables[2 * i + 1]), True)
        with_.append(t)
        started = time.perf_counter()
        await checkpointer.rollback(cp, "all")
        undo.append((time.perf_counter() - started) * 1000)
    for table in tables:
        await admin(backend, f"DROP TABLE IF EXISTS {table}")  # really, this time: reclaim the space
    return label, size, statistics.median(without), statistics.median(with_), statistics.median(undo)


async def bench_backend(name: str, backend: Any, checkpointer: Any, sizes: list[int], rounds: int,
                        drops: int) -> list[tuple[str, int, float, float, float]]:
    results = []
    for size in sizes:
        for variant in ("plain", "cp"):
            for statement in table_sql(backend.dialect, f"bench_{variant}_{size}", size).split("; "):
                await admin(backend, statement)
        # Warm up: the first checkpoint of a table installs its capture (PostgreSQL).
        await run_statement(backend, checkpointer, f"DELETE FROM bench_cp_{size} WHERE id = 0", True)
        await run_statement(backend, checkpointer, f"DELETE FROM bench_plain_{size} WHERE id = 0", False)
        for level in ("session", "pipeline"):
            plain, keeping, identity, traces = pipelines(backend, checkpointer)
            without, with_, undo = [], [], []
            for r in range(rounds):
                lo = 1 + r * 100 + (0 if level == "session" else 50_000 if size > 100_000 else 5_000)
                plain_sql = f"DELETE FROM bench_plain_{size} WHERE id BETWEEN {lo} AND {lo + 99}"
                cp_sql = f"DELETE FROM bench_cp_{size} WHERE id BETWEEN {lo} AND {lo + 99}"
                if level == "session":
                    t, _ = await run_statement(backend, checkpointer, plain_sql, False)
                    without.append(t)
                    t, cp = await run_statement(backend, checkpointer, cp_sql, True)
                else:
                    t, _ = await run_request(plain, identity, plain_sql)
                    without.append(t)
                    t, cp = await run_request(keeping, identity, cp_sql)
                with_.append(t)
                started = time.perf_counter()
                await checkpointer.rollback(cp, "statement")
                undo.append((time.perf_counter() - started) * 1000)
            await traces.close()
            results.append((f"DELETE 100 rows ({level})", size, statistics.median(without), statistics.median(with_),
                            statistics.median(undo)))
        without, with_, undo = [], [], []
        for r in range(rounds):  # UPDATE: the rows just deleted and restored above are back, any range will do
            lo = 1 + r * 100
            t, _ = await run_statement(backend, checkpointer, f"UPDATE bench_plain_{size} SET bucket = bucket + 1"
                                                              f" WHERE id BETWEEN {lo} AND {lo + 99}", False)
            without.append(t)
            t, cp = await run_statement(backend, checkpointer, f"UPDATE bench_cp_{size} SET bucket = bucket + 1"
                                                               f" WHERE id BETWEEN {lo} AND {lo + 99}", True)
            with_.append(t)
            started = time.perf_counter()
            await checkpointer.rollback(cp, "statement")
            undo.append((time.perf_counter() - started) * 1000)
        results.append(("UPDATE 100 rows (session)", size, statistics.median(without), statistics.median(with_),
                        statistics.median(undo)))
        results.append(await bench_fresh(backend, checkpointer, "DROP TABLE (session)", "DROP TABLE {t}", size, drops))
        results.append(await bench_fresh(backend, checkpointer, "DROP COLUMN (session)",
                                         "ALTER TABLE {t} DROP COLUMN bucket", size, drops,
                                         key=backend.dialect == "postgres"))
        await admin(backend, f"DROP TABLE bench_plain_{size}")
        await admin(backend, f"DROP TABLE bench_cp_{size}")
        print(f"  {name}: {size:,} rows done", flush=True)
    return results


async def start(name: str, pg: PgServer | None, workdir: Path) -> tuple[Any, Any]:
    from branching.setup import install

    if name == "postgres":
        from proxy.backends.postgres import PostgresBackend

        assert pg is not None
        backend: Any = PostgresBackend(pg.create_database("bench_checkpoints"), 4, "600s", "600s")
    else:
        from proxy.backends.duckdb import DuckDBBackend

        backend = DuckDBBackend(workdir / "bench.duckdb", 600.0)
    await backend.start()
    checkpointer = await install(backend)
    return backend, checkpointer


async def amain(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    pg = PgServer().start() if "postgres" in backends else None
    rows: list[tuple[str, str, int, float, float, float]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in backends:
                backend, checkpointer = await start(name, pg, Path(tmp))
                try:
                    for kind, size, without, with_, undo in await bench_backend(
                            name, backend, checkpointer, sizes, args.rounds, args.drops):
                        rows.append((name, kind, size, without, with_, undo))
                finally:
                    checkpointer.purger.cancel()
                    await backend.close()
    finally:
        if pg is not None:
            pg.stop()
    print(f"\n{'backend':<9} {'statement':<27} {'rows':>10} {'without ms':>11} {'with ms':>9} {'ratio':>6}"
          f" {'target':>7} {'rollback ms':>12}")
    for name, kind, size, without, with_, undo in rows:
        ratio = with_ / without if without else float("inf")
        target = TARGETS[kind]
        verdict = "" if target is None else "ok" if ratio <= target else "MISS"
        print(f"{name:<9} {kind:<27} {size:>10,} {without:>11.2f} {with_:>9.2f} {ratio:>6.2f}"
              f" {'<=' + str(target) if target else '-':>5} {verdict:<4} {undo:>9.2f}")
    for name in backends:
        for kind in TARGETS:
            ratios = [r[4] / r[3] for r in rows if r[0] == name and r[1] == kind]
            if len(ratios) > 1:
                print(f"{name} {kind}: ratio at largest / smallest size = {ratios[-1] / ratios[0]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks checkpoint_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--drops", type=int, default=4)
    parser.add_argument("--backends", default="postgres,duckdb")
    asyncio.run(amain(parser.parse_args()))
    return 0
