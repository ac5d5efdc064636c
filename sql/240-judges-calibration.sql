-- Judges that learn from their reviewers: flywheel.calibrate(validator) fits a calibration of a
-- pairwise judge from the people's majority votes (plpython/judges_calibration.py) and activates
-- it only when it beats the raw judge and the active calibration on the newest labels;
-- flywheel.calibrated_verdicts shows every LLM verdict raw and calibrated.

CREATE OR REPLACE FUNCTION flywheel.calibrate(validator text,
    OUT version integer, OUT n_labels integer, OUT n_holdout integer, OUT kappa double precision,
    OUT raw_kappa double precision, OUT active_kappa double precision, OUT activated boolean)
LANGUAGE plpython3u VOLATILE
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: judges_calibration.calibrate $python$;
COMMENT ON FUNCTION flywheel.calibrate(text) IS 'Fit a new calibration version of a pairwise LLM judge from human votes; activate it only if it beats the raw judge and the active one on held-out labels';

CREATE OR REPLACE FUNCTION flywheel._calibrated_verdicts()
RETURNS TABLE (validator text, trace_id bigint, trace_b bigint, raw_verdict text, calibrated_verdict text,
               confidence double precision, abstained boolean, calibration_version integer)
LANGUAGE plpython3u STABLE
SET search_path TO pg_catalog, pg_temp
AS $python$ # plpython: judges_calibration.calibrated $python$;

CREATE OR REPLACE VIEW flywheel.calibrated_verdicts AS
SELECT * FROM flywheel._calibrated_verdicts();
COMMENT ON VIEW flywheel.calibrated_verdicts IS 'Every pairwise LLM verdict, raw and under its judge''s active calibration, with confidence';

-- Raw and calibrated agreement side by side, on held-out labels only: per judge, its active
-- calibration's kappa on the newest labels it was not fitted on, next to the raw judge's there.
CREATE OR REPLACE VIEW flywheel.calibrated_alignment AS
SELECT c.validator, c.version AS calibration_version, c.n_labels, c.n_holdout, c.raw_kappa, c.kappa AS calibrated_kappa,
       c.created_at
FROM flywheel.calibrations c WHERE c.active;
COMMENT ON VIEW flywheel.calibrated_alignment IS 'Per judge: raw and calibrated kappa on the held-out labels of its active calibration';
