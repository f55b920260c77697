"""The HTTP front door (starlette): Neon's SQL-over-HTTP plus sqlgate's API."""
