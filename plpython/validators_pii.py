"""Finds personal data (e-mail, phone, payment card, IBAN, SSN, IP address) in text, and redacts it.

One detector serves the `pii` validator and flywheel.redact_pii(): what the validator flags is
exactly what redaction removes. Candidates come from linear-time re2 patterns; cards must pass
the Luhn check and IBANs the mod-97 check, so order numbers and dates are not flagged.
"""

from __future__ import annotations

import re
from typing import Any

import re2

# In priority order: where two candidates overlap, the earlier category wins.
CATEGORIES = ("email", "iban", "card", "ssn", "ip", "phone")
PLACEHOLDERS = {c: f"[{c.upper()}]" for c in CATEGORIES}

_PATTERNS = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "iban": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b",
    "card": r"\b\d(?:[ -]?\d){12,18}\b",
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "ip": r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
    "phone": r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,5}){1,4}\b",
}
_COMPILED = {name: re2.compile(p) for name, p in _PATTERNS.items()}
# Cheap pre-filter: most texts have no '@' and no run of digits long enough to be personal data.
# (Python's re where the pattern cannot backtrack badly: several times faster per call than re2's wrapper.)
_DIGITS = re.compile(r"\d[\d ().+-]{5,}\d")
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{4}$")
_NOT_DIGITS = re.compile(r"\D")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _accept(category: str, text: str) -> bool:
    if category == "card":
        digits = _NOT_DIGITS.sub("", text)
        return 13 <= len(digits) <= 19 and luhn_ok(digits)
    if category == "iban":
        return iban_ok(text)
    if category == "phone":
        digits = _NOT_DIGITS.sub("", text)
        if not 7 <= len(digits) <= 15 or _DATE.search(text.strip()):
            return False
        # A bare run of digits is an id, not a phone number: ask for a +, parentheses or separators.
        return text.startswith("+") or "(" in text or sum(text.count(c) for c in " .-") >= 2
    return True


def find(text: str | None) -> list[tuple[int, int, str]]:
    """(start, end, category) of every finding, non-overlapping, in text order."""
    if not text:
        return []
    has_at = "@" in text
    if not has_at and _DIGITS.search(text) is None:
        return []
    taken: list[tuple[int, int, str]] = []
    for category in CATEGORIES:
        if category == "email" and not has_at:
            continue
        for m in _COMPILED[category].finditer(text):
            start, end = m.start(), m.end()
            if any(start < e and s < end for s, e, _ in taken):
                continue
            if _accept(category, m.group()):
                taken.append((start, end, category))
    taken.sort()
    return taken


def categories(text: str | None) -> dict[str, int]:
    """How many findings of each category (never the values)."""
    counts: dict[str, int] = {}
    for _, _, category in find(text):
        counts[category] = counts.get(category, 0) + 1
    return counts


def redact(text: str | None) -> str | None:
    if text is None:
        return None
    findings = find(text)
    if not findings:
        return text
    parts: list[str] = []
    last = 0
    for start, end, category in findings:
        parts.append(text[last:start])
        parts.append(PLACEHOLDERS[category])
        last = end
    parts.append(text[last:])
    return "".join(parts)


def redact_pii(plpy: Any, input: str | None) -> str | None:
    return redact(input)
