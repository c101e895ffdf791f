"""Sharded keys: a large array stored as a tree ``K/`` of content-defined chunks.

The contract checked here: one value has one layout (``shards.split``), however it was reached
(written whole, edited incrementally, patched, merged, pushed); plain git and plain tools read
it; a checkin or a patch touches only the chunks around its edits; merges, ``Changed:`` lines
and the pre-receive hook treat a sharded key like any other.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import pygit2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitvault import Vault
from gitvault.core import codec
from gitvault.engine import merge, patching
from gitvault.errors import ConflictError, GitVaultError, InputError
from gitvault.git import shards
from gitvault.git.storage import Store
from gitvault.model import changes
from gitvault.model.provenance import escape, message

from ..conftest import Cli, Git, git_in

Doc = dict[str, Any]
WORDS = (
    "alpha",
    "beta",
    "gamma",
    "delta",
    "omega",
    "queue",
    "retry",
    "cache",
    "merge",
    "shard",
    "lease",
    "vault",
    "agent",
    "token",
    "fence",
    "chunk",
)


# -- documents -------------------------------------------------------------------------------


def task(i: int, rng: random.Random | None = None) -> dict[str, Any]:
    """One ~220-byte item of an id array (nested, so inner separators are indented deeper)."""
    r = rng or random.Random(i)
    return {
        "id": f"T-{i:05d}",
        "n": i,
        "status": "todo",
        "tags": [r.choice(WORDS), r.choice(WORDS)],
        "title": " ".join(r.choice(WORDS) for _ in range(20)),
    }


ITEM_COUNT = 6000
ITEMS: list[dict[str, Any]] = [task(i) for i in range(ITEM_COUNT)]
DATA = codec.dumps(ITEMS)
assert shards.wanted(DATA) and len(shards.split(DATA)) > 40


def fresh_items() -> list[dict[str, Any]]:
    items = orjson.loads(DATA)
    assert isinstance(items, list)
    return items


def items_of_size(limit: int) -> list[dict[str, Any]]:
    """The most items of ``ITEMS`` whose canonical array is at most ``limit`` bytes."""
    lo, hi = 0, ITEM_COUNT
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(codec.dumps(ITEMS[:mid])) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return fresh_items()[:lo]


def document() -> Doc:
    return {"items": fresh_items(), "notes": {"a": 1, "list": [1, 2, 3]}}


def seed(vault: Vault, doc: Doc, agent: str = "seed") -> str:
    vault.checkout(agent)
    r = vault.checkin(agent, doc, "seed")
    vault.release(agent)
    assert r.commit is not None
    return r.commit


@pytest.fixture
def big(empty_vault: Vault) -> Vault:
    """A vault whose ``items`` (6,000 tasks, ~1.3 MB) is sharded, plus a small key ``notes``."""
    seed(empty_vault, document())
    return empty_vault


# -- reading the layout back -----------------------------------------------------------------


def chunks(git: Git, rev: str = "main", key: str = "items") -> list[tuple[str, str]]:
    """(chunk name, blob id) of a sharded key at ``rev``, as ``git ls-tree`` lists them."""
    out = []
    for line in git("ls-tree", f"{rev}:{key}").splitlines():
        meta, name = line.split("\t")
        mode, kind, oid = meta.split()
        assert (mode, kind) == ("100644", "blob"), line
        out.append((name, oid))
    return out


def top(git: Git, rev: str = "main") -> dict[str, str]:
    """Top-level entry name -> object type at ``rev`` (the keys: not the vault's own
    ``.gitvault/``, which holds the allowed signers from init on)."""
    return {
        line.split("\t")[1]: line.split()[1]
        for line in git("ls-tree", rev).splitlines()
        if line.split("\t")[1] != ".gitvault"
    }


def canonical_layout(data: bytes) -> list[tuple[str, str]]:
    return [(name, str(pygit2.hash(blob))) for name, blob in shards.split(data)]


def assert_canonical(git: Git, items: list[Any], rev: str = "main") -> None:
    """``items`` is stored at ``rev`` exactly as ``split`` lays it out (or as one blob)."""
    data = codec.dumps(items)
    if shards.wanted(data):
        assert top(git, rev).get("items") == "tree"
        assert "items.json" not in top(git, rev)
        assert chunks(git, rev) == canonical_layout(data)
    else:
        assert top(git, rev).get("items.json") == "blob" and "items" not in top(git, rev)
        assert git("cat-file", "blob", f"{rev}:items.json").encode() == data


def assert_changed_lines_exact(vault: Vault, pushed: frozenset[str] = frozenset()) -> None:
    """Every commit gitvault wrote on main carries exactly ``between(first parent, commit)``
    (as the hook checks pushed commits); ``pushed`` ones written by hand may carry none."""
    store = vault.store
    head = store.ref("refs/heads/main")
    assert head is not None
    for commit in store.repo.walk(head):
        if not commit.parents:
            continue
        if str(commit.id) in pushed and not changes.raw_lines(commit.message):
            continue
        actual = changes.between(store, commit.parents[0].tree, commit.tree)
        assert sorted(changes.raw_lines(commit.message)) == sorted(escape(p) for p in actual), (
            commit.id,
            commit.message,
        )


def diff_tree(git: Git, a: str, b: str) -> list[tuple[str, str, str, str]]:
    """(status, path, old blob, new blob) of each file that differs between two commits."""
    out = []
    for line in git("diff-tree", "-r", "--no-renames", a, b).splitlines():
        meta, path = line.split("\t")
        _, _, old, new, status = meta.split()
        out.append((status, path, old, new))
    return out


def refs(git: Git) -> str:
    return git("for-each-ref")


# -- 1. the codec ----------------------------------------------------------------------------


def test_split_then_concatenating_the_chunks_gives_the_bytes_back() -> None:
    layout = shards.split(DATA)
    names = [n for n, _ in layout]
    assert names == sorted(names) and names[0] == "00000000.json"
    start = 0
    for name, blob in layout:
        assert name == shards.chunk_name(start)
        part = orjson.loads(blob)
        assert blob == codec.dumps(part)  # each chunk is itself a canonical JSON array
        start += len(part)
    assert start == ITEM_COUNT
    whole = [item for _, blob in layout for item in orjson.loads(blob)]
    assert codec.dumps(whole) == DATA
    assembled = shards.assemble([(n, pygit2.hash(b), b) for n, b in layout])
    assert assembled.data == DATA
    assert shards.size_of(assembled.chunks) == len(DATA)


def test_chunk_sizes_respect_the_bounds() -> None:
    layout = shards.split(DATA)
    for _, blob in layout[:-1]:
        items = shards.items(blob)
        body = sum(len(i) + 4 for i in items)
        assert body >= shards.MIN_CHUNK
        assert body < shards.MAX_CHUNK + len(max(items, key=len)) + 4
    huge = codec.dumps(["x" * 40_000 for _ in range(40)])  # no 8 KiB..256 KiB run is short
    for _, blob in shards.split(huge)[:-1]:
        assert sum(len(i) + 4 for i in shards.items(blob)) <= shards.MAX_CHUNK + 40_004


def test_only_large_arrays_are_sharded() -> None:
    assert shards.wanted(DATA)
    assert not shards.wanted(codec.dumps(ITEMS[:100]))
    assert not shards.wanted(codec.dumps({"k": "x" * shards.SHARD_BYTES}))
    assert not shards.wanted(codec.dumps("x" * shards.SHARD_BYTES))


def random_item(rng: random.Random, size: int, pool: list[Any]) -> Any:
    """Items of many shapes (scalars, nested arrays and objects) around ``size`` bytes."""
    if pool and rng.random() < 0.3:
        return copy.deepcopy(rng.choice(pool))  # repeats: equal items, equal chunks
    kind = rng.randrange(5)
    text = "".join(rng.choice('abcdefgh ,[]{}"\\\n') for _ in range(max(1, size // 2)))
    if kind == 0:
        return text
    if kind == 1:
        return rng.randrange(-(10**9), 10**9)
    if kind == 2:
        return [text[: size // 4], {"deep": [1, {"x": text[size // 4 :]}]}]
    if kind == 3:
        return {}
    return {"id": rng.randrange(10**6), "text": text, "sub": {"k": [True, None, 1.5]}}


def random_array(rng: random.Random, size: int, pooled: bool) -> list[Any]:
    pool = [random_item(rng, size, []) for _ in range(20)] if pooled else []
    out: list[Any] = []
    total = 0
    while total < shards.SHARD_BYTES + 64 * 1024:
        item = random_item(rng, rng.randrange(1, 2 * size), pool)
        out.append(item)
        total += len(orjson.dumps(item)) + 6
    return out


EDIT = st.tuples(
    st.sampled_from(
        ["replace", "insert", "delete", "append", "tweak", "dup", "delete-run", "insert-run"]
    ),
    st.floats(0, 1),
    st.integers(0, 2**32),
)


def apply_edits(items: list[Any], edits: list[tuple[str, float, int]], size: int) -> None:
    for kind, where, salt in edits:
        rng = random.Random(salt)
        at = min(int(where * len(items)), len(items) - 1)
        if not items and kind in ("replace", "tweak", "dup"):
            continue  # a delete-run may have emptied the array: nothing to edit in place
        if kind == "replace":
            items[at] = random_item(rng, size, [])
        elif kind == "insert":
            items.insert(at, random_item(rng, size, []))
        elif kind == "delete" and len(items) > 1:
            del items[at]
        elif kind == "append":
            items.append(random_item(rng, size, []))
        elif kind == "tweak":  # one byte-ish change inside an item
            items[at] = {"was": items[at], "salt": salt % 7}
        elif kind == "dup":
            items.insert(at, copy.deepcopy(items[at]))
        elif kind == "delete-run":
            del items[at : at + rng.randrange(1, 300)]
        elif kind == "insert-run":
            items[at:at] = [random_item(rng, size, []) for _ in range(rng.randrange(1, 300))]


def stored(store: Store, tree_id: pygit2.Oid) -> list[tuple[str, str]] | bytes:
    """Key ``k`` of a root tree: its chunks (name, blob id) if sharded, else its bytes."""
    tree = store.repo[tree_id]
    assert isinstance(tree, pygit2.Tree)
    if "k" in tree:
        sub = store.repo[tree["k"].id]
        assert isinstance(sub, pygit2.Tree) and "k.json" not in tree
        return [(n, str(o)) for n, o in shards.entries(sub)]
    return store.blob(tree["k.json"].id)


def assert_index_sound(
    store: Store, old_root: pygit2.Oid, new_root: pygit2.Oid, old: list[Any], new: list[Any]
) -> None:
    """The ``Changed:`` lines of the edit (computed on the chunk runs that differ) never rule
    out an item that changed, named by id or by position."""
    a, b = store.repo[old_root], store.repo[new_root]
    assert isinstance(a, pygit2.Tree) and isinstance(b, pygit2.Tree)
    msg = message("checkin x: k", changes.trailers(changes.between(store, a, b)))
    if old == new:
        assert not changes.raw_lines(msg)
        return
    first = next(
        i
        for i in range(min(len(old), len(new)) + 1)
        if i == min(len(old), len(new)) or old[i] != new[i]
    )
    for i in {first, max(len(old), len(new)) - 1}:
        assert not changes.Probe(["k", str(i), "x"]).rules_out(msg)

    def by_id(items: list[Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("id"), int):
                out.setdefault(f"[id={item['id']}]", []).append(item)
        return out

    x, y = by_id(old), by_id(new)
    for step in set(x) | set(y):
        if x.get(step) != y.get(step):
            assert not changes.Probe(["k", step]).rules_out(msg), step


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Store:
    path = tmp_path_factory.mktemp("codec") / "scratch.git"
    pygit2.init_repository(str(path), bare=True)
    return Store(pygit2.Repository(str(path)))


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**32),
    st.sampled_from([40, 220, 3000, 30_000]),
    st.booleans(),
    st.lists(EDIT, min_size=1, max_size=5),
    st.lists(EDIT, max_size=3),
    st.booleans(),
)
def test_an_incremental_update_gives_exactly_the_canonical_layout(
    scratch: Store,
    salt: int,
    size: int,
    pooled: bool,
    edits: list[tuple[str, float, int]],
    more: list[tuple[str, float, int]],
    cold: bool,
) -> None:
    rng = random.Random(salt)
    items = random_array(rng, size, pooled)
    old = codec.dumps(items)
    base = scratch.build_tree(None, {"k.json": old})
    assert stored(scratch, base) == canonical_layout(old)
    before = base
    for batch in (edits, more):
        apply_edits(items, batch, size)
        new = codec.dumps(items)
        # cold: a new Store reads the base layout from git instead of its cache
        store = Store(pygit2.Repository(scratch.repo.path)) if cold else scratch
        base_tree = store.repo[base]
        assert isinstance(base_tree, pygit2.Tree)
        base = store.build_tree(base_tree, {"k.json": new})
        if shards.wanted(new):
            assert stored(store, base) == canonical_layout(new)
            tree = store.repo[base]
            assert isinstance(tree, pygit2.Tree)
            assert store.blob(tree["k"].id) == new
        else:
            assert stored(store, base) == new
        assert_index_sound(store, before, base, orjson.loads(old), items)
        before, old = base, new


class Blobs(dict[pygit2.Oid, bytes]):
    """Chunk blobs written to a scratch repository, kept by id to read back."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    def write(self, data: bytes) -> pygit2.Oid:
        oid = self.store.repo.create_blob(data)
        self[oid] = data
        return oid

    def entries(self, layout: list[tuple[str, bytes]]) -> list[tuple[str, pygit2.Oid]]:
        return [(name, self.write(data)) for name, data in layout]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([40, 220, 3000]), EDIT, EDIT)
