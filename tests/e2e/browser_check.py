"""Drive a real headless Chromium through a notebook URL, as a person would.

Run inside the laptop's namespace (where the tunnel's local port is). Reads one JSON object on
stdin (the token never goes into argv):  {"url": "http://127.0.0.1:PORT/", "token": "...",
"app": "lab" | "notebook", "code": "print(...)", "expect": "text"}. Creates a notebook with one
cell through the REST API, opens it in Chromium, runs the cell with Shift+Enter, waits for the
output and prints {"output": "..."} on stdout; the notebook file is removed again.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
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


def main() -> None:
    args = json.load(sys.stdin)
    base, token = args["url"].rstrip("/") + "/", args["token"]
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
