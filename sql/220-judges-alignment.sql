-- Alignment of judges with people: every (human verdict, judge verdict) pair on the same item,
-- then agreement, coverage, false failure rate and Cohen's kappa per validator version, an
-- alert when a judge falls below its floor, and preferences' checks.

-- A preference names two traces that exist; it takes trace_a's app (row-level security).
-- Who voted is the database's to say: a preference written by anyone but an admin (or the
-- schema's owner, which writes the judges' verdicts) names the role that wrote it as its
-- annotator, whatever the row said. (Applications may write only human votes: the policy.)
CREATE OR REPLACE FUNCTION flywheel._check_preference() RETURNS trigger
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _app_b text;
BEGIN
    IF NOT pg_has_role(current_user, 'flywheel_admin', 'MEMBER')
       AND NOT pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID), 'MEMBER') THEN
        NEW.annotator := current_user;
    END IF;
    SELECT t.app INTO NEW.app FROM flywheel.traces t WHERE t.id = NEW.trace_a;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'preference for trace %, which does not exist', NEW.trace_a USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT t.app INTO _app_b FROM flywheel.traces t WHERE t.id = NEW.trace_b;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'preference for trace %, which does not exist', NEW.trace_b USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF _app_b <> NEW.app THEN
        RAISE EXCEPTION 'a preference compares traces of one app, not % and %', NEW.app, _app_b;
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER preferences_traces_must_exist BEFORE INSERT OR UPDATE OF trace_a, trace_b, annotator
    ON flywheel.preferences FOR EACH ROW EXECUTE FUNCTION flywheel._check_preference();

ALTER TABLE flywheel.preferences ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS own_app ON flywheel.preferences;
DROP POLICY IF EXISTS admin_all ON flywheel.preferences;
-- An application may record its users' A/B choices, for its own app only (as for feedback).
CREATE POLICY own_app ON flywheel.preferences TO flywheel_app
    USING (ARRAY[app] <@ (SELECT flywheel._apps_of(current_user)))
    WITH CHECK (ARRAY[app] <@ (SELECT flywheel._apps_of(current_user)) AND judged_by = 'human');
CREATE POLICY admin_all ON flywheel.preferences TO flywheel_admin USING (true) WITH CHECK (true);

-- Pairs are unordered: each preference as (low trace, high trace, winner seen from low).
CREATE OR REPLACE VIEW flywheel._preference_pairs AS
SELECT p.id, p.app, least(p.trace_a, p.trace_b) AS trace_low, greatest(p.trace_a, p.trace_b) AS trace_high,
       CASE WHEN p.winner = 'tie' OR p.trace_a < p.trace_b THEN p.winner
            WHEN p.winner = 'a' THEN 'b' ELSE 'a' END AS winner,
       p.judged_by, p.validator, p.validator_version, p.annotator, p.created_at,
       p.trace_a, p.winner AS winner_as_given
FROM flywheel.preferences p;

