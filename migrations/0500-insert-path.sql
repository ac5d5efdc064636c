-- A cheaper insert path (issue 3's performance targets): every trace writes about six
-- validation_results rows, so each index on that table is paid six times per trace.

-- Nothing looks a result up by its surrogate id (readers go by trace, or by validator and
-- time); the column stays, filled from its sequence, as a stable tie-breaker, but its unique
-- index is no longer maintained on every insert (~0.7 ms of CPU per 100 traces).
ALTER TABLE flywheel.validation_results DROP CONSTRAINT validation_results_pkey;

-- Every trace's embedding named its embedder through a foreign key: a KEY SHARE lock on the
-- one active embedders row per embedding, so concurrent inserting transactions shared that
-- row through a MultiXact and embed_backlog()'s FOR UPDATE of it stalled every insert. The
-- embedder comes from the registry the trigger has just read; deleting an embedder deletes its
-- embeddings as before (sql/500-insert-path.sql, trigger embedders_delete_embeddings).
ALTER TABLE flywheel.embeddings DROP CONSTRAINT embeddings_embedder_fkey;

-- The btree on (validator_id, created_at) cost ~1.4 ms per 100 traces (six entries each, eight
-- insertion points). What it served: a validator's results over a time window (drift,
-- sample_for_labeling) and an LLM judge's results (judges' progress). Results arrive in
-- created_at order, so a BRIN index finds a window for next to nothing on insert (reading every
-- validator's rows in it, about eight times the rows of one); the judges' rows, written off the
-- insert path, keep a btree of their own.
DROP INDEX flywheel.validation_results_validator_created_at;
CREATE INDEX validation_results_created_at ON flywheel.validation_results USING brin (created_at);
CREATE INDEX validation_results_judged_validator_created_at
    ON flywheel.validation_results (validator_id, created_at) WHERE judged_by <> 'code';

-- The same for the backlog, which an embedder that runs in a worker fills on every insert.
ALTER TABLE flywheel.embedding_backlog DROP CONSTRAINT embedding_backlog_embedder_fkey;