def test_a_chunkwise_merge_is_both_edits_in_the_canonical_layout(
    scratch: Store,
    salt: int,
    size: int,
    ours: tuple[str, float, int],
    theirs: tuple[str, float, int],
) -> None:
    """When the two sides' edited chunk runs do not overlap, merging by chunks gives the
    items with both edits applied, laid out exactly as chunking them afresh would."""
    items = random_array(random.Random(salt), size, False)
    base = codec.dumps(items)
    if not shards.wanted(base):
        return
    layouts = []
    for edit in (ours, theirs):
        side = copy.deepcopy(items)
        apply_edits(side, [edit], size)
        layouts.append((side, shards.split(codec.dumps(side)) if side else []))
    if not all(layout for _, layout in layouts) or not all(
        shards.wanted(codec.dumps(side)) for side, _ in layouts
    ):
        return
    ids = Blobs(scratch)
    merged = shards.merge(
        ids.entries(shards.split(base)),
        ids.entries(layouts[0][1]),
        ids.entries(layouts[1][1]),
        ids.__getitem__,
        ids.write,
        lambda *texts: merge._text_merge(scratch, *texts),
    )
    if merged is None:
        return  # git's merge of the overlapping stretch conflicts: the structural merge decides
    got = shards.encode([i for _, o in merged for i in shards.items(ids[o])])
    assert [(n, pygit2.hash(d)) for n, d in shards.split(got)] == merged

    def edit_of(side: list[Any]) -> tuple[int, int, list[Any]]:
        i = 0
        while i < min(len(items), len(side)) and items[i] == side[i]:
            i += 1
        j = 0
        while j < min(len(items), len(side)) - i and items[-1 - j] == side[-1 - j]:
            j += 1
        return i, len(items) - j, side[i : len(side) - j]

    (a0, a1, ra), (c0, c1, rc) = sorted(
        (edit_of(side) for side, _ in layouts), key=lambda e: (e[0], e[1])
    )
    if a1 < c0:  # the items the sides changed are apart: both edits, as a 3-way merge would
        expected = copy.deepcopy(items)
        expected[c0:c1] = rc  # the later edit first, so the earlier one's indexes hold
        expected[a0:a1] = ra
        assert orjson.loads(got) == expected


