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

-- The checkpoint is looked up inline (not through current_checkpoint()): this runs on every captured statement.
CREATE OR REPLACE FUNCTION sqlgate.capture_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO sqlgate.changes (cp, tbl, op, rows)
    SELECT (SELECT c.id FROM sqlgate.checkpoints c
            WHERE c.id = nullif(current_setting('sqlgate.checkpoint', true), '') AND c.xid = txid_current()),
           TG_RELID, 'D', json_agg(o)
    FROM sqlgate_old o HAVING count(*) > 0;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION sqlgate.capture_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO sqlgate.changes (cp, tbl, op, rows)
    SELECT (SELECT c.id FROM sqlgate.checkpoints c
            WHERE c.id = nullif(current_setting('sqlgate.checkpoint', true), '') AND c.xid = txid_current()),
           TG_RELID, 'I', json_agg(n)
    FROM sqlgate_new n HAVING count(*) > 0;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION sqlgate.capture_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE cp text := sqlgate.current_checkpoint();
BEGIN
    INSERT INTO sqlgate.changes (cp, tbl, op, rows)
    SELECT cp, TG_RELID, 'D', json_agg(o) FROM sqlgate_old o HAVING count(*) > 0;
    INSERT INTO sqlgate.changes (cp, tbl, op, rows)
    SELECT cp, TG_RELID, 'I', json_agg(n) FROM sqlgate_new n HAVING count(*) > 0;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION sqlgate.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('INSERT INTO sqlgate.changes (cp, tbl, op, rows) SELECT $1, $2, ''D'', json_agg(x)'
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

CREATE OR REPLACE FUNCTION sqlgate.cp_take(p_id text, p_trace text, p_actor text, p_token text, p_branch text,
    p_kind text, p_tables text[], p_rels regclass[], p_days double precision) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE r regclass; m bigint; seqs jsonb := '{}';
BEGIN
    IF p_kind = 'rows' THEN
        -- Foreign keys reach further than the statement names: ON DELETE/UPDATE CASCADE,
        -- SET NULL/DEFAULT and TRUNCATE ... CASCADE change the referencing tables too,
        -- so every table that references these, at any depth, is captured as well.
        SELECT array_agg(rel::regclass) INTO p_rels FROM (
            WITH RECURSIVE reach(rel) AS (
                SELECT unnest(p_rels)::oid
                UNION
                SELECT c.conrelid FROM pg_constraint c JOIN reach ON c.confrelid = reach.rel
                WHERE c.contype = 'f' AND c.conrelid <> c.confrelid
            ) SELECT rel FROM reach) found;
        -- Capture triggers are installed at a table's first checkpoint; later ones only look.
        FOR r IN SELECT x FROM unnest(p_rels) x
                 WHERE NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = x AND tgname = 'sqlgate_capture_d') LOOP
            PERFORM sqlgate.ensure_capture(r);
        END LOOP;
        FOREACH r IN ARRAY p_rels LOOP
            seqs := seqs || sqlgate.owned_sequences(r);
        END LOOP;
    END IF;
    m := nextval('sqlgate.change_seq');
    INSERT INTO sqlgate.checkpoints (id, trace_id, actor, token_id, branch, kind, tables, relids, mark, seqs,
                                     expires_at, xid)
    VALUES (p_id, p_trace, p_actor, p_token, p_branch, p_kind, to_jsonb(p_tables), p_rels::oid[], m, seqs,
            now() + make_interval(secs => p_days * 86400), txid_current());
    RETURN m;
END $$;

