-- Reviewers of the web app: accounts, sign-in, sessions, and the row-level security that gives
-- each reviewer the rows of their apps only.
--
-- The role model: each reviewer is a NOLOGIN role (flywheel_rv_<name>), member of the group
-- flywheel_reviewer, which holds the grants (sql/659). The server signs a reviewer in through
-- reviewer_sign_in (SECURITY DEFINER, owned by flywheel_owner), then runs each request under
-- SET LOCAL ROLE of the reviewer's role: the policies below see current_user = that role.
-- Whoever writes a label, a correction or a preference as a reviewer, the database fills in
-- the reviewer's name (triggers below), never a form.

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'flywheel_reviewer') THEN
        CREATE ROLE flywheel_reviewer NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
    END IF;
END
$roles$;

-- argon2id hash of a new password (plpython/reviewers_auth.py).
CREATE OR REPLACE FUNCTION flywheel._hash_password(password text) RETURNS text
LANGUAGE plpython3u VOLATILE
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: reviewers_auth.hash_password $python$;

-- The reviewer a role is, and their apps (NULL and none for any other role). Asked about a role
-- the session may not act as (and not by an admin), they answer as for a stranger, as _apps_of does.
CREATE OR REPLACE FUNCTION flywheel._reviewer_name(member name) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT r.name FROM flywheel.reviewers r
    WHERE r.role_name = member
      AND (member = session_user OR pg_has_role(session_user, member, 'MEMBER')
           OR pg_has_role(session_user, 'flywheel_admin', 'MEMBER'))
$$;

CREATE OR REPLACE FUNCTION flywheel._reviewer_apps(member name) RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT r.apps FROM flywheel.reviewers r
                     WHERE r.role_name = member
                       AND (member = session_user OR pg_has_role(session_user, member, 'MEMBER')
                            OR pg_has_role(session_user, 'flywheel_admin', 'MEMBER'))), ARRAY[]::text[])
$$;

-- Creates (or updates) a reviewer: the NOLOGIN role, its apps and its password. The caller
-- needs CREATEROLE (a superuser, or an admin given it), as CREATE ROLE does.
CREATE OR REPLACE FUNCTION flywheel.create_reviewer(name text, password text, apps text[]) RETURNS name
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    _role name;
BEGIN
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'create_reviewer: % is not a reviewer name', coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'lower-case letters, digits and _, starting with a letter, at most 40';
    END IF;
    IF apps IS NULL OR cardinality(apps) = 0 OR array_position(apps, NULL) IS NOT NULL OR '' = ANY (apps) THEN
        RAISE EXCEPTION 'create_reviewer: a reviewer needs at least one app'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'pass the apps as text[], e.g. ARRAY[''support'']';
    END IF;
    _role := 'flywheel_rv_' || name;
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = _role) THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS', _role);
    ELSIF NOT EXISTS (SELECT 1 FROM flywheel.reviewers r WHERE r.role_name = _role) THEN
        RAISE EXCEPTION 'create_reviewer: role % exists and is not a reviewer''s', _role
            USING ERRCODE = 'duplicate_object', HINT = 'choose another reviewer name';
    END IF;
    EXECUTE format('GRANT flywheel_reviewer TO %I', _role);
    -- The server's login (issue 14's flywheel_server) acts as reviewers with SET ROLE.
    IF EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'flywheel_server') THEN
        EXECUTE format('GRANT %I TO flywheel_server', _role);
    END IF;
    INSERT INTO flywheel.reviewers AS r (name, role_name, apps, password_hash)
    VALUES (name, _role, apps, flywheel._hash_password(password))
    ON CONFLICT ON CONSTRAINT reviewers_pkey DO UPDATE
        SET apps = EXCLUDED.apps, password_hash = EXCLUDED.password_hash, failed_attempts = 0, locked_until = NULL;
    DELETE FROM flywheel.web_sessions s WHERE s.reviewer = name;  -- a new password ends old sessions
    RETURN _role;
END
$$;

-- Checks a reviewer's password; on success opens a session and returns its tokens and the
-- role to act as, otherwise returns no row (whatever was wrong, in the same time).
-- Five failures in a row lock the account for 15 minutes.
CREATE OR REPLACE FUNCTION flywheel.reviewer_sign_in(name text, password text)
RETURNS TABLE (session_token text, csrf_token text, reviewer text, role_name name)
LANGUAGE plpython3u VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: reviewers_auth.sign_in $python$;

-- The signed-in reviewer of a session cookie, while the session lasts.
CREATE OR REPLACE FUNCTION flywheel.reviewer_session(session_token text)
RETURNS TABLE (reviewer text, role_name name, csrf_token text, apps text[])
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT r.name, r.role_name, s.csrf_token, r.apps
    FROM flywheel.web_sessions s JOIN flywheel.reviewers r ON r.name = s.reviewer
    WHERE s.token_sha256 = sha256(convert_to(coalesce(session_token, ''), 'UTF8')) AND s.expires_at > now()
