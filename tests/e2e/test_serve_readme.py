"""The curl examples of README's `dbflywheel serve` section, run against a real server."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import psycopg
from serve_support import new_key, serving

README = Path(__file__).resolve().parents[2] / "README.md"


def curl_block() -> str:
    text = README.read_text()
    section = text[text.index("## dbflywheel serve"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    (block,) = [b for b in blocks if b.startswith("curl")]
    return block


def test_readme_curl_examples_run(dsn: str, db: psycopg.Connection) -> None:
    app = "readme-" + os.urandom(4).hex()
    _, key = new_key(db, app)
    with serving(dsn) as server:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", curl_block()], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "URL": server.url, "KEY": key})
    assert done.returncode == 0, done.stderr + done.stdout
    assert 'dbflywheel_rows_ingested_total{table="traces"} 1' in done.stdout
    assert '"status":"fail"' in done.stdout  # the pii guard caught the card number
    rows = db.execute("SELECT t.node, t.model, t.latency_ms, f.kind FROM flywheel.traces t"
                      " LEFT JOIN flywheel.feedback f ON f.trace_id = t.id WHERE t.app = %s ORDER BY t.id", (app,)).fetchall()
    assert rows == [("answer", "gpt-4o-mini", 300.0, "thumbs"), ("feedback", None, None, "rating")]
