"""plpython/validators_pii.py: what counts as personal data, and that redaction removes exactly that."""

from __future__ import annotations

import time

import pytest
import validators_pii as pii
from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("write to jane.doe+work@mail.example.co.uk today", "email"),
        ("call me at +1 (555) 123-4567", "phone"),
        ("my number is 555-123-4567", "phone"),
        ("ring +44 20 7946 0958 after six", "phone"),
        ("card 4111 1111 1111 1111 exp 12/29", "card"),
        ("card 5500-0000-0000-0004", "card"),
        ("IBAN DE89 3704 0044 0532 0130 00", "iban"),
        ("GB82WEST12345698765432 is mine", "iban"),
        ("ssn 078-05-1120", "ssn"),
        ("from 192.168.10.200 again", "ip"),
    ],
)
def test_finds_each_category(text: str, category: str) -> None:
    assert category in pii.categories(text)


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 was shipped",  # fails the Luhn check: not a card
        "the meeting is on 2024-03-15 at 10:30",
        "in 1999 and 2023 revenue grew 12.5%",
        "ticket 12345678 is closed",
        "version 1.2.3 of the SDK",
        "",
    ],
)
def test_does_not_flag_ordinary_numbers(text: str) -> None:
    assert pii.categories(text) == {}


def test_an_iban_that_fails_mod_97_is_not_an_iban() -> None:
    assert "iban" not in pii.categories("IBAN DE89 3704 0044 0532 0130 01")


def test_luhn_and_iban_checks() -> None:
    assert pii.luhn_ok("4111111111111111") and not pii.luhn_ok("4111111111111112")
    assert pii.iban_ok("DE89370400440532013000") and not pii.iban_ok("DE89370400440532013001")


def test_redaction_names_the_category_and_keeps_the_rest() -> None:
    text = "Mail j.doe@example.com or call +1 (555) 123-4567; card 4111 1111 1111 1111; IBAN DE89 3704 0044 0532 0130 00."
    assert pii.redact(text) == "Mail [EMAIL] or call [PHONE]; card [CARD]; IBAN [IBAN]."
    assert pii.redact(None) is None
    assert pii.redact("nothing here") == "nothing here"


def test_counts_never_carry_the_values() -> None:
    found = pii.categories("a@b.io and c@d.io")
    assert found == {"email": 2}


def test_a_megabyte_of_adversarial_text_is_scanned_quickly() -> None:
    # Long runs of what e-mail and phone patterns consume: a backtracking engine would take minutes.
    for text in ("a" * 1_000_000 + "@", "1 " * 500_000, "a.a" * 300_000 + "@x"):
        started = time.monotonic()
        pii.find(text)
        assert time.monotonic() - started < 5


_fragments = st.sampled_from([
    "hello ", "j.doe@example.com", " +1 (555) 123-4567 ", "4111 1111 1111 1111", " DE89 3704 0044 0532 0130 00 ",
    "2024-01-02", " 42 ", "x", "@", "-", "078-05-1120", " 10.0.0.1 ",
])


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(_fragments, max_size=12).map(" ".join))
def test_redacted_text_has_no_findings_left(text: str) -> None:
    assert pii.find(pii.redact(text)) == []
