"""SQL installed at start for DROP COLUMN checkpoints on PostgreSQL (as OWNER).

ALTER TABLE ... DROP COLUMN runs as sent; before it, sqlgate.cp_keep_column keeps
what it destroys: the column's values keyed by the primary key (or by ctid when
there is none: DROP COLUMN does not move rows), its definition (sqlgate.column_spec),
and, found through pg_depend as PostgreSQL's own CASCADE finds them
(sqlgate.column_closure), the definitions of its indexes, constraints (foreign
keys both ways), triggers and views (views over them too). A sequence the column
owns is moved aside instead of being dropped. What could not come back exactly
(policies, rules, materialized views, statistics objects, another column,
partitioned or inherited tables) is refused. A rollback (pg_restore_column) adds
the column back and re-creates every later column after it, so the order is the
same; sqlgate.column_deps tells it what depends on those columns. Names in the
kept definitions are schema-qualified (the functions pin search_path)."""

DROP_COLUMN_SQL = r"""
DROP FUNCTION IF EXISTS sqlgate.cp_keep_column(text, regclass, text);

-- Everything DROP COLUMN ... CASCADE of these columns would drop, as PostgreSQL finds it: dependents
-- (normal, auto, internal), and the owners of internal parts (a view's _RETURN rule brings the view, a
-- generated column's default brings the column). `normal`: reached through a normal dependency, which
-- PostgreSQL refuses to follow without CASCADE. Without p_through_views the walk stops at views.
CREATE OR REPLACE FUNCTION sqlgate.column_closure(p_rel oid, p_attnums int2[], p_through_views boolean)
RETURNS TABLE (classid oid, objid oid, objsubid int, normal boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE closure(classid, objid, objsubid, normal) AS (
        SELECT 'pg_class'::regclass::oid, p_rel, a::int, false FROM unnest(p_attnums) a
        UNION
        SELECT CASE WHEN f.fwd THEN d.classid ELSE d.refclassid END,
               CASE WHEN f.fwd THEN d.objid ELSE d.refobjid END,
               CASE WHEN f.fwd THEN d.objsubid ELSE d.refobjsubid END,
               c.normal OR (f.fwd AND d.deptype = 'n')
        FROM closure c JOIN pg_depend d
             ON (d.refclassid = c.classid AND d.refobjid = c.objid
                 AND (c.objsubid = 0 OR d.refobjsubid = c.objsubid) AND d.deptype IN ('n', 'a', 'i'))
             OR (d.classid = c.classid AND d.objid = c.objid AND d.deptype = 'i')
        CROSS JOIN LATERAL (SELECT d.refclassid = c.classid AND d.refobjid = c.objid
                                   AND (c.objsubid = 0 OR d.refobjsubid = c.objsubid)
                                   AND d.deptype IN ('n', 'a', 'i') AS fwd) f
        WHERE p_through_views OR c.classid <> 'pg_class'::regclass OR c.objsubid <> 0
              OR (SELECT relkind FROM pg_class WHERE oid = c.objid) <> 'v'
    ) SELECT * FROM closure $$;

-- A column as ADD COLUMN and ALTER COLUMN can re-create it.
CREATE OR REPLACE FUNCTION sqlgate.column_spec(p_rel oid, p_attnum int2) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'attnum', a.attnum, 'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
        'collation', CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                          THEN (SELECT format('%I.%I', n.nspname, c.collname) FROM pg_collation c
                                JOIN pg_namespace n ON n.oid = c.collnamespace WHERE c.oid = a.attcollation) END,
        'notnull', a.attnotnull,
        'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
        'generated', CASE WHEN a.attgenerated <> '' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
        'identity', CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END,
        'identity_seq', (SELECT jsonb_build_object(
                             'relid', s.seqrelid, 'name', format('%I.%I', sn.nspname, sc.relname), 'start', s.seqstart,
                             'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax, 'cache', s.seqcache,
                             'cycle', s.seqcycle, 'last', pg_sequence_last_value(s.seqrelid))
                         FROM pg_depend d JOIN pg_sequence s ON s.seqrelid = d.objid
                         JOIN pg_class sc ON sc.oid = s.seqrelid JOIN pg_namespace sn ON sn.oid = sc.relnamespace
                         WHERE a.attidentity <> '' AND d.classid = 'pg_class'::regclass
                           AND d.refclassid = 'pg_class'::regclass AND d.refobjid = p_rel
                           AND d.refobjsubid = a.attnum AND d.deptype = 'i'),
        'statistics', nullif(a.attstattarget, -1),
        'storage', CASE WHEN a.attstorage <> t.typstorage
                        THEN CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL' WHEN 'm' THEN 'MAIN'
                                               ELSE 'EXTENDED' END END,
        'compression', CASE a.attcompression WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' END,
        'options', a.attoptions,
        'comment', col_description(p_rel, a.attnum),
        'acl', coalesce((SELECT jsonb_agg(jsonb_build_array(
                                   CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END,
                                   x.privilege_type, x.is_grantable) ORDER BY x.grantee, x.privilege_type)
                         FROM aclexplode(a.attacl) x), '[]'))
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    WHERE a.attrelid = p_rel AND a.attnum = p_attnum $$;

-- What depends on these columns, as definitions a rollback can re-create (indexes, constraints of this
-- and other tables, triggers, views), the sequences they own (serial), and what cannot come back
-- ('refused', described). A constraint's own index, foreign-key triggers, a view's rule and row type
-- follow their owner.
CREATE OR REPLACE FUNCTION sqlgate.column_deps(p_rel oid, p_attnums int2[], p_through_views boolean)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    o record; k char; idx jsonb := '[]'; cons jsonb := '[]'; trg jsonb := '[]'; views jsonb := '[]';
    seqs jsonb := '[]'; refused jsonb := '[]'; normal boolean := false; ok boolean;
BEGIN
    -- An object also reached without a normal dependency (a serial column's default, through its
    -- sequence and through the column) goes with the column, as in PostgreSQL.
    FOR o IN SELECT c.classid, c.objid, c.objsubid, bool_and(c.normal) AS normal
             FROM sqlgate.column_closure(p_rel, p_attnums, p_through_views) c GROUP BY 1, 2, 3 LOOP
        normal := normal OR o.normal;
        ok := true;
        IF o.classid = 'pg_class'::regclass THEN
            SELECT relkind INTO k FROM pg_class WHERE oid = o.objid;
            IF o.objid = p_rel THEN
                ok := o.objsubid = ANY (p_attnums);
            ELSIF k = 'i' THEN
                IF NOT EXISTS (SELECT 1 FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid
                               WHERE c.conindid = o.objid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x'))
                THEN
                    ok := (SELECT indrelid = p_rel FROM pg_index WHERE indexrelid = o.objid);
                    idx := idx || (SELECT jsonb_build_object(
                                       'name', c.relname, 'def', pg_get_indexdef(i.indexrelid),
                                       'schema', (SELECT nspname FROM pg_namespace WHERE oid = c.relnamespace),
                                       'clustered', i.indisclustered, 'replident', i.indisreplident,
                                       'comment', obj_description(i.indexrelid, 'pg_class'))
                                   FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                                   WHERE i.indexrelid = o.objid);
                END IF;
            ELSIF k = 'S' THEN
                -- serial: owned (auto), moved aside or re-owned; identity (internal): part of column_spec
                IF EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_class'::regclass AND objid = o.objid
                           AND refobjid = p_rel AND refobjsubid = ANY (p_attnums) AND deptype = 'a') THEN
                    seqs := seqs || (SELECT jsonb_build_object(
                                         'relid', o.objid, 'name', c.relname,
                                         'schema', (SELECT nspname FROM pg_namespace WHERE oid = c.relnamespace),
                                         'column', (SELECT a.attname FROM pg_depend d JOIN pg_attribute a
                                                    ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                                    WHERE d.classid = 'pg_class'::regclass AND d.objid = o.objid
                                                      AND d.refobjid = p_rel AND d.deptype = 'a'))
                                     FROM pg_class c WHERE c.oid = o.objid);
                ELSE
                    ok := EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_class'::regclass AND objid = o.objid
                                  AND refobjid = p_rel AND refobjsubid = ANY (p_attnums) AND deptype = 'i');
                END IF;
            ELSIF k = 'v' THEN
                ok := p_through_views IS FALSE OR NOT sqlgate.in_trash(o.objid);
                views := views || (SELECT jsonb_build_object(
                    'relid', c.oid, 'name', c.relname,
                    'schema', (SELECT nspname FROM pg_namespace WHERE oid = c.relnamespace),
                    'def', pg_get_viewdef(c.oid), 'options', c.reloptions, 'owner', c.relowner::regrole::text,
                    'acl', coalesce((SELECT jsonb_agg(jsonb_build_array(
                                         CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END,
                                         x.privilege_type, x.is_grantable) ORDER BY x.grantee, x.privilege_type)
                                     FROM aclexplode(c.relacl) x WHERE x.grantee <> c.relowner), '[]'),
                    'columns', (SELECT jsonb_agg(jsonb_build_object(
                                    'name', a.attname, 'comment', col_description(c.oid, a.attnum),
                                    'default', (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef
                                                WHERE adrelid = c.oid AND adnum = a.attnum),
                                    'acl', coalesce((SELECT jsonb_agg(jsonb_build_array(
                                               CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END,
                                                 x.privilege_type, x.is_grantable))
                                             FROM aclexplode(a.attacl) x), '[]')) ORDER BY a.attnum)
                                FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0),
                    'comment', obj_description(c.oid, 'pg_class'),
                    'after', coalesce((SELECT jsonb_agg(DISTINCT d.refobjid) FROM pg_rewrite r JOIN pg_depend d
                                       ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                                       WHERE r.ev_class = c.oid AND d.refclassid = 'pg_class'::regclass
                                         AND d.refobjid <> c.oid), '[]'))
                    FROM pg_class c WHERE c.oid = o.objid);
            ELSE
                ok := false;
            END IF;
        ELSIF o.classid = 'pg_attrdef'::regclass THEN
            ok := (SELECT adrelid = p_rel AND adnum = ANY (p_attnums) FROM pg_attrdef WHERE oid = o.objid);
        ELSIF o.classid = 'pg_constraint'::regclass THEN
            ok := (SELECT conrelid <> 0 AND contype IN ('p', 'u', 'x', 'c', 'f') FROM pg_constraint
                   WHERE oid = o.objid);
            cons := cons || (SELECT jsonb_build_object(
                                 'relid', conrelid, 'name', conname, 'def', pg_get_constraintdef(oid), 'type', contype,
                                 'comment', obj_description(oid, 'pg_constraint'))
                             FROM pg_constraint WHERE oid = o.objid);
        ELSIF o.classid = 'pg_trigger'::regclass THEN
            CONTINUE WHEN (SELECT tgconstraint <> 0 FROM pg_trigger WHERE oid = o.objid);
            ok := (SELECT tgrelid = p_rel AND NOT tgisinternal FROM pg_trigger WHERE oid = o.objid);
            trg := trg || (SELECT jsonb_build_object('name', tgname, 'def', pg_get_triggerdef(oid),
                                                     'enabled', tgenabled,
                                                     'comment', obj_description(oid, 'pg_trigger'))
                           FROM pg_trigger WHERE oid = o.objid);
        ELSIF o.classid = 'pg_rewrite'::regclass THEN
            ok := (SELECT r.rulename = '_RETURN' AND c.relkind = 'v' FROM pg_rewrite r JOIN pg_class c
                   ON c.oid = r.ev_class WHERE r.oid = o.objid);
        ELSIF o.classid = 'pg_type'::regclass THEN
            ok := (SELECT typrelid <> 0 OR typcategory = 'A' FROM pg_type WHERE oid = o.objid);
        ELSE
            ok := false;
        END IF;
        IF NOT ok THEN
            refused := refused || to_jsonb(pg_describe_object(o.classid, o.objid, o.objsubid));
        END IF;
    END LOOP;
    -- Re-created in this order: unique keys before the foreign keys that use them.
    SELECT coalesce(jsonb_agg(x ORDER BY CASE x->>'type' WHEN 'f' THEN 2 WHEN 'c' THEN 1 ELSE 0 END), '[]')
    INTO cons FROM jsonb_array_elements(cons) x;
    RETURN jsonb_build_object('normal', normal, 'indexes', idx, 'constraints', cons, 'triggers', trg,
                              'views', views, 'sequences', seqs, 'refused', refused);
END $$;

-- A generated column may only use columns before it: a rollback re-adds them in order.
CREATE OR REPLACE FUNCTION sqlgate.column_forward_refs(p_rel oid, p_from int2) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT string_agg(DISTINCT a.attname, ', ') FROM pg_attrdef ad
    JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
         AND d.refclassid = 'pg_class'::regclass AND d.refobjid = p_rel AND d.deptype = 'n'
    JOIN pg_attribute a ON a.attrelid = p_rel AND a.attnum = ad.adnum
    WHERE ad.adrelid = p_rel AND ad.adnum >= p_from AND d.refobjsubid > ad.adnum $$;

-- ALTER TABLE ... DROP COLUMN of any column, CASCADE or not: keep the key and the column's values, its
-- definition and what it takes with it. Refuse what a rollback could not put back exactly.
CREATE OR REPLACE FUNCTION sqlgate.cp_keep_column(p_id text, p_rel regclass, p_column text, p_cascade boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a record; key text[]; trash text := format('sqlgate_trash_%s_1', p_id); obj jsonb; deps jsonb;
    later int2[]; later_deps jsonb; s jsonb; moved jsonb := '[]'; why text; owned jsonb; spec jsonb;
BEGIN
    IF NOT pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = p_rel), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', p_rel USING ERRCODE = '42501';
    END IF;
    -- The lock the DROP takes anyway, taken before the values are kept: a writer's transaction open on
    -- the table is waited for (its committed rows are kept), and none can write in between.
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', p_rel);
    SELECT * INTO a FROM pg_attribute WHERE attrelid = p_rel AND attname = p_column AND attnum > 0
        AND NOT attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" of relation "%" does not exist', p_column, p_rel USING ERRCODE = '42703';
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = p_rel) <> 'r'
       OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = p_rel OR inhparent = p_rel) THEN
        why := 'the table is partitioned, a partition or part of an inheritance tree';
    END IF;
    deps := sqlgate.column_deps(p_rel, ARRAY[a.attnum], true);
    IF (deps->>'normal')::boolean AND NOT p_cascade THEN
        -- PostgreSQL itself refuses this DROP (RESTRICT): say so before anything is moved aside.
        RAISE EXCEPTION 'cannot drop column % of table % because other objects depend on it', p_column, p_rel
            USING ERRCODE = '2BP01', HINT = 'Use DROP ... CASCADE to drop the dependent objects too.';
    END IF;
    IF why IS NULL AND jsonb_array_length(deps->'refused') > 0 THEN
        why := format('it would also drop %s', deps->'refused'->>0);
    END IF;
    later := ARRAY(SELECT attnum FROM pg_attribute WHERE attrelid = p_rel AND attnum > a.attnum AND NOT attisdropped
                   ORDER BY attnum);
    later_deps := sqlgate.column_deps(p_rel, later, false);
    IF why IS NULL AND jsonb_array_length(later_deps->'refused') > 0 THEN
        why := format('%s depends on a column after %I, which a rollback re-creates to put %I back in its place',
                      later_deps->'refused'->>0, p_column, p_column);
    END IF;
    IF why IS NULL AND sqlgate.column_forward_refs(p_rel, a.attnum) IS NOT NULL THEN
        why := format('generated column %s uses a column after it', sqlgate.column_forward_refs(p_rel, a.attnum));
    END IF;
    IF why IS NOT NULL THEN
        RAISE EXCEPTION 'sqlgate cannot undo this DROP COLUMN of %.%: %', p_rel, p_column, why
            USING ERRCODE = '0A000',
                  HINT = 'Drop or change that object first (its own checkpoint keeps it), then drop the column.';
    END IF;
    -- The key: the primary key unless it includes the column, else the row's position (DROP COLUMN
    -- does not move rows; a later write that does is a conflict at rollback).
    SELECT array_agg(k.attname ORDER BY k.attnum) INTO key FROM pg_index i
        JOIN pg_attribute k ON k.attrelid = i.indrelid AND k.attnum = ANY (i.indkey)
        WHERE i.indrelid = p_rel AND i.indisprimary
        HAVING NOT a.attnum = ANY (array_agg(k.attnum));
    owned := sqlgate.owned_sequences(p_rel);
    spec := sqlgate.column_spec(p_rel, a.attnum);  -- before its sequence moves: the default names it where it was
    EXECUTE format('CREATE SCHEMA %I', trash);
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', trash);
    IF a.attgenerated = '' THEN  -- a generated column's values come back from its expression
        EXECUTE format('CREATE TABLE %I.kept AS SELECT %s, %I AS v FROM %s', trash,
                       CASE WHEN key IS NULL THEN 'ctid AS k1'
                            ELSE (SELECT string_agg(format('%I AS k%s', c, n), ', ')
                                  FROM unnest(key) WITH ORDINALITY u(c, n)) END,
                       p_column, p_rel);
    END IF;
    -- A sequence the column owns (serial) would be dropped with it: move it aside instead.
    FOR s IN SELECT x FROM jsonb_array_elements(deps->'sequences') x LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNED BY NONE', (s->>'relid')::oid::regclass);
        EXECUTE format('ALTER SEQUENCE %s SET SCHEMA %I', (s->>'relid')::oid::regclass, trash);
        moved := moved || s;
    END LOOP;
    obj := jsonb_build_object(
        'kind', 'column', 'relid', p_rel::oid, 'column', p_column, 'attnum', a.attnum, 'trash', trash,
        'spec', spec, 'key', to_jsonb(key), 'kept', a.attgenerated = '',
        'relfilenode', (SELECT relfilenode FROM pg_class WHERE oid = p_rel),
        'mark', (SELECT mark FROM sqlgate.checkpoints WHERE id = p_id),
        'indexes', deps->'indexes', 'constraints', deps->'constraints', 'triggers', deps->'triggers',
        'views', deps->'views', 'sequences', moved);
    -- Later writes are captured (mode 'all' undoes them; they show conflicts to mode 'statement').
    PERFORM sqlgate.ensure_capture(p_rel);
    UPDATE sqlgate.checkpoints SET objects = objects || jsonb_build_array(obj), seqs = seqs || owned
    WHERE id = p_id;
    -- So are those of the other tables whose foreign keys on the column CASCADE drops (kept above).
    PERFORM sqlgate.capture_dependents(p_id, ARRAY(SELECT (x->>'relid')::oid FROM jsonb_array_elements(
                                                       deps->'constraints') x WHERE (x->>'relid')::oid <> p_rel::oid));
END $$;
REVOKE ALL ON FUNCTION sqlgate.column_closure(oid, int2[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION sqlgate.column_spec(oid, int2) FROM PUBLIC;
REVOKE ALL ON FUNCTION sqlgate.column_deps(oid, int2[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION sqlgate.column_forward_refs(oid, int2) FROM PUBLIC;
REVOKE ALL ON FUNCTION sqlgate.cp_keep_column(text, regclass, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sqlgate.cp_keep_column(text, regclass, text, boolean) TO {roles};
"""
