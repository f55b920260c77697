"""Whether an identity may run a classified statement, as a closed set of
decisions the pipeline matches on: allow, allow after a checkpoint, or deny
(with the error the caller will see)."""

from __future__ import annotations

from dataclasses import dataclass

from policy.identity import Role
from proxy import errors
from proxy.statement import Part, StatementClass

C = StatementClass

# The most severe class each role may run (dangerous is admin-only, always).
_CEILING = {Role.READ: C.SESSION, Role.WRITE: C.DESTRUCTIVE_DDL, Role.ADMIN: C.DANGEROUS}


@dataclass(frozen=True)
class Allow:
    pass


@dataclass(frozen=True)
class CheckpointThenAllow:
    """Destructive: take a checkpoint in the same transaction, then run it."""


@dataclass(frozen=True)
class Deny:
    error: errors.SqlgateError


Decision = Allow | CheckpointThenAllow | Deny


def decide(role: Role, part: Part) -> Decision:
    klass = part.klass
    if klass is C.UNPARSEABLE:
        return Deny(errors.unparseable(part.reason or "the statement could not be parsed"))
    if part.touches_meta and role is not Role.ADMIN:
        return Deny(errors.meta_denied(role.label))
    if klass > _CEILING[role]:
        return Deny(_denial(role, part))
    if klass.is_destructive or part.checkpointed_anyway:
        return CheckpointThenAllow()
    return Allow()


def _denial(role: Role, part: Part) -> errors.SqlgateError:
    what = f"{part.command or 'this statement'} ({part.klass.label})"
    if part.klass is C.DANGEROUS:
        why = part.reason or "it can run code, change safeguards or reach outside the database"
        return errors.policy_denied(
            what, role.label, f"Dangerous statements are refused to every token but admin: {why}.",
            "rewrite it as plain SQL (SELECT/INSERT/UPDATE/DELETE/CREATE/ALTER), or ask an admin token to run it",
        )
    return errors.policy_denied(
        what, role.label, "This token can only read: SELECT, SHOW, EXPLAIN and SET of session settings.",
        'ask an admin for a write token (POST /tokens with {"role": "write"})',
    )
