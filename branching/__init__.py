"""Checkpoints, rollback and branches: what makes destructive statements
undoable. One adapter per backend (pg.py, duck.py and the modules beside them); the pipeline
only sees `Checkpointer`.

Design (issue #3). A checkpoint is taken inside the statement's transaction, so ROLLBACK, a failure or
kill -9 leaves none behind; its metadata is in the backend (sqlgate.checkpoints), never in proxy memory.
Row undo data is a multiset delta: rows the statement removed (D) and added (I); undo deletes one
instance of each I row and inserts each D row (PostgreSQL: a D/I pair with the same key is an UPDATE,
so foreign keys pointing at it stay put). Cost follows the k rows changed, never the table.
PostgreSQL (pg.py: setup, list, purge, the rollback transaction; pg_take: what a statement gets; pg_rows,
pg_restore, pg_rollback: undo; pg_sql, pg_sql_schema: the SQL installed; everything privileged is
SECURITY DEFINER, owned by the owner login):
- DML of any form (DELETE, UPDATE incl. keys, MERGE, upserts (ON CONFLICT DO UPDATE, classed write),
  data-modifying CTEs, DML inside functions): statement-level AFTER triggers with transition tables,
  ENABLE ALWAYS, installed on a table at its first checkpoint (cp_take, in the statement's own message,
  finds the tables foreign keys reach and their owned sequences through pg_depend's index), append D/I
  rows as one json array per statement (json_agg(n.*): cheaper than jsonb, whole rows even when a column
  is named like the alias; lz4 where the server has it) to sqlgate.changes, filed under the checkpoint id
  set for that statement only if the checkpoint was taken in the same transaction.
  Later plain INSERTs are logged too, which gives mode 'all' (net delta since the mark) and mode
  'statement' conflicts (an I row no longer there; a D row whose key was taken). Owned sequences'
  values are kept and restored by mode 'all'. TRUNCATE: BEFORE TRUNCATE trigger copies the rows.
- DROP TABLE / VIEW / SEQUENCE: not run; sqlgate.cp_drop moves the object (and, with CASCADE, its
  dependent views) into a private schema: ALTER ... SET SCHEMA, O(1), columns, defaults, constraints,
  indexes, triggers, grants, owned sequences intact; foreign keys of other tables that CASCADE drops
  are kept as definitions. Rollback moves them back.
- What a CASCADE takes from OTHER tables and keeps as a definition (DROP TABLE/SCHEMA/COLUMN ... CASCADE:
  their foreign keys, checks, defaults, indexes): sqlgate.capture_dependents makes the checkpoint cover
  those tables (capture triggers, catalog work only; relids; owned sequences), so mode 'all' undoes their
  later rows (and lists those statements) before the definitions come back. Rollback re-applies them
  last, after the rows, each in a savepoint: one that later writes break (mode 'statement' keeps them;
  or rows no capture covered) is listed as a conflict (409) naming constraint and table, nothing changed.
- DROP SCHEMA: renamed aside (O(1)), handed to the owner with agents' grants revoked; what CASCADE
  would drop outside it (found through pg_depend) is moved aside (views, sequences) or kept as a
  definition (foreign keys, checks, defaults, expression indexes); anything else is refused.
- DROP COLUMN (any column, CASCADE too; pg_sql_column, pg_restore_column): runs as sent; before it
  (ACCESS EXCLUSIVE first, so no write lands between the copy and the drop) the key (primary key, else
  ctid: DROP COLUMN moves no row) and that column's values are kept, with its definition (type,
  collation, default, NOT NULL, identity, generated, storage, statistics, comment, grants) and, found
  through pg_depend as CASCADE finds them, its indexes, constraints (foreign keys both ways), triggers
  and views (over views too) as definitions; a sequence it owns is moved aside. Rollback keeps the
  table's OID: it adds the column back and re-creates each later column after it (renamed aside, added,
  all values in ONE UPDATE with capture and user triggers off, rows matched on their positions copied
  into a column before any rewrite, as the table's owner (pg_roles), views re-pointed by CREATE OR
  REPLACE, sequences re-owned, the aside columns dropped; their indexes, constraints, triggers
  re-created). Mode 'all' first undoes the rows written since (their shape lacks the column). Rows the
  kept values do not cover (added since), a name taken since, and, without a primary key, any later row
  write or rewrite are conflicts. Refused: policies, rules, materialized views, statistics objects or
  other columns on
  those columns, partitioned or inherited tables.
- DROP/SET DEFAULT, DROP NOT NULL, DROP CONSTRAINT, RENAME (table, column), ALTER COLUMN TYPE: the
  table's definition by OID/attnum (+ key and values for a type change), and the table is captured from
  then on; DROP INDEX, CREATE OR REPLACE VIEW: the definition, and the indexed table (a view: the plain
  tables its old definition reads, through views, that the caller may write; not those only the new one
  reads) is captured from then on. Rollback re-applies what differs (an index, a view too, in the same
  latest-first order), after the rows written under the changed definition are undone: mode 'all' goes
  back in time, undoing the rows written after each later checkpoint before its definitions come back, so
  every row is put back in the shape it was written in (a column's name, its type); mode 'statement'
  re-applies only what the statement changed, after its rows. Columns re-created by one restore of a
  rollback keep their old attnums for the next (a temporary map for the rollback). DROP CONSTRAINT
  ... CASCADE of a key keeps the foreign keys it takes from other tables as dependents (re-applied after
  their rows, as DROP COLUMN's are); anything else such a CASCADE would drop is refused first.
- Additions (ADD COLUMN, SET NOT NULL, ADD CONSTRAINT, CREATE INDEX; class safe_ddl, nothing destroyed):
  a definition checkpoint all the same, so that mode 'all' to an earlier checkpoint of the table takes
  them away (a kept definition's restore drops the columns, constraints and indexes the table gained
  after it, RESTRICT: a dependent made since is a failure naming it); mode 'statement' drops what that
  statement added (an added column only when no row was written since: they may hold values in it).
  Where none can be taken (a partitioned table, CREATE INDEX CONCURRENTLY) the statement runs unrecorded.
- sqlgate's own SQL as the owner runs on connections pinned to search_path = pg_catalog, pg_temp (an
  agent may create in public); SQL it runs on an agent's connection names built-ins by schema.
- What a restore evaluates runs as the table's owner (pg_roles: SET LOCAL ROLE, the owner looked up
  strictly, so a rollback that cannot act as the owner fails): row undo (generated columns, CHECKs,
  ENABLE ALWAYS triggers), re-added CHECKs, a type change's rewrite and a dropped column's values may all
  call an agent's functions, which must never run with sqlgate's login's rights.
- Undoing a rollback (pg_redo): the statements whose objects it brought back run again, oldest first,
  each checkpointed (keeping its statement: its trace is the undo's), in the same transaction, then its
  rows are reversed; undoing that undoes them. The rollback recorded where its changes stood when it
  brought a column back (`restored_at`): the rows it changed after that have the column, so they are
  reversed before that DROP runs again, the earlier ones after. Undoing such an undo in mode 'statement'
  reverses the rows it wrote after running a DROP COLUMN again before the column comes back. A statement
  that fails when run again is a 409 (redo_unavailable) naming PostgreSQL's reason, nothing changed.
  DuckDB: duck_redo, below.
- A rollback first locks the tables it restores (SHARE ROW EXCLUSIVE, OID order): a writer racing it
  makes it wait, then apply whole, or give up whole after lock_timeout (branching.rollback_busy, 409).
DuckDB (duck*.py, one module per job): no triggers, roles or SET SCHEMA.
- DELETE: `CREATE TABLE sqlgate.cpd_.. AS WITH d AS (<DELETE> RETURNING rowid, *) SELECT * FROM d` (one
  pass). UPDATE: old rows by the statement's own FROM/WHERE (rowids, from the sqlglot tree), new rows
  by RETURNING. TRUNCATE copies. The watermark is the table's highest live row id, kept with its live row
  count (duck_rowids; vacuum is off, so DuckDB never renumbers rows, but a storage checkpoint gives back
  the ids of all-deleted trailing row groups: when an id at or below the watermark may have gone to a row
  added since, mode 'all' refuses with a 409): mode 'all' removes rows with higher rowids and puts back
  the first kept version of
  every older row a later statement touched. Row ids across rebuilds (duck_moves): a rollback that builds a
  table again (DROP COLUMN not last, a table copied back by DROP TABLE / DROP SCHEMA; copies keep row ids)
  copies rows in row-id order (dense new ids at commit) and records (new, old) as a "moves" object of its
  checkpoint; an older checkpoint's rollback maps the table's row ids, kept images and kept column values
  back through every rebuild since (its own too) before comparing. Rows a rollback puts back get fresh ids
  with no link: an older mode 'all' (or DROP COLUMN / ALTER TYPE values) across it is refused (409, changed
  nothing; statement mode matches by value). Mode 'all' across a DROP COLUMN it undoes takes that column's
  kept values for rows kept after the drop.
  Mode 'all' sets back (setval) the sequences the table's defaults draw from; one never used before
  the checkpoint (no is_called in DuckDB, and START is its MINVALUE by default) is created again from
  its kept definition, with the defaults that draw from it dropped and set again around that.
- Catalog reads (duck_catalog): each catalog table function scans the whole catalog (0.5-2 ms, more
  with more tables), so a row checkpoint makes one read (schema, oid, watermark; plus the sequences'
  values when its defaults use any) and DROP TABLE one (plus its indexes when it has any). What only
  DDL changes (a table's DDL, hence its sequences and foreign keys; its indexes) is cached by table and
  valid while the backend's catalog_version holds: the file is this process's alone, and any statement
  that is not a plain read or DML bumps it when it runs and when its transaction ends, as do sqlgate's
  own DDL, rollback and purge. Checkpoints are numbered in process (from max(seq) at first use), not by
  nextval.
- Upsert (ON CONFLICT DO UPDATE, INSERT OR REPLACE; classed write), MERGE, data-modifying CTEs: the
  rows whose key matches an incoming row (MERGE: its ON condition; a CTE: every row of each table it
  changes) are kept with their rowids before the statement runs as sent; afterwards only the rows
  that changed stay in the checkpoint (duck_images, duck_candidates).
- DROP TABLE: renamed aside (indexes dropped and re-created on rollback, as DuckDB forbids renaming
  an indexed table); a table with foreign keys is copied with its row ids (renamed aside, its keys would still hold its
  parent): O(table). A table other tables reference: DuckDB refuses the rename, the statement fails. The
  `__sqlgate_*` tables stay in their schema (DuckDB cannot move a table) and psql's catalog answers leave them out.
- DROP SCHEMA: its tables are copied (DuckDB can neither rename a schema nor move a table), and
  sequences (current values), tables, indexes and views are recreated in creation order; a schema
  holding macros or types is refused.
- DROP COLUMN (any column, CASCADE too): rowid + values; when not last, constrained or NOT NULL (DuckDB
  refuses SET NOT NULL after the values' UPDATE in one transaction), the table and index definitions too,
  and rollback rebuilds the table in its column order, the other columns with their current types,
  defaults and NOT NULL (renumbering row ids, which duck_moves maps for older checkpoints; the rebuilt
  table's new oid is recorded too, in this rollback and as a `moves` object of its checkpoint, so older
  definition checkpoints find it); the checkpoint keeps the table's watermark too (an empty rows
  piece), so mode 'all' also removes rows added since. RENAME, DROP/SET DEFAULT/
  NOT NULL, ALTER TYPE (+ rowid/values), DROP INDEX/SEQUENCE, CREATE OR REPLACE VIEW: definitions.
  ADD COLUMN, SET NOT NULL, CREATE INDEX (safe_ddl) too, with the table's index names: a restore drops
  the indexes and columns added after it (columns it drops are left out of the rows undone since);
  DuckDB cannot drop a constraint, so ADD CONSTRAINT runs unrecorded.
- DROP/SET DEFAULT, DROP NOT NULL, RENAME, ALTER TYPE and DROP INDEX keep the table's watermark too (an
  empty rows piece, a "marker"), so mode 'all' removes the rows written under the changed definition.
  The checkpoint records what its statement changed (from the parse tree): mode 'statement' reverts only
  that (following later column renames; a later change of the same thing is a 409 conflict; rows written
  since under a changed type are cast back, 409 if one does not survive the cast). A rollback restores
  objects first and rows after; NOT NULL comes back after the rows (its changes are recorded as "notnull"
  objects, and follow the renames the rollback undoes); kept rows named by columns it renamed back are read
  by position; rows kept after a type change it undoes take the values kept at that change. DROP COLUMN /
  ALTER TYPE keep the rows their transaction appended by value (temporary row ids until COMMIT) and match
  them by value.
- Undoing a rollback (duck_redo): on the rollback's worker thread, in its transaction, it first drops the
  NOT NULL the rollback set after its rows, reverses the rollback's rows (in the shape the rollback left),
  then runs the statements it undid again, oldest first, through the same `_plan` and runners the pipeline
  uses (DuckDBCheckpointer.take_now), each checkpointed and keeping its statement; they are `redo` objects
  of the undo's checkpoint, numbered after it, so undoing the undo restores them (objects first) and then
  reverses its rows. No roles: every rollback records the oids of what it brought back ("restored"), and a
  statement runs again only if each name it targets still resolves to one of them (or to what this undo
  itself put back); otherwise, and after a restart (DuckDB renumbers oids at each start), 409
  redo_unavailable; a statement that fails when run again is a 409 naming the database's reason, with
  nothing changed. Also refused: an ALTER TYPE when the rollback changed rows of that table (their values
  in the new type were not kept), and a mode 'all' rollback that crosses a rollback of an older statement
  or an undo that ran one again.
Anything else destructive is refused (checkpoint.unavailable): sqlgate never runs what it cannot undo.
"""
