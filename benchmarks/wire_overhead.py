"""pgbench through the wire: direct to PostgreSQL, through PgBouncer, through
a bare Python relay (benchmarks/baseline_relay.py) and through sqlgate,
interleaved in one run (PERFORMANCE.md: only same-run ratios mean anything).
Workloads: select-only (-S) and TPC-B-like, each in simple and prepared query
mode, with 8 clients. Besides TPS and latency it prints each proxy's CPU time
per transaction (from /proc), the figure the machine's noise disturbs least.

    python -m benchmarks wire_overhead [--duration 5] [--rounds 2] [--clients 8] [--scale 4]
                                       [--workloads select-only/simple,tpcb-like]

PgBouncer 1.18 (Debian 12) pools by transaction but cannot keep prepared
statements across transactions, so prepared runs go through a session-pooled
database entry of the same PgBouncer; its rows say so.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.pgserver import OS_USER, PgServer, free_port
from tests.support.sqlgate_server import SqlgateServer

WORKLOADS = [("select-only", "simple", ["-S"]), ("select-only", "prepared", ["-S"]),
             ("tpcb-like", "simple", []), ("tpcb-like", "prepared", [])]


def start_pgbouncer(pg: PgServer, dbname: str, clients: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="sqlgate-pgbouncer-"))
    shutil.chown(root, OS_USER)
    conn = f"host=127.0.0.1 port={pg.port} dbname={dbname} user={pg.superuser} password={pg.password}"
    (root / "pgbouncer.ini").write_text(f"""[databases]
{dbname} = {conn} pool_mode=transaction pool_size={clients}
{dbname}_session = {conn} pool_mode=session pool_size={clients}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root / "users.txt"}
pool_mode = transaction
max_client_conn = 200
default_pool_size = {clients}
logfile = {root / "pgbouncer.log"}
pidfile = {root / "pgbouncer.pid"}
ignore_startup_parameters = extra_float_digits
""")
    (root / "users.txt").write_text(f'"{pg.superuser}" ""\n')
    for f in root.iterdir():
        shutil.chown(f, OS_USER)
    proc = subprocess.Popen(["runuser", "-u", OS_USER, "--", "pgbouncer", str(root / "pgbouncer.ini")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", pg.superuser, "-c", "SELECT 1",
                            dbname], capture_output=True, env={**os.environ, "PGPASSWORD": ""})
        if r.returncode == 0:
            return proc, port, root
        time.sleep(0.2)
    raise RuntimeError("pgbouncer did not start: " + (root / "pgbouncer.log").read_text()[-2000:])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (runuser starts pgbouncer as a child), those
    that exited included (PostgreSQL's backends for direct connections end with each pgbench run)."""
    total, todo = 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15]) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def pgbench(port: int, user: str, password: str, dbname: str, mode: str, extra: list[str], clients: int,
            duration: float) -> tuple[float, float, int]:
    args = ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-n", "-M", mode, "-c", str(clients),
            "-j", "2", "-T", str(int(duration)), *extra, dbname]
    r = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": password},
                       timeout=duration * 4 + 60)
    tps = re.search(r"tps = ([\d.]+) \(without initial", r.stdout)
    lat = re.search(r"latency average = ([\d.]+) ms", r.stdout)
    done = re.search(r"number of transactions actually processed: (\d+)", r.stdout)
    if r.returncode != 0 or not tps or not lat or not done:
        errors = [line for line in r.stderr.splitlines() if not line.startswith("NOTICE:")]
        print(f"  pgbench failed ({' '.join(args[1:])}): {' | '.join(errors)[-600:]}", file=sys.stderr)
        return 0.0, 0.0, 0
    return float(tps.group(1)), float(lat.group(1)), int(done.group(1))


