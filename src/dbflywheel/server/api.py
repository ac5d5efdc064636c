"""The JSON and OTLP API: /v1/traces (OTLP/HTTP), /v1/feedback, /v1/check-input, /v1/few-shot, Langfuse's
paths, /metrics. Every request that touches data runs in acting_as(key's app role): row-level security
applies as for that app's own login, and the server's login holds no other rights."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from pydantic import BaseModel, Field, model_validator

from dbflywheel.server import metrics, otlp
from dbflywheel.server.auth import Key, authenticate, take_rows
from dbflywheel.server.db import acting_as
from dbflywheel.server.ingest import trace_of_span, write_spans

MAX_BODY = int(os.environ.get("DBFLYWHEEL_SERVE_MAX_BODY", str(8 * 1024 * 1024)))  # bytes, after gzip too
access_log = logging.getLogger("dbflywheel.access")
router = APIRouter()
KeyDep = Annotated[Key, Depends(authenticate)]


class Error(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error}, 401: {"model": Error}, 404: {"model": Error}, 413: {"model": Error},
    422: {"model": Error}, 429: {"model": Error}, 503: {"model": Error}}


def _one_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def db_error(e: psycopg.Error) -> HTTPException:
    """A database refusal as an HTTP answer: an unknown or another app's trace is 404 (never which)."""
    if isinstance(e, psycopg.errors.ForeignKeyViolation | psycopg.errors.InsufficientPrivilege
                  | psycopg.errors.NoDataFound):
        return HTTPException(404, "no such trace")
    if isinstance(e, psycopg.errors.UniqueViolation | psycopg.errors.SerializationFailure
                  | psycopg.errors.DeadlockDetected):
        return HTTPException(503, "a concurrent request wrote the same rows: send again", headers={"Retry-After": "1"})
    if isinstance(e, psycopg.errors.IntegrityError | psycopg.errors.DataError | psycopg.errors.RaiseException
                  | psycopg.errors.InvalidParameterValue):
        return HTTPException(400, _one_line(e))
    return HTTPException(503, f"database unavailable: {type(e).__name__}", headers={"Retry-After": "1"})


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise HTTPException(413, f"body over {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPException(413, f"body over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# --- OTLP ---
_OTLP_BODY = {"requestBody": {"required": True, "content": {
    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": {"type": "object"}}}}}


async def _ingest(request: Request, key: Key) -> Response:
    body = await read_body(request)
    try:
        raw = otlp.decompress(body, request.headers.get("content-encoding"), MAX_BODY)
        req = otlp.parse(raw, request.headers.get("content-type"))
        rows = otlp.rows_of(req)
    except otlp.TooLarge as e:
        raise HTTPException(413, str(e)) from None
    except otlp.BadRequest as e:
        raise HTTPException(400, str(e)) from None
    if rows:
        await take_rows(request, key, len(rows))
        try:
            async with acting_as(request.app.state.pool, key.role) as conn:
                written = await write_spans(conn, rows)
        except psycopg.Error as e:
            raise db_error(e) from None
        except otlp.BadRequest as e:  # found while writing: the transaction is rolled back
            raise HTTPException(400, str(e)) from None
        metrics.ROWS.inc("traces", written)
    if (request.headers.get("content-type") or "").startswith("application/json"):
        return JSONResponse({})
    return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")


@router.post("/v1/traces", tags=["otlp"], responses=ERRORS, openapi_extra=_OTLP_BODY)
async def otlp_traces(request: Request, key: KeyDep) -> Response:
    """OTLP/HTTP traces (protobuf or JSON, gzip or not): each span becomes a trace; re-sent spans are skipped."""
    return await _ingest(request, key)


@router.post("/api/public/otel/v1/traces", tags=["langfuse"], responses=ERRORS, openapi_extra=_OTLP_BODY)
async def langfuse_otel_traces(request: Request, key: KeyDep) -> Response:
    """Langfuse's OTLP path (Basic auth public:secret, the secret being a dbflywheel key)."""
    return await _ingest(request, key)


# --- feedback ---
class FeedbackIn(BaseModel):
    """Names a trace (trace_id, trace_uid, or otel_trace_id with optional otel_span_id) and what the user said;
    or the founding shape: question, response, rating 1-5, comment (a trace is recorded when none is named)."""

    trace_id: int | None = Field(None, ge=1, le=2**63 - 1)
    trace_uid: uuid.UUID | None = None
    otel_trace_id: str | None = Field(None, pattern="^[0-9a-fA-F]{32}$")
    otel_span_id: str | None = Field(None, pattern="^[0-9a-fA-F]{16}$")
    kind: Literal["thumbs", "rating", "correction", "click", "dwell", "requery", "continuation",
                  "comment"] | None = None
    value: float | None = Field(None, allow_inf_nan=False)
    comment: str | None = Field(None, max_length=100_000)
    corrected_output: str | None = Field(None, max_length=1_000_000)
    source: str = Field("user", max_length=100)
    user_id: str | None = Field(None, max_length=1000)
    question: str | None = Field(None, max_length=1_000_000)
    response: str | None = Field(None, max_length=1_000_000)
    rating: int | None = Field(None, ge=1, le=5)

    @model_validator(mode="after")
    def _says_something(self) -> FeedbackIn:
        named = [self.trace_id, self.trace_uid, self.otel_trace_id]
        if sum(x is not None for x in named) > 1:
            raise ValueError("name the trace one way: trace_id, trace_uid or otel_trace_id")
        if self.kind is None and self.rating is None:
            raise ValueError("give kind (and value) or rating")
        if all(x is None for x in named) and self.question is None:
            raise ValueError("name a trace (trace_id, trace_uid, otel_trace_id) or give question and response")
        return self


class FeedbackOut(BaseModel):
    feedback_id: int
    trace_id: int


class FeedbackRow(BaseModel):
    id: int
    trace_id: int
    kind: str
    value: float | None
    comment: str | None
    corrected_output: str | None
    source: str
    user_id: str | None
    created_at: str


def _to_db(value: str | None) -> str | None:
    return value.replace("\x00", "") if value is not None else None


@router.post("/v1/feedback", tags=["feedback"], responses=ERRORS, status_code=201)
async def post_feedback(body: FeedbackIn, request: Request, key: KeyDep) -> FeedbackOut:
    """Records feedback on a trace, as flywheel.record_feedback takes it."""
    kind = body.kind or "rating"
    value = body.value if body.kind is not None else float(body.rating or 0)
    try:
        async with acting_as(request.app.state.pool, key.role) as conn:
            trace_id = body.trace_id
            if body.trace_uid is not None:
                cur = await conn.execute("SELECT id FROM flywheel.traces WHERE uid = %s", (body.trace_uid,))
                row = await cur.fetchone()
                trace_id = row[0] if row else None
            elif body.otel_trace_id is not None:
                trace_id = await trace_of_span(conn, body.otel_trace_id, body.otel_span_id)
            elif trace_id is None:  # the founding shape: the question and response become a trace
                cur = await conn.execute(
                    "INSERT INTO flywheel.traces (uid, node, input, output, user_id) VALUES (gen_random_uuid(),"
                    " 'feedback', %s, %s, %s) RETURNING id", (_to_db(body.question), _to_db(body.response),
                                                            _to_db(body.user_id)))
                trace_id = (await cur.fetchone())[0]  # type: ignore[index]
            if trace_id is None:
                raise HTTPException(404, "no such trace")
            cur = await conn.execute(
                "SELECT flywheel.record_feedback(%s::bigint, %s, %s, %s, %s, %s, %s)",
                (trace_id, kind, value, _to_db(body.corrected_output), _to_db(body.comment), _to_db(body.source),
                 _to_db(body.user_id)))
            (fid,) = await cur.fetchone()  # type: ignore[misc]
    except psycopg.Error as e:
        raise db_error(e) from None
    metrics.ROWS.inc("feedback")
    return FeedbackOut(feedback_id=fid, trace_id=trace_id)


@router.get("/v1/feedback", tags=["feedback"], responses=ERRORS)
async def get_feedback(request: Request, key: KeyDep,
                       trace_id: Annotated[int, Query(ge=1, le=2**63 - 1)]) -> list[FeedbackRow]:
    """The feedback of one of this app's traces (404 for an unknown or another app's trace)."""
    try:
        async with acting_as(request.app.state.pool, key.role) as conn:
            cur = await conn.execute("SELECT 1 FROM flywheel.traces WHERE id = %s", (trace_id,))
            if await cur.fetchone() is None:
                raise HTTPException(404, "no such trace")
            cur = await conn.execute(
                "SELECT id, trace_id, kind, value, comment, corrected_output, source, user_id, created_at::text"
                " FROM flywheel.feedback WHERE trace_id = %s ORDER BY id", (trace_id,))
            rows = await cur.fetchall()
    except psycopg.Error as e:
        raise db_error(e) from None
    names = FeedbackRow.model_fields
    return [FeedbackRow(**dict(zip(names, r, strict=True))) for r in rows]


# --- check-input, few-shot ---
class CheckInputIn(BaseModel):
    input: str = Field(max_length=1_000_000)


class Verdict(BaseModel):
    validator: str
    validator_version: int
    status: str
    score: float | None
    label: str | None
    details: dict[str, Any] | list[Any] | str | float | bool | None


@router.post("/v1/check-input", tags=["validators"], responses=ERRORS)
async def check_input(body: CheckInputIn, request: Request, key: KeyDep) -> list[Verdict]:
    """The app's input guards on a text before it reaches the model (flywheel.check_input)."""
    try:
        async with acting_as(request.app.state.pool, key.role) as conn:
            cur = await conn.execute("SELECT * FROM flywheel.check_input(%s)", (_to_db(body.input),))
            rows = await cur.fetchall()
    except psycopg.Error as e:
        raise db_error(e) from None
    return [Verdict(validator=r[0], validator_version=r[1], status=r[2], score=r[3], label=r[4], details=r[5])
            for r in rows]


class FewShotIn(BaseModel):
    query: str = Field(max_length=100_000)
    k: int = Field(5, ge=1, le=100)
    validator: str | None = Field(None, max_length=63)


class Example(BaseModel):
    trace_id: int
    input: str | None
    output: str | None
    label: str | None
    similarity: float | None
    score: float | None


@router.post("/v1/few-shot", tags=["fewshot"], responses=ERRORS)
async def few_shot(body: FewShotIn, request: Request, key: KeyDep) -> list[Example]:
    """The app's best past examples for a query (flywheel.few_shot, embedded in the database)."""
    try:
        async with acting_as(request.app.state.pool, key.role) as conn:
            cur = await conn.execute("SELECT * FROM flywheel.few_shot(%s::text, %s, %s)",
                                     (_to_db(body.query), body.k, _to_db(body.validator)))
            rows = await cur.fetchall()
    except psycopg.Error as e:
        raise db_error(e) from None
    return [Example(trace_id=r[0], input=r[1], output=r[2], label=r[3], similarity=r[4], score=r[5]) for r in rows]


# --- Langfuse scores ---
class LangfuseScore(BaseModel):
    traceId: str = Field(pattern="^[0-9a-fA-F]{32}$")
    observationId: str | None = Field(None, pattern="^[0-9a-fA-F]{16}$")
    name: str = Field(max_length=200)
    value: float | str
    dataType: Literal["NUMERIC", "BOOLEAN", "CATEGORICAL"] | None = None
    comment: str | None = Field(None, max_length=100_000)
    id: str | None = Field(None, max_length=200)


class LangfuseScoreOut(BaseModel):
    id: str


def score_feedback(s: LangfuseScore) -> tuple[str, float | None, str | None]:
    """A Langfuse score as (kind, value, comment): a boolean is a thumb, 1-5 a rating, the rest a comment."""
    boolean = s.dataType == "BOOLEAN" or (s.dataType is None and s.name.lower() in ("thumbs", "user-feedback"))
    if isinstance(s.value, float) and boolean and s.value in (0, 1):
        return "thumbs", (1.0 if s.value >= 1 else -1.0), s.comment
    if isinstance(s.value, float) and 1 <= s.value <= 5 and s.dataType != "CATEGORICAL":
        return "rating", s.value, s.comment
    text = f"{s.name}: {s.value}" + (f" ({s.comment})" if s.comment else "")
    return "comment", None, text


class LangfuseBatchResult(BaseModel):
    accepted: int
    rejected: int
    errors: list[Error]


async def _record_score(request: Request, key: Key, score: LangfuseScore) -> None:
    kind, value, comment = score_feedback(score)
    try:
        async with acting_as(request.app.state.pool, key.role) as conn:
            trace_id = await trace_of_span(conn, score.traceId, score.observationId)
            if trace_id is None:
                raise HTTPException(404, "no such trace")
            await conn.execute("SELECT flywheel.record_feedback(%s::bigint, %s, %s, NULL, %s, 'langfuse')",
                               (trace_id, kind, value, _to_db(comment)))
    except psycopg.Error as e:
        raise db_error(e) from None
    metrics.ROWS.inc("feedback")


@router.post("/api/public/scores", tags=["langfuse"], responses={**ERRORS, 207: {"model": LangfuseBatchResult}})
async def langfuse_score(body: LangfuseScore | list[LangfuseScore], request: Request,
                         key: KeyDep) -> LangfuseScoreOut | LangfuseBatchResult:
    """Langfuse's score call (one score, or the SDK's batch): lands as feedback on the trace of its OTel
    trace (and observation) id. A batch answers 207 with what was accepted and why the rest was not."""
    if isinstance(body, LangfuseScore):
        await _record_score(request, key, body)
        return LangfuseScoreOut(id=body.id or str(uuid.uuid4()))
    if len(body) > 1000:
        raise HTTPException(413, "at most 1000 scores a batch")
    errors = []
    for score in body:
        try:
            await _record_score(request, key, score)
        except HTTPException as e:
            if e.status_code == 503:
                raise
            errors.append(Error(detail=f"{score.id or score.name}: {e.detail}"))
    result = LangfuseBatchResult(accepted=len(body) - len(errors), rejected=len(errors), errors=errors)
    return JSONResponse(result.model_dump(), status_code=207)  # type: ignore[return-value]


# --- /metrics ---
@router.get("/metrics", tags=["server"], response_class=PlainTextResponse)
async def prometheus(request: Request) -> PlainTextResponse:
    """Prometheus text: this process's requests, rejects and rows ingested; the judge queue's depth."""
    depth = None
    try:
        async with request.app.state.pool.connection(timeout=2) as conn:
            depth = (await (await conn.execute("SELECT flywheel._judge_queue_depth()")).fetchone())[0]  # type: ignore[index]
    except Exception:  # the counters are still worth answering with
        pass
    return PlainTextResponse(metrics.render(depth), media_type="text/plain; version=0.0.4")


def setup(app: FastAPI) -> None:
    """Access logs (one JSON line a request), counters, and one-line error bodies for bad requests."""

    @app.middleware("http")
    async def access(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        metrics.REQUESTS.inc(str(response.status_code))
        if response.status_code in (400, 413, 422):
            metrics.REJECTS.inc(str(response.status_code))
        key = getattr(request.state, "key", None)
        access_log.info(json.dumps({
            "method": request.method, "path": request.url.path, "status": response.status_code,
            "ms": round((time.perf_counter() - start) * 1000, 2), "app": key.app if key else None,
            "client": request.client.host if request.client else None}))
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"detail": f"{where + ': ' if where else ''}{first.get('msg', 'invalid request')}"},
                            status_code=422)
