"""What both checkpoint adapters share: errors, the one-shot statement
replacement, and the shape of a rollback's answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from proxy import errors
from proxy.statement import Part

DEFAULT_RETENTION = timedelta(days=7)
MODES = ("all", "statement")


def unavailable(part: Part, why: str) -> errors.SqlgateError:
    return errors.SqlgateError(
        "checkpoint.unavailable", "0A000",
        f"{part.command or 'this statement'} destroys data and this server cannot checkpoint it yet: {why}",
        "sqlgate never runs a destructive statement it cannot undo.",
        "rewrite it as a non-destructive change (for example INSERT into a new table), or split it", status=403,
    )


def not_found(checkpoint_id: str) -> errors.SqlgateError:
    return errors.SqlgateError(
        "branching.checkpoint_not_found", "42704", f"checkpoint {checkpoint_id} does not exist",
        "It may have expired (checkpoints are kept 7 days) or the id is mistyped.",
        "GET /checkpoints to list the checkpoints you can roll back", status=404,
    )


def already_undone(checkpoint_id: str, by: str) -> errors.SqlgateError:
    return errors.SqlgateError(
        "branching.already_rolled_back", "55000", f"checkpoint {checkpoint_id} was already rolled back by {by}",
        "Each checkpoint can be rolled back once; the rollback took its own checkpoint.",
        f'POST /rollback with {{"checkpoint": "{by}"}} to undo that rollback', status=409,
    )


def not_yours(checkpoint_id: str) -> errors.SqlgateError:
    return errors.SqlgateError(
        "branching.not_allowed", "42501", f"this token cannot roll back checkpoint {checkpoint_id}",
        "Only an admin token or the token whose statement took the checkpoint may roll it back.",
        "ask an admin to roll it back", status=403,
    )


def others_later(checkpoint_id: str, others: list[str]) -> errors.SqlgateError:
    """Mode 'all' would also undo checkpoints other tokens took after this one."""
    error = errors.SqlgateError(
        "branching.not_allowed", "42501",
        f"rolling back checkpoint {checkpoint_id} in mode 'all' would also undo {len(others)} later"
        f" checkpoint(s) another token took ({', '.join(others[:5])}); nothing was changed",
        "A token may undo only its own statements; mode 'all' undoes every later change to the same tables.",
        f'POST /rollback with {{"checkpoint": "{checkpoint_id}", "mode": "statement"}} to undo only your statement,'
        " or ask an admin", status=403,
    )
    error.extra["checkpoints"] = others[:100]
    return error


def conflicts_error(checkpoint_id: str, conflicts: list[dict[str, Any]]) -> errors.SqlgateError:
    # One conflict (the usual case) is named in the message itself; `conflicts` lists each with where it is.
    what = f"{len(conflicts)} conflicts"
    if len(conflicts) == 1:
        what = conflicts[0].get("conflict") or "a later change conflicts with it"
    error = errors.SqlgateError(
        "branching.rollback_conflict", "40001",
        f"cannot undo only checkpoint {checkpoint_id}: {what}; nothing was changed",
        "Undoing one statement alone keeps every later one; `conflicts` says, for each table, what a later"
        " statement did that this undo would overwrite, or what sqlgate cannot undo alone.",
        f'POST /rollback with {{"checkpoint": "{checkpoint_id}", "mode": "all"}} to undo it and everything after it',
        status=409,
    )
    error.extra["conflicts"] = conflicts[:100]
    return error


def redo_unavailable(checkpoint_id: str, statements: list[str], why: str = "") -> errors.SqlgateError:
    """Undoing a rollback that brought objects back would have to run their statements again."""
    again = "; ".join(statements) or "the statement it undid"
    why = why or "which this backend cannot do inside a rollback"
    return errors.SqlgateError(
        "branching.redo_unavailable", "0A000",
        f"cannot undo rollback {checkpoint_id}: it brought back what a statement had dropped or changed,"
        f" and undoing it means running that statement again, {why}; nothing was changed",
        "Undoing a rollback of rows alone works; objects (tables, columns, definitions) need their statement.",
        f"send the statement again (it takes a checkpoint of its own): {again}", status=409,
    )


def bad_mode(mode: object) -> errors.SqlgateError:
    return errors.bad_request(
        f"unknown rollback mode {mode!r}", 'mode is "all" (default) or "statement".',
        'POST /rollback with {"checkpoint": "cp_...", "mode": "all"}',
    )


def rollback_busy(checkpoint_id: str, message: str) -> errors.SqlgateError:
    return errors.SqlgateError(
        "branching.rollback_busy", "55P03",
        f"cannot roll back checkpoint {checkpoint_id} now: another session kept writing its tables; nothing was"
        f" changed ({message})",
        "A rollback waits for open transactions on the tables it restores, up to 10 seconds, then gives up whole.",
        f'retry POST /rollback with {{"checkpoint": "{checkpoint_id}"}} once that transaction has ended',
        status=409,
    )


def rollback_failed(message: str) -> errors.SqlgateError:
    return errors.SqlgateError(
        "branching.rollback_failed", "XX000", f"rollback failed and changed nothing: {message}",
        "The rollback runs in one transaction.", "retry; if it fails again, report it with the checkpoint id",
        status=500,
    )


def definitions_broken(checkpoint_id: str, problems: list[dict[str, Any]]) -> errors.SqlgateError:
    """Mode 'all' could not re-apply a kept definition (a constraint, NOT NULL, an index): rows written since
    by statements the checkpoint does not cover break it."""
    first = problems[0]
    again = f'then POST /rollback with {{"checkpoint": "{checkpoint_id}"}} again'
    if first.get("sqlstate") == "2BP01":  # an addition it takes away has a dependent made since (a view)
        message = f"rollback failed and changed nothing: {first['conflict']}"
        hint = ("Mode 'all' takes away what was added to the table since (a column, a constraint, an index);"
                " it drops nothing else that depends on them. A view a later DROP VIEW keeps aside (in a"
                " sqlgate_trash_ schema) depends on them until that checkpoint expires.")
        step = (f"drop the objects named above, {again}; or undo the later statements one at a time"
                ' (POST /rollback with "mode": "statement", latest first)')
    else:
        message = (f"rollback failed and changed nothing: {first.get('constraint') or 'a kept definition'} on table"
                   f" {first['table']} cannot be put back: {first['conflict']}")
        hint = ("The rollback re-applies the definitions the statement (or its CASCADE) removed; rows written since"
                " by statements this checkpoint does not cover break one, and it cannot undo those rows itself.")
        step = (f"change or delete the rows of {first['table']} that break {first.get('constraint') or 'it'}"
                f" (named above), {again}")
    error = errors.SqlgateError("branching.rollback_failed", first.get("sqlstate") or "23000", message, hint, step,
                                status=409)
    error.extra["conflicts"] = problems[:100]
    return error


@dataclass
class RollbackOutcome:
    checkpoint: str
    mode: str
    dry_run: bool
    tables: list[str]
    rows_restored: int = 0
    rows_removed: int = 0
    objects_restored: list[str] = field(default_factory=list)
    undone_checkpoints: list[str] = field(default_factory=list)
    undone_traces: list[str] = field(default_factory=list)
    new_checkpoint: str | None = None
    trace_id: str | None = None

    def public(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        if self.new_checkpoint:
            data["undo"] = {"method": "POST", "path": "/rollback", "body": {"checkpoint": self.new_checkpoint}}
        return data
