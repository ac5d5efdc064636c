-- API keys of `dbflywheel serve` (issue 14): a key acts as its app's role; rate limits per key.

-- The role a key of `app` acts as: one NOLOGIN role per app, named after a digest of the app
-- (role names are short and app names are anything).
CREATE OR REPLACE FUNCTION flywheel._api_role_of(app text) RETURNS name
LANGUAGE sql IMMUTABLE STRICT
SET search_path TO pg_catalog, pg_temp
AS $$ SELECT ('flywheel_app_' || left(md5(app), 16))::name $$;

-- A new key for `app`, returned once: only its sha256 is kept. Makes the app's role the first
-- time (NOLOGIN, a member of flywheel_app mapped to the app, SET ROLE-able by flywheel_server),
-- so it runs as the caller: the DBA (a superuser, or a role that may create roles and grant them).
CREATE OR REPLACE FUNCTION flywheel.create_api_key(app text, name text,
                                                   requests_per_s double precision DEFAULT 50,
                                                   rows_per_s double precision DEFAULT 5000) RETURNS text
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    _role  name := flywheel._api_role_of(app);
    _token text := 'fwk_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
BEGIN
    IF app IS NULL OR app = '' OR name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'create_api_key: app and name must be non-empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM flywheel._api_keys k WHERE k.name = name) THEN
        RAISE EXCEPTION 'create_api_key: a key named % exists', quote_literal(name)
            USING ERRCODE = 'unique_violation', HINT = 'names are never reused; pick another, or revoke_api_key the old one';
    END IF;
    IF EXISTS (SELECT 1 FROM flywheel.app_roles a WHERE a.role_name = _role AND a.app <> app) THEN
        RAISE EXCEPTION 'create_api_key: role % is mapped to another app', _role USING ERRCODE = 'duplicate_object';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = _role) THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', _role);
    END IF;
    PERFORM flywheel.grant_app(_role, app);
    EXECUTE format('GRANT %I TO flywheel_server', _role);
    INSERT INTO flywheel._api_keys (name, app, role_name, token_sha256, requests_per_s, rows_per_s, request_tokens, row_tokens)
    VALUES (name, app, _role, sha256(convert_to(_token, 'UTF8')), requests_per_s, rows_per_s,
            greatest(requests_per_s, 1), rows_per_s);
    RETURN _token;
END
$$;
COMMENT ON FUNCTION flywheel.create_api_key(text, text, double precision, double precision) IS
    'A new API key for an app, returned once (stored as its sha256); requests and rows per second are its rate limits';

-- Revoking only takes rights away: admins may do it.
CREATE OR REPLACE FUNCTION flywheel.revoke_api_key(name text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
    WITH r AS (UPDATE flywheel._api_keys k SET revoked_at = now()
               WHERE k.name = revoke_api_key.name AND k.revoked_at IS NULL RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM r)
$$;
COMMENT ON FUNCTION flywheel.revoke_api_key(text) IS 'Revokes an API key by name (true when one was live): its requests get 401 from then on';

CREATE OR REPLACE FUNCTION flywheel.set_api_key_limits(name text, requests_per_s double precision,
                                                       rows_per_s double precision) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT (requests_per_s > 0 AND rows_per_s > 0) THEN
        RAISE EXCEPTION 'set_api_key_limits: limits must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE flywheel._api_keys k SET requests_per_s = set_api_key_limits.requests_per_s,
                                    rows_per_s = set_api_key_limits.rows_per_s
    WHERE k.name = set_api_key_limits.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'set_api_key_limits: no key named %', quote_literal(name) USING ERRCODE = 'no_data_found';
    END IF;
END
$$;
COMMENT ON FUNCTION flywheel.set_api_key_limits(text, double precision, double precision) IS
    'Sets an API key''s rate limits (requests and rows per second), shared by every server process';

CREATE OR REPLACE VIEW flywheel.api_keys AS
    SELECT k.id, k.name, k.app, k.role_name, k.created_at, k.revoked_at, k.requests_per_s, k.rows_per_s, k.last_used_at
    FROM flywheel._api_keys k;
COMMENT ON VIEW flywheel.api_keys IS 'The API keys of dbflywheel serve, without their secrets';

-- Takes `n` tokens from a bucket of `rate` per second (capacity: one second's worth, at least n
-- when the bucket is full, so a big batch waits for a full bucket rather than never passing).
-- Returns the new level and the seconds to wait (0 when taken).
CREATE OR REPLACE FUNCTION flywheel._bucket_take(level double precision, rate double precision, elapsed double precision,
                                                 n double precision, OUT new_level double precision, OUT wait double precision)
LANGUAGE plpgsql IMMUTABLE
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _cap double precision := greatest(rate, 1);
    _have double precision := least(_cap, level + rate * greatest(elapsed, 0));
BEGIN
    IF _have >= least(n, _cap) THEN
        new_level := _have - n;  -- may go below zero for a batch bigger than the bucket: a debt
        wait := 0;
    ELSE
        new_level := _have;
        wait := (least(n, _cap) - _have) / rate;
    END IF;
END
$$;

-- The key of a token (NULLs when unknown or revoked) and one request taken from its bucket:
-- retry_after > 0 means over the limit. The server's login calls it, and may do nothing else.
CREATE OR REPLACE FUNCTION flywheel._authenticate_api_key(token text, OUT key_id bigint, OUT role_name name,
                                                          OUT app text, OUT retry_after double precision)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _k   flywheel._api_keys;
    _now timestamptz := clock_timestamp();
    _el  double precision;
    _req record;
BEGIN
    SELECT * INTO _k FROM flywheel._api_keys k
    WHERE k.token_sha256 = sha256(convert_to(coalesce(token, ''), 'UTF8')) AND k.revoked_at IS NULL
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    _el := extract(epoch FROM _now - _k.refilled_at);
    _req := flywheel._bucket_take(_k.request_tokens, _k.requests_per_s, _el, 1);
    UPDATE flywheel._api_keys k
    SET request_tokens = _req.new_level,
        row_tokens = least(_k.rows_per_s, _k.row_tokens + _k.rows_per_s * greatest(_el, 0)),
        refilled_at = _now, last_used_at = _now
    WHERE k.id = _k.id;
    key_id := _k.id;
    role_name := _k.role_name;
    app := _k.app;
    retry_after := _req.wait;
END
$$;

-- Takes `n` rows from a key's row bucket: the seconds to wait (0 when taken).
CREATE OR REPLACE FUNCTION flywheel._api_take_rows(key_id bigint, n integer) RETURNS double precision
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _k   flywheel._api_keys;
    _now timestamptz := clock_timestamp();
    _r   record;
BEGIN
    SELECT * INTO _k FROM flywheel._api_keys k WHERE k.id = _api_take_rows.key_id AND k.revoked_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    _r := flywheel._bucket_take(_k.row_tokens, _k.rows_per_s, extract(epoch FROM _now - _k.refilled_at), n);
    UPDATE flywheel._api_keys k
    SET row_tokens = _r.new_level,
        request_tokens = least(greatest(_k.requests_per_s, 1),
                               _k.request_tokens + _k.requests_per_s * greatest(extract(epoch FROM _now - _k.refilled_at), 0)),
        refilled_at = _now
    WHERE k.id = _k.id;
    RETURN _r.wait;
END
$$;

-- The judge queue's depth for the server's /metrics (a count, no rows).
CREATE OR REPLACE FUNCTION flywheel._judge_queue_depth() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$ SELECT count(*) FROM flywheel.judge_jobs $$;
