"""Backends: where statements run (embedded DuckDB or a PostgreSQL server),
behind one session contract, plus the metadata each keeps (tokens, traces)."""
