"""Choose a kernel in JupyterLab's launcher and run a cell in it, in headless Chromium.

Run inside the laptop's namespace (where the session's tunnel listens). Reads one JSON object
on stdin (the token never goes into argv):

  {"url": "http://127.0.0.1:PORT/", "token": "...", "timeout": 120, "screenshot": "/tmp/x.png",
   "kernels": [{"display_name": "Torchish (CUDA 12.4)", "code": "print(...)", "expect": "NBK|"}]}

For each kernel, as a person would: open a fresh JupyterLab workspace (its launcher), click the
Notebook card with that display name, wait for the notebook's kernel to be that kernel and idle,
type the code into the first cell, run it with Shift+Enter and wait for output containing
`expect`. Prints {"results": [{"display_name", "kernel_label", "output", "sessions"}]}; the
notebooks, their kernels and the workspaces it made are removed again.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys


def api(base: str, token: str, method: str, path: str) -> Any:
    req = urllib.request.Request(base + path, method=method)
    req.add_header("Authorization", f"token {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
    return json.loads(body) if body else None


def browser(profile: str) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    flags = "--headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run"
    flags += " --disable-background-networking --disable-component-update --disable-sync"
    for flag in [*flags.split(), "--window-size=1400,1000", f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def until(what: str, timeout: float, probe: Callable[[], Any]) -> Any:
    """probe() until it returns something true (page changes raise WebDriverException)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(WebDriverException):
            found = probe()
            if found:
                return found
        time.sleep(0.3)
    raise SystemExit(f"browser: {what} did not happen within {timeout:.0f} s")


def visible(driver: webdriver.Chrome, css: str) -> list[Any]:
    return [e for e in driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]


def launcher_card(driver: webdriver.Chrome, display_name: str) -> Any:
    for card in visible(driver, ".jp-LauncherCard[data-category='Notebook']"):
        if card.find_element(By.CSS_SELECTOR, ".jp-LauncherCard-label").text == display_name:
            return card
    return None


def kernel_ready(driver: webdriver.Chrome, display_name: str) -> str | None:
    """The notebook's kernel label once it shows this kernel and the kernel is idle."""
    labels = [e.text for e in visible(driver, ".jp-NotebookPanel-toolbar .jp-KernelName")]
    idle = visible(driver, ".jp-NotebookPanel-toolbar [data-status='idle']")
    return labels[0] if labels and labels[0] == display_name and idle else None


def output_with(driver: webdriver.Chrome, expect: str) -> str | None:
    text = "\n".join(o.text for o in visible(driver, ".jp-OutputArea-output"))
    return text if expect in text else None


def run_in_kernel(
    driver: webdriver.Chrome, base: str, token: str, kernel: dict[str, str], timeout: float
) -> dict[str, str]:
    name = kernel["display_name"]
    workspace = f"nodebook-kernels-{uuid.uuid4().hex[:8]}"
    before = {s["id"] for s in api(base, token, "GET", "api/sessions")}
    try:
        # A workspace of its own, reset: JupyterLab opens with its launcher.
        driver.get(f"{base}lab/workspaces/{workspace}?reset&token={token}")
        card = until(f"the launcher card {name!r}", timeout, lambda: launcher_card(driver, name))
        card.click()
        label = until(f"kernel {name!r} idle", timeout, lambda: kernel_ready(driver, name))
        editor = until(
            "the first cell's editor", timeout, lambda: visible(driver, ".jp-Cell .cm-content")
        )[0]
        editor.click()
        ActionChains(driver).send_keys(kernel["code"]).perform()
        ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        output = until(
            f"output with {kernel['expect']!r}",
            timeout,
            lambda: output_with(driver, kernel["expect"]),
        )
        mine = [s for s in api(base, token, "GET", "api/sessions") if s["id"] not in before]
        sessions = [{"path": s["path"], "kernel": s["kernel"]["name"]} for s in mine]
        return {"display_name": name, "kernel_label": label, "output": output, "sessions": sessions}
    finally:
        for s in api(base, token, "GET", "api/sessions"):
            if s["id"] not in before:
                with contextlib.suppress(OSError):
                    api(base, token, "DELETE", f"api/sessions/{s['id']}")
                with contextlib.suppress(OSError):
                    api(base, token, "DELETE", f"api/contents/{s['path']}")
        with contextlib.suppress(OSError):
            api(base, token, "DELETE", f"lab/api/workspaces/{workspace}")


def main() -> None:
    args = json.load(sys.stdin)
    base, token = args["url"].rstrip("/") + "/", args["token"]
    timeout = float(args.get("timeout", 120))
    results = []
    with tempfile.TemporaryDirectory() as profile:
        driver = browser(profile)
        try:
            for kernel in args["kernels"]:
                results.append(run_in_kernel(driver, base, token, kernel, timeout))
        except BaseException:
            if args.get("screenshot"):
                driver.save_screenshot(args["screenshot"])
            raise
        finally:
            driver.quit()
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