@pytest.mark.parametrize("at_chunk, their_chunk", [(2, 5), (2, 2), (2, 1), (0, 3)])
def test_whole_chunks_inserted_by_one_side_merge_with_the_other_sides_edit(
    scratch: Store, at_chunk: int, their_chunk: int
) -> None:
    """A run of items that is whole chunks of its own, inserted at a chunk boundary, is a pure
    insertion of chunks: it must come through a chunkwise merge in place, also when the other
    side edits the chunk right after or right before it."""
    rng = random.Random(7)
    items = [task(i, rng) for i in range(1500)]
    layout = shards.split(codec.dumps(items))
    starts = [int(n[:8]) for n, _ in layout]
    new: list[Any] = []
    while True:  # items that end exactly at a chunk boundary of their own
        new.append(task(20_000 + len(new), rng))
        if not shards.cut(shards.items(codec.dumps(new)))[1]:
            break
    at = starts[at_chunk]
    ours = items[:at] + new + items[at:]
    theirs = copy.deepcopy(items)
    theirs[starts[their_chunk] + 1]["status"] = "theirs"
    expected = ours[:]
    expected[expected.index(items[starts[their_chunk] + 1])] = theirs[starts[their_chunk] + 1]
    blobs = Blobs(scratch)
    base_e, ours_e, theirs_e = (
        blobs.entries(shards.split(codec.dumps(v))) for v in (items, ours, theirs)
    )
    assert len(ours_e) > len(base_e)  # the insertion is whole chunks
    for a, b in ((ours_e, theirs_e), (theirs_e, ours_e)):
        merged = shards.merge(
            base_e,
            a,
            b,
            blobs.__getitem__,
            blobs.write,
            lambda *texts: merge._text_merge(scratch, *texts),
        )
        assert merged is not None
        got = [i for _, o in merged for i in orjson.loads(blobs[o])]
        assert got == expected
        assert [(n, pygit2.hash(d)) for n, d in shards.split(codec.dumps(got))] == merged


def test_writing_the_same_value_again_keeps_the_tree(scratch: Store) -> None:
    first = scratch.build_tree(None, {"k.json": DATA})
    base = scratch.repo[first]
    assert isinstance(base, pygit2.Tree)
    assert scratch.build_tree(base, {"k.json": DATA}) == first
    cold = Store(pygit2.Repository(scratch.repo.path))
    again = cold.repo[first]
    assert isinstance(again, pygit2.Tree)
    assert cold.build_tree(again, {"k.json": DATA}) == first


def test_an_array_of_small_scalars_is_sharded_and_round_trips(scratch: Store) -> None:
    numbers = list(range(160_000))
    data = codec.dumps(numbers)
    assert shards.wanted(data)
    tree = scratch.build_tree(None, {"k.json": data})
    assert stored(scratch, tree) == canonical_layout(data)
    numbers[80_000:80_000] = [-1, -2, -3]
    base = scratch.repo[tree]
    assert isinstance(base, pygit2.Tree)
    edited = codec.dumps(numbers)
    assert stored(scratch, scratch.build_tree(base, {"k.json": edited})) == canonical_layout(edited)


class CountingRepo(pygit2.Repository):
    """A real repository that counts the blobs written through it."""

    written = 0

    def create_blob(self, data: bytes | str) -> pygit2.Oid:
        self.written += 1
        return super().create_blob(data)


class CountingStore(Store):
    """A real store that records which objects were read whole."""

    def __init__(self, repo: pygit2.Repository) -> None:
        super().__init__(repo)
        self.reads: list[pygit2.Oid] = []

    def blob(self, oid: pygit2.Oid) -> bytes:
        self.reads.append(oid)
        return super().blob(oid)


@pytest.mark.parametrize("edit", ["replace", "insert", "delete", "append", "prepend"])
def test_the_writer_writes_only_the_chunks_around_an_edit(scratch: Store, edit: str) -> None:
    items = fresh_items()
    base = Store(pygit2.Repository(scratch.repo.path)).build_tree(None, {"k.json": DATA})
    if edit == "replace":
        items[3100]["status"] = "done"
    elif edit == "insert":
        items[3100:3100] = [task(9000), task(9001), task(9002)]
    elif edit == "delete":
        del items[3100:3103]
    elif edit == "append":
        items.append(task(9000))
    else:
        items.insert(0, task(9000))
    new = codec.dumps(items)
    repo = CountingRepo(scratch.repo.path)
    store = Store(repo)
    tree = repo[base]
    assert isinstance(tree, pygit2.Tree)
    written = store.build_tree(tree, {"k.json": new})
    assert stored(store, written) == canonical_layout(new)
    assert repo.written <= 3, repo.written  # of ~70 chunks


