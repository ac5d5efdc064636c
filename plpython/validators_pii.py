"""Finds personal data (e-mail, phone, payment card, IBAN, SSN, IP address) in text, and redacts it.

One detector serves the `pii` validator and flywheel.redact_pii(): what the validator flags is
exactly what redaction removes. Candidates come from linear-time re2 patterns; cards must pass
the Luhn check and IBANs the mod-97 check, so order numbers and dates are not flagged.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from itertools import islice
from typing import Any

import re2

# In priority order: where two candidates overlap, the earlier category wins.
CATEGORIES = ("email", "iban", "card", "ssn", "ip", "phone")
PLACEHOLDERS = {c: f"[{c.upper()}]" for c in CATEGORIES}
# The pii validator's caps (README.md): it examines a field's first MAX_CHARS characters and stops
# at MAX_FINDINGS findings or after CANDIDATES_PER_FINDING * MAX_FINDINGS candidates (each costs a
# few Python operations). PL/Python does not check for a query cancel while Python runs, so these
# are what bound the time an INSERT spends here. redact() has no caps (everything must go): it is
# linear instead.
MAX_CHARS = 1_000_000
MAX_FINDINGS = 1000
CANDIDATES_PER_FINDING = 20

_PATTERNS = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    # Country code (either case, maybe a space after it), check digits, then groups of 4 as IBANs
    # are printed: _iban_end() cuts the candidate to its country's registry length, so a word
    # after the IBAN is not swallowed into it (which failed the checksum: the IBAN was missed).
    "iban": r"\b[A-Za-z]{2} ?\d{2}(?: ?[A-Za-z0-9]{4})*(?: ?[A-Za-z0-9]{1,4})?",
    # A run of digit groups; _cards() looks for a card number among its groups. Not \b: a number
    # glued to a word ("com4111 1111...") is still a number.
    "card": r"\d+(?:[ -]\d+)*",
    # Not \b either; find() checks that no digit touches either end instead.
    "ssn": r"\d{3}-\d{2}-\d{4}",
    # IPv4 or IPv6 candidates; _ip_ok() lets the ipaddress module decide (no leading zeros, IPv6's
    # rules for '::' and an embedded IPv4 tail).
    "ip": r"\b\d{1,3}(?:\.\d{1,3}){3}\b|(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?",
    "phone": r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,5}){1,4}\b",
}
_COMPILED = {name: re2.compile(p) for name, p in _PATTERNS.items()}
try:  # re2's C++ matcher, without the wrapper's match objects (else: the public API)
    _UNANCHORED = re2._Anchor.UNANCHORED
    _LOW_LEVEL = hasattr(_COMPILED["email"], "_regexp")
except AttributeError:
    _LOW_LEVEL = False
# Cheap pre-filter: most texts have no '@' and no run of digits long enough to be personal data.
# (Python's re where the pattern cannot backtrack badly: several times faster per call than re2's wrapper.)
_DIGITS = re.compile(r"\d[\d ().+-]{5,}\d")
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{4}$")
_NOT_DIGITS = re.compile(r"\D")
_DIGIT_BOUNDED = ("ssn",)
_GROUP = re.compile(r"\d+")
# What each category's pattern cannot match without (a necessary condition, so skipping a
# category whose check fails changes nothing): ids, ticket and order numbers, times and prices
# then skip the re2 scans they would otherwise each pay for.
_MAYBE_PATTERNS = {
    "iban": r"[A-Za-z]{2} ?\d{2}",
    "card": r"\d(?:[ -]?\d){11}",
    "ssn": r"\d{3}-\d{2}-\d{4}",
    # An IPv6 address has a "::" or all 7 colons (so 3 "group:" in a row); a time (12:30:45) has neither.
    "ip": r"\d\.\d{1,3}\.\d{1,3}\.\d|::|(?:[0-9A-Fa-f]{1,4}:){3}",
    "phone": r"\d\d[ .-]\d\d",
}
_MAYBE = {name: re.compile(p) for name, p in _MAYBE_PATTERNS.items()}
# All of them in one linear re2 pass, called without the wrapper's match objects (the common
# text, with no personal data, stops here).
_ANY_DIGITS = re2.compile(_DIGITS.pattern)
_ANY_MAYBE = re2.compile("|".join(f"(?:{p})" for p in _MAYBE_PATTERNS.values()))
# What find() cannot find anything without (an '@', or one of the above): a text with no match of
# this has no personal data, which lets the pii validator clear a whole batch with one scan.
MAYBE_ANY = "@|" + _ANY_MAYBE.pattern


# The same, in re2 (on ASCII text, where Python's \d is [0-9] too, they agree): one C call each.
_MAYBE_RE2 = {name: re2.compile(p) for name, p in _MAYBE_PATTERNS.items()}


def _spans(regex: Any, text: str, data: bytes | None) -> Iterator[tuple[int, int]]:
    """(start, end) of each match, as finditer() gives them, one at a time (a capped caller stops
    early); data: text.encode() when text is ASCII (byte offsets are then character offsets), so
    re2 is called without the wrapper's match objects."""
    if data is None:
        for m in regex.finditer(text):
            yield m.span()
        return
    match = regex._regexp.Match
    pos, end = 0, len(data)
    while True:  # finditer's own loop
        start, stop = match(_UNANCHORED, data, pos, end)[0]
        if start < 0:
            break
        yield start, stop
        if pos == end:
            break
        pos = pos + 1 if pos == stop else stop


