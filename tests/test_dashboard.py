"""The HTML dashboard: self-contained, and rendered by a real headless browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from conftest import IN_CI
from test_metrics import scenario

from mcp_tracking import SQLiteSink
from mcp_tracking.report.dashboard import write_dashboard


@pytest.fixture(name="page")
def _page(tmp_path):
    sink = SQLiteSink(tmp_path / "d.db")
    sink.write(scenario())
    out = tmp_path / "report.html"
    write_dashboard(f"sqlite:///{tmp_path}/d.db", out)
    return out


def test_dashboard_is_self_contained(page):
    """No external resources: no http(s) URLs in src/href, no CDN; every chart and table is inline."""
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html)
    assert "<script src" not in html and "@import" not in html
    for chart in ("chart-trend", "chart-popularity", "chart-latency", "chart-confusion", "chart-unknown",
                  "chart-hotspots"):
        assert f'id="{chart}"' in html
    assert "t1 → t2" in html and "limit" in html
    worst = html[html.index('id="worst"'):]  # the worst sessions, call by call
    assert worst.count('class="card timeline"') == 3 and "switched from &#x27;t1&#x27; after it failed" in worst
    unknown = html[html.index('id="unknown"'):]
    assert "Unknown tool names" in unknown and "<td>t3</td>" in unknown and "t1 (1)" in unknown


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_dashboard_renders_in_headless_chromium(page, tmp_path):
    """Chromium renders it: the script ran, the charts have bars and lines, no console errors."""
    browser = chromium()
    if browser is None:
        if IN_CI:
            pytest.fail("chromium is required in CI (apt-get install chromium)")
        pytest.skip("chromium not installed")
    profile = tmp_path / "profile"
    dom = subprocess.run([browser, *CHROME_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                          "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-rendered="1"' in dom.stdout  # the inline script ran
    assert dom.stdout.count('class="bar"') >= 8 and 'class="series"' in dom.stdout
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and "rror" in line]
    assert not console_errors, console_errors
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *CHROME_FLAGS, f"--user-data-dir={profile}", "--window-size=1400,2200",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=90, check=True)
    assert shot.stat().st_size > 20_000  # a page with content, not a blank canvas
    if os.environ.get("MCP_TRACKING_SCREENSHOT"):
        shutil.copy(shot, os.environ["MCP_TRACKING_SCREENSHOT"])
