-- OTLP ingestion (issue 14): spans whose parent arrived later are linked to it.

-- Sets parent_id of the caller's traces whose OTel parent span has arrived, for the OTel traces
-- named. Applications may not UPDATE traces, so this runs as the owner, for `member`'s apps only
-- (_apps_of refuses a member the session may not act as).
CREATE OR REPLACE FUNCTION flywheel._link_otel_parents(otel_trace_ids text[], member name) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _n integer;
BEGIN
    UPDATE flywheel.traces t SET parent_id = p.trace_row
    FROM flywheel.otel_spans c
    JOIN flywheel.otel_spans p ON p.app = c.app AND p.otel_trace_id = c.otel_trace_id AND p.span_id = c.parent_span_id
    WHERE c.app = ANY (flywheel._apps_of(member)) AND c.otel_trace_id = ANY (otel_trace_ids)
      AND c.parent_span_id IS NOT NULL AND t.id = c.trace_row AND t.app = c.app AND t.parent_id IS NULL;
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
