"""History walks that stop early give exactly the answers of the full walk they replace.

The oracle is libgit2's own ``TOPOLOGICAL | TIME`` walk (what ``log`` used until now) and its
first-parent walk (what ``show --at`` used), on random histories with merges, octopus merges,
many commits in the same second and clocks that go backwards, with the commit-graph file
covering all, part or none of the history.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pygit2.enums import SortMode

from gitvault import Vault, history
from gitvault.errors import InputError
from gitvault.git.storage import Store
from gitvault.history import pathindex, walk

from ..conftest import EXAMPLE, fast

T0 = 1_767_261_600  # 2026-01-01T10:00:00Z


def graph_write(path: Path, *commits: str) -> None:
    """git's commit-graph: of every ref, or of ``commits`` and their ancestors."""
    if commits:
        subprocess.run(
            ["git", "--git-dir", str(path), "commit-graph", "write", "--stdin-commits"],
            input="\n".join(commits) + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
    else:
        subprocess.run(
            ["git", "--git-dir", str(path), "commit-graph", "write", "--reachable"],
            check=True,
            capture_output=True,
        )


def graph_file(path: Path) -> Path:
    return path / "objects" / "info" / "commit-graph"


# -- random commit DAGs -----------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[list[int], int]]:
    """Commits as (parent indices, committer time): merges, ties and skewed clocks."""
    n = draw(st.integers(1, 40))
    spread = draw(st.sampled_from([0, 1, 3, 100]))  # 0: every commit in the same second
    out: list[tuple[list[int], int]] = []
    for i in range(n):
        if i == 0 or draw(st.integers(0, 9)) == 0:
            parents: list[int] = []  # another root now and then
        else:
            k = draw(st.sampled_from([1, 1, 1, 2, 2, 3]))
            parents = draw(st.lists(st.integers(0, i - 1), min_size=1, max_size=k, unique=True))
        out.append((parents, T0 + draw(st.integers(-spread, spread)) + (i if spread > 50 else 0)))
    return out


def make_dag(path: Path, spec: list[tuple[list[int], int]]) -> list[pygit2.Oid]:
    repo = pygit2.init_repository(str(path), bare=True)
    tree = repo.TreeBuilder().write()
    ids: list[pygit2.Oid] = []
    for i, (parents, when) in enumerate(spec):
        sig = pygit2.Signature("t", "t@localhost", when, 0)
        ids.append(repo.create_commit(None, sig, sig, f"c{i}\n", tree, [ids[p] for p in parents]))
    repo.references.create("refs/heads/main", ids[-1])
    return ids


def libgit2_order(path: Path, head: pygit2.Oid) -> list[str]:
    repo = pygit2.Repository(str(path))
    return [str(c.id) for c in repo.walk(head, SortMode.TOPOLOGICAL | SortMode.TIME)]


def libgit2_first_parent_at(path: Path, head: pygit2.Oid, when: float) -> str | None:
    repo = pygit2.Repository(str(path))
    walker = repo.walk(head, SortMode.TOPOLOGICAL)
    walker.simplify_first_parent()
    return next((str(c.id) for c in walker if c.commit_time <= when), None)


FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FAST
@given(spec=dags(), graphed=st.sampled_from(["all", "part", "none"]), data=st.data())
def test_the_lazy_walk_gives_libgit2s_order_on_random_histories(
    tmp_path_factory: pytest.TempPathFactory,
    spec: list[tuple[list[int], int]],
    graphed: str,
    data: st.DataObject,
) -> None:
    path = tmp_path_factory.mktemp("dag") / "v.git"
    ids = make_dag(path, spec)
    if graphed == "all":
        graph_write(path)
    elif graphed == "part":
        graph_write(path, str(ids[data.draw(st.integers(0, len(ids) - 1))]))
    store = Store.open(str(path))
    for head in {ids[-1], ids[data.draw(st.integers(0, len(ids) - 1))]}:
        w = walk.Walk(store, head)
        assert [str(c.id) for c in w] == libgit2_order(path, head)
        assert w.lazy == (graphed != "none") and w.finished


@FAST
@given(spec=dags(), data=st.data())
def test_a_walk_since_a_time_stops_early_and_misses_no_commit_of_that_time(
    tmp_path_factory: pytest.TempPathFactory, spec: list[tuple[list[int], int]], data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("dag") / "v.git"
    ids = make_dag(path, spec)
    graph_write(path, str(ids[data.draw(st.integers(0, len(ids) - 1))]))
    since = T0 + data.draw(st.integers(-5, len(spec) + 5))
    store = Store.open(str(path))
    got = [str(c.id) for c in walk.Walk(store, ids[-1], since=since) if c.commit_time >= since]
    repo = pygit2.Repository(str(path))
    assert got == [
        o for o in libgit2_order(path, ids[-1]) if repo[o].peel(pygit2.Commit).commit_time >= since
    ]


@FAST
@given(spec=dags(), graphed=st.booleans(), data=st.data())
def test_the_first_parent_date_search_finds_what_the_full_walk_found(
    tmp_path_factory: pytest.TempPathFactory,
    spec: list[tuple[list[int], int]],
    graphed: bool,
    data: st.DataObject,
) -> None:
    path = tmp_path_factory.mktemp("dag") / "v.git"
    ids = make_dag(path, spec)
    if graphed:
        graph_write(path, str(ids[data.draw(st.integers(0, len(ids) - 1))]))
    when = T0 + data.draw(st.integers(-110, len(spec) + 110))
    store = Store.open(str(path))
    found = walk.first_parent_at(store, store.commit(ids[-1]), when)
    assert (None if found is None else str(found.id)) == libgit2_first_parent_at(
        path, ids[-1], when
    )


def test_a_walk_stops_at_n_without_reading_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "v.git"
    ids = make_dag(path, [([i - 1] if i else [], T0 + i // 3) for i in range(3000)])
    graph_write(path)
    w = walk.Walk(Store.open(str(path)), ids[-1])
    first = [str(c.id) for _, c in zip(range(50), w, strict=False)]
    assert first == libgit2_order(path, ids[-1])[:50]
    assert w.lazy and not w.finished
    recent = walk.Walk(Store.open(str(path)), ids[-1], since=T0 + 990)
    assert [str(c.id) for c in recent if c.commit_time >= T0 + 990] == libgit2_order(path, ids[-1])[
        :30
    ]
    assert recent.lazy and not recent.finished  # it stopped after the last second it wanted


# -- a damaged or odd commit-graph ------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong-version"])
def test_a_damaged_commit_graph_falls_back_to_the_full_walk(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "v.git"
    ids = make_dag(path, [([i - 1] if i else [], T0) for i in range(30)])
    graph_write(path)
    f = graph_file(path)
    data = f.read_bytes()
    f.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "garbage": b"\x00" * len(data),
            "empty": b"",
            "wrong-version": data[:4] + b"\x09" + data[5:],
        }[damage]
    )
    w = walk.Walk(Store.open(str(path)), ids[-1])
    assert [str(c.id) for c in w] == libgit2_order(path, ids[-1]) and not w.lazy


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_graph_with_either_generation_version_gives_the_same_order_and_since(
    tmp_path: Path, version: str
) -> None:
    """Version 1 graphs have no corrected dates: --since then reads on, never stops wrong."""
    path = tmp_path / "v.git"
    spec = [([i - 1] if i else [], T0 + (i * 7) % 5) for i in range(60)]
    spec += [([59, 30], T0 + 2), ([60, 10, 20], T0 - 3)]
    ids = make_dag(path, spec)
    subprocess.run(
        [
            "git",
            "--git-dir",
            str(path),
            "-c",
            f"commitGraph.generationVersion={version}",
            "commit-graph",
            "write",
            "--reachable",
        ],
        check=True,
        capture_output=True,
    )
    graph = walk.CommitGraph.open(str(path))
    assert graph is not None and (graph.gda2 is None) == (version == "1")
    store = Store.open(str(path))
    assert [str(c.id) for c in walk.Walk(store, ids[-1])] == libgit2_order(path, ids[-1])
    since = T0 + 3
    got = [str(c.id) for c in walk.Walk(store, ids[-1], since=since) if c.commit_time >= since]
    repo = pygit2.Repository(str(path))
    assert got == [
        o for o in libgit2_order(path, ids[-1]) if repo[o].peel(pygit2.Commit).commit_time >= since
    ]


def test_a_graph_that_stops_adding_up_mid_walk_hands_over_to_libgit2(tmp_path: Path) -> None:
    path = tmp_path / "v.git"
    ids = make_dag(path, [([i - 1] if i else [], T0 + i % 3) for i in range(40)])
    graph_write(path)
    graph = walk.CommitGraph.open(str(path))
    assert graph is not None
    at = graph.cdat + 36 * (graph.find(ids[10].raw) or 0) + 20
    data = bytearray(graph_file(path).read_bytes())
    data[at : at + 4] = (0x0FFFFFFF).to_bytes(4, "big")  # a parent position past the end
    graph_file(path).write_bytes(bytes(data))
    w = walk.Walk(Store.open(str(path)), ids[-1])
    assert [str(c.id) for c in w] == libgit2_order(path, ids[-1]) and not w.lazy


def test_a_graph_of_a_different_history_is_only_used_for_the_commits_it_holds(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v.git"
    ids = make_dag(path, [([i - 1] if i else [], T0 + i % 2) for i in range(40)])
    graph_write(path, str(ids[5]))  # holds 6 of 40
    w = walk.Walk(Store.open(str(path)), ids[-1])
    assert [str(c.id) for c in w] == libgit2_order(path, ids[-1]) and w.lazy


# -- log, show --at and blame on real vaults --------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def log_json(store: Store, **kw: Any) -> list[dict[str, Any]]:
    return [e.to_json() for e in history.log(store, **kw)]


QUERIES: list[dict[str, Any]] = [
    {},
    {"limit": 1},
    {"limit": 3},
    {"limit": 50},
    {"since": T0 + 2},
    {"until": T0 + 2},
    {"since": T0 + 1, "until": T0 + 3, "limit": 2},
    {"since": "2025-10-02"},
    {"since": "2025-10-02", "path": "/tasks"},
    {"agent": "b", "limit": 1},
    {"key": "tasks", "since": T0},
    {"path": "/tasks/0/status", "limit": 2},
    {"since": T0 + 100},
    {"include_legacy": False, "since": T0 + 1},
]


@FAST
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["one", "race", "tick"]), st.integers(0, 3)),
        min_size=1,
        max_size=10,
    ),
    graph_at=st.integers(0, 10),
)
def test_log_and_show_at_answer_the_same_with_and_without_the_commit_graph(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]], graph_at: int
) -> None:
    """Legacy-imported history, same-second merges, and a graph covering only a prefix."""
    base = tmp_path_factory.mktemp("vault")
    path = base / "v.git"
    clock = Clock(T0)
    Vault.init(path, EXAMPLE, clock=clock)
    fast(path)
    vault = Vault.open(path, clock=clock)
    for i, (kind, task) in enumerate(steps):
        if i == graph_at:
            graph_write(path)
        if kind == "tick":
            clock.now += 1
        a = vault.checkout("a")
        a.document["tasks"][task]["status"] = f"s{i}"
        if kind == "race":
            b = vault.checkout("b")
            b.document["tasks"][(task + 1) % 3]["owner"] = f"o{i}"
            vault.checkin("a", a.document, "src", 0.5, "")
            vault.checkin("b", b.document, "src", 0.5, "")
        else:
            vault.checkin("a", a.document, "src", 0.5, "")
    plain = base / "plain.git"
    shutil.copytree(path, plain)
    graph_file(plain).unlink(missing_ok=True)
    with_graph, without = Store.open(str(path)), Store.open(str(plain))
    for q in QUERIES:
        assert log_json(with_graph, **q) == log_json(without, **q), q
    for at in (T0 - 1, T0, T0 + 1, T0 + 3, "2025-10-01T10:00:00Z"):
        try:
            expected: Any = str(history.revision(without, None, at=at).id)
        except InputError as e:  # the same refusal either way is the point
            expected = str(e)
        try:
            got: Any = str(history.revision(with_graph, None, at=at).id)
        except InputError as e:
            got = str(e)
        assert got == expected


