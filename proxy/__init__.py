"""sqlgate's front doors (HTTP, and later the PostgreSQL wire protocol and MCP),
the command line, and the one statement pipeline they all share."""
