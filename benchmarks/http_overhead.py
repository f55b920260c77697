"""POST /sql overhead: sqlgate against a bare starlette + psycopg pass-through.

    python -m benchmarks http_overhead [--rounds 3] [--duration 5] [--clients 16]
                                       [--profile SECONDS]

Starts a throwaway PostgreSQL 15 with a 10k-row table, then
  A  benchmarks/baseline_http.py under uvicorn (uvloop, httptools, 1 worker):
     JSON in, psycopg pool (AsyncRawCursor, text values from the PGresult), JSON out;
  B  the real `sqlgate serve` (postgres backend), with a `write` token,
and drives both with point selects `SELECT v FROM t WHERE id = $1` (random id)
from N keep-alive HTTP/1.1 connections, interleaved A B A B ..., a fixed time
per round. Requests/s per round, the medians, B/A, and each server's CPU per
request (from /proc, steadier than throughput on a shared machine).

Then classification cost in this process (policy.classify): exact-text cache
hit, fingerprint hit (new numeric literal), miss (unique statement), and a bare
classify() call; medians in microseconds.

The summary compares against docs' targets (PERFORMANCE.md). The exit code is
0 whatever the outcome: a benchmark reports, it does not fail CI.

--profile S: after the rounds, sample each server with py-spy for S seconds under
the same load and print the functions where its CPU goes, in µs per request.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg

from benchmarks.loadgen import LoadResult, generator_name, run_load
from tests.support.pgserver import PgServer, free_port
from tests.support.sqlgate_server import SqlgateServer, stop_process, wait_until_healthy

REPO = Path(__file__).resolve().parents[1]
QUERY = "SELECT v FROM t WHERE id = $1"
TARGET_RATIO = 0.9
TARGET_HIT_US = 10.0
TARGET_MISS_US = 100.0


# ----------------------------------------------------------------- servers

class Baseline:
    """benchmarks/baseline_http.py under uvicorn in a subprocess."""

    def __init__(self, dsn: str, pool_size: int) -> None:
        self.port = free_port()
        self.dsn = dsn
        self.pool_size = pool_size
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Baseline:
        env = {**os.environ, "BASELINE_DSN": self.dsn, "BASELINE_POOL_SIZE": str(self.pool_size)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "benchmarks.baseline_http:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--loop", "uvloop", "--http", "httptools", "--workers", "1",
             "--no-access-log", "--log-level", "warning", "--lifespan", "on"],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_until_healthy(self.process, self.url, 30, "baseline", self.output)
        return self

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def _stop_sqlgate(server: SqlgateServer) -> None:
    if server.process is not None:
        server.stop()
    shutil.rmtree(server.data_dir, ignore_errors=True)


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_pids(pg: PgServer) -> list[int]:
    """The postmaster and its children (backends, background workers)."""
    try:
        postmaster = int((pg.root / "data" / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return []
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            if ppid == postmaster:
                pids.append(int(entry.name))
    return pids


def _check(url: str, token: str | None) -> None:
    """One request by hand: the answer must be 200 with the expected row."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(url + "/sql", json={"query": QUERY, "params": [42]}, headers=headers, timeout=30)
    if r.status_code != 200 or "v42" not in r.text:
        raise RuntimeError(f"{url}/sql answered {r.status_code}: {r.text[:500]}")


# ------------------------------------------------------------ measurement

class Round:
    def __init__(self, name: str, load: LoadResult, server_cpu: float, pg_cpu: float) -> None:
        self.name, self.load, self.server_cpu, self.pg_cpu = name, load, server_cpu, pg_cpu

    def per_request_us(self, cpu: float) -> float:
        return cpu / self.load.requests * 1e6 if self.load.requests else float("nan")


def _measure(name: str, url: str, token: str | None, pid: int, pg: PgServer, args: argparse.Namespace,
             duration: float) -> Round:
    pg_pids = _postgres_pids(pg)
    cpu0, pg0 = _cpu_seconds(pid), sum(_cpu_seconds(p) for p in pg_pids)
    load = run_load(url, QUERY, args.rows, token, clients=args.clients, duration=duration, threads=args.threads)
    cpu1, pg1 = _cpu_seconds(pid), sum(_cpu_seconds(p) for p in pg_pids)
    return Round(name, load, cpu1 - cpu0, pg1 - pg0)


