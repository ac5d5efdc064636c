"""The ASGI application: one psycopg pool per process, the API routers and the review web app.

Who executes what: the server connects with the DSN it is given, and every request that acts for a
client does so inside `acting_as(role)`: a transaction under SET LOCAL ROLE of the role its credential
maps to (an app's role for an API key, a reviewer's role for a session), so row-level security applies
exactly as for that role's own login. The server never runs a client's request with its own rights.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from dbflywheel import __version__

DSN_ENV = "DBFLYWHEEL_SERVE_DSN"


def create_app(dsn: str, *, pool_min: int = 1, pool_max: int = 10) -> FastAPI:
    """The application for one process; the pool opens at start-up and closes at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(dsn, min_size=pool_min, max_size=pool_max, open=False,
                                   kwargs={"autocommit": True, "application_name": "dbflywheel serve"})
        await pool.open(wait=True, timeout=30)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="dbflywheel", version=__version__, lifespan=lifespan)

    @app.get("/healthz", tags=["server"])
    async def healthz() -> JSONResponse:
        """200 when the database answers, 503 when it does not."""
        try:
            async with app.state.pool.connection(timeout=5) as conn:
                await conn.execute("SELECT 1")
        except Exception as e:  # any failure to reach the database is 'unhealthy', said in one line
            return JSONResponse({"status": "unavailable", "reason": type(e).__name__}, status_code=503)
        return JSONResponse({"status": "ok"})

    from dbflywheel.server import api
    from dbflywheel.web import router as web_router

    api.setup(app)
    app.include_router(api.router)
    app.include_router(web_router, prefix="/ui")
    return app


def app_from_env() -> FastAPI:
    """The factory uvicorn's worker processes call (`dbflywheel serve` sets the DSN variable)."""
    return create_app(os.environ[DSN_ENV])
