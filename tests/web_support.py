"""A real `dbflywheel serve` process and a headless Debian chromium driven by selenium, for the
browser tests of the review web app (tests/e2e/test_web_*.py)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

DBFLYWHEEL = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "dbflywheel")
PASSWORD = "correct horse battery"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--window-size=1300,1000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server(dsn: str) -> Iterator[str]:
    """The base URL of a `dbflywheel serve` on a free loopback port, connected with the test DSN."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="dbflywheel-serve-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen([DBFLYWHEEL, "serve", "--dsn", dsn, "--port", str(port), "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("dbflywheel serve did not start: " + Path(log.name).read_text()[-2000:])
        time.sleep(0.2)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="session")
def browser_session() -> Iterator[object]:
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.skip("needs Debian's chromium and chromium-driver (make setup installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="dbflywheel-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or ""), options=options)
    driver.set_page_load_timeout(60)
    driver.implicitly_wait(5)  # elements of a page that is still loading
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(browser_session: object, server: str) -> Iterator[object]:
    """The shared browser with no cookies (signed out) at the start of each test."""
    driver = browser_session
    driver.get(server + "/healthz")  # type: ignore[attr-defined]
    driver.delete_all_cookies()  # type: ignore[attr-defined]
    driver.get(server + "/ui/sign-in")  # type: ignore[attr-defined]
    yield driver


def new_app(db: psycopg.Connection, outputs: list[str], *, input_text: str | None = None) -> tuple[str, list[int]]:
    app = f"web-{uuid.uuid4().hex[:8]}"
    ids = [db.execute("INSERT INTO flywheel.traces (app, input, output, model, prompt_version)"
                      " VALUES (%s, %s, %s, 'm', 'v1') RETURNING id",
                      (app, input_text or f"question {i}", out)).fetchone()[0]  # type: ignore[index]
           for i, out in enumerate(outputs)]
    return app, ids


def new_reviewer(db: psycopg.Connection, apps: list[str]) -> str:
    name = f"rv{uuid.uuid4().hex[:8]}"
    db.execute("SELECT flywheel.create_reviewer(%s, %s, %s)", (name, PASSWORD, apps))
    return name


@contextmanager
def page_change(driver: object, timeout: float = 20) -> Iterator[None]:
    """Waits, after the block, until the page it started on has been replaced by another."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of
    from selenium.webdriver.support.wait import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")  # type: ignore[attr-defined]
    yield
    WebDriverWait(driver, timeout).until(staleness_of(old))  # type: ignore[arg-type]


def sign_in(driver: object, base: str, name: str, password: str = PASSWORD) -> None:
    """Fills in the sign-in form on the page (the one a POST without a session showed, or a fresh one)."""
    from selenium.webdriver.common.by import By

    d = driver
    if not d.find_elements(By.ID, "sign-in"):  # type: ignore[attr-defined]
        d.get(base + "/ui/sign-in")  # type: ignore[attr-defined]
    d.find_element(By.ID, "name").send_keys(name)  # type: ignore[attr-defined]
    d.find_element(By.ID, "password").send_keys(password)  # type: ignore[attr-defined]
    with page_change(d):
        d.find_element(By.ID, "sign-in-button").click()  # type: ignore[attr-defined]
