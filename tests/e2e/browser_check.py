"""Drive a real headless Chromium through a notebook URL, as a person would.

Run inside the laptop's namespace (where the tunnel's local port is). Reads one JSON object on
stdin (the token never goes into argv):  {"url": "http://127.0.0.1:PORT/", "token": "...",
"app": "lab" | "notebook", "code": "print(...)", "expect": "text"}. Creates a notebook with one
cell through the REST API, opens it in Chromium, runs the cell with Shift+Enter, waits for the
output and prints {"output": "..."} on stdout; the notebook file is removed again.

With "check": "notices" it instead opens a fresh JupyterLab workspace (its Launcher) and prints
what a person sees there once the announcements plugin (news question, update check) has had
its turn (`notices` below): the toasts' texts, the status bar's notification count, the
notification plugin's fetchNews and checkForUpdates as the page goes by them and as the
schema's defaults, and when things happened (ms since the page's start); the workspace is
removed again.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
import urllib.request
import uuid
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

NAME = "nodebook-browser-check.ipynb"


def api(base: str, token: str, method: str, path: str, body: Any = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"token {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status


def get_json(base: str, token: str, path: str) -> Any:
    req = urllib.request.Request(base + path)
    req.add_header("Authorization", f"token {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def notebook(code: str) -> dict[str, Any]:
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": code}  # fmt: skip
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    content = {"cells": [cell], "metadata": {"kernelspec": kernel}, "nbformat": 4,
               "nbformat_minor": 5}  # fmt: skip
    return {"type": "notebook", "format": "json", "content": content}


def browser(profile: str) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                 f"--user-data-dir={profile}"):  # fmt: skip
        opts.add_argument(flag)
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def run_cell(driver: webdriver.Chrome, expect: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for button in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept"):
                button.click()  # a kernel chooser, should one ask
            outputs = [
                o
                for o in driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
                if o.is_displayed()
            ]
            text = "\n".join(o.text for o in outputs)
            if expect in text:
                return text
            editors = [
                e for e in driver.find_elements(By.CSS_SELECTOR, ".jp-Cell .cm-content")
                if e.is_displayed()
            ]  # fmt: skip
            idle = driver.find_elements(By.CSS_SELECTOR, "[data-status='idle']")
            if editors and idle and not outputs:
                editors[0].click()
                ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(
                    Keys.SHIFT
                ).perform()
                time.sleep(1.0)
        except WebDriverException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"no output containing {expect!r} within {timeout:.0f}s")


# What the page shows of JupyterLab's notifications. A toast is react-toastify's
# `.Toastify__toast` with JupyterLab's `jp-Notification-Toast-<type>` class (there is no bare
# `jp-Notification-Toast` class); the status bar's bell counts every notification emitted.
NOTICES_JS = """
const seen = (e) => e !== null && e.offsetParent !== null;
const toasts = [...document.querySelectorAll(
  ".Toastify__toast, [class*='jp-Notification-Toast-']:not(.jp-Notification-Toast-Close)")];
const count = document.querySelector(".jp-Notification-Status-Text");
const resources = performance.getEntriesByType("resource").map((e) => e.name);
return {
  now: performance.now(),
  launcher: seen(document.querySelector(".jp-Launcher")),
  count: count === null ? null : count.textContent.trim(),
  toasts: [...new Set(toasts.map((e) => e.innerText.trim()))],
  announcements: resources.some((n) => n.includes(arguments[0])),
};
"""
# The announcements plugin (@jupyterlab/apputils-extension:announcements) decides once all of
# app.restored, the notification plugin's settings and its config section
# (GET api/config/<plugin id without non-word characters>) are there: it then emits the news
# question (fetchNews "none") at once, or asks the server for news (fetchNews "true") and
# updates (checkForUpdates true). So the page has settled when the Launcher shows (restored),
# the bell is rendered and that config request is done; two animation frames later the bell
# shows whatever was emitted. The toast itself renders a little later (react-toastify is loaded
# on the first one), so a count above 0 is then waited on until its toast shows.
ANNOUNCEMENTS_CONFIG = "/api/config/jupyterlabapputilsextensionannouncements"
FRAMES_JS = "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));"


def notices(driver: webdriver.Chrome, base: str, token: str, timeout: float) -> dict[str, Any]:
    """A fresh workspace's Launcher: the toasts and notification count once the page settled."""
    workspace = f"nodebook-notices-{uuid.uuid4().hex[:8]}"
    timings: dict[str, float] = {}
    launcher_count = None
    try:
        driver.get(f"{base}lab/workspaces/{workspace}?reset&token={token}")
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                state = driver.execute_script(NOTICES_JS, ANNOUNCEMENTS_CONFIG)
            except WebDriverException:
                state = {}
            if state.get("launcher") and "launcher_ms" not in timings:
                timings["launcher_ms"] = state["now"]
                launcher_count = state["count"]
            if state.get("launcher") and state.get("count") is not None and state["announcements"]:
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"the Launcher did not settle within {timeout:.0f}s: {state}")
        timings["settled_ms"] = state["now"]
        driver.execute_async_script(FRAMES_JS)
        state = driver.execute_script(NOTICES_JS, ANNOUNCEMENTS_CONFIG)
        timings["checked_ms"] = state["now"]
        checked_count = state["count"]
        # Something was emitted: wait (bounded) until its toast shows, to report what it says.
        while state["count"] != "0" and not state["toasts"] and time.monotonic() < deadline:
            time.sleep(0.05)
            state = driver.execute_script(NOTICES_JS, ANNOUNCEMENTS_CONFIG)
        if state["toasts"]:
            timings["toast_ms"] = state["now"]
        notification = "lab/api/settings/@jupyterlab/apputils-extension:notification"
        settings = get_json(base, token, notification)
    finally:
        with contextlib.suppress(OSError):
            api(base, token, "DELETE", f"lab/api/workspaces/{workspace}")
    props = settings["schema"]["properties"]
    effective = {
        key: settings["settings"].get(key, props[key].get("default"))
        for key in ("fetchNews", "checkForUpdates")
    }
    defaults = {key: props[key].get("default") for key in effective}
    return {
        "toasts": state["toasts"],
        "count": state["count"],
        "checked_count": checked_count,
        "launcher_count": launcher_count,
        "settings": effective,
        "defaults": defaults,
        "user_settings": settings["settings"],
        "timings": timings,
    }


def main() -> None:
    args = json.load(sys.stdin)
    base, token = args["url"].rstrip("/") + "/", args["token"]
    if args.get("check") == "notices":
        with tempfile.TemporaryDirectory() as profile:
            driver = browser(profile)
            try:
                result = notices(driver, base, token, float(args.get("timeout", 90)))
            finally:
                driver.quit()
        print(json.dumps(result))
        return
    assert api(base, token, "PUT", f"api/contents/{NAME}", notebook(args["code"])) in (200, 201)
    page = "lab/tree" if args.get("app", "lab") == "lab" else "notebooks"
    try:
        with tempfile.TemporaryDirectory() as profile:
            driver = browser(profile)
            try:
                driver.get(f"{base}{page}/{NAME}?token={token}")
                output = run_cell(driver, args["expect"], float(args.get("timeout", 90)))
            finally:
                driver.quit()
    finally:
        api(base, token, "DELETE", f"api/contents/{NAME}")
    print(json.dumps({"output": output}))


if __name__ == "__main__":
    main()
