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
CHAR_NGRAMS = (3, 4)
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_MASK = (1 << 64) - 1


def normalize(text: str) -> str:
    """The form two inputs must share to count as the same question (also the cache key)."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def input_key(text: str | None) -> str | None:
    """md5 of the normalised text, as a uuid literal: the exact-match key of the cache."""
    if text is None:
        return None
    digest = hashlib.md5(normalize(text).encode(), usedforsecurity=False).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


def _mix(np: Any, h: Any) -> Any:
    """murmur3's 64-bit finaliser: spreads every input bit over the bucket and sign bits."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _scatter(np: Any, owners: Any, hashes: Any, n_texts: int) -> Any:
    """Sum +1/-1 into bucket hash % DIMS (sign from the top bit) of each owner's row."""
    if len(hashes) == 0:
        return np.zeros((n_texts, DIMS))
    mixed = _mix(np, hashes)
    buckets = (mixed % np.uint64(DIMS)).astype(np.int64)
    signs = np.where((mixed >> np.uint64(63)) == np.uint64(1), -1.0, 1.0)
    flat = np.bincount(owners * DIMS + buckets, weights=signs, minlength=n_texts * DIMS)
    return flat.reshape(n_texts, DIMS)


def _char_features(np: Any, texts: list[str]) -> Any:
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
    if not hash_parts:
        return np.zeros((len(texts), DIMS))
    return _scatter(np, np.concatenate(owners_parts), np.concatenate(hash_parts), len(texts))


def _word_features(np: Any, texts: list[str]) -> Any:
    """Words and word bigrams (crc32, then mixed with a seed that keeps the two kinds apart)."""
    owners: list[int] = []
    hashes: list[int] = []
    for i, text in enumerate(texts):
        words = [zlib.crc32(w.encode()) for w in _WORD.findall(text)]
        owners.extend([i] * (2 * len(words) - (1 if words else 0)))
        hashes.extend(words)
        hashes.extend((a << 32 | b) ^ 0x5BD1E995 for a, b in zip(words, words[1:], strict=False))
    return _scatter(np, np.array(owners, dtype=np.int64), np.array(hashes, dtype=np.uint64), len(texts))


def _unit_rows(np: Any, m: Any) -> Any:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def embed_batch(texts: list[str | None]) -> list[list[float] | None]:
    """One 384-float unit vector per text; None for a NULL or empty text (nothing to embed)."""
    import numpy as np

    present = [i for i, t in enumerate(texts) if t is not None and normalize(t)]
    result: list[list[float] | None] = [None] * len(texts)
    if not present:
        return result
    norm = [normalize(texts[i]) for i in present]  # type: ignore[arg-type]
    # sqrt dampens repeated n-grams; each kind is normalised so words are not drowned by chars.
    chars = _char_features(np, norm)
    words = _word_features(np, norm)
    damp = np.sign(chars) * np.sqrt(np.abs(chars)), np.sign(words) * np.sqrt(np.abs(words))
    vectors = _unit_rows(np, _unit_rows(np, damp[0]) + _unit_rows(np, damp[1])).astype(np.float32)
    for row, i in enumerate(present):
        if np.any(vectors[row]):
            result[i] = vectors[row].tolist()
    return result


def embed_rows(plpy: Any, embedder: str, texts: list[str | None]) -> Any:
    """PL/Python: (ordinality, embedding, input_key, error) for every text of one statement.
    Never raises: a failure comes back as the error of every row, for the backlog."""
    try:
        if embedder != NAME:
            raise LookupError(f"the database runs only the built-in embedder {NAME}, not {embedder!r}")
        vectors = embed_batch(texts)
        keys = [input_key(t) for t in texts]
    except Exception as e:  # the insert path must never fail because of the embedder
        message = f"{type(e).__name__}: {e}"
        return [(i + 1, None, None, message) for i in range(len(texts))]
    return [(i + 1, v, keys[i], None) for i, v in enumerate(vectors)]


def normalize_key(plpy: Any, text: str | None) -> str | None:
    """PL/Python: the cache key of one query."""
    return input_key(text)
