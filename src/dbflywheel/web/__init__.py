"""The review web app under /ui: sign-in, review queue, pairwise review, trace explorer and dashboards."""

from __future__ import annotations

from dbflywheel.web.pages import router

__all__ = ["router"]
