"""Four agents write interleaved for 200 commits (with merges); quarantining one leaves what
replaying only the other three agents' changes gives, checked by a replay written here.

Each agent works in its own places: items it created, its own field ``f_<agent>`` on the
shared seed items, its own ``log-<agent>`` key. Every change is recorded as an intended
operation (by item id, not position) at the moment it lands; the expected document is the
seed with only the honest agents' operations applied, in landing order. In a few places an
honest agent overwrites a value the quarantined agent wrote (``f_mallory`` of a seed item,
after checking out a main that holds it): those, and only those, must be conflicts.
"""

from __future__ import annotations

import copy
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gitvault import Vault
from gitvault.errors import ConflictError, NotAllowed

AGENTS = ["alice", "bob", "carol", "mallory"]
BAD = "mallory"
SEEDS = [f"s{i:02d}" for i in range(30)]
BUILT_ON = ["s03", "s11", "s27"]  # mallory writes f_mallory there once, early; honest agents later

Op = tuple[Any, ...]


def seed() -> dict[str, Any]:
    doc: dict[str, Any] = {"items": [{"id": s, "v": 0} for s in SEEDS]}
    for a in AGENTS:
        if a != BAD:
            doc[f"log-{a}"] = []
    return doc


def apply(doc: dict[str, Any], op: Op) -> None:
    """The independent model of one intended change."""
    kind = op[0]
    items = doc["items"]
    if kind == "add":
        items.append(copy.deepcopy(op[1]))
    elif kind == "set":
        _, item_id, name, value = op
        next(i for i in items if i["id"] == item_id)[name] = value
    elif kind == "del":
        doc["items"] = [i for i in items if i["id"] != op[1]]
    elif kind == "log":
        doc.setdefault(f"log-{op[1]}", []).append(op[2])
    else:
        raise AssertionError(op)


class Agent:
    def __init__(self, vault: Vault, name: str) -> None:
        self.vault, self.name, self.doc = vault, name, vault.checkout(name, 3600).document
        self.made = 0

    def own_items(self) -> list[str]:
        return [i["id"] for i in self.doc["items"] if i["id"].startswith(self.name + "-")]

    def refresh(self) -> None:
        self.doc = self.vault.checkout(self.name, 3600).document

    def change(self, rng: random.Random, step: int) -> Op:
        mine = self.own_items()
        roll = rng.random()
        if roll < 0.3 or not mine:
            self.made += 1
            return ("add", {"id": f"{self.name}-{self.made}", "v": step})
        if roll < 0.5:
            return ("set", rng.choice(mine), "v", step)
        if roll < 0.6:
            return ("del", rng.choice(mine))
        if roll < 0.85:
            choices = [s for s in SEEDS if not (self.name == BAD and s in BUILT_ON)]
            return ("set", rng.choice(choices), f"f_{self.name}", step)
        return ("log", self.name, f"{self.name} step {step}")

    def commit(self, op: Op) -> bool:
        """Check the change in; True when it merged with others' work."""
        apply(self.doc, op)
        r = self.vault.checkin(self.name, self.doc, "scenario", 0.5, f"op {op[0]}")
        assert r.commit is not None
        if r.merged:
            self.doc = self.vault.read(r.commit)
        return r.merged


@pytest.fixture
def history(tmp_path: Path) -> tuple[Vault, list[tuple[str, Op]]]:
    path = tmp_path / "v.git"
    Vault.init(path)
    subprocess.run(
        ["git", "config", "-f", str(path / "config"), "gitvault.fsync", "false"], check=True
    )
    vault = Vault.open(path)
    vault.checkout("setup")
    vault.checkin("setup", seed(), "seed", 1.0)
    vault.release("setup")
    agents = {a: Agent(vault, a) for a in AGENTS}
    rng = random.Random(17)
    landed: list[tuple[str, Op]] = []
    merges = 0
    for step in range(200):
        if step == 40:  # mallory writes the values others will build on
            for s in BUILT_ON:
                op: Op = ("set", s, "f_mallory", f"mallory-{s}")
                merges += agents[BAD].commit(op)
                landed.append((BAD, op))
            continue
        if step in (150, 165, 180):  # an honest agent overwrites one of them, having read it
            who = agents[AGENTS[step % 3]]
            who.refresh()
            s = BUILT_ON[(step - 150) // 15]
            op = ("set", s, "f_mallory", f"{who.name} fixed {s}")
            who.commit(op)
            landed.append((who.name, op))
            continue
        agent = agents[rng.choice(AGENTS)]
        if rng.random() < 0.2:
            agent.refresh()
        op = agent.change(rng, step)
        merges += agent.commit(op)
        landed.append((agent.name, op))
    assert merges > 50  # the interleaving really merged
    return vault, landed


def replay(landed: list[tuple[str, Op]], without: str) -> dict[str, Any]:
    doc = seed()
    for who, op in landed:
        if who != without:
            apply(doc, op)
    return doc


def test_quarantine_leaves_exactly_the_other_agents_work_and_reports_where_they_built_on_it(
    history: tuple[Vault, list[tuple[str, Op]]],
) -> None:
    vault, landed = history
    assert sum(1 for who, _ in landed if who == BAD) > 20
    assert vault.read() != replay(landed, without=BAD)
    head = vault.head()
    preview = vault.quarantine(BAD, by="admin", source="incident-7", dry_run=True)
    assert vault.head() == head
    expected = {f"/items/[id={s}]/f_mallory" for s in BUILT_ON}
    assert {c["path"] for c in preview.conflicts} == expected
    with pytest.raises(ConflictError) as refused:
        vault.quarantine(BAD, by="admin", source="incident-7")
    assert {c["path"] for c in refused.value.report["conflicts"]} == expected
    with pytest.raises(NotAllowed):
        vault.checkout(BAD)
    vault.resolve(refused.value.report["id"], take="ours")  # keep what the others wrote
    assert vault.read() == replay(landed, without=BAD)


def test_a_clean_quarantine_is_one_commit_that_reverts_and_records(
    history: tuple[Vault, list[tuple[str, Op]]],
) -> None:
    vault, landed = history
    r = vault.quarantine(BAD, by="admin", source="incident-7", on_conflict="ours")
    assert r.commit == vault.head()
    assert len(r.reverted) >= sum(1 for who, _ in landed if who == BAD) // 2
    assert vault.read() == replay(landed, without=BAD)
    out = subprocess.run(
        ["git", "-C", vault.path, "show", "main:.gitvault/quarantine.json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"by": "admin"' in out and BAD in out


def test_the_element_wise_undo_gives_what_the_tree_merge_gives(
    history: tuple[Vault, list[tuple[str, Op]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitvault.engine import undo_merge

    vault, _landed = history
    fast = vault.quarantine(BAD, by="admin", source="s", dry_run=True)
    monkeypatch.setattr(undo_merge, "_fast", lambda *args: False)  # every step through merge_trees
    slow = vault.quarantine(BAD, by="admin", source="s", dry_run=True)
    assert fast.patch == slow.patch
    assert sorted(
        (c["path"], c["pointer"], c["reverting"], c.get("current")) for c in fast.conflicts
    ) == sorted((c["path"], c["pointer"], c["reverting"], c.get("current")) for c in slow.conflicts)
