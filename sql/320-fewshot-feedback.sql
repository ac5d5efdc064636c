-- flywheel.record_feedback: one call for every kind of feedback, by trace id or external uid,
-- with a clear message for each mistake, and one INSERT (so nothing is ever half-written).

CREATE OR REPLACE FUNCTION flywheel.record_feedback(
    trace_id bigint,
    kind text,
    value double precision DEFAULT NULL,
    corrected_output text DEFAULT NULL,
    comment text DEFAULT NULL,
    source text DEFAULT 'user',
    user_id text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    _kinds constant text[] := ARRAY['thumbs', 'rating', 'correction', 'click', 'dwell', 'requery', 'continuation', 'comment'];
    _id bigint;
BEGIN
    IF kind IS NULL OR NOT kind = ANY (_kinds) THEN
        RAISE EXCEPTION 'record_feedback: unknown kind %; use one of %', coalesce(quote_literal(kind), 'NULL'),
            array_to_string(_kinds, ', ') USING ERRCODE = 'check_violation';
    ELSIF kind = 'thumbs' AND (value IS NULL OR value NOT IN (1, -1)) THEN
        RAISE EXCEPTION 'record_feedback: thumbs takes value 1 (up) or -1 (down), not %', coalesce(value::text, 'NULL')
            USING ERRCODE = 'check_violation';
    ELSIF kind = 'rating' AND (value IS NULL OR value < 1 OR value > 5) THEN
        RAISE EXCEPTION 'record_feedback: a rating is between 1 and 5, not %', coalesce(value::text, 'NULL')
            USING ERRCODE = 'check_violation';
    ELSIF kind = 'dwell' AND (value IS NULL OR value < 0) THEN
        RAISE EXCEPTION 'record_feedback: dwell takes the seconds spent (0 or more), not %', coalesce(value::text, 'NULL')
            USING ERRCODE = 'check_violation';
    ELSIF kind = 'correction' AND corrected_output IS NULL THEN
        RAISE EXCEPTION 'record_feedback: a correction needs corrected_output' USING ERRCODE = 'check_violation';
    ELSIF kind = 'comment' AND comment IS NULL THEN
        RAISE EXCEPTION 'record_feedback: a comment needs comment text' USING ERRCODE = 'check_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM flywheel.traces t WHERE t.id = record_feedback.trace_id) THEN
        RAISE EXCEPTION 'record_feedback: trace % does not exist', coalesce(trace_id::text, 'NULL')
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'give the id (or uid) of a trace that was inserted and is visible to you';
    END IF;
    INSERT INTO flywheel.feedback AS f (trace_id, app, kind, value, corrected_output, comment, source, user_id)
    VALUES (trace_id, '', kind, value, corrected_output, comment, coalesce(source, 'user'), user_id)
    RETURNING f.id INTO _id;
    RETURN _id;
END
$$;
COMMENT ON FUNCTION flywheel.record_feedback(bigint, text, double precision, text, text, text, text) IS
    'Records feedback on a trace by id: thumbs, rating, correction or comment, checked and written in one INSERT.';

CREATE OR REPLACE FUNCTION flywheel.record_feedback(
    trace_uid uuid,
    kind text,
    value double precision DEFAULT NULL,
    corrected_output text DEFAULT NULL,
    comment text DEFAULT NULL,
    source text DEFAULT 'user',
    user_id text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _trace_id bigint;
BEGIN
    SELECT t.id INTO _trace_id FROM flywheel.traces t WHERE t.uid = trace_uid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'record_feedback: no trace has uid %', coalesce(trace_uid::text, 'NULL')
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'give the id (or uid) of a trace that was inserted and is visible to you';
    END IF;
    RETURN flywheel.record_feedback(_trace_id, kind, value, corrected_output, comment, source, user_id);
END
$$;
COMMENT ON FUNCTION flywheel.record_feedback(uuid, text, double precision, text, text, text, text) IS
    'Records feedback on a trace by its external uid: thumbs, rating, correction or comment.';

-- A quoted literal ('42' or 'a0ee...') is text: read it as an id when it is all digits, else as a uid.
CREATE OR REPLACE FUNCTION flywheel.record_feedback(
    trace text,
    kind text,
    value double precision DEFAULT NULL,
    corrected_output text DEFAULT NULL,
    comment text DEFAULT NULL,
    source text DEFAULT 'user',
    user_id text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    IF trace ~ '^\s*[0-9]{1,18}\s*$' THEN
        RETURN flywheel.record_feedback(trace::bigint, kind, value, corrected_output, comment, source, user_id);
    ELSIF trace ~* '^\s*\{?[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}\}?\s*$' THEN
        RETURN flywheel.record_feedback(trace::uuid, kind, value, corrected_output, comment, source, user_id);
    END IF;
    RAISE EXCEPTION 'record_feedback: % is neither a trace id nor a trace uid', coalesce(quote_literal(trace), 'NULL')
        USING ERRCODE = 'invalid_text_representation';
END
$$;
COMMENT ON FUNCTION flywheel.record_feedback(text, text, double precision, text, text, text, text) IS
    'Records feedback on a trace given as text: an id when all digits, else a uid.';

-- The catalog's comments of this area's tables (created in migrations/0001): `\dt+ flywheel.*` shows them.
COMMENT ON TABLE flywheel.feedback IS
    'Feedback on traces from users and people: thumbs, ratings, corrections and comments (written by record_feedback).';
