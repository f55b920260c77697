"""A lasting client session (the wire protocol's): which backend session
holds the client's open transaction, and the traces of the statements run in
it, which commit with it or are written as rolled back when it ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from proxy.backends.base import BackendRole, Session
from proxy.trace import Trace


class SessionSource(Protocol):
    async def session_for(self, login: BackendRole) -> Session:
        """The client's backend session for `login`, opened on first use and kept."""


@dataclass
class ClientSession:
    source: SessionSource
    pending: list[Trace] = field(default_factory=list)  # statements inside the open transaction
    savepoints: list[tuple[str, int]] = field(default_factory=list)  # name, len(pending) when taken
    active: Session | None = None  # the session holding the open transaction, if any
    active_login: BackendRole | None = None  # the login `active` belongs to

    @property
    def in_transaction(self) -> bool:
        return self.active is not None and self.active.in_transaction
