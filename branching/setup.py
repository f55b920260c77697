"""Builds and installs the checkpoint adapter for a started backend."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("sqlgate.branching")

_PURGE_EVERY_S = 3600.0


async def install(backend: Any, retention_days: float = 7.0) -> Any:
    if backend.dialect == "postgres":
        from branching.pg import PostgresCheckpointer

        checkpointer: Any = PostgresCheckpointer(backend, retention_days)
    else:
        from branching.duck import DuckDBCheckpointer

        checkpointer = DuckDBCheckpointer(backend, retention_days)
    await checkpointer.setup()
    checkpointer.purger = asyncio.get_running_loop().create_task(_purge_forever(checkpointer))
    return checkpointer


async def _purge_forever(checkpointer: Any) -> None:
    """Expired checkpoints and their kept data go at start, then every hour."""
    while True:
        try:
            await checkpointer.purge()
        except Exception:  # noqa: BLE001 - try again next time
            log.exception("checkpoint purge failed")
        await asyncio.sleep(_PURGE_EVERY_S)
