-- Training sets: supervised fine-tuning pairs from corrections and approved outputs, preference
-- pairs (DPO) from people's (and, where allowed, judges') preferences. Builds are numbered,
-- immutable snapshots (migrations/0870); the leak guard keeps golden-set traces and near
-- duplicates of their inputs out of every build. Admins build them (SECURITY DEFINER: admins hold
-- no DML on the snapshot tables); `dbflywheel export-training` and training_set_rows() read them.

-- The filter keys a set accepts, per kind, with what each means (the refusal's HINT lists them).
CREATE OR REPLACE FUNCTION flywheel._training_filter_keys(kind text) RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT ARRAY['apps', 'models', 'prompt_versions', 'node_types', 'since', 'until', 'sources', 'validators',
                 'near_duplicate_threshold', 'redact_pii']
           || CASE kind WHEN 'preference' THEN ARRAY['judges', 'min_agreement'] ELSE ARRAY[]::text[] END
$$;

-- Refuses a bad filter in one line (unknown key, app, validator or judge; wrong types), before any build.
CREATE OR REPLACE FUNCTION flywheel._check_training_filter(kind text, filter jsonb) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _key     text;
    _list    text;
    _name    text;
    _sources text[] := CASE kind WHEN 'sft' THEN ARRAY['correction', 'approved', 'validators']
                                 ELSE ARRAY['human', 'llm'] END;
BEGIN
    IF kind IS NULL OR kind NOT IN ('sft', 'preference') THEN
        RAISE EXCEPTION 'training set kind must be sft or preference, not %', coalesce(quote_literal(kind), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF filter IS NULL OR jsonb_typeof(filter) <> 'object' THEN
        RAISE EXCEPTION 'training set filter must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR _key IN SELECT k FROM jsonb_object_keys(filter) k ORDER BY 1 LOOP
        IF NOT _key = ANY (flywheel._training_filter_keys(kind)) THEN
            RAISE EXCEPTION 'training set filter: unknown key "%" for kind %', _key, kind
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'known keys: ' || array_to_string(flywheel._training_filter_keys(kind), ', ');
        END IF;
    END LOOP;
    FOREACH _list IN ARRAY ARRAY['apps', 'models', 'prompt_versions', 'node_types', 'sources', 'validators', 'judges'] LOOP
        IF filter ? _list AND (jsonb_typeof(filter -> _list) <> 'array' OR EXISTS (
                SELECT 1 FROM jsonb_array_elements(filter -> _list) e WHERE jsonb_typeof(e) <> 'string')) THEN
            RAISE EXCEPTION 'training set filter: % must be a list of names', _list USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    FOR _name IN SELECT jsonb_array_elements_text(filter -> 'sources') LOOP
        IF NOT _name = ANY (_sources) THEN
            RAISE EXCEPTION 'training set filter: unknown source "%" for kind %', _name, kind
                USING ERRCODE = 'invalid_parameter_value', HINT = 'sources: ' || array_to_string(_sources, ', ');
        END IF;
    END LOOP;
    FOR _name IN SELECT jsonb_array_elements_text(filter -> 'apps') LOOP
        IF NOT EXISTS (SELECT 1 FROM flywheel.app_roles a WHERE a.app = _name)
           AND NOT EXISTS (SELECT 1 FROM flywheel.traces t WHERE t.app = _name) THEN
            RAISE EXCEPTION 'training set filter: unknown app "%"', _name USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    FOR _name IN SELECT jsonb_array_elements_text(filter -> 'validators')
                 UNION ALL SELECT jsonb_array_elements_text(filter -> 'judges') LOOP
        IF NOT EXISTS (SELECT 1 FROM flywheel.validators v WHERE v.name = _name)
           AND NOT EXISTS (SELECT 1 FROM flywheel.preferences p WHERE p.validator = _name) THEN
            RAISE EXCEPTION 'training set filter: unknown validator "%"', _name USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    FOREACH _key IN ARRAY ARRAY['since', 'until'] LOOP
        IF filter ? _key THEN
            BEGIN
                PERFORM (filter ->> _key)::timestamptz;
            EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format OR invalid_text_representation THEN
                RAISE EXCEPTION 'training set filter: % must be a timestamp, not %', _key, filter -> _key
                    USING ERRCODE = 'invalid_parameter_value';
            END;
        END IF;
    END LOOP;
    FOREACH _key IN ARRAY ARRAY['near_duplicate_threshold', 'min_agreement'] LOOP
        IF filter ? _key AND (jsonb_typeof(filter -> _key) <> 'number'
                              OR (filter ->> _key)::float8 NOT BETWEEN 0 AND 1) THEN
            RAISE EXCEPTION 'training set filter: % must be a number from 0 to 1', _key
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    IF filter ? 'redact_pii' AND jsonb_typeof(filter -> 'redact_pii') <> 'boolean' THEN
        RAISE EXCEPTION 'training set filter: redact_pii must be true or false' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- The traces a filter selects (app, model, prompt version, node type, dates), with a non-empty input.
CREATE OR REPLACE FUNCTION flywheel._training_candidates(filter jsonb)
RETURNS TABLE (id bigint, app text, input text, output text)
LANGUAGE sql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT t.id, t.app, t.input, t.output
    FROM flywheel.traces t
    WHERE coalesce(t.input, '') <> ''
      AND (NOT filter ? 'apps' OR t.app IN (SELECT jsonb_array_elements_text(filter -> 'apps')))
      AND (NOT filter ? 'models' OR t.model IN (SELECT jsonb_array_elements_text(filter -> 'models')))
      AND (NOT filter ? 'prompt_versions'
           OR t.prompt_version IN (SELECT jsonb_array_elements_text(filter -> 'prompt_versions')))
      AND (NOT filter ? 'node_types' OR t.node_type IN (SELECT jsonb_array_elements_text(filter -> 'node_types')))
      AND (NOT filter ? 'since' OR t.created_at >= (filter ->> 'since')::timestamptz)
      AND (NOT filter ? 'until' OR t.created_at < (filter ->> 'until')::timestamptz)
$$;

-- The leak guard: which of the given traces may not be trained on, and why. 'golden': the trace is
-- (or was) in a golden set; 'golden_input': its input is a golden trace's input (same normalised
-- text); 'near_duplicate': its input's embedding is within `threshold` cosine similarity of a golden
-- input's; 'not_embedded': it has no embedding to check and the active embedder runs outside the
-- database (kept out rather than trusted).
CREATE OR REPLACE FUNCTION flywheel._training_leaks(trace_ids bigint[], threshold double precision)
RETURNS TABLE (trace_id bigint, reason text)
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    _embedder text := flywheel._active_embedder();
    _in_db    boolean;
BEGIN
    SELECT e.runs_in = 'database' INTO _in_db FROM flywheel.embedders e WHERE e.name = _embedder;
    CREATE TEMP TABLE IF NOT EXISTS _training_golden (input_key uuid, embedding @extschema:vector@.vector) ON COMMIT DROP;
    CREATE TEMP TABLE IF NOT EXISTS _training_cand (trace_id bigint PRIMARY KEY, input text, input_key uuid,
                                                    embedding @extschema:vector@.vector) ON COMMIT DROP;
    TRUNCATE _training_golden, _training_cand;
    INSERT INTO _training_cand (trace_id, input, input_key, embedding)
    SELECT t.id, t.input, flywheel._input_key(t.input), e.embedding
    FROM flywheel.traces t
    LEFT JOIN flywheel.embeddings e ON e.trace_id = t.id AND e.embedder = _embedder
    WHERE t.id = ANY (trace_ids);
    INSERT INTO _training_golden (input_key, embedding)
    SELECT flywheel._input_key(g.input), e.embedding
    FROM (SELECT DISTINCT t.id, t.input FROM flywheel.golden_set_items i JOIN flywheel.traces t ON t.id = i.trace_id
          WHERE coalesce(t.input, '') <> '') g
    LEFT JOIN flywheel.embeddings e ON e.trace_id = g.id AND e.embedder = _embedder;
    IF _in_db THEN  -- what the deferred embedder has not reached yet is embedded here, the same way
        UPDATE _training_cand c SET embedding = r.embedding::@extschema:vector@.vector
        FROM (SELECT array_agg(c2.trace_id ORDER BY c2.trace_id) AS ids, array_agg(c2.input ORDER BY c2.trace_id) AS texts
              FROM _training_cand c2 WHERE c2.embedding IS NULL HAVING count(*) > 0) a
        CROSS JOIN LATERAL flywheel._embed_texts(_embedder, a.texts) r
        WHERE c.trace_id = a.ids[r.ordinality] AND r.error IS NULL;
        UPDATE _training_golden g SET embedding = r.embedding::@extschema:vector@.vector
        FROM (SELECT array_agg(g2.input_key) AS keys, array_agg(g2.input) AS texts
              FROM (SELECT DISTINCT ON (k.input_key) k.input_key, t.input
                    FROM flywheel.golden_set_items i JOIN flywheel.traces t ON t.id = i.trace_id
                    CROSS JOIN LATERAL (SELECT flywheel._input_key(t.input) AS input_key) k
                    WHERE coalesce(t.input, '') <> '' ORDER BY k.input_key, t.id) g2
              HAVING count(*) > 0) a
        CROSS JOIN LATERAL flywheel._embed_texts(_embedder, a.texts) r
        WHERE g.embedding IS NULL AND g.input_key = a.keys[r.ordinality] AND r.error IS NULL;
    END IF;
    RETURN QUERY
    SELECT c.trace_id,
           CASE WHEN EXISTS (SELECT 1 FROM flywheel.golden_set_items i WHERE i.trace_id = c.trace_id) THEN 'golden'
                WHEN EXISTS (SELECT 1 FROM _training_golden g WHERE g.input_key = c.input_key) THEN 'golden_input'
                WHEN c.embedding IS NULL THEN CASE WHEN EXISTS (SELECT 1 FROM _training_golden) THEN 'not_embedded' END
                WHEN EXISTS (SELECT 1 FROM _training_golden g
                             WHERE 1 - (g.embedding OPERATOR(@extschema:vector@.<=>) c.embedding) >= threshold)
                    THEN 'near_duplicate'
           END
    FROM _training_cand c;
END
$$;

-- Builds the next numbered snapshot of a set: selects, guards, redacts, stores. Returns the
-- version, its row count and what the leak guard held back.
CREATE OR REPLACE FUNCTION flywheel._build_training_set(set_name text)
RETURNS TABLE (version integer, row_count integer, held_back jsonb)
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    _set      flywheel.training_sets;
    _f        jsonb;
    _version  integer;
    _redact   boolean;
    _sources  text[];
    _held     jsonb;
    _counts   jsonb;
    _n        integer;
BEGIN
    SELECT * INTO _set FROM flywheel.training_sets s WHERE s.name = _build_training_set.set_name FOR UPDATE;
    _f := _set.filter;
    _redact := coalesce((_f ->> 'redact_pii')::boolean, true);
    _sources := coalesce(nullif(ARRAY(SELECT jsonb_array_elements_text(_f -> 'sources')), '{}'),
                         CASE _set.kind WHEN 'sft' THEN ARRAY['correction', 'approved'] ELSE ARRAY['human'] END);
    SELECT coalesce(max(v.version), 0) + 1 INTO _version FROM flywheel.training_set_versions v
    WHERE v.set_name = _set.name;

    CREATE TEMP TABLE IF NOT EXISTS _training_pick (trace_id bigint, trace_b bigint, app text, input text,
        output text, rejected text, source text, metadata jsonb) ON COMMIT DROP;
    TRUNCATE _training_pick;
    IF _set.kind = 'sft' THEN
        -- The best known output of each selected trace: its latest correction; else its output, where
        -- people approved it (every latest human verdict is pass) or, if the filter allows, where
        -- every (named) validator passed it and no one gave negative feedback.
        INSERT INTO _training_pick
        SELECT c.id, NULL, c.app, c.input,
               CASE WHEN fix.corrected_output IS NOT NULL THEN fix.corrected_output ELSE c.output END,
               NULL,
               CASE WHEN fix.corrected_output IS NOT NULL THEN 'correction'
                    WHEN ok.approved THEN 'approved' ELSE 'validators' END,
               jsonb_strip_nulls(jsonb_build_object('feedback_id', fix.id))
        FROM flywheel._training_candidates(_f) c
        LEFT JOIN LATERAL (
            SELECT f.id, f.corrected_output FROM flywheel.feedback f
            WHERE f.trace_id = c.id AND f.kind = 'correction' AND 'correction' = ANY (_sources)
            ORDER BY f.created_at DESC, f.id DESC LIMIT 1) fix ON true
        LEFT JOIN LATERAL (
            SELECT bool_and(l.verdict = 'pass') AS approved
            FROM (SELECT DISTINCT ON (l.validator) l.verdict FROM flywheel.labels l
                  WHERE l.trace_id = c.id AND l.verdict IS NOT NULL
                  ORDER BY l.validator, l.created_at DESC, l.id DESC) l) ok ON true
        LEFT JOIN LATERAL (
            SELECT count(*) > 0 AND bool_and(r.status = 'pass') AS passed
            FROM flywheel.validation_results r JOIN flywheel.validators v ON v.id = r.validator_id
            WHERE r.trace_id = c.id AND 'validators' = ANY (_sources)
              AND (NOT _f ? 'validators' OR v.name IN (SELECT jsonb_array_elements_text(_f -> 'validators')))
              AND r.status <> 'skipped') val ON true
        WHERE fix.corrected_output IS NOT NULL
           OR (coalesce(c.output, '') <> '' AND (
                  ('approved' = ANY (_sources) AND ok.approved)
               OR ('validators' = ANY (_sources) AND val.passed AND ok.approved IS DISTINCT FROM false
                   AND NOT EXISTS (SELECT 1 FROM flywheel.feedback f WHERE f.trace_id = c.id
                                   AND ((f.kind = 'thumbs' AND f.value < 0) OR (f.kind = 'rating' AND f.value <= 2))))));
        DELETE FROM _training_pick p WHERE coalesce(p.output, '') = '';
    ELSE
        -- Each unordered pair of selected traces with the same input: the people's majority (a side
        -- with more votes than the other side and than ties); judges' verdicts only where the filter
        -- names 'llm' and no person voted. Agreement (the majority's share) goes into the metadata.
        INSERT INTO _training_pick
        WITH c AS (SELECT * FROM flywheel._training_candidates(_f)),
        votes AS (
            SELECT least(p.trace_a, p.trace_b) AS lo, greatest(p.trace_a, p.trace_b) AS hi, p.judged_by,
                   p.validator,
                   CASE WHEN p.winner = 'tie' THEN 'tie'
                        WHEN (p.winner = 'a') = (p.trace_a < p.trace_b) THEN 'lo' ELSE 'hi' END AS side
            FROM flywheel.preferences p
            WHERE p.trace_a IN (SELECT c.id FROM c) AND p.trace_b IN (SELECT c.id FROM c)
              AND (p.judged_by = 'human'  -- judges' votes: pairs of their own, or the agreement of people's pairs
                   OR NOT _f ? 'judges' OR p.validator IN (SELECT jsonb_array_elements_text(_f -> 'judges')))),
        pairs AS (
            SELECT v.lo, v.hi,
                   CASE WHEN bool_or(v.judged_by = 'human') THEN 'human' ELSE 'llm' END AS source,
                   count(*) FILTER (WHERE v.side = 'lo' AND v.judged_by = 'human') AS h_lo,
                   count(*) FILTER (WHERE v.side = 'hi' AND v.judged_by = 'human') AS h_hi,
                   count(*) FILTER (WHERE v.side = 'tie' AND v.judged_by = 'human') AS h_tie,
                   count(*) FILTER (WHERE v.side = 'lo' AND v.judged_by = 'llm') AS j_lo,
                   count(*) FILTER (WHERE v.side = 'hi' AND v.judged_by = 'llm') AS j_hi,
                   count(*) FILTER (WHERE v.side = 'tie' AND v.judged_by = 'llm') AS j_tie
            FROM votes v GROUP BY v.lo, v.hi),
        decided AS (
            SELECT p.*, CASE WHEN p.source = 'human' THEN p.h_lo ELSE p.j_lo END AS n_lo,
                        CASE WHEN p.source = 'human' THEN p.h_hi ELSE p.j_hi END AS n_hi,
                        CASE WHEN p.source = 'human' THEN p.h_tie ELSE p.j_tie END AS n_tie
            FROM pairs p WHERE p.source = ANY (_sources))
        SELECT CASE WHEN d.n_lo > d.n_hi THEN d.lo ELSE d.hi END,
               CASE WHEN d.n_lo > d.n_hi THEN d.hi ELSE d.lo END,
               a.app, a.input,
               CASE WHEN d.n_lo > d.n_hi THEN a.output ELSE b.output END,
               CASE WHEN d.n_lo > d.n_hi THEN b.output ELSE a.output END,
               d.source,
               jsonb_build_object(
                   'votes', d.n_lo + d.n_hi + d.n_tie,
                   'agreement', round(greatest(d.n_lo, d.n_hi)::numeric / (d.n_lo + d.n_hi + d.n_tie), 3),
                   'judge_votes', d.j_lo + d.j_hi + d.j_tie,
                   'judge_agreement', CASE WHEN d.source = 'human' AND d.j_lo + d.j_hi + d.j_tie > 0 THEN
                       round((CASE WHEN d.n_lo > d.n_hi THEN d.j_lo ELSE d.j_hi END)::numeric
                             / (d.j_lo + d.j_hi + d.j_tie), 3) END)
        FROM decided d
        JOIN c a ON a.id = d.lo
        JOIN c b ON b.id = d.hi
        WHERE d.n_lo <> d.n_hi AND greatest(d.n_lo, d.n_hi) > d.n_tie
          AND a.input = b.input AND coalesce(a.output, '') <> '' AND coalesce(b.output, '') <> ''
          AND a.output <> b.output
          AND greatest(d.n_lo, d.n_hi)::float8 / (d.n_lo + d.n_hi + d.n_tie)
              >= coalesce((_f ->> 'min_agreement')::float8, 0);
    END IF;

    -- The leak guard, over every trace a row would teach (both sides of a pair).
    WITH leaks AS (
        SELECT l.trace_id, l.reason FROM flywheel._training_leaks(
            ARRAY(SELECT p.trace_id FROM _training_pick p UNION SELECT p.trace_b FROM _training_pick p
                  WHERE p.trace_b IS NOT NULL),
            coalesce((_f ->> 'near_duplicate_threshold')::float8, 0.95)) l
        WHERE l.reason IS NOT NULL),
    held AS (
        DELETE FROM _training_pick p USING leaks l
        WHERE l.trace_id = p.trace_id OR l.trace_id = p.trace_b
        RETURNING p.trace_id, p.trace_b, l.reason)
    SELECT coalesce(jsonb_object_agg(h.reason, h.n), '{}') INTO _held
    FROM (SELECT h.reason, count(DISTINCT (h.trace_id, h.trace_b)) AS n FROM held h GROUP BY h.reason) h;

    INSERT INTO flywheel.training_set_versions (set_name, version, filter, row_count, held_back)
    VALUES (_set.name, _version, _f, 0, _held);
    INSERT INTO flywheel.training_set_rows
        (set_name, version, position, trace_id, trace_b, app, input, output, rejected, source, metadata)
    SELECT _set.name, _version, row_number() OVER (ORDER BY p.trace_id, p.trace_b), p.trace_id, p.trace_b, p.app,
           CASE WHEN _redact THEN flywheel.redact_pii(p.input) ELSE p.input END,
           CASE WHEN _redact THEN flywheel.redact_pii(p.output) ELSE p.output END,
           CASE WHEN _redact THEN flywheel.redact_pii(p.rejected) ELSE p.rejected END,
           p.source, p.metadata
    FROM (SELECT DISTINCT ON (p.trace_id, p.trace_b) * FROM _training_pick p ORDER BY p.trace_id, p.trace_b) p;
    GET DIAGNOSTICS _n = ROW_COUNT;
    SELECT coalesce(jsonb_object_agg(s.source, s.n), '{}') INTO _counts
    FROM (SELECT r.source, count(*) AS n FROM flywheel.training_set_rows r
          WHERE r.set_name = _set.name AND r.version = _version GROUP BY r.source) s;
    UPDATE flywheel.training_set_versions v SET row_count = _n, sources = _counts
    WHERE v.set_name = _set.name AND v.version = _version;
    IF _n = 0 THEN
        RAISE NOTICE 'training set % version %: the selection is empty (held back: %)', _set.name, _version, _held
            USING HINT = 'widen the filter, or label, correct and compare more traces';
    END IF;
    RETURN QUERY SELECT _version, _n, _held;
END
$$;

-- Defines (or redefines) a training set and builds its next numbered snapshot.
CREATE OR REPLACE FUNCTION flywheel.create_training_set(name text, kind text, filter jsonb DEFAULT '{}')
RETURNS TABLE (version integer, row_count integer, held_back jsonb)
LANGUAGE plpgsql SECURITY DEFINER  -- admins hold no DML on the snapshot tables: builds go through here
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    _old text;
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'training set name must be 1-63 letters, digits, _ . - (not %)', coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM flywheel._check_training_filter(kind, coalesce(filter, '{}'));
    SELECT s.kind INTO _old FROM flywheel.training_sets s WHERE s.name = create_training_set.name;
    IF _old IS NOT NULL AND _old <> kind THEN
        RAISE EXCEPTION 'training set % is of kind %, not %', name, _old, kind USING ERRCODE = 'invalid_parameter_value',
            HINT = 'choose another name for a set of another kind';
    END IF;
    INSERT INTO flywheel.training_sets AS s (name, kind, filter, created_by) VALUES (name, kind, coalesce(filter, '{}'), session_user)
    ON CONFLICT ON CONSTRAINT training_sets_pkey DO UPDATE SET filter = EXCLUDED.filter;
    RETURN QUERY SELECT * FROM flywheel._build_training_set(name);
END
$$;

-- Builds the next snapshot of an existing set with its stored filter (new labels, corrections...).
CREATE OR REPLACE FUNCTION flywheel.rebuild_training_set(name text)
RETURNS TABLE (version integer, row_count integer, held_back jsonb)
LANGUAGE plpgsql SECURITY DEFINER  -- as create_training_set
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    IF NOT EXISTS (SELECT 1 FROM flywheel.training_sets s WHERE s.name = rebuild_training_set.name) THEN
        RAISE EXCEPTION 'no training set named %', coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'undefined_object', HINT = 'define one with flywheel.create_training_set(name, kind, filter)';
    END IF;
    RETURN QUERY SELECT * FROM flywheel._build_training_set(name);
END
$$;

-- Drops a set and all its snapshots.
CREATE OR REPLACE FUNCTION flywheel.drop_training_set(name text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER  -- as create_training_set
SET search_path TO pg_catalog, pg_temp
AS $$
    WITH d AS (DELETE FROM flywheel.training_sets s WHERE s.name = drop_training_set.name RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM d)
$$;

-- The version a read means: the one asked for, else the newest; a clear error for neither.
CREATE OR REPLACE FUNCTION flywheel._training_set_version(set_name text, version integer)
RETURNS flywheel.training_set_versions
LANGUAGE plpgsql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    _v flywheel.training_set_versions;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM flywheel.training_sets s WHERE s.name = set_name) THEN
        RAISE EXCEPTION 'no training set named %', coalesce(quote_literal(set_name), 'NULL')
            USING ERRCODE = 'undefined_object', HINT = 'define one with flywheel.create_training_set(name, kind, filter)';
    END IF;
    SELECT * INTO _v FROM flywheel.training_set_versions v
    WHERE v.set_name = _training_set_version.set_name AND (version IS NULL OR v.version = version)
    ORDER BY v.version DESC LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'training set % has no version %', set_name, coalesce(version::text, '(none built)')
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN _v;
END
$$;

-- The rows of one snapshot (the newest when version is NULL), in their fixed order: what any
-- trainer can pull with SQL, and what `dbflywheel export-training` streams.
CREATE OR REPLACE FUNCTION flywheel.training_set_rows(set_name text, version integer DEFAULT NULL)
RETURNS TABLE (set_version integer, "position" integer, trace_id bigint, trace_b bigint, input text, output text,
               rejected text, source text, metadata jsonb)
LANGUAGE plpgsql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    _v flywheel.training_set_versions := flywheel._training_set_version(set_name, version);
BEGIN
    RETURN QUERY
    SELECT r.version, r.position, r.trace_id, r.trace_b, r.input, r.output, r.rejected, r.source, r.metadata
    FROM flywheel.training_set_rows r
    WHERE r.set_name = _v.set_name AND r.version = _v.version
    ORDER BY r.position;
END
$$;

-- Snapshots never change; deleting their rows (forget_user, retention) marks the version instead.
CREATE OR REPLACE FUNCTION flywheel._training_rows_are_immutable() RETURNS trigger
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'training set snapshots are immutable' USING ERRCODE = 'object_not_in_prerequisite_state',
        HINT = 'build a new version with flywheel.rebuild_training_set(name)';
END
$$;

CREATE OR REPLACE FUNCTION flywheel._mark_forgotten_training_rows() RETURNS trigger
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE flywheel.training_set_versions v SET forgotten_rows = v.forgotten_rows + d.n, forgotten_at = now()
    FROM (SELECT o.set_name, o.version, count(*) AS n FROM old_rows o GROUP BY 1, 2) d
    WHERE v.set_name = d.set_name AND v.version = d.version;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER training_set_rows_immutable BEFORE UPDATE ON flywheel.training_set_rows
    FOR EACH STATEMENT EXECUTE FUNCTION flywheel._training_rows_are_immutable();
CREATE OR REPLACE TRIGGER training_set_rows_forgotten AFTER DELETE ON flywheel.training_set_rows
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._mark_forgotten_training_rows();

COMMENT ON TABLE flywheel.training_sets IS 'training sets for fine-tuning: name, kind (sft | preference) and filter';
COMMENT ON TABLE flywheel.training_set_versions IS 'every build of a training set: its counts, what the leak guard held back, rows forgotten since';
COMMENT ON TABLE flywheel.training_set_rows IS 'the immutable rows of each training set snapshot, redacted, in export order';
COMMENT ON FUNCTION flywheel.create_training_set(text, text, jsonb) IS 'define a training set (sft or preference) and build its next numbered snapshot';
COMMENT ON FUNCTION flywheel.rebuild_training_set(text) IS 'build the next snapshot of a training set with its stored filter';
COMMENT ON FUNCTION flywheel.drop_training_set(text) IS 'drop a training set and all its snapshots';
COMMENT ON FUNCTION flywheel.training_set_rows(text, integer) IS 'the rows of a training set snapshot (the newest by default), in export order';
