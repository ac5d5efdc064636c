"""The review web app under /ui (issue 15 fills it)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
