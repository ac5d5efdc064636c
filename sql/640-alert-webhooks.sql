-- Alerts reach people: Slack-compatible webhooks configured in SQL. Every new alert gets one
-- pending delivery per enabled webhook; a sender (`dbflywheel send-alerts`, src/dbflywheel/
-- webhooks.py) posts them and records the outcome, retrying with backoff.

-- Adds or changes a webhook (Slack's incoming-webhook URL, or anything taking {"text": ...}).
CREATE OR REPLACE FUNCTION flywheel.set_alert_webhook(name text, url text, enabled boolean DEFAULT true) RETURNS void
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'set_alert_webhook: % is not a webhook name', coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'lower-case letters, digits and _, starting with a letter';
    END IF;
    IF url IS NULL OR url !~ '^https?://[^\s/]+' THEN
        RAISE EXCEPTION 'set_alert_webhook: the URL must start with http:// or https://, not %', coalesce(quote_literal(url), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'paste the incoming-webhook URL Slack (or another tool) gave you';
    END IF;
    INSERT INTO flywheel.alert_webhooks AS w (name, url, enabled) VALUES (name, url, enabled)
    ON CONFLICT ON CONSTRAINT alert_webhooks_pkey DO UPDATE SET url = EXCLUDED.url, enabled = EXCLUDED.enabled;
END
$$;

-- A new alert is owed to every enabled webhook.
CREATE OR REPLACE FUNCTION flywheel._queue_alert_deliveries() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO flywheel.alert_deliveries (alert_id, webhook)
    SELECT n.id, w.name FROM new_alerts n CROSS JOIN flywheel.alert_webhooks w WHERE w.enabled
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER alerts_reach_webhooks AFTER INSERT ON flywheel.alerts
    REFERENCING NEW TABLE AS new_alerts FOR EACH STATEMENT EXECUTE FUNCTION flywheel._queue_alert_deliveries();

-- Up to n deliveries that are due, locked for the caller's transaction (several senders never
-- post the same one), with what to post.
CREATE OR REPLACE FUNCTION flywheel.due_alert_deliveries(n integer DEFAULT 50)
RETURNS TABLE (alert_id bigint, webhook text, url text, attempts integer, kind text, subject text, message text,
               created_at timestamptz)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT d.alert_id, d.webhook, w.url, d.attempts, a.kind, a.subject, a.message, a.created_at
    FROM flywheel.alert_deliveries d
    JOIN flywheel.alert_webhooks w ON w.name = d.webhook
    JOIN flywheel.alerts a ON a.id = d.alert_id
    WHERE d.status = 'pending' AND d.next_try <= now()
    ORDER BY d.next_try
    LIMIT greatest(n, 1)
    FOR UPDATE OF d SKIP LOCKED
$$;

-- Records one attempt: sent, or retried after 1, 2, 4, ... minutes, failed after `max_attempts`.
CREATE OR REPLACE FUNCTION flywheel.record_alert_delivery(alert_id bigint, webhook text, ok boolean,
                                                          error text DEFAULT NULL, max_attempts integer DEFAULT 8)
RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
    UPDATE flywheel.alert_deliveries d
    SET attempts = d.attempts + 1,
        status = CASE WHEN ok THEN 'sent' WHEN d.attempts + 1 >= max_attempts THEN 'failed' ELSE 'pending' END,
        sent_at = CASE WHEN ok THEN now() END,
        last_error = CASE WHEN ok THEN NULL ELSE left(error, 500) END,
        next_try = now() + make_interval(mins => power(2, least(d.attempts, 10))::integer)
    WHERE d.alert_id = record_alert_delivery.alert_id AND d.webhook = record_alert_delivery.webhook
    RETURNING d.status
$$;

COMMENT ON TABLE flywheel.alert_webhooks IS 'Where alerts are posted: Slack-compatible incoming webhooks, by name.';
COMMENT ON TABLE flywheel.alert_deliveries IS 'One row per (alert, webhook): pending, sent or failed, with attempts and the last error.';
COMMENT ON FUNCTION flywheel.set_alert_webhook(text, text, boolean) IS 'Adds or changes a webhook that every new alert is posted to.';
COMMENT ON FUNCTION flywheel.due_alert_deliveries(integer) IS 'Alert deliveries that are due, locked for the caller (SKIP LOCKED), with the text to post.';
COMMENT ON FUNCTION flywheel.record_alert_delivery(bigint, text, boolean, text, integer) IS 'Records one delivery attempt: sent, retried with backoff, or failed.';
