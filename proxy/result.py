"""What a statement returns, in PostgreSQL's terms whatever the backend:
column descriptions as RowDescription has them and values as PostgreSQL's
text output, so every front door renders one shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Field:
    """One column, named as node-postgres' FieldDef (and Neon) name them."""

    name: str
    type_oid: int
    type_size: int = -1
    type_modifier: int = -1
    table_oid: int = 0
    column_number: int = 0


@dataclass
class Result:
    """One statement's outcome. `rows` hold PostgreSQL text output (None = NULL)."""

    fields: list[Field] = field(default_factory=list)
    rows: list[list[str | None]] = field(default_factory=list)
    command_tag: str = ""  # e.g. "SELECT 3", "INSERT 0 1", "CREATE TABLE"
    notices: list[str] = field(default_factory=list)

    @property
    def command(self) -> str:
        """The tag's first word, as Neon's `command` field has it."""
        return self.command_tag.split(" ", 1)[0] if self.command_tag else ""

    @property
    def row_count(self) -> int | None:
        """The tag's count: third word for `INSERT oid n`, else the second."""
        words = self.command_tag.split()
        if len(words) < 2 or not words[-1].isdigit():
            return None
        return int(words[-1])


def result_from_pgresult(res: Any) -> Result:
    """A libpq PGresult (psycopg's `cursor.pgresult`) read as PostgreSQL's text
    output, field descriptions included: no value is decoded into Python."""
    if res is None:
        return Result()
    nf = res.nfields
    fields = [
        Field(name=(res.fname(i) or b"").decode(), type_oid=res.ftype(i), type_size=res.fsize(i),
              type_modifier=res.fmod(i), table_oid=res.ftable(i), column_number=res.ftablecol(i))
        for i in range(nf)
    ]
    get = res.get_value
    rows = [[None if (v := get(r, c)) is None else bytes(v).decode() for c in range(nf)] for r in range(res.ntuples)]
    return Result(fields, rows, (res.command_status or b"").decode())
