"""Leases: refs + notes, the injective escape, exclusivity, expiry, fencing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitvault import Vault
from gitvault.errors import InputError, LeaseExpired, LeaseFenced, LeaseHeld, NoLease
from gitvault.model.leases import lease_ref
from gitvault.model.provenance import escape_agent, unescape_agent

from ..conftest import Git, fast

AWKWARD = [
    "a/b",
    "a_b",
    "a%2Fb",
    "a..b",
    "x.lock",
    "café ☕",
    "with space",
    "-dash",
    "a.b",
    "HEAD",
    "@{1}",
    "a\\b",
    "*",
    "~^:?[",
    ".hidden",
    "end.",
    "A",
    "a",
]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(vault_path: Path, clock: Clock) -> Vault:
    Vault.init(vault_path)
    fast(vault_path)
    return Vault.open(vault_path, clock=clock)


@given(
    st.text(min_size=1).filter(
        lambda s: "\x00" not in s and len(s.encode("utf-8", "replace")) <= 80
    )
)
def test_escape_round_trips(agent: str) -> None:
    try:
        esc = escape_agent(agent)
    except InputError:
        return  # lone surrogates
    assert unescape_agent(esc) == agent
    assert all(c.isalnum() or c in "_-%" for c in esc)


def test_awkward_agent_ids_get_distinct_refs_inside_refs_leases(
    empty_vault: Vault, git: Git
) -> None:
    for agent in AWKWARD:
        empty_vault.checkout(agent)
    refs = git("for-each-ref", "--format=%(refname)", "refs/leases/").split()
    assert len(refs) == len(set(refs)) == len(AWKWARD)
    assert all(r.startswith("refs/leases/") and r.count("/") == 2 for r in refs)
    for agent in AWKWARD:
        note = json.loads(git("notes", "--ref=leases", "show", lease_ref(agent)))
        assert note["agent"] == agent
    git("fsck", "--full")


@pytest.mark.parametrize("agent", ["", "a\x00b", "x" * 81])
def test_bad_agent_ids_are_refused(empty_vault: Vault, agent: str) -> None:
    with pytest.raises(InputError):
        empty_vault.checkout(agent)


def test_the_note_shows_mode_token_base_and_expiry(empty_vault: Vault, git: Git) -> None:
    co = empty_vault.checkout("planner", 60)
    note = json.loads(git("notes", "--ref=leases", "show", "refs/leases/planner"))
    assert note["mode"] == "shared" and note["token"] == co.lease.token == 1
    assert note["base"] == git("rev-parse", "main").strip()
    assert note["ttl"] == 60 and note["expires"].endswith("Z")


def test_tokens_increase_across_the_vault_and_on_renewal(empty_vault: Vault) -> None:
    tokens = [empty_vault.checkout(a).lease.token for a in ("a", "b", "a", "c")]
    assert tokens == [1, 2, 3, 4]


def test_renewal_replaces_the_old_note(empty_vault: Vault, git: Git) -> None:
    empty_vault.checkout("a")
    empty_vault.checkout("a")
    assert len(git("notes", "--ref=leases", "list").splitlines()) == 1


def test_exclusive_lease_refuses_while_another_is_live(empty_vault: Vault) -> None:
    empty_vault.checkout("a")
    with pytest.raises(LeaseHeld) as e:
        empty_vault.checkout("b", exclusive=True)
    assert e.value.exit_code == 4


def test_exclusive_lease_blocks_others_while_held(empty_vault: Vault, git: Git) -> None:
    empty_vault.checkout("a", exclusive=True)
    before = git("for-each-ref")
    with pytest.raises(LeaseHeld):
        empty_vault.checkout("b")
    assert git("for-each-ref") == before  # a rejected command changes nothing


def test_the_holder_may_renew_its_exclusive_lease(empty_vault: Vault) -> None:
    empty_vault.checkout("a", exclusive=True)
    assert empty_vault.checkout("a", exclusive=True).lease.mode == "exclusive"


def test_expired_leases_never_count_as_held(timed: Vault, clock: Clock) -> None:
    timed.checkout("a", 10, exclusive=True)
    clock.now += 11
    assert timed.checkout("b", exclusive=True).lease.mode == "exclusive"
    st = timed.status()
    assert {x.agent: x.live(st.now) for x in st.leases} == {"a": False, "b": True}


def test_checkin_with_an_expired_lease_is_refused(timed: Vault, clock: Clock) -> None:
    timed.checkout("a", 10)
    clock.now += 10
    head = timed.head()
    with pytest.raises(LeaseExpired):
        timed.checkin("a", {"k": 1}, "s")
    assert timed.head() == head


def test_checkin_without_lease_is_refused(empty_vault: Vault) -> None:
    with pytest.raises(NoLease):
        empty_vault.checkin("nobody", {"k": 1}, "s")


def test_a_stale_token_is_fenced(empty_vault: Vault) -> None:
    old = empty_vault.checkout("a").lease.token
    empty_vault.checkout("a")
    head = empty_vault.head()
    with pytest.raises(LeaseFenced):
        empty_vault.checkin("a", {"k": 1}, "s", lease=old)
    assert empty_vault.head() == head


def test_release_drops_ref_and_note(empty_vault: Vault, git: Git) -> None:
    empty_vault.checkout("a")
    assert empty_vault.release("a") is not None
    assert git("for-each-ref", "refs/leases/") == ""
    assert git("notes", "--ref=leases", "list") == ""
    assert empty_vault.release("a") is None


@pytest.mark.parametrize("ttl", [0, -5, 86401])
def test_bad_ttls_are_refused(empty_vault: Vault, ttl: int) -> None:
    with pytest.raises(InputError):
        empty_vault.checkout("a", ttl)


def test_default_and_maximum_ttl_come_from_the_vault_config(empty_vault: Vault, git: Git) -> None:
    git("config", "gitvault.defaultTtl", "120")
    git("config", "gitvault.maxTtl", "200")
    v = Vault.open(empty_vault.path)
    assert v.checkout("a").lease.ttl == 120
    with pytest.raises(InputError, match="maximum of 200"):
        v.checkout("a", 201)
