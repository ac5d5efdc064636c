-- Traces, feedback and labels: partitions, the checks that need a lookup, row-level security.

-- Monthly partitions of flywheel.traces for every month that [from_month, to_month] touches.
-- Rows already in the default partition for such a month move into the new table before it is
-- attached: inserting into the table itself fires none of the parent's insert-time validators,
-- and no temporary table or superuser-only setting is involved.
CREATE OR REPLACE FUNCTION flywheel.ensure_trace_partitions(
    from_month timestamptz DEFAULT now() - interval '1 month',
    to_month   timestamptz DEFAULT now() + interval '3 months'
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER  -- callers: admins, retention; creating tables takes the owner
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _month   timestamptz := date_trunc('month', from_month);
    _name    text;
    _created integer := 0;
BEGIN
    IF to_month < from_month THEN
        RAISE EXCEPTION 'ensure_trace_partitions: to_month (%) is before from_month (%)', to_month, from_month;
    END IF;
    WHILE _month <= to_month LOOP
        _name := '_traces_' || to_char(_month, 'YYYY_MM');
        IF to_regclass(format('flywheel.%I', _name)) IS NULL THEN
            EXECUTE format('CREATE TABLE flywheel.%I (LIKE flywheel.traces INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', _name);
            EXECUTE format(
                'WITH moved AS (DELETE FROM flywheel._traces_default WHERE created_at >= $1 AND created_at < $2 RETURNING *)'
                ' INSERT INTO flywheel.%I SELECT * FROM moved', _name)
                USING _month, _month + interval '1 month';
            EXECUTE format(
                'ALTER TABLE flywheel.traces ATTACH PARTITION flywheel.%I FOR VALUES FROM (%L) TO (%L)',
                _name, _month, _month + interval '1 month');
            _created := _created + 1;
        END IF;
        _month := _month + interval '1 month';
    END LOOP;
    RETURN _created;
END
$$;

-- Feedback and labels name a trace by id; traces is partitioned, so a foreign key cannot
-- express this: one indexed lookup with a clear message does, and fills in the trace's app.
CREATE OR REPLACE FUNCTION flywheel._fill_trace_app() RETURNS trigger
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    SELECT t.app INTO NEW.app FROM flywheel.traces t WHERE t.id = NEW.trace_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% for trace %, which does not exist', TG_TABLE_NAME, NEW.trace_id
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'record feedback and labels only for traces that were inserted (and are visible to you)';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER feedback_trace_must_exist BEFORE INSERT OR UPDATE OF trace_id
    ON flywheel.feedback FOR EACH ROW EXECUTE FUNCTION flywheel._fill_trace_app();
CREATE OR REPLACE TRIGGER labels_trace_must_exist BEFORE INSERT OR UPDATE OF trace_id
    ON flywheel.labels FOR EACH ROW EXECUTE FUNCTION flywheel._fill_trace_app();

-- The app of a login role: the default for traces.app (one indexed lookup). The caller passes
-- current_user, because inside a SECURITY DEFINER function current_user is the definer. Only
-- for a role the session may act as (or for an admin): an app asking for another role's app
-- gets 'default', as for a role with no app (replaces the first release's migrations/0001).
CREATE OR REPLACE FUNCTION flywheel._app_of(role_name name) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT a.app FROM flywheel.app_roles a
                     WHERE a.role_name = _app_of.role_name
                       AND (a.role_name = session_user OR pg_has_role(session_user, a.role_name, 'MEMBER')
                            OR pg_has_role(session_user, 'flywheel_admin', 'MEMBER'))), 'default')
$$;

-- The apps whose rows a role may see (those of every app role it is a member of). A group role
-- is no app: every app login may SET ROLE flywheel_app, which must not open the 'default' app.
-- Policies pass current_user; asked about a role the session may not act as, it answers no
-- app unless the session is an admin's, so that an app cannot list other roles' apps.
CREATE OR REPLACE FUNCTION flywheel._apps_of(member name) RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN member IN ('flywheel_app', 'flywheel_reader') THEN ARRAY[]::text[]
                WHEN NOT (member = session_user OR pg_has_role(session_user, member, 'MEMBER')
                          OR pg_has_role(session_user, 'flywheel_admin', 'MEMBER')) THEN ARRAY[]::text[]
                ELSE coalesce(array_agg(a.app), ARRAY['default']) END
    FROM flywheel.app_roles a WHERE pg_has_role(member, a.role_name, 'MEMBER')
$$;

-- Lets a login role write traces as one application: grants flywheel_app and maps the role.
CREATE OR REPLACE FUNCTION flywheel.grant_app(role_name name, app text) RETURNS void
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    IF app IS NULL OR app = '' THEN
        RAISE EXCEPTION 'grant_app: app must be a non-empty name';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = grant_app.role_name) THEN
        RAISE EXCEPTION 'grant_app: role % does not exist', role_name
            USING HINT = 'create it first: CREATE ROLE ... LOGIN';
    END IF;
    EXECUTE format('GRANT flywheel_app TO %I', role_name);
    INSERT INTO flywheel.app_roles AS a (role_name, app) VALUES (grant_app.role_name, grant_app.app)
    ON CONFLICT ON CONSTRAINT app_roles_pkey DO UPDATE SET app = EXCLUDED.app;
END
$$;

ALTER TABLE flywheel.traces ENABLE ROW LEVEL SECURITY;
ALTER TABLE flywheel.feedback ENABLE ROW LEVEL SECURITY;
ALTER TABLE flywheel.labels ENABLE ROW LEVEL SECURITY;

DO $policies$
DECLARE
    _table text;
BEGIN
    FOREACH _table IN ARRAY ARRAY['traces', 'feedback', 'labels'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS own_app ON flywheel.%I', _table);
        EXECUTE format('DROP POLICY IF EXISTS admin_all ON flywheel.%I', _table);
        -- (SELECT ...) makes the app list an init-plan: computed once per statement, not per row.
        EXECUTE format($p$CREATE POLICY own_app ON flywheel.%I TO flywheel_app
            USING (ARRAY[app] <@ (SELECT flywheel._apps_of(current_user)))
            WITH CHECK (ARRAY[app] <@ (SELECT flywheel._apps_of(current_user)))$p$, _table);
        EXECUTE format('CREATE POLICY admin_all ON flywheel.%I TO flywheel_admin USING (true) WITH CHECK (true)', _table);
    END LOOP;
END
$policies$;