@pytest.mark.parametrize(
    ("patch", "most"),
    [
        (
            [
                {"op": "replace", "path": "/items/3000/status", "value": "x"},
                {"op": "add", "path": "/notes/z", "value": 1},
            ],
            3,
        ),
        ([{"op": "add", "path": "/items/-", "value": 1}], 2),
        ([{"op": "remove", "path": "/items/0"}, {"op": "add", "path": "/items/1", "value": 2}], 3),
        ([{"op": "copy", "from": "/items/4000", "path": "/items/4001"}], 3),
    ],
)
def test_a_sparse_patch_reads_only_the_chunks_around_its_items(
    big: Vault, patch: list[dict[str, Any]], most: int
) -> None:
    head = big.head()
    assert head is not None
    store = CountingStore(pygit2.Repository(big.path))
    tree = store.commit(head).tree
    files = patching.sparse(store, tree, patch, big.limits)
    assert files is not None
    chunk_ids = {pygit2.hash(b) for _, b in shards.split(DATA)}
    read = [o for o in store.reads if o in chunk_ids]
    assert 1 <= len(read) <= most, len(read)  # of ~70: the chunks holding the items named
    result = store.repo[store.build_tree(tree, files)]
    assert isinstance(result, pygit2.Tree)
    doc = {k[:-5]: orjson.loads(store.blob(o)) for k, o in store.key_blobs(result).items()}
    assert doc == jsonpatch.apply_patch(document(), patch)


# -- 2. plain git reads it -------------------------------------------------------------------


def test_a_large_array_is_a_tree_of_json_chunks_in_plain_git(
    big: Vault, git: Git, tmp_path: Path
) -> None:
    assert top(git) == {"items": "tree", "notes.json": "blob"}
    listed = chunks(git)
    assert listed == canonical_layout(DATA)
    first = json.loads(git("show", "main:items/00000000.json"))
    assert first == ITEMS[: len(first)]
    together: list[Any] = []
    for name, _ in listed:
        part = json.loads(git("show", f"main:items/{name}"))
        assert isinstance(part, list) and part
        together += part
    assert together == ITEMS
    git("fsck", "--strict", "--full")
    if shutil.which("jq"):  # `jq -s add K/*.json` in a clone, as the README says
        clone = tmp_path / "clone"
        subprocess.run(["git", "clone", "-q", big.path, str(clone)], check=True)
        files = sorted(str(p) for p in (clone / "items").glob("*.json"))
        r = subprocess.run(["jq", "-cs", "add", *files], capture_output=True, text=True, check=True)
        assert json.loads(r.stdout) == ITEMS


def test_show_status_and_export_read_a_sharded_key_whole(big: Vault, cli: Cli, git: Git) -> None:
    r = cli("show", "--path", "/items/123")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == ITEMS[123]
    r = cli("show", "--path", "/items/[id=T-05999]/title")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == ITEMS[5999]["title"]
    r = cli("status", "--json")
    assert r.exit_code == 0, r.output
    keys = json.loads(r.stdout)["keys"]
    assert keys["items"] == {"size": len(DATA), "blob": git("rev-parse", "main:items").strip()}
    assert keys["notes"]["size"] == len(codec.dumps(document()["notes"]))
    r = cli("export")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == document()
    assert big.read() == document()
    assert big.show(path="/items/4000/n") == 4000


