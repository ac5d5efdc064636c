-- The validator registry: create (or version) a validator, enable or disable it.

-- The judges branch replaces this with a real check of the judge's config (a later file).
CREATE OR REPLACE FUNCTION flywheel._check_llm_judge_config(kind text, config jsonb) RETURNS void
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    IF config IS NULL OR jsonb_typeof(config) <> 'object' THEN
        RAISE EXCEPTION 'create_validator: the config of a % validator must be a JSON object', kind;
    END IF;
END
$$;

-- Checks a code validator's config (and applies_to) with the same code that runs it:
-- NULL when it works, else what is wrong.
CREATE OR REPLACE FUNCTION flywheel._check_validator_config(kind text, config text, applies_to text) RETURNS text
LANGUAGE plpython3u
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: validators_runtime.check_config $python$;

-- The signature that makes a python validator's body runnable on this server
-- (plpython/python_bodies.py): for a superuser's login session only.
CREATE OR REPLACE FUNCTION flywheel._sign_python_body(body text) RETURNS text
LANGUAGE plpython3u STRICT
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: python_bodies.sign $python$;

-- Creates a validator, or a new version of it when anything but its name changed; the same
-- definition again changes nothing. Returns the validator's id.
CREATE OR REPLACE FUNCTION flywheel.create_validator(
    name        text,
    kind        text,
    config      jsonb DEFAULT '{}',
    mode        text DEFAULT 'sync',
    applies_to  jsonb DEFAULT '{}',
    sample_rate real DEFAULT 1.0
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER  -- admins write the registry only through this check
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    _config  jsonb := coalesce(create_validator.config, '{}');
    _applies jsonb := coalesce(create_validator.applies_to, '{}');
    _kinds   text[] := ARRAY['sql', 'regex', 'length', 'json', 'sql_codegen', 'pii', 'injection', 'refusal',
                             'language', 'classifier', 'anomaly', 'python', 'llm_judge', 'llm_pairwise'];
    _llm     boolean := create_validator.kind IN ('llm_judge', 'llm_pairwise');
    _problem text;
    _v       flywheel.validators;
BEGIN
    IF create_validator.name IS NULL OR create_validator.name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'create_validator: name % is not valid', coalesce(quote_literal(create_validator.name), 'NULL')
            USING HINT = 'a name is 1 to 63 characters: a lower-case letter, then lower-case letters, digits or _';
    END IF;
    IF create_validator.kind IS NULL OR NOT create_validator.kind = ANY (_kinds) THEN
        RAISE EXCEPTION 'create_validator: unknown kind %; known kinds: %',
            coalesce(quote_literal(create_validator.kind), 'NULL'), array_to_string(_kinds, ', ');
    END IF;
    IF create_validator.mode IS NULL OR create_validator.mode NOT IN ('sync', 'async') THEN
        RAISE EXCEPTION 'create_validator: mode must be ''sync'' or ''async'', not %',
            coalesce(quote_literal(create_validator.mode), 'NULL');
    END IF;
    IF _llm AND create_validator.mode = 'sync' THEN
        RAISE EXCEPTION 'create_validator: a % validator calls an LLM, which never happens inside the INSERT',
            create_validator.kind USING HINT = 'use mode => ''async'': the trigger queues a judge job and workers run it';
    END IF;
    IF NOT _llm AND create_validator.mode = 'async' THEN
        RAISE EXCEPTION 'create_validator: mode ''async'' is for llm_judge and llm_pairwise validators; a % validator runs in the insert trigger',
            create_validator.kind USING HINT = 'use mode => ''sync''';
    END IF;
    IF create_validator.sample_rate IS NULL OR create_validator.sample_rate = 'NaN'
       OR create_validator.sample_rate < 0 OR create_validator.sample_rate > 1 THEN
        RAISE EXCEPTION 'create_validator: sample_rate must be between 0 and 1, not %',
            coalesce(create_validator.sample_rate::text, 'NULL');
    END IF;
    -- Generated SQL and class labels only make sense on those nodes: the default filter says so.
    IF jsonb_typeof(_applies) = 'object' AND NOT _applies ? 'node_type'
       AND create_validator.kind IN ('sql_codegen', 'classifier') THEN
        _applies := _applies || jsonb_build_object('node_type',
            CASE create_validator.kind WHEN 'sql_codegen' THEN 'codegen' ELSE 'classifier' END);
    END IF;
    IF jsonb_typeof(_config) <> 'object' THEN
        RAISE EXCEPTION 'create_validator: config must be a JSON object, not %', jsonb_typeof(_config);
    END IF;
    -- session_user: inside this SECURITY DEFINER function current_user is flywheel_owner; a
    -- session that logged in as a superuser is the only one that holds a superuser's rights.
    IF create_validator.kind = 'python'
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user) THEN
        RAISE EXCEPTION 'create_validator: a python validator runs arbitrary code as the database owner: only a superuser may create one'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF create_validator.kind = 'python' THEN
        -- What the trigger runs is what a superuser approved here, not whatever the table says.
        _config := (_config - 'signature')
            || jsonb_build_object('signature', flywheel._sign_python_body(coalesce(_config->>'body', '')));
    END IF;
    IF _llm THEN
        PERFORM flywheel._check_llm_judge_config(create_validator.kind, _config);
    END IF;
    _problem := flywheel._check_validator_config(create_validator.kind, _config::text, _applies::text);
    IF _problem IS NOT NULL THEN
        RAISE EXCEPTION 'create_validator: %', _problem USING ERRCODE = 'invalid_parameter_value';
    END IF;

    PERFORM pg_advisory_xact_lock(hashtext('flywheel.create_validator'), hashtext(create_validator.name));
    SELECT * INTO _v FROM flywheel.validators v WHERE v.name = create_validator.name FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO flywheel.validators AS v (name, kind, config, mode, applies_to, sample_rate)
        VALUES (create_validator.name, create_validator.kind, _config, create_validator.mode, _applies,
                create_validator.sample_rate)
        RETURNING * INTO _v;
    ELSIF (_v.kind, _v.config, _v.mode, _v.applies_to, _v.sample_rate)
          IS NOT DISTINCT FROM (create_validator.kind, _config, create_validator.mode, _applies, create_validator.sample_rate) THEN
        RETURN _v.id;  -- the same definition: nothing changes, no new version
    ELSE
        UPDATE flywheel.validators v
        SET version = v.version + 1, kind = create_validator.kind, config = _config, mode = create_validator.mode,
            applies_to = _applies, sample_rate = create_validator.sample_rate, updated_at = now()
        WHERE v.id = _v.id
        RETURNING * INTO _v;
    END IF;
    INSERT INTO flywheel.validator_versions (validator_id, version, kind, config, mode, applies_to, sample_rate)
    VALUES (_v.id, _v.version, _v.kind, _v.config, _v.mode, _v.applies_to, _v.sample_rate);
    RETURN _v.id;
