"""Every remote test of tests/system/test_remote.py again, over SSH/gitolite and HTTP/Apache.

The vault is a hosted one (identity required, vouched for by the server); the CLI acts as the
server's admin user, who may act as every agent those tests use.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from gitvault import Vault

from ..conftest import Git, git_in
from .servers import ADMIN, Server
from .test_remote import (  # noqa: F401  (pytest collects these here too)
    run,
    test_a_second_agent_is_merged,
    test_a_stale_token_is_fenced_remotely,
    test_checkout_checkin_release,
    test_conflicts_are_reported_listed_and_resolved,
    test_exclusive_leases_hold_across_the_wire,
)

_names = itertools.count()


@pytest.fixture(params=["ssh", "http"])
def server(request: pytest.FixtureRequest) -> Server:
    s: Server = request.getfixturevalue(f"{request.param}_server")
    return s


@pytest.fixture
def repo(server: Server) -> str:
    name = f"remote-{next(_names)}"
    server.vault(name)
    return name


@pytest.fixture
def vault(server: Server, repo: str) -> Vault:
    return Vault.open(server.path(repo))


@pytest.fixture
def git(vault: Vault) -> Git:
    return git_in(Path(vault.path))


@pytest.fixture
def target(server: Server, repo: str) -> str:
    return server.url(ADMIN, repo)