def test_log_blame_and_diff_see_an_edit_inside_a_sharded_key(big: Vault, cli: Cli) -> None:
    for agent, i in (("ann", 17), ("bo", 4321)):
        with big.lease(agent) as s:
            s.doc["items"][i]["status"] = f"done-by-{agent}"
            s.commit(source="work")
    r = cli("log", "--path", "/items/[id=T-04321]/status", "--json")
    assert r.exit_code == 0, r.output
    assert [e["agent"] for e in json.loads(r.stdout)] == ["bo", "seed"]
    r = cli("blame", "/items/[id=T-00017]/status", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["agent"] == "ann"
    r = cli("diff", "main~1", "main", "--format", "patch")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == [
        {"op": "replace", "path": "/items/4321/status", "value": "done-by-bo"}
    ]
    assert_changed_lines_exact(big)


# -- 3. library checkins ---------------------------------------------------------------------


def test_editing_one_item_rewrites_one_or_two_chunks(big: Vault, git: Git) -> None:
    before = big.head()
    assert before is not None
    with big.lease("ann") as s:
        s.doc["items"][2500]["status"] = "done"
        s.commit(source="work")
    after = big.head()
    assert after is not None
    changed = diff_tree(git, before, after)
    assert 1 <= len(changed) <= 2 and all(p.startswith("items/") for _, p, _, _ in changed)
    untouched = set(chunks(git, before)) & set(chunks(git, after))
    assert len(untouched) >= len(chunks(git, before)) - 2
    items = fresh_items()
    items[2500]["status"] = "done"
    assert_canonical(git, items)
    assert git("log", "-1", "--format=%(trailers:key=Changed,valueonly)").strip() == (
        "/items/[id=T-02500]"
    )
    assert_changed_lines_exact(big)


@pytest.mark.parametrize("edit", ["insert", "delete"])
def test_inserting_or_deleting_renames_later_chunks_and_reuses_their_blobs(
    big: Vault, git: Git, edit: str
) -> None:
    before = chunks(git)
    with big.lease("ann") as s:
        if edit == "insert":
            s.doc["items"][3000:3000] = [task(9000), task(9001)]
        else:
            del s.doc["items"][3000:3002]
        s.commit(source="work")
    after = chunks(git)
    shift = 2 if edit == "insert" else -2
    later = [(n, o) for n, o in before if int(n[:8]) > 3100]
    assert later
    moved = {(shards.chunk_name(int(n[:8]) + shift), o) for n, o in later}
    kept = moved & set(after)
    assert len(kept) >= len(later) - 1  # all but at most the one chunk the edit ran into
    assert {o for _, o in after} - {o for _, o in before}  # some chunk is new
    assert len({o for _, o in after} - {o for _, o in before}) <= 3
    items = fresh_items()
    if edit == "insert":
        items[3000:3000] = [task(9000), task(9001)]
    else:
        del items[3000:3002]
    assert_canonical(git, items)
    assert big.read()["items"] == items
    git("fsck", "--strict")
    assert_changed_lines_exact(big)


def test_a_key_shrinking_below_the_size_becomes_one_file_and_growing_shards_it_again(
    big: Vault, git: Git
) -> None:
    small = items_of_size(shards.SHARD_BYTES - 1)
    with big.lease("ann") as s:
        s.doc["items"] = small
        s.commit(source="trim")
    assert_canonical(git, small)
    assert top(git)["items.json"] == "blob"
    grown = fresh_items()[: len(small) + 1]
    assert shards.wanted(codec.dumps(grown))
    with big.lease("bo") as s:
        s.doc["items"].append(grown[-1])
        s.commit(source="grow")
    assert_canonical(git, grown)
    assert big.read()["items"] == grown
    r = big.status()
    assert {k.key: k.size for k in r.keys}["items"] == len(codec.dumps(grown))
    git("fsck", "--strict")
    assert_changed_lines_exact(big)


def test_checking_in_the_same_document_again_changes_nothing(big: Vault) -> None:
    head = big.head()
    big.checkout("ann")
    r = big.checkin("ann", document(), "same")
    assert r.noop and big.head() == head


def test_a_new_key_and_a_deleted_sharded_key(big: Vault, git: Git) -> None:
    with big.lease("ann") as s:
        s.doc["more"] = s.doc.pop("items")
        s.commit(source="rename")
    assert top(git) == {"more": "tree", "notes.json": "blob"}
    assert chunks(git, key="more") == canonical_layout(DATA)
    msg = git("log", "-1", "--format=%(trailers:key=Changed,valueonly)").split()
    assert sorted(msg) == ["/items", "/more"]
    assert_changed_lines_exact(big)


def test_a_second_vault_handle_edits_the_layout_the_same_way(big: Vault, git: Git) -> None:
    other = Vault.open(big.path)  # no cached layouts
    with other.lease("ann") as s:
        del s.doc["items"][10]
        s.doc["items"][5000]["tags"].append("x")
        s.doc["items"].insert(4000, task(8000))
        s.commit(source="cold")
    items = fresh_items()
    del items[10]
    items[5000]["tags"].append("x")
    items.insert(4000, task(8000))
    assert_canonical(git, items)
    assert_changed_lines_exact(big)


# -- 4. checkin_patch ------------------------------------------------------------------------


def big_value() -> dict[str, Any]:
    return {"id": "NEW", "n": -1, "status": "new", "tags": [], "title": "inserted"}


PATCHES: dict[str, tuple[list[dict[str, Any]], bool]] = {
    # name: (patch, whether only the chunks around the items are read)
    "replace-field": ([{"op": "replace", "path": "/items/5/status", "value": "done"}], True),
    "replace-last": ([{"op": "replace", "path": "/items/5999/n", "value": 0}], True),
    "replace-item": ([{"op": "replace", "path": "/items/3001", "value": big_value()}], True),
    "add-at-index": ([{"op": "add", "path": "/items/2000", "value": big_value()}], True),
    "add-at-0": ([{"op": "add", "path": "/items/0", "value": big_value()}], True),
    "add-at-len": ([{"op": "add", "path": "/items/6000", "value": big_value()}], True),
    "append": ([{"op": "add", "path": "/items/-", "value": big_value()}], True),
    "add-deep": ([{"op": "add", "path": "/items/7/tags/-", "value": "hot"}], True),
    "remove": ([{"op": "remove", "path": "/items/4444"}], True),
    "remove-first": ([{"op": "remove", "path": "/items/0"}], True),
    "move-within": ([{"op": "move", "from": "/items/10", "path": "/items/5000"}], True),
    "move-back": ([{"op": "move", "from": "/items/5990", "path": "/items/3"}], True),
    "copy": ([{"op": "copy", "from": "/items/10", "path": "/items/20"}], True),
    "move-to-small": ([{"op": "move", "from": "/items/10", "path": "/notes/moved"}], True),
    "copy-from-small": ([{"op": "copy", "from": "/notes/list", "path": "/items/9/tags"}], True),
    "test-ok": (
        [
            {"op": "test", "path": "/items/42/id", "value": "T-00042"},
            {"op": "replace", "path": "/items/42/status", "value": "ok"},
        ],
        True,
    ),
    "drifting": (
        [
            {"op": "remove", "path": "/items/100"},
            {"op": "remove", "path": "/items/100"},
            {"op": "add", "path": "/items/99", "value": 1},
            {"op": "replace", "path": "/items/101/status", "value": "x"},
        ],
        True,
    ),
    "far-apart": (
        [
            {"op": "replace", "path": "/items/1/status", "value": "a"},
            {"op": "add", "path": "/items/-", "value": "tail"},
            {"op": "remove", "path": "/items/3000"},
        ],
        True,
    ),
    "mixed-keys": (
        [
            {"op": "replace", "path": "/items/7/status", "value": "x"},
            {"op": "add", "path": "/notes/b", "value": 2},
            {"op": "add", "path": "/fresh", "value": {"k": "v"}},
        ],
        True,
    ),
    "remove-small-key": (
        [
            {"op": "replace", "path": "/items/7/status", "value": "x"},
            {"op": "remove", "path": "/notes"},
        ],
        True,
    ),
    "whole-key": ([{"op": "replace", "path": "/items", "value": [1, 2, 3]}], False),
    "whole-key-test": (
        [
            {"op": "test", "path": "/items/0/id", "value": "T-00000"},
            {"op": "add", "path": "/items", "value": ITEMS[:10]},
        ],
        False,
    ),
    "small-only": ([{"op": "add", "path": "/notes/b", "value": 2}], False),
    "copy-whole-key": ([{"op": "copy", "from": "/items", "path": "/twin"}], False),
}


def expected_after(patch: list[dict[str, Any]]) -> Doc:
    result = jsonpatch.apply_patch(document(), patch)
    assert isinstance(result, dict)
    return result


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_a_patch_gives_what_jsonpatch_gives_on_the_whole_document(
    big: Vault, git: Git, name: str
) -> None:
    patch, windowed = PATCHES[name]
    try:
        want = expected_after(patch)
    except jsonpatch.JsonPatchException:
        pytest.fail(f"{name}: the patch should apply")
    co = big.checkout("ann")
    assert co.lease.base is not None
    base = big.store.commit(co.lease.base).tree
    sparse = patching.sparse(big.store, base, copy.deepcopy(patch), big.limits)
    assert (sparse is not None) == windowed
    r = big.checkin_patch("ann", copy.deepcopy(patch), "patch", 0.9, "because")
    assert r.commit == big.head()
    assert big.read() == want
    if "items" in want:
        assert_canonical(git, want["items"])
    if "twin" in want:
        assert chunks(git, key="twin") == chunks(git)  # same value, same layout, same tree
    assert_changed_lines_exact(big)
    git("fsck", "--strict")


FAILING: dict[str, list[dict[str, Any]]] = {
    "test-fails": [
        {"op": "replace", "path": "/items/42/status", "value": "ok"},
        {"op": "test", "path": "/items/42/id", "value": "T-00043"},
    ],
    "index-far-out": [{"op": "replace", "path": "/items/999999/status", "value": "x"}],
    "remove-at-len": [{"op": "remove", "path": "/items/6000"}],
    "add-past-len": [{"op": "add", "path": "/items/6001", "value": 1}],
    "missing-field": [{"op": "remove", "path": "/items/3/nope"}],
    "move-into-itself": [{"op": "move", "from": "/items/3", "path": "/items/3/tags/0"}],
    "negative": [{"op": "replace", "path": "/items/-1", "value": 1}],
    "leading-zero": [{"op": "replace", "path": "/items/07/status", "value": "x"}],
    "dash-in-from": [{"op": "move", "from": "/items/-", "path": "/items/0"}],
    "small-key-fails": [
        {"op": "replace", "path": "/items/7/status", "value": "x"},
        {"op": "remove", "path": "/notes/zzz"},
    ],
    "bad-key": [
        {"op": "replace", "path": "/items/7/status", "value": "x"},
        {"op": "add", "path": "/bad key", "value": 1},
    ],
}


def old_path_error(vault: Vault, agent: str, patch: list[dict[str, Any]]) -> GitVaultError:
    """The error the whole-document path gives (apply the patch, then check the document in)."""
    try:
        doc = vault.patched(agent, copy.deepcopy(patch))
        codec.encode_document(doc, vault.limits)
    except GitVaultError as e:
        return e
    raise AssertionError("the whole-document path accepted the patch")


def assert_fails_as_on_the_whole_document(
    vault: Vault, git: Git, patch: list[dict[str, Any]]
) -> None:
    """checkin_patch refuses ``patch`` with the whole-document path's error; no ref moves."""
    vault.checkout("ann")
    before = refs(git)
    want = old_path_error(vault, "ann", patch)
    with pytest.raises(InputError) as e:
        vault.checkin_patch("ann", copy.deepcopy(patch), "patch")
    assert e.value.exit_code == 1
    assert type(e.value) is type(want) and str(e.value) == str(want)
    assert refs(git) == before


@pytest.mark.parametrize("name", sorted(FAILING))
def test_a_patch_that_does_not_apply_fails_as_on_the_whole_document(
    big: Vault, git: Git, name: str
) -> None:
    assert_fails_as_on_the_whole_document(big, git, FAILING[name])


def test_a_patch_past_the_depth_limit_fails_as_on_the_whole_document(big: Vault, git: Git) -> None:
    big.config_set("maxDepth", "6")
    big = Vault.open(big.path)
    deep: Any = "x"
    for _ in range(6):
        deep = [deep]
    assert_fails_as_on_the_whole_document(
        big, git, [{"op": "replace", "path": "/items/5/tags", "value": deep}]
    )


def test_a_patch_past_the_size_limit_fails_as_on_the_whole_document(big: Vault, git: Git) -> None:
    size = sum(k.size for k in big.status().keys)
    big.config_set("maxDocumentBytes", str(size + 100))
    big = Vault.open(big.path)
    assert_fails_as_on_the_whole_document(
        big, git, [{"op": "replace", "path": "/items/5/title", "value": "y" * 500}]
    )
    ok = [{"op": "replace", "path": "/items/5/title", "value": "y"}]
    assert big.checkin_patch("ann", ok, "patch").commit == big.head()


def test_a_patch_shrinking_the_key_below_the_size_stores_one_file(
    empty_vault: Vault, git: Git
) -> None:
    items = items_of_size(shards.SHARD_BYTES + 300)
    assert shards.wanted(codec.dumps(items)) and not shards.wanted(codec.dumps(items[:-2]))
    seed(empty_vault, {"items": items})
    assert top(git)["items"] == "tree"
    empty_vault.checkout("ann")
    patch = [
        {"op": "remove", "path": f"/items/{len(items) - 1}"},
        {"op": "remove", "path": "/items/0"},
    ]
    empty_vault.checkin_patch("ann", patch, "trim")
    assert_canonical(git, items[1:-1])
    assert empty_vault.read() == {"items": items[1:-1]}
    assert_changed_lines_exact(empty_vault)


def test_a_patch_growing_a_key_past_the_size_shards_it(empty_vault: Vault, git: Git) -> None:
    items = items_of_size(shards.SHARD_BYTES - 1)
    seed(empty_vault, {"items": items})
    assert top(git)["items.json"] == "blob"
    empty_vault.checkout("ann")
    empty_vault.checkin_patch(
        "ann", [{"op": "add", "path": "/items/-", "value": task(9999)}], "grow"
    )
    assert_canonical(git, [*items, task(9999)])
    assert_changed_lines_exact(empty_vault)


def test_a_patch_on_a_moved_main_is_merged(big: Vault, git: Git) -> None:
    big.checkout("ann")
    with big.lease("bo") as s:
        s.doc["items"][5500]["status"] = "bo"
        s.commit(source="bo")
    r = big.checkin_patch(
        "ann", [{"op": "replace", "path": "/items/5/status", "value": "ann"}], "patch"
    )
    assert r.merged
    want = document()
    want["items"][5500]["status"] = "bo"
    want["items"][5]["status"] = "ann"
    assert big.read() == want
    assert_canonical(git, want["items"])
    assert_changed_lines_exact(big)


def test_cli_checkin_patch_file(
    big: Vault, cli: Cli, git: Git, write_json: Callable[[Any], str]
) -> None:
    r = cli("checkout", "ann", "--out", "/dev/null")
    assert r.exit_code == 0, r.output
    patch: list[dict[str, Any]] = [
        {"op": "replace", "path": "/items/77/status", "value": "done"},
        {"op": "add", "path": "/items/78", "value": big_value()},
    ]
    r = cli("checkin", "ann", write_json(patch), "cli", "0.7", "--patch")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == big.head()
    assert big.read() == expected_after(patch)
    assert_canonical(git, expected_after(patch)["items"])
    bad = [{"op": "test", "path": "/items/77/status", "value": "todo"}]
    head = big.head()
    r = cli("checkin", "ann", write_json(bad), "cli", "--patch")
    assert r.exit_code == 1 and "does not apply" in r.stderr, r.output
    assert big.head() == head


# -- 5. merges -------------------------------------------------------------------------------


def race(
    vault: Vault, first: Callable[[Doc], None], second: Callable[[Doc], None], **kw: Any
) -> Any:
    a, b = vault.checkout("a"), vault.checkout("b")
    first(a.document)
    second(b.document)
    vault.checkin("a", a.document, "test")
    return vault.checkin("b", b.document, "test", **kw)


def set_status(i: int, value: str) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        doc["items"][i]["status"] = value

    return edit


def test_edits_of_distant_items_by_two_agents_both_land(big: Vault, git: Git) -> None:
    r = race(big, set_status(10, "a"), set_status(5000, "b"))
    assert r.merged and r.commit == big.head()
    assert r.strategy == {"items": "chunks"}  # disjoint chunks: no item was parsed
    assert git("log", "--merges", "--format=%H", "main").split() == [big.head()]
    items = fresh_items()
    items[10]["status"], items[5000]["status"] = "a", "b"
    assert big.read()["items"] == items
    assert_canonical(git, items)
    assert_changed_lines_exact(big)
    git("fsck", "--strict")


def test_appends_by_two_agents_are_both_kept_in_order(big: Vault, git: Git) -> None:
    r = race(big, lambda d: d["items"].append(task(9000)), lambda d: d["items"].append(task(9001)))
    assert r.merged
    items = [*fresh_items(), task(9000), task(9001)]
    assert big.read()["items"] == items
    assert_canonical(git, items)
    assert_changed_lines_exact(big)


def test_insert_and_delete_in_different_places_merge(big: Vault, git: Git) -> None:
    def first(d: Doc) -> None:
        d["items"].insert(100, task(9100))

    def second(d: Doc) -> None:
        del d["items"][4000:4010]

    race(big, first, second)
    items = fresh_items()
    del items[4000:4010]
    items.insert(100, task(9100))
    assert big.read()["items"] == items
    assert_canonical(git, items)
    assert_changed_lines_exact(big)


def test_the_same_field_edited_differently_is_a_conflict(big: Vault, git: Git) -> None:
    a, b = big.checkout("a"), big.checkout("b")
    a.document["items"][5]["status"] = "done"
    b.document["items"][5]["status"] = "blocked"
    big.checkin("a", a.document, "test")
    head = big.head()
    with pytest.raises(ConflictError) as e:
        big.checkin("b", b.document, "test")
    assert e.value.exit_code == 3 and big.head() == head
    row = e.value.report["conflicts"][0]
    assert (row["pointer"], row["base"], row["current"], row["proposed"]) == (
        "/items/5/status",
        "todo",
        "done",
        "blocked",
    )
    kept = git("rev-parse", "refs/conflicts/b/1").strip()
    assert json.loads(git("show", f"{kept}:items/00000000.json"))[5]["status"] == "blocked"


def test_the_same_conflict_through_the_cli_exits_3(
    big: Vault, cli: Cli, git: Git, write_json: Callable[[Any], str]
) -> None:
    a = big.checkout("a")
    big.checkout("b")
    a.document["items"][5]["status"] = "done"
    big.checkin("a", a.document, "test")
    head = big.head()
    r = cli(
        "checkin",
        "b",
        write_json([{"op": "replace", "path": "/items/5/status", "value": "blocked"}]),
        "test",
        "--patch",
    )
    assert r.exit_code == 3, r.output
    assert "/items/[id=T-00005]/status  (modify/modify)" in r.stdout
    assert big.head() == head


def test_a_key_changed_on_one_side_only_takes_that_sides_tree(big: Vault, git: Git) -> None:
    def first(d: Doc) -> None:
        d["items"][3333]["status"] = "a"

    def second(d: Doc) -> None:
        d["notes"]["b"] = 2

    race(big, first, second)
    assert git("rev-parse", "main:items").strip() == git("rev-parse", "main^1:items").strip()
    assert git("rev-parse", "main:notes.json").strip() == (
        git("rev-parse", "main^2:notes.json").strip()
    )
    assert_changed_lines_exact(big)


def test_a_git_merge_growing_past_the_size_is_stored_sharded(empty_vault: Vault, git: Git) -> None:
    extra = [task(8000 + i) for i in range(60)]
    room = len(codec.dumps(extra[:30])) - 6
    items = items_of_size(shards.SHARD_BYTES - room - 2000)
    seed(empty_vault, {"items": items})

    def first(d: Doc) -> None:
        d["items"][0:0] = extra[:30]

    def second(d: Doc) -> None:
        d["items"] += extra[30:]

    assert not shards.wanted(codec.dumps(extra[:30] + items))
    assert not shards.wanted(codec.dumps(items + extra[30:]))
    r = race(empty_vault, first, second)
    assert r.merged
    merged = extra[:30] + items + extra[30:]
    assert shards.wanted(codec.dumps(merged))
    assert empty_vault.read()["items"] == merged
    assert_canonical(git, merged)
    assert_changed_lines_exact(empty_vault)
    git("fsck", "--strict")


def test_a_sharded_side_merged_with_a_side_that_shrank_it(big: Vault, git: Git) -> None:
    small = items_of_size(shards.SHARD_BYTES - 1)

    def first(d: Doc) -> None:
        del d["items"][len(small) :]

    r = race(big, first, set_status(5, "b"))
    assert r.merged
    small[5]["status"] = "b"
    assert big.read()["items"] == small
    assert_canonical(git, small)
    assert_changed_lines_exact(big)


@pytest.mark.parametrize("grower", ["main", "proposal"])
def test_a_side_growing_a_key_past_the_size_merges_with_an_edit_of_it(
    empty_vault: Vault, git: Git, grower: str
) -> None:
    items = items_of_size(shards.SHARD_BYTES - 20_000)
    seed(empty_vault, {"items": items})
    extra = [task(8000 + i) for i in range(300)]

    def grow(d: Doc) -> None:
        d["items"] += extra

    edit = set_status(5, "b")
    r = race(empty_vault, grow, edit) if grower == "main" else race(empty_vault, edit, grow)
    assert r.merged
    merged = [*items, *extra]
    merged[5]["status"] = "b"
    assert empty_vault.read()["items"] == merged
    assert_canonical(git, merged)
    assert_changed_lines_exact(empty_vault)


# -- 6. pushes and the pre-receive hook ------------------------------------------------------

TRAILERS = [
    "Agent-Id: alice",
    "Source: field-notes",
    "Confidence: 0.8",
    "Justification: seen it",
    "Lease: none",
    "Base: none",
]


@pytest.fixture
def clone(big: Vault, tmp_path: Path) -> Iterator[Path]:
    dest = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", big.path, str(dest)], check=True)
    g = git_in(dest)
    g("config", "user.name", "alice")
    g("config", "user.email", "alice@example")
    yield dest


def commit_tree(dest: Path, tree: str, extra: list[str] | None = None) -> str:
    g = git_in(dest)
    msg = "alice edits\n\n" + "\n".join([*TRAILERS, *(extra or [])]) + "\n"
    r = subprocess.run(
        ["git", "-C", str(dest), "commit-tree", tree, "-p", "HEAD", "-F", "-"],
        input=msg,
        capture_output=True,
        text=True,
        check=True,
    )
    sha = r.stdout.strip()
    g("update-ref", "HEAD", sha)
    return sha


def commit_worktree(dest: Path) -> str:
    g = git_in(dest)
    g("add", "-A")
    return commit_tree(dest, g("write-tree").strip())


def push(dest: Path, rev: str = "HEAD") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(dest), "push", "origin", f"{rev}:refs/heads/agents/alice"],
        capture_output=True,
        text=True,
    )


