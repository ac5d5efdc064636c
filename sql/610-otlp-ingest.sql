-- OTLP ingestion (issue 14): spans whose parent arrived later are linked to it.

-- Sets parent_id of the caller's traces whose OTel parent span has arrived, for the OTel traces
-- named. Applications may not UPDATE traces, so this runs as the owner, for `member`'s apps only
-- (_apps_of refuses a member the session may not act as).
CREATE OR REPLACE FUNCTION flywheel._link_otel_parents(otel_trace_ids text[], member name) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _apps     text[] := flywheel._apps_of(member);
    _children bigint[];
    _parents  bigint[];
    _n        integer;
BEGIN
    -- the pairs first (a few rows by index), so the UPDATE never scans the partitioned traces
    SELECT array_agg(c.trace_row), array_agg(p.trace_row) INTO _children, _parents
    FROM flywheel.otel_spans c
    JOIN flywheel.otel_spans p ON p.app = c.app AND p.otel_trace_id = c.otel_trace_id AND p.span_id = c.parent_span_id
    WHERE c.app = ANY (_apps) AND c.otel_trace_id = ANY (otel_trace_ids) AND c.parent_span_id IS NOT NULL;
    IF _children IS NULL THEN
        RETURN 0;
    END IF;
    -- t.app: an app could write any trace_row into its own otel_spans rows; only its traces change
    UPDATE flywheel.traces t SET parent_id = u.parent
    FROM unnest(_children, _parents) AS u(child, parent)
    WHERE t.id = u.child AND t.app = ANY (_apps) AND t.parent_id IS NULL;
    GET DIAGNOSTICS _n = ROW_COUNT;
    RETURN _n;
END
$$;

CREATE OR REPLACE FUNCTION flywheel.link_otel_parents(otel_trace_ids text[]) RETURNS integer
LANGUAGE sql
SET search_path TO pg_catalog, pg_temp
AS $$ SELECT flywheel._link_otel_parents(otel_trace_ids, current_user) $$;
COMMENT ON FUNCTION flywheel.link_otel_parents(text[]) IS
    'Links the caller''s OTel spans to parents that arrived after them (dbflywheel serve calls it after each batch)';
