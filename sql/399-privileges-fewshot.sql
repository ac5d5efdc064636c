-- Privileges of the semantic index (sql/900-privileges.sql then re-grants admin everything).
-- Applications read examples only through few_shot and cache_lookup, which run as their owner
-- and show the caller's own apps; they record feedback with record_feedback (as themselves,
-- under row-level security). Labelling, golden sets and embedders are the admin's.
GRANT EXECUTE ON FUNCTION
    flywheel.few_shot(@extschema:vector@.vector, integer, text, text, interval),
    flywheel.few_shot(text, integer, text, text, interval),
    flywheel._few_shot(@extschema:vector@.vector, integer, text, text, interval, name),
    flywheel._embed_query(text),
    flywheel._active_embedder(),  -- the application embeds its query with the same model when it runs in a worker
    flywheel.cache_lookup(text, real),
    flywheel._cache_lookup(text, real, name),
    flywheel.record_feedback(bigint, text, double precision, text, text, text, text),
    flywheel.record_feedback(uuid, text, double precision, text, text, text, text),
    flywheel.record_feedback(text, text, double precision, text, text, text, text)
TO flywheel_app;