def refused(r: subprocess.CompletedProcess[str], needle: str) -> None:
    assert r.returncode != 0, r.stderr
    assert "remote: gitvault: push refused" in r.stderr, r.stderr
    assert needle in r.stderr, r.stderr


def test_the_vault_has_its_hooks(big: Vault) -> None:
    assert (Path(big.path) / "hooks" / "pre-receive").exists()


def test_a_pushed_large_array_as_one_file_is_refused(big: Vault, git: Git, clone: Path) -> None:
    shutil.rmtree(clone / "items")
    (clone / "items.json").write_bytes(DATA)
    commit_worktree(clone)
    before = refs(git)
    refused(push(clone), "stored sharded as items/")
    assert refs(git) == before


def test_a_pushed_layout_with_a_chunk_split_differently_is_refused(
    big: Vault, git: Git, clone: Path
) -> None:
    first = clone / "items" / "00000000.json"
    items = json.loads(first.read_bytes())
    first.write_bytes(codec.dumps(items[:-1]))
    (clone / "items" / shards.chunk_name(len(items) - 1)).write_bytes(codec.dumps(items[-1:]))
    commit_worktree(clone)
    assert json.loads(git_in(clone)("show", "HEAD:items/00000000.json")) == items[:-1]
    before = refs(git)
    refused(push(clone), "chunks are not where gitvault puts them")
    assert refs(git) == before


