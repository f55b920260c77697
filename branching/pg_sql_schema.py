"""SQL installed at start for DROP SCHEMA checkpoints on PostgreSQL (as OWNER).

DROP SCHEMA is not run: the schema is renamed aside (O(1), every object in it
intact, OIDs kept) and handed to sqlgate's owner with its grants revoked, so
nobody reaches it. What CASCADE would drop outside the schema is found from
pg_depend (the same closure PostgreSQL walks): views and sequences are moved
aside, foreign keys, check constraints, defaults and indexes of other tables are
kept as definitions and dropped. Anything else outside (a column of a type in
the schema, a trigger, a function...) is refused: it could not come back exactly."""

SCHEMA_SQL = r"""
-- Every object DROP SCHEMA ... CASCADE of these schemas would drop, as PostgreSQL finds them:
-- the schemas' members, then whatever depends on them (normal, auto, internal), and the owners
-- of internal parts (a view's _RETURN rule brings the view).
CREATE OR REPLACE FUNCTION sqlgate.schema_closure(p_nsps oid[])
RETURNS TABLE (classid oid, objid oid, objsubid int)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE closure(classid, objid, objsubid) AS (
        SELECT d.classid, d.objid, 0 FROM pg_depend d
        WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = ANY (p_nsps)
        UNION
        SELECT CASE WHEN fwd THEN d.classid ELSE d.refclassid END,
               CASE WHEN fwd THEN d.objid ELSE d.refobjid END,
               CASE WHEN fwd THEN d.objsubid ELSE 0 END
        FROM closure c JOIN pg_depend d
             ON (d.refclassid = c.classid AND d.refobjid = c.objid
                 AND (c.objsubid = 0 OR d.refobjsubid = c.objsubid) AND d.deptype IN ('n', 'a', 'i'))
             OR (d.classid = c.classid AND d.objid = c.objid AND d.deptype = 'i')
        CROSS JOIN LATERAL (SELECT d.refclassid = c.classid AND d.refobjid = c.objid AS fwd) f
    ) SELECT * FROM closure $$;

CREATE OR REPLACE FUNCTION sqlgate.cp_drop_schema(p_id text, p_names text[], p_cascade boolean,
    p_if_exists boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    nm text; nsp oid; nsps oid[] := '{}'; o record; home oid; kind char; objs jsonb := '[]';
    rels jsonb := '[]'; defaults jsonb := '[]'; indexes jsonb := '[]'; cons jsonb := '[]'; n int := 0;
    trash text; acl jsonb; inside oid[];
BEGIN
    FOREACH nm IN ARRAY p_names LOOP
        SELECT oid INTO nsp FROM pg_namespace WHERE nspname = nm;
        IF nsp IS NULL THEN
            IF p_if_exists THEN
                RAISE NOTICE 'schema "%" does not exist, skipping', nm;
                CONTINUE;
            END IF;
            RAISE EXCEPTION 'schema "%" does not exist', nm USING ERRCODE = '3F000';
        END IF;
        IF nm IN ('sqlgate', 'pg_catalog', 'information_schema', 'pg_toast') OR nm LIKE 'sqlgate\_trash\_%'
           OR nm LIKE 'pg\_temp\_%' OR nm LIKE 'pg\_toast\_temp\_%' THEN
            RAISE EXCEPTION 'sqlgate does not drop the schema %', nm USING ERRCODE = '42501';
        END IF;
        IF NOT pg_has_role(session_user, (SELECT nspowner FROM pg_namespace WHERE oid = nsp), 'USAGE') THEN
            RAISE EXCEPTION 'must be owner of schema %', nm USING ERRCODE = '42501';
        END IF;
        IF NOT p_cascade AND EXISTS (SELECT 1 FROM pg_depend WHERE refclassid = 'pg_namespace'::regclass
                                     AND refobjid = nsp) THEN
            RAISE EXCEPTION 'cannot drop schema % because other objects depend on it', nm USING ERRCODE = '2BP01',
                DETAIL = format('schema %s is not empty', nm),
                HINT = 'Use DROP ... CASCADE to drop the dependent objects too.';
        END IF;
        nsps := nsps || nsp;
    END LOOP;
    -- What CASCADE would drop outside the schemas: kept, or refused.
    FOR o IN SELECT DISTINCT c.classid, c.objid, c.objsubid FROM sqlgate.schema_closure(nsps) c LOOP
        IF o.classid = 'pg_class'::regclass THEN
            SELECT relnamespace, relkind INTO home, kind FROM pg_class WHERE oid = o.objid;
            CONTINUE WHEN home = ANY (nsps) OR sqlgate.schema_is_aside(home);
            IF o.objsubid <> 0 THEN
                PERFORM sqlgate.schema_refuse(o.classid, o.objid, o.objsubid);
            ELSIF kind IN ('v', 'm', 'S') THEN
                rels := rels || jsonb_build_array(o.objid);
            ELSIF kind = 'i' AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = o.objid) THEN
                indexes := indexes || jsonb_build_object('relid', o.objid, 'def', pg_get_indexdef(o.objid),
                    'on', (SELECT indrelid FROM pg_index WHERE indexrelid = o.objid),
                    'schema', (SELECT nspname FROM pg_namespace WHERE oid = home),
                    'name', (SELECT relname FROM pg_class WHERE oid = o.objid));
            ELSE
                PERFORM sqlgate.schema_refuse(o.classid, o.objid, o.objsubid);
            END IF;
        ELSIF o.classid = 'pg_type'::regclass THEN
            -- A relation's row type and array types follow their relation or element type.
            CONTINUE WHEN (SELECT typnamespace = ANY (nsps) OR sqlgate.schema_is_aside(typnamespace)
                                  OR typrelid <> 0 OR typcategory = 'A' FROM pg_type WHERE oid = o.objid);
            PERFORM sqlgate.schema_refuse(o.classid, o.objid, o.objsubid);
        ELSIF o.classid = 'pg_rewrite'::regclass THEN
            SELECT c.relnamespace, c.relkind INTO home, kind FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
            WHERE r.oid = o.objid;
            CONTINUE WHEN home = ANY (nsps) OR sqlgate.schema_is_aside(home)
                          OR (kind IN ('v', 'm') AND (SELECT rulename = '_RETURN' FROM pg_rewrite WHERE oid = o.objid));
            PERFORM sqlgate.schema_refuse(o.classid, o.objid, o.objsubid);
        ELSIF o.classid = 'pg_attrdef'::regclass THEN
            SELECT c.relnamespace INTO home FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid
            WHERE d.oid = o.objid;
            CONTINUE WHEN home = ANY (nsps) OR sqlgate.schema_is_aside(home);
            IF (SELECT a.attgenerated <> '' OR a.attidentity <> '' FROM pg_attrdef d JOIN pg_attribute a
                ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.oid = o.objid) THEN
                PERFORM sqlgate.schema_refuse(o.classid, o.objid, o.objsubid);
            END IF;
            defaults := defaults || (SELECT jsonb_build_object('relid', d.adrelid, 'column', a.attname,
                                                               'def', pg_get_expr(d.adbin, d.adrelid))
                                     FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid
                                     AND a.attnum = d.adnum WHERE d.oid = o.objid);
        ELSIF o.classid = 'pg_constraint'::regclass THEN
            SELECT coalesce(c.relnamespace, t.typnamespace), k.contype INTO home, kind FROM pg_constraint k
            LEFT JOIN pg_class c ON c.oid = k.conrelid LEFT JOIN pg_type t ON t.oid = k.contypid WHERE k.oid = o.objid;
            CONTINUE WHEN home = ANY (nsps) OR sqlgate.schema_is_aside(home);
            IF kind NOT IN ('f', 'c') OR (SELECT conrelid = 0 FROM pg_constraint WHERE oid = o.objid) THEN
                PERFORM sqlgate.schema_refuse(o.classid, o.objid, o.objsubid);
            END IF;
            cons := cons || (SELECT jsonb_build_object('relid', conrelid, 'name', conname,
                                                       'def', pg_get_constraintdef(oid))
                             FROM pg_constraint WHERE oid = o.objid);
        ELSIF o.classid = 'pg_trigger'::regclass THEN
            -- Foreign-key triggers belong to their constraint, handled above.
            CONTINUE WHEN (SELECT c.relnamespace = ANY (nsps) OR sqlgate.schema_is_aside(c.relnamespace)
                                  OR t.tgconstraint <> 0
                           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE t.oid = o.objid);
            PERFORM sqlgate.schema_refuse(o.classid, o.objid, o.objsubid);
        ELSE
            -- Anything else is inside when it lives in the schemas or belongs to a relation there (a policy).
            CONTINUE WHEN (SELECT i.schema = ANY (SELECT nspname FROM pg_namespace WHERE oid = ANY (nsps))
                           FROM pg_identify_object(o.classid, o.objid, 0) i)
                       OR EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class c ON c.oid = d.refobjid
                                  WHERE d.classid = o.classid AND d.objid = o.objid AND d.deptype IN ('a', 'i')
                                  AND d.refclassid = 'pg_class'::regclass
                                  AND (c.relnamespace = ANY (nsps) OR sqlgate.schema_is_aside(c.relnamespace)));
            PERFORM sqlgate.schema_refuse(o.classid, o.objid, o.objsubid);
        END IF;
    END LOOP;
    -- Nothing is refused: act. Definitions first (they point into the schema), then the moves.
    inside := ARRAY(SELECT c.oid FROM pg_class c WHERE c.relnamespace = ANY (nsps)
                    AND c.relkind IN ('r', 'p', 'v', 'm', 'S'))
              || ARRAY(SELECT (x #>> '{}')::oid FROM jsonb_array_elements(rels) x);
    FOR o IN SELECT value AS x FROM jsonb_array_elements(cons) LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', (o.x->>'relid')::oid::regclass, o.x->>'name');
    END LOOP;
    FOR o IN SELECT value AS x FROM jsonb_array_elements(defaults) LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', (o.x->>'relid')::oid::regclass, o.x->>'column');
    END LOOP;
    FOR o IN SELECT value AS x FROM jsonb_array_elements(indexes) LOOP
        EXECUTE format('DROP INDEX %s', (o.x->>'relid')::oid::regclass);
    END LOOP;
    -- Restored latest first: the schemas, then the moved relations, then these definitions that use them.
    objs := jsonb_build_array(jsonb_build_object('kind', 'schema_deps', 'defaults', defaults, 'indexes', indexes,
                                                 'constraints', cons));
    FOR o IN SELECT (x #>> '{}')::oid AS rel FROM jsonb_array_elements(rels) x LOOP
        n := n + 1;
        trash := format('sqlgate_trash_%s_%s', p_id, n);
        EXECUTE format('CREATE SCHEMA %I', trash);
        objs := objs || jsonb_build_object(
            'kind', 'relation', 'relid', o.rel, 'trash', trash,
            'schema', (SELECT nspname FROM pg_namespace ns JOIN pg_class c ON c.relnamespace = ns.oid
                       WHERE c.oid = o.rel),
            'name', (SELECT relname FROM pg_class WHERE oid = o.rel));
        EXECUTE format('ALTER %s %s SET SCHEMA %I',
                       CASE (SELECT relkind FROM pg_class WHERE oid = o.rel) WHEN 'v' THEN 'VIEW'
                            WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'SEQUENCE' END, o.rel::regclass, trash);
    END LOOP;
    -- The schemas themselves: renamed aside, owned by sqlgate, reachable by nobody else.
    FOREACH nsp IN ARRAY nsps LOOP
        n := n + 1;
        trash := format('sqlgate_trash_%s_%s', p_id, n);
        SELECT coalesce(jsonb_agg(jsonb_build_array(
                   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                   a.privilege_type, a.is_grantable)), '[]')
        INTO acl FROM pg_namespace s, aclexplode(s.nspacl) a WHERE s.oid = nsp AND a.grantee <> s.nspowner;
        objs := objs || jsonb_build_object(
            'kind', 'schema', 'name', (SELECT nspname FROM pg_namespace WHERE oid = nsp), 'trash', trash,
            'owner', (SELECT nspowner::regrole::text FROM pg_namespace WHERE oid = nsp), 'acl', acl);
        EXECUTE format('ALTER SCHEMA %I RENAME TO %I', (SELECT nspname FROM pg_namespace WHERE oid = nsp), trash);
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', trash, current_user);
        FOR o IN SELECT x->>0 AS grantee FROM jsonb_array_elements(acl) x LOOP
            EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %s', trash, o.grantee);
        END LOOP;
    END LOOP;
    -- Later checkpoints of these relations are linked to this one (rollback mode all).
    UPDATE sqlgate.checkpoints
    SET objects = objects || objs, relids = sqlgate.checkpoints.relids || inside
    WHERE id = p_id;
    -- Tables outside whose constraints, defaults or indexes were kept as definitions: their later writes
    -- are the checkpoint's too (mode 'all' undoes them before the definitions come back).
    PERFORM sqlgate.capture_dependents(p_id,
        ARRAY(SELECT (x->>'relid')::oid FROM jsonb_array_elements(cons || defaults) x)
        || ARRAY(SELECT (x->>'on')::oid FROM jsonb_array_elements(indexes) x));
END $$;

CREATE OR REPLACE FUNCTION sqlgate.schema_is_aside(p_nsp oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT nspname LIKE 'sqlgate\_trash\_%' OR nspname = 'pg_toast' FROM pg_namespace WHERE oid = p_nsp $$;

CREATE OR REPLACE FUNCTION sqlgate.schema_refuse(p_class oid, p_obj oid, p_sub int) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'sqlgate cannot undo this DROP SCHEMA ... CASCADE: it would also drop % outside the schema',
        pg_describe_object(p_class, p_obj, p_sub) USING ERRCODE = '0A000',
        HINT = 'Drop or change that object first (its own checkpoint keeps it), then drop the schema.';
END $$;

REVOKE ALL ON FUNCTION sqlgate.cp_drop_schema(text, text[], boolean, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION sqlgate.schema_closure(oid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION sqlgate.schema_refuse(oid, oid, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION sqlgate.schema_is_aside(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sqlgate.cp_drop_schema(text, text[], boolean, boolean) TO {roles};
"""
