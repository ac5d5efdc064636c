-- SQL that an admin writes (metric queries, sql validator expressions) is checked on what it
-- really calls, by oid, after PostgreSQL parsed it; never on its text.

-- NULL when the text is one SELECT, else why not. SPI runs (and prepares) every statement of a
-- string, so the question is asked of the one path that refuses several: opening a cursor,
-- which parses and counts before it plans. It runs as flywheel_sql_checker, a role that may read
-- the schema and do nothing else, because planning evaluates immutable functions (the caller's
-- own temporary ones included); the cursor is closed before any row is fetched.
CREATE OR REPLACE FUNCTION flywheel._one_select_problem(query text, raise_error boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER  -- owned by flywheel_sql_checker (below)
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _cursor refcursor;
    _opened boolean := false;
BEGIN
    IF query IS NULL OR btrim(query) = '' THEN
        RETURN 'the query is empty';
    ELSIF length(query) > 100000 THEN
        RETURN format('the query is %s characters long; at most 100000', length(query));
    END IF;
    -- Read-only and always rolled back: what the planner runs here runs as this function's
    -- owner, who could otherwise ALTER or GRANT this very function (SECURITY INVOKER, PUBLIC).
    -- A plpgsql variable survives the rollback, so the block's own exit cannot be forged by
    -- code that raises the same SQLSTATE.
    BEGIN
        PERFORM pg_catalog.set_config('transaction_read_only', 'on', true);
        OPEN _cursor NO SCROLL FOR EXECUTE query;
        CLOSE _cursor;
        _opened := true;
        RAISE SQLSTATE 'FWSEL';
    EXCEPTION WHEN query_canceled THEN
        RAISE;
    WHEN SQLSTATE 'FWSEL' THEN
        IF NOT _opened THEN
            RETURN 'it raised the checker''s own condition';
        END IF;
    WHEN insufficient_privilege THEN
        -- Table and function rights are checked when the cursor starts, after it counted the
        -- statements: one SELECT that this role may not read. Anything else (a schema) is refused.
        IF SQLERRM !~ '^permission denied for (table|view|materialized view|function|sequence|column) ' THEN
            RETURN SQLERRM;
        END IF;
    WHEN OTHERS THEN
        IF SQLERRM = 'cannot open multi-query plan as cursor' THEN
            RETURN 'it is several statements, not one';
        ELSIF SQLERRM LIKE 'cannot open % query as cursor' THEN
            RETURN 'it is not a SELECT';
        ELSIF raise_error THEN  -- PostgreSQL's own message and code (a missing column, a syntax error)
            RAISE;
        END IF;
        RETURN SQLERRM;
    END;
    RETURN NULL;
END
$$;
ALTER FUNCTION flywheel._one_select_problem(text, boolean) OWNER TO flywheel_sql_checker;

-- What the rules of a view reach that a check or a metric must not: a volatile function (it
-- could write, sleep or run a program), a function or type outside pg_catalog and the allowed
-- schemas, a built-in that runs SQL text of its own or reads settings, a relation outside the
-- allowed schemas other than a plain table without row-level security (so no pg_authid, no
-- temporary table, no view of someone else's).
-- Read from the parsed tree PostgreSQL stored for the view (every function, operator and
-- relation by oid: pg_depend omits built-in objects) and from pg_depend (every object that is
-- not built in), never from the text. NULL when nothing.
CREATE OR REPLACE FUNCTION flywheel._view_problem(view_oid oid, schemas text[]) RETURNS text
LANGUAGE sql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
    WITH tree AS (
        SELECT w.ev_action::text AS t FROM pg_catalog.pg_rewrite w WHERE w.ev_class = view_oid
    ), refs AS (
        SELECT m[1] AS field, m[2]::oid AS id
        FROM tree, regexp_matches(tree.t, ':(funcid|opfuncid|hashfuncid|negfuncid|aggfnoid|winfnoid|opno|relid|resulttype|consttype|typeId) (\d+)', 'g') AS m
    ), calls AS (
        SELECT r.id AS fn FROM refs r WHERE r.field IN ('funcid', 'opfuncid', 'hashfuncid', 'negfuncid', 'aggfnoid', 'winfnoid')
        UNION
        SELECT o.oprcode FROM refs r JOIN pg_catalog.pg_operator o ON o.oid = r.id WHERE r.field = 'opno'
    ), problems AS (
        SELECT format(CASE WHEN p.provolatile = 'v' THEN 'volatile function %s' ELSE 'function %s' END,
                      p.oid::regprocedure) AS what
        FROM calls c JOIN pg_catalog.pg_proc p ON p.oid = c.fn
        WHERE p.provolatile = 'v'
           OR NOT (p.pronamespace = 'pg_catalog'::regnamespace OR p.pronamespace::regnamespace::text = ANY (schemas))
           OR (p.pronamespace = 'pg_catalog'::regnamespace AND p.proname IN (
               'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema', 'cursor_to_xml',
               'cursor_to_xmlschema', 'table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema',
               'schema_to_xml', 'schema_to_xmlschema', 'schema_to_xml_and_xmlschema', 'database_to_xml',
               'database_to_xmlschema', 'database_to_xml_and_xmlschema', 'ts_stat', 'current_setting'))
        UNION ALL
        SELECT format('relation %s', c.oid::regclass)
        FROM refs r JOIN pg_catalog.pg_class c ON c.oid = r.id
        WHERE r.field = 'relid' AND c.oid <> view_oid AND NOT c.relnamespace::regnamespace::text = ANY (schemas)
          -- elsewhere only a plain table, read with flywheel_owner's grants: a view, or a policy
          -- of row-level security, would run its owner's functions with flywheel_owner's rights
          AND NOT (c.relkind IN ('r', 'p') AND NOT c.relrowsecurity AND c.relpersistence <> 't'
                   AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace))
        UNION ALL
        SELECT format('type %s', t.oid::regtype)
        FROM refs r JOIN pg_catalog.pg_type t ON t.oid = r.id
        WHERE r.field IN ('resulttype', 'consttype', 'typeId') AND t.typnamespace <> 'pg_catalog'::regnamespace
          AND NOT t.typnamespace::regnamespace::text = ANY (schemas)
          AND t.typrelid = 0  -- a table's row type comes with its relation, checked above
        UNION ALL
        -- Everything else the view's rule depends on that is not built in (pg_depend records
        -- every non-pinned object, wherever the tree names it: a column definition list's
        -- types, a composite type's, a collation) must be in pg_catalog or the allowed schemas:
        -- a type defined elsewhere may be a domain whose CHECK calls anything.
        SELECT pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0)
        FROM pg_catalog.pg_rewrite w
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = w.oid
        WHERE w.ev_class = view_oid AND d.refclassid <> 'pg_catalog.pg_class'::pg_catalog.regclass
          AND NOT coalesce((pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0)).schema = ANY (schemas || 'pg_catalog'::text), false)
    )
    SELECT string_agg(DISTINCT p.what, ', ') FROM problems p
