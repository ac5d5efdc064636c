"""The built-in embedder: hashed word and character n-grams, signed, L2-normalised, numpy only.

Deterministic (no per-process hash seed, no network, no model), fast enough for the insert
path, and importable both by PL/Python and by the Python package (dbflywheel.embeddings loads
this very file), so the database, the worker and the CLI embed identically.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from typing import Any

NAME = "fewshot-hash-384-v1"
DIMS = 384
# The embedding looks at the first MAX_CHARS characters of the normalised text (README.md): the
# n-gram arrays cost ~165 bytes per character, so an 8 MB few_shot() query took 1.3 GB. The cache
# key (input_key) still covers the whole text.
MAX_CHARS = 20_000
CANCEL_SQLSTATE = "57014"  # query_canceled (statement_timeout, pg_cancel_backend)
CHAR_NGRAMS = (3, 4)
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_MASK = (1 << 64) - 1


def normalize(text: str) -> str:
    """The form two inputs must share to count as the same question (also the cache key)."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def input_key(text: str | None) -> str | None:
    """md5 of the normalised text, as a uuid literal: the exact-match key of the cache."""
    return None if text is None else _key_of_normalized(normalize(text))


def _mix(np: Any, h: Any) -> Any:
    """murmur3's 64-bit finaliser: spreads every input bit over the bucket and sign bits."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _scatter(np: Any, owners: Any, hashes: Any, n_texts: int, offset: int) -> Any:
    """+1/-1 per feature into column offset + hash % DIMS (sign from the top bit) of its
    owner's row, as flat (index, weight) pairs for one bincount over everything."""
    mixed = _mix(np, hashes)
    buckets = (mixed % np.uint64(DIMS)).astype(np.int64) + offset
    signs = 1.0 - 2.0 * (mixed >> np.uint64(63)).astype(np.float64)
    return owners * (2 * DIMS) + buckets, signs


def _char_features(np: Any, texts: list[str]) -> tuple[Any, Any]:
    """Byte n-grams of every text at once: one rolling hash over the concatenation, keeping
    only the n-grams that do not cross from one text into the next."""
    encoded = [(" " + t + " ").encode() for t in texts]
    lengths = np.array([len(b) for b in encoded], dtype=np.int64)
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.uint64)
    ends = np.cumsum(lengths)
    owner_of_byte = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    owners_parts, hash_parts = [], []
    for n in CHAR_NGRAMS:
        count = len(data) - n + 1
        if count <= 0:
            continue
        h = np.full(count, np.uint64(n * 0x9E3779B97F4A7C15 & _MASK))
        for j in range(n):
            h = h * np.uint64(0x100000001B3) + data[j:j + count]
        owners = owner_of_byte[:count]
        inside = np.arange(count, dtype=np.int64) + n <= ends[owners]
        owners_parts.append(owners[inside])
        hash_parts.append(h[inside])
    return _scatter(np, np.concatenate(owners_parts), np.concatenate(hash_parts), len(texts), 0)


def _word_features(np: Any, texts: list[str]) -> tuple[Any, Any]:
    """Words and word bigrams (crc32, then mixed with a seed that keeps the two kinds apart)."""
    owners: list[int] = []
    hashes: list[int] = []
    for i, text in enumerate(texts):
        words = [zlib.crc32(w.encode()) for w in _WORD.findall(text)]
        owners.extend([i] * (2 * len(words) - (1 if words else 0)))
        hashes.extend(words)
        hashes.extend((a << 32 | b) ^ 0x5BD1E995 for a, b in zip(words, words[1:], strict=False))
    return _scatter(np, np.array(owners, dtype=np.int64), np.array(hashes, dtype=np.uint64), len(texts), DIMS)