-- Objects a checkpoint keeps are no longer the agent's: they neither block nor follow later drops.
CREATE OR REPLACE FUNCTION sqlgate.in_trash(r oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT n.nspname LIKE 'sqlgate\_trash\_%' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = r $$;

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
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA sqlgate FROM PUBLIC;
"""

GRANT_SQL = """
GRANT EXECUTE ON FUNCTION sqlgate.cp_take(text, text, text, text, text, text, text[], regclass[], double precision)
    TO {roles};
GRANT EXECUTE ON FUNCTION sqlgate.cp_drop(text, text[], regclass[], text, boolean, boolean) TO {roles};
"""

DROP_COLUMN_SQL = r"""
-- ALTER TABLE ... DROP COLUMN of a table's last column: keep the key and the column, and its definition.
CREATE OR REPLACE FUNCTION sqlgate.cp_keep_column(p_id text, p_rel regclass, p_column text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a record; pk text[]; trash text := format('sqlgate_trash_%s_1', p_id); obj jsonb; last int2;
BEGIN
    IF NOT pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = p_rel), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', p_rel USING ERRCODE = '42501';
    END IF;
    SELECT * INTO a FROM pg_attribute WHERE attrelid = p_rel AND attname = p_column AND NOT attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" of relation "%" does not exist', p_column, p_rel USING ERRCODE = '42703';
    END IF;
    SELECT max(attnum) INTO last FROM pg_attribute WHERE attrelid = p_rel AND attnum > 0 AND NOT attisdropped;
    IF a.attnum <> last THEN
        RAISE EXCEPTION 'sqlgate can undo DROP COLUMN only of a table''s last column; "%" is not the last of %',
            p_column, p_rel USING ERRCODE = '0A000',
            HINT = 'PostgreSQL cannot put a column back between others, so this drop could not be undone exactly.';
    END IF;
    IF a.attidentity <> '' OR a.attgenerated <> '' THEN
        RAISE EXCEPTION 'sqlgate cannot yet undo dropping an identity or generated column' USING ERRCODE = '0A000';
    END IF;
    SELECT array_agg(k.attname ORDER BY k.attnum) INTO pk FROM pg_index i
        JOIN pg_attribute k ON k.attrelid = i.indrelid AND k.attnum = ANY (i.indkey)
        WHERE i.indrelid = p_rel AND i.indisprimary;
    IF pk IS NULL OR p_column = ANY (pk) THEN
        RAISE EXCEPTION 'sqlgate can undo DROP COLUMN only on a table with a primary key that does not include it'
            USING ERRCODE = '0A000';
    END IF;
    obj := jsonb_build_object(
        'kind', 'column', 'relid', p_rel::oid, 'column', p_column, 'pk', to_jsonb(pk), 'trash', trash,
        'type', format_type(a.atttypid, a.atttypmod),
        'collation', CASE WHEN a.attcollation <> 0
                               AND a.attcollation <> (SELECT typcollation FROM pg_type WHERE oid = a.atttypid)
                          THEN (SELECT format('%I.%I', n.nspname, c.collname) FROM pg_collation c
                                JOIN pg_namespace n ON n.oid = c.collnamespace WHERE c.oid = a.attcollation) END,
        'notnull', a.attnotnull,
        'default', (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = p_rel AND adnum = a.attnum),
        'constraints', coalesce((SELECT jsonb_agg(jsonb_build_object('name', conname,
                                                                    'def', pg_get_constraintdef(oid),
                                                                    'relid', conrelid) ORDER BY oid)
                                 FROM pg_constraint
                                 WHERE (conrelid = p_rel AND a.attnum = ANY (conkey) AND contype <> 'n')
                                    OR (confrelid = p_rel AND a.attnum = ANY (confkey))), '[]'),
        'indexes', coalesce((SELECT jsonb_agg(pg_get_indexdef(i.indexrelid) ORDER BY i.indexrelid) FROM pg_index i
                             WHERE i.indrelid = p_rel AND a.attnum = ANY (i.indkey)
                               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)), '[]'));
    EXECUTE format('CREATE SCHEMA %I', trash);
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', trash);
    EXECUTE format('CREATE TABLE %I.kept AS SELECT %s, %I FROM %s', trash,
                   (SELECT string_agg(quote_ident(c), ', ') FROM unnest(pk) c), p_column, p_rel);
    UPDATE sqlgate.checkpoints SET objects = objects || jsonb_build_array(obj) WHERE id = p_id;
END $$;
REVOKE ALL ON FUNCTION sqlgate.cp_keep_column(text, regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sqlgate.cp_keep_column(text, regclass, text) TO {roles};
"""

DEFINITION_SQL = r"""
-- ALTER TABLE that changes a definition (defaults, NOT NULL, constraints, names, a column's type): keep the
-- table's definition by OID and attnum, which survive renames; for a type change keep the key and the values.
CREATE OR REPLACE FUNCTION sqlgate.cp_keep_definition(p_id text, p_rel regclass, p_type_column text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE obj jsonb; pk text[]; trash text := format('sqlgate_trash_%s_1', p_id);
BEGIN
    IF NOT pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = p_rel), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', p_rel USING ERRCODE = '42501';
    END IF;
    obj := jsonb_build_object(
        'kind', 'definition', 'relid', p_rel::oid,
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
    UPDATE sqlgate.checkpoints SET objects = objects || jsonb_build_array(obj) WHERE id = p_id;
END $$;
REVOKE ALL ON FUNCTION sqlgate.cp_keep_definition(text, regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sqlgate.cp_keep_definition(text, regclass, text) TO {roles};

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
