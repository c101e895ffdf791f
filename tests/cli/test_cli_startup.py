"""What a command loads before it does its work: imports are most of a CLI call (issue 8).

These check module lists, not times, so they hold on any machine: a heavy import that creeps
into a command's path fails here with its name. `bench/cycle.py` measures the times.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gitvault import Vault

# Runs the CLI in a fresh interpreter, then writes the names of the loaded modules to argv[1].
PROBE = """
import json, sys
from gitvault.cli import app
code = 0
try:
    app(sys.argv[2:], prog_name="gitvault")
except SystemExit as e:
    code = e.code
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""

# Needed by no everyday command: pydantic (typer >= 0.29 converts options with it), rich
# (typer's fancy help), the MCP server, JSON Schema validation (only when a key has a schema).
HEAVY = {"pydantic", "rich", "mcp", "jsonschema", "deepdiff"}


def loaded(tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", PROBE, str(out), *args], check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert result["code"] in (0, None), result["code"]
    return {m.split(".")[0] for m in result["modules"]} | set(result["modules"])


def test_help_loads_neither_pygit2_nor_the_library(tmp_path: Path) -> None:
    unwanted = loaded(tmp_path, "--help") & {"pygit2", "gitvault.api.vault", *HEAVY}
    assert not unwanted, sorted(unwanted)


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["log"]])
def test_reading_commands_load_nothing_heavy(
    vault: Vault, tmp_path: Path, command: list[str]
) -> None:
    unwanted = loaded(tmp_path, "--vault", vault.path, *command) & HEAVY
    assert not unwanted, sorted(unwanted)


def test_checkout_and_checkin_load_nothing_heavy(vault: Vault, tmp_path: Path) -> None:
    head, doc = vault.head(), tmp_path / "doc.json"
    mods = loaded(tmp_path, "--vault", vault.path, "checkout", "a", "--out", str(doc))
    doc.write_text(doc.read_text().replace('"todo"', '"doing"'))
    mods |= loaded(tmp_path, "--vault", vault.path, "checkin", "a", str(doc), "startup-test")
    assert vault.head() != head
    unwanted = mods & HEAVY
    assert not unwanted, sorted(unwanted)


# The console script's first module: it must decide "daemon or here" without the heavy imports.
CLIENT_PROBE = """
import json, sys
import gitvault.console
import gitvault.daemon.client as c
c.socket_path(); c.fingerprint(); c.command_name(["--vault", "v", "status"])
assert c.via_daemon(["gitvault", "status"]) is None  # nothing listens on the test's socket
json.dump(sorted(sys.modules), sys.stdout)
"""


def test_client_loads_neither_pygit2_nor_typer() -> None:
    r = subprocess.run([sys.executable, "-c", CLIENT_PROBE], check=True, capture_output=True)
    mods = set(json.loads(r.stdout))
    unwanted = {m.split(".")[0] for m in mods} & {"pygit2", "typer", "click", *HEAVY}
    assert not unwanted, sorted(unwanted)
    assert not mods & {"gitvault.cli", "gitvault.api.vault", "gitvault.git.storage", "socket"}