-- The human verdict on a pair: the most frequent answer among its annotators; a tie between
-- the most frequent answers counts as 'tie'.
CREATE OR REPLACE VIEW flywheel._human_pair_majority AS
WITH votes AS (
    SELECT trace_low, trace_high, winner, count(*) AS n
    FROM flywheel._preference_pairs WHERE judged_by = 'human'
    GROUP BY trace_low, trace_high, winner
), ranked AS (
    SELECT v.*, rank() OVER w AS r, sum(n) OVER w AS votes
    FROM votes v WINDOW w AS (PARTITION BY trace_low, trace_high ORDER BY n DESC
                              RANGE BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
)
SELECT trace_low, trace_high,
       CASE WHEN count(*) > 1 THEN 'tie' ELSE min(winner) END AS winner,
       max(votes)::bigint AS votes
FROM ranked WHERE r = 1
GROUP BY trace_low, trace_high;

-- Every item judged by both a person and a validator: (validator, version, human, judge, when).
-- Pass/fail validators: the latest human label of the trace for that validator against the
-- validator's result. Pairwise judges: the human majority on the pair against the judge's
-- latest verdict on it, both seen from the pair's order as the judge was shown it ('a' is
-- the judge's trace_a), since kappa over {a, b, tie} depends on which side is 'a'.
CREATE OR REPLACE VIEW flywheel._alignment_items AS
SELECT v.name AS validator, r.validator_version, h.verdict AS human, r.status AS judge, r.created_at AS judged_at
FROM (SELECT DISTINCT ON (l.trace_id, l.validator) l.trace_id, l.validator, l.verdict
      FROM flywheel.labels l WHERE l.verdict IS NOT NULL
      ORDER BY l.trace_id, l.validator, l.created_at DESC, l.id DESC) h
JOIN flywheel.validators v ON v.name = h.validator
-- From the labels (few) into the results (many): per label, index probes into both stores of
-- results, where a join with the view would unnest every packed result (see sql/105).
CROSS JOIN LATERAL (SELECT * FROM flywheel.validation_results r0
                    WHERE r0.trace_id = h.trace_id AND r0.validator_id = v.id OFFSET 0) r
WHERE r.status IN ('pass', 'fail') AND v.kind <> 'llm_pairwise'
UNION ALL
SELECT * FROM (
    -- Materialized: each side is computed once, whatever the planner guesses of their sizes.
    WITH j AS MATERIALIZED (
        SELECT DISTINCT ON (p.validator, p.validator_version, p.trace_low, p.trace_high) p.*
        FROM flywheel._preference_pairs p WHERE p.judged_by = 'llm'
        ORDER BY p.validator, p.validator_version, p.trace_low, p.trace_high, p.created_at DESC, p.id DESC
    ), m AS MATERIALIZED (
        SELECT * FROM flywheel._human_pair_majority
    )
    SELECT j.validator, j.validator_version,
           CASE WHEN m.winner = 'tie' OR j.trace_a = j.trace_low THEN m.winner
                WHEN m.winner = 'a' THEN 'b' ELSE 'a' END,
           j.winner_as_given, j.created_at
    FROM j JOIN m ON m.trace_low = j.trace_low AND m.trace_high = j.trace_high) pairwise;

-- Agreement statistics of a set of (human, judge) items. Kappa = (p_o - p_e) / (1 - p_e),
-- p_e from the two raters' marginals over every category; NULL when p_e = 1 (one category).
CREATE OR REPLACE FUNCTION flywheel._agreement(humans text[], judges text[],
    OUT n bigint, OUT agreement double precision, OUT coverage double precision,
    OUT false_failure_rate double precision, OUT kappa double precision)
LANGUAGE sql IMMUTABLE
SET search_path TO pg_catalog, pg_temp
AS $$
    WITH items AS (SELECT * FROM unnest(humans, judges) AS i(h, j)),
    stats AS (
        SELECT count(*)::bigint AS n,
               avg((h = j)::integer)::double precision AS p_o,
               (count(*) FILTER (WHERE h = 'fail' AND j = 'fail'))::double precision
                   / nullif(count(*) FILTER (WHERE h = 'fail'), 0) AS coverage,
               (count(*) FILTER (WHERE h = 'pass' AND j = 'fail'))::double precision
                   / nullif(count(*) FILTER (WHERE h = 'pass'), 0) AS false_failure_rate
        FROM items),
    chance AS (
        SELECT sum(((SELECT count(*) FROM items WHERE h = c)::double precision / s.n)
                 * ((SELECT count(*) FROM items WHERE j = c)::double precision / s.n)) AS p_e
        FROM stats s, (SELECT h AS c FROM items UNION SELECT j FROM items) cats
        WHERE s.n > 0)
    SELECT s.n, s.p_o, s.coverage, s.false_failure_rate,
           CASE WHEN c.p_e < 1 THEN (s.p_o - c.p_e) / (1 - c.p_e) END
    FROM stats s, chance c
$$;

-- How far each validator version agrees with people (pass/fail labels, or pairwise human
-- majorities): n items, agreement, coverage (share of human-failed items it failed), false
-- failure rate (share of human-passed items it failed), Cohen's kappa. Pairwise judges have
-- no coverage or false failure rate (NULL); their kappa is over {a, b, tie}.
CREATE OR REPLACE VIEW flywheel.validator_alignment AS
SELECT i.validator, i.validator_version, a.n, a.agreement, a.coverage, a.false_failure_rate, a.kappa
FROM (SELECT validator, validator_version, array_agg(human) AS humans, array_agg(judge) AS judges
      FROM flywheel._alignment_items GROUP BY validator, validator_version) i,
     flywheel._agreement(i.humans, i.judges) a;
COMMENT ON VIEW flywheel.validator_alignment IS
    'How far each validator version agrees with human labels: n, agreement, coverage, false failure rate and Cohen''s kappa.';

-- The same per week of judging.
CREATE OR REPLACE VIEW flywheel.validator_alignment_weekly AS
SELECT i.validator, i.validator_version, i.week, a.n, a.agreement, a.coverage, a.false_failure_rate, a.kappa
FROM (SELECT validator, validator_version, date_trunc('week', judged_at) AS week,
             array_agg(human) AS humans, array_agg(judge) AS judges
      FROM flywheel._alignment_items GROUP BY validator, validator_version, date_trunc('week', judged_at)) i,
     flywheel._agreement(i.humans, i.judges) a;
COMMENT ON VIEW flywheel.validator_alignment_weekly IS
    'validator_alignment per week of judging.';

-- Raises a judge_agreement alert (flywheel.alerts + NOTIFY flywheel_alerts) for every judge
-- whose agreement over its window (config agreement_window, default 7 days; at least
-- agreement_min_n items, default 20) is below its agreement_floor, at most once per window
-- while the alert stays unacknowledged. Workers call it every minute; pg_cron can too.
CREATE OR REPLACE FUNCTION flywheel.check_judge_agreement()
RETURNS TABLE (validator text, n bigint, agreement double precision, agreement_floor double precision, alert_id bigint)
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _v      record;
    _stats  record;
    _window interval;
BEGIN
    FOR _v IN SELECT * FROM flywheel.validators v WHERE v.config ? 'agreement_floor' AND v.enabled ORDER BY v.name LOOP
        _window := coalesce((_v.config ->> 'agreement_window')::interval, interval '7 days');
        SELECT a.* INTO _stats
        FROM (SELECT array_agg(i.human) AS humans, array_agg(i.judge) AS judges
              FROM flywheel._alignment_items i
              WHERE i.validator = _v.name AND i.judged_at > now() - _window) w,
             flywheel._agreement(w.humans, w.judges) a;
        CONTINUE WHEN _stats.n IS NULL OR _stats.n < coalesce((_v.config ->> 'agreement_min_n')::integer, 20)
                   OR _stats.agreement >= (_v.config ->> 'agreement_floor')::double precision;
        CONTINUE WHEN EXISTS (SELECT 1 FROM flywheel.alerts al
                              WHERE al.kind = 'judge_agreement' AND al.subject = _v.name
                                AND al.acknowledged_at IS NULL AND al.created_at > now() - _window);
        validator := _v.name;
        n := _stats.n;
        agreement := _stats.agreement;
        agreement_floor := (_v.config ->> 'agreement_floor')::double precision;
        alert_id := flywheel._raise_alert('judge_agreement', _v.name,
            format('judge %s agrees with people on %s%% of %s items over the last %s, below its floor of %s%%',
                   _v.name, round((100 * _stats.agreement)::numeric, 1), _stats.n, _window,
                   round((100 * agreement_floor)::numeric, 1)),
            jsonb_build_object('n', _stats.n, 'agreement', _stats.agreement, 'kappa', _stats.kappa,
                               'floor', agreement_floor, 'window', _window::text));
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION flywheel.check_judge_agreement() IS
    'Raises a judge_agreement alert for every judge whose agreement with people over its window is below its agreement_floor.';
