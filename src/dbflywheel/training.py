"""Exports training set snapshots in the formats trainers read, streaming (memory stays flat)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from dbflywheel.errors import FlywheelError

# format -> kinds it can hold, and what it is
FORMATS: dict[str, tuple[tuple[str, ...], str]] = {
    "openai": (("sft", "preference"), "OpenAI fine-tuning JSONL: chat `messages` (sft) or DPO "
                                      "`input`/`preferred_output`/`non_preferred_output` (preference)"),
    "jsonl": (("sft",), "plain JSONL of `input` and `output`"),
    "trl": (("sft", "preference"), "TRL: `prompt`/`completion` (sft) or `prompt`/`chosen`/`rejected` (preference)"),
}


@dataclass
class Snapshot:
    name: str
    kind: str
    version: int
    row_count: int


def _record(fmt: str, kind: str, input: str, output: str, rejected: str | None) -> dict[str, Any]:
    if fmt == "openai" and kind == "sft":
        return {"messages": [{"role": "user", "content": input}, {"role": "assistant", "content": output}]}
    if fmt == "openai":
        return {"input": {"messages": [{"role": "user", "content": input}]},
                "preferred_output": [{"role": "assistant", "content": output}],
                "non_preferred_output": [{"role": "assistant", "content": rejected}]}
    if fmt == "jsonl":
        return {"input": input, "output": output}
    if kind == "sft":
        return {"prompt": input, "completion": output}
    return {"prompt": input, "chosen": output, "rejected": rejected}


def snapshot(conn: psycopg.Connection, name: str, version: int | None) -> Snapshot:
    """The snapshot a read means (the newest when version is None); FlywheelError when there is none."""
    kind = conn.execute("SELECT kind FROM flywheel.training_sets WHERE name = %s", (name,)).fetchone()
    if kind is None:
        raise FlywheelError(f"no training set named {name!r} (define one with flywheel.create_training_set)")
    row = conn.execute("SELECT version, row_count FROM flywheel.training_set_versions WHERE set_name = %s"
                       " AND (%s::integer IS NULL OR version = %s) ORDER BY version DESC LIMIT 1",
                       (name, version, version)).fetchone()
    if row is None:
        which = version if version is not None else "(none built)"
        raise FlywheelError(f"training set {name!r} has no version {which}")
    return Snapshot(name, kind[0], row[0], row[1])


def check_format(snap: Snapshot, fmt: str) -> None:
    """FlywheelError when `fmt` cannot hold the snapshot's kind."""
    kinds, _ = FORMATS[fmt]
    if snap.kind not in kinds:
        raise FlywheelError(f"format {fmt} holds {' or '.join(kinds)} sets, and {snap.name} is a {snap.kind} set"
                            f" (try: {', '.join(f for f, (k, _) in FORMATS.items() if snap.kind in k)})")


def records(conn: psycopg.Connection, snap: Snapshot, fmt: str) -> Iterator[dict[str, Any]]:
    """The snapshot's rows as records of `fmt`, read through a server-side cursor in their fixed order."""
    check_format(snap, fmt)
    with conn.transaction(), conn.cursor(name="dbflywheel_export_training") as cur:
        cur.itersize = 2000
        cur.execute("SELECT input, output, rejected FROM flywheel.training_set_rows(%s, %s)", (snap.name, snap.version))
        for input, output, rejected in cur:
            yield _record(fmt, snap.kind, input, output, rejected)


def export(conn: psycopg.Connection, snap: Snapshot, fmt: str, out: str,
           progress: Callable[[int, int], None] | None = None) -> int:
    """Writes one snapshot to `out` ('-' for stdout) as JSONL; a file appears whole or not at all."""
    check_format(snap, fmt)
    written = 0
    if out == "-":
        for rec in records(conn, snap, fmt):
            sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
            written += 1
        return written
    target = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for rec in records(conn, snap, fmt):
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                written += 1
                if progress is not None and written % 1000 == 0:
                    progress(written, snap.row_count)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    if progress is not None:
        progress(written, snap.row_count)
    return written