def _classification(iterations: int) -> dict[str, float]:
    """Medians in µs of classify_cached (exact hit, fingerprint hit, miss) and classify."""
    from policy import classify as classify_mod

    classify_cached = classify_mod.classify_cached
    classify = classify_mod.classify
    dialect = "postgres"
    clock = time.perf_counter_ns
    run_id = os.getpid()

    def median_us(samples: list[int]) -> float:
        return statistics.median(samples) / 1000

    # Warm imports and lazily built state (dialects, parser) outside the timings.
    classify("SELECT 1", dialect)
    classify_cached(f"SELECT v FROM t WHERE id = 1 AND v <> 'warm{run_id}'", dialect)

    exact_sql = f"SELECT v FROM t WHERE id = 7 /* exact {run_id} */"
    classify_cached(exact_sql, dialect)
    exact = []
    for _ in range(iterations):
        t0 = clock()
        classify_cached(exact_sql, dialect)
        exact.append(clock() - t0)

    # Same statement, a new numeric literal each time: first one fills the fingerprint entry.
    # (Parameters such as $1 are never folded; a literal makes the statement vary here.)
    fp_prefix = f"SELECT v FROM t /* fingerprint {run_id} */ WHERE id = "
    classify_cached(fp_prefix + "0", dialect)
    fingerprint = []
    for i in range(1, iterations + 1):
        sql = fp_prefix + str(i)
        t0 = clock()
        classify_cached(sql, dialect)
        fingerprint.append(clock() - t0)

    # A different string literal each time: neither cache can answer.
    miss = []
    for i in range(iterations // 2):
        sql = f"SELECT v FROM t WHERE id = 5 AND v <> 'miss{run_id}_{i}'"
        t0 = clock()
        classify_cached(sql, dialect)
        miss.append(clock() - t0)

    bare = []
    for i in range(iterations // 2):
        sql = f"SELECT v FROM t WHERE id = {i}"
        t0 = clock()
        classify(sql, dialect)
        bare.append(clock() - t0)

    hit_kind = None
    cache = getattr(sys.modules.get("policy.fingerprint"), "CACHE", None)
    if cache is not None:
        hit_kind = f"exact hits {cache.hits_exact}, fingerprint hits {cache.hits_fingerprint}, misses {cache.misses}"
    return {"exact": median_us(exact), "fingerprint": median_us(fingerprint), "miss": median_us(miss),
            "classify": median_us(bare), "counters": hit_kind}  # type: ignore[dict-item]


# --------------------------------------------------------------- profiling

def _profile(name: str, url: str, token: str | None, pid: int, args: argparse.Namespace) -> None:
    """Sample one server with py-spy under load; print where its CPU goes, in µs per request."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        print(f"\n--profile: py-spy not found at {py_spy} (pip install py-spy); skipped")
        return
    raw = Path(tempfile.mkdtemp(prefix="sqlgate-prof-")) / f"{name.split()[-1]}-stacks.txt"
    spy = subprocess.Popen([str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
                            "--duration", str(int(args.profile) + 1), "--nonblocking", "--output", str(raw)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        cpu0 = _cpu_seconds(pid)
        load = run_load(url, QUERY, args.rows, token, clients=args.clients, duration=args.profile,
                        threads=args.threads)
        cpu_per_request = (_cpu_seconds(pid) - cpu0) / max(load.requests, 1) * 1e6
        spy.wait(args.profile + 30)
    finally:
        if spy.poll() is None:
            spy.terminate()
            spy.wait()
    if not raw.exists():
        print(f"\n--profile: py-spy wrote nothing: {spy.stderr.read().decode()[-500:] if spy.stderr else ''}")
        return
    total = 0
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f]
        total += n
        if frames:
            self_time[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return
    # py-spy samples the running thread only; coroutine stacks restart at each resume from the event loop.
    scale = cpu_per_request / total
    print(f"\nprofile of {name} (py-spy, {total} samples; {load.rps:.0f} req/s under py-spy;"
          f" {cpu_per_request:.0f} CPU µs per request; raw stacks: {raw})")
    print("  incl µs/req  function (coroutine frames restart at each await)")
    for frame, n in inclusive.most_common(args.profile_top):
        print(f"  {n * scale:11.1f}  {frame}")
    print("  self µs/req  function")
    for frame, n in self_time.most_common(args.profile_top // 2):
        print(f"  {n * scale:11.1f}  {frame}")


# -------------------------------------------------------------------- main

def _table(rows: list[tuple[str, str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  " + "  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks http_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server (interleaved A B A B ...)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load per server first")
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--threads", type=int, default=2, help="load generator threads/processes")
    parser.add_argument("--rows", type=int, default=10_000, help="rows in the table")
    parser.add_argument("--pool-size", type=int, default=10, help="both servers' connection pool size")
    parser.add_argument("--iterations", type=int, default=2000, help="classification samples per case")
    parser.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                        help="then sample each server with py-spy under load for SECONDS")
    parser.add_argument("--profile-top", type=int, default=40, help="functions listed per profile")
    args = parser.parse_args()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with ExitStack() as stack:
            return _run(args, stack)
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, stack: ExitStack) -> int:
    started = time.monotonic()
    print(f"http_overhead: POST /sql point select, {args.clients} clients, {args.rounds} x {args.duration:g} s"
          f" per server interleaved, load generator: {generator_name()}")
    print(f"note: the load generator, both HTTP servers and PostgreSQL share this machine's {os.cpu_count()} cores;"
          " only the same-run ratios mean anything.\n")

    pg = PgServer()
    stack.callback(pg.stop)
    pg.start()
    dsn = pg.create_database("bench")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL)")
        conn.execute("INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, %s) i", (args.rows,))
        conn.execute("VACUUM ANALYZE t")

    baseline = Baseline(dsn, args.pool_size)
    stack.callback(baseline.stop)
    baseline.start()

    sqlgate = SqlgateServer("postgres", database=dsn, extra_args=["--pool-size", str(args.pool_size)])
    stack.callback(_stop_sqlgate, sqlgate)
    sqlgate.start()
    token = sqlgate.token("write", name="bench")["token"]

    _check(baseline.url, None)
    _check(sqlgate.url, token)
    assert baseline.process is not None and sqlgate.process is not None
    servers = {
        "A bare": (baseline.url, None, baseline.process.pid),
        "B sqlgate": (sqlgate.url, token, sqlgate.process.pid),
    }
    for url, tok, _ in servers.values():  # fill pools and caches before measuring
        run_load(url, QUERY, args.rows, tok, clients=args.clients, duration=args.warmup, threads=args.threads)

    rounds: list[Round] = []
    print("round  server      req/s   p50 ms  p99 ms  errors  server CPU µs/req  postgres CPU µs/req")
    for i in range(args.rounds):
        for name, (url, tok, pid) in servers.items():
            r = _measure(name, url, tok, pid, pg, args, args.duration)
            rounds.append(r)
            p50 = f"{r.load.latency_p50_ms:.2f}" if r.load.latency_p50_ms is not None else "-"
            p99 = f"{r.load.latency_p99_ms:.2f}" if r.load.latency_p99_ms is not None else "-"
            print(f"{i + 1:5}  {name:10} {r.load.rps:7.0f}  {p50:>7} {p99:>7}  {r.load.errors:6}"
                  f"  {r.per_request_us(r.server_cpu):17.0f}  {r.per_request_us(r.pg_cpu):19.0f}")

    def med(name: str, what: str) -> float:
        sel = [r for r in rounds if r.name == name]
        values = {
            "rps": [r.load.rps for r in sel],
            "cpu": [r.per_request_us(r.server_cpu) for r in sel],
            "pg": [r.per_request_us(r.pg_cpu) for r in sel],
        }[what]
        return statistics.median(values)

    a_rps, b_rps = med("A bare", "rps"), med("B sqlgate", "rps")
    ratio = b_rps / a_rps if a_rps else float("nan")
    pair_ratios = [b.load.rps / a.load.rps for a, b in zip(rounds[0::2], rounds[1::2]) if a.load.rps]
    a_cpu, b_cpu = med("A bare", "cpu"), med("B sqlgate", "cpu")
    errors = sum(r.load.errors for r in rounds)

    print(f"\nclassification in this process (policy.classify, {args.iterations} samples per case)...")
    cls = _classification(args.iterations)
    if cls.get("counters"):
        print(f"  cache counters: {cls['counters']}")

    if args.profile > 0:
        for name, (url, tok, pid) in servers.items():
            _profile(name, url, tok, pid, args)

    print("\nsummary")
    rows = [("figure", "measured", "target", "verdict")]
    rows.append(("A bare pass-through, req/s (median)", f"{a_rps:.0f}", "-", "-"))
    rows.append(("B sqlgate POST /sql, req/s (median)", f"{b_rps:.0f}", "-", "-"))
    rows.append(("B/A throughput (ratio of medians)", f"{ratio:.3f}", f">= {TARGET_RATIO}",
                 "PASS" if ratio >= TARGET_RATIO else "MISS"))
    rows.append(("B/A per interleaved pair", " ".join(f"{x:.3f}" for x in pair_ratios), "-", "-"))
    rows.append(("server CPU per request, A / B (µs)", f"{a_cpu:.0f} / {b_cpu:.0f}", "-",
                 f"sqlgate adds {b_cpu - a_cpu:.0f} µs"))
    rows.append(("postgres CPU per request, A / B (µs)", f"{med('A bare', 'pg'):.0f} / {med('B sqlgate', 'pg'):.0f}",
                 "-", "-"))
    rows.append(("classify_cached, exact hit (µs, median)", f"{cls['exact']:.1f}", f"<= {TARGET_HIT_US:g}",
                 "PASS" if cls["exact"] <= TARGET_HIT_US else "MISS"))
    rows.append(("classify_cached, fingerprint hit (µs, median)", f"{cls['fingerprint']:.1f}", f"<= {TARGET_HIT_US:g}",
                 "PASS" if cls["fingerprint"] <= TARGET_HIT_US else "MISS"))
    rows.append(("classify_cached, miss (µs, median)", f"{cls['miss']:.1f}", f"<= {TARGET_MISS_US:g}",
                 "PASS" if cls["miss"] <= TARGET_MISS_US else "MISS"))
    rows.append(("classify, no cache (µs, median)", f"{cls['classify']:.1f}", "-", "-"))
    _table(rows)
    if errors:
        print(f"\nwarning: {errors} failed requests (non-2xx or socket errors) during the measured rounds")
    print(f"\nload generator: {generator_name()} ({args.threads} threads) on the same 2 cores as the servers and "
          f"PostgreSQL; wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
