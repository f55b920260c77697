"""The `sqlgate` command: `serve` starts the server; the other subcommands
are clients of a running server's HTTP API."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from proxy.config import Settings

DEFAULT_URL = "http://127.0.0.1:8080"


def host_port(value: str, default_port: int) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, default_port
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sqlgate", description="A SQL proxy for AI agents.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the server (embedded DuckDB unless --database is given)")
    serve.add_argument("--database", help="postgresql://user:pass@host:5432/db (default: embedded DuckDB)")
    serve.add_argument("--data", default="sqlgate-data", help="directory for the DuckDB file and admin.token")
    serve.add_argument("--http", default="127.0.0.1:8080", help="HTTP address, HOST:PORT")
    serve.add_argument("--pg", default="127.0.0.1:6543", help="PostgreSQL wire protocol address, HOST:PORT")
    serve.add_argument("--tls-cert", type=Path)
    serve.add_argument("--tls-key", type=Path)
    serve.add_argument("--insecure", action="store_true", help="allow a non-loopback address without TLS")
    serve.add_argument("--statement-timeout", type=float, default=30.0, help="seconds (default 30)")
    serve.add_argument("--pool-size", type=int, default=10,
                       help="backend connections per login (default 10; the wire relay keeps as many again)")
    serve.add_argument("--checkpoint-retention-days", type=float, default=7.0,
                       help="days a checkpoint (and what it kept) can be rolled back to (default 7)")
    serve.add_argument("--pg-idle-timeout", type=float, default=3600.0,
                       help="seconds before an idle wire-protocol client is disconnected (default 3600)")
    serve.add_argument("--no-wire-relay", dest="wire_relay", action="store_false",
                       help="send every wire statement through the full pipeline, plain reads included"
                            " (by default they are relayed to PostgreSQL as bytes)")

    def client(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--server", default=os.environ.get("SQLGATE_URL", DEFAULT_URL))
        p.add_argument("--token", default=os.environ.get("SQLGATE_TOKEN"),
                       help="defaults to $SQLGATE_TOKEN, then DATA/admin.token")
        p.add_argument("--data", default="sqlgate-data")
        return p

    log = client("log", "print recent traces as a table")
    log.add_argument("--actor")
    log.add_argument("--branch")
    log.add_argument("--class", dest="klass")
    log.add_argument("--since")
    log.add_argument("--outcome")
    log.add_argument("--limit", type=int, default=30)
    log.add_argument("--json", action="store_true", help="print JSON instead of a table")

    rollback = client("rollback", "undo a destructive statement by its checkpoint id")
    rollback.add_argument("checkpoint", help="cp_... (from the statement's answer, or `sqlgate checkpoints`)")
    rollback.add_argument("--mode", choices=["all", "statement"], default="all",
                          help="all: back to just before the statement (default); statement: undo only it")
    rollback.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")

    checkpoints = client("checkpoints", "list checkpoints with their size, age and expiry")
    checkpoints.add_argument("--actor")
    checkpoints.add_argument("--limit", type=int, default=30)

    token = client("token", "create, list or revoke tokens")
    token.add_argument("action", choices=["create", "list", "revoke"])
    token.add_argument("id", nargs="?", help="token id, for revoke")
    token.add_argument("--name")
    token.add_argument("--role", default="read", choices=["read", "write", "admin"])
    token.add_argument("--expires-in", type=float, default=7 * 86400, help="seconds (default 7 days)")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    http_host, http_port = host_port(args.http, 8080)
    pg_host, pg_port = host_port(args.pg, 6543)
    return Settings(
        data_dir=Path(args.data).expanduser(), database=args.database, http_host=http_host, http_port=http_port,
        pg_host=pg_host, pg_port=pg_port, tls_cert=args.tls_cert, tls_key=args.tls_key, insecure=args.insecure,
        statement_timeout_s=args.statement_timeout, pool_size=args.pool_size, pg_idle_timeout_s=args.pg_idle_timeout,
        wire_relay=args.wire_relay,
        checkpoint_retention_days=args.checkpoint_retention_days,
    )


class ClientError(Exception):
    pass


def call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    token = args.token
    if not token:
        token_file = Path(args.data) / "admin.token"
        if not token_file.exists():
            raise ClientError(f"no token: set SQLGATE_TOKEN, pass --token, or run where {token_file} exists")
        token = token_file.read_text().strip()
    request = urllib.request.Request(
        args.server.rstrip("/") + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())
            raise ClientError(f"{err.get('message')}\n  hint: {err.get('hint')}\n  next: {err.get('next')}") from None
        except ValueError:
            raise ClientError(f"HTTP {exc.code} from {args.server}") from None
    except urllib.error.URLError as exc:
        raise ClientError(f"cannot reach {args.server}: {exc.reason}. Is `sqlgate serve` running?") from None


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.2f}"
    text = " ".join(str(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def run_log(args: argparse.Namespace) -> None:
    query = {k: v for k, v in (("actor", args.actor), ("branch", args.branch), ("class", args.klass),
                               ("since", args.since), ("outcome", args.outcome), ("limit", args.limit)) if v}
    path = "/traces?" + urllib.parse.urlencode(query)
    traces = call(args, "GET", path)["traces"]
    if args.json:
        print(json.dumps(traces, indent=2))
        return
    for t in traces:
        t["ms"] = t["duration_ms"]
        t["time"] = t["at"][11:23]
    print_table(traces, ["time", "id", "actor", "class", "outcome", "rows", "ms", "checkpoint_id", "tables", "sql"])


def run_rollback(args: argparse.Namespace) -> None:
    outcome = call(args, "POST", "/rollback", {"checkpoint": args.checkpoint, "mode": args.mode,
                                               "dry_run": args.dry_run})
    verb = "would restore" if outcome["dry_run"] else "restored"
    print(f"{args.checkpoint} ({outcome['mode']}): {verb} {outcome['rows_restored']} rows, removed"
          f" {outcome['rows_removed']} rows in {', '.join(outcome['tables']) or 'no tables'}")
    if outcome["objects_restored"]:
        print("objects restored: " + ", ".join(outcome["objects_restored"]))
    if outcome["undone_traces"]:
        print("later statements undone: " + ", ".join(outcome["undone_traces"]))
    if outcome.get("new_checkpoint"):
        print(f"this rollback can itself be undone: sqlgate rollback {outcome['new_checkpoint']}")


def run_checkpoints(args: argparse.Namespace) -> None:
    query = {k: v for k, v in (("actor", args.actor), ("limit", args.limit)) if v}
    items = call(args, "GET", "/checkpoints?" + urllib.parse.urlencode(query))["checkpoints"]
    print_table(items, ["id", "actor", "kind", "tables", "size_bytes", "age_s", "expires_at", "undone_by"])


def run_token(args: argparse.Namespace) -> None:
    if args.action == "create":
        body = {"role": args.role, "expires_in": args.expires_in, "name": args.name or f"{args.role}-token"}
        created = call(args, "POST", "/tokens", body)
        print(f"token {created['id']} ({created['role']}, expires {created['expires_at']}):")
        print(created["token"])
    elif args.action == "list":
        print_table(call(args, "GET", "/tokens")["tokens"], ["id", "name", "role", "expires_at", "revoked_at"])
    else:
        if not args.id:
            raise ClientError("revoke needs the token id: sqlgate token revoke tok_...")
        revoked = call(args, "DELETE", f"/tokens/{args.id}")
        print(f"revoked {revoked['id']} at {revoked['revoked_at']}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from proxy.server import run

        return run(settings_from(args))
    try:
        {"log": run_log, "token": run_token, "rollback": run_rollback, "checkpoints": run_checkpoints}[
            args.command](args)
    except ClientError as exc:
        print(f"sqlgate: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
