"""``mcp-tracking serve`` in a real browser: headless Chromium driven by selenium against the real app served by
uvicorn on 127.0.0.1, over a store written by a real server."""

from __future__ import annotations

import shutil
import threading
import time

import anyio
import pytest
from conftest import IN_CI
from helpers import free_port
from scenario import mcpserver, run_on_server

from mcp_tracking import AnalyticsClient, compute_metrics
from mcp_tracking.report.serve import bucket_size
from mcp_tracking.report.text import fmt
from mcp_tracking.report.timeline import session_timeline

EVIL_USER = '"><img src=x onerror=alert(1)>'
EVIL_TOOL = "<img src=y onerror=alert(2)>"


@pytest.fixture(scope="module", name="site")
def _site(tmp_path_factory):
    """The contract scenario twice (two users), plus a session by a hostile user asking for a hostile name;
    the UI served on a free port."""
    uvicorn = pytest.importorskip("uvicorn")
    from mcp_tracking.report.serve import build_app

    path = tmp_path_factory.mktemp("serve") / "s.db"
    url = f"sqlite:///{path}"
    for user in ("alice", "bob"):
        client = AnalyticsClient(url, handle_sigterm=False)
        with client.session(user_id=user):
            anyio.run(run_on_server, mcpserver(client))
        assert client.close(timeout=30)
    client = AnalyticsClient(url, handle_sigterm=False)
    client.track(EVIL_USER, "session_start", {"client_name": "evil"}, session_id="evil-session")
    client.track_tool_call_started(user_id=EVIL_USER, tool_name=EVIL_TOOL, tool_params={"x": EVIL_TOOL},
                                   session_id="evil-session", mcp_tools_manifest=["search"])
    assert client.close(timeout=30)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(url), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield url, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module", name="browser")
