"""The review web app's pages: sign-in, review queue, pairwise review, trace explorer, dashboards.

Every page that shows or writes data runs inside acting_as(reviewer's role): the database's
row-level security decides what the reviewer sees, and its triggers sign what they write."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Coroutine
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from psycopg import AsyncConnection

from dbflywheel import charts
from dbflywheel.server.db import acting_as
from dbflywheel.web import auth
from dbflywheel.web.render import environment

templates = environment()
STATIC = Path(__file__).resolve().parent / "static"
LEASE_MINUTES = 10
PAGE_SIZE = 50
VERDICTS = ("pass", "fail", "skip")


class WebRoute(APIRoute):
    """Every page: no session -> the sign-in page (a GET) ; a POST without the CSRF token -> 403."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except auth.NotSignedIn:
                return RedirectResponse("/ui/sign-in", status_code=303)
            except auth.BadCsrf:
                return page("message.html", 403, title="Refused",
                            message="This form is missing its security token (CSRF); reload the page and try again.")

        return guarded


# No script, style or frame but the app's own: even markup that escaped escaping would not run.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
                               " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status, headers=SECURITY_HEADERS)


router = APIRouter(route_class=WebRoute)

async def rows(conn: AsyncConnection, query: str, params: Any = ()) -> list[dict[str, Any]]:
    cur = await conn.execute(query, params)
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]


async def form_of(request: Request) -> dict[str, str]:
    return {k: str(v) for k, v in (await request.form()).items()}


def sign_in_page(request: Request, *, message: str | None = None, pending: dict[str, str] | None = None,
                 status: int = 200) -> HTMLResponse:
    """The sign-in form. `pending` is a form the browser posted when its session had ended: it is
    carried through sign-in, so nothing typed is lost."""
    token = request.cookies.get(auth.SIGN_IN_COOKIE) or auth.new_sign_in_token()
    pending = {k: v for k, v in (pending or {}).items() if k != "csrf"}
    response = page("sign_in.html", status, message=message, token=token,
                    pending=json.dumps(pending) if pending else "", action=request.url.path if pending else "")
    auth.set_cookie(response, auth.SIGN_IN_COOKIE, token, 3600)
    return response


async def signed_in(request: Request, *, posted: dict[str, str] | None = None) -> auth.Reviewer:
    """The reviewer of this request; for a POST, its CSRF token checked too."""
    reviewer = await auth.reviewer_of(request)
    if posted is not None:
        auth.check_csrf(reviewer.csrf_token, posted.get("csrf"))
    return reviewer