def _wanted(workload: tuple[str, str, list[str]], spec: str) -> bool:
    """Whether a (workload, mode, _) matches the --workloads filter: each item is a
    workload name, a mode, or workload/mode."""
    if not spec:
        return True
    name, mode, _ = workload
    return any(item in (name, mode, f"{name}/{mode}") for item in spec.split(",") if item)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks wire_overhead")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per pgbench run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median reported)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--workloads", default="",
                        help="comma-separated filter, e.g. select-only or select-only/simple (default: all)")
    args = parser.parse_args()
    workloads = [w for w in WORKLOADS if _wanted(w, args.workloads)]
    if not workloads:
        parser.error(f"no workload matches {args.workloads!r}")

    pg = PgServer().start()
    sqlgate: SqlgateServer | None = None
    bouncer: subprocess.Popen[bytes] | None = None
    relay: subprocess.Popen[bytes] | None = None
    try:
        dsn = pg.create_database("bench")
        subprocess.run(["pgbench", "-i", "-q", "-s", str(args.scale), dsn], check=True, capture_output=True)
        wire_port = free_port()
        sqlgate = SqlgateServer("postgres", dsn, ["--pg", f"127.0.0.1:{wire_port}", "--pool-size",
                                                  str(args.clients + 2)]).start()
        bouncer, bouncer_port, _ = start_pgbouncer(pg, "bench", args.clients)
        relay_port = free_port()
        relay = subprocess.Popen([sys.executable, "-m", "benchmarks.baseline_relay", str(relay_port), str(pg.port)])
        time.sleep(0.5)
        targets = {
            "direct": lambda mode: (pg.port, pg.superuser, pg.password, "bench"),
            "pgbouncer": lambda mode: (bouncer_port, pg.superuser, "",
                                       "bench" if mode == "simple" else "bench_session"),
            "relay": lambda mode: (relay_port, pg.superuser, pg.password, "bench"),
            "sqlgate": lambda mode: (wire_port, "bench", sqlgate.admin_token, "main"),
        }
        processes = {"pgbouncer": bouncer.pid, "relay": relay.pid, "sqlgate": sqlgate.process.pid}  # type: ignore[union-attr]
        # The server's CPU per transaction too: what a proxy adds there (checkpoints, traces) costs TPS as well.
        postmaster = int((pg.root / "data" / "postmaster.pid").read_text().split()[0])
        # One TPC-B transaction first, alone: the first checkpoint of each table installs its capture
        # triggers, which concurrent first checkpoints would race on (see the wire report).
        subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(wire_port), "-U", "bench", "-n", "-t", "1", "main"],
                       capture_output=True, env={**os.environ, "PGPASSWORD": sqlgate.admin_token}, check=True)
        results: dict[tuple[str, str, str], list[tuple[float, float, float, float]]] = {}
        print(f"pgbench, {args.clients} clients, scale {args.scale}, {args.duration:g} s runs, "
              f"{args.rounds} interleaved rounds", flush=True)
        for round_no in range(args.rounds):
            for workload, mode, extra in workloads:
                for name, target in targets.items():
                    port, user, password, db = target(mode)
                    cpu_before = cpu_seconds(processes[name]) if name in processes else 0.0
                    db_before = cpu_seconds(postmaster)
                    tps, lat, done = pgbench(port, user, password, db, mode, extra, args.clients, args.duration)
                    cpu_us = ((cpu_seconds(processes[name]) - cpu_before) * 1e6 / done
                              if name in processes and done else 0.0)
                    db_us = (cpu_seconds(postmaster) - db_before) * 1e6 / done if done else 0.0
                    results.setdefault((workload, mode, name), []).append((tps, lat, cpu_us, db_us))
                    print(f"  round {round_no + 1} {workload:11} {mode:8} {name:9} tps {tps:9.1f}  lat {lat:7.3f} ms"
                          f"  proxy cpu {cpu_us:6.1f} us/tx  postgres cpu {db_us:6.1f} us/tx", flush=True)
        print()
        print(f"{'workload':12} {'mode':9} {'direct':>8} {'bouncer':>8} {'relay':>8} {'sqlgate':>8} "
              f"{'sg/direct':>9} {'sg/bouncer':>10} {'sg/relay':>8}  {'proxy cpu us/tx b/r/s':>22}"
              f"  {'postgres cpu us/tx d/b/r/s':>27}")
        for workload, mode, _ in workloads:
            med = {name: tuple(statistics.median(r[i] for r in results[(workload, mode, name)]) for i in range(4))
                   for name in targets}
            d, b, r, s = (med[n][0] for n in ("direct", "pgbouncer", "relay", "sqlgate"))
            cpu = "/".join(f"{med[n][2]:.0f}" for n in ("pgbouncer", "relay", "sqlgate"))
            db_cpu = "/".join(f"{med[n][3]:.0f}" for n in ("direct", "pgbouncer", "relay", "sqlgate"))
            note = " (bouncer: session pool)" if mode == "prepared" else ""
            print(f"{workload:12} {mode:9} {d:8.0f} {b:8.0f} {r:8.0f} {s:8.0f} {s / d if d else 0:9.2f} "
                  f"{s / b if b else 0:10.2f} {s / r if r else 0:8.2f}  {cpu:>22}  {db_cpu:>27}{note}")
        return 0
    finally:
        for proc in (bouncer, relay):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
        if sqlgate is not None:
            sqlgate.stop()
        pg.stop()


if __name__ == "__main__":
    sys.exit(main())
