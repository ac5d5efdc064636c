"""flywheel.drift(): compares a feature of the traces between two time ranges with the two-sample
KS test and the population stability index (plpython/metrics_stats.py)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

# KS is exact up to 10,000 values a sample, at O(n*m); a random sample of this size per range
# keeps a check under a second while detecting shifts of a few percent.
SAMPLE = 5000
PROJECTIONS = 4  # embeddings are compared along this many fixed random directions
_SEED = 20240611

_COLUMNS = {
    "latency": "t.latency_ms",
    "output_length": "length(t.output)::double precision",
    "input_length": "length(t.input)::double precision",
    "tokens_in": "t.tokens_in::double precision",
    "tokens_out": "t.tokens_out::double precision",
    "cost": "t.cost_usd",
}
_RANGE = ("t.created_at >= coalesce(lower($1::tstzrange), '-infinity')"
          " AND t.created_at < coalesce(upper($1::tstzrange), 'infinity')")


def _query(plpy: Any, feature: str) -> str:
    """The sampling query of a feature. Only fixed expressions and quoted names go into the text
    (hence the noqa: S608); the time range is a parameter."""
    if feature in _COLUMNS:
        expr = _COLUMNS[feature]
        return (f"SELECT {expr} AS x FROM flywheel.traces t WHERE {_RANGE} AND NOT t.shadow"  # noqa: S608
                f" AND {expr} IS NOT NULL"
                f" ORDER BY random() LIMIT {SAMPLE}")
    if feature.startswith("score:"):
        name = plpy.quote_literal(feature.split(":", 1)[1])
        return ("SELECT r.score AS x FROM flywheel.validation_results r"  # noqa: S608
                " JOIN flywheel.validators v ON v.id = r.validator_id JOIN flywheel.traces t ON t.id = r.trace_id"
                f" WHERE v.name = {name} AND r.score IS NOT NULL AND NOT t.shadow AND {_RANGE}"
                f" ORDER BY random() LIMIT {SAMPLE}")
    if feature == "embedding":
        # The input embeddings of the active embedder (flywheel.embeddings, the semantic index).
        return ("SELECT e.embedding::text AS x FROM flywheel.embeddings e"  # noqa: S608
                " JOIN flywheel.embedders m ON m.name = e.embedder AND m.state = 'active'"
                " JOIN flywheel.traces t ON t.id = e.trace_id"
                f" WHERE {_RANGE} AND NOT t.shadow ORDER BY random() LIMIT {SAMPLE}")
    plpy.error(f"drift: unknown feature {feature!r}; use one of {', '.join(sorted(_COLUMNS))}, "
               "score:<validator> or embedding")
    raise AssertionError


def _fetch(plpy: Any, sql: str, period: str) -> list[Any]:
    plan = plpy.prepare(sql, ["text"])
    return [r["x"] for r in plpy.execute(plan, [period])]


def projections(vectors: list[str], count: int = PROJECTIONS) -> np.ndarray:
    """Each vector projected on `count` fixed unit directions (the same for every call)."""
    matrix = np.array([json.loads(v) for v in vectors], dtype=float)
    directions = np.random.default_rng(_SEED).normal(size=(matrix.shape[1], count))
    directions /= np.linalg.norm(directions, axis=0)
    return matrix @ directions


def compare(name: str, reference: Any, current: Any) -> dict[str, Any]:
    import metrics_stats

    row: dict[str, Any] = {"feature": name, "reference_n": len(reference), "current_n": len(current),
                           "ks_statistic": None, "p_value": None, "psi": None}
    if len(reference) and len(current):
        d, p = metrics_stats.ks_2samp(reference, current)
        row.update(ks_statistic=d, p_value=p, psi=metrics_stats.psi(reference, current))
    return row


def drift(plpy: Any, feature: str, reference: str, current: str) -> list[dict[str, Any]]:
    sql = _query(plpy, feature)
    ref, cur = _fetch(plpy, sql, reference), _fetch(plpy, sql, current)
    if feature != "embedding":
        return [compare(feature, ref, cur)]
    if not ref or not cur:
        return [compare(f"embedding:{i}", [], []) for i in range(PROJECTIONS)]
    ref_p, cur_p = projections(ref), projections(cur)
    return [compare(f"embedding:{i}", ref_p[:, i], cur_p[:, i]) for i in range(PROJECTIONS)]