# --- sign-in ---
@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request) -> HTMLResponse:
    return sign_in_page(request)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await form_of(request)
    cookie = request.cookies.get(auth.SIGN_IN_COOKIE)
    try:
        auth.check_csrf(cookie or "", form.get("token"))
    except auth.BadCsrf:
        return sign_in_page(request, message="The sign-in form expired; please sign in again.", status=403)
    async with request.app.state.pool.connection() as conn:
        cur = await conn.execute("SELECT session_token, csrf_token FROM flywheel.reviewer_sign_in(%s, %s)",
                                 (form.get("name", ""), form.get("password", "")))
        row = await cur.fetchone()
    pending = json.loads(form["pending"]) if form.get("pending") else {}
    if row is None:
        return sign_in_page(request, message="Wrong name or password, or the account is locked for a while.",
                            pending=pending, status=401)
    action = form.get("action", "")
    if pending and action.startswith("/ui/") and "//" not in action:
        # Back to what the browser was saving, with the new session's CSRF token.
        response: Response = page("resubmit.html", action=action, fields=pending, csrf=row[1])
    else:
        response = RedirectResponse("/ui/queue", status_code=303)
    auth.set_cookie(response, auth.SESSION_COOKIE, row[0], auth.SESSION_SECONDS)
    response.delete_cookie(auth.SIGN_IN_COOKIE, path="/ui")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    form = await form_of(request)
    await signed_in(request, posted=form)
    async with request.app.state.pool.connection() as conn:
        await conn.execute("SELECT flywheel.reviewer_sign_out(%s)", (request.cookies.get(auth.SESSION_COOKIE),))
    response = RedirectResponse("/ui/sign-in", status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/ui")
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The app's own script and style sheet (a fixed list: no path from the URL reaches the disk)."""
    kinds = {"app.js": "text/javascript", "app.css": "text/css"}
    if name not in kinds:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response((STATIC / name).read_bytes(), media_type=kinds[name],
                    headers={"Cache-Control": "max-age=300"})


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/ui/queue", status_code=303)


# --- review queue ---
_CLAIM = """
INSERT INTO flywheel.review_leases AS l (trace_id, reviewer, expires_at)
VALUES (%s, '', now() + make_interval(mins => %s))
ON CONFLICT (trace_id) DO UPDATE SET reviewer = EXCLUDED.reviewer, expires_at = EXCLUDED.expires_at
WHERE l.expires_at < now() OR l.reviewer = EXCLUDED.reviewer
RETURNING l.trace_id"""


async def claim_next(conn: AsyncConnection, reviewer: str) -> dict[str, Any] | None:
    """The first queue item nobody else holds, leased to this reviewer (skipped ones are held, not shown)."""
    candidates = await rows(conn, """
        SELECT q.trace_id, q.reasons, q.priority FROM flywheel.annotation_queue q
        WHERE NOT EXISTS (SELECT 1 FROM flywheel.review_leases l
                          WHERE l.trace_id = q.trace_id AND l.expires_at > now()
                            AND (l.reviewer <> %s OR l.skipped))
        LIMIT 20""", (reviewer,))
    for c in candidates:
        cur = await conn.execute(_CLAIM, (c["trace_id"], LEASE_MINUTES))
        if await cur.fetchone():
            return c
    return None


async def trace_details(conn: AsyncConnection, trace_id: int) -> dict[str, Any] | None:
    found = await rows(conn, "SELECT * FROM flywheel.traces WHERE id = %s", (trace_id,))
    if not found:
        return None
    trace = found[0]
    trace["results"] = await rows(conn, """
        SELECT v.name AS validator, r.validator_version, r.status, r.score, r.label, r.judged_by,
               r.details ->> 'reason' AS reason
        FROM flywheel.validation_results r JOIN flywheel.validators v ON v.id = r.validator_id
        WHERE r.trace_id = %s ORDER BY v.name""", (trace_id,))
    trace["feedback"] = await rows(conn, """
        SELECT kind, value, corrected_output, comment, source, user_id, created_at
        FROM flywheel.feedback WHERE trace_id = %s ORDER BY id""", (trace_id,))
    trace["labels"] = await rows(conn, """
        SELECT validator, verdict, score, label, annotator, comment, created_at
        FROM flywheel.labels WHERE trace_id = %s ORDER BY id""", (trace_id,))
    return trace


async def done_today(conn: AsyncConnection, reviewer: str) -> int:
    cur = await conn.execute("SELECT count(DISTINCT trace_id) FROM flywheel.labels"
                             " WHERE annotator = %s AND created_at >= date_trunc('day', now())", (reviewer,))
    return int((await cur.fetchone())[0])  # type: ignore[index]


@router.get("/queue", response_class=HTMLResponse)
async def queue(request: Request) -> HTMLResponse:
    reviewer = await signed_in(request)
    async with acting_as(request.app.state.pool, reviewer.role) as conn:
        item = await claim_next(conn, reviewer.name)
        trace = await trace_details(conn, item["trace_id"]) if item else None
        done = await done_today(conn, reviewer.name)
        validators = [r["name"] for r in await rows(conn, "SELECT name FROM flywheel.validators ORDER BY name")]
    return page("queue.html", reviewer=reviewer, item=item, trace=trace, done=done, validators=validators,
                message=request.query_params.get("message"))


@router.post("/queue/{trace_id}/label")
async def label(request: Request, trace_id: int) -> Response:
    form = await form_of(request)
    try:
        reviewer = await signed_in(request, posted=form)
    except auth.NotSignedIn:
        return sign_in_page(request, message="Your session ended; sign in to save what you were saving.",
                            pending=form, status=401)
    verdict = form.get("verdict", "")
    if verdict not in VERDICTS:
        return RedirectResponse("/ui/queue?" + urlencode({"message": "Choose pass, fail or skip first."}), 303)
    validator = form.get("validator") or "human"
    correction = form.get("correction", "").strip()
    async with acting_as(request.app.state.pool, reviewer.role) as conn:
        if not await rows(conn, "SELECT 1 FROM flywheel.traces WHERE id = %s", (trace_id,)):
            message = f"Trace {trace_id} no longer exists (it was deleted while open); here is the next one."
            return RedirectResponse("/ui/queue?" + urlencode({"message": message}), 303)
        if verdict == "skip":
            await conn.execute("UPDATE flywheel.review_leases SET skipped = true WHERE trace_id = %s", (trace_id,))
            return RedirectResponse("/ui/queue", 303)
        await conn.execute("INSERT INTO flywheel.labels (trace_id, validator, verdict, comment)"
                           " VALUES (%s, %s, %s, %s)", (trace_id, validator, verdict, form.get("comment") or None))
        if correction:  # the existing path: a correction is a few-shot example at once
            await conn.execute("SELECT flywheel.record_feedback(%s, 'correction', corrected_output => %s)",
                               (trace_id, correction))
        await conn.execute("DELETE FROM flywheel.review_leases WHERE trace_id = %s", (trace_id,))
    return RedirectResponse("/ui/queue", 303)


# --- pairwise review ---
_PAIR = """
WITH recent AS (SELECT id, app, input, output FROM flywheel.traces WHERE input IS NOT NULL ORDER BY id DESC LIMIT 5000)
SELECT a.id AS low, b.id AS high FROM recent a JOIN recent b
    ON b.input = a.input AND b.app = a.app AND b.id > a.id AND b.output IS DISTINCT FROM a.output
WHERE NOT EXISTS (SELECT 1 FROM flywheel.preferences p
                  WHERE least(p.trace_a, p.trace_b) = a.id AND greatest(p.trace_a, p.trace_b) = b.id
                    AND p.judged_by = 'human' AND p.annotator = %s)
ORDER BY a.id DESC LIMIT 1"""


@router.get("/pairs", response_class=HTMLResponse)
async def pairs(request: Request) -> HTMLResponse:
    reviewer = await signed_in(request)
    async with acting_as(request.app.state.pool, reviewer.role) as conn:
        found = await rows(conn, _PAIR, (reviewer.name,))
        left = right = None
        if found:
            ids = [found[0]["low"], found[0]["high"]]
            random.shuffle(ids)  # sides shuffled; trace_a is the one shown on the left
            left, right = await trace_details(conn, ids[0]), await trace_details(conn, ids[1])
    return page("pairs.html", reviewer=reviewer, left=left, right=right)


@router.post("/pairs/vote")
async def vote(request: Request) -> Response:
    form = await form_of(request)
    try:
        reviewer = await signed_in(request, posted=form)
    except auth.NotSignedIn:
        return sign_in_page(request, message="Your session ended; sign in to save your vote.", pending=form, status=401)
    winner = {"a": "a", "b": "b", "t": "tie"}.get(form.get("winner", ""))
    if winner is None:
        return RedirectResponse("/ui/pairs", 303)
    async with acting_as(request.app.state.pool, reviewer.role) as conn:
        await conn.execute("INSERT INTO flywheel.preferences (trace_a, trace_b, winner, reason)"
                           " VALUES (%s, %s, %s, %s)",
                           (int(form["left"]), int(form["right"]), winner, "web review: trace_a was shown on the left"))
    return RedirectResponse("/ui/pairs", 303)


# --- trace explorer ---
FILTERS = ("q", "app", "model", "prompt_version", "validator", "status", "feedback", "from", "to")


def explorer_query(f: dict[str, str]) -> tuple[str, list[Any]]:
    """The filtered list's SQL: fixed fragments, every value a parameter."""
    where: list[str] = ["true"]
    params: list[Any] = []
    if f.get("q"):
        where.append("(t.input ILIKE %s OR t.output ILIKE %s)")
        like = "%" + f["q"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        params += [like, like]
    for column in ("app", "model", "prompt_version"):
        if f.get(column):
            where.append(f"t.{column} = %s")
            params.append(f[column])
    if f.get("status") in ("pass", "fail", "error"):
        if f.get("validator"):
            where.append("EXISTS (SELECT 1 FROM flywheel.validation_results r JOIN flywheel.validators v"
                         " ON v.id = r.validator_id WHERE r.trace_id = t.id AND r.status = %s AND v.name = %s)")
            params += [f["status"], f["validator"]]
        else:
            where.append("EXISTS (SELECT 1 FROM flywheel.validation_results r"
                         " WHERE r.trace_id = t.id AND r.status = %s)")
            params.append(f["status"])
    if f.get("feedback") == "negative":
        where.append("EXISTS (SELECT 1 FROM flywheel.feedback fb WHERE fb.trace_id = t.id AND"
                     " ((fb.kind = 'thumbs' AND fb.value < 0) OR (fb.kind = 'rating' AND fb.value <= 2)"
                     " OR fb.kind = 'correction'))")
    elif f.get("feedback") == "positive":
        where.append("EXISTS (SELECT 1 FROM flywheel.feedback fb WHERE fb.trace_id = t.id AND"
                     " ((fb.kind = 'thumbs' AND fb.value > 0) OR (fb.kind = 'rating' AND fb.value >= 4)))")
    elif f.get("feedback") == "any":
        where.append("EXISTS (SELECT 1 FROM flywheel.feedback fb WHERE fb.trace_id = t.id)")
    for key, op in (("from", ">="), ("to", "<")):
        if f.get(key):
            day = date.fromisoformat(f[key]) + (timedelta(days=1) if key == "to" else timedelta())
            where.append(f"t.created_at {op} %s")
            params.append(day)
    # Every fragment of `where` is a literal of this function; values travel as parameters.
    query = ("SELECT t.id, t.created_at, t.app, t.model, t.prompt_version, t.node, t.input, t.output"  # noqa: S608
             " FROM flywheel.traces t WHERE " + " AND ".join(where) + f" ORDER BY t.id DESC LIMIT {PAGE_SIZE}")
    return query, params


@router.get("/traces", response_class=HTMLResponse)
async def explorer(request: Request) -> HTMLResponse:
    reviewer = await signed_in(request)
    f = {k: request.query_params.get(k, "").strip() for k in FILTERS}
    try:
        query, params = explorer_query(f)
    except ValueError:
        return page("explorer.html", 400, reviewer=reviewer, f=f, traces=[], message="Dates are YYYY-MM-DD.",
                    validators=[])
    async with acting_as(request.app.state.pool, reviewer.role) as conn:
        found = await rows(conn, query, params)
        validators = [r["name"] for r in await rows(conn, "SELECT name FROM flywheel.validators ORDER BY name")]
    return page("explorer.html", reviewer=reviewer, f=f, traces=found, validators=validators, message=None)


def run_tree(steps: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """A run's steps depth-first by parent_id, each with its depth (orphans at the top level)."""
    ids = {s["id"] for s in steps}
    children: dict[int | None, list[dict[str, Any]]] = {}
    for s in steps:
        children.setdefault(s["parent_id"] if s["parent_id"] in ids else None, []).append(s)
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: int | None, depth: int) -> None:
        for s in children.get(parent, []):
            out.append((depth, s))
            if depth < 50:
                walk(s["id"], depth + 1)

    walk(None, 0)
    return out


@router.get("/traces/{trace_id}", response_class=HTMLResponse)
async def trace_page(request: Request, trace_id: int) -> HTMLResponse:
    reviewer = await signed_in(request)
    async with acting_as(request.app.state.pool, reviewer.role) as conn:
        trace = await trace_details(conn, trace_id)
        steps: list[tuple[int, dict[str, Any]]] = []
        if trace and trace.get("run_id"):
            found = await rows(conn, """
                SELECT t.id, t.parent_id, t.node, t.node_type, t.latency_ms,
                       (SELECT string_agg(v.name || ': ' || r.status, ', ' ORDER BY v.name)
                        FROM flywheel.validation_results r JOIN flywheel.validators v ON v.id = r.validator_id
                        WHERE r.trace_id = t.id) AS verdicts
                FROM flywheel.traces t WHERE t.run_id = %s ORDER BY t.id LIMIT 500""", (trace["run_id"],))
            steps = run_tree(found)
    if trace is None:
        return page("missing.html", 404, reviewer=reviewer, trace_id=trace_id)
    return page("trace.html", reviewer=reviewer, trace=trace, steps=steps)


# --- dashboards ---
def traces_link(**filters: Any) -> str:
    return "/ui/traces?" + urlencode({k: v for k, v in filters.items() if v is not None})


@router.get("/dashboards", response_class=HTMLResponse)
async def dashboards(request: Request) -> HTMLResponse:
    reviewer = await signed_in(request)
    apps = reviewer.apps
    async with acting_as(request.app.state.pool, reviewer.role) as conn:
        pass_rate = await rows(conn, """
            SELECT day, prompt_version, sum(passed)::bigint AS passed, sum(failed)::bigint AS failed,
                   sum(passed)::float8 / nullif(sum(passed + failed), 0) AS pass_rate
            FROM flywheel.metric_pass_rate WHERE app = ANY(%s) AND day >= current_date - 30
            GROUP BY day, prompt_version ORDER BY day, prompt_version""", (apps,))
        satisfaction = await rows(conn, """
            SELECT day, app, positive_share, positive_share_30d, positive_share_slope_per_day
            FROM flywheel.metric_satisfaction_trend WHERE app = ANY(%s) AND day >= current_date - 30
            ORDER BY app, day""", (apps,))
        alignment = await rows(conn, """
            SELECT validator, validator_version, week, n, agreement, kappa FROM flywheel.validator_alignment_weekly
            ORDER BY validator, week DESC LIMIT 200""")
        queue = await rows(conn, "SELECT * FROM flywheel.queue_status ORDER BY validator")
        refresh = await rows(conn, "SELECT metric, last_success_at, stale_by, is_stale, last_error"
                                   " FROM flywheel.refresh_status ORDER BY metric")
        alerts = await rows(conn, "SELECT id, created_at, kind, subject, message FROM flywheel.alerts"
                                  " WHERE acknowledged_at IS NULL ORDER BY id DESC LIMIT 50")
    days = sorted({str(r["day"]) for r in pass_rate})
    series: dict[str, list[float | None]] = {}
    for r in pass_rate:
        series.setdefault(r["prompt_version"] or "none", [None] * len(days))[days.index(str(r["day"]))] = r["pass_rate"]
    sat_days = sorted({str(r["day"]) for r in satisfaction})
    sat: dict[str, list[float | None]] = {}
    for r in satisfaction:
        sat.setdefault(r["app"], [None] * len(sat_days))[sat_days.index(str(r["day"]))] = r["positive_share"]
    latest_week: dict[str, dict[str, Any]] = {}
    for r in alignment:
        latest_week.setdefault(r["validator"], r)
    charts_html = {
        "pass_rate": charts.line_chart("Pass rate per day and prompt version", days, series, y_min=0, y_max=1),
        "satisfaction": charts.line_chart("Positive feedback share per day", sat_days, sat, y_min=0, y_max=1),
        "alignment": charts.paired_bar_chart(
            "Judges against people (latest week): agreement and kappa",
            [(v, r["agreement"] or 0.0, max(r["kappa"] or 0.0, 0.0)) for v, r in latest_week.items()],
            ("agreement", "kappa")),
    }
    for r in pass_rate:
        r["link"] = traces_link(prompt_version=r["prompt_version"], **{"from": r["day"], "to": r["day"]})
    for r in satisfaction:
        r["link"] = traces_link(app=r["app"], feedback="any", **{"from": r["day"], "to": r["day"]})
    for r in alignment:
        r["link"] = traces_link(validator=r["validator"], status="fail")
    return page("dashboards.html", reviewer=reviewer, charts=charts_html, pass_rate=pass_rate,
                satisfaction=satisfaction, alignment=alignment, queue=queue, refresh=refresh, alerts=alerts)
