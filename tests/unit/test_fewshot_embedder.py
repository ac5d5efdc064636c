"""The built-in embedder: deterministic, normalised, meaningful, and the same code in the package."""

from __future__ import annotations

import fewshot_embedder as fe
import numpy as np
from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from plpy_stub import StubPlpy

from dbflywheel import embeddings


def cos(a: list[float] | None, b: list[float] | None) -> float:
    assert a is not None and b is not None
    return float(np.dot(a, b))


def test_vectors_are_384_dims_unit_length_and_deterministic() -> None:
    texts = ["How do I reset my password?", "What is the capital of France?"]
    first, second = fe.embed_batch(texts), fe.embed_batch(texts)
    assert first == second
    for v in first:
        assert v is not None and len(v) == fe.DIMS == 384
        assert abs(np.linalg.norm(v) - 1) < 1e-5


def test_a_batch_embeds_each_text_as_it_would_alone() -> None:
    texts = ["alpha beta", None, "gamma delta epsilon", "", "alpha beta"]
    batch = fe.embed_batch(texts)
    for text, vector in zip(texts, batch, strict=True):
        assert vector == fe.embed_batch([text])[0]
    assert batch[1] is None and batch[3] is None
    assert batch[0] == batch[4]


def test_paraphrases_are_closer_than_unrelated_questions() -> None:
    q, para, other = fe.embed_batch(
        ["How do I reset my password?", "how can I reset the password of my account", "Which river flows through Paris?"]
    )
    assert cos(q, para) > 0.4
    assert cos(q, para) > cos(q, other) + 0.25


def test_case_and_whitespace_do_not_matter() -> None:
    a, b = fe.embed_batch(["Reset  my PASSWORD", "reset my password"])
    assert cos(a, b) > 0.9999
    assert fe.input_key("Reset  my PASSWORD\n") == fe.input_key("reset my password")
    assert fe.input_key("reset my password") != fe.input_key("reset my passwords")
    assert fe.input_key(None) is None


def test_empty_and_blank_texts_have_no_embedding() -> None:
    assert fe.embed_batch([None, "", "   \n\t"]) == [None, None, None]


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=300)), max_size=8))
def test_any_text_gives_a_unit_vector_or_none(texts: list[str | None]) -> None:
    for text, vector in zip(texts, fe.embed_batch(texts), strict=True):
        assert (vector is None) == (text is None or not fe.normalize(text))
        if vector is not None:
            assert len(vector) == 384 and abs(np.linalg.norm(vector) - 1) < 1e-4


def test_embed_rows_reports_failures_instead_of_raising() -> None:
    plpy = StubPlpy()
    ok = fe.embed_rows(plpy, fe.NAME, ["hello world", None, "bye"])
    assert [r[0] for r in ok] == [1, 3] and all(r[3] is None for r in ok)
    literal = np.array([float(x) for x in ok[0][1].strip("[]").split(",")])
    assert np.allclose(literal, fe.embed_batch(["hello world"])[0], atol=1e-7)
    assert ok[0][2] == fe.input_key("hello world")
    bad = fe.embed_rows(plpy, "some-other-model", ["hello", "world"])
    assert [r[3] for r in bad] == [bad[0][3]] * 2 and "some-other-model" in bad[0][3]
    assert all(r[1] is None for r in bad)


def test_vector_literals_are_exact_to_seven_decimals() -> None:
    vectors = np.array([[1.0, -1.0, 0.0, 0.12345678, -0.00000004] + [0.0] * 379], dtype=np.float32)
    (literal,) = fe.vector_literals(np, vectors)
    assert literal.startswith("[+1.0000000,-1.0000000,+0.0000000,+0.1234568,-0.0000000,")
    assert literal.endswith("]") and literal.count(",") == 383


def test_the_store_records_a_failure_instead_of_raising() -> None:
    import fewshot_store

    plpy = StubPlpy()
    fewshot_store._plans.clear()
    assert fewshot_store.embed_traces(plpy, "unknown-model", [7, 8], ["a", "a"], ["x", "y"]) == 0
    failed = [q for q in plpy.queries if "embedding_backlog" in q[0]]
    assert failed and failed[0][1][0] == [7, 8] and "LookupError" in failed[0][1][2]
    plpy = StubPlpy()
    fewshot_store._plans.clear()
    assert fewshot_store.embed_traces(plpy, fe.NAME, [7, 8], ["a", "a"], ["x", None]) == 1
    stored = [q for q in plpy.queries if "flywheel.embeddings" in q[0]]
    assert stored[0][1][0] == [7] and stored[0][1][3][0].startswith("[")


def test_the_package_embeds_with_the_shipped_module_identically() -> None:
    texts = ["Which authors wrote about machine learning?", "SELECT count(*) FROM flights", None]
    assert embeddings.embed(texts) == fe.embed_batch(texts)
    assert embeddings.builtin().NAME == fe.NAME
    assert embeddings.builtin().__file__ == "plpython/fewshot_embedder.py"
