-- The insert path's bookkeeping that replaced foreign keys (migrations/0500-insert-path.sql).

-- What the foreign keys' ON DELETE CASCADE from embeddings and the backlog to embedders did.
CREATE OR REPLACE FUNCTION flywheel._delete_embedder_embeddings() RETURNS trigger
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM flywheel.embeddings e USING old_embedders o WHERE e.embedder = o.name;
    DELETE FROM flywheel.embedding_backlog b USING old_embedders o WHERE b.embedder = o.name;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER embedders_delete_embeddings AFTER DELETE ON flywheel.embedders
    REFERENCING OLD TABLE AS old_embedders
    FOR EACH STATEMENT EXECUTE FUNCTION flywheel._delete_embedder_embeddings();
