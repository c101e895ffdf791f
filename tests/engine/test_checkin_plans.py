"""How many merge plans a checkin makes: a race lost once is not paid for twice.

A plan made outside the lock is thrown away when main moves before the lock is taken; the
checkin then plans under the lock, where it cannot lose. The handle remembers the loss and
plans its next merge under the lock straight away, so a busy vault does not keep making
merges (and, with the vault's key, signatures) that are thrown away.
"""

from __future__ import annotations

from typing import Any

import pytest

from gitvault import Vault
from gitvault.engine import checkin, integrate


def count_plans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The agents whose merges were planned, one entry per plan."""
    made: list[str] = []
    real = integrate.plan

    def plan(*args: Any, **kwargs: Any) -> integrate.Plan:
        made.append(args[3].author.name)  # the proposal's author: its agent
        return real(*args, **kwargs)

    monkeypatch.setattr(integrate, "plan", plan)
    return made


def edit(v: Vault, agent: str, task: int, status: str) -> tuple[dict[str, Any], int]:
    co = v.checkout(agent)
    co.document["tasks"][task]["status"] = status
    return co.document, co.lease.token


def test_a_merge_planned_against_a_main_that_moved_is_planned_again_under_the_lock(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Vault.open(vault.path)
    b_doc, b_token = edit(vault, "b", 1, "b1")
    a_doc, a_token = edit(other, "a", 0, "a1")
    real_outside = checkin.Checkins._plan_outside
    raced: list[bool] = []
    outside_plans: list[str] = []

    def outside(self: checkin.Checkins, landing: checkin.Landing) -> checkin.Landing:
        outside_plans.append(landing.agent)
        planned = real_outside(self, landing)
        if not raced:  # another writer lands while b plans, once
            raced.append(True)
            other.checkin("a", a_doc, "test", lease=a_token)
        return planned

    monkeypatch.setattr(checkin.Checkins, "_plan_outside", outside)
    made = count_plans(monkeypatch)
    r = vault.checkin("b", b_doc, "test", lease=b_token)
    assert r.merged and made.count("b") == 2  # the stale plan, then one under the lock
    assert [t["status"] for t in vault.read()["tasks"][:2]] == ["a1", "b1"]

    def b_merges_after_a(n: int) -> tuple[int, list[str]]:
        """b and a both check out, a lands, then b: b's plans, and those made outside."""
        b_doc, b_token = edit(vault, "b", 1, f"b{n}")
        a_doc, a_token = edit(other, "a", 0, f"a{n}")
        other.checkin("a", a_doc, "test", lease=a_token)
        made.clear()
        outside_plans.clear()
        assert vault.checkin("b", b_doc, "test", lease=b_token).merged
        return made.count("b"), list(outside_plans)

    # the next merge of this handle is planned once, under the lock: none outside it
    assert b_merges_after_a(2) == (1, [])
    # and the one after that tries outside the lock again (and wins: nobody races it)
    assert b_merges_after_a(3) == (1, ["b"])
    assert [t["status"] for t in vault.read()["tasks"][:2]] == ["a3", "b3"]
