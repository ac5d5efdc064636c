"""A real local HTTP server speaking the OpenAI chat-completions protocol, with failure injection.

Failures are asked for inside the judged text, so that they follow a job whatever worker or
order: `FAIL:<kind>*<n>` makes the first n requests whose last message carries it fail with
<kind>: 500, 429 (Retry-After: 1), timeout (answers after `slow_seconds`), malformed (a body
that is not JSON), notverdict (a well-formed answer that is not a verdict). After n failures it
answers normally. The verdict: "fail" when the item contains WRONG, else "pass"; pairwise: "a".
`delay` seconds are added to every answer (a slow provider).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_FAIL = re.compile(r"FAIL:(500|429|timeout|malformed|notverdict)\*(\d+)")


class FakeOpenAI:
    def __init__(self, *, delay: float = 0.0, slow_seconds: float = 3.0) -> None:
        self.delay = delay
        self.slow_seconds = slow_seconds
        self.requests: list[dict[str, Any]] = []  # every request body, with its headers
        self.failures: Counter[str] = Counter()  # injected failures served, per kind
        self._served: Counter[str] = Counter()  # requests seen per failure marker and item
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _decide(self, body: dict[str, Any]) -> tuple[str, str]:
        """(what to do, the answer's content) for one request."""
        item = body["messages"][-1]["content"]
        match = _FAIL.search(item)
        with self._lock:
            self.requests.append(body)
            if match:
                key = f"{match.group(0)}|{item}"
                self._served[key] += 1
                if self._served[key] <= int(match.group(2)):
                    self.failures[match.group(1)] += 1
                    return match.group(1), ""
        if "<answer_a>" in item:
            return "ok", json.dumps({"winner": "a", "reason": "fake: a"})
        verdict = "fail" if "WRONG" in item else "pass"
        return "ok", json.dumps({"verdict": verdict, "reason": f"fake: {verdict}"})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real providers

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                body["_authorization"] = self.headers.get("Authorization")
                if not self.path.endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                action, content = fake._decide(body)
                if fake.delay:
                    time.sleep(fake.delay)
                if action == "500":
                    self._send(500, b'{"error": {"message": "injected server error"}}')
                elif action == "429":
                    self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "1"})
                elif action == "timeout":
                    time.sleep(fake.slow_seconds)
                    self._send(500, b'{"error": {"message": "too late"}}')
                elif action == "malformed":
                    self._send(200, b'{"choices": [{"message": {"content": "unterminated')
                else:
                    if action == "notverdict":
                        content = "I think the answer is quite nice overall."
                    answer = {
                        "id": "chatcmpl-fake", "object": "chat.completion", "model": body.get("model"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                    }
                    self._send(200, json.dumps(answer).encode())

        return Handler


if __name__ == "__main__":  # python tests/fake_openai.py [delay]: run it by hand
    import sys

    with FakeOpenAI(delay=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0) as server:
        print(server.url, flush=True)
        threading.Event().wait()
