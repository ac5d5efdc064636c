-- One way to raise an alert: a row the DBA can query and a NOTIFY listeners can wait on.
CREATE OR REPLACE FUNCTION flywheel._raise_alert(kind text, subject text, message text, details jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    _id bigint;
BEGIN
    INSERT INTO flywheel.alerts (kind, subject, message, details)
    VALUES (_raise_alert.kind, _raise_alert.subject, _raise_alert.message, coalesce(_raise_alert.details, '{}'))
    RETURNING id INTO _id;
    PERFORM pg_notify('flywheel_alerts', json_build_object('id', _id, 'kind', kind, 'subject', subject)::text);
    RETURN _id;
END
$$;
