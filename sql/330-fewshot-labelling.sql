-- What people should label next: the annotation queue, stratified review samples, and the
-- traces where a human and a validator disagreed.

-- pgvector's type and operators are named through its schema, wherever it was installed
-- (@extschema:vector@ is replaced by `dbflywheel install`).

-- Traces with a human verdict for validator V and a result of the same validator (by name)
-- whose pass/fail status differs.
CREATE OR REPLACE VIEW flywheel.disagreements AS
SELECT l.trace_id, l.app, l.validator, l.verdict AS human_verdict, r.status AS validator_status,
       r.validator_version, r.judged_by, r.score, l.annotator, l.created_at AS labelled_at
FROM flywheel.labels l
JOIN flywheel.validators v ON v.name = l.validator
-- Per label, index probes into both stores of results: a plain join with the view would unnest
-- every packed result first (see sql/105); OFFSET 0 keeps the probe a probe.
CROSS JOIN LATERAL (SELECT * FROM flywheel.validation_results r0
                    WHERE r0.trace_id = l.trace_id AND r0.validator_id = v.id OFFSET 0) r
WHERE l.verdict IS NOT NULL AND r.status IN ('pass', 'fail') AND r.status <> l.verdict;
COMMENT ON VIEW flywheel.disagreements IS
    'Traces where a human verdict and the same validator''s result differ on pass/fail.';

-- A person already said what is right for this trace: a label or a correction.
CREATE OR REPLACE FUNCTION flywheel._is_labelled(trace_id bigint) RETURNS boolean
LANGUAGE sql STABLE
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM flywheel.labels l WHERE l.trace_id = _is_labelled.trace_id)
        OR EXISTS (SELECT 1 FROM flywheel.feedback f WHERE f.trace_id = _is_labelled.trace_id AND f.kind = 'correction')
$$;

-- Unlabelled (and uncorrected) traces, most useful to label first. The priority (0..1) adds up:
--   0.30 uncertainty: a judge score near the middle, an error, or a validator that often
--        disagrees with people (1 - its agreement rate on labelled traces);
--   0.25 novelty: far from every existing example (1 - similarity to the nearest);
--   0.25 badness: a failing result (half) and negative feedback (half);
--   0.20 recency: halves every 7 days.
-- The pool is the 1000 newest unlabelled traces plus up to 1000 bad ones of the last 30 days,
-- so reading the view costs the same on a table of any size.
-- (The view's body: a function, so that JIT stays off; the planner's estimate of the per-trace
-- probes is far above jit_above_cost, and compiling costs more than the whole query.)
CREATE OR REPLACE FUNCTION flywheel._annotation_queue()
RETURNS TABLE (trace_id bigint, app text, created_at timestamptz, model text, prompt_version text, input text,
               output text, priority double precision, uncertainty double precision, novelty double precision,
               badness double precision, recency double precision, reasons text[])
LANGUAGE sql STABLE
SET search_path TO pg_catalog, pg_temp
SET jit TO off
AS $$
WITH agreement AS (
    SELECT r.validator_id, avg((r.status = l.verdict)::integer) AS rate
    FROM flywheel.labels l
    JOIN flywheel.validators v ON v.name = l.validator
    CROSS JOIN LATERAL (SELECT * FROM flywheel.validation_results r0  -- probes, as in disagreements
                        WHERE r0.trace_id = l.trace_id AND r0.validator_id = v.id OFFSET 0) r
    WHERE l.verdict IS NOT NULL AND r.status IN ('pass', 'fail')
    GROUP BY r.validator_id
), newest AS (
    SELECT t.id FROM flywheel.traces t
    WHERE NOT flywheel._is_labelled(t.id)
    ORDER BY t.id DESC LIMIT 1000
), bad AS (
    SELECT t.id FROM flywheel.traces t
    WHERE t.created_at > now() - interval '30 days'
      AND NOT flywheel._is_labelled(t.id)
      AND (EXISTS (SELECT 1 FROM flywheel.validation_results r WHERE r.trace_id = t.id AND r.status = 'fail')
           OR EXISTS (SELECT 1 FROM flywheel.feedback f WHERE f.trace_id = t.id
                      AND (f.kind IN ('correction', 'requery') OR (f.kind = 'thumbs' AND f.value < 0)
                           OR (f.kind = 'rating' AND f.value <= 2))))
    ORDER BY t.id DESC LIMIT 1000
), pool AS (
    SELECT id FROM newest UNION SELECT id FROM bad
), signals AS MATERIALIZED (  -- computed once per trace, not once per use below
    SELECT t.id AS trace_id, t.app, t.created_at, t.model, t.prompt_version, t.input, t.output,
           coalesce((SELECT max(greatest(
                        CASE WHEN r.score BETWEEN 0 AND 1 THEN 1 - abs(2 * r.score - 1) ELSE 0 END,
                        CASE WHEN r.status = 'error' THEN 0.5 ELSE 0 END,
                        1 - coalesce(a.rate, 1)))
                     FROM flywheel.validation_results r LEFT JOIN agreement a ON a.validator_id = r.validator_id
                     WHERE r.trace_id = t.id), 0) AS uncertainty,
           -- e.embedding is an outer reference here, so the nearest example is one HNSW probe
           CASE WHEN e.embedding IS NULL THEN 0.5
                ELSE coalesce((SELECT greatest(0, least(1, x.embedding OPERATOR(@extschema:vector@.<=>) e.embedding))
                               FROM flywheel.examples x WHERE x.embedder = e.embedder
                               ORDER BY x.embedding OPERATOR(@extschema:vector@.<=>) e.embedding LIMIT 1), 1) END AS novelty,
           0.5 * EXISTS (SELECT 1 FROM flywheel.validation_results r WHERE r.trace_id = t.id AND r.status = 'fail')::integer
         + 0.5 * EXISTS (SELECT 1 FROM flywheel.feedback f WHERE f.trace_id = t.id
                         AND (f.kind IN ('correction', 'requery') OR (f.kind = 'thumbs' AND f.value < 0)
                              OR (f.kind = 'rating' AND f.value <= 2)))::integer AS badness,
           power(0.5, greatest(extract(epoch FROM now() - t.created_at), 0) / (7 * 86400)) AS recency
    FROM pool JOIN flywheel.traces t ON t.id = pool.id
    LEFT JOIN flywheel.embeddings e ON e.trace_id = t.id AND e.embedder = flywheel._active_embedder()
)
SELECT s.trace_id, s.app, s.created_at, s.model, s.prompt_version, s.input, s.output,
       round((0.30 * s.uncertainty + 0.25 * s.novelty + 0.25 * s.badness + 0.20 * s.recency)::numeric, 4)
           ::double precision AS priority,
       s.uncertainty::double precision, s.novelty::double precision, s.badness::double precision,
       s.recency::double precision,
       array_remove(ARRAY[
           CASE WHEN s.uncertainty >= 0.5 THEN 'uncertain' END,
           CASE WHEN s.novelty >= 0.5 THEN 'novel' END,
           CASE WHEN s.badness > 0 THEN 'bad' END,
           CASE WHEN s.recency >= 0.5 THEN 'recent' END], NULL) AS reasons
