"""Safe rendering: Jinja2 with autoescape everywhere, and model text shown as text.

Traces hold whatever a model or a user wrote. `as_text` escapes it first, then turns only
fenced code blocks (``` ... ```) into <pre><code> and **bold** into <strong>, on the escaped
text: no markup from the trace ever reaches the page as markup."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

TEMPLATES = Path(__file__).resolve().parent / "templates"
LIST_CHARS = 240  # outputs in lists are cut here; the trace page shows them whole

_FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")


def as_text(value: Any) -> Markup:
    """Escaped text with code blocks and bold kept as formatting."""
    if value is None:
        return Markup('<span class="none">(none)</span>')
    text = escape(str(value))
    parts, last = [], 0
    for m in _FENCE.finditer(text):
        parts.append(_BOLD.sub(r"<strong>\1</strong>", text[last:m.start()]))
        parts.append(f"<pre><code>{m.group(1)}</code></pre>")
        last = m.end()
    parts.append(_BOLD.sub(r"<strong>\1</strong>", text[last:]))
    return Markup('<div class="text">' + "".join(parts) + "</div>")  # noqa: S704 (every part is escaped above)


def truncate(value: Any, limit: int = LIST_CHARS) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} characters)"


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["as_text"] = as_text
    env.filters["truncate_text"] = truncate
    return env