def _unit_rows(np: Any, m: Any) -> Any:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def _matrix(np: Any, texts: list[str | None]) -> tuple[list[int], list[str], Any]:
    """The indexes of the texts with something to embed, their normalised forms, and their unit
    vectors (float32 rows)."""
    norm_all = [normalize(t) if t is not None else "" for t in texts]
    present = [i for i, t in enumerate(norm_all) if t]
    norm = [norm_all[i] for i in present]
    if not present:
        return present, norm, np.zeros((0, DIMS), dtype=np.float32)
    heads = [n[:MAX_CHARS] for n in norm]
    (ci, cw), (wi, ww) = _char_features(np, heads), _word_features(np, heads)
    counts = np.bincount(np.concatenate([ci, wi]), weights=np.concatenate([cw, ww]),
                         minlength=len(heads) * 2 * DIMS).reshape(len(heads), 2, DIMS)
    # sqrt dampens repeated n-grams; chars and words are normalised apart, so that the many
    # character n-grams do not drown the words, then added.
    damped = np.copysign(np.sqrt(np.abs(counts)), counts)
    norms = np.linalg.norm(damped, axis=2, keepdims=True)
    vectors = np.divide(damped, norms, out=np.zeros_like(damped), where=norms > 0).sum(axis=1)
    return present, norm, _unit_rows(np, vectors).astype(np.float32)


def embed_batch(texts: list[str | None]) -> list[list[float] | None]:
    """One 384-float unit vector per text; None for a NULL or empty text (nothing to embed)."""
    import numpy as np

    present, _, vectors = _matrix(np, texts)
    result: list[list[float] | None] = [None] * len(texts)
    for row, i in enumerate(present):
        result[i] = vectors[row].tolist()
    return result


def vector_literals(np: Any, vectors: Any) -> list[str]:
    """pgvector text literals of unit-vector rows, written by numpy ('[+0.0123457,-0.0000001,...]'):
    PL/Python converts a list of floats to real[] one string per element, far slower."""
    n = len(vectors)
    if n == 0:
        return []
    scaled = np.rint(np.abs(vectors.astype(np.float64)) * 1e7).astype(np.int64)  # |v| <= 1: d.ddddddd
    cells = np.empty((n, DIMS, 11), dtype=np.uint8)
    cells[..., 0] = np.where(vectors < 0, ord("-"), ord("+"))
    cells[..., 2] = ord(".")
    cells[..., 10] = ord(",")
    for position in (9, 8, 7, 6, 5, 4, 3, 1):
        cells[..., position] = scaled % 10 + ord("0")
        scaled //= 10
    rows = cells.reshape(n, DIMS * 11)
    rows[:, -1] = ord("]")
    return ["[" + r.tobytes().decode("ascii") for r in rows]


def _key_of_normalized(norm: str) -> str:
    digest = hashlib.md5(norm.encode(), usedforsecurity=False).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


def literals_and_keys(embedder: str, texts: list[str | None]) -> tuple[list[int], list[str], list[str]]:
    """For the texts with something to embed: their indexes, pgvector literals and input keys."""
    import numpy as np

    if embedder != NAME:
        raise LookupError(f"the database runs only the built-in embedder {NAME}, not {embedder!r}")
    present, norm, vectors = _matrix(np, texts)
    return present, vector_literals(np, vectors), [_key_of_normalized(n) for n in norm]


def embed_rows(plpy: Any, embedder: str, texts: list[str | None]) -> Any:
    """PL/Python: (ordinality, embedding literal, input_key, error) for every text with something
    to embed. Never raises: a failure comes back as the error of every row."""
    try:
        present, literals, keys = literals_and_keys(embedder, texts)
    except Exception as e:
        if is_cancel(e):
            raise
        return [(i + 1, None, None, f"{type(e).__name__}: {e}") for i in range(len(texts))]
    return [(i + 1, literal, key, None) for i, literal, key in zip(present, literals, keys, strict=True)]


def is_cancel(e: BaseException) -> bool:
    """PostgreSQL cancelling the statement: never caught (validators_builtin.is_cancel's twin; this
    file is also loaded on its own by the Python package)."""
    return getattr(e, "sqlstate", None) == CANCEL_SQLSTATE or type(e).__name__ == "QueryCanceled"


def normalize_key(plpy: Any, text: str | None) -> str | None:
    """PL/Python: the cache key of one query."""
    return input_key(text)
