"""Writes a batch of span rows as the key's app role, in one transaction (all of it or none)."""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection

from dbflywheel.server.otlp import BadRequest, Row

# The columns of a span's row, as parallel arrays (one INSERT for many rows).
_INSERT = """
INSERT INTO flywheel.traces (uid, run_id, parent_id, node, node_type, user_id, session_id, input, output,
                             model, latency_ms, tokens_in, tokens_out, metadata)
SELECT u.uid, u.run_id, u.parent_id, u.node, u.node_type, u.user_id, u.session_id, u.input, u.output,
       u.model, u.latency_ms, u.tokens_in, u.tokens_out, u.metadata::jsonb
FROM unnest(%s::uuid[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
            %s::text[], %s::text[], %s::float8[], %s::int4[], %s::int4[], %s::text[])
     AS u(uid, run_id, parent_id, node, node_type, user_id, session_id, input, output,
          model, latency_ms, tokens_in, tokens_out, metadata)
RETURNING id, uid::text
"""
_NCOLUMNS = 14


def _clean(v: Any) -> Any:
    """PostgreSQL text and jsonb hold no NUL character: it is dropped."""
    if isinstance(v, str):
        try:
            v.encode()
        except UnicodeEncodeError:  # OTLP/JSON may carry a lone surrogate (\ud800): not text
            raise BadRequest("a span's text is not valid Unicode (a lone surrogate)") from None
        return v.replace("\x00", "")
    if isinstance(v, dict):
        return {_clean(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


async def write_spans(conn: AsyncConnection, rows: list[Row]) -> int:
    """Inserts the spans not seen before; returns how many rows it wrote. Parents go in before their
    children, so parent_id links spans of this batch and of earlier ones."""
    by_key: dict[tuple[str, str], Row] = {}
    for r in rows:
        by_key.setdefault((r.otel_trace_id, r.span_id), r)  # a span twice in one batch counts once
    wanted = set(by_key) | {(r.otel_trace_id, r.parent_span_id) for r in rows if r.parent_span_id}
    cur = await conn.execute(
        "SELECT s.otel_trace_id, s.span_id, s.trace_row FROM flywheel.otel_spans s"
        " JOIN unnest(%s::text[], %s::text[]) AS u(t, s2) ON s.otel_trace_id = u.t AND s.span_id = u.s2",
        ([k[0] for k in wanted], [k[1] for k in wanted]))
    known: dict[tuple[str, str], int] = {(t, s): row for t, s, row in await cur.fetchall()}
    todo = {k: r for k, r in by_key.items() if k not in known}
    written = 0
    while todo:
        # one INSERT per generation: the spans whose parent is not waiting to be written
        ready = [r for r in todo.values() if not r.parent_span_id or (r.otel_trace_id, r.parent_span_id) not in todo]
        cols: list[list[Any]] = [[] for _ in range(_NCOLUMNS)]
        for r in ready:
            parent = known.get((r.otel_trace_id, r.parent_span_id)) if r.parent_span_id else None
            values = (r.uid, r.otel_trace_id, parent, r.node, r.node_type, r.user_id, r.session_id, r.input,
                      r.output, r.model, r.latency_ms, r.tokens_in, r.tokens_out, json.dumps(_clean(r.metadata)))
            for col, v in zip(cols, values, strict=True):
                col.append(_clean(v))
        cur = await conn.execute(_INSERT, cols)
        ids = {uid: i for i, uid in await cur.fetchall()}
        for r in ready:
            known[(r.otel_trace_id, r.span_id)] = ids[r.uid]
            del todo[(r.otel_trace_id, r.span_id)]
        await conn.execute(
            "INSERT INTO flywheel.otel_spans (otel_trace_id, span_id, trace_row, parent_span_id)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[])",
            ([r.otel_trace_id for r in ready], [r.span_id for r in ready], [ids[r.uid] for r in ready],
             [r.parent_span_id for r in ready]))
        written += len(ready)
    if written:
        # children that came before their parent (an exporter sends each span as it ends)
        await conn.execute("SELECT flywheel.link_otel_parents(%s::text[])",
                           (sorted({r.otel_trace_id for r in by_key.values()}),))
    return written


async def trace_of_span(conn: AsyncConnection, otel_trace_id: str, span_id: str | None) -> int | None:
    """The trace row of an OTel span (the trace's first span when no span is named), if visible."""
    if span_id:
        cur = await conn.execute("SELECT trace_row FROM flywheel.otel_spans WHERE otel_trace_id = %s AND span_id = %s",
                                 (otel_trace_id.lower(), span_id.lower()))
    else:
        cur = await conn.execute("SELECT min(trace_row) FROM flywheel.otel_spans WHERE otel_trace_id = %s",
                                 (otel_trace_id.lower(),))
    row = await cur.fetchone()
    return row[0] if row else None
