-- Embeddings: the built-in embedder in the insert path (one PL/Python call per statement),

-- pgvector's type and operators are named through its schema, wherever it was installed
-- (@extschema:vector@ is replaced by `dbflywheel install`).
-- the backlog that catches failures and worker embedders, and switching embedders.

-- The built-in embedder over a batch: (ordinality, embedding, input_key, error) per text.
-- Pure computation; SECURITY DEFINER only so that roles without access to the module table
-- (the application) can load the PL/Python module.
CREATE OR REPLACE FUNCTION flywheel._embed_texts(embedder text, texts text[])
RETURNS TABLE (ordinality integer, embedding text, input_key uuid, error text)
LANGUAGE plpython3u STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: fewshot_embedder.embed_rows $python$;

-- The exact-match key of a text (md5 of its normalised form), as cache_lookup compares it.
CREATE OR REPLACE FUNCTION flywheel._input_key(text text) RETURNS uuid
LANGUAGE plpython3u IMMUTABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: fewshot_embedder.normalize_key $python$;

CREATE OR REPLACE FUNCTION flywheel._active_embedder() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$ SELECT e.name FROM flywheel.embedders e WHERE e.state = 'active' $$;

-- Embeds traces with the built-in embedder and stores the vectors (plpython/fewshot_store.py);
-- a failure lands in the backlog with its message, never raised. Returns how many were stored.
CREATE OR REPLACE FUNCTION flywheel._embed_traces(embedder text, trace_ids bigint[], apps text[], inputs text[])
RETURNS integer
LANGUAGE plpython3u SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: fewshot_store.embed_traces $python$;

-- AFTER INSERT, once per statement: one PL/Python call embeds the inputs of all new traces
-- (transition table new_traces) with every in-database embedder in use, and queues them for
-- worker embedders. Whatever goes wrong is recorded in the backlog, never raised into the
-- application's INSERT. PL/pgSQL, so that its two reads are planned once per session (a
-- PL/Python trigger parsed and planned its read of new_traces on every INSERT).
CREATE OR REPLACE FUNCTION flywheel._embed_new_traces() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _embedder record;
    _ids bigint[];
    _apps text[];
    _inputs text[];
BEGIN
    FOR _embedder IN SELECT e.name, e.runs_in FROM flywheel.embedders e
                     WHERE e.state IN ('active', 'building') AND e.runs_in <> 'application' ORDER BY e.name LOOP
        IF _ids IS NULL THEN
            SELECT array_agg(t.id), array_agg(t.app), array_agg(t.input) INTO _ids, _apps, _inputs
            FROM new_traces t WHERE t.input IS NOT NULL;
            EXIT WHEN _ids IS NULL;
        END IF;
        IF _embedder.runs_in = 'database' THEN
            PERFORM flywheel._embed_traces(_embedder.name, _ids, _apps, _inputs);  -- records its own failures
        ELSE
            BEGIN
                INSERT INTO flywheel.embedding_backlog (trace_id, embedder, reason)
                SELECT i, _embedder.name, 'worker' FROM unnest(_ids) i ON CONFLICT DO NOTHING;
            EXCEPTION WHEN OTHERS THEN
                RAISE WARNING 'dbflywheel: could not queue % trace(s) for %: %', cardinality(_ids), _embedder.name, SQLERRM;
            END;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER traces_embed AFTER INSERT ON flywheel.traces
    REFERENCING NEW TABLE AS new_traces
    FOR EACH STATEMENT EXECUTE FUNCTION flywheel._embed_new_traces();

-- Registers an embedder and starts its back-fill (state 'building'). The active embedder stays
-- in use until every trace has the new one's vector; then embed_backlog() switches over.
-- runs_in: 'database' (the built-in, by name), 'worker' (`dbflywheel embed` computes it) or
-- 'application' (the application inserts into flywheel.embeddings itself).
CREATE OR REPLACE FUNCTION flywheel.set_embedder(name text, runs_in text DEFAULT 'database')
RETURNS text
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    _state text;
    _runs_in text;
BEGIN
    SELECT e.state, e.runs_in INTO _state, _runs_in FROM flywheel.embedders e WHERE e.name = set_embedder.name;
    IF _state = 'active' AND _runs_in = runs_in THEN
        RETURN format('%s is already the active embedder', name);
    END IF;
    -- The active embedder moved (same vectors, nothing to back-fill): 'worker' takes it out of
    -- the insert path (each INSERT then queues its traces in the backlog, and `dbflywheel embed`
    -- or, back in the database, embed_backlog() fills their vectors in), 'database' brings it back.
    IF _state = 'active' THEN
        IF runs_in NOT IN ('database', 'worker') THEN
            RAISE EXCEPTION 'set_embedder: the active embedder runs in the database or a worker, not %', runs_in;
        END IF;
        UPDATE flywheel.embedders e SET runs_in = set_embedder.runs_in WHERE e.name = set_embedder.name;
        RETURN format('%s (active) now runs in the %s', name, runs_in);
    END IF;
    IF EXISTS (SELECT 1 FROM flywheel.embedders e WHERE e.state = 'building' AND e.name <> set_embedder.name) THEN
        RAISE EXCEPTION 'set_embedder: another embedder is still being back-filled'
            USING HINT = 'run flywheel.embed_backlog() until it finishes, or delete that embedder';
    END IF;
    INSERT INTO flywheel.embedders AS e (name, runs_in, state)
    VALUES (name, runs_in, 'building')
    ON CONFLICT ON CONSTRAINT embedders_pkey DO UPDATE
        SET state = 'building', runs_in = EXCLUDED.runs_in, backfill_after_id = 0;
    RETURN format('%s is building: run flywheel.embed_backlog() (or `dbflywheel embed`) until it is active', name);
