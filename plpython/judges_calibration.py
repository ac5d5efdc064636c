"""Calibration of pairwise LLM judges from people's votes: a regularised multinomial logistic
regression (Newton) over the judge's raw verdict and cheap features of the two traces, with
per-class offsets chosen for Cohen's kappa on time-ordered out-of-fold predictions (a plain
argmax collapses towards the majority class)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

CLASSES = ("a", "b", "tie")
# Fewer labelled pairs than this: no calibration, the raw verdict stands.
MIN_LABELS = 30
# The newest share of labels is held out to decide whether a new calibration beats the raw judge
# and the active calibration.
HOLDOUT = 0.25
L2 = 1.0
MAX_NEWTON = 50
OFFSET_GRID = [x / 4 for x in range(-12, 13)]

# The judge's latest verdict per pair, in the judge's orientation (a = its trace_a), with the
# people's majority seen from the same side and when the pair's last human vote came.
ITEMS = """
WITH j AS (
    SELECT DISTINCT ON (p.trace_low, p.trace_high) p.*
    FROM flywheel._preference_pairs p WHERE p.judged_by = 'llm' AND p.validator = $1
    ORDER BY p.trace_low, p.trace_high, p.created_at DESC, p.id DESC
), h AS (
    SELECT trace_low, trace_high, max(created_at) AS labelled_at
    FROM flywheel._preference_pairs WHERE judged_by = 'human' GROUP BY trace_low, trace_high
), others AS (
    -- Every other LLM judge's latest verdict on the same pair, seen from this judge's trace_a.
    SELECT j.trace_low, j.trace_high,
           avg((w = 'a')::int)::float8 AS other_a, avg((w = 'b')::int)::float8 AS other_b,
           avg((w = 'tie')::int)::float8 AS other_tie
    FROM j JOIN (
        SELECT DISTINCT ON (o.validator, o.trace_low, o.trace_high) o.trace_low, o.trace_high, o.trace_a,
               o.winner_as_given
        FROM flywheel._preference_pairs o WHERE o.judged_by = 'llm' AND o.validator <> $1
        ORDER BY o.validator, o.trace_low, o.trace_high, o.created_at DESC, o.id DESC
    ) o ON o.trace_low = j.trace_low AND o.trace_high = j.trace_high
    CROSS JOIN LATERAL (SELECT CASE WHEN o.winner_as_given = 'tie' OR o.trace_a = j.trace_a THEN o.winner_as_given
                                    WHEN o.winner_as_given = 'a' THEN 'b' ELSE 'a' END AS w) oriented
    GROUP BY j.trace_low, j.trace_high
)
SELECT j.trace_a, CASE WHEN j.trace_a = j.trace_low THEN j.trace_high ELSE j.trace_low END AS trace_b,
       j.winner_as_given AS raw,
       CASE WHEN m.winner IS NULL OR m.winner = 'tie' OR j.trace_a = j.trace_low THEN m.winner
            WHEN m.winner = 'a' THEN 'b' ELSE 'a' END AS human,
       h.labelled_at,
       length(coalesce(ta.output, '')) AS len_a, length(coalesce(tb.output, '')) AS len_b,
       ta.latency_ms AS latency_a, tb.latency_ms AS latency_b,
       coalesce(o.other_a, 0) AS other_a, coalesce(o.other_b, 0) AS other_b, coalesce(o.other_tie, 0) AS other_tie
