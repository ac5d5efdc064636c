-- Few-shot examples: kept in step with labels, corrections, golden sets and judge results by

-- pgvector's type and operators are named through its schema, wherever it was installed
-- (@extschema:vector@ is replaced by `dbflywheel install`).
-- statement-level triggers; served by few_shot() and, with care, by cache_lookup().

-- Recomputes the example rows of these traces from their sources: a trace is an example while
-- it has a human label, a correction or a place in a golden set, and an embedding of an
-- embedder in use. Upserts what should be there, deletes what should not.
CREATE OR REPLACE FUNCTION flywheel._sync_examples(trace_ids bigint[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    IF trace_ids IS NULL OR cardinality(trace_ids) = 0 THEN
        RETURN;
    END IF;
    WITH ids AS (SELECT DISTINCT i AS id FROM unnest(trace_ids) i),
    latest_label AS (
        SELECT DISTINCT ON (l.trace_id, l.validator)
               l.trace_id, l.validator, l.verdict, l.created_at,
               coalesce(l.label, l.verdict, l.score::text) AS said
        FROM flywheel.labels l JOIN ids ON ids.id = l.trace_id
        ORDER BY l.trace_id, l.validator, l.created_at DESC, l.id DESC
    ), labelled AS (
        SELECT ll.trace_id,
               jsonb_object_agg(ll.validator, ll.said) AS labels,
               (array_agg(ll.said ORDER BY ll.created_at DESC))[1] AS label,
               max(ll.created_at) AS labelled_at,
               -- a human and a validator (same name) disagreed: the most informative examples
               bool_or(EXISTS (
                   SELECT 1 FROM flywheel.validation_results r
                   JOIN flywheel.validators v ON v.id = r.validator_id
                   WHERE r.trace_id = ll.trace_id AND v.name = ll.validator
                     AND r.status IN ('pass', 'fail') AND r.status <> ll.verdict)) AS disagreement
        FROM latest_label ll GROUP BY ll.trace_id
    ), corrected AS (
        SELECT DISTINCT ON (f.trace_id) f.trace_id, f.corrected_output, f.created_at
        FROM flywheel.feedback f JOIN ids ON ids.id = f.trace_id
        WHERE f.kind = 'correction'
        ORDER BY f.trace_id, f.created_at DESC, f.id DESC
    ), golden AS (
        SELECT g.trace_id, max(g.added_at) AS added_at,
               (array_agg(g.expected_output ORDER BY g.added_at DESC)
                    FILTER (WHERE g.expected_output IS NOT NULL))[1] AS expected_output
        FROM flywheel.golden_set_items g JOIN ids ON ids.id = g.trace_id
        WHERE g.removed_in_version IS NULL
        GROUP BY g.trace_id
    ), wanted AS (
        SELECT ids.id AS trace_id, e.embedder, e.app, e.embedding, t.input,
               coalesce(c.corrected_output, g.expected_output, t.output) AS output,
               coalesce(lb.labels, '{}') AS labels, lb.label,
               c.trace_id IS NOT NULL AS corrected,
               coalesce(lb.disagreement, false) AS disagreement,
               g.trace_id IS NOT NULL AS golden,
               greatest(lb.labelled_at, c.created_at, g.added_at) AS labelled_at
        FROM ids
        JOIN flywheel.traces t ON t.id = ids.id
        JOIN flywheel.embeddings e ON e.trace_id = ids.id
        JOIN flywheel.embedders em ON em.name = e.embedder AND em.state IN ('active', 'building')
        LEFT JOIN labelled lb ON lb.trace_id = ids.id
        LEFT JOIN corrected c ON c.trace_id = ids.id
        LEFT JOIN golden g ON g.trace_id = ids.id
        WHERE lb.trace_id IS NOT NULL OR c.trace_id IS NOT NULL OR g.trace_id IS NOT NULL
    ), upserted AS (
        INSERT INTO flywheel.examples AS x (trace_id, embedder, app, embedding, input, output, labels, label,
                                            corrected, disagreement, golden, labelled_at)
        SELECT w.trace_id, w.embedder, w.app, w.embedding, w.input, w.output, w.labels, w.label,
               w.corrected, w.disagreement, w.golden, w.labelled_at
        FROM wanted w
        ON CONFLICT (trace_id, embedder) DO UPDATE
            SET app = EXCLUDED.app, embedding = EXCLUDED.embedding, input = EXCLUDED.input,
                output = EXCLUDED.output, labels = EXCLUDED.labels, label = EXCLUDED.label,
                corrected = EXCLUDED.corrected, disagreement = EXCLUDED.disagreement,
                golden = EXCLUDED.golden, labelled_at = EXCLUDED.labelled_at
            -- an unchanged example is not rewritten (and not re-inserted into the HNSW graph);
            -- vectors compare as real[] (a cast is found by type, pgvector's = only on its schema's path)
            WHERE (x.app, x.embedding::real[], x.input, x.output, x.labels, x.label, x.corrected, x.disagreement, x.golden,
                   x.labelled_at)
                  IS DISTINCT FROM (EXCLUDED.app, EXCLUDED.embedding::real[], EXCLUDED.input, EXCLUDED.output,
                   EXCLUDED.labels, EXCLUDED.label, EXCLUDED.corrected, EXCLUDED.disagreement, EXCLUDED.golden,
                   EXCLUDED.labelled_at)
    )
    DELETE FROM flywheel.examples x
    USING ids
    WHERE x.trace_id = ids.id
      AND NOT EXISTS (SELECT 1 FROM wanted w WHERE w.trace_id = x.trace_id AND w.embedder = x.embedder);
END
$$;

-- One trigger function for every source of examples, run once per statement over its
-- transition table (changed_rows).
CREATE OR REPLACE FUNCTION flywheel._examples_follow() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _ids bigint[];
BEGIN
    IF TG_TABLE_NAME = 'feedback' THEN
        SELECT array_agg(DISTINCT c.trace_id) INTO _ids FROM changed_rows c WHERE c.kind = 'correction';
    ELSIF TG_TABLE_NAME IN ('_results', '_insert_results') THEN
        -- (The insert path's packed rows fire no insert trigger: new traces are no examples yet.)
        SELECT array_agg(DISTINCT c.trace_id) INTO _ids FROM changed_rows c
        WHERE EXISTS (SELECT 1 FROM flywheel.labels l WHERE l.trace_id = c.trace_id);
    ELSIF TG_TABLE_NAME = 'embeddings' THEN
        -- Embeddings made in the trace insert trigger are of new traces: nothing to do.
        IF pg_trigger_depth() > 1 THEN
            RETURN NULL;
        END IF;
        SELECT array_agg(DISTINCT c.trace_id) INTO _ids FROM changed_rows c
        WHERE EXISTS (SELECT 1 FROM flywheel.labels l WHERE l.trace_id = c.trace_id)
           OR EXISTS (SELECT 1 FROM flywheel.feedback f WHERE f.trace_id = c.trace_id AND f.kind = 'correction')
           OR EXISTS (SELECT 1 FROM flywheel.golden_set_items g WHERE g.trace_id = c.trace_id);
    ELSE
        SELECT array_agg(DISTINCT c.trace_id) INTO _ids FROM changed_rows c;
    END IF;
    PERFORM flywheel._sync_examples(_ids);
    RETURN NULL;
END
$$;

-- Every change to what makes an example (labels, feedback, golden sets, results, embeddings)
-- syncs the examples of the traces it touched, once per statement. Packed results are
-- inserted only with their (new) traces, never examples yet: no insert trigger there.
CREATE OR REPLACE TRIGGER labels_examples_insert AFTER INSERT ON flywheel.labels
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER labels_examples_update AFTER UPDATE ON flywheel.labels
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER labels_examples_delete AFTER DELETE ON flywheel.labels
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER feedback_examples_insert AFTER INSERT ON flywheel.feedback
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER feedback_examples_update AFTER UPDATE ON flywheel.feedback
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER feedback_examples_delete AFTER DELETE ON flywheel.feedback
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER golden_set_items_examples_insert AFTER INSERT ON flywheel.golden_set_items
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER golden_set_items_examples_update AFTER UPDATE ON flywheel.golden_set_items
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER golden_set_items_examples_delete AFTER DELETE ON flywheel.golden_set_items
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER _results_examples_insert AFTER INSERT ON flywheel._results
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER _results_examples_update AFTER UPDATE ON flywheel._results
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER _results_examples_delete AFTER DELETE ON flywheel._results
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER _insert_results_examples_update AFTER UPDATE ON flywheel._insert_results
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER _insert_results_examples_delete AFTER DELETE ON flywheel._insert_results
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER embeddings_examples_insert AFTER INSERT ON flywheel.embeddings
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER embeddings_examples_update AFTER UPDATE ON flywheel.embeddings
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();
CREATE OR REPLACE TRIGGER embeddings_examples_delete AFTER DELETE ON flywheel.embeddings
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION flywheel._examples_follow();

-- The apps whose examples a role may see, NULL for all (admins). A SECURITY DEFINER function
-- cannot see its caller, so the public wrappers pass current_user; a role the session could
-- not SET ROLE to sees nothing, so passing another name gains nothing.
CREATE OR REPLACE FUNCTION flywheel._visible_apps(caller name) RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN caller IS NULL OR NOT pg_has_role(session_user, caller, 'MEMBER') THEN ARRAY[]::text[]
        WHEN (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = caller)
             OR pg_has_role(caller, 'flywheel_admin', 'MEMBER') THEN NULL
        ELSE flywheel._apps_of(caller)
    END
$$;

-- How useful an example is: its similarity, weighed by the recency of its label (half of the
-- weight decays with the half-life, so an old but very similar example still counts), and
-- raised for corrected traces and for traces where a human and a validator disagreed.
CREATE OR REPLACE FUNCTION flywheel._example_score(
    similarity double precision, labelled_at timestamptz, corrected boolean, disagreement boolean, half_life interval
) RETURNS double precision
LANGUAGE sql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT similarity
         * (0.5 + 0.5 * power(0.5, greatest(extract(epoch FROM now() - labelled_at), 0)
                                   / extract(epoch FROM half_life)))
         * (1 + 0.2 * corrected::integer + 0.2 * disagreement::integer)
$$;

-- The k most useful examples for a query vector of the active embedder. Candidates are the
-- nearest examples (an HNSW scan with pgvector's iterative scan, so that filters still yield k
-- rows; an exact scan when the filter leaves few rows, where HNSW would return too few), then
-- re-ranked by flywheel._example_score.
-- (The search itself; callers go through few_shot, which passes who is asking.)
CREATE OR REPLACE FUNCTION flywheel._few_shot(
    query_embedding @extschema:vector@.vector, k integer, validator text, app text, half_life interval, caller name
) RETURNS TABLE (trace_id bigint, input text, output text, label text, similarity double precision, score double precision)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
SET hnsw.iterative_scan TO 'relaxed_order'
SET hnsw.ef_search TO 100
AS $$
#variable_conflict use_column
DECLARE
    _embedder text := flywheel._active_embedder();
    _apps text[] := flywheel._visible_apps(caller);  -- NULL: every app
    _pool integer := greatest(4 * _few_shot.k, 40);
    _exact boolean := false;
    _where text := 'x.embedder = $1';
    _exact_below integer := nullif(current_setting('flywheel.few_shot_exact_below', true), '')::integer;
BEGIN
    IF _few_shot.k IS NULL OR _few_shot.k < 1 OR _few_shot.k > 1000 THEN
        RAISE EXCEPTION 'few_shot: k must be between 1 and 1000, not %', _few_shot.k;
    END IF;
    IF _few_shot.half_life IS NULL OR _few_shot.half_life <= interval '0' THEN
        RAISE EXCEPTION 'few_shot: half_life must be a positive interval, not %', _few_shot.half_life;
    END IF;
    IF query_embedding IS NULL THEN
        RETURN;
    END IF;
    -- Only the filters given, so that every call gets a plan for exactly its filters.
    IF _few_shot.app IS NOT NULL THEN
        _where := _where || ' AND x.app = $2';
    END IF;
    IF _apps IS NOT NULL THEN
        _where := _where || ' AND x.app = ANY ($3)';
    END IF;
    IF _few_shot.validator IS NOT NULL THEN
        _where := _where || ' AND x.labels ? $4';
    END IF;
    IF _where <> 'x.embedder = $1' THEN
        -- A filter matching n of N examples: an exact scan reads n rows, a filtered HNSW scan
        -- about pool * N / n before it has the pool; they cost the same at n = sqrt(pool * N).
        -- Below that, scan exactly (HNSW would also come back short); above, iterate HNSW.
        -- (flywheel.few_shot_exact_below overrides it, for tests.)
        IF _exact_below IS NULL THEN
            SELECT greatest(1000, ceil(sqrt(_pool * greatest(c.reltuples, 0))))::integer INTO _exact_below
            FROM pg_class c WHERE c.oid = 'flywheel.examples'::regclass;
        END IF;
        EXECUTE 'SELECT count(*) < $6 FROM (SELECT 1 FROM flywheel.examples x WHERE ' || _where || ' LIMIT $6) s'
            INTO _exact USING _embedder, _few_shot.app, _apps, _few_shot.validator, query_embedding, _exact_below;
    END IF;
    -- Examples are other users' traces: an application (any caller limited to its apps) gets
    -- their input and output with PII redacted (flywheel.redact_pii), on the k rows returned.
    -- Admins, who may read the traces anyway, get them as stored (judge workers redact per
    -- judge, see flywheel._judge_text).
    RETURN QUERY EXECUTE
        'SELECT r.trace_id,'
        || CASE WHEN _apps IS NULL THEN ' r.input, r.output,'
                ELSE ' flywheel.redact_pii(r.input), flywheel.redact_pii(r.output),' END
        || ' r.label, r.similarity, r.score FROM ('
        'SELECT c.trace_id, c.input, c.output, coalesce(c.labels ->> $4, c.label) AS label, 1 - c.distance AS similarity,'
        -- the score (flywheel._example_score, written out: a function call per row costs more)
        '       (1 - c.distance) * (0.5 + 0.5 * power(0.5, greatest(extract(epoch FROM now() - c.labelled_at), 0)'
        '                                                / extract(epoch FROM $9::interval)))'
        '       * (1 + 0.2 * c.corrected::integer + 0.2 * c.disagreement::integer) AS score'
        ' FROM (SELECT x.trace_id, x.input, x.output, x.labels, x.label, x.labelled_at, x.corrected, x.disagreement,'
        '             x.embedding OPERATOR(@extschema:vector@.<=>) $5 AS distance FROM flywheel.examples x WHERE ' || _where
        || CASE WHEN _exact THEN ' ORDER BY (x.embedding OPERATOR(@extschema:vector@.<=>) $5) + 0'  -- "+ 0": no index can serve it
                ELSE ' ORDER BY x.embedding OPERATOR(@extschema:vector@.<=>) $5' END
        || ' LIMIT $7) c ORDER BY 6 DESC, 1 LIMIT $8) r ORDER BY r.score DESC, r.trace_id'
        USING _embedder, _few_shot.app, _apps, _few_shot.validator, query_embedding, _exact_below, _pool,
              _few_shot.k, _few_shot.half_life;
END
$$;

-- A query text as a vector of the active embedder; an error when that embedder does not run here.
CREATE OR REPLACE FUNCTION flywheel._embed_query(query text) RETURNS @extschema:vector@.vector
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _embedder flywheel.embedders;
    _result record;
BEGIN
    SELECT * INTO _embedder FROM flywheel.embedders e WHERE e.state = 'active';
    IF _embedder.runs_in <> 'database' THEN
        RAISE EXCEPTION 'the active embedder % runs in the %, not in the database', _embedder.name, _embedder.runs_in
            USING HINT = 'embed the query with the same model and call few_shot(query_embedding vector, ...)';
    END IF;
    SELECT r.embedding, r.error INTO _result FROM flywheel._embed_texts(_embedder.name, ARRAY[query]) r;
    IF _result.error IS NOT NULL THEN
        RAISE EXCEPTION 'could not embed the query: %', _result.error;
    END IF;
    RETURN _result.embedding::@extschema:vector@.vector;
END
$$;

-- The k most useful examples for a query vector of the active embedder, among the apps the
-- caller may see. Applications get the examples' input and output with PII redacted.
CREATE OR REPLACE FUNCTION flywheel.few_shot(
    query_embedding @extschema:vector@.vector,
    k integer DEFAULT 5,
    validator text DEFAULT NULL,
    app text DEFAULT NULL,
    half_life interval DEFAULT '30 days'
) RETURNS TABLE (trace_id bigint, input text, output text, label text, similarity double precision, score double precision)
LANGUAGE sql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$ SELECT * FROM flywheel._few_shot(query_embedding, k, validator, app, half_life, current_user) $$;
COMMENT ON FUNCTION flywheel.few_shot(@extschema:vector@.vector, integer, text, text, interval) IS
    'The k most useful labelled examples for a query embedding (similar, recent, corrected), among the apps the caller may see.';

-- The same for a text, embedded by the active embedder (when it runs in the database).
CREATE OR REPLACE FUNCTION flywheel.few_shot(
    query text,
    k integer DEFAULT 5,
    validator text DEFAULT NULL,
    app text DEFAULT NULL,
    half_life interval DEFAULT '30 days'
) RETURNS TABLE (trace_id bigint, input text, output text, label text, similarity double precision, score double precision)
LANGUAGE sql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$ SELECT * FROM flywheel._few_shot(flywheel._embed_query(query), k, validator, app, half_life, current_user) $$;
COMMENT ON FUNCTION flywheel.few_shot(text, integer, text, text, interval) IS
    'The k most useful labelled examples for a query text, embedded by the active in-database embedder.';

-- Whether an earlier trace's output may be served again: it has an output, passed every
-- validator it was checked by (the latest version of each; at least one), and has no negative
-- feedback and no failing human label.
CREATE OR REPLACE FUNCTION flywheel._cache_safe(trace_id bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM flywheel.validation_results r WHERE r.trace_id = _cache_safe.trace_id)
       AND NOT EXISTS (
           SELECT 1 FROM (SELECT DISTINCT ON (r.validator_id) r.status FROM flywheel.validation_results r
                          WHERE r.trace_id = _cache_safe.trace_id
                          ORDER BY r.validator_id, r.validator_version DESC) latest
           WHERE latest.status <> 'pass')
       AND NOT EXISTS (
           SELECT 1 FROM flywheel.feedback f WHERE f.trace_id = _cache_safe.trace_id
             AND (f.kind IN ('correction', 'requery') OR (f.kind = 'thumbs' AND f.value < 0)
                  OR (f.kind = 'rating' AND f.value <= 2)))
       AND NOT EXISTS (SELECT 1 FROM flywheel.labels l WHERE l.trace_id = _cache_safe.trace_id AND l.verdict = 'fail')
$$;

-- An earlier output for this query, only when it is safe to reuse (flywheel._cache_safe) and
-- the earlier input is the same after normalisation, or more similar than a strict threshold
-- (searched among the examples, the only vectors under an index). Otherwise no row.
CREATE OR REPLACE FUNCTION flywheel._cache_lookup(query text, threshold real, caller name)
RETURNS TABLE (trace_id bigint, output text, similarity double precision, matched text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
SET hnsw.ef_search TO 100
AS $$
#variable_conflict use_column
DECLARE
    _embedder text := flywheel._active_embedder();
    _key uuid := flywheel._input_key(query);
    _apps text[] := flywheel._visible_apps(caller);
    _vector @extschema:vector@.vector;
BEGIN
    IF threshold IS NULL OR threshold < 0.9::real OR threshold > 1 THEN
        RAISE EXCEPTION 'cache_lookup: threshold must be between 0.9 and 1, not %', threshold
            USING HINT = 'a loose threshold answers a different question with a stored answer';
    END IF;
    IF query IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT t.id, t.output, 1.0::double precision, 'exact'::text
    FROM flywheel.embeddings e JOIN flywheel.traces t ON t.id = e.trace_id
    WHERE e.input_key = _key AND e.embedder = _embedder AND (_apps IS NULL OR e.app = ANY (_apps)) AND t.output IS NOT NULL AND flywheel._cache_safe(t.id)
    ORDER BY t.created_at DESC LIMIT 1;
    IF FOUND THEN
        RETURN;
    END IF;
    _vector := flywheel._embed_query(query);
    RETURN QUERY
    SELECT t.id, t.output, n.similarity, 'similar'::text
    FROM (SELECT x.trace_id, 1 - (x.embedding OPERATOR(@extschema:vector@.<=>) _vector) AS similarity
          FROM flywheel.examples x WHERE x.embedder = _embedder AND (_apps IS NULL OR x.app = ANY (_apps))
          ORDER BY x.embedding OPERATOR(@extschema:vector@.<=>) _vector LIMIT 10) n
    JOIN flywheel.traces t ON t.id = n.trace_id
    WHERE n.similarity >= threshold AND t.output IS NOT NULL AND flywheel._cache_safe(t.id)
    ORDER BY n.similarity DESC, t.created_at DESC LIMIT 1;
END
$$;

CREATE OR REPLACE FUNCTION flywheel.cache_lookup(query text, threshold real DEFAULT 0.97)
RETURNS TABLE (trace_id bigint, output text, similarity double precision, matched text)
LANGUAGE sql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$ SELECT * FROM flywheel._cache_lookup(query, threshold, current_user) $$;
COMMENT ON FUNCTION flywheel.cache_lookup(text, real) IS
    'A semantic cache: the output of an earlier trace whose input is the same or similar enough (threshold), among the caller''s apps.';

-- The catalog's comments of this area's tables (created in migrations/0300): `\dt+ flywheel.*` shows them.
COMMENT ON TABLE flywheel.examples IS
    'The few-shot examples (labelled, corrected or golden traces) per embedder, with what few_shot returns; only these are in the HNSW index.';
