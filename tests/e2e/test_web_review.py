"""The review web app in a real browser (Debian's chromium, headless, through selenium) against
a real `dbflywheel serve` and database: sign-in, keyboard labelling, corrections, pairs, safe
rendering, CSRF, app isolation and what happens to bad input."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from web_support import (  # noqa: F401
    PASSWORD,
    browser,
    browser_session,
    new_app,
    new_reviewer,
    page_change,
    server,
    sign_in,
)


def keys(driver, *pressed: str, navigates: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Key presses sent to the page itself (no element clicked first); `navigates`: wait for the next page."""
    chain = ActionChains(driver)
    for k in pressed:
        chain.send_keys(k)
    if navigates:
        with page_change(driver):
            chain.perform()
    else:
        chain.perform()


def shown_trace(driver) -> int:  # type: ignore[no-untyped-def]
    return int(driver.find_element(By.ID, "trace-id").text)


def test_sign_in_and_label_three_items_with_the_keyboard_alone(browser, server: str, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    app, ids = new_app(db, ["one", "two", "three", "four"])
    name = new_reviewer(db, [app])
    sign_in(browser, server, name)
    assert browser.find_element(By.ID, "done-today").text == "0"
    labelled = []
    for verdict in ("p", "f", "p"):
        trace = shown_trace(browser)
        keys(browser, verdict, Keys.ENTER, navigates=True)
        labelled.append((trace, {"p": "pass", "f": "fail"}[verdict]))
        browser.find_element(By.ID, "done-today")  # the next page is there
    assert browser.find_element(By.ID, "done-today").text == "3"
    rows = db.execute("SELECT trace_id, verdict, annotator, validator FROM flywheel.labels WHERE trace_id = ANY(%s)"
                      " ORDER BY id", (ids,)).fetchall()
    assert rows == [(t, v, name, "human") for t, v in labelled]
    assert len({t for t, _ in labelled}) == 3


def test_skip_moves_on_and_the_key_map_opens(browser, server: str, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    app, ids = new_app(db, ["one", "two"])
    sign_in(browser, server, new_reviewer(db, [app]))
    first = shown_trace(browser)
    keys(browser, "?")
    assert browser.find_element(By.ID, "keys").is_displayed()
    keys(browser, Keys.ESCAPE)
    keys(browser, "s", navigates=True)
    assert shown_trace(browser) != first
    assert db.execute("SELECT count(*) FROM flywheel.labels WHERE trace_id = ANY(%s)", (ids,)).fetchone()[0] == 0  # type: ignore[index]


def test_two_reviewers_never_get_the_same_item(browser, server: str, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    app, _ = new_app(db, ["one", "two"])
    other = new_reviewer(db, [app])
    with httpx.Client(base_url=server) as client:  # the other reviewer, in another client, first
        token = client.get("/ui/sign-in").cookies.get("flywheel_sign_in")
        r = client.post("/ui/sign-in", data={"token": token, "name": other, "password": PASSWORD},
                        cookies={"flywheel_sign_in": token or ""})
        assert r.status_code == 303
    held = db.execute("SELECT trace_id FROM flywheel.review_leases WHERE reviewer = %s", (other,)).fetchall()
    assert held == []  # signing in claims nothing; opening the queue does
    with psycopg.connect(db.info.dsn, autocommit=True) as conn:
        role = conn.execute("SELECT role_name FROM flywheel.reviewers WHERE name = %s", (other,)).fetchone()[0]  # type: ignore[index]
        conn.execute(f'SET ROLE "{role}"')
        top = conn.execute("SELECT trace_id FROM flywheel.annotation_queue LIMIT 1").fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO flywheel.review_leases (trace_id, reviewer, expires_at) VALUES (%s, '', now() + interval '10 minutes')", (top,))
    sign_in(browser, server, new_reviewer(db, [app]))
    assert shown_trace(browser) != top


def test_a_correction_is_a_few_shot_example_at_once(browser, server: str, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    app, ids = new_app(db, ["Lyon"], input_text="What is the capital of France?")
    name = new_reviewer(db, [app])
    sign_in(browser, server, name)
    assert shown_trace(browser) == ids[0]
    keys(browser, "f", "c")
    active = browser.switch_to.active_element
    assert active.get_attribute("id") == "correction"
    active.send_keys("Paris, of course")
    active.send_keys(Keys.ESCAPE)
    keys(browser, Keys.ENTER, navigates=True)
    browser.find_element(By.ID, "done-today")
    assert db.execute("SELECT trace_id, output FROM flywheel.few_shot('capital of France', 5, app => %s)",
                      (app,)).fetchall() == [(ids[0], "Paris, of course")]
    assert db.execute("SELECT source, user_id FROM flywheel.feedback WHERE trace_id = %s", (ids[0],)).fetchall() \
        == [("reviewer", name)]


def test_judge_a_pair_and_find_the_preference(browser, server: str, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    app, ids = new_app(db, ["short answer", "a longer, better answer"], input_text="same question")
    name = new_reviewer(db, [app])
    sign_in(browser, server, name)
    browser.get(server + "/ui/pairs")
    left = int(browser.find_element(By.ID, "side-a").get_attribute("data-trace"))
    right = int(browser.find_element(By.ID, "side-b").get_attribute("data-trace"))
    assert {left, right} == set(ids)
    keys(browser, "b", navigates=True)
    browser.find_element(By.ID, "empty")
    assert db.execute("SELECT trace_a, trace_b, winner, judged_by, annotator FROM flywheel.preferences"
                      " WHERE app = %s", (app,)).fetchall() == [(left, right, "b", "human", name)]


def test_markup_in_a_trace_renders_as_text(browser, server: str, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    attack = "<img src=x onerror=alert(1)>"
    app, ids = new_app(db, [attack + "\n```\n<script>alert(2)</script>\n```"])
    sign_in(browser, server, new_reviewer(db, [app]))
    for url in (f"/ui/traces/{ids[0]}", "/ui/queue", f"/ui/traces?app={app}"):
        browser.get(server + url)
        assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
        assert browser.find_elements(By.CSS_SELECTOR, "main script") == []
        assert attack in browser.find_element(By.TAG_NAME, "main").text
    browser.get(server + f"/ui/traces/{ids[0]}")
    assert "<script>alert(2)</script>" in browser.find_element(By.CSS_SELECTOR, ".output pre code").text


def test_a_post_without_the_csrf_token_is_refused(browser, server: str, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    app, ids = new_app(db, ["one"])
    sign_in(browser, server, new_reviewer(db, [app]))
    with page_change(browser):
        browser.execute_script("document.querySelector('#label-form input[name=csrf]').remove();"
                               "document.getElementById('verdict-pass').checked = true;"
                               "document.getElementById('label-form').submit();")
    assert "CSRF" in browser.find_element(By.ID, "message").text
    cookie = browser.get_cookie("flywheel_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    r = httpx.post(f"{server}/ui/queue/{ids[0]}/label", data={"verdict": "pass", "csrf": "guess"},
                   cookies={"flywheel_session": cookie["value"]})
    assert r.status_code == 403
    assert db.execute("SELECT count(*) FROM flywheel.labels WHERE trace_id = %s", (ids[0],)).fetchone()[0] == 0  # type: ignore[index]


def test_a_reviewer_of_app_a_cannot_open_app_bs_trace(browser, server: str, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    app_a, _ = new_app(db, ["mine"])
    _, ids_b = new_app(db, ["secret of app B"])
    sign_in(browser, server, new_reviewer(db, [app_a]))
    browser.get(f"{server}/ui/traces/{ids_b[0]}")
    assert "does not exist or is not in your apps" in browser.find_element(By.ID, "missing").text
    assert "secret of app B" not in browser.page_source
    browser.get(f"{server}/ui/traces?q=secret+of+app+B")
    assert "secret of app B" not in browser.find_element(By.ID, "traces").text


def test_wrong_password_and_unknown_name_say_the_same(browser, server: str, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    app, _ = new_app(db, ["one"])
    name = new_reviewer(db, [app])
    messages = []
    for who, password in ((name, "wrong password"), ("nobody_at_all", PASSWORD)):
        sign_in(browser, server, who, password)
        messages.append(browser.find_element(By.ID, "message").text)
    assert messages[0] == messages[1] and "Wrong name or password" in messages[0]


def test_an_expired_session_keeps_the_form(browser, server: str, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    app, ids = new_app(db, ["Lyon"])
    name = new_reviewer(db, [app])
    sign_in(browser, server, name)
    keys(browser, "f", "c")
    browser.switch_to.active_element.send_keys("Paris")
    db.execute("UPDATE flywheel.web_sessions SET expires_at = now() - interval '1 second' WHERE reviewer = %s", (name,))
    with page_change(browser):
        browser.switch_to.active_element.send_keys(Keys.CONTROL, Keys.ENTER)
    assert "session ended" in browser.find_element(By.ID, "message").text
    sign_in(browser, server, name)
    browser.find_element(By.ID, "done-today")
    assert db.execute("SELECT verdict FROM flywheel.labels WHERE trace_id = %s", (ids[0],)).fetchall() == [("fail",)]
    assert db.execute("SELECT corrected_output FROM flywheel.feedback WHERE trace_id = %s", (ids[0],)).fetchall() == [("Paris",)]


def test_a_trace_deleted_while_open_says_so(browser, server: str, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    app, ids = new_app(db, ["one", "two"])
    sign_in(browser, server, new_reviewer(db, [app]))
    open_one = shown_trace(browser)
    db.execute("DELETE FROM flywheel.traces WHERE id = %s", (open_one,))
    keys(browser, "p", Keys.ENTER, navigates=True)
    assert "no longer exists" in browser.find_element(By.ID, "message").text


def test_huge_outputs_are_cut_in_the_list_and_whole_on_the_trace_page(browser, server: str, db: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    huge = "word " * 20000 + "THE END"
    app, ids = new_app(db, [huge])
    sign_in(browser, server, new_reviewer(db, [app]))
    browser.get(f"{server}/ui/traces?app={app}")
    cell = browser.find_element(By.CSS_SELECTOR, "#traces td.output").text
    assert len(cell) < 400 and "100,007 characters" in cell
    browser.get(f"{server}/ui/traces/{ids[0]}")
    assert browser.find_element(By.CSS_SELECTOR, ".output").text.endswith("THE END")


@pytest.mark.parametrize("section", ["pass-rate", "satisfaction", "alignment"])
def test_dashboard_numbers_equal_the_metric_views(browser, server: str, db: psycopg.Connection, section: str) -> None:  # type: ignore[no-untyped-def]
    app, ids = new_app(db, ["one", "two", "three"])
    validator = db.execute("INSERT INTO flywheel.validators (name, kind, enabled) VALUES ('web_dash', 'sql', false)"
                           " ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind RETURNING id").fetchone()[0]  # type: ignore[index]
    for trace, status in zip(ids, ("pass", "fail", "pass"), strict=True):
        db.execute("INSERT INTO flywheel.validation_results (trace_id, validator_id, validator_version, status)"
                   " VALUES (%s, %s, 1, %s)", (trace, validator, status))
        db.execute("SELECT flywheel.record_feedback(%s, 'thumbs', 1)", (trace,))
    db.execute("CALL flywheel.refresh('pass_rate')")
    db.execute("CALL flywheel.refresh('satisfaction')")
    sign_in(browser, server, new_reviewer(db, [app]))
    browser.get(server + "/ui/dashboards")
    shown = [c.text for c in browser.find_elements(By.CSS_SELECTOR, f"#{section} td.value")]
    if section == "pass-rate":
        expected = db.execute("SELECT sum(passed)::float8 / nullif(sum(passed + failed), 0) FROM flywheel.metric_pass_rate"
                              " WHERE app = %s AND day >= current_date - 30 GROUP BY day, prompt_version"
                              " ORDER BY day, prompt_version", (app,)).fetchall()
    elif section == "satisfaction":
        expected = db.execute("SELECT positive_share FROM flywheel.metric_satisfaction_trend WHERE app = %s"
                              " AND day >= current_date - 30 ORDER BY day", (app,)).fetchall()
    else:
        expected = db.execute("SELECT agreement FROM flywheel.validator_alignment_weekly"
                              " ORDER BY validator, week DESC LIMIT 200").fetchall()
    assert shown == [f"{v:.4f}" if v is not None else "" for (v,) in expected]
    if section == "pass-rate":
        assert len(shown) == 1  # one day, one prompt version
        link = browser.find_element(By.CSS_SELECTOR, "#pass-rate td a").get_attribute("href")
        browser.get(link)
        assert {int(a.text) for a in browser.find_elements(By.CSS_SELECTOR, "#traces td:first-child a")} == set(ids)