def test_gc_writes_the_commit_graph(vault: Vault) -> None:
    graph_file(Path(vault.path)).unlink(missing_ok=True)
    vault.gc()
    assert walk.CommitGraph.open(vault.path) is not None


# -- the path index: log --path and blame skip stretches --------------------------------------


def blame_json(store: Store, path: str) -> list[dict[str, Any]]:
    return [e.to_json() for e in history.blame(store, path)]


PATHS = [
    "/tasks/[id=T-001]/status",
    "/tasks/1/owner",
    "/tasks",
    "/tasks/[id=T-003]",
    "/roadmap",
    "/bugs",
]


def index_file(path: Path) -> Path:
    return path / pathindex.FILE


def answers(store: Store) -> list[Any]:
    out: list[Any] = []
    for p in PATHS:
        out.append(log_json(store, path=p))
        out.append(log_json(store, path=p, limit=1))
        try:
            out.append(blame_json(store, p))
        except InputError as e:
            out.append(str(e))
    return out


@FAST
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["one", "race", "tick", "index"]), st.integers(0, 3)),
        min_size=1,
        max_size=10,
    )
)
def test_log_path_and_blame_answer_the_same_with_a_fresh_stale_or_no_index(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]]
) -> None:
    base = tmp_path_factory.mktemp("vault")
    path = base / "v.git"
    clock = Clock(T0)
    Vault.init(path, EXAMPLE, clock=clock)
    fast(path)
    vault = Vault.open(path, clock=clock)
    for i, (kind, task) in enumerate(steps):
        if kind == "index":
            pathindex.build(vault.store, vault.store.resolve("main").id)
            continue
        if kind == "tick":
            clock.now += 1
        a = vault.checkout("a")
        a.document["tasks"][task]["status"] = f"s{i}"
        if kind == "race":
            b = vault.checkout("b")
            b.document["tasks"][(task + 1) % 3]["owner"] = f"o{i}"
            vault.checkin("a", a.document, "src", 0.5, "")
            vault.checkin("b", b.document, "src", 0.5, "")
        else:
            vault.checkin("a", a.document, "src", 0.5, "")
    plain = base / "plain.git"
    shutil.copytree(path, plain)
    index_file(plain).unlink(missing_ok=True)
    assert answers(Store.open(str(path))) == answers(Store.open(str(plain)))


