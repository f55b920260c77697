"""SQL installed in PostgreSQL at start by the checkpoint adapter (as OWNER)."""

SETUP_SQL = r"""
CREATE SCHEMA IF NOT EXISTS sqlgate;
CREATE TABLE IF NOT EXISTS sqlgate.checkpoints (
    id text PRIMARY KEY, trace_id text, actor text NOT NULL, token_id text, branch text NOT NULL,
    kind text NOT NULL, tables jsonb NOT NULL, relids oid[] NOT NULL, mark bigint NOT NULL,
    seqs jsonb NOT NULL DEFAULT '{}', objects jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(), expires_at timestamptz NOT NULL,
    undone_by text, undoes text, xid bigint);
ALTER TABLE sqlgate.checkpoints ADD COLUMN IF NOT EXISTS xid bigint;
CREATE INDEX IF NOT EXISTS checkpoints_created ON sqlgate.checkpoints (created_at);
CREATE SEQUENCE IF NOT EXISTS sqlgate.change_seq;
-- One row per statement and table and direction: the rows it removed (D) or added (I), as a jsonb array.
-- json, not jsonb: building json costs a statement far less (it is text); a rollback parses it once.
CREATE TABLE IF NOT EXISTS sqlgate.changes (
    seq bigint NOT NULL DEFAULT nextval('sqlgate.change_seq'), cp text, tbl oid NOT NULL,
    op "char" NOT NULL, rows json NOT NULL);
DO $$ BEGIN
    IF (SELECT atttypid FROM pg_attribute WHERE attrelid = 'sqlgate.changes'::regclass AND attname = 'rows')
       = 'jsonb'::regtype THEN
        ALTER TABLE sqlgate.changes ALTER COLUMN rows TYPE json USING rows::json;
    END IF;
END $$;
-- lz4 where the server has it: compressing each captured statement's rows costs a third of pglz.
DO $$ BEGIN
    ALTER TABLE sqlgate.changes ALTER COLUMN rows SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN NULL;
END $$;
CREATE INDEX IF NOT EXISTS changes_cp ON sqlgate.changes (cp);
CREATE INDEX IF NOT EXISTS changes_tbl_seq ON sqlgate.changes (tbl, seq);

-- The checkpoint a change belongs to: the id set for the statement, only if that checkpoint was taken in
-- this very transaction (so a session cannot file its changes under someone else's checkpoint).
CREATE OR REPLACE FUNCTION sqlgate.current_checkpoint() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.id FROM sqlgate.checkpoints c
    WHERE c.id = nullif(current_setting('sqlgate.checkpoint', true), '') AND c.xid = txid_current() $$;

-- The capture triggers run after every statement on a captured table, so they are kept cheap:
-- - the checkpoint is looked up inline, never through current_checkpoint(): a SQL function with a SET clause is
--   planned again at each call (tens of microseconds);
-- - no SET search_path clause: on a trigger function it costs a GUC save and restore and a search path lookup
--   at every call (some 15 microseconds, as much as the rest of a trigger's fixed cost). They run with the
--   agent's search_path instead, so every name in them resolves without it: relations and functions are
--   schema-qualified, operators are OPERATOR(pg_catalog.x), types too where one is named, and sqlgate_old /
--   sqlgate_new are the transition tables, which an unqualified name finds before any relation
--   (tests/test_checkpoints_pg_capture_path.py plants lookalikes for each);
-- - one INSERT per firing, an UPDATE's removed and added rows included (D first: seq order).
CREATE OR REPLACE FUNCTION sqlgate.capture_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO sqlgate.changes (cp, tbl, op, rows)
    SELECT (SELECT c.id FROM sqlgate.checkpoints c
            WHERE c.id OPERATOR(pg_catalog.=) pg_catalog.current_setting('sqlgate.checkpoint', true)
              AND c.xid OPERATOR(pg_catalog.=) pg_catalog.txid_current()),
           TG_RELID, 'D', pg_catalog.json_agg(o.*)
    FROM sqlgate_old o HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION sqlgate.capture_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO sqlgate.changes (cp, tbl, op, rows)
    SELECT (SELECT c.id FROM sqlgate.checkpoints c
            WHERE c.id OPERATOR(pg_catalog.=) pg_catalog.current_setting('sqlgate.checkpoint', true)
              AND c.xid OPERATOR(pg_catalog.=) pg_catalog.txid_current()),
           TG_RELID, 'I', pg_catalog.json_agg(n.*)
    FROM sqlgate_new n HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION sqlgate.capture_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO sqlgate.changes (cp, tbl, op, rows)
    SELECT (SELECT c.id FROM sqlgate.checkpoints c
            WHERE c.id OPERATOR(pg_catalog.=) pg_catalog.current_setting('sqlgate.checkpoint', true)
              AND c.xid OPERATOR(pg_catalog.=) pg_catalog.txid_current()),
           TG_RELID, x.op, x.rows
    FROM (SELECT 1 AS ord, 'D'::pg_catalog."char" AS op, pg_catalog.json_agg(o.*) AS rows FROM sqlgate_old o
          HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0
          UNION ALL
          SELECT 2, 'I', pg_catalog.json_agg(n.*) FROM sqlgate_new n
          HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0) x
    ORDER BY x.ord;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION sqlgate.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('INSERT INTO sqlgate.changes (cp, tbl, op, rows) SELECT $1, $2, ''D'', json_agg(x.*)'
                   ' FROM %s x HAVING count(*) > 0',
                   TG_RELID::regclass)
        USING sqlgate.current_checkpoint(), TG_RELID;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION sqlgate.ensure_capture(r regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = r AND tgname = 'sqlgate_capture_d') THEN
        RETURN;
    END IF;
    -- Two first checkpoints of one table at once: the second waits, then finds the triggers.
    PERFORM pg_advisory_xact_lock(hashtextextended('sqlgate.ensure_capture:' || r::oid::text, 0));
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = r AND tgname = 'sqlgate_capture_d') THEN
        RETURN;
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = r) NOT IN ('r') THEN
        RAISE EXCEPTION 'sqlgate can checkpoint changes to plain tables only; % is not one', r
            USING ERRCODE = '0A000';
    END IF;
    EXECUTE format('CREATE TRIGGER sqlgate_capture_d AFTER DELETE ON %s REFERENCING OLD TABLE AS sqlgate_old'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION sqlgate.capture_delete()', r);
    EXECUTE format('CREATE TRIGGER sqlgate_capture_i AFTER INSERT ON %s REFERENCING NEW TABLE AS sqlgate_new'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION sqlgate.capture_insert()', r);
    EXECUTE format('CREATE TRIGGER sqlgate_capture_u AFTER UPDATE ON %s REFERENCING OLD TABLE AS sqlgate_old'
                   ' NEW TABLE AS sqlgate_new FOR EACH STATEMENT EXECUTE FUNCTION sqlgate.capture_update()', r);
    EXECUTE format('CREATE TRIGGER sqlgate_capture_t BEFORE TRUNCATE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION sqlgate.capture_truncate()', r);
    -- ENABLE ALWAYS: session_replication_role = replica cannot skip them (SECURITY.md, defence 2).
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER sqlgate_capture_d, ENABLE ALWAYS TRIGGER sqlgate_capture_i,'
                   ' ENABLE ALWAYS TRIGGER sqlgate_capture_u, ENABLE ALWAYS TRIGGER sqlgate_capture_t', r);
END $$;

CREATE OR REPLACE FUNCTION sqlgate.owned_sequences(r regclass) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE s oid; out jsonb := '{}'; v bigint;
BEGIN
    -- refclassid lets pg_depend's index answer: this runs on every checkpoint of rows.
    FOR s IN SELECT d.objid FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
             WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = r AND d.classid = 'pg_class'::regclass
               AND c.relkind = 'S' LOOP
        v := pg_sequence_last_value(s);
        out := out || jsonb_build_object(s::text, v);
    END LOOP;
    RETURN out;
END $$;

-- Runs in the statement's round trip, before every captured statement, so it stays on indexes and does little:
-- one pg_depend index scan per level of foreign keys, which finds both the tables that reference these (a
-- foreign key depends NORMALly on the columns it references) and their owned sequences (they depend on a
-- column); the rows it keeps are only those that can be either (the filter drops the table's own indexes,
-- constraints, triggers, type and toast table), so the catalog look-ups run only for them; never a scan of
-- pg_class, which grows with the database. Generic plans: a custom plan (planned again at every call) for the
-- array parameters costs more than the rest.
CREATE OR REPLACE FUNCTION sqlgate.cp_take(p_id text, p_trace text, p_actor text, p_token text, p_branch text,
    p_kind text, p_tables text[], p_rels regclass[], p_days double precision) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
DECLARE r oid; rels oid[] := p_rels::oid[]; frontier oid[] := p_rels::oid[]; more oid[]; ref oid; dep record;
        seqs jsonb := '{}'; m bigint;
BEGIN
    -- Foreign keys reach further than the statement names: ON DELETE/UPDATE CASCADE,
    -- SET NULL/DEFAULT and TRUNCATE ... CASCADE change the referencing tables too,
    -- so every table that references these, at any depth, is captured as well.
    -- A table whose definition changes is captured too: mode 'all' undoes the rows written under it.
    WHILE p_kind IN ('rows', 'definition') AND frontier <> '{}' LOOP
        more := '{}';
        FOR dep IN SELECT d.classid, d.objid, d.refobjid FROM pg_depend d
                   WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY (frontier)
                     AND ((d.classid = 'pg_constraint'::regclass AND d.deptype = 'n')
                          OR (d.classid = 'pg_class'::regclass AND d.refobjsubid > 0)) LOOP
            IF dep.classid = 'pg_constraint'::regclass THEN
                -- a CHECK naming the table's own columns depends NORMALly on them too: foreign keys only
                SELECT c.conrelid INTO ref FROM pg_constraint c
                WHERE c.oid = dep.objid AND c.contype = 'f' AND c.confrelid = dep.refobjid;
                IF FOUND AND NOT ref = ANY (rels) THEN
                    rels := rels || ref;
                    more := more || ref;
                END IF;
            ELSIF (SELECT s.relkind FROM pg_class s WHERE s.oid = dep.objid) = 'S' THEN  -- not an index
                seqs := seqs || jsonb_build_object(dep.objid::text, pg_sequence_last_value(dep.objid));
            END IF;
        END LOOP;
        frontier := more;
    END LOOP;
    -- Capture triggers are installed at a table's first checkpoint; later ones only look.
    IF p_kind IN ('rows', 'definition') THEN
        FOREACH r IN ARRAY rels LOOP
            IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = r AND tgname = 'sqlgate_capture_d') THEN
                PERFORM sqlgate.ensure_capture(r::regclass);
            END IF;
        END LOOP;
    END IF;
    m := nextval('sqlgate.change_seq');
    INSERT INTO sqlgate.checkpoints (id, trace_id, actor, token_id, branch, kind, tables, relids, mark, seqs,
                                     expires_at, xid)
    VALUES (p_id, p_trace, p_actor, p_token, p_branch, p_kind, to_jsonb(p_tables), rels,
            m, seqs, now() + make_interval(secs => p_days * 86400), txid_current());
    RETURN m;
END $$;

-- Objects a checkpoint keeps are no longer the agent's: they neither block nor follow later drops.
CREATE OR REPLACE FUNCTION sqlgate.in_trash(r oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT n.nspname LIKE 'sqlgate\_trash\_%' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = r $$;

-- Tables whose foreign keys, checks, defaults or indexes a CASCADE drops and the checkpoint keeps as
-- definitions (DROP TABLE / SCHEMA / COLUMN ... CASCADE): their later writes could break the definition
-- when it is re-applied, so from now on they are captured like the tables a DML checkpoint covers: capture
-- triggers (catalog work, never a copy), the checkpoint's relids (mode 'all' undoes their rows written
-- since its mark, later checkpoints on them are linked to it, purge keeps their triggers) and their owned
-- sequences' values. Only plain tables outside sqlgate's trash can be captured; others keep definitions only.
CREATE OR REPLACE FUNCTION sqlgate.capture_dependents(p_id text, p_rels oid[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE r oid; v_rels oid[] := '{}'; v_seqs jsonb := '{}';
BEGIN
    FOR r IN SELECT c.oid FROM pg_class c WHERE c.oid = ANY (p_rels) AND c.relkind = 'r'
             AND NOT sqlgate.in_trash(c.oid) ORDER BY c.oid LOOP
        PERFORM sqlgate.ensure_capture(r::regclass);
        v_rels := v_rels || r;
        v_seqs := v_seqs || sqlgate.owned_sequences(r::regclass);
    END LOOP;
    IF v_rels <> '{}' THEN
        UPDATE sqlgate.checkpoints k
        SET relids = k.relids || ARRAY(SELECT x FROM unnest(v_rels) x WHERE NOT x = ANY (k.relids)),
            seqs = v_seqs || k.seqs
        WHERE k.id = p_id;
    END IF;
END $$;

-- DROP TABLE / DROP VIEW, kept: the objects move into a private schema instead.
CREATE OR REPLACE FUNCTION sqlgate.cp_drop(p_id text, p_names text[], p_rels regclass[], p_kind text,
    p_cascade boolean, p_if_exists boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    i int; r regclass; objs jsonb := '[]'; n int := 0; want char; dep record; moved oid[] := '{}';
    todo oid[]; o oid; nsp text; rel text; trash text; fk record;
BEGIN
    want := CASE p_kind WHEN 'view' THEN 'v' WHEN 'sequence' THEN 'S' ELSE 'r' END;
    todo := '{}';
    FOR i IN 1 .. coalesce(array_length(p_names, 1), 0) LOOP
        r := p_rels[i];
        IF r IS NULL THEN
            IF p_if_exists THEN
                RAISE NOTICE '% "%" does not exist, skipping', p_kind, p_names[i];
                CONTINUE;
            END IF;
            RAISE EXCEPTION '% "%" does not exist', p_kind, p_names[i] USING ERRCODE = '42P01';
        END IF;
        IF (SELECT relkind FROM pg_class WHERE oid = r) <> want THEN
            RAISE EXCEPTION '"%" is not a %', p_names[i], p_kind USING ERRCODE = '42809';
        END IF;
        IF NOT pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = r), 'USAGE') THEN
            RAISE EXCEPTION 'must be owner of % %', p_kind, p_names[i] USING ERRCODE = '42501';
        END IF;
        IF want = 'S' AND EXISTS (SELECT 1 FROM pg_depend WHERE refobjid = r AND classid = 'pg_attrdef'::regclass) THEN
            IF p_cascade THEN
                RAISE EXCEPTION 'sqlgate cannot yet undo DROP SEQUENCE ... CASCADE of a sequence a default uses'
                    USING ERRCODE = '0A000';
            END IF;
            RAISE EXCEPTION 'cannot drop sequence % because other objects depend on it', r USING ERRCODE = '2BP01',
                HINT = 'Use DROP ... CASCADE to drop the dependent objects too.';
        END IF;
        todo := todo || r::oid;
    END LOOP;
    -- Dependent views (recursively) and foreign keys of other tables.
    i := 1;
    WHILE i <= coalesce(array_length(todo, 1), 0) LOOP
        FOR dep IN SELECT DISTINCT rw.ev_class AS v FROM pg_depend d JOIN pg_rewrite rw ON rw.oid = d.objid
                   WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = todo[i] AND rw.ev_class <> todo[i]
                   AND d.refclassid = 'pg_class'::regclass
                   AND NOT sqlgate.in_trash(rw.ev_class) LOOP
            IF NOT dep.v = ANY (todo) THEN
                IF NOT p_cascade THEN
                    RAISE EXCEPTION 'cannot drop % % because other objects depend on it', p_kind, todo[i]::regclass
                        USING ERRCODE = '2BP01',
                              DETAIL = format('view %s depends on %s', dep.v::regclass, todo[i]::regclass),
                              HINT = 'Use DROP ... CASCADE to drop the dependent objects too.';
                END IF;
                todo := todo || dep.v;
            END IF;
        END LOOP;
        i := i + 1;
    END LOOP;
    FOR fk IN SELECT c.conname, c.conrelid, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
              WHERE c.contype = 'f' AND c.confrelid = ANY (todo) AND NOT c.conrelid = ANY (todo)
              AND NOT sqlgate.in_trash(c.conrelid) LOOP
        IF NOT p_cascade THEN
            RAISE EXCEPTION 'cannot drop table % because other objects depend on it', fk.conrelid::regclass
                USING ERRCODE = '2BP01',
                      DETAIL = format('constraint %s on table %s depends on it', fk.conname, fk.conrelid::regclass),
                      HINT = 'Use DROP ... CASCADE to drop the dependent objects too.';
        END IF;
        objs := objs || jsonb_build_object('kind', 'fk', 'table', fk.conrelid::regclass::text, 'name', fk.conname,
                                           'def', fk.def, 'relid', fk.conrelid);
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.conrelid::regclass, fk.conname);
    END LOOP;
    -- Move views first (dependents), then the tables, each into its own schema.
    FOREACH o IN ARRAY todo LOOP
        SELECT n2.nspname, c.relname INTO nsp, rel FROM pg_class c JOIN pg_namespace n2 ON n2.oid = c.relnamespace
        WHERE c.oid = o;
        n := n + 1;
        trash := format('sqlgate_trash_%s_%s', p_id, n);
        EXECUTE format('CREATE SCHEMA %I', trash);  -- a new schema grants nothing to anyone but its owner
        IF (SELECT relkind FROM pg_class WHERE oid = o) = 'v' THEN
            EXECUTE format('ALTER VIEW %s SET SCHEMA %I', o::regclass, trash);
        ELSIF (SELECT relkind FROM pg_class WHERE oid = o) = 'S' THEN
            EXECUTE format('ALTER SEQUENCE %s SET SCHEMA %I', o::regclass, trash);
        ELSE
            EXECUTE format('ALTER TABLE %s SET SCHEMA %I', o::regclass, trash);
        END IF;
        objs := objs || jsonb_build_object('kind', 'relation', 'relid', o, 'schema', nsp, 'name', rel, 'trash', trash);
    END LOOP;
    UPDATE sqlgate.checkpoints SET objects = objects || objs WHERE id = p_id;
    -- The tables whose foreign keys were dropped: their later writes are the checkpoint's too.
    PERFORM sqlgate.capture_dependents(p_id, ARRAY(SELECT (x->>'relid')::oid FROM jsonb_array_elements(objs) x
                                                   WHERE x->>'kind' = 'fk'));
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA sqlgate FROM PUBLIC;
"""

