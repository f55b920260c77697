"""Rolling back for a caller: permission, tracing and the call, shared by
POST /rollback and `SELECT sqlgate.rollback(...)`."""

from __future__ import annotations

import time
from typing import Any

from branching import common
from branching.checkpoint import CheckpointContext
from policy.identity import Identity, Role
from proxy import errors
from proxy.trace import Trace, new_id

OUTCOME_COLUMNS = ["checkpoint", "mode", "dry_run", "tables", "rows_restored", "rows_removed", "objects_restored",
                   "undone_checkpoints", "undone_traces", "new_checkpoint"]
LIST_COLUMNS = ["id", "trace_id", "actor", "branch", "kind", "tables", "size_bytes", "age_s", "created_at",
                "expires_at", "undone_by", "undoes"]


def checkpointer_of(pipeline: Any) -> Any:
    checkpointer = getattr(pipeline, "checkpointer", None)
    if checkpointer is None or not hasattr(checkpointer, "rollback"):
        raise errors.SqlgateError("checkpoint.unavailable", "0A000", "this server keeps no checkpoints",
                                  "", "", status=501)
    return checkpointer


async def perform_rollback(checkpointer: Any, traces: Any, identity: Identity, cp_id: str, mode: str = "all",
                           dry_run: bool = False, branch: str = "main", front_door: str = "http",
                           trace: Trace | None = None) -> common.RollbackOutcome:
    """Roll back `cp_id` for `identity`. Its trace (the SQL call's own `trace`, or a new
    one) commits inside the rollback's transaction, so a crash never leaves it untraced."""
    if mode not in common.MODES:
        raise common.bad_mode(mode)
    found = await checkpointer.get(cp_id)
    if found is None:
        raise common.not_found(cp_id)
    if identity.role is not Role.ADMIN and found["token_id"] != identity.token.id:
        raise common.not_yours(cp_id)
    if identity.role is not Role.ADMIN and mode == "all" and not dry_run:
        await _only_own_checkpoints(checkpointer, identity, cp_id)
    from_sql = trace is not None
    if trace is None:
        trace = Trace(request_id=new_id("rq"), actor=identity.actor, token_id=identity.token.id, branch=branch,
                      front_door=front_door, sql=f"SELECT sqlgate.rollback('{cp_id}', '{mode}')", params=None,
                      klass="destructive_dml", tables=[], command="ROLLBACK CHECKPOINT")
    trace_id = trace.id
    context = CheckpointContext(identity.actor, identity.token.id, branch, trace_id)
    started = time.perf_counter()

    def finish(outcome: common.RollbackOutcome) -> list[Trace]:
        """The rollback's trace, filled in: it commits in the rollback's own transaction."""
        trace.stored = not dry_run
        trace.duration_ms = trace.cost = (time.perf_counter() - started) * 1000
        trace.tables = list(outcome.tables)
        trace.rows = outcome.rows_restored + outcome.rows_removed
        trace.checkpoint_id = outcome.new_checkpoint
        trace.outcome = "rolled_back" if dry_run else "ok"
        return [trace]

    try:
        outcome = await checkpointer.rollback(cp_id, mode, dry_run, context, finish)
    except errors.SqlgateError as error:
        trace.stored = False
        if not from_sql:  # the pipeline traces a failed call from SQL itself
            trace.duration_ms = (time.perf_counter() - started) * 1000
            trace.outcome, trace.error_code, trace.error_message = "failed", error.reason, error.message
            traces.add([trace])
            error.extra["trace_id"] = trace.id
        raise
    outcome.trace_id = trace_id
    if dry_run and not from_sql:  # nothing committed: traced on its own
        traces.add(finish(outcome))
    return outcome


async def _only_own_checkpoints(checkpointer: Any, identity: Identity, cp_id: str) -> None:
    """Mode 'all' undoes later checkpoints on the same tables too: a token that is not admin may not undo
    another token's (an admin's DROP COLUMN of PII, say). Planned by a dry run, which changes nothing."""
    plan = await checkpointer.rollback(cp_id, "all", True, None, None)
    others = []
    for other in plan.undone_checkpoints:
        found = await checkpointer.get(other)
        if found is not None and found["token_id"] != identity.token.id:
            others.append(other)
    if others:
        raise common.others_later(cp_id, others)
