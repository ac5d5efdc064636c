-- Drift: a feature of the traces in one time range against another (KS and PSI), and the
-- scheduled check that raises an alert when it crosses its threshold.

-- Features: latency, output_length, input_length, tokens_in, tokens_out, cost,
-- score:<validator>, embedding (one row per fixed projection). SECURITY DEFINER: it returns
-- only statistics, so readers may call it without reading the traces.
CREATE OR REPLACE FUNCTION flywheel.drift(feature text, reference tstzrange, current tstzrange)
RETURNS TABLE (feature text, reference_n integer, current_n integer,
               ks_statistic double precision, p_value double precision, psi double precision)
LANGUAGE plpython3u STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: metrics_drift.drift $python$;
COMMENT ON FUNCTION flywheel.drift(text, tstzrange, tstzrange) IS
    'Drift of one feature between two time ranges: the KS statistic with its p-value, and the PSI.';

-- Compares the last `window` with the `reference_window` before it for every feature with data
-- (and every scored validator); raises a 'drift' alert (and NOTIFY) where PSI reaches
-- psi_threshold, or the KS test is significant (p < p_threshold) with a distance of at least
-- ks_threshold. Returns the alerts raised.
CREATE OR REPLACE FUNCTION flywheel.check_drift(
    "window" interval DEFAULT '1 day', reference_window interval DEFAULT '7 days',
    psi_threshold double precision DEFAULT 0.25, p_threshold double precision DEFAULT 0.001,
    ks_threshold double precision DEFAULT 0.1
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _now      timestamptz := now();
    _current  tstzrange := tstzrange(_now - "window", _now);
    _ref      tstzrange := tstzrange(_now - "window" - reference_window, _now - "window");
    _features text[] := ARRAY['latency', 'output_length', 'tokens_out', 'cost'];
    _feature  text;
    _d        record;
    _raised   integer := 0;
BEGIN
    _features := _features || ARRAY(
        SELECT DISTINCT 'score:' || v.name FROM flywheel.validators v
        WHERE EXISTS (SELECT 1 FROM flywheel.validation_results r
                      WHERE r.validator_id = v.id AND r.score IS NOT NULL AND r.created_at >= lower(_ref)));
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
               JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
               WHERE c.relnamespace = 'flywheel'::regnamespace AND t.typname = 'vector'
                 AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute x WHERE x.attrelid = c.oid AND x.attname = 'trace_id')) THEN
        _features := array_append(_features, 'embedding');
    END IF;
    FOREACH _feature IN ARRAY _features LOOP
        FOR _d IN SELECT * FROM flywheel.drift(_feature, _ref, _current) LOOP
            CONTINUE WHEN _d.reference_n < 30 OR _d.current_n < 30;  -- too little to say anything
            CONTINUE WHEN NOT (_d.psi >= psi_threshold OR (_d.p_value < p_threshold AND _d.ks_statistic >= ks_threshold));
            PERFORM flywheel._raise_alert('drift', _d.feature,
                format('%s drifted: PSI %s, KS %s (p = %s) over the last %s against the %s before',
                       _d.feature, round(_d.psi::numeric, 3), round(_d.ks_statistic::numeric, 3),
                       to_char(_d.p_value, '9.99EEEE'), "window", reference_window),
                jsonb_build_object('psi', _d.psi, 'ks_statistic', _d.ks_statistic, 'p_value', _d.p_value,
                                   'reference', _ref::text, 'current', _current::text,
                                   'reference_n', _d.reference_n, 'current_n', _d.current_n));
            _raised := _raised + 1;
        END LOOP;
    END LOOP;
    RETURN _raised;
END
$$;
COMMENT ON FUNCTION flywheel.check_drift(interval, interval, double precision, double precision, double precision) IS
    'Raises a drift alert for every feature whose last window drifted from the window before it (PSI or KS).';

SELECT flywheel._schedule('flywheel_check_drift', '7 * * * *');
SELECT flywheel._schedule('flywheel_check_satisfaction_trend', '13 6 * * *');
