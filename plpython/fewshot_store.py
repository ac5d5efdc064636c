"""Stores embeddings from inside the database: the statement-level trigger on flywheel.traces
(flywheel._embed_new_traces) and the background re-embed both come here, one call per statement
or batch."""

from __future__ import annotations

from typing import Any

_plans: dict[str, Any] = {}  # prepared once per session


def _plan(plpy: Any, name: str, query: str, types: list[str]) -> Any:
    if name not in _plans:
        _plans[name] = plpy.prepare(query, types)
    return _plans[name]


def _record_failure(plpy: Any, embedder: str, trace_ids: list[int], error: str) -> None:
    plan = _plan(plpy, "failed", """
        INSERT INTO flywheel.embedding_backlog AS b (trace_id, embedder, reason, last_error)
        SELECT i, $2, 'failed', $3 FROM unnest($1::bigint[]) i
        ON CONFLICT ON CONSTRAINT embedding_backlog_pkey
        DO UPDATE SET attempts = b.attempts + 1, last_error = EXCLUDED.last_error""", ["bigint[]", "text", "text"])
    plan_args = [trace_ids, embedder, error[:2000]]
    plpy.execute(plan, plan_args)


def embed_traces(plpy: Any, embedder: str, trace_ids: list[int], apps: list[str], inputs: list[str | None]) -> int:
    """Embeds with the built-in embedder and stores the vectors, in a subtransaction; whatever
    fails (the embedder, or storing) is recorded in the backlog. Returns how many were stored."""
    from fewshot_embedder import is_cancel, literals_and_keys

    if not trace_ids:
        return 0
    try:
        present, literals, keys = literals_and_keys(embedder, inputs)
        if not present:
            return 0
        store = _plan(plpy, "store", """
            INSERT INTO flywheel.embeddings AS e (trace_id, embedder, app, embedding, input_key)
            SELECT t, $2, a, v::@extschema:vector@.vector, k
            FROM unnest($1::bigint[], $3::text[], $4::text[], $5::uuid[]) AS u(t, a, v, k)
            ON CONFLICT ON CONSTRAINT embeddings_pkey
            DO UPDATE SET embedding = EXCLUDED.embedding, input_key = EXCLUDED.input_key, created_at = now()""",
            ["bigint[]", "text", "text[]", "text[]", "uuid[]"])
        with plpy.subtransaction():
            plpy.execute(store, [[trace_ids[i] for i in present], embedder, [apps[i] for i in present], literals, keys])
        return len(present)
    except Exception as e:  # never into the application's INSERT (the backlog retries it), but a cancel
        if is_cancel(e):
            raise
        try:
            with plpy.subtransaction():
                _record_failure(plpy, embedder, list(trace_ids), f"{type(e).__name__}: {e}")
        except Exception as again:
            if is_cancel(again):
                raise
            plpy.warning(f"dbflywheel: could not embed or record {len(trace_ids)} trace(s): {again}")
        return 0
