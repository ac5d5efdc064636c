"""OTLP/HTTP traces: decoding (protobuf or OTLP/JSON, gzip) and mapping spans to flywheel.traces rows.

Mapping (GenAI semantic conventions, OpenInference, Langfuse's attributes): the OTel trace id is the
run, the parent span the parent, the span name the node; model, input, output, tokens, node type and
latency come from the attributes listed below; every other attribute goes to metadata."""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class BadRequest(ValueError):
    """A body that is not OTLP: its one-line reason goes back with 400."""


class TooLarge(ValueError):
    """A body (after gzip) over the size limit: 413."""


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body without its Content-Encoding, refusing more than `limit` bytes (a gzip bomb included)."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc != "gzip":
        raise BadRequest(f"unsupported Content-Encoding {enc!r}: send gzip or none")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise BadRequest(f"body is not valid gzip: {e}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge(f"body over {limit} bytes once decompressed")
    return out


_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping wants base64 bytes."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in _ID_FIELDS and isinstance(v, str):
                try:
                    v = base64.b64encode(bytes.fromhex(v)).decode()
                except ValueError:
                    raise BadRequest(f"{k} {v[:40]!r} is not hex") from None
            out[k] = _hex_ids_to_base64(v)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def parse(body: bytes, content_type: str | None) -> ExportTraceServiceRequest:
    ctype = (content_type or "").split(";")[0].strip().lower()
    req = ExportTraceServiceRequest()
    if ctype == "application/x-protobuf":
        try:
            req.ParseFromString(body)
        except (DecodeError, RecursionError) as e:
            raise BadRequest(f"malformed protobuf: {e or 'cannot decode ExportTraceServiceRequest'}") from None
    elif ctype == "application/json":
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise BadRequest(f"malformed JSON: {str(e).splitlines()[0]}") from None
        if not isinstance(doc, dict):
            raise BadRequest("malformed OTLP/JSON: the body must be an object with resourceSpans")
        try:
            json_format.ParseDict(_hex_ids_to_base64(doc), req, ignore_unknown_fields=True)
        except (json_format.ParseError, RecursionError, TypeError, ValueError) as e:
            raise BadRequest(f"malformed OTLP/JSON: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    else:
        raise BadRequest(f"unsupported Content-Type {ctype or 'none'!r}:"
                         " send application/x-protobuf or application/json")
    return req


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@dataclass
class Row:
    """One span as a flywheel.traces row, with its OTel ids."""

    otel_trace_id: str
    span_id: str
    parent_span_id: str | None
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    node: str | None = None
    node_type: str = "other"
    user_id: str | None = None
    session_id: str | None = None
    input: str | None = None
    output: str | None = None
    model: str | None = None
    latency_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


_OPENINFERENCE_KINDS = {"LLM": "writer", "RETRIEVER": "retriever", "TOOL": "tool", "GUARDRAIL": "guard"}
_GENAI_OPERATIONS = {"chat": "writer", "text_completion": "writer", "generate_content": "writer",
                     "execute_tool": "tool"}
_LANGFUSE_TYPES = {"generation": "writer", "retriever": "retriever", "tool": "tool", "guardrail": "guard"}
_MODEL = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name",
          "langfuse.observation.model.name")
_TOKENS_IN = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
_TOKENS_OUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion")
_INPUT = ("input.value", "gen_ai.prompt", "langfuse.observation.input")
_OUTPUT = ("output.value", "gen_ai.completion", "langfuse.observation.output")
_USER = ("user.id", "langfuse.user.id", "enduser.id")
_SESSION = ("session.id", "langfuse.session.id", "gen_ai.conversation.id")
_INPUT_EVENTS = ("gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message")


def _take(attrs: dict[str, Any], names: tuple[str, ...], used: set[str]) -> Any:
    for n in names:
        if attrs.get(n) not in (None, ""):
            used.add(n)
            return attrs[n]
    return None


def _text(v: Any) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else json.dumps(v)


def _count(v: Any) -> int | None:
    try:
        n = int(v)
    except (TypeError, ValueError):
        return None
    return n if 0 <= n < 2**31 else None


def _message_text(m: Any) -> Any:
    """A semconv message's text: its content, or its text parts joined."""
    if not isinstance(m, dict):
        return m
    if m.get("content") is not None:
        return m["content"]
    parts = m.get("parts")
    if isinstance(parts, list):
        texts = [p.get("content") or p.get("text") for p in parts if isinstance(p, dict)]
        if texts and all(isinstance(t, str) for t in texts):
            return "\n".join(str(t) for t in texts)
    return m


def _messages(attrs: dict[str, Any], name: str, used: set[str]) -> str | None:
    """gen_ai.input.messages / gen_ai.output.messages (a JSON list of messages): one message gives its
    text; several, a JSON list of {role, content}."""
    raw = attrs.get(name)
    if raw in (None, ""):
        return None
    used.add(name)
    try:
        msgs = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return _text(raw)
    if not isinstance(msgs, list) or not msgs:
        return _text(msgs)
    if len(msgs) == 1:
        return _text(_message_text(msgs[0]))
    return json.dumps([{"role": m.get("role") if isinstance(m, dict) else None, "content": _message_text(m)}
                       for m in msgs])


def _indexed_messages(attrs: dict[str, Any], prefix: str, content: str, used: set[str]) -> str | None:
    """Flattened message lists: gen_ai.prompt.0.content (OpenLLMetry), llm.input_messages.0.message.content
    (OpenInference). One message: its text; several: a JSON list of {role, content}."""
    messages = []
    i = 0
    while f"{prefix}.{i}.{content}" in attrs or f"{prefix}.{i}.role" in attrs or f"{prefix}.{i}.message.role" in attrs:
        role_key = f"{prefix}.{i}.role" if f"{prefix}.{i}.role" in attrs else f"{prefix}.{i}.message.role"
        messages.append({"role": attrs.get(role_key), "content": attrs.get(f"{prefix}.{i}.{content}")})
        used.update(k for k in attrs if k.startswith(f"{prefix}.{i}."))
        i += 1
    if not messages:
        return None
    if len(messages) == 1:
        return _text(messages[0]["content"])
    return json.dumps(messages)


def span_row(span: Any, resource: dict[str, Any], scope: str) -> Row:
    attrs = attributes(span.attributes)
    used: set[str] = set()
    row = Row(otel_trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
              parent_span_id=span.parent_span_id.hex() or None, node=span.name or None)
    kind = (_take(attrs, ("openinference.span.kind",), used) or "")
    op = _take(attrs, ("gen_ai.operation.name",), used)
    lf_type = _take(attrs, ("langfuse.observation.type",), used)
    row.node_type = (_OPENINFERENCE_KINDS.get(str(kind).upper()) or _GENAI_OPERATIONS.get(str(op))
                     or _LANGFUSE_TYPES.get(str(lf_type)) or "other")
    if row.node_type == "other" and attrs.get("llm.request.type") in ("chat", "completion"):  # OpenLLMetry
        row.node_type = "writer"
    row.model = _text(_take(attrs, _MODEL, used))
    row.tokens_in = _count(_take(attrs, _TOKENS_IN, used))
    row.tokens_out = _count(_take(attrs, _TOKENS_OUT, used))
    # The messages first (OpenInference's input.value is the whole request body), then the plain values.
    row.input = (_messages(attrs, "gen_ai.input.messages", used)
                 or _indexed_messages(attrs, "gen_ai.prompt", "content", used)
                 or _indexed_messages(attrs, "llm.input_messages", "message.content", used)
                 or _text(_take(attrs, _INPUT, used)))
    row.output = (_messages(attrs, "gen_ai.output.messages", used)
                  or _indexed_messages(attrs, "gen_ai.completion", "content", used)
                  or _indexed_messages(attrs, "llm.output_messages", "message.content", used)
                  or _text(_take(attrs, _OUTPUT, used)))
    usage = attrs.get("langfuse.observation.usage_details")  # Langfuse: a JSON object of counts
    if isinstance(usage, str) and (row.tokens_in is None or row.tokens_out is None):
        try:
            counts = json.loads(usage)
        except ValueError:
            counts = None
        if isinstance(counts, dict):
            used.add("langfuse.observation.usage_details")
            row.tokens_in = row.tokens_in if row.tokens_in is not None else _count(counts.get("input"))
            row.tokens_out = row.tokens_out if row.tokens_out is not None else _count(counts.get("output"))
    row.user_id = _text(_take(attrs, _USER, used))
    row.session_id = _text(_take(attrs, _SESSION, used))
    # Message events (the semconv's event form): inputs in order, the choice as output.
    events_in = [attributes(e.attributes) for e in span.events if e.name in _INPUT_EVENTS]
    choices = [attributes(e.attributes) for e in span.events if e.name == "gen_ai.choice"]
    if row.input is None and events_in:
        row.input = _text(events_in[0].get("content")) if len(events_in) == 1 else json.dumps(events_in)
    if row.output is None and choices:
        c = choices[0]
        msg = c.get("message")
        row.output = _text(msg.get("content") if isinstance(msg, dict) else c.get("content") or msg)
    if span.end_time_unix_nano >= span.start_time_unix_nano > 0:
        row.latency_ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    meta: dict[str, Any] = {k: v for k, v in attrs.items() if k not in used}
    meta["otel.trace_id"] = row.otel_trace_id
    meta["otel.span_id"] = row.span_id
    if row.parent_span_id:
        meta["otel.parent_span_id"] = row.parent_span_id
    if span.start_time_unix_nano:
        meta["otel.start_time_unix_nano"] = span.start_time_unix_nano
    if span.status.code:
        meta["otel.status"] = {1: "ok", 2: "error"}.get(span.status.code, span.status.code)
        if span.status.message:
            meta["otel.status_message"] = span.status.message
    if kind:
        meta["openinference.span.kind"] = kind
    if op:
        meta["gen_ai.operation.name"] = op
    if resource.get("service.name"):
        meta["service.name"] = resource["service.name"]
    if scope:
        meta["otel.scope"] = scope
    row.metadata = meta
    return row


def rows_of(req: ExportTraceServiceRequest) -> list[Row]:
    """Every span of the request as a row; a span without a valid trace or span id is a 400."""
    rows = []
    for rs in req.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8 or span.trace_id == bytes(16) \
                        or span.span_id == bytes(8) or len(span.parent_span_id) not in (0, 8):
                    raise BadRequest("a span needs a 16-byte trace id and an 8-byte span id (parent: 8 bytes or none)")
                rows.append(span_row(span, resource, ss.scope.name))
    return rows