$$;

-- The same check for a query given as text: one statement, then a temporary view of it whose
-- parsed tree is read, in a block that is always rolled back. NULL when the query is safe to run.
-- SECURITY DEFINER owned by flywheel_sql_checker: parsing runs code too (the input function of
-- a literal checks a domain's CHECK, which may call anything), so the first parse of the text is
-- this role's, and the owner's CREATE VIEW parses only what this check let through.
CREATE OR REPLACE FUNCTION flywheel._unsafe_calls(query text, schemas text[], columns text[] DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER  -- owned by flywheel_sql_checker (below)
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _problem text;
    _view    text := format('_flywheel_check_%s', pg_catalog.pg_backend_pid());
BEGIN
    _problem := flywheel._one_select_problem(query);
    IF _problem IS NOT NULL THEN
        RETURN _problem;
    END IF;
    BEGIN
        EXECUTE format('CREATE TEMP VIEW %I AS %s', _view, query);
        _problem := coalesce('it reaches ' || flywheel._view_problem(format('pg_temp.%I', _view)::regclass, schemas), '');
        -- The columns the caller wrapped around a piece of text (one of them a name it made up):
        -- text that closed the wrapping early, or commented its end out, does not give them.
        IF _problem = '' AND columns IS NOT NULL AND columns IS DISTINCT FROM (
                SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = format('pg_temp.%I', _view)::regclass AND a.attnum > 0) THEN
            _problem := 'it is not one expression (it closes the parentheses around it or comments out what follows)';
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'FWCHK';  -- rolls the view back
    EXCEPTION WHEN query_canceled THEN
        RAISE;
    WHEN SQLSTATE 'FWCHK' THEN
        -- _problem is set (to '' at least) only when the check itself got this far: the same
        -- state raised by code the query ran is a refusal, not a pass.
        _problem := coalesce(_problem, 'it raised the checker''s own condition');
    WHEN OTHERS THEN
        _problem := SQLERRM;
    END;
    RETURN nullif(_problem, '');
END
$$;
ALTER FUNCTION flywheel._unsafe_calls(text, text[], text[]) OWNER TO flywheel_sql_checker;
-- The temporary view needs TEMP on the database, which a DBA may have revoked from PUBLIC.
DO $temp$
BEGIN
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO flywheel_sql_checker', pg_catalog.current_database());
END
$temp$;
