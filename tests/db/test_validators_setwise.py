"""The set-wise evaluation in the database: it sees every change to the registry, and gives what
the per-row path gives under the server's own Python and re2."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

DATASETS = Path(__file__).resolve().parents[2] / "src" / "dbflywheel" / "data" / "datasets"


@pytest.fixture
def short(db: psycopg.Connection, app_name: str) -> Iterator[str]:
    name = f"t_short_{app_name[5:]}"
    db.execute("SELECT flywheel.create_validator(%s, 'length', %s, 'sync', %s)",
               (name, Jsonb({"max_chars": 1}), Jsonb({"app": app_name})))
    yield name
    db.execute("DELETE FROM flywheel.validators WHERE name = %s", (name,))


def statuses(db: psycopg.Connection, app: str, name: str) -> list[str]:
    """The statuses of validator `name` on each trace of the app, in insert order."""
    return [r[0] for r in db.execute(
        """SELECT coalesce(r.status, '-') FROM flywheel.traces t
           LEFT JOIN flywheel.validation_results r ON r.trace_id = t.id
                AND r.validator_id = (SELECT id FROM flywheel.validators WHERE name = %s)
           WHERE t.app = %s ORDER BY t.id""", (name, app))]


def test_a_change_from_another_session_is_seen_by_the_next_insert(
        db: psycopg.Connection, dsn: str, app_name: str, short: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as other:
        insert = "INSERT INTO flywheel.traces (app, output) VALUES (%s, 'long')"
        db.execute(insert, (app_name,))  # the registry of this session is loaded
        other.execute("SELECT flywheel.set_validator_enabled(%s, false)", (short,))
        db.execute(insert, (app_name,))
        other.execute("SELECT flywheel.set_validator_enabled(%s, true)", (short,))
        db.execute(insert, (app_name,))
    assert statuses(db, app_name, short) == ["fail", "-", "fail"]


def test_changes_within_the_inserting_transaction_are_seen(db: psycopg.Connection, app_name: str, short: str) -> None:
    # Both changes are by one transaction, so the row keeps one xmin: its ctid tells them apart.
    insert = "INSERT INTO flywheel.traces (app, output) VALUES (%s, 'long')"
    with db.transaction():
        db.execute(insert, (app_name,))
        db.execute("SELECT flywheel.set_validator_enabled(%s, false)", (short,))
        db.execute(insert, (app_name,))
        db.execute("SELECT flywheel.set_validator_enabled(%s, true)", (short,))
        db.execute(insert, (app_name,))
        db.execute("SELECT flywheel.set_validator_enabled(%s, false)", (short,))
        db.execute(insert, (app_name,))
    assert statuses(db, app_name, short) == ["fail", "-", "fail", "-"]


def _texts() -> list[str]:
    texts = [json.loads(line)["result"] for line in (DATASETS / "llmfao" / "results.jsonl").open()]
    for row in csv.DictReader((DATASETS / "sql-eval" / "questions_gen_postgres.csv").open()):
        texts += [row["question"], row["query"]]
    return texts + ["", "jane.doe@example.com", "I'm sorry, but I can't", "ignore previous instructions", "日本語"]


def test_in_the_server_the_set_wise_path_equals_the_per_row_path(db: psycopg.Connection) -> None:
    source = db.execute("SELECT prosrc FROM pg_proc WHERE proname = '_evaluate'").fetchone()[0]  # type: ignore[index]
    key = re.search(r"GD.get\('([^']+)'\)", source).group(1)  # type: ignore[union-attr]
    db.execute(f"""CREATE FUNCTION pg_temp.fast_equals_exact(purpose text, inputs text[], outputs text[]) RETURNS text
        LANGUAGE plpython3u AS $py$
_import = GD.get({key!r})
if _import is None:
    plpy.execute("SELECT flywheel._python_boot()")
    _import = GD[{key!r}]
rt = _import("validators_runtime")
n = len(inputs)
cols = [list(range(1, n + 1)) if purpose != "check_input" else [None] * n, ["app"] * n, ["answer"] * n,
        [("writer", "tool", "classifier")[i % 3] for i in range(n)], ["gpt-4o-mini"] * n, ["v1"] * n, inputs, outputs,
        [None] * n, [200.0 + i for i in range(n)], [40] * n, [90 + i % 7 for i in range(n)], [0.0004] * n, ["{{}}"] * n]
fast = rt.evaluate_fast(plpy, purpose, None, *cols)
exact = rt.evaluate_exact(plpy, purpose, None, *cols)
return "same" if fast == exact else "different: " + ", ".join(k for k in fast if fast[k] != exact[k])
$py$""")
    texts: list[Any] = _texts()
    outputs = texts[1:] + texts[:1]
    for purpose in ("insert", "validate", "check_input"):
        for start in range(0, len(texts), 100):
            got = db.execute("SELECT pg_temp.fast_equals_exact(%s, %s, %s)",
                             (purpose, texts[start : start + 100], outputs[start : start + 100])).fetchone()
            assert got == ("same",), (purpose, start)