END
$$;

-- Back-ground embedding work, in batches: retries the failed embeddings of in-database
-- embedders, back-fills a 'building' embedder that runs here, and switches to it when it
-- covers every trace. Returns how many traces it embedded. Run it from pg_cron or
-- `dbflywheel embed`.
CREATE OR REPLACE FUNCTION flywheel.embed_backlog(batch integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _embedder record;
    _ids bigint[];
    _apps text[];
    _inputs text[];
    _done integer := 0;
    _last bigint;
BEGIN
    FOR _embedder IN SELECT e.name, e.state, e.backfill_after_id FROM flywheel.embedders e
                     WHERE e.state IN ('active', 'building') AND e.runs_in = 'database'
                     ORDER BY e.state LOOP
        -- 1. retries (each failure counts an attempt; after 5 a trace stays here with its error)
        WITH claimed AS (
            SELECT b.trace_id FROM flywheel.embedding_backlog b
            WHERE b.embedder = _embedder.name AND b.attempts < 5
            ORDER BY b.trace_id LIMIT batch FOR UPDATE SKIP LOCKED)
        SELECT array_agg(t.id), array_agg(t.app), array_agg(t.input) INTO _ids, _apps, _inputs
        FROM flywheel.traces t JOIN claimed c ON c.trace_id = t.id;
        IF _ids IS NOT NULL THEN
            _done := _done + flywheel._embed_traces(_embedder.name, _ids, _apps, _inputs);
            DELETE FROM flywheel.embedding_backlog b
            WHERE b.embedder = _embedder.name AND b.trace_id = ANY (_ids)
              AND EXISTS (SELECT 1 FROM flywheel.embeddings e WHERE e.trace_id = b.trace_id AND e.embedder = b.embedder);
        END IF;
        -- backlog rows of traces that no longer exist (retention) are dropped
        DELETE FROM flywheel.embedding_backlog b
        WHERE b.embedder = _embedder.name AND NOT EXISTS (SELECT 1 FROM flywheel.traces t WHERE t.id = b.trace_id);
        -- 2. back-fill of a building embedder, by ascending trace id
        IF _embedder.state = 'building' THEN
            PERFORM 1 FROM flywheel.embedders e WHERE e.name = _embedder.name FOR UPDATE;
            SELECT array_agg(s.id ORDER BY s.id), array_agg(s.app ORDER BY s.id), array_agg(s.input ORDER BY s.id), max(s.id)
            INTO _ids, _apps, _inputs, _last
            FROM (SELECT t.id, t.app, t.input FROM flywheel.traces t
                  WHERE t.id > _embedder.backfill_after_id
                    AND NOT EXISTS (SELECT 1 FROM flywheel.embeddings e
                                    WHERE e.trace_id = t.id AND e.embedder = _embedder.name)
                  ORDER BY t.id LIMIT batch) s;
            IF _last IS NOT NULL THEN
                _done := _done + flywheel._embed_traces(_embedder.name, _ids, _apps, _inputs);
                UPDATE flywheel.embedders e SET backfill_after_id = _last WHERE e.name = _embedder.name;
            END IF;
        END IF;
    END LOOP;
    PERFORM flywheel._activate_built_embedder();
    RETURN _done;
END
$$;

-- Switches to the building embedder once it has a vector for every trace (and nothing in its
-- backlog): its examples replace the old ones in one transaction, so few_shot never sees a gap.
CREATE OR REPLACE FUNCTION flywheel._activate_built_embedder() RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _new flywheel.embedders;
BEGIN
    SELECT * INTO _new FROM flywheel.embedders e WHERE e.state = 'building' FOR UPDATE;
    IF NOT FOUND
       OR EXISTS (SELECT 1 FROM flywheel.traces t WHERE t.id > _new.backfill_after_id AND t.input IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM flywheel.embeddings e WHERE e.trace_id = t.id AND e.embedder = _new.name))
       OR EXISTS (SELECT 1 FROM flywheel.embedding_backlog b WHERE b.embedder = _new.name AND b.attempts < 5) THEN
        RETURN NULL;
    END IF;
    UPDATE flywheel.embedders e SET state = 'retired' WHERE e.state = 'active';
    UPDATE flywheel.embedders e SET state = 'active', activated_at = now() WHERE e.name = _new.name;
    -- Every example again, now from the new embedder's vectors; the old rows go.
    PERFORM flywheel._sync_examples(ARRAY(SELECT DISTINCT x.trace_id FROM flywheel.examples x));
    DELETE FROM flywheel.examples x WHERE x.embedder <> _new.name;
    RETURN _new.name;
END
$$;

-- Per embedder: how many traces it has embedded, what is waiting, and the back-fill position.
CREATE OR REPLACE VIEW flywheel.embedding_status AS
SELECT e.name AS embedder, e.state, e.runs_in, e.dims,
       (SELECT count(*) FROM flywheel.embeddings x WHERE x.embedder = e.name) AS embedded,
       (SELECT count(*) FROM flywheel.embedding_backlog b WHERE b.embedder = e.name) AS backlog,
       (SELECT count(*) FROM flywheel.embedding_backlog b WHERE b.embedder = e.name AND b.attempts >= 5) AS given_up,
       (SELECT count(*) FROM flywheel.examples x WHERE x.embedder = e.name) AS examples,
       e.backfill_after_id, e.activated_at
FROM flywheel.embedders e;

