"""Fixtures of the real-server tests (tests/system/servers.py) and the set-up time they add."""

from __future__ import annotations

import pytest

from .servers import SETUP_SECONDS, _client_git, account, client_dir, http_server, ssh_server

__all__ = ["_client_git", "account", "client_dir", "http_server", "ssh_server"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SETUP_SECONDS:
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in SETUP_SECONDS.items())
        terminalreporter.write_line(f"gitvault system servers, set-up wall time: {parts}")
