"""Every plain-git recipe the README documents runs against a real vault."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gitvault import Vault
from gitvault.errors import ConflictError

README = Path(__file__).resolve().parents[2] / "README.md"


def recipes() -> list[str]:
    text = README.read_text()
    block = text.split("## Provenance from plain git", 1)[1].split("```sh", 1)[1].split("```")[0]
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("git ")]


@pytest.fixture
def busy(vault: Vault) -> Vault:
    """A vault with checkins, a merge and a kept conflict, like the recipes expect."""
    with vault.lease("planner") as co:
        co.doc["roadmap"]["vision"] = "v2"
        co.commit(source="web-research", confidence=0.8, justification="user said so")
    a, b = vault.checkout("planner"), vault.checkout("coder")
    a.document["tasks"][0]["status"] = "A"
    b.document["tasks"][0]["status"] = "B"
    b.document["bugs"].append({"id": "B-9"})
    vault.checkin("planner", a.document, "s")
    with pytest.raises(ConflictError):
        vault.checkin("coder", b.document, "s")
    return vault


def test_the_readme_documents_recipes() -> None:
    assert len(recipes()) >= 8


@pytest.mark.parametrize("recipe", recipes())
def test_each_readme_recipe_runs(busy: Vault, recipe: str) -> None:
    r = subprocess.run(recipe, shell=True, cwd=busy.path, capture_output=True, text=True)
    assert r.returncode == 0, f"{recipe}: {r.stderr}"
    assert r.stdout.strip(), recipe
