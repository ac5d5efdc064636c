"""Where a judge's key may go: the worker operator's allowlist of base URLs and key variables
(not the admin's judge config), no redirects, a total deadline and a size cap on every call,
and provider answers of any shape ending as a verdict or a clear error."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from fake_openai import FakeOpenAI, Reply
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbflywheel.errors import FlywheelError
from dbflywheel.providers import Allowlist, Job, OpenAICompatible, ProviderError, Verdict


def job(output: str = "Paris.", **config: object) -> Job:
    return Job(job_id=1, trace_id=1, validator_id=1, validator="v", validator_version=1, kind="llm_judge",
               config={"criterion": "Correct?", "provider": "openai", "model": "m", **config}, attempts=1,
               input="Capital of France?", output=output)


async def _call(allowlist: Allowlist, output: str = "Paris.", **config: object) -> Verdict:
    async with httpx.AsyncClient() as client:
        return await OpenAICompatible(client, allowlist).judge(job(output, **config))


def test_a_base_url_outside_the_allowlist_gets_no_request_and_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_JUDGE_KEY", "sk-secret")
    with FakeOpenAI() as allowed, FakeOpenAI() as other:
        allow = Allowlist.from_options([allowed.url], ["FAKE_JUDGE_KEY"])
        with pytest.raises(ProviderError, match="not allowed by this worker") as raised:
            asyncio.run(_call(allow, base_url=other.url, api_key_env="FAKE_JUDGE_KEY"))
        assert raised.value.final  # dead-lettered at once: retrying cannot help
        assert other.hits == [] and allowed.hits == []
        assert asyncio.run(_call(allow, base_url=allowed.url, api_key_env="FAKE_JUDGE_KEY")).status == "pass"
        assert allowed.hits == [("POST", "/v1/chat/completions", "Bearer sk-secret")]


def test_without_flags_only_the_openai_api_and_its_default_variable_are_allowed() -> None:
    allow = Allowlist.from_options([], [], environ={})
    assert allow.resolve({"provider": "openai"}) == ("https://api.openai.com/v1", "OPENAI_API_KEY")
    with pytest.raises(ProviderError, match="not allowed"):
        allow.resolve({"base_url": "http://127.0.0.1:8000/v1"})
    with pytest.raises(ProviderError, match="not allowed"):
        allow.resolve({"api_key_env": "ANTHROPIC_API_KEY"})
    # The operator's own default base URL (an environment variable of the worker) is allowed.
    own = Allowlist.from_options([], [], environ={"DBFLYWHEEL_JUDGE_BASE_URL": "http://10.0.0.5:8000/v1"})
    assert own.resolve({}) == ("http://10.0.0.5:8000/v1", "OPENAI_API_KEY")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/v1evil",                     # a prefix of the path, not of its segments
    "http://127.0.0.1:8001/v1",                         # another port
    "https://127.0.0.1:8000/v1",                        # another scheme
    "http://127.0.0.1/v1",                              # the default port, not 8000
    "http://localhost:8000/v1",                         # the same machine by another name
    "http://127.0.0.1:8000@evil.example/v1",            # user info: the host is evil.example
    "http://evil.example#@127.0.0.1:8000/v1",           # a fragment hiding the host
    "http://evil.example\\@127.0.0.1:8000/v1",          # a backslash (parsers disagree)
    "http://127.0.0.1:8000/v1/../admin",                # dot segments
    "http://127.0.0.1:8000/v1/%2e%2e/admin",            # encoded dot segments
    "http://127.0.0.1:8000/v1?next=http://evil.example",  # a query
    "http://127.0.0.1:8000/v1\n",                       # control characters
    "http://127.0.0.1:8000.evil.example/v1",            # a port that is a host
    "http://127.0.0.1.:8000/v1",                        # a trailing dot
    "http://127.0.0.1:08000/v1x",
    "ftp://127.0.0.1:8000/v1",
    "http://[::1]:8000/v1",
    "//127.0.0.1:8000/v1",
    "http://\u013127.0.0.1:8000/v1",                    # non-ASCII
])
def test_only_urls_under_an_allowed_prefix_pass(url: str) -> None:
    allow = Allowlist.from_options(["http://127.0.0.1:8000/v1"], ["K"], environ={})
    with pytest.raises(ProviderError, match="base_url") as raised:
        allow.resolve({"base_url": url, "api_key_env": "K"})
    assert raised.value.final and "\n" not in str(raised.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/", "HTTP://127.0.0.1:8000/v1",
                                 "http://127.0.0.1:8000/v1/deployments/judge"])
def test_urls_under_an_allowed_prefix_pass(url: str) -> None:
    allow = Allowlist.from_options(["http://127.0.0.1:8000/v1/"], ["K"], environ={})
    assert allow.resolve({"base_url": url, "api_key_env": "K"}) == (url, "K")


@pytest.mark.parametrize("name", ["HOME", "PGPASSWORD", "PATH", "DBFLYWHEEL_DSN", "AWS_SECRET_ACCESS_KEY",
                                  "OPENAI_API_KEY\n", "../OPENAI_API_KEY", ""])
def test_a_variable_outside_the_allowlist_is_never_read(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("PGPASSWORD", "db-secret")
    with FakeOpenAI() as server:
        allow = Allowlist.from_options([server.url], ["*_API_KEY", "OPENAI_API_KEY"])
        with pytest.raises(ProviderError, match="api_key_env") as raised:
            asyncio.run(_call(allow, base_url=server.url, api_key_env=name))
        assert raised.value.final
        assert server.hits == []


def test_a_key_bound_to_an_endpoint_goes_nowhere_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("LOCAL_KEY", "sk-local")
    with FakeOpenAI() as local, FakeOpenAI() as lab:
        allow = Allowlist.from_options([local.url, lab.url], [f"LOCAL_KEY={local.url}", "OPENAI_API_KEY=https://api.openai.com/v1"])
        with pytest.raises(ProviderError, match="LOCAL_KEY"):
            asyncio.run(_call(allow, base_url=lab.url, api_key_env="LOCAL_KEY"))
        assert lab.hits == []
        asyncio.run(_call(allow, base_url=local.url, api_key_env="LOCAL_KEY"))
        # No api_key_env: the default variable is not for this endpoint, so the call carries no key.
        asyncio.run(_call(allow, base_url=lab.url))
        assert local.hits[-1][2] == "Bearer sk-local" and lab.hits == [("POST", "/v1/chat/completions", None)]


@pytest.mark.parametrize("entry", ["ftp://x/v1", "http://user:pw@host/v1", "not a url", "http://h/v1?q=1"])
def test_a_bad_allowlist_entry_is_refused_at_start(entry: str) -> None:
    with pytest.raises(FlywheelError, match="--allow-base-url"):
        Allowlist.from_options([entry], [], environ={})


@pytest.mark.parametrize("entry", ["HOME; rm", "K=ftp://x", "=http://h/v1", "A B"])
def test_a_bad_key_variable_entry_is_refused_at_start(entry: str) -> None:
    with pytest.raises(FlywheelError, match="--allow-key-env"):
        Allowlist.from_options([], [entry], environ={})


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_carries_the_key_nowhere(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    monkeypatch.setenv("FAKE_JUDGE_KEY", "sk-secret")
    with FakeOpenAI() as elsewhere:
        target = elsewhere.url + "/chat/completions"
        with FakeOpenAI(reply=lambda body: Reply(status, b"{}", {"Location": target})) as server:
            allow = Allowlist.from_options([server.url, elsewhere.url], ["FAKE_JUDGE_KEY"])
            with pytest.raises(ProviderError, match="redirect"):
                asyncio.run(_call(allow, base_url=server.url, api_key_env="FAKE_JUDGE_KEY"))
        assert elsewhere.hits == []


def _answer(content: object, usage: object = None) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}],
                       "usage": usage if usage is not None else {"prompt_tokens": 1, "completion_tokens": 1}}).encode()


def test_a_server_that_drips_its_answer_is_cut_off_at_the_timeout() -> None:
    body = _answer('{"verdict": "pass"}')
    with FakeOpenAI(reply=lambda b: Reply(200, body, drip_seconds=0.1)) as server:
        allow = Allowlist.from_options([server.url], [], environ={})
        started = time.monotonic()
        with pytest.raises(ProviderError, match="timeout after 0.5 s"):
            asyncio.run(_call(allow, base_url=server.url, timeout_seconds=0.5))
        assert time.monotonic() - started < 2.0


def test_a_huge_answer_is_refused_without_being_read_whole() -> None:
    body = _answer('{"verdict": "pass", "reason": "' + "x" * 5_000_000 + '"}')
    with FakeOpenAI(reply=lambda b: Reply(200, body)) as server:
        allow = Allowlist.from_options([server.url], [], environ={})
        with pytest.raises(ProviderError, match="too large"):
            asyncio.run(_call(allow, base_url=server.url))


def test_an_answer_of_many_braces_is_parsed_in_linear_time() -> None:
    body = _answer("{" * 200_000)
    with FakeOpenAI(reply=lambda b: Reply(200, body)) as server:
        allow = Allowlist.from_options([server.url], [], environ={})
        started = time.monotonic()
        with pytest.raises(ProviderError, match="not a verdict"):
            asyncio.run(_call(allow, base_url=server.url))
        assert time.monotonic() - started < 2.0


# -- answers of any shape -----------------------------------------------------------------
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12),
                  st.sampled_from(["many", "\x00", "\ud800", "pass", "fail", "-1", "1e999"]))
_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                     max_leaves=8)
_tokens = st.one_of(_json, st.sampled_from([-1, 2**31, 2**63, 10**30, 1.5, float("nan"), float("inf"), True, "100"]))
_reason = st.one_of(st.text(max_size=40), st.sampled_from(["a\x00b", "\ud800x", "x" * 5000, "\x00" * 10]), _json)
_content = st.one_of(
    st.builds(lambda v, r: json.dumps({"verdict": v, "reason": r}), st.sampled_from(["pass", "fail", "PASS", "maybe"]), _reason),
    st.builds(lambda v, r: json.dumps({"score": v, "reason": r}), _tokens, _reason),
    st.builds(lambda v, r: f"```json\n{{\"verdict\": \"{v}\", \"reason\": \"{r}\"}}\n```", st.sampled_from(["pass", "fail"]),
              st.text(max_size=20)),
    st.text(max_size=60), _json,
)


def _usage() -> st.SearchStrategy[object]:
    return st.one_of(st.fixed_dictionaries({"prompt_tokens": _tokens, "completion_tokens": _tokens}), _json)


_bodies = st.one_of(
    st.builds(_answer, _content, _usage()),
    st.builds(lambda c, u: json.dumps({"choices": c, "usage": u}).encode(), _json, _usage()),
    st.builds(lambda e: json.dumps({"error": e}).encode(), _json),
    st.binary(max_size=80),
    st.sampled_from([b"", b"null", b"[]", b'{"choices": []}', b'{"choices": [null]}', b"[" * 50_000 + b"]" * 50_000,
                     b'{"choices": [{"message": {"content": "{\\"verdict\\": \\"pass\\", \\"reason\\": \\"\\u0000\\"}"}}]}']),
)
_replies = st.builds(Reply, st.sampled_from([200, 200, 200, 201, 204, 302, 400, 401, 404, 429, 500, 503]), _bodies,
                     st.sampled_from([{}, {"Retry-After": "1"}, {"Retry-After": "-5"}, {"Retry-After": "soon"},
                                      {"Retry-After": "1e309"}]))


def assert_storable(verdict: Verdict) -> None:
    """What PostgreSQL accepts: integer token counts, text without NUL or lone surrogates."""
    assert verdict.status in ("pass", "fail", "skipped")
    for n in (verdict.tokens_in, verdict.tokens_out):
        assert n is None or (type(n) is int and 0 <= n < 2**31)
    assert isinstance(verdict.reason, str) and "\x00" not in verdict.reason and len(verdict.reason) <= 2000
    verdict.reason.encode("utf-8")  # no lone surrogates
    assert verdict.score is None or 0 <= verdict.score <= 5


def test_an_answer_of_any_shape_is_a_storable_verdict_or_a_clear_error() -> None:
    current: list[Reply] = []
    with FakeOpenAI(reply=lambda body: current[-1]) as server:  # one server: its shutdown takes 0.5 s
        allow = Allowlist.from_options([server.url], [], environ={})

        @settings(derandomize=True, max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(reply=_replies)
        def one_answer(reply: Reply) -> None:
            current.append(reply)
            try:
                verdict = asyncio.run(_call(allow, base_url=server.url, timeout_seconds=5))
            except ProviderError as e:
                assert 0 < len(str(e)) <= 1000 and "\x00" not in str(e)
                assert e.retry_after is None or 0 <= e.retry_after <= 3600
                return
            assert_storable(verdict)

        one_answer()
