"""The JSON and OTLP API under /v1 (issue 14 fills it)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