def _browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not chromium or not driver:
        if IN_CI:
            pytest.fail("chromium and chromium-driver are required in CI")
        pytest.skip("chromium or chromedriver not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    browser.set_page_load_timeout(60)
    yield browser
    browser.quit()


def loaded(browser, url=None):
    """Open ``url`` (or stay), then wait while the page says it is still reading the store: under load a part may
    take longer than the request waits for it, and that page reloads itself until it is there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if url is not None:
        browser.get(url)
    WebDriverWait(browser, 60, poll_frequency=0.2).until(
        lambda b: b.execute_script("return document.readyState") == "complete"
        and not b.find_elements(By.ID, "reading"))
    return browser


def test_overview_shows_the_stores_metrics(site, browser):
    from selenium.webdriver.common.by import By

    url, base = site
    loaded(browser, base + "/")
    expected = compute_metrics(url).value("task_completion_rate")
    shown = browser.find_element(By.CSS_SELECTOR, '[data-metric="task_completion_rate"] .v').text
    assert shown == fmt(expected, percent=True)
    assert browser.find_element(By.ID, "chart-trend") and browser.find_element(By.ID, "by-client")
    assert "evil" in browser.find_element(By.ID, "by-client").text


def test_filter_sessions_and_open_a_timeline(site, browser):
    """Filter the sessions by user, open the one that is left: its steps are the store's, in order."""
    from selenium.webdriver.common.by import By

    url, base = site
    loaded(browser, base + "/sessions")
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.session-row")) == 3
    box = browser.find_element(By.NAME, "q")
    box.send_keys("bob")
    box.submit()
    loaded(browser)
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.session-row")
    assert len(rows) == 1 and "bob" in rows[0].text
    rows[0].find_element(By.TAG_NAME, "a").click()
    loaded(browser)
    sid = browser.find_element(By.CSS_SELECTOR, "section.timeline").get_attribute("data-session")
    steps = browser.find_elements(By.CSS_SELECTOR, "tr.step")
    expected = session_timeline(url, sid).steps
    assert [s.find_elements(By.TAG_NAME, "td")[1].text for s in steps] == [s.tool for s in expected]
    assert len(steps) == 11 and "Did you mean" in steps[0].text


def test_hostile_names_are_shown_not_run(site, browser):
    """A user id and a tool name made of HTML: shown as text on every page, never as markup."""
    from selenium.webdriver.common.by import By

    _, base = site
    for path in ("/", "/sessions", "/sessions/evil-session", "/advise"):
        loaded(browser, base + path)
        assert browser.find_elements(By.TAG_NAME, "img") == []
        assert browser.execute_script("return document.body.getAttribute('data-rendered')") == "1"
    loaded(browser, base + "/sessions/evil-session")
    assert EVIL_TOOL in browser.find_element(By.CSS_SELECTOR, "section.timeline").text


def test_compare_page(site, browser):
    from selenium.webdriver.common.by import By

    _, base = site
    loaded(browser, base + "/compare?split=2000-01-01")
    rows = browser.find_elements(By.CSS_SELECTOR, "#compare tr")
    assert len(rows) == 9 and "too little data" in browser.find_element(By.ID, "compare").text


def test_trend_buckets_follow_the_span():
    from datetime import timedelta

    assert bucket_size(timedelta(minutes=30))[0] == "minute"
    assert bucket_size(timedelta(hours=20))[0] == "hour"
    assert bucket_size(timedelta(days=20))[0] == "day"
    assert bucket_size(timedelta(days=400))[0] == "week"


def test_figures_are_kept_while_fresh_and_read_again_after(tmp_path):
    """A store written while it is read: within ``refresh`` seconds the pages keep the figures they computed;
    after it, they are still served at once (no request waits) while a background rebuild reads the new
    sessions, which then show."""
    from mcp_tracking.report.serve import Store

    url = f"sqlite:///{tmp_path / 'live.db'}"
    client = AnalyticsClient(url, handle_sigterm=False)
    client.track("u", "session_start", {}, session_id="first")
    assert client.flush(10)
    slow, fast = Store(url, refresh=3600), Store(url, refresh=0)
    assert len(slow.rows()) == len(fast.rows()) == 1 and slow.as_of is not None
    first_read = fast.as_of
    client.track("u", "session_start", {}, session_id="second")
    assert client.close(timeout=10)
    assert len(slow.rows()) == 1  # kept: younger than its refresh interval
    assert len(fast.rows()) == 1  # served from what is kept while the rebuild runs behind
    for _ in range(200):
        if len(fast.rows()) == 2:
            break
        time.sleep(0.05)
    assert len(fast.rows()) == 2 and fast.as_of > first_read


def test_no_request_waits_for_a_slow_part(tmp_path):
    """A part that takes longer than ``wait`` is computed on its own thread: the request gets at once a page
    that says so (503, ``Retry-After``, reloading itself), and a later request gets the real page, equal to
    the one an app that waited gives."""
    from starlette.testclient import TestClient

    from mcp_tracking.events import EventRecord
    from mcp_tracking.report.serve import build_app
    from mcp_tracking.sinks.sqlite import SQLiteSink

    path = tmp_path / "big.db"
    sink = SQLiteSink(path)
    sink.write([EventRecord(name, f"u{i % 7}", f"s{i}", "srv", {"tool_name": "search"})
                for i in range(20_000) for name in ("session_start", "tool_call_started", "tool_call_completed")])
    sink.close()
    url = f"sqlite:///{path}"
    eager = TestClient(build_app(url, wait=0, warm=False))
    first = eager.get("/sessions")
    assert first.status_code == 503 and first.headers["retry-after"] == "1"
    assert "Reading the store" in first.text and 'http-equiv="refresh"' in first.text
    for _ in range(400):
        got = eager.get("/sessions")
        if got.status_code == 200:
            break
        time.sleep(0.05)
    assert got.status_code == 200
    patient = TestClient(build_app(url, wait=60, warm=False)).get("/sessions")
    strip = __import__("re").compile(r" · as of [^<]*")
    assert patient.status_code == 200 and 'href="/sessions/s' in patient.text
    assert strip.sub("", got.text) == strip.sub("", patient.text)


def test_a_page_still_being_read_reloads_itself_in_the_browser(tmp_path, browser):
    """With a store big enough that the session list is not ready at once, the browser first gets the "still
    reading" page, and without anyone clicking it turns into the session list."""
    uvicorn = pytest.importorskip("uvicorn")
    from selenium.webdriver.common.by import By

    from mcp_tracking.events import EventRecord
    from mcp_tracking.report.serve import build_app
    from mcp_tracking.sinks.sqlite import SQLiteSink

    path = tmp_path / "slow.db"
    sink = SQLiteSink(path)
    sink.write([EventRecord(name, "u", f"s{i}", "srv", {"tool_name": "search"})
                for i in range(20_000) for name in ("session_start", "tool_call_started", "tool_call_completed")])
    sink.close()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(f"sqlite:///{path}", wait=0, warm=False), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        browser.get(f"http://127.0.0.1:{port}/sessions")
        assert browser.find_elements(By.ID, "reading")  # what the first answer was
        loaded(browser)  # reloads by itself
        assert len(browser.find_elements(By.CSS_SELECTOR, "tr.session-row")) > 0
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_store_that_cannot_tell_it_changed_is_read_again_after_refresh():
    """A memory store has no event count to check: its figures are kept for ``refresh`` seconds, then read
    again behind the kept ones, like a SQL store that changed (never recomputed by every request)."""
    from mcp_tracking import MemorySink
    from mcp_tracking.events import EventRecord
    from mcp_tracking.report.serve import Store

    sink = MemorySink()
    sink.write([EventRecord("session_start", "u", "first", "srv", {})])
    kept, fresh = Store(sink, refresh=3600), Store(sink, refresh=0)
    assert len(kept.rows()) == len(fresh.rows()) == 1
    sink.write([EventRecord("session_start", "u", "second", "srv", {})])
    assert len(kept.rows()) == 1
    for _ in range(200):
        if len(fresh.rows()) == 2:
            break
        time.sleep(0.05)
    assert len(fresh.rows()) == 2 and len(kept.rows()) == 1