def test_a_pushed_layout_with_chunks_misnamed_is_refused(big: Vault, git: Git, clone: Path) -> None:
    listed = sorted((clone / "items").glob("*.json"))
    listed[1].rename(listed[1].with_name("00000001.json"))
    commit_worktree(clone)
    before = refs(git)
    refused(push(clone), "chunks are not where gitvault puts them")
    assert refs(git) == before


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("stray-file", "only chunk files"),
        ("small", "smaller than"),
        ("not-array", "not canonical"),
        ("subfolder", "only chunk files"),
    ],
)
def test_other_bad_sharded_folders_are_refused(
    big: Vault, git: Git, clone: Path, case: str, needle: str
) -> None:
    folder = clone / "items"
    if case == "stray-file":
        (folder / "README").write_text("hi\n")
    elif case == "small":
        shutil.rmtree(folder)
        folder.mkdir()
        (folder / "00000000.json").write_bytes(codec.dumps(ITEMS[:10]))
    elif case == "not-array":
        (folder / sorted(p.name for p in folder.iterdir())[-1]).write_bytes(b'{"a": 1}\n')
    else:
        (folder / "sub").mkdir()
        (folder / "sub" / "00000000.json").write_bytes(b"[]\n")
    commit_worktree(clone)
    before = refs(git)
    r = push(clone)
    assert r.returncode != 0 and "push refused" in r.stderr, r.stderr
    if case == "not-array":  # a chunk that is not an array cannot be assembled: say so somehow
        assert "items" in r.stderr, r.stderr
    else:
        assert needle in r.stderr, r.stderr
    assert refs(git) == before


