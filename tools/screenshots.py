"""Screenshots of the review page for the README: docs/screenshots/*.png.

Builds a small vault like `make demo` (the bundled legacy import, two agents and a merge, a
kept conflict, live leases), starts `gitvault serve` on an ephemeral 127.0.0.1 port, and
photographs each page with Debian's headless chromium through chromedriver (Selenium).

    .venv/bin/python tools/screenshots.py [OUT_DIR]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from gitvault import Vault
from gitvault.errors import ConflictError

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "screenshot-token"


def build(path: Path) -> None:
    Vault.init(path, ROOT / "examples" / "legacy")
    subprocess.run(
        ["git", "config", "-f", str(path / "config"), "gitvault.fsync", "false"], check=True
    )
    planner, coder, reviewer = (Vault.open(path) for _ in range(3))
    p = planner.checkout("planner", 3600).document
    c = coder.checkout("coder", 1800).document
    p["tasks"][0]["status"] = "doing"
    p["roadmap"]["vision"] = "One consistent memory, with its history, for every agent."
    c["tasks"][1]["status"] = "done"
    c["bugs"].append(
        {
            "id": "B-005",
            "title": "Merge keeps both agents' work",
            "open": False,
            "severity": "low",
            "reported_by": "coder",
        }
    )
    planner.checkin("planner", p, "planning-session", 0.9, "user confirmed the roadmap")
    coder.checkin("coder", c, "ci-logs", 0.7, "T-002 finished, found B-005")
    # the reviewer's lease was taken an hour ago for 10 minutes: the page shows it expired
    Vault.open(path, clock=lambda: time.time() - 3600).checkout("reviewer", 600)
    r = reviewer.read()
    c = coder.checkout("coder", 1800).document
    r["tasks"][2]["status"] = "todo"
    c["tasks"][2]["status"] = "blocked"
    c["tasks"][2]["owner"] = "coder-2"
    r["tasks"][2]["owner"] = "reviewer"
    reviewer.leases.acquire("reviewer", 600)  # (renewed to check in, then left to expire)
    reviewer.checkin("reviewer", r, "code-review", 0.95, "reopened T-003")
    Vault.open(path, clock=lambda: time.time() - 3600).checkout("reviewer", 600)
    try:
        coder.checkin("coder", c, "ci-logs", 0.6, "T-003 blocked on the parser")
    except ConflictError:
        return  # kept as coder/1: the Conflicts page has something to show
    raise SystemExit("the coder's checkin should have conflicted with the reviewer's")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gitvault-shots-"))
    vault = work / "demo.git"
    build(vault)
    env = {**os.environ, "GITVAULT_SERVE_TOKEN": TOKEN, "GITVAULT_DAEMON": "0"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gitvault",
            "serve",
            "--vault",
            str(vault),
            "--port",
            "0",
            "--json",
            "--name",
            "alice",
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert server.stdout is not None
    url = json.loads(server.stdout.readline())["url"].rstrip("/")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1280,800",
        f"--user-data-dir={work / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        merge = subprocess.run(
            ["git", "-C", str(vault), "log", "--merges", "--format=%H", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]

        def shot(name: str, path: str) -> None:
            driver.get(url + path)
            driver.save_screenshot(str(out / f"{name}.png"))
            print(out / f"{name}.png")

        shot("timeline", "/timeline")
        shot("commit", f"/commit/{merge}")
        driver.get(url + "/document?path=/tasks")
        row = driver.find_element(By.CSS_SELECTOR, '.row[data-path="/tasks/[id=T-001]/status"]')
        row.find_element(By.CSS_SELECTOR, "button.blame").click()
        WebDriverWait(driver, 20).until(
            lambda d: row.find_elements(By.CSS_SELECTOR, ".blame-entry")
        )
        driver.save_screenshot(str(out / "document.png"))
        print(out / "document.png")
        driver.get(url + f"/login?token={TOKEN}")
        shot("conflicts", "/conflicts")
        shot("leases", "/leases")
    finally:
        driver.quit()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