END
$$;

CREATE OR REPLACE FUNCTION flywheel.set_validator_enabled(name text, enabled boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER  -- admins write the registry only through this
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF set_validator_enabled.enabled IS NULL THEN
        RAISE EXCEPTION 'set_validator_enabled: enabled must be true or false';
    END IF;
    UPDATE flywheel.validators v SET enabled = set_validator_enabled.enabled, updated_at = now()
    WHERE v.name = set_validator_enabled.name AND v.enabled IS DISTINCT FROM set_validator_enabled.enabled;
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM flywheel.validators v WHERE v.name = set_validator_enabled.name) THEN
        RAISE EXCEPTION 'set_validator_enabled: no validator named %', coalesce(quote_literal(set_validator_enabled.name), 'NULL')
            USING HINT = 'SELECT name FROM flywheel.validators lists them';
    END IF;
END
$$;

-- What the foreign key's ON DELETE CASCADE did (see migrations/0100-validators.sql).
CREATE OR REPLACE FUNCTION flywheel._delete_validator_results() RETURNS trigger
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM flywheel._results r USING old_validators o WHERE r.validator_id = o.id;
    -- Packed rows keep their other validators' results.
    DELETE FROM flywheel._insert_results p
    WHERE p.validator_ids <@ (SELECT array_agg(o.id) FROM old_validators o);
    UPDATE flywheel._insert_results p
    SET validator_ids = k.validator_ids, validator_versions = k.validator_versions, statuses = k.statuses,
        scores = k.scores, labels = k.labels, details = k.details
    FROM (SELECT p2.trace_id, array_agg(e.v ORDER BY e.i) AS validator_ids, array_agg(e.n ORDER BY e.i) AS validator_versions,
                 array_agg(e.s ORDER BY e.i) AS statuses, array_agg(e.sc ORDER BY e.i) AS scores,
                 array_agg(e.l ORDER BY e.i) AS labels, array_agg(e.d ORDER BY e.i) AS details
          FROM flywheel._insert_results p2
          CROSS JOIN LATERAL unnest(p2.validator_ids, p2.validator_versions, p2.statuses, p2.scores, p2.labels,
                                    p2.details) WITH ORDINALITY AS e(v, n, s, sc, l, d, i)
          WHERE p2.validator_ids && (SELECT array_agg(o.id) FROM old_validators o)
            AND e.v NOT IN (SELECT o.id FROM old_validators o)
          GROUP BY p2.trace_id) k
    WHERE p.trace_id = k.trace_id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER validators_delete_results AFTER DELETE ON flywheel.validators
    REFERENCING OLD TABLE AS old_validators
    FOR EACH STATEMENT EXECUTE FUNCTION flywheel._delete_validator_results();