def laid_out_in(clone: Path, items: list[Any]) -> tuple[Store, pygit2.Tree, pygit2.Tree]:
    """The clone's HEAD tree and a tree with ``items`` as its key, laid out by gitvault."""
    store = Store(pygit2.Repository(str(clone)))
    head = store.repo.revparse_single("HEAD")
    assert isinstance(head, pygit2.Commit)
    files: dict[str, bytes | pygit2.Oid] = dict(store.key_blobs(head.tree))
    files["items.json"] = codec.dumps(items)
    new = store.repo[store.build_tree(head.tree, files)]
    assert isinstance(new, pygit2.Tree)
    return store, head.tree, new


def test_a_layout_built_by_gitvault_in_a_clone_is_accepted_with_its_changed_lines(
    big: Vault, git: Git, clone: Path
) -> None:
    items = fresh_items()
    items[4100]["status"] = "pushed"
    items.insert(1200, task(9200))
    store, old, new = laid_out_in(clone, items)
    lines = changes.between(store, old, new)
    assert lines == ["/items/[id=T-04100]", "/items/[id=T-09200]"]
    commit_tree(clone, str(new.id), [f"Changed: {escape(p)}" for p in lines])
    r = push(clone)
    assert r.returncode == 0, r.stderr
    assert big.read()["items"] == items
    assert_canonical(git, items)
    assert [e.agent for e in big.log(path="/items/[id=T-04100]/status")][:1] == ["alice"]
    git("fsck", "--strict")


def test_a_pushed_sharded_commit_with_wrong_changed_lines_is_refused(
    big: Vault, git: Git, clone: Path
) -> None:
    items = fresh_items()
    items[4100]["status"] = "pushed"
    _, _, new = laid_out_in(clone, items)
    commit_tree(clone, str(new.id), ["Changed: /items/[id=T-00001]"])
    before = refs(git)
    refused(push(clone), "Changed: lines")
    assert refs(git) == before


def test_a_plain_git_edit_of_a_chunk_that_keeps_the_layout_is_accepted(
    big: Vault, git: Git, clone: Path
) -> None:
    """Editing one value in a chunk file by hand is fine when the layout stays canonical (an
    item that neither is nor becomes a boundary)."""
    folder = clone / "items"
    names = [n for n, _ in shards.split(DATA)]
    for i in range(100, 200):
        items = fresh_items()
        items[i]["status"] = "by-hand"
        layout = shards.split(codec.dumps(items))
        if [n for n, _ in layout] == names:
            break
    else:
        pytest.fail("no item in 100..199 keeps the boundaries")
    for name, blob in layout:
        (folder / name).write_bytes(blob)
    assert len(git_in(clone)("status", "--porcelain").splitlines()) == 1
    commit_worktree(clone)
    r = push(clone)
    assert r.returncode == 0, r.stderr
    assert big.read()["items"] == items


def test_a_pushed_branch_merged_with_a_checkin_stays_canonical(
    big: Vault, git: Git, clone: Path
) -> None:
    with big.lease("bo") as s:
        s.doc["items"][10]["status"] = "bo"
        s.commit(source="bo")
    store = Store(pygit2.Repository(str(clone)))
    head = store.repo.revparse_single("HEAD")
    assert isinstance(head, pygit2.Commit)
    items = fresh_items()
    items[5800]["status"] = "alice"
    files: dict[str, bytes | pygit2.Oid] = dict(store.key_blobs(head.tree))
    files["items.json"] = codec.dumps(items)
    pushed = commit_tree(clone, str(store.build_tree(head.tree, files)))
    r = push(clone)
    assert r.returncode == 0, r.stderr
    assert "merged" in r.stderr
    items[10]["status"] = "bo"
    assert big.read()["items"] == items
    assert_canonical(git, items)
    assert_changed_lines_exact(big, frozenset([pushed]))


# -- upkeep, resolve, ambiguity ----------------------------------------------------------------


def test_packed_chunks_still_read_and_size_right(big: Vault, git: Git) -> None:
    with big.lease("ann") as s:
        s.doc["items"][9]["status"] = "x"
        s.commit(source="pre-gc")
    git("gc", "--aggressive", "--quiet")
    objects = Path(big.path) / "objects"
    assert not any((objects / o[:2] / o[2:]).exists() for _, o in chunks(git))  # all packed
    fresh = Vault.open(big.path)
    items = fresh_items()
    items[9]["status"] = "x"
    assert {k.key: k.size for k in fresh.status().keys}["items"] == len(codec.dumps(items))
    assert fresh.read()["items"] == items
    fresh.checkout("bo")
    fresh.checkin_patch("bo", [{"op": "remove", "path": "/items/2"}], "post-gc")
    del items[2]
    assert fresh.read()["items"] == items
    assert_canonical(git, items)
    assert_changed_lines_exact(fresh)
    report = fresh.doctor()
    assert {c.name: c.ok for c in report.checks}["main-json"], report.to_json()


def test_a_kept_conflict_resolved_theirs_is_laid_out_canonically(big: Vault, git: Git) -> None:
    with pytest.raises(ConflictError):
        race(big, set_status(5, "done"), set_status(5, "blocked"))
    r = big.resolve("b/1", take="theirs")
    assert r.commit == big.head()
    items = fresh_items()
    items[5]["status"] = "blocked"
    assert big.read()["items"] == items
    assert_canonical(git, items)
    assert_changed_lines_exact(big)


def test_a_policy_resolves_a_conflict_in_a_sharded_key(big: Vault, git: Git) -> None:
    r = race(big, set_status(5, "done"), set_status(5, "blocked"), on_conflict="ours")
    assert r.merged and r.resolved
    items = fresh_items()
    items[5]["status"] = "done"
    assert big.read()["items"] == items
    assert_canonical(git, items)


def test_a_pushed_tree_with_both_a_file_and_a_folder_for_one_key_is_refused(
    big: Vault, git: Git, clone: Path
) -> None:
    (clone / "items.json").write_bytes(b"[\n  1\n]\n")
    commit_worktree(clone)
    before = refs(git)
    r = push(clone)
    assert r.returncode != 0, r.stderr
    assert refs(git) == before
