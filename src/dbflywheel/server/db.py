"""Transactions that act as a client's role, never as the server's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool


@asynccontextmanager
async def acting_as(pool: AsyncConnectionPool, role: str) -> AsyncIterator[AsyncConnection]:
    """One transaction under SET LOCAL ROLE `role`: committed when the block ends, rolled back on error.

    SET LOCAL ends with the transaction, so a pooled connection never keeps a client's role."""
    async with pool.connection() as conn:
        async with conn.transaction():
            await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            yield conn
