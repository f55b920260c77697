"""Checkpoints, rollback and branches: what makes destructive statements
undoable. One adapter per backend; the pipeline only sees `Checkpointer`."""