def match_at(regex: Any, data: bytes) -> int:
    """Where the first match in data starts, or -1 (re2's C++ matcher, _LOW_LEVEL only)."""
    return regex._regexp.Match(_UNANCHORED, data, 0, len(data))[0][0]  # type: ignore[no-any-return]


def _found(regex: Any, text: str) -> bool:
    if _LOW_LEVEL:
        return match_at(regex, text.encode()) >= 0
    return regex_found(regex, text)


def regex_found(regex: Any, text: str) -> bool:
    return regex.search(text) is not None


def _cards(text: str, start: int, end: int, budget: int | None = None) -> list[tuple[int, int]]:
    """Card numbers among the digit groups of text[start:end]: consecutive groups (of 3 or more
    digits) with 13 to 19 digits in all that pass the Luhn check, leftmost and longest first.
    budget: look at no more than that many groups (a run of digits can be the whole text)."""
    found_groups = _GROUP.finditer(text, start, end)
    groups = [m.span() for m in (found_groups if budget is None else islice(found_groups, budget))]
    found = []
    i = 0
    while i < len(groups):
        hit, digits = None, ""
        for j in range(i, len(groups)):  # at most 19 digits: a few groups, never the whole run
            if groups[j][1] - groups[j][0] < 3:
                break  # card numbers are written in groups of 3 or more digits
            digits += text[groups[j][0] : groups[j][1]]
            if len(digits) > 19:
                break
            if (len(digits) >= 13 or digits.startswith(_MAESTRO_12) and len(digits) == 12) and luhn_ok(digits):
                hit = j
        if hit is None:
            i += 1
        else:
            found.append((groups[i][0], groups[hit][1]))
            i = hit + 1
    return found


# Maestro numbers may have 12 digits (ISO/IEC 7812 IIN ranges 50, 56-58, 639, 67); other cards have 13+.
_MAESTRO_12 = ("50", "56", "57", "58", "639", "67")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# IBAN length per country, from the SWIFT IBAN Registry (the countries that issue IBANs). A
# candidate of another length is not an IBAN even if its mod-97 check happens to pass.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
# Every registry BBAN has at least this many digits: prose of 4-letter words is not an account.
_IBAN_MIN_BBAN_DIGITS = 6


def _iban_end(text: str, start: int, end: int) -> int | None:
    """Where the IBAN starting at text[start] ends (its country's registry length of letters and
    digits, spaces between them allowed), if text[start:end] begins with a valid IBAN; else None."""
    length = IBAN_LENGTHS.get(text[start : start + 2].upper())
    if length is None:
        return None
    count, i = 0, start
    while i < end and count < length:
        if text[i] != " ":
            count += 1
        i += 1
    if count < length or text[i : i + 1].isalnum():  # too short, or glued to more letters/digits
        return None
    return i if iban_ok(text[start:i]) else None


