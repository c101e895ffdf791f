"""Shared by the review-page tests: the demo vault, a real `gitvault serve`, a real browser.

Kept out of a conftest.py so other system tests' fixtures do not collide with these; the test
modules import what they use.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitvault import Vault
from gitvault.errors import ConflictError

from ..conftest import EXAMPLE, fast

ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN = "test-token-0123456789abcdef"
PERSON = "alice"
SCRIPT = (
    "<script>document.title='pwned';window.__pwned=1</script>"
    '<img src=x onerror="window.__pwned=2">'
)
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def need(*programs: str) -> None:
    """Skip with the reason when a program is missing; under CI=true fail instead."""
    missing = [p for p in programs if not os.path.exists(p)]
    if missing:
        why = (
            f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver "
            "(tools/install-system-deps.sh)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


def build_demo(path: Path) -> Vault:
    """The demo of examples/demo.py through the library: the legacy import, two agents and a
    merge, a kept conflict (coder/1 on /tasks/[id=T-003]/status), and a value holding markup."""
    Vault.init(path, EXAMPLE)
    fast(path)
    planner, coder, reviewer = (Vault.open(path) for _ in range(3))
    p = planner.checkout("planner", 600).document
    c = coder.checkout("coder", 600).document
    p["tasks"][0]["status"] = "doing"
    c["tasks"][1]["status"] = "done"
    c["bugs"].append({"id": "B-005", "title": "Merge keeps both agents' work", "open": False})
    planner.checkin("planner", p, "planning-session", 0.9, "user confirmed the roadmap")
    coder.checkin("coder", c, "ci-logs", 0.7, "T-002 finished, found B-005")
    r = reviewer.checkout("reviewer", 600).document
    c = coder.checkout("coder", 600).document
    r["tasks"][2]["status"] = "todo"
    r["roadmap"]["note"] = SCRIPT
    c["tasks"][2]["status"] = "blocked"
    reviewer.checkin("reviewer", r, "code-review", 0.95, "reopened T-003 " + SCRIPT)
    with pytest.raises(ConflictError):
        coder.checkin("coder", c, "ci-logs", 0.6, "T-003 blocked")
    for v, agent in ((planner, "planner"), (coder, "coder")):
        v.release(agent)
    return Vault.open(path)


@dataclass
class Server:
    url: str
    vault: Path
    proc: subprocess.Popen[str]

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        return self.proc.returncode, err


def start_server(vault: Path, *args: str) -> Server:
    """`gitvault serve` on an ephemeral 127.0.0.1 port; its first stdout line says where."""
    env = {**os.environ, "GITVAULT_SERVE_TOKEN": TOKEN, "GITVAULT_DAEMON": "0"}
    proc = subprocess.Popen(
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
            PERSON,
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        _out, err = proc.communicate(timeout=30)
        raise AssertionError(f"gitvault serve did not start: {err}")
    info: dict[str, Any] = json.loads(line)
    assert info["host"] == "127.0.0.1" and info["token"] is None  # the token came from the env
    return Server(info["url"].rstrip("/"), vault, proc)


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    path = tmp_path / "demo.git"
    build_demo(path)
    return path


@pytest.fixture
def server(demo: Path) -> Iterator[Server]:
    s = start_server(demo)
    yield s
    code, err = s.stop()
    assert code == 0, err
    assert "Traceback" not in err, err


@pytest.fixture
def serve_with(demo: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*args: str) -> Server:
        started.append(start_server(demo, *args))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def git(vault: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(vault), *args], capture_output=True, text=True, check=True
    ).stdout


def cli(vault: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GITVAULT_DAEMON": "0"}
    return subprocess.run(
        [sys.executable, "-m", "gitvault", *args, "--vault", str(vault)],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian chromium through Debian's chromedriver, with a fresh profile."""
    need(CHROMIUM, CHROMEDRIVER)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gitvault-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
