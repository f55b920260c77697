"""Decisions about statements: what a statement is (classification), who may
run it (identities, tokens, roles) and whether this caller may run it now."""
