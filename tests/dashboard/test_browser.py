"""The dashboard in a real headless Chromium against a real server, queue and workers.

Debian's ``/usr/bin/chromium`` driven through its ``/usr/bin/chromedriver``
(selenium's own manager would try to download a browser). Each page is saved
under ``artifacts/screenshots/`` for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from dash_helpers import add_user, owned_batch, submitted_by, task_statuses
from server_helpers import run_cli, running_server
from waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = Path(os.environ.get("HPCLAUNCH_ARTIFACTS", Path(__file__).parents[2] / "artifacts"))
SWEEP = (
    "command: \"sleep 1; test {x} -ne 5 || {{ echo 'boom at x={x}' >&2; exit 3; }}\"\n"
    "tags: [web]\nmax_attempts: 1\nparams:\n  x: ["
    + ", ".join(str(i) for i in range(1, 25))
    + "]\n"
)
HOLD = 'command: "sleep 60"\nn_runs: 6\ntags: [hold]\n'


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = "needs Debian's chromium and chromium-driver (scripts/testenv.sh installs them)"
        if os.environ.get("HPCLAUNCH_TESTENV_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def shoot(driver, name: str) -> None:
    """A full-page screenshot (the window grown to the page's height)."""
    folder = SHOTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(int(height) + 140, 700), 3000))
    driver.save_screenshot(str(folder / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def attr(driver, css: str, name: str) -> str | None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return driver.find_element(By.CSS_SELECTOR, css).get_attribute(name)
    except (NoSuchElementException, StaleElementReferenceException):
        return None  # the live region is being swapped: ask again


def test_a_day_in_the_dashboard(pg_queue_url, tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url = pg_queue_url
    _, alice = add_user("alice", "lab1")
    add_user("bob", "lab2")
    sweep = owned_batch(url, tmp_path, "sweep", SWEEP, owner="alice", group="lab1")
    hold = owned_batch(url, tmp_path, "hold", HOLD, owner="alice", group="lab1")
    other = owned_batch(url, tmp_path, "other", HOLD, owner="bob", group="lab2")

    with running_server(tmp_path / "serve.log") as (_, base):
        # Signing in: the page asked for comes back after the form.
        browser.get(f"{base}/ui/batches/{sweep}")
        assert "/ui/login" in browser.current_url
        shoot(browser, "login")
        browser.find_element(By.ID, "token").send_keys(alice)
        browser.find_element(By.ID, "signin").click()
        wait_until(lambda: browser.current_url.endswith(f"/ui/batches/{sweep}"), what="batch page")
        assert attr(browser, "#progress", "data-completed") == "0"
        browser.execute_script("window.hpclaunchNoReload = 42")

        # Real workers (a local launch) run the sweep; the bar moves without a reload.
        submitted = run_cli(
            "submit", "--site", "local", "--workers", "2", "-t", "web",
            "--set", f"workdir={tmp_path / 'runs'}", "--json",
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        launch_id = json.loads(submitted.stdout)["launch_id"]
        submitted_by(pg_queue_url, "alice", launch_id)  # alice's launch, in her view
        seen: list[int] = []

        def finished() -> bool:
            done = attr(browser, "#progress", "data-completed")
            failed = attr(browser, "#progress", "data-failed")
            if done is None or failed is None:
                return False
            if not seen or seen[-1] != int(done):
                seen.append(int(done))
            return int(done) + int(failed) == 24

        wait_until(finished, timeout=180, interval=0.5, what="the sweep's bar reaching 24")
        assert browser.execute_script("return window.hpclaunchNoReload") == 42
        assert any(0 < n < 23 for n in seen), f"no intermediate progress seen: {seen}"
        assert seen == sorted(seen) and seen[-1] == 23
        shoot(browser, "batch")

        # The failed task: filter the table, open it, read its error.
        Select(browser.find_element(By.ID, "status-filter")).select_by_value("failed")
        browser.find_element(By.ID, "filter").click()
        wait_until(lambda: "status=failed" in browser.current_url, what="filtered table")
        rows = browser.find_elements(By.CSS_SELECTOR, "#tasks td.st-failed")
        assert len(rows) == 1
        browser.find_element(By.CSS_SELECTOR, "#tasks a[href^='/ui/tasks/']").click()
        wait_until(lambda: "/ui/tasks/" in browser.current_url, what="task page")
        assert "boom at x=5" in text(browser, "#stderr")
        assert "exit" in text(browser, "#task-error")
        assert text(browser, "#task-status") == "failed"
        shoot(browser, "task")

        # The launch's element verdicts, as `status` records them; then each page.
        run_cli("status", "--launch", launch_id, "--json")
        for name, path in (
            ("launches", "/ui/launches"),
            ("launch", f"/ui/launches/{launch_id}"),
            ("workers", "/ui/workers?show=all"),
            ("runtimes", "/ui/runtimes"),
            ("tasks", "/ui/tasks"),
        ):
            browser.get(base + path)
            assert "Error" not in browser.title, (path, browser.title)
            shoot(browser, name)
        browser.get(f"{base}/ui/launches/{launch_id}")
        assert browser.find_elements(By.CSS_SELECTOR, "#timeline svg rect")

        # Cancel a batch with its button: its tasks are canceled in the database.
        browser.get(f"{base}/ui/batches/{hold}")
        browser.find_element(By.ID, "cancel-batch").click()
        wait_until(lambda: "did=cancel" in browser.current_url, what="cancel done")
        assert "Canceled: 6 task(s)" in text(browser, "#notice")
        assert task_statuses(url, hold) == {"canceled": 6}

        # Another group's batch is refused.
        browser.get(f"{base}/ui/batches/{other}")
        assert f"no batch {other} in your view" in text(browser, "#message")
        assert task_statuses(url, other) == {"pending": 6}
        shoot(browser, "refused")

        browser.get(f"{base}/ui/batches")
        shoot(browser, "batches")
        browser.get(f"{base}/ui/")
        assert text(browser, "#status-counts")
        shoot(browser, "overview")

        # Sign out: back to the form, and the pages ask for it again.
        browser.find_element(By.ID, "logout").click()
        wait_until(lambda: browser.current_url.endswith("/ui/login"), what="signed out")
        browser.get(f"{base}/ui/")
        assert "/ui/login" in browser.current_url
    if os.environ.get("HPCLAUNCH_README_SHOT"):  # refresh the README's picture on purpose only
        shutil.copy(SHOTS / "screenshots" / "overview.png", os.environ["HPCLAUNCH_README_SHOT"])