def _ip_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The IP address in the candidate text[start:end], if it is one standing alone (not part of a
    longer dotted number or a word): ipaddress validates it."""
    candidate = text[start:end]
    if ":" in candidate:
        # "ip:2001:db8::1" matches from the first ':'; "std::vector" must not count.
        if candidate.startswith(":") and not candidate.startswith("::"):
            start, candidate = start + 1, candidate[1:]
        if candidate.endswith(":") and not candidate.endswith("::"):
            end, candidate = end - 1, candidate[:-1]
        if not any(ch.isdigit() for ch in candidate):
            return None
    before, after = text[start - 1 : start], text[end : end + 2]
    if before.isalnum() or after[:1].isalnum() or (before == "." and text[start - 2 : start - 1].isdigit()):
        return None
    if after[:1] == "." and after[1:2].isdigit():
        return None
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return None
    return start, end


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "").upper()
    if IBAN_LENGTHS.get(s[:2]) != len(s) or sum(ch.isdigit() for ch in s[4:]) < _IBAN_MIN_BBAN_DIGITS:
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _accept(category: str, text: str) -> bool:
    if category == "phone":
        digits = _NOT_DIGITS.sub("", text)
        if not 7 <= len(digits) <= 15 or _DATE.search(text.strip()):
            return False
        # A bare run of digits is an id, not a phone number: ask for a +, parentheses or separators.
        return text.startswith("+") or "(" in text or sum(text.count(c) for c in " .-") >= 2
    return True


def finding(category: str, text: str, start: int, end: int) -> tuple[int, int] | None:
    """The finding a candidate match text[start:end] of category (not card) holds: its span (an
    IBAN cut to its registry length, an IP without a ':' it was matched with), or None."""
    if category == "iban":
        iban_end = _iban_end(text, start, end)
        return None if iban_end is None else (start, iban_end)
    if category == "ip":
        return _ip_span(text, start, end)
    return (start, end) if _accept(category, text[start:end]) else None


def find(text: str | None, limit: int | None = None) -> list[tuple[int, int, str]]:
    """(start, end, category) of every finding, non-overlapping, in text order; with a limit, at
    most that many (see find_capped)."""
    return find_capped(text, limit)[0]


def find_capped(text: str | None, limit: int | None = None) -> tuple[list[tuple[int, int, str]], bool]:
    """find(), and whether a cap stopped it early. With a limit: at most that many findings, and
    no more than limit * CANDIDATES_PER_FINDING candidates (and digit groups) looked at."""
    if not text:
        return [], False
    has_at = "@" in text
    # (An IPv6 address need not have a run of digits: a ':' lets it through.)
    if not has_at and not ((":" in text or _found(_ANY_DIGITS, text)) and _found(_ANY_MAYBE, text)):
        return [], False
    data = text.encode() if _LOW_LEVEL and text.isascii() else None
    # With an '@' but none of the others' necessary patterns (an address in prose), one call
    # tells all five to skip.
    others = data is None or not has_at or match_at(_ANY_MAYBE, data) >= 0
    # The findings so far, sorted and non-overlapping. A category's candidates come in text order,
    # so one pointer walks the earlier categories' findings once: linear (comparing every
    # candidate with every finding was quadratic: 24000 IP addresses took half a minute).
    taken: list[tuple[int, int, str]] = []
    budget = None if limit is None else limit * CANDIDATES_PER_FINDING
    for category in CATEGORIES:
        if category == "email" and not has_at:
            continue
        if category in _MAYBE:
            if not others:
                continue
            if data is not None:
                if match_at(_MAYBE_RE2[category], data) < 0:
                    continue
            elif _MAYBE[category].search(text) is None:
                continue
        new: list[tuple[int, int, str]] = []
        p, n_taken = 0, len(taken)
        for start, end in _spans(_COMPILED[category], text, data):
            if budget is not None:
                budget -= 1
                if budget < 0 or len(taken) + len(new) >= limit:  # type: ignore[operator]
                    return sorted(taken + new)[:limit], True
            if category == "card":
                for card_start, card_end in _cards(text, start, end, budget):
                    while p < n_taken and taken[p][1] <= card_start:
                        p += 1
                    if not (p < n_taken and taken[p][0] < card_end):
                        new.append((card_start, card_end, "card"))
                if budget is not None:  # the digit groups it looked at (each 2+ characters with its separator)
                    budget = max(budget - (end - start) // 2, 0)
                continue
            while p < n_taken and taken[p][1] <= start:
                p += 1
            if p < n_taken and taken[p][0] < end:
                continue  # overlaps an earlier category's finding
            if category in _DIGIT_BOUNDED and (text[start - 1 : start].isdigit() or text[end : end + 1].isdigit()):
                continue
            span = finding(category, text, start, end)
            if span is not None:
                new.append((*span, category))
        if new:
            taken = sorted(taken + new)  # two sorted runs: one linear merge
    if limit is not None and len(taken) > limit:
        return taken[:limit], True
    return taken, False


def categories(text: str | None) -> dict[str, int]:
    """How many findings of each category (never the values)."""
    return categories_capped(text, None)[0]


def categories_capped(text: str | None, limit: int | None = MAX_FINDINGS) -> tuple[dict[str, int], bool]:
    """categories() with the pii validator's caps (README.md): the first MAX_CHARS characters, at
    most limit findings; and whether a cap cut the count short."""
    cut = limit is not None and text is not None and len(text) > MAX_CHARS
    findings, stopped = find_capped(text[:MAX_CHARS] if cut else text, limit)  # type: ignore[index]
    counts: dict[str, int] = {}
    for _, _, category in findings:
        counts[category] = counts.get(category, 0) + 1
    return counts, cut or stopped


def _replace(text: str, findings: list[tuple[int, int, str]]) -> str:
    parts: list[str] = []
    last = 0
    for start, end, category in findings:
        parts.append(text[last:start])
        parts.append(PLACEHOLDERS[category])
        last = end
    parts.append(text[last:])
    return "".join(parts)


def redact(text: str | None) -> str | None:
    """Every finding replaced by its placeholder; again until nothing is found, because taking a
    match out can join what was around it into a new one (digits either side of a phone number)."""
    if text is None:
        return None
    for _ in range(5):
        findings = find(text)
        if not findings:
            break
        text = _replace(text, findings)
    return text


def redact_pii(plpy: Any, input: str | None) -> str | None:
    return redact(input)