FROM signals s
ORDER BY priority DESC, s.trace_id DESC
$$;

CREATE OR REPLACE VIEW flywheel.annotation_queue AS
SELECT * FROM flywheel._annotation_queue();
COMMENT ON VIEW flywheel.annotation_queue IS
    'What people should label next, most useful first: uncertain, novel, bad and recent traces, with the reasons.';

-- A stratified sample for the periodic human review of one validator: traces it judged in the
-- last 30 days and nobody has labelled for it yet, spread over every (model, prompt version,
-- verdict) stratum: one from each first, then in proportion to the strata's sizes.
CREATE OR REPLACE FUNCTION flywheel.sample_for_labeling(validator text, n integer)
RETURNS TABLE (trace_id bigint, model text, prompt_version text, verdict text, stratum_size bigint,
               input text, output text, created_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    _validator_id bigint;
BEGIN
    SELECT v.id INTO _validator_id FROM flywheel.validators v WHERE v.name = sample_for_labeling.validator;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'sample_for_labeling: no validator named %', coalesce(quote_literal(validator), 'NULL');
    END IF;
    IF n IS NULL OR n < 1 THEN
        RAISE EXCEPTION 'sample_for_labeling: n must be at least 1, not %', n;
    END IF;
    RETURN QUERY
    WITH latest AS (
        SELECT DISTINCT ON (r.trace_id) r.trace_id, r.status
        FROM flywheel.validation_results r
        WHERE r.validator_id = _validator_id AND r.created_at > now() - interval '30 days'
        ORDER BY r.trace_id, r.validator_version DESC
    ), candidates AS (
        SELECT t.id, t.model, t.prompt_version, l.status, t.input, t.output, t.created_at
        FROM latest l JOIN flywheel.traces t ON t.id = l.trace_id
        WHERE NOT EXISTS (SELECT 1 FROM flywheel.labels h
                          WHERE h.trace_id = t.id AND h.validator = sample_for_labeling.validator)
    ), ranked AS (
        SELECT c.*,
               row_number() OVER (PARTITION BY c.model, c.prompt_version, c.status ORDER BY random()) AS pick,
               count(*) OVER (PARTITION BY c.model, c.prompt_version, c.status) AS size
        FROM candidates c
    )
    SELECT r.id, r.model, r.prompt_version, r.status, r.size, r.input, r.output, r.created_at
    FROM ranked r
    ORDER BY r.pick > 1, (r.pick - 0.5) / r.size, random()
    LIMIT n;
END
$$;
COMMENT ON FUNCTION flywheel.sample_for_labeling(text, integer) IS
    'A stratified sample of one validator''s unlabelled traces of the last 30 days, for its periodic human review.';

-- The catalog's comments of this area's tables (created in migrations/0001): `\dt+ flywheel.*` shows them.
COMMENT ON TABLE flywheel.labels IS
    'Human verdicts on a trace for one validator (or metric), by name: what judges are aligned against.';
