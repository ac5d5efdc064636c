-- One way to raise an alert: a row the DBA can query and a NOTIFY listeners can wait on
-- (payload {"id": <alerts.id>}).
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
    -- Any role may LISTEN on any channel: the payload is the alert's id only; listeners read the
    -- alert itself with their own rights (flywheel.alerts is the admin's).
    PERFORM pg_notify('flywheel_alerts', json_build_object('id', _id)::text);
    RETURN _id;
END
$$;

-- The catalog's comments of this area's tables (created in migrations/0002): `\dt+ flywheel.*` shows them.
COMMENT ON TABLE flywheel.alerts IS
    'Alerts from every part of the flywheel (judge agreement, drift, satisfaction trend); each is also NOTIFYed on flywheel_alerts.';
