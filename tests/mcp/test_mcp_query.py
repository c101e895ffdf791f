"""The MCP tools `query` and `search`, and `max_bytes` on read tools, through the SDK's own
client and a real server subprocess (the way tests/test_mcp.py runs them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession

from gitvault import Vault
from gitvault.core import pointers

from ..conftest import EXAMPLE, fast
from .test_mcp import call, fail, run_with


@pytest.fixture
def vault_dir(tmp_path: Path) -> Path:
    """The bundled example imported, fsync off (as in tests/test_mcp.py)."""
    path = tmp_path / "v.git"
    Vault.init(path, import_dir=EXAMPLE)
    fast(path)
    return path


BLOCKED = [f"T-{n:03d}" for n in range(1, 41, 3)]  # 14 tasks


def block(vault: Path) -> None:
    """Mark BLOCKED as blocked (positions are id - 1 in the example)."""
    v = Vault.open(vault)
    v.checkout("setup", 60)
    v.checkin_patch(
        "setup",
        [
            {"op": "replace", "path": f"/tasks/{int(t[2:]) - 1}/status", "value": "blocked"}
            for t in BLOCKED
        ],
        "test",
        1.0,
        "blocked",
    )
    v.release("setup")


def size(values: list[Any]) -> int:
    return len(json.dumps(values, separators=(",", ":")).encode())


def test_blocked_tasks_within_max_bytes_come_cut_and_the_rest_follows(
    tmp_path: Path, vault_dir: Path
) -> None:
    block(vault_dir)

    async def scenario(s: ClientSession) -> None:
        expr = "tasks[?status=='blocked']"
        first = await call(s, "query", expression=expr, max_bytes=2000)
        assert first["cut"] and first["next_offset"] == len(first["matches"])
        assert size(first["matches"]) <= 2000 and "offset=" in first["note"]
        got, answer = list(first["matches"]), first
        while answer["next_offset"] is not None:
            answer = await call(
                s,
                "query",
                expression=expr,
                max_bytes=2000,
                offset=answer["next_offset"],
                rev=first["commit"],
            )
            got += answer["matches"]
        assert [m["value"]["id"] for m in got] == BLOCKED
        assert got[0]["pointer"] == "/tasks/0" and got[0]["path"] == "/tasks/[id=T-001]"

    run_with(tmp_path, vault_dir, "planner")(scenario)


def test_query_pointers_patch_the_values_found_over_mcp(tmp_path: Path, vault_dir: Path) -> None:
    block(vault_dir)

    async def scenario(s: ClientSession) -> None:
        await call(s, "checkout", max_bytes=500)
        found = await call(s, "query", expression="tasks[?status=='blocked'].status")
        patch = [{"op": "replace", "path": m["pointer"], "value": "todo"} for m in found["matches"]]
        await call(
            s, "checkin", patch=patch, source="triage", confidence=0.8, justification="unblocked"
        )
        after = await call(s, "query", expression="tasks[?status=='blocked']")
        assert after["matches"] == [] and after["next_offset"] is None

    run_with(tmp_path, vault_dir, "planner")(scenario)


def test_a_bad_expression_is_an_error_with_its_position(tmp_path: Path, vault_dir: Path) -> None:
    async def scenario(s: ClientSession) -> None:
        error = await fail(s, "query", expression="tasks[?status==")
        assert error["exit_code"] == 1 and error["position"] == 15
        unknown = await fail(s, "query", expression="taskz[0]")
        assert "its keys: agents" in unknown["message"]

    run_with(tmp_path, vault_dir, "planner")(scenario)


def test_search_finds_words_ranked_and_blamed(tmp_path: Path, vault_dir: Path) -> None:
    async def scenario(s: ClientSession) -> None:
        r = await call(s, "search", text="sqlite queue", blame=True, limit=2)
        top = r["hits"][0]
        assert top["path"] == "/decisions/[id=D-000]/title" and top["score"] == 2
        assert top["writer"]["source"] == "legacy-import"

    run_with(tmp_path, vault_dir, "planner")(scenario)


def test_show_and_checkout_cut_at_whole_values_and_show_continues(
    tmp_path: Path, vault_dir: Path
) -> None:
    whole = Vault.open(vault_dir).read()

    async def scenario(s: ClientSession) -> None:
        co = await call(s, "checkout", max_bytes=1000)
        assert co["document"] is None and co["parts"] and "show with rev=" in co["note"]
        parts, offset = list(co["parts"]), co["next_offset"]
        while offset is not None:
            more = await call(s, "show", rev=co["lease"]["base"], max_bytes=1000, offset=offset)
            parts += more["parts"]
            offset = more["next_offset"]
        for p in parts:  # each part is a whole value of the document, at its pointer
            assert pointers.get(whole, p["pointer"]) == p["value"]
        assert len({p["pointer"] for p in parts}) == len(parts)
        assert {p["pointer"].split("/")[1] for p in parts} == set(whole)
        small = await call(s, "show", path="/tasks/[id=T-004]/status", max_bytes=1000)
        assert small["value"] == "done" and small["parts"] is None

    run_with(tmp_path, vault_dir, "planner")(scenario)
