"""A real local HTTP server speaking the OpenAI chat-completions protocol, with failure injection.

Failures are asked for inside the judged text, so that they follow a job whatever worker or
order: `FAIL:<kind>*<n>` makes the first n requests whose last message carries it fail with
<kind>: 500, 429 (Retry-After: 1), timeout (answers after `slow_seconds`), malformed (a body
that is not JSON), notverdict (a well-formed answer that is not a verdict). After n failures it
answers normally. The verdict: "fail" when the item contains WRONG, else "pass"; pairwise: "a".
`delay` seconds are added to every answer (a slow provider).

`reply(body)` (optional) answers a request itself: it returns a Reply (any status, raw body,
headers, a slow drip) or None for the normal answer. Every request of any method is recorded
in `hits` (method, path, Authorization header), also those that are not chat completions.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_FAIL = re.compile(r"FAIL:(500|429|timeout|malformed|notverdict)\*(\d+)")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up (a timeout, a refused huge answer) is expected here


@dataclass
class Reply:
    """A raw answer: status, body bytes, headers; drip_seconds sends the body one byte at a time
    with that pause between bytes (a server that is never quite silent)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drip_seconds: float = 0.0


class FakeOpenAI:
    def __init__(self, *, delay: float = 0.0, slow_seconds: float = 3.0,
                 reply: Callable[[dict[str, Any]], Reply | None] | None = None) -> None:
        self.delay = delay
        self.slow_seconds = slow_seconds
        self.reply = reply
        self.hits: list[tuple[str, str, str | None]] = []  # (method, path, Authorization) of every request
        self.requests: list[dict[str, Any]] = []  # every request body, with its headers
        self.failures: Counter[str] = Counter()  # injected failures served, per kind
        self._served: Counter[str] = Counter()  # requests seen per failure marker and item
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
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

            def _hit(self) -> None:
                with fake._lock:
                    fake.hits.append((self.command, self.path, self.headers.get("Authorization")))

            def do_GET(self) -> None:  # noqa: N802
                self._hit()
                self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:  # noqa: N802
                self._hit()
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                body["_authorization"] = self.headers.get("Authorization")
                if not self.path.endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                custom = fake.reply(body) if fake.reply else None
                if custom is not None:
                    with fake._lock:
                        fake.requests.append(body)
                    self._reply(custom)
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

            def _reply(self, r: Reply) -> None:
                if not r.drip_seconds:
                    self._send(r.status, r.body, r.headers)
                    return
                self.send_response(r.status)
                self.send_header("Content-Length", str(len(r.body)))
                self.end_headers()
                try:
                    for i in range(len(r.body)):
                        self.wfile.write(r.body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(r.drip_seconds)
                except OSError:
                    pass  # the client gave up

        return Handler


if __name__ == "__main__":  # python tests/fake_openai.py [delay]: run it by hand
    import sys

    with FakeOpenAI(delay=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0) as server:
        print(server.url, flush=True)
        threading.Event().wait()
