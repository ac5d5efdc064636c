"""Bradley-Terry scores of models, prompt versions and variants from pairwise verdicts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

# Which trace attribute a ranking compares: the column of flywheel.traces.
DIMENSIONS = ("model", "prompt_version", "variant")

# The most names ranked per (app, dimension, source): the view computes on every read, and the
# fit costs about names^2 per iteration, so one app's votes over hundreds of variants would slow
# every reader (400 names: 22 s). The names with the most comparisons are kept (ties by name);
# comparisons with the others are left out of that ranking. Votes with no finite estimate (one
# name always wins) never converge: the fit stops after MAX_ITERATIONS (the order is found long
# before). Together they bound a group's fit to about a second.
MAX_NAMES = 100
MAX_ITERATIONS = 5_000

PREFERENCES = """
SELECT p.app, CASE WHEN p.judged_by = 'human' THEN 'human' ELSE p.validator END AS source, p.winner,
       ta.model AS model_a, tb.model AS model_b,
       ta.prompt_version AS prompt_version_a, tb.prompt_version AS prompt_version_b,
       ta.variant AS variant_a, tb.variant AS variant_b
FROM flywheel.preferences p
JOIN flywheel.traces ta ON ta.id = p.trace_a
JOIN flywheel.traces tb ON tb.id = p.trace_b
"""


def bradley_terry(
    comparisons: Iterable[tuple[str, str, str]], *, tolerance: float = 1e-10, max_iterations: int = 100_000
) -> dict[str, float]:
    """Scores (summing to 1) from (x, y, winner in 'a'|'b'|'tie') by the MM algorithm
    (Hunter 2004); a tie counts as half a win for each side."""
    import numpy as np

    pairs = [(x, y, w) for x, y, w in comparisons if x != y]
    names = sorted({n for x, y, _ in pairs for n in (x, y)})
    if not names:
        return {}
    index = {n: i for i, n in enumerate(names)}
    size = len(names)
    wins = np.zeros((size, size))  # wins[i, j]: how often i beat j (ties: half each)
    for x, y, w in pairs:
        i, j = index[x], index[y]
        if w == "a":
            wins[i, j] += 1.0
        elif w == "b":
            wins[j, i] += 1.0
        else:
            wins[i, j] += 0.5
            wins[j, i] += 0.5
    games = wins + wins.T
    won = wins.sum(axis=1)
    scores = np.full(size, 1.0 / size)
    for _ in range(max_iterations):
        sums = scores[:, None] + scores[None, :]
        denominator = np.divide(games, sums, out=np.zeros_like(games), where=games > 0).sum(axis=1)
        updated = np.divide(won, denominator, out=np.zeros(size), where=denominator > 0)
        updated /= updated.sum()
        done = np.abs(updated - scores).max() < tolerance
        scores = updated
        if done:
            break
    return {n: float(scores[index[n]]) for n in names}


def most_compared(comparisons: list[tuple[str, str, str]], max_names: int) -> list[tuple[str, str, str]]:
    """The comparisons between the max_names names compared most often (ties by name)."""
    counts: dict[str, int] = defaultdict(int)
    for a, b, _ in comparisons:
        counts[a] += 1
        counts[b] += 1
    if len(counts) <= max_names:
        return comparisons
    kept = set(sorted(counts, key=lambda n: (-counts[n], n))[:max_names])
    return [(a, b, w) for a, b, w in comparisons if a in kept and b in kept]


def rankings(rows: Iterable[dict[str, Any]], max_names: int = MAX_NAMES) -> Iterator[dict[str, Any]]:
    """One row per (app, dimension, source, name): score, rank (1 = best), wins, losses, ties;
    at most max_names names per (app, dimension, source)."""
    groups: dict[tuple[str, str, str], list[tuple[str, str, str]]] = defaultdict(list)
    for row in rows:
        for dimension in DIMENSIONS:
            a, b = row[f"{dimension}_a"], row[f"{dimension}_b"]
            if a is not None and b is not None and a != b:
                groups[(row["app"], dimension, row["source"])].append((a, b, row["winner"]))
    for (app, dimension, source), all_comparisons in sorted(groups.items()):
        comparisons = most_compared(all_comparisons, max_names)
        if not comparisons:
            continue
        scores = bradley_terry(comparisons, max_iterations=MAX_ITERATIONS)
        tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for a, b, winner in comparisons:
            if winner == "tie":
                tally[a][2] += 1
                tally[b][2] += 1
            else:
                tally[a if winner == "a" else b][0] += 1
                tally[b if winner == "a" else a][1] += 1
        ordered = sorted(scores, key=lambda n: (-scores[n], n))
        for position, name in enumerate(ordered, start=1):
            wins, losses, ties = tally[name]
            yield {
                "app": app, "dimension": dimension, "source": source, "name": name,
                "score": scores[name], "rank": position, "wins": wins, "losses": losses, "ties": ties,
            }


def ranking(plpy: Any) -> list[dict[str, Any]]:
    return list(rankings(plpy.execute(PREFERENCES)))