FROM j
LEFT JOIN others o ON o.trace_low = j.trace_low AND o.trace_high = j.trace_high
JOIN flywheel.traces ta ON ta.id = j.trace_a
JOIN flywheel.traces tb ON tb.id = CASE WHEN j.trace_a = j.trace_low THEN j.trace_high ELSE j.trace_low END
LEFT JOIN flywheel._human_pair_majority m ON m.trace_low = j.trace_low AND m.trace_high = j.trace_high
LEFT JOIN h ON h.trace_low = j.trace_low AND h.trace_high = j.trace_high
"""

FEATURES = ("bias", "raw_a", "raw_b", "raw_tie", "other_a", "other_b", "other_tie", "log_len_ratio",
            "abs_log_len_ratio", "empty_a", "empty_b", "log_latency_ratio")


class CalibrationError(ValueError):
    """Bad input for a calibration: the message says why; the raw verdict stands."""


def features(row: dict[str, Any]) -> list[float]:
    """The model's inputs for one judged pair (symmetric under swapping a and b, up to sign)."""
    la, lb = math.log1p(row["len_a"] or 0), math.log1p(row["len_b"] or 0)
    lat_a, lat_b = row.get("latency_a"), row.get("latency_b")
    latency = math.log1p(lat_a) - math.log1p(lat_b) if lat_a is not None and lat_b is not None else 0.0
    raw = row["raw"]
    others = [float(row.get(k) or 0.0) for k in ("other_a", "other_b", "other_tie")]
    return [1.0, float(raw == "a"), float(raw == "b"), float(raw == "tie"), *others, la - lb, abs(la - lb),
            float(not row["len_a"]), float(not row["len_b"]), latency]


def kappa(human: Any, judge: Any, k: int = len(CLASSES)) -> float | None:
    """Cohen's kappa of two label sequences over k classes; None when chance agreement is 1."""
    import numpy as np

    h, j = np.asarray(human), np.asarray(judge)
    if len(h) == 0:
        return None
    p_o = float(np.mean(h == j))
    p_e = float(sum(np.mean(h == c) * np.mean(j == c) for c in range(k)))
    return None if p_e >= 1.0 else (p_o - p_e) / (1.0 - p_e)


def fit_logistic(x: Any, y: Any, k: int = len(CLASSES), l2: float = L2) -> Any:
    """Weights (features x classes) of a multinomial logistic regression with an L2 penalty
    (not on the bias), by Newton's method; the last class is the reference (weights 0)."""
    import numpy as np

    n, d = x.shape
    m = k - 1
    w = np.zeros((d, m))
    penalty = np.full(d, l2)
    penalty[0] = 1e-6
    onehot = np.eye(k)[y][:, :m]
    for _ in range(MAX_NEWTON):
        logits = np.hstack([x @ w, np.zeros((n, 1))])
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        pm = p[:, :m]
        grad = (x.T @ (pm - onehot)) + penalty[:, None] * w
        hess = np.zeros((d * m, d * m))
        for a in range(m):
            for b in range(m):
                weight = pm[:, a] * ((a == b) - pm[:, b])
                hess[a * d:(a + 1) * d, b * d:(b + 1) * d] = (x * weight[:, None]).T @ x
        hess += np.diag(np.tile(penalty, m))
        step = np.linalg.solve(hess, grad.T.reshape(-1)).reshape(m, d).T
        w -= step
        if not np.all(np.isfinite(w)):
            raise CalibrationError("the calibration did not converge (weights are not finite)")
        if np.abs(step).max() < 1e-8:
            return w
    raise CalibrationError(f"the calibration did not converge in {MAX_NEWTON} Newton steps")


def log_probabilities(x: Any, w: Any) -> Any:
    import numpy as np

    logits = np.hstack([x @ w, np.zeros((x.shape[0], 1))])
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def decide(logp: Any, offsets: Sequence[float]) -> tuple[Any, Any]:
    """Calibrated class and its confidence (probability after the offsets) per row."""
    import numpy as np

    shifted = logp + np.asarray(offsets)[None, :]
    shifted -= shifted.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    return p.argmax(axis=1), p.max(axis=1)


def tune_offsets(logp: Any, y: Any) -> list[float]:
    """Per-class offsets (tie fixed at 0) maximising kappa of argmax(log p + offset)."""
    best, best_kappa = [0.0, 0.0, 0.0], -2.0
    for oa in OFFSET_GRID:
        for ob in OFFSET_GRID:
            predicted, _ = decide(logp, [oa, ob, 0.0])
            value = kappa(y, predicted)
            if value is not None and value > best_kappa + 1e-12:
                best, best_kappa = [oa, ob, 0.0], value
    return best


