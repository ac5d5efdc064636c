-- The default validators of a fresh install: sync checks that make sense for any trace.
-- An admin disables any of them with flywheel.set_validator_enabled(name, false); a later
-- install never re-enables or re-creates them (this runs once).
WITH defaults (name, kind, config, applies_to) AS (VALUES
    ('length', 'length', '{"min_chars": 1, "max_chars": 20000}'::jsonb, '{}'::jsonb),
    ('stock_phrases', 'regex',
     '{"pattern": "\\b(as an ai language model|as a large language model|i hope this helps|delve|delving|tapestry|it''s important to note that)\\b", "case_insensitive": true, "field": "output", "label": "stock_phrase"}',
     '{}'),
    ('pii', 'pii', '{"fields": ["input", "output"]}', '{}'),
    ('injection', 'injection', '{"threshold": 0.5}', '{}'),
    ('refusal', 'refusal', '{}', '{}'),
    ('anomaly', 'anomaly', '{"metrics": ["latency_ms", "cost_usd", "tokens_out"], "threshold": 4, "min_samples": 30}', '{}'),
    ('json_output', 'json', '{}', '{"node_type": "tool"}'),
    ('classifier_label', 'classifier', '{}', '{"node_type": "classifier"}')
), made AS (
    INSERT INTO flywheel.validators (name, kind, config, applies_to)
    SELECT name, kind, config, applies_to FROM defaults
    ON CONFLICT (name) DO NOTHING
    RETURNING id, version, kind, config, mode, applies_to, sample_rate
)
INSERT INTO flywheel.validator_versions (validator_id, version, kind, config, mode, applies_to, sample_rate)
SELECT id, version, kind, config, mode, applies_to, sample_rate FROM made;