def test_the_index_is_used_when_fresh_and_skips_the_commits_it_rules_out(tmp_path: Path) -> None:
    clock = Clock(T0)
    path = tmp_path / "v.git"
    Vault.init(path, EXAMPLE, clock=clock)
    fast(path)
    vault = Vault.open(path, clock=clock)
    for i in range(6):
        co = vault.checkout("a")
        co.document["tasks"][i % 2]["status"] = f"s{i}"
        vault.checkin("a", co.document, "src", 0.5, "")
    store = Store.open(str(path))
    pathindex.build(store, store.resolve("main").id)
    head = store.resolve("main")
    kept = list(pathindex.first_parents(store, head, ["tasks", "[id=T-001]", "status"]))
    # T-001's three edits and the root; T-002's three are left out unread
    assert len(kept) == 4 and not kept[-1].parent_ids
    found = pathindex.in_log_order(store, head, ["tasks", "[id=T-001]", "status"])
    assert found is not None and len(list(found)) == 4


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "other-vault"])
def test_a_damaged_or_foreign_index_is_ignored_and_answers_stay_the_same(
    tmp_path: Path, damage: str
) -> None:
    clock = Clock(T0)
    path = tmp_path / "v.git"
    Vault.init(path, EXAMPLE, clock=clock)
    fast(path)
    vault = Vault.open(path, clock=clock)
    for i in range(4):
        co = vault.checkout("a")
        co.document["tasks"][i % 2]["status"] = f"s{i}"
        vault.checkin("a", co.document, "src", 0.5, "")
    store = Store.open(str(path))
    expected = answers(store)
    if damage == "other-vault":  # a valid index of another history: its tip is not ours
        other = tmp_path / "other.git"
        make_dag(other, [([], T0), ([0], T0)])
        o = Store.open(str(other))
        pathindex.build(o, o.resolve("main").id)
        shutil.copy(index_file(other), index_file(path))
    else:
        pathindex.build(store, store.resolve("main").id)
        data = bytearray(index_file(path).read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0x01
        elif damage == "truncate":
            del data[len(data) // 3 :]
        else:
            data[:] = b"\xff" * len(data)
        index_file(path).write_bytes(bytes(data))
        assert pathindex.Index.load(store) is None
    assert answers(Store.open(str(path))) == expected


def test_a_sharded_key_gives_the_same_history_with_and_without_graph_and_index(
    tmp_path: Path,
) -> None:
    from ..git.test_shards import document, seed

    path = tmp_path / "v.git"
    clock = Clock(T0)
    Vault.init(path, clock=clock)
    fast(path)
    vault = Vault.open(path, clock=clock)
    seed(vault, document())
    for i, (first, second) in enumerate([(10, 4000), (10, 20), (2500, 11)]):
        a, b = vault.checkout("a"), vault.checkout("b")
        a.document["items"][first]["status"] = f"a{i}"
        b.document["items"][second]["status"] = f"b{i}"
        vault.checkin("a", a.document, "src", 0.5, "")
        vault.checkin("b", b.document, "src", 0.5, "")
        if i == 1:
            vault.gc()  # the commit-graph and the index, then one more race
    plain = tmp_path / "plain.git"
    shutil.copytree(path, plain)
    index_file(plain).unlink()
    graph_file(plain).unlink()
    stores = Store.open(str(path)), Store.open(str(plain))
    queries: list[dict[str, Any]] = [
        {"path": "/items/[id=T-00010]/status"},
        {"limit": 2},
        {"path": "/items/2500"},
        {"since": T0, "limit": 3},
        {"path": "/notes"},
    ]
    for q in queries:
        assert log_json(stores[0], **q) == log_json(stores[1], **q), q
    for p in ["/items/[id=T-00010]/status", "/items/[id=T-04000]", "/notes/list"]:
        assert blame_json(stores[0], p) == blame_json(stores[1], p), p
