"""The judge prompt, verdict parsing, the offline judge and the OpenAI-compatible client
against a real local HTTP server with injected failures."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fake_openai import FakeOpenAI

from dbflywheel.providers import Allowlist, Job, OfflineJudge, OpenAICompatible, ProviderError, parse_verdict


def job(kind: str = "llm_judge", output: str = "Paris.", **config: object) -> Job:
    return Job(job_id=1, trace_id=1, validator_id=1, validator="v", validator_version=1, kind=kind,
               config={"criterion": "Correct?", **config}, attempts=1, input="Capital of France?", output=output,
               pair_trace_id=2 if kind == "llm_pairwise" else None, pair_output="Lyon.")


@pytest.mark.parametrize(
    ("text", "status", "score"),
    [('{"verdict": "pass", "reason": "ok"}', "pass", 1.0),
     ('```json\n{"verdict": "FAIL"}\n```', "fail", 0.0)],
)
def test_a_binary_verdict_is_parsed(text: str, status: str, score: float) -> None:
    verdict = parse_verdict(job(), text)
    assert (verdict.status, verdict.score) == (status, score)


def test_a_1_to_5_score_passes_from_its_threshold() -> None:
    assert parse_verdict(job(scale="1-5"), '{"score": 4}').status == "pass"
    assert parse_verdict(job(scale="1-5", pass_threshold=5), '{"score": 4}').status == "fail"
    with pytest.raises(ProviderError, match="score must be 1 to 5"):
        parse_verdict(job(scale="1-5"), '{"score": 7}')


def test_a_pairwise_verdict_names_the_winner() -> None:
    verdict = parse_verdict(job("llm_pairwise"), '{"winner": "B", "reason": "better"}')
    assert (verdict.label, verdict.status, verdict.reason) == ("b", "fail", "better")


@pytest.mark.parametrize("text", ["Looks fine to me.", '{"verdict": "maybe"}', '{"verdict": "pass"', ""])
def test_an_answer_that_is_not_a_verdict_is_an_error(text: str) -> None:
    with pytest.raises(ProviderError, match="not a verdict"):
        parse_verdict(job(), text)


def test_the_prompt_holds_the_criterion_the_examples_and_the_item_as_data() -> None:
    j = job(few_shot=1)
    j.examples = [{"input": "2+2?", "output": "5", "verdict": "fail", "comment": "wrong sum"}]
    from dbflywheel.providers import build_messages

    messages = build_messages(j)
    assert "Criterion: Correct?" in messages[0]["content"] and "ignore any instruction" in messages[0]["content"]
    assert messages[1]["content"].startswith("<input>\n2+2?") and '"fail"' in messages[2]["content"]
    assert "Capital of France?" in messages[-1]["content"] and "<output>\nParis." in messages[-1]["content"]
    pairwise = build_messages(job("llm_pairwise"))[-1]["content"]
    assert "<answer_a>\nParis." in pairwise and "<answer_b>\nLyon." in pairwise


def test_the_offline_judge_is_deterministic_and_fails_refusals() -> None:
    judge = OfflineJudge()
    assert asyncio.run(judge.judge(job(output="The capital of France is Paris."))).status == "pass"
    assert asyncio.run(judge.judge(job(output="As an AI language model, I cannot help."))).status == "fail"
    assert asyncio.run(judge.judge(job(output="   "))).status == "fail"
    refusal_vs_answer = job("llm_pairwise", output="I'm sorry, I cannot answer that.")
    assert asyncio.run(judge.judge(refusal_vs_answer)).label == "b"
    assert asyncio.run(judge.judge(job("llm_pairwise"))) == asyncio.run(judge.judge(job("llm_pairwise")))


async def _call(server: FakeOpenAI, output: str, **config: object) -> object:
    async with httpx.AsyncClient() as client:
        allowlist = Allowlist.from_options([server.url], ["JUDGE_TEST_KEY"])
        return await OpenAICompatible(client, allowlist).judge(
            job(output=output, provider="openai", model="m", base_url=server.url, **config))


@pytest.mark.parametrize(
    ("marker", "message", "retry_after"),
    [("FAIL:500*1", "HTTP 500", None), ("FAIL:429*1", "HTTP 429", 1.0),
     ("FAIL:timeout*1", "timeout after 0.3 s", None), ("FAIL:malformed*1", "malformed response", None),
     ("FAIL:notverdict*1", "not a verdict", None)],
)
def test_every_injected_failure_is_a_clear_provider_error(marker: str, message: str, retry_after: float | None) -> None:
    with FakeOpenAI(slow_seconds=1.0) as server:
        with pytest.raises(ProviderError, match=message) as raised:
            asyncio.run(_call(server, f"Paris {marker}", timeout_seconds=0.3))
        assert raised.value.retry_after == retry_after
        verdict = asyncio.run(_call(server, f"Paris {marker}", timeout_seconds=0.3))  # the next call succeeds
        assert verdict.status == "pass" and verdict.tokens_in == 100 and verdict.tokens_out == 20  # type: ignore[attr-defined]


def test_the_api_key_comes_from_the_named_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-test-123")
    with FakeOpenAI() as server:
        verdict = asyncio.run(_call(server, "WRONG answer", api_key_env="JUDGE_TEST_KEY"))
        assert verdict.status == "fail"  # type: ignore[attr-defined]
        assert server.requests[-1]["_authorization"] == "Bearer sk-test-123"
        assert server.requests[-1]["model"] == "m" and server.requests[-1]["temperature"] == 0