def _scale(x: Any, mean: Any, std: Any) -> Any:
    import numpy as np

    return np.hstack([x[:, :1], (x[:, 1:] - mean) / std])


def fit_tuned(x: Any, y: Any) -> dict[str, Any]:
    """A model fitted on all of (x, y) (features standardised, bias column kept), its offsets
    tuned for kappa on the same rows: measured on llmfao, in-sample tuning beats tuning on
    forward-chaining out-of-fold predictions below a few hundred labels (the folds are too small
    to place thresholds; see ARCHITECTURE.md)."""
    import numpy as np

    mean, std = x[:, 1:].mean(axis=0), x[:, 1:].std(axis=0)
    std = np.where(std < 1e-9, 1.0, std)
    xs = _scale(x, mean, std)
    w = fit_logistic(xs, y)
    offsets = tune_offsets(log_probabilities(xs, w), y)
    return {"weights": w.tolist(), "offsets": offsets, "features": list(FEATURES), "mean": mean.tolist(),
            "std": std.tolist()}


def predict(model: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[list[str], list[float]]:
    import numpy as np

    if not rows:
        return [], []
    x = _scale(np.array([features(r) for r in rows]), np.array(model["mean"]), np.array(model["std"]))
    classes, confidence = decide(log_probabilities(x, np.array(model["weights"])), model["offsets"])
    return [CLASSES[c] for c in classes], confidence.tolist()


def calibration(rows: list[dict[str, Any]], active: dict[str, Any] | None) -> dict[str, Any]:
    """Fit and judge a calibration from labelled, time-ordered rows: the new model's kappa on
    the newest HOLDOUT share (fitted on the older rows) against the raw judge's and the active
    calibration's on the same rows; then the model refitted on every row."""
    import numpy as np

    labelled = [r for r in rows if r["human"] in CLASSES and r["raw"] in CLASSES]
    labelled.sort(key=lambda r: (r["labelled_at"], r["trace_a"], r["trace_b"]))
    if len(labelled) < MIN_LABELS:
        raise CalibrationError(f"{len(labelled)} labelled pairs, fewer than the {MIN_LABELS} a calibration needs")
    y = np.array([CLASSES.index(r["human"]) for r in labelled])
    if len(set(y.tolist())) < 2:
        raise CalibrationError("the people's verdicts have one class only: nothing to calibrate")
    raw = np.array([CLASSES.index(r["raw"]) for r in labelled])
    if len(set(raw.tolist())) < 2:
        raise CalibrationError("the judge's verdicts have one class only: nothing to calibrate")
    x = np.array([features(r) for r in labelled])
    if not np.all(np.isfinite(x)):
        raise CalibrationError("some features are not finite")
    cut = int(len(y) * (1 - HOLDOUT))
    if len(set(y[:cut].tolist())) < 2:
        raise CalibrationError("the older labels have one class only: nothing to calibrate")
    trial = fit_tuned(x[:cut], y[:cut])
    new_pred, _ = predict(trial, labelled[cut:])
    held = y[cut:]
    new_kappa = kappa(held, [CLASSES.index(c) for c in new_pred])
    raw_kappa = kappa(held, raw[cut:])
    active_kappa = None
    if active is not None:
        active_pred, _ = predict(active, labelled[cut:])
        active_kappa = kappa(held, [CLASSES.index(c) for c in active_pred])
    model = fit_tuned(x, y)
    better = new_kappa is not None and new_kappa > (raw_kappa if raw_kappa is not None else -1.0) and (
        active_kappa is None or new_kappa > active_kappa)
    return {"model": model, "n_labels": len(y), "n_holdout": len(held), "kappa": new_kappa,
            "raw_kappa": raw_kappa, "active_kappa": active_kappa, "better": better}


def calibrate(plpy: Any, validator: str) -> dict[str, Any]:
    """flywheel.calibrate(validator): fit, store a new version, activate it only if it beats
    the raw judge and the active calibration on the newest labels."""
    # Imported judges (llmfao's GPT-4) have verdicts in flywheel.preferences but no validator row.
    judged = plpy.execute(plpy.prepare(
        "SELECT 1 FROM flywheel.preferences WHERE judged_by = 'llm' AND validator = $1 LIMIT 1", ["text"]),
        [validator])
    if not judged:
        plpy.error(f"no pairwise LLM verdicts of a judge named {validator}", sqlstate="22023",
                   hint="calibration learns pairwise judges from their verdicts in flywheel.preferences")
    rows = list(plpy.execute(plpy.prepare(ITEMS, ["text"]), [validator]))
    current = plpy.execute(plpy.prepare(
        "SELECT model FROM flywheel.calibrations WHERE validator = $1 AND active", ["text"]), [validator])
    active = json.loads(current[0]["model"]) if current else None
    try:
        result = calibration(rows, active)
    except CalibrationError as e:
        plpy.error(f"calibration of {validator}: {e}", sqlstate="22023", hint="the raw verdict stands")
    if result["better"]:
        plpy.execute(plpy.prepare("UPDATE flywheel.calibrations SET active = false WHERE validator = $1 AND active",
                                  ["text"]), [validator])
    inserted = plpy.execute(plpy.prepare(
        """INSERT INTO flywheel.calibrations (validator, version, n_labels, n_holdout, model, kappa, raw_kappa,
                                              active_kappa, active)
           SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8
           FROM flywheel.calibrations WHERE validator = $1 RETURNING version""",
        ["text", "integer", "integer", "jsonb", "float8", "float8", "float8", "boolean"]),
        [validator, result["n_labels"], result["n_holdout"], json.dumps(result["model"]), result["kappa"],
         result["raw_kappa"], result["active_kappa"], result["better"]])
    return {"version": inserted[0]["version"], "n_labels": result["n_labels"], "n_holdout": result["n_holdout"],
            "kappa": result["kappa"], "raw_kappa": result["raw_kappa"], "active_kappa": result["active_kappa"],
            "activated": result["better"]}


def calibrated(plpy: Any) -> list[dict[str, Any]]:
    """Every pairwise LLM verdict with its calibrated verdict under the active calibration of
    its judge (the raw verdict, confidence NULL, where none is active); abstained where the
    judge's config abstain_below is above the confidence."""
    out: list[dict[str, Any]] = []
    abstain_below = {r["name"]: float(r["abstain_below"]) for r in plpy.execute(
        "SELECT name, config ->> 'abstain_below' AS abstain_below FROM flywheel.validators"
        " WHERE config ? 'abstain_below'")}
    for judge in plpy.execute("SELECT DISTINCT validator FROM flywheel.preferences WHERE judged_by = 'llm'"):
        name = judge["validator"]
        rows = list(plpy.execute(plpy.prepare(ITEMS, ["text"]), [name]))
        current = plpy.execute(plpy.prepare(
            "SELECT version, model FROM flywheel.calibrations WHERE validator = $1 AND active", ["text"]), [name])
        confidence: list[float | None]
        if current:
            verdicts, scores = predict(json.loads(current[0]["model"]), rows)
            confidence, version = list(scores), current[0]["version"]
        else:
            verdicts, confidence, version = [r["raw"] for r in rows], [None] * len(rows), None
        for r, v, c in zip(rows, verdicts, confidence, strict=True):
            out.append({"validator": name, "trace_id": r["trace_a"], "trace_b": r["trace_b"], "raw_verdict": r["raw"],
                        "calibrated_verdict": v, "confidence": c,
                        "abstained": c is not None and name in abstain_below and c < abstain_below[name],
                        "calibration_version": version})
    return out
