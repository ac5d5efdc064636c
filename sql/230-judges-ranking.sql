-- Bradley-Terry rankings of models, prompt versions and variants from pairwise verdicts:
-- human votes and each judge's verdicts ranked separately, then side by side.
-- At most judges_ranking.MAX_NAMES (100) names per (app, dimension, source), those compared most:
-- the ranking is computed on every read, and its cost must not grow with one app's variants.

-- One row per (app, dimension, source, name); source is 'human' or the judge's name.
CREATE OR REPLACE FUNCTION flywheel._bradley_terry()
RETURNS TABLE (app text, dimension text, source text, name text, score double precision, rank integer,
               wins integer, losses integer, ties integer)
LANGUAGE plpython3u STABLE
SECURITY DEFINER  -- readers see the ranking (aggregates), not the traces behind it
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: judges_ranking.ranking $python$;

-- The human ranking next to each judge's: one row per (app, dimension, judge, name).
-- Rows with judge NULL are names that only people (or no judge) compared.
CREATE OR REPLACE VIEW flywheel.pairwise_ranking AS
WITH bt AS (SELECT * FROM flywheel._bradley_terry())
SELECT coalesce(j.app, h.app) AS app, coalesce(j.dimension, h.dimension) AS dimension,
       coalesce(j.name, h.name) AS name, j.source AS judge,
       h.score AS human_score, h.rank AS human_rank, h.wins + h.losses + h.ties AS human_comparisons,
       j.score AS judge_score, j.rank AS judge_rank, j.wins + j.losses + j.ties AS judge_comparisons
FROM (SELECT * FROM bt WHERE source = 'human') h
FULL JOIN (SELECT * FROM bt WHERE source <> 'human') j
    ON j.app = h.app AND j.dimension = h.dimension AND j.name = h.name;
COMMENT ON VIEW flywheel.pairwise_ranking IS
    'Bradley-Terry rankings of models, prompt versions and variants from pairwise verdicts: the human ranking next to each judge''s.';

-- The catalog's comments of this area's tables (created in migrations/0200): `\dt+ flywheel.*` shows them.
COMMENT ON TABLE flywheel.preferences IS
    'Pairwise verdicts: which of two traces answering the same input is better, by people or by a judge.';
