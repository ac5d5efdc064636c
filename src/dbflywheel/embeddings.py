"""Embeddings outside the database: the very embedder PL/Python runs, and the worker that
drains the embedding backlog (`dbflywheel embed`)."""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from dbflywheel.build import shipped_script
from dbflywheel.errors import FlywheelError

BUILTIN_MODULE = "fewshot_embedder"


@functools.cache
def builtin() -> types.ModuleType:
    """plpython/fewshot_embedder.py as installed: read from the shipped install script, so the
    package, the worker and the database embed with exactly the same code."""
    script = shipped_script()
    match = re.search(rf"\(\s*'{BUILTIN_MODULE}',\s*\$pysrc\$(.*?)\$pysrc\$\)", script, re.S)
    if not match:
        raise FlywheelError(f"the shipped install script has no {BUILTIN_MODULE} module: run `dbflywheel build`")
    module = types.ModuleType(f"dbflywheel._{BUILTIN_MODULE}")
    module.__file__ = f"plpython/{BUILTIN_MODULE}.py"
    exec(compile(match.group(1), module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own shipped source
    return module


def embed(texts: list[str | None]) -> list[list[float] | None]:
    """The built-in embedding of each text (None for a NULL or empty text)."""
    return builtin().embed_batch(texts)  # type: ignore[no-any-return]


Embedder = Callable[[list[str | None]], list[list[float] | None]]


def python_embedders() -> dict[str, Embedder]:
    """Embedders this Python can run, by the name they are registered under in flywheel.embedders.
    The built-in one always; a sentence-embedding model only where its package and weights are
    installed (none is bundled: see ARCHITECTURE.md)."""
    return {builtin().NAME: embed}


@dataclass
class EmbedRun:
    embedded: int = 0
    activated: str | None = None


def _store(conn: psycopg.Connection, embedder: str, rows: list[tuple[int, str, str | None]], fn: Embedder) -> int:
    vectors = fn([r[2] for r in rows])
    keys = [builtin().input_key(r[2]) for r in rows]
    data = [
        (trace_id, embedder, app, "[" + ",".join(map(repr, v)) + "]", key)
        for (trace_id, app, _), v, key in zip(rows, vectors, keys, strict=True) if v is not None
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO flywheel.embeddings (trace_id, embedder, app, embedding, input_key)"
            " VALUES (%s, %s, %s, %s::text::vector, %s::uuid)"
            " ON CONFLICT ON CONSTRAINT embeddings_pkey DO UPDATE"
            " SET embedding = EXCLUDED.embedding, input_key = EXCLUDED.input_key, created_at = now()",
            data,
        )
    return len(data)


def _worker_batch(conn: psycopg.Connection, embedder: str, state: str, fn: Embedder, batch: int) -> int:
    """One transaction: the embedder's backlog first, then the next stretch of its back-fill."""
    done = 0
    with conn.transaction():
        rows = conn.execute(
            "SELECT b.trace_id, t.app, t.input FROM flywheel.embedding_backlog b"
            " JOIN flywheel.traces t ON t.id = b.trace_id"
            " WHERE b.embedder = %s AND b.attempts < 5 ORDER BY b.trace_id LIMIT %s FOR UPDATE OF b SKIP LOCKED",
            (embedder, batch),
        ).fetchall()
        if rows:
            done += _store(conn, embedder, rows, fn)
            conn.execute(
                "DELETE FROM flywheel.embedding_backlog WHERE embedder = %s AND trace_id = ANY(%s)",
                (embedder, [r[0] for r in rows]),
            )
    if state != "building":
        return done
    with conn.transaction():
        cursor = conn.execute(
            "SELECT backfill_after_id FROM flywheel.embedders WHERE name = %s FOR UPDATE SKIP LOCKED", (embedder,)
        ).fetchone()
        if cursor is None:  # another worker is back-filling
            return done
        rows = conn.execute(
            "SELECT t.id, t.app, t.input FROM flywheel.traces t WHERE t.id > %s AND NOT EXISTS"
            " (SELECT 1 FROM flywheel.embeddings e WHERE e.trace_id = t.id AND e.embedder = %s)"
            " ORDER BY t.id LIMIT %s",
            (cursor[0], embedder, batch),
        ).fetchall()
        if rows:
            done += _store(conn, embedder, rows, fn)
            conn.execute(
                "UPDATE flywheel.embedders SET backfill_after_id = %s WHERE name = %s", (rows[-1][0], embedder)
            )
    return done


def run(dsn: str, *, batch: int = 1000, until_done: bool = False) -> EmbedRun:
    """Drain the backlog and back-fills: in the database for in-database embedders
    (flywheel.embed_backlog), here for worker embedders. Once, or until nothing is left."""
    from dbflywheel.install import connect

    result = EmbedRun()
    available = python_embedders()
    with connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT flywheel.embed_backlog(%s)", (batch,)).fetchone()
            done = int(row[0]) if row else 0
            for name, state in conn.execute(
                "SELECT name, state FROM flywheel.embedders WHERE runs_in = 'worker' AND state <> 'retired'"
            ).fetchall():
                if name not in available:
                    raise FlywheelError(
                        f"embedder {name} runs in a worker, but this Python cannot run it "
                        f"(it can run: {', '.join(sorted(available))})"
                    )
                done += _worker_batch(conn, name, state, available[name], batch)
            activated = conn.execute("SELECT flywheel._activate_built_embedder()").fetchone()
            if activated and activated[0]:
                result.activated = activated[0]
            result.embedded += done
            if not until_done or done == 0:
                return result