$$;

-- Ends a session (sign out).
CREATE OR REPLACE FUNCTION flywheel.reviewer_sign_out(session_token text) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
    DELETE FROM flywheel.web_sessions s WHERE s.token_sha256 = sha256(convert_to(coalesce(session_token, ''), 'UTF8'))
$$;

-- What a reviewer writes carries the reviewer's name, whatever the statement said. The triggers'
-- names start with z_: row triggers fire in name order, so this one has the last word.
CREATE OR REPLACE FUNCTION flywheel._reviewer_signs() RETURNS trigger
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _name text;
BEGIN
    IF pg_has_role(current_user, 'flywheel_reviewer', 'MEMBER') THEN
        _name := flywheel._reviewer_name(current_user);
    END IF;
    IF _name IS NOT NULL THEN
        IF TG_TABLE_NAME = 'feedback' THEN
            NEW.source := 'reviewer';
            NEW.user_id := _name;
        ELSIF TG_TABLE_NAME = 'review_leases' THEN
            NEW.reviewer := _name;
        ELSE
            NEW.annotator := _name;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER labels_z_signed_by_reviewer BEFORE INSERT OR UPDATE ON flywheel.labels
    FOR EACH ROW EXECUTE FUNCTION flywheel._reviewer_signs();
CREATE OR REPLACE TRIGGER feedback_z_signed_by_reviewer BEFORE INSERT OR UPDATE ON flywheel.feedback
    FOR EACH ROW EXECUTE FUNCTION flywheel._reviewer_signs();
CREATE OR REPLACE TRIGGER preferences_z_signed_by_reviewer BEFORE INSERT OR UPDATE ON flywheel.preferences
    FOR EACH ROW EXECUTE FUNCTION flywheel._reviewer_signs();
CREATE OR REPLACE TRIGGER review_leases_z_signed_by_reviewer BEFORE INSERT OR UPDATE ON flywheel.review_leases
    FOR EACH ROW EXECUTE FUNCTION flywheel._reviewer_signs();
CREATE OR REPLACE TRIGGER review_leases_trace_must_exist BEFORE INSERT OR UPDATE OF trace_id
    ON flywheel.review_leases FOR EACH ROW EXECUTE FUNCTION flywheel._fill_trace_app();

-- Reviewers see and write the rows of their apps, as app roles do theirs (human verdicts only).
ALTER TABLE flywheel.review_leases ENABLE ROW LEVEL SECURITY;
DO $policies$
DECLARE
    _table text;
BEGIN
    FOREACH _table IN ARRAY ARRAY['traces', 'feedback', 'labels', 'preferences', 'review_leases'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS reviewer_apps ON flywheel.%I', _table);
        EXECUTE format($p$CREATE POLICY reviewer_apps ON flywheel.%I TO flywheel_reviewer
            USING (ARRAY[app] <@ (SELECT flywheel._reviewer_apps(current_user)))
            WITH CHECK (ARRAY[app] <@ (SELECT flywheel._reviewer_apps(current_user))%s)$p$,
            _table, CASE WHEN _table = 'preferences' THEN ' AND judged_by = ''human''' ELSE '' END);
    END LOOP;
    DROP POLICY IF EXISTS admin_all ON flywheel.review_leases;
    CREATE POLICY admin_all ON flywheel.review_leases TO flywheel_admin USING (true) WITH CHECK (true);
END
$policies$;

COMMENT ON TABLE flywheel.reviewers IS 'Reviewer accounts of the web app: the role each acts as, their apps, an argon2id password hash and lock-out state.';
COMMENT ON TABLE flywheel.web_sessions IS 'Server-side sessions of the web app (only the SHA-256 of each cookie) with their CSRF token.';
COMMENT ON TABLE flywheel.review_leases IS 'Queue items a reviewer has open, so that no other reviewer is given them until the lease expires.';
COMMENT ON FUNCTION flywheel.create_reviewer(text, text, text[]) IS 'Creates or updates a reviewer of the web app: a NOLOGIN role in flywheel_reviewer that sees the given apps.';
COMMENT ON FUNCTION flywheel.reviewer_sign_in(text, text) IS 'Checks a reviewer''s password; on success opens a web session and returns its tokens and the role to act as.';
COMMENT ON FUNCTION flywheel.reviewer_session(text) IS 'The reviewer, role, CSRF token and apps of a live web session cookie.';
COMMENT ON FUNCTION flywheel.reviewer_sign_out(text) IS 'Ends a web session.';