GRANT_SQL = """
GRANT EXECUTE ON FUNCTION sqlgate.cp_take(text, text, text, text, text, text, text[], regclass[], double precision)
    TO {roles};
GRANT EXECUTE ON FUNCTION sqlgate.cp_drop(text, text[], regclass[], text, boolean, boolean) TO {roles};
"""

DEFINITION_SQL = r"""
-- What ALTER TABLE ... DROP CONSTRAINT ... CASCADE takes beyond the constraint, found through pg_depend as
-- PostgreSQL's CASCADE finds it (dependents: normal, auto, internal; the owners of internal parts): the
-- foreign keys (of any table, this one too) that use its index, kept as definitions ('constraints', in
-- creation order); the constraint's own index and the foreign keys' triggers follow their owner; anything
-- else (a view grouped by the key...) cannot come back and is listed, described ('refused').
CREATE OR REPLACE FUNCTION sqlgate.constraint_dependents(p_rel oid, p_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE con oid; o record; keep jsonb := '[]'; refused jsonb := '[]'; ok boolean;
BEGIN
    SELECT k.oid INTO con FROM pg_constraint k WHERE k.conrelid = p_rel AND k.conname = p_name;
    FOR o IN WITH RECURSIVE closure(classid, objid) AS (
                 SELECT 'pg_constraint'::regclass::oid, con WHERE con IS NOT NULL
                 UNION
                 SELECT CASE WHEN f.fwd THEN d.classid ELSE d.refclassid END,
                        CASE WHEN f.fwd THEN d.objid ELSE d.refobjid END
                 FROM closure c JOIN pg_depend d
                      ON (d.refclassid = c.classid AND d.refobjid = c.objid AND d.deptype IN ('n', 'a', 'i'))
                      OR (d.classid = c.classid AND d.objid = c.objid AND d.deptype = 'i')
                 CROSS JOIN LATERAL (SELECT d.refclassid = c.classid AND d.refobjid = c.objid
                                            AND d.deptype IN ('n', 'a', 'i') AS fwd) f
                 -- a table is never part of what a constraint takes: the walk does not go through one
                 WHERE c.classid <> 'pg_class'::regclass
                       OR (SELECT relkind FROM pg_class WHERE oid = c.objid) NOT IN ('r', 'p', 'f', 'm', 'v')
             ) SELECT DISTINCT classid, objid FROM closure
               WHERE NOT (classid = 'pg_constraint'::regclass AND objid = con) ORDER BY objid LOOP
        IF o.classid = 'pg_constraint'::regclass THEN
            ok := (SELECT contype = 'f' FROM pg_constraint WHERE oid = o.objid);
            IF ok THEN
                keep := keep || (SELECT jsonb_build_object(
                                     'relid', conrelid, 'name', conname, 'def', pg_get_constraintdef(oid),
                                     'type', contype, 'comment', obj_description(oid, 'pg_constraint'))
                                 FROM pg_constraint WHERE oid = o.objid);
            END IF;
        ELSIF o.classid = 'pg_class'::regclass THEN
            ok := EXISTS (SELECT 1 FROM pg_constraint k WHERE k.oid = con AND k.conindid = o.objid
                          AND k.contype IN ('p', 'u', 'x'));
        ELSIF o.classid = 'pg_trigger'::regclass THEN
            ok := (SELECT tgconstraint <> 0 FROM pg_trigger WHERE oid = o.objid);
        ELSE
            ok := false;
        END IF;
        IF NOT coalesce(ok, false) THEN
            refused := refused || to_jsonb(pg_describe_object(o.classid, o.objid, 0));
        END IF;
    END LOOP;
    RETURN jsonb_build_object('constraints', keep, 'refused', refused);
END $$;
REVOKE ALL ON FUNCTION sqlgate.constraint_dependents(oid, text) FROM PUBLIC;

-- ALTER TABLE that changes a definition (defaults, NOT NULL, constraints, names, a column's type): keep the
-- table's definition by OID and attnum, which survive renames; for a type change keep the key and the values.
-- p_change: what the statement changes (pg_take reads it from the parse tree), so mode 'statement' undoes only that.
DROP FUNCTION IF EXISTS sqlgate.cp_keep_definition(text, regclass, text);
CREATE OR REPLACE FUNCTION sqlgate.cp_keep_definition(p_id text, p_rel regclass, p_type_column text, p_change jsonb)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE obj jsonb; pk text[]; trash text := format('sqlgate_trash_%s_1', p_id); deps jsonb; kept jsonb := '[]';
        con text;
BEGIN
    IF NOT pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = p_rel), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', p_rel USING ERRCODE = '42501';
    END IF;
    -- DROP CONSTRAINT ... CASCADE: what it takes from this and other tables (foreign keys on its index) is
    -- kept; without CASCADE PostgreSQL itself refuses when anything depends on the constraint.
    FOR con IN SELECT jsonb_array_elements_text(coalesce(p_change->'cascades', '[]')) LOOP
        deps := sqlgate.constraint_dependents(p_rel, con);
        IF jsonb_array_length(deps->'refused') > 0 THEN
            RAISE EXCEPTION 'sqlgate cannot undo this DROP CONSTRAINT % of %: it would also drop %',
                con, p_rel, deps->'refused'->>0
                USING ERRCODE = '0A000',
                      HINT = 'Drop that object first (its own checkpoint keeps it), then drop the constraint.';
        END IF;
        kept := kept || (SELECT coalesce(jsonb_agg(x), '[]') FROM jsonb_array_elements(deps->'constraints') x
                         WHERE NOT kept @> jsonb_build_array(x));
    END LOOP;
    obj := jsonb_build_object(
        'kind', 'definition', 'relid', p_rel::oid, 'change', p_change,
        'schema', (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_rel),
        'name', (SELECT relname FROM pg_class WHERE oid = p_rel),
        'columns', (SELECT jsonb_agg(jsonb_build_object(
                        'attnum', a.attnum, 'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
                        'notnull', a.attnotnull,
                        'default', (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef
                                    WHERE adrelid = p_rel AND adnum = a.attnum)) ORDER BY a.attnum)
                    FROM pg_attribute a WHERE a.attrelid = p_rel AND a.attnum > 0 AND NOT a.attisdropped),
        'constraints', coalesce((SELECT jsonb_agg(jsonb_build_object('name', conname, 'def', pg_get_constraintdef(oid),
                                                                    'type', contype) ORDER BY oid)
                                 FROM pg_constraint
                                 WHERE conrelid = p_rel AND contype <> 'n'), '[]'),
        'indexes', coalesce((SELECT jsonb_agg(jsonb_build_object('name', c.relname,
                                                                'def', pg_get_indexdef(i.indexrelid)))
                             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = p_rel
                             AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)), '[]'));
    IF p_type_column IS NOT NULL THEN
        SELECT array_agg(k.attname ORDER BY k.attnum) INTO pk FROM pg_index i
            JOIN pg_attribute k ON k.attrelid = i.indrelid AND k.attnum = ANY (i.indkey)
            WHERE i.indrelid = p_rel AND i.indisprimary;
        IF pk IS NULL OR p_type_column = ANY (pk) THEN
            RAISE EXCEPTION 'sqlgate can undo ALTER COLUMN TYPE only on a table with a primary key without it'
                USING ERRCODE = '0A000';
        END IF;
        EXECUTE format('CREATE SCHEMA %I', trash);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', trash);
        EXECUTE format('CREATE TABLE %I.kept AS SELECT %s, %I FROM %s', trash,
                       (SELECT string_agg(quote_ident(c), ', ') FROM unnest(pk) c), p_type_column, p_rel);
        obj := obj || jsonb_build_object('trash', trash, 'pk', to_jsonb(pk), 'type_column', p_type_column);
    END IF;
    IF kept <> '[]' THEN
        obj := obj || jsonb_build_object('dependents', kept);
    END IF;
    UPDATE sqlgate.checkpoints SET objects = objects || jsonb_build_array(obj) WHERE id = p_id;
    -- The other tables whose foreign keys CASCADE drops: their later writes are the checkpoint's too.
    IF kept <> '[]' THEN
        PERFORM sqlgate.capture_dependents(p_id, ARRAY(SELECT (x->>'relid')::oid FROM jsonb_array_elements(kept) x
                                                       WHERE (x->>'relid')::oid <> p_rel::oid));
    END IF;
END $$;
REVOKE ALL ON FUNCTION sqlgate.cp_keep_definition(text, regclass, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sqlgate.cp_keep_definition(text, regclass, text, jsonb) TO {roles};

-- DROP INDEX and CREATE OR REPLACE VIEW: their definitions are enough.
CREATE OR REPLACE FUNCTION sqlgate.cp_keep_relation_def(p_id text, p_rel regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE k char := (SELECT relkind FROM pg_class WHERE oid = p_rel);
BEGIN
    UPDATE sqlgate.checkpoints SET objects = objects || jsonb_build_array(jsonb_build_object(
        'kind', CASE k WHEN 'i' THEN 'index' ELSE 'viewdef' END, 'relid', p_rel::oid,
        'schema', (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_rel),
        'name', (SELECT relname FROM pg_class WHERE oid = p_rel),
        'def', CASE k WHEN 'i' THEN pg_get_indexdef(p_rel) ELSE pg_get_viewdef(p_rel) END,
        'owner', (SELECT relowner::regrole::text FROM pg_class WHERE oid = p_rel),
        'grants', coalesce((SELECT jsonb_agg(jsonb_build_array(
                               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,  -- quoted
                               a.privilege_type))
                            FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = p_rel), '[]')))
    WHERE id = p_id;
END $$;
REVOKE ALL ON FUNCTION sqlgate.cp_keep_relation_def(text, regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sqlgate.cp_keep_relation_def(text, regclass) TO {roles};
"""
