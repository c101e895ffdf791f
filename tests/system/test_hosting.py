"""gitvault through real git hosting: SSH with gitolite, and smart HTTP with Apache."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .servers import Server


@pytest.fixture(params=["ssh", "http"])
def server(request: pytest.FixtureRequest) -> Server:
    s: Server = request.getfixturevalue(f"{request.param}_server")
    return s


def test_a_clone_over_the_server_works(server: Server, tmp_path: Path) -> None:
    server.vault("smoke")
    r = subprocess.run(["git", "clone", "-q", server.url("alice", "smoke"), str(tmp_path / "c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
